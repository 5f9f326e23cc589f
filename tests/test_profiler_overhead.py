"""Profiler overhead: what the import keeps of it (events per gap, the mode), and the compensation arithmetic.

The CUDA-only recording is the bundled CPU+CUDA recording of decode_inline (traces/recorded/, an
H200 recording of ours) with its CPU activities (cpu_op, user_annotation, python_function) removed:
what activities=[ProfilerActivity.CUDA] records of the same run.
"""

from __future__ import annotations

import gzip
import json
from dataclasses import replace
from pathlib import Path

import hypothesis.strategies as st
import pytest
from hypothesis import given, settings

from harness.paths import TRACES_DIR
from harness.profile import Profile, ProfilerCalibration, Spread, load_profile
from harness.profiler_import import import_profiler_trace
from harness.runner import run_spec
from harness.spec import load_spec
from harness.trace import Provenance, load_trace, write_trace
from sim import SimBackend
from workloads.recorded.compensation import (
    CannotCompensate,
    calibration_for,
    overheads_us,
    remove_overhead,
    without_profiler_overhead,
)
from workloads.recorded.program import Call, ThreadProgram, build_program
from tests.profiler_shapes import calibration_of

RECORDED = TRACES_DIR / "recorded"
CPU_CATS = {"cpu_op", "user_annotation", "python_function"}


def _calibration(**overhead: float) -> ProfilerCalibration:
    return calibration_of({"call_launch": 5.0, "call_graph_launch": 10.0}, **overhead)


CALIBRATION = _calibration(aten_op=1.0, runtime_call=3.0, range=2.0, graph_launch=40.0, graph_kernel=0.5)


def _calibrated(profile: Profile, calibration: ProfilerCalibration, *modes: str) -> Profile:
    return Profile(profile.figures.model_copy(update={"profiler": dict.fromkeys(modes, calibration)}))


# --------------------------------------------------------------------------- import


@pytest.fixture(scope="module")
def cuda_only(tmp_path_factory) -> Path:
    doc = json.loads(gzip.decompress((RECORDED / "decode_inline.json.gz").read_bytes()))
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") not in CPU_CATS]
    path = tmp_path_factory.mktemp("cuda_only") / "decode_inline-cuda.json"
    path.write_text(json.dumps(doc))
    return path


def test_a_cuda_only_recording_imports_with_its_mode_and_no_cpu_events(cuda_only):
    full = import_profiler_trace(RECORDED / "decode_inline.json.gz")
    only = import_profiler_trace(cuda_only)
    assert (full.provenance.profiler_mode, only.provenance.profiler_mode) == ("cpu_cuda", "cuda")
    calls = only.ops[only.ops["kind"].str.startswith("call_")]
    assert len(only.ops) == len(full.ops) and (calls["kind"] == "call_launch").sum() == 2280
    assert (calls["gap_aten_ops"] == 0).all() and (calls["gap_ranges"] == 0).all()
    assert only.ops["group"].isna().all()  # no record_function ranges: no groups
    assert full.warnings and "CPU activities" in full.warnings[0]  # host-bound, recorded in the costly mode
    assert only.warnings == ()


def test_each_call_keeps_the_aten_ops_and_ranges_of_its_own_gap():
    imported = import_profiler_trace(RECORDED / "decode_inline-sync.json.gz")
    calls = imported.ops[imported.ops["kind"].str.startswith("call_")]
    doc = json.loads(gzip.decompress((RECORDED / "decode_inline-sync.json.gz").read_bytes()))
    cats = [e.get("cat") for e in doc["traceEvents"] if e.get("ph") == "X"]
    assert calls["gap_aten_ops"].sum() == cats.count("cpu_op")  # every aten op falls in one gap
    assert calls["gap_ranges"].sum() == cats.count("user_annotation")
    launches = calls[calls["kind"] == "call_launch"]
    assert (launches["gap_aten_ops"] >= 1).mean() > 0.95  # an eager op begins before its launch
    assert load_trace(RECORDED / "decode_inline-sync.parquet").provenance.profiler_mode == "cpu_cuda_sync"


def test_gap_counts_follow_the_thread_and_stop_at_the_previous_call(tmp_path):
    host = {"pid": 1, "tid": 5}

    def x(cat, name, ts, dur, **args):
        return {"ph": "X", "cat": cat, "name": name, **host, "ts": ts, "dur": dur, "args": args}

    events = [
        x("cpu_op", "aten::add", 0, 12),
        x("cuda_runtime", "cudaLaunchKernel", 5, 4, correlation=1),
        x("user_annotation", "r", 14, 10),
        x("cpu_op", "aten::mul", 15, 8),
        x("cpu_op", "aten::view", 16, 1),
        {**x("cpu_op", "aten::add", 17, 1), "tid": 6},  # another thread: not this call's gap
        x("cuda_runtime", "cudaLaunchKernel", 20, 3, correlation=2),
        {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 10, "dur": 2, "args": {"correlation": 1}},
        {"ph": "X", "cat": "kernel", "name": "k", "pid": 0, "tid": 7, "ts": 25, "dur": 2, "args": {"correlation": 2}},
    ]
    path = tmp_path / "t.json"
    path.write_text(json.dumps({"traceEvents": events}))
    calls = import_profiler_trace(path).ops.dropna(subset=["host_gap_us"]).sort_values("start_us")
    assert calls["gap_aten_ops"].tolist() == [1, 2] and calls["gap_ranges"].tolist() == [0, 1]


# --------------------------------------------------------------------------- the arithmetic


def test_overhead_comes_out_of_the_gap_first_and_stops_at_the_floor():
    assert remove_overhead(20.0, 6.0, 8.0, 0.0, 5.0) == pytest.approx((12.0, 6.0, 8.0))
    assert remove_overhead(3.0, 6.0, 8.0, 0.0, 5.0) == pytest.approx((0.0, 5.0, 4.0))  # spills into the call
    assert remove_overhead(3.0, 1.0, 8.0, 0.0, 5.0) == pytest.approx((3.0, 1.0, 0.0))  # already below its floor
    assert remove_overhead(0.0, 100.0, 0.0, 60.0, 10.0) == pytest.approx((0.0, 40.0, 60.0))  # a graph launch
    assert remove_overhead(30.0, 20.0, 0.0, 60.0, 10.0) == pytest.approx((10.0, 0.0, 40.0))  # call first, floor caps
    sync = remove_overhead(4.0, 900.0, 10.0, 0.0, 0.0, duration_is_host_work=False)
    assert sync == pytest.approx((0.0, 900.0, 4.0))  # a sync's blocked time is not host work


@settings(max_examples=300, deadline=None)
@given(
    before=st.floats(0, 1e4),
    duration=st.floats(0, 1e3),
    gap_us=st.floats(0, 1e4),
    own_us=st.floats(0, 1e3),
    floor=st.floats(0, 50),
    host_work=st.booleans(),
)
def test_a_gap_never_goes_negative_and_a_call_never_below_its_floor(before, duration, gap_us, own_us, floor, host_work):
    out = remove_overhead(before, duration, gap_us, own_us, floor, host_work)
    own = duration if host_work else 0.0
    assert out.host_before_us >= 0.0 and out.duration_us >= 0.0
    assert out.removed_us <= gap_us + own_us + 1e-9
    after = out.host_before_us + (out.duration_us if host_work else 0.0)
    assert after == pytest.approx(before + own - out.removed_us, abs=1e-6)
    assert after >= min(before + own, floor) - 1e-6  # never below the floor, never raised to it
    if not host_work:
        assert out.duration_us == duration


def test_overheads_count_the_gaps_events_and_a_graph_launchs_kernels():
    call = Call("call_launch", "cudaLaunchKernel", 30.0, 4.0, None, (), "", gap_aten_ops=5, gap_ranges=1, gap_calls=2)
    assert overheads_us(call, CALIBRATION) == pytest.approx((5 * 1.0 + 2.0 + 3 * 3.0, 0.0))
    graph = replace(call, kind="call_graph_launch", ops=(None,) * 96, gap_aten_ops=0, gap_ranges=0, gap_calls=0)
    assert overheads_us(graph, CALIBRATION) == pytest.approx((3.0, 40.0 + 96 * 0.5))


# --------------------------------------------------------------------------- programs and runs


def _program(name: str = "decode_inline-sync"):
    trace = load_trace(RECORDED / f"{name}.parquet")
    return build_program(trace.ops, name, trace.provenance.profiler_mode)


def test_a_zero_calibration_changes_nothing_and_a_real_one_shortens_only_host_time():
    program = _program()
    same, removed = without_profiler_overhead(program, _calibration(aten_op=0.0, runtime_call=0.0))

    def host(p):
        return [(c.host_before_us, c.duration_us) for t in p.threads for c in t.calls]

    assert removed == 0.0 and host(same) == host(program)
    lighter, removed = without_profiler_overhead(program, CALIBRATION)
    before = [c for t in program.threads for c in t.calls]
    after = [c for t in lighter.threads for c in t.calls]
    assert removed > 0 and [c.ops for c in after] == [c.ops for c in before]  # GPU work untouched
    assert all(a.host_before_us <= b.host_before_us and a.host_before_us >= 0 for a, b in zip(after, before))
    total_before = sum(c.host_before_us + c.duration_us for c in before)
    assert total_before - sum(c.host_before_us + c.duration_us for c in after) == pytest.approx(removed)


def test_an_older_trace_or_an_uncalibrated_mode_says_what_is_missing(tmp_path):
    h200 = load_profile("h200")
    trace = load_trace(RECORDED / "decode_inline-sync.parquet")
    old = write_trace(
        tmp_path / "v2.parquet", trace.ops.drop(columns=["gap_aten_ops", "gap_ranges"]), Provenance("t", "H200", "d")
    )
    program = build_program(load_trace(old).ops, str(old))
    with pytest.raises(CannotCompensate, match="older than format 3.*re-import"):
        calibration_for(program, _calibrated(h200, CALIBRATION, "cpu_cuda_sync"))
    with pytest.raises(CannotCompensate, match="no profiler calibration for mode 'cpu_cuda_sync'.*--profiler"):
        calibration_for(_program(), _calibrated(h200, CALIBRATION, "cuda"))
    assert calibration_for(_program(), _calibrated(h200, CALIBRATION, "cpu_cuda_sync")) is CALIBRATION


def _runs(tmp_path: Path, trace: str, policies: str, calibration: ProfilerCalibration | None) -> dict:
    profile = load_profile("h200")
    if calibration is not None:
        profile = _calibrated(profile, calibration, "cpu_cuda", "cpu_cuda_sync")
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "r"\nprofile = "h200"\nrepetitions = 1\n[workload]\nkind = "recorded"\n'
        f'trace = "{RECORDED / trace}"\n{policies}'
    )
    results = run_spec(load_spec(spec), lambda s, rep: SimBackend(profile, 1, s.device_memory_bytes, seed=rep))
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    table = m[m["item"] == -1].pivot_table(index="policy_label", columns="metric", values="value")
    return {"table": table, "failed": results.failed}


KEEP_AND_SUBTRACT = (
    '[[policies]]\nname = "as_recorded"\n'
    '[[policies]]\nname = "as_recorded"\nlabel = "subtract"\nprofiler_overhead = "subtract"\n'
)


def test_subtract_predicts_a_shorter_host_bound_program_and_names_the_figure(tmp_path):
    runs = _runs(tmp_path, "decode_inline-sync.parquet", KEEP_AND_SUBTRACT, CALIBRATION)
    assert runs["failed"].empty
    keep, subtract = runs["table"].loc["as_recorded"], runs["table"].loc["subtract"]
    assert pd_isna(keep.get("unprofiled_makespan_us")) and pd_isna(keep.get("profiler_overhead_removed_us"))
    assert subtract["unprofiled_makespan_us"] == subtract["makespan_us"] < keep["makespan_us"]
    assert subtract["recorded_makespan_us"] == keep["recorded_makespan_us"]
    saved = keep["makespan_us"] - subtract["makespan_us"]  # host-bound: most of the removed time is saved
    assert 0.5 * subtract["profiler_overhead_removed_us"] < saved <= subtract["profiler_overhead_removed_us"] + 1.0


def test_a_gpu_bound_program_barely_moves(tmp_path):
    table = _runs(tmp_path, "layers_sync-sync.parquet", KEEP_AND_SUBTRACT, CALIBRATION)["table"]
    assert table.loc["subtract", "makespan_us"] == pytest.approx(table.loc["as_recorded", "makespan_us"], rel=0.01)


def test_what_ifs_take_the_overhead_out_before_they_transform(tmp_path):
    policies = (
        '[[policies]]\nname = "graph_launch"\n'
        '[[policies]]\nname = "graph_launch"\nlabel = "subtract"\nprofiler_overhead = "subtract"\n'
    )
    table = _runs(tmp_path, "decode_inline-sync.parquet", policies, CALIBRATION)["table"]
    assert table.loc["subtract", "profiler_overhead_removed_us"] > 0
    assert table.loc["subtract", "makespan_us"] < table.loc["graph_launch", "makespan_us"]


def test_subtract_without_a_calibration_fails_the_run_saying_why(tmp_path):
    runs = _runs(tmp_path, "decode_inline-sync.parquet", KEEP_AND_SUBTRACT, None)
    assert len(runs["failed"]) == 1
    assert "no profiler calibration for mode 'cpu_cuda_sync'" in runs["failed"]["error"].iloc[0]


def pd_isna(value) -> bool:
    return value is None or value != value


def test_added_and_profile_costed_calls_charge_a_pytorch_programs_own_costs(tmp_path):
    h200 = load_profile("h200")
    eager = h200.host.model_copy(update={"launch_us": 6.0, "graph_launch_us": 9.0, "copy_launch_us": 8.0})
    with_eager = Profile(h200.figures.model_copy(update={"pytorch_eager_host": eager}))
    assert with_eager.program_call_cost_us("call_launch") == 6.0 < h200.program_call_cost_us("call_launch")
    policies = (
        '[[policies]]\nname = "as_recorded"\nlabel = "profile"\nhost_costs = "profile"\n'
        '[[policies]]\nname = "graph_launch"\n'
    )
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "r"\nprofile = "h200"\nrepetitions = 1\n[workload]\nkind = "recorded"\n'
        f'trace = "{RECORDED / "decode_inline-sync.parquet"}"\n{policies}'
    )

    def spans(profile: Profile) -> dict[str, float]:
        results = run_spec(load_spec(spec), lambda s, rep: SimBackend(profile, 1, s.device_memory_bytes, seed=rep))
        m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
        return m[(m["item"] == -1) & (m["metric"] == "makespan_us")].set_index("policy_label")["value"].to_dict()

    engine, program = spans(h200), spans(with_eager)
    assert program["profile"] < 0.8 * engine["profile"]  # 2,280 launches at 6 µs, not the engine's ~23 µs
    assert program["graph_launch"] < engine["graph_launch"]  # each added graph launch 9 µs, not a launch's 23


def test_graph_kernels_lose_the_calibrated_gpu_time_never_below_zero_on_both_paths():
    program = _program("decode_graph-sync")
    gpu = CALIBRATION.model_copy(update={"gpu_overhead": {"graph_kernel": Spread(median_us=0.3, spread_us=0.01)}})
    columns, _ = without_profiler_overhead(program, gpu, graph_gpu=True)
    objects = replace(program, threads=tuple(ThreadProgram(t.name, t.calls) for t in program.threads))
    by_call, _ = without_profiler_overhead(objects, gpu, graph_gpu=True)
    unchanged, _ = without_profiler_overhead(program, gpu)  # off unless asked for (it over-corrected the corpus)
    assert all(c0.ops == c1.ops for t0, t1 in zip(program.threads, unchanged.threads)
               for c0, c1 in zip(t0.calls, t1.calls) if c0.kind == "call_graph_launch")  # fmt: skip
    graph_ops = [(b, a) for t0, t1 in zip(program.threads, columns.threads) for c0, c1 in zip(t0.calls, t1.calls)
                 if c0.kind == "call_graph_launch" for b, a in zip(c0.ops, c1.ops)]  # fmt: skip
    assert len(graph_ops) > 100
    for before, after in graph_ops:
        assert after.duration_us == pytest.approx(max(before.duration_us - 0.3, 0.0) if before.kind == "kernel"
                                                  else before.duration_us)  # fmt: skip
    eager = [(c0.ops, c1.ops) for t0, t1 in zip(program.threads, columns.threads)
             for c0, c1 in zip(t0.calls, t1.calls) if c0.kind != "call_graph_launch"]  # fmt: skip
    assert all(b == a for b, a in eager)  # eager kernels as recorded
    assert [c.ops for t in by_call.threads for c in t.calls] == [c.ops for t in columns.threads for c in t.calls]
    huge = CALIBRATION.model_copy(update={"gpu_overhead": {"graph_kernel": Spread(median_us=1e6, spread_us=0.0)}})
    floored, _ = without_profiler_overhead(program, huge)
    assert min(op.duration_us for t in floored.threads for c in t.calls for op in c.ops) >= 0.0


def test_host_stalls_typical_runs_alone_or_with_subtract_and_never_lengthens_a_step(tmp_path):
    policies = KEEP_AND_SUBTRACT + (
        '[[policies]]\nname = "as_recorded"\nlabel = "typical"\nhost_stalls = "typical"\n'
        '[[policies]]\nname = "as_recorded"\nlabel = "both"\nhost_stalls = "typical"\nprofiler_overhead = "subtract"\n'
    )
    runs = _runs(tmp_path, "decode_inline-sync.parquet", policies, CALIBRATION)
    assert runs["failed"].empty
    span = runs["table"]["makespan_us"]
    assert span["typical"] <= span["as_recorded"] and span["both"] <= span["subtract"]
    assert span["both"] == runs["table"].loc["both", "unprofiled_makespan_us"]
    assert pd_isna(runs["table"].loc["typical"].get("unprofiled_makespan_us"))  # not a profiler compensation


def test_auto_takes_the_graph_gpu_figure_out_only_where_it_was_timed_queued(tmp_path):
    """graph_gpu_overhead = "auto" (the default): a figure timed with the replay queued behind GPU work (its GPU time
    alone) comes out of the recording's graph kernels; the older idle-GPU figure (which holds the profiled launch's
    host time) and an unknown one are kept; "subtract" / "keep" decide regardless."""
    from workloads.recorded.compensation import subtracts_graph_gpu

    figure = {"graph_kernel": Spread(median_us=0.2, spread_us=0.01)}
    kinds = ("", "idle", "queued")
    timed = {t: CALIBRATION.model_copy(update={"gpu_overhead": figure, "gpu_timing": t}) for t in kinds}
    assert [subtracts_graph_gpu("auto", timed[t]) for t in ("", "idle", "queued")] == [False, False, True]
    assert not subtracts_graph_gpu("auto", CALIBRATION.model_copy(update={"gpu_timing": "queued"}))  # no figure
    assert all(subtracts_graph_gpu("subtract", c) and not subtracts_graph_gpu("keep", c) for c in timed.values())
    policies = (
        '[[policies]]\nname = "as_recorded"\nlabel = "auto"\nprofiler_overhead = "subtract"\n'
        '[[policies]]\nname = "as_recorded"\nlabel = "keep"\nprofiler_overhead = "subtract"\n'
        'graph_gpu_overhead = "keep"\n'
    )
    spans = {t: _runs(tmp_path, "decode_graph-sync.parquet", policies, timed[t])["table"]["makespan_us"]
             for t in ("idle", "queued")}  # fmt: skip
    assert spans["idle"]["auto"] == spans["idle"]["keep"] == spans["queued"]["keep"]
    # the bundled decode_graph: 24 replays of 96 kernels back to back on the GPU, 0.2 µs off each kernel
    assert spans["queued"]["keep"] - spans["queued"]["auto"] == pytest.approx(24 * 96 * 0.2, rel=0.01)


def test_graphs_a_what_if_adds_lose_the_graph_gpu_figure_only_when_compensating(tmp_path):
    """graph_launch captures eager kernels into graphs: a compensated run predicts the unprofiled graph program, so
    the captured kernels lose the calibrated GPU time CUPTI adds to a graph's kernels, as recorded graph kernels do;
    a run that keeps the profiler (the profiled graph program) keeps them as recorded. Helper and end to end."""
    from workloads.recorded import whatif
    from workloads.recorded.compensation import added_graphs_without_gpu_overhead

    figure = {"graph_kernel": Spread(median_us=0.2, spread_us=0.01)}
    queued = CALIBRATION.model_copy(update={"gpu_overhead": figure, "gpu_timing": "queued"})
    program = _program("decode_inline-sync")
    captured = whatif.graph_launch(program)
    shorter = added_graphs_without_gpu_overhead(captured, queued)
    pairs = [(c0, c1) for t0, t1 in zip(captured.threads, shorter.threads) for c0, c1 in zip(t0.calls, t1.calls)]
    graphs = [(c0, c1) for c0, c1 in pairs if c0.synthetic and c0.kind == "call_graph_launch"]
    assert len(graphs) == 24  # one a decode step
    for c0, c1 in graphs:
        for before, after in zip(c0.ops, c1.ops):
            expected = max(before.duration_us - 0.2, 0.0) if before.kind == "kernel" else before.duration_us
            assert after.duration_us == pytest.approx(expected)
    assert all(c0 is c1 for c0, c1 in pairs if not c0.synthetic)  # every recorded call as it was
    assert added_graphs_without_gpu_overhead(captured, CALIBRATION) is captured  # no figure: nothing to take out
    policies = (
        '[[policies]]\nname = "graph_launch"\nlabel = "keep"\n'
        '[[policies]]\nname = "graph_launch"\nlabel = "auto"\nprofiler_overhead = "subtract"\n'
        '[[policies]]\nname = "graph_launch"\nlabel = "without"\nprofiler_overhead = "subtract"\n'
        'graph_gpu_overhead = "keep"\n'
    )
    span = _runs(tmp_path, "decode_inline-sync.parquet", policies, queued)["table"]["makespan_us"]
    gpu_bound_cut = sum(op.kind == "kernel" for _, c1 in graphs for op in c1.ops) * 0.2
    assert 0.0 < span["without"] - span["auto"] <= gpu_bound_cut + 1e-6
    assert span["auto"] < span["without"] < span["keep"]

