"""The recorded workload: imported profiler traces re-issued through the runtime (as_recorded).

The committed recordings (traces/recorded/, plain PyTorch programs recorded on an H200) must be
predicted within 2% of their recorded span; hand-made traces pin down what each recorded call
becomes; the public Kineto traces (tests/data/public/kineto_hta/) must all simulate.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.backend import run_policy
from harness.cli import app
from harness.paths import SPECS_DIR, TRACES_DIR
from harness.profile import load_profile
from harness.profiler_import import import_to_parquet
from harness.runner import run_spec
from harness.spec import load_spec
from harness.trace import Provenance, load_trace, write_trace
from sim import SimBackend
from workloads.recorded.policies import AsRecordedParams, as_recorded
from workloads.recorded.program import build_program
from workloads.recorded.reissue import reissue
from workloads.recorded.steps import GRAPH_LAUNCH_REST

runner = CliRunner()
RECORDED_SPECS = sorted(SPECS_DIR.glob("recorded_*.toml"))
KINETO = Path(__file__).resolve().parent / "data" / "public" / "kineto_hta"
KINETO_FILES = sorted(KINETO.glob("*.json.gz"))


def _sim_spec(path: Path):
    loaded = load_spec(path)
    results = run_spec(loaded, lambda spec, rep: SimBackend(spec.profile, 1, spec.device_memory_bytes, seed=rep))
    assert results.failed.empty, results.failed["error"].tolist()
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    return m[m["item"] == -1].pivot_table(index="policy_label", columns="metric", values="value")


@pytest.mark.parametrize("spec", RECORDED_SPECS, ids=lambda p: p.stem)
def test_committed_recordings_are_predicted_within_4_percent(spec):
    # Measured (traces/recorded/README.md): within 2% for all 10 since graphs keep the GPU time the recording
    # shows around their kernels (GraphTiming; decode_graph without sync events was -3.55% before, +1.6% with).
    table = _sim_spec(spec)
    exact = table.loc["as_recorded"]
    assert abs(exact["makespan_vs_recorded"]) < 0.02
    assert exact["makespan_us"] == pytest.approx(exact["recorded_makespan_us"] * (1 + exact["makespan_vs_recorded"]))


def test_decode_loop_reproduces_host_bound_step_times():
    table = _sim_spec(SPECS_DIR / "recorded_decode_inline.toml").loc["as_recorded"]
    assert table["group_time_us"] == pytest.approx(table["recorded_group_time_us"], rel=0.02)
    assert table["gpu_wait_for_host_us"] > 0.5 * table["makespan_us"]  # host-bound: the GPU mostly waits


def test_recorded_traces_say_where_they_came_from():
    recordings = sorted((TRACES_DIR / "recorded").glob("*.json.gz"))
    assert len(recordings) == 10
    for recording in recordings:
        trace = load_trace(recording.with_name(recording.name.replace(".json.gz", ".parquet")))
        assert trace.provenance.hardware == "NVIDIA H200"
        assert "torch.profiler" in trace.provenance.source and recording.name in trace.provenance.source
        assert recording.stat().st_size < 2 << 20


# --------------------------------------------------------------------------- hand-made recordings


def _row(
    kind, name, start, dur, corr, *, device=-1, stream="7", gap=None, nbytes=0, memory=None, group="step0", **extra
):
    row = dict(
        device=device,
        stream=stream,
        kind=kind,
        name=name,
        bytes=nbytes,
        duration_us=dur,
        start_us=start,
        launch_us=start if device < 0 else None,
        thread="1",
        group=group,
        host_memory=memory,
        correlation=corr,
        host_gap_us=gap,
        annotation=group,
    )
    row.update(extra)
    return row


def _trace(tmp_path: Path, rows: list[dict]) -> Path:
    path = tmp_path / "t.parquet"
    prov = Provenance(source="hand-made torch.profiler-like trace", hardware="test", date="2026-11-29", description="")
    return write_trace(path, pd.DataFrame(rows), prov)


def _run(tmp_path, rows, profile="h100-sxm-pcie5", **params):
    program = build_program(load_trace(_trace(tmp_path, rows)).ops, "t")
    run = run_policy(SimBackend(load_profile(profile)), as_recorded, program, AsRecordedParams(**params))
    return program, run


def test_host_gaps_call_costs_and_kernel_durations_are_reissued_exactly(tmp_path):
    rows = [
        _row("call_launch", "cudaLaunchKernel", 10.0, 5.0, 1, gap=10.0),
        _row("kernel", "k0", 20.0, 100.0, 1, device=0),
        _row("call_launch", "cudaLaunchKernel", 18.0, 4.0, 2, gap=3.0),
        _row("kernel", "k1", 120.0, 50.0, 2, device=0),
        _row("call_sync_stream", "cudaStreamSynchronize", 25.0, 150.0, 3, gap=3.0),
    ]
    program, run = _run(tmp_path, rows)
    assert program.recorded_span_us == pytest.approx(175.0)
    ops = run.ops.set_index("name")
    # host: 10 of CPU work, the 5 µs call, 3, the 4 µs call: k1 issued at 22; the kernels run back to back
    assert ops.loc["k0", "issue_us"] == pytest.approx(10.0) and ops.loc["k0", "start_us"] == pytest.approx(15.0)
    assert ops.loc["k1", "issue_us"] == pytest.approx(18.0)
    assert ops.loc["k1", "end_us"] == pytest.approx(165.0)
    assert run.result.calls == 3


def test_profile_host_costs_replace_recorded_call_costs(tmp_path):
    rows = [_row("call_launch", "cudaLaunchKernel", 0.0, 5.0, 1, gap=0.0), _row("kernel", "k0", 6.0, 10.0, 1, device=0)]
    _, run = _run(tmp_path, rows, host_costs="profile")
    launch_us = load_profile("h100-sxm-pcie5").host.launch_us
    assert run.ops.set_index("name").loc["k0", "start_us"] == pytest.approx(launch_us)


def test_waits_are_inferred_when_the_recording_has_no_sync_events(tmp_path):
    # Side stream 9 copies; stream 7's kernel was launched early but started only when the copy ended.
    rows = [
        _row("call_memcpy", "cudaMemcpyAsync", 0.0, 5.0, 1, gap=0.0),
        _row(
            "copy_h2d",
            "Memcpy HtoD (Pinned -> Device)",
            6.0,
            1000.0,
            1,
            device=0,
            stream="9",
            nbytes=64 << 20,
            memory="pinned",
        ),
        _row("call_launch", "cudaLaunchKernel", 10.0, 5.0, 2, gap=0.0),
        _row("kernel", "k", 1006.0, 100.0, 2, device=0),
        _row("call_sync_device", "cudaDeviceSynchronize", 20.0, 1090.0, 3, gap=5.0),
    ]
    program, run = _run(tmp_path, rows)
    assert program.inferred_waits == 1 and not program.sync_events
    ops = run.ops.set_index("name")
    copy_end = ops.loc["Memcpy HtoD (Pinned -> Device)", "end_us"]
    assert ops.loc["k", "start_us"] == pytest.approx(copy_end)  # held by the inferred wait
    assert set(run.ops["kind"]) >= {"record", "wait", "copy_h2d", "kernel", "host_sync"}


def test_a_graph_launch_is_one_host_call_and_its_kernels_run_with_the_profile_gap(tmp_path):
    rows = [_row("call_graph_launch", "cudaGraphLaunch", 0.0, 40.0, 1, gap=0.0)]
    rows += [_row("kernel", f"g{i}", 40.0 + i * 2.5, 2.0, 1, device=0) for i in range(4)]
    rows += [_row("call_sync_stream", "cudaStreamSynchronize", 41.0, 50.0, 2, gap=1.0)]
    _, run = _run(tmp_path, rows, profile="h200-measured", graph_timing="profile")
    kernels = run.ops[run.ops["kind"] == "kernel"].sort_values("start_us")
    gap = load_profile("h200-measured").device.graph_kernel_gap_us
    assert len(kernels) == 4 and set(kernels["issue_us"]) == {0.0}
    assert kernels["start_us"].iloc[0] == pytest.approx(40.0)  # the recorded 40 µs launch call, then the kernels
    assert kernels["start_us"].diff().dropna().tolist() == pytest.approx([2.0 + gap] * 3)


def _backup_graph_steps(steps: int, kernels: int = 20, into_us: float = 20.0, call_us: float = 200.0) -> list[dict]:
    """A CUDA-graph decode loop with a per-step backup, as the profiler records a big graph (decode_graph_gpu_backup):
    each step's ``cudaGraphLaunch`` lasts ``call_us`` but its kernels start ``into_us`` after the call starts (the
    first launch also uploads the graph: 400 µs more before its kernels start); then the D2H copy of the step's K/V
    rows behind the graph, and a stream sync."""
    rows, t, corr = [], 0.0, 1
    for step in range(steps):
        group = f"step{step}"
        upload = 400.0 if step == 0 else 0.0
        rows.append(_row("call_graph_launch", "cudaGraphLaunch", t, call_us + upload, corr, gap=10.0, group=group))
        first = t + upload + into_us
        for j in range(kernels):
            start = first + j * 10.5
            rows.append(_row("kernel", f"g{j}", start, 10.0, corr, device=0, group=group, launch_us=t))
        graph_end = first + kernels * 10.5 - 0.5
        copy_call = t + upload + call_us + 2.0
        rows.append(_row("call_memcpy", "cudaMemcpyAsync", copy_call, 5.0, corr + 1, gap=2.0, nbytes=1 << 20,
                         group=group))  # fmt: skip
        copy_start = max(graph_end + 3.0, copy_call + 5.0)
        rows.append(_row("copy_d2h", "Memcpy DtoH (Device -> Pinned)", copy_start, 40.0, corr + 1, device=0,
                         nbytes=1 << 20, memory="pinned", group=group, launch_us=copy_call))  # fmt: skip
        sync_call = copy_call + 5.0 + 2.0
        sync_end = copy_start + 40.0 + 7.0  # the wake after the copy (the H100 profile: 7.15 µs)
        rows.append(_row("call_sync_stream", "cudaStreamSynchronize", sync_call, sync_end - sync_call, corr + 2,
                         gap=2.0, group=group))  # fmt: skip
        t, corr = sync_end + 10.0, corr + 3
    return rows


def test_a_graph_that_starts_inside_its_launch_call_is_issued_there(tmp_path):
    """A big CUDA graph under the profiler starts on the GPU ~19 µs into a ~211 µs cudaGraphLaunch (the gpu-size
    corpus decoder). With a sync a step the launch is on the critical path: issued at the call's end, as_recorded
    of decode_graph_gpu_backup was +7.8% of its recording (190 µs a step late); issued where the recording shows the
    GPU had the graph, with the rest of the call as host time after it, it is within 1%."""
    rows = _backup_graph_steps(8)
    program, run = _run(tmp_path, rows, profile="h100")
    timing = program.graph_timing
    assert timing.issued_in_call_us == pytest.approx(20.0) and timing.lead_in_us == 0.0
    assert timing.call_after_issue_us == pytest.approx(180.0)
    assert run.ops["end_us"].max() == pytest.approx(program.recorded_span_us, rel=0.01)
    ops = run.ops
    rest = ops[ops["name"] == GRAPH_LAUNCH_REST]
    assert len(rest) == 8 and rest["end_us"].sub(rest["start_us"]).iloc[1:].tolist() == pytest.approx([180.0] * 7)
    # the first launch (the upload: 600 µs, its kernels 420 µs in) keeps its last 180 µs after the issue
    assert rest["end_us"].sub(rest["start_us"]).iloc[0] == pytest.approx(180.0)
    # the call-by-call reference issues the same (steps.py and reissue.py split the launch alike)
    legacy = run_policy(SimBackend(load_profile("h100")), reissue, program, AsRecordedParams())
    pd.testing.assert_frame_equal(legacy.ops, run.ops, check_exact=True)
    # a recording whose graphs start after their calls return (smaller graphs) is not split
    small = _backup_graph_steps(4, into_us=206.0, call_us=200.0)
    program, run = _run(tmp_path, small, profile="h100")
    assert program.graph_timing.issued_in_call_us is None and program.graph_timing.lead_in_us == pytest.approx(6.0)
    assert not (run.ops["name"] == GRAPH_LAUNCH_REST).any()


def test_min_kernel_us_lengthens_short_kernels_on_every_backend(tmp_path):
    rows = [_row("call_launch", "cudaLaunchKernel", 0.0, 5.0, 1, gap=0.0), _row("kernel", "k0", 6.0, 0.9, 1, device=0)]
    _, run = _run(tmp_path, rows, min_kernel_us=3.0)
    k = run.ops.set_index("name").loc["k0"]
    assert k["end_us"] - k["start_us"] == pytest.approx(3.0)


def test_spec_refuses_a_trace_that_is_not_an_imported_recording(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "r"\nprofile = "h100"\n[workload]\nkind = "recorded"\n'
        'trace = "%s"\n[[policies]]\nname = "as_recorded"\n'
        % (TRACES_DIR / "layer_streaming" / "dit_9seg_synthetic.parquet")
    )
    result = runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "not an imported profiler trace" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- CLI: import and export


def test_cli_imports_a_recording_and_exports_a_run_to_perfetto(tmp_path):
    source = TRACES_DIR / "recorded" / "layers_sync-sync.json.gz"
    out = tmp_path / "layers.parquet"
    result = runner.invoke(app, ["trace", "import", str(source), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert load_trace(out).ops.equals(load_trace(TRACES_DIR / "recorded" / "layers_sync-sync.parquet").ops)
    again = runner.invoke(app, ["trace", "import", str(source), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output

    spec = tmp_path / "s.toml"
    spec.write_text(
        f'name = "r"\nprofile = "h200"\n[workload]\nkind = "recorded"\ntrace = "{out}"\n'
        '[[policies]]\nname = "as_recorded"\n'
    )
    assert runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "res")]).exit_code == 0
    perfetto = tmp_path / "run.json"
    result = runner.invoke(
        app, ["export", "perfetto", str(tmp_path / "res"), "--run", "as_recorded", "--out", str(perfetto)]
    )
    assert result.exit_code == 0, result.output
    back = import_to_parquet(perfetto, tmp_path / "back.parquet").ops
    sim_ops = pd.read_parquet(tmp_path / "res" / "ops.parquet")
    assert (back["kind"] == "kernel").sum() == (sim_ops["kind"] == "kernel").sum()


# --------------------------------------------------------------------------- recordings by others


@pytest.mark.parametrize("path", KINETO_FILES, ids=lambda p: p.name.split(".")[0])
def test_public_kineto_traces_simulate_as_recorded(tmp_path, path):
    trace = tmp_path / "t.parquet"
    imported = import_to_parquet(path, trace, device=None if "rank" not in path.name else 0)
    assert len(imported.devices) == 1, imported.devices
    # The MI250 trace's one GPU is device 2: the simulated machine has as many GPUs as that needs.
    n_gpus = int(imported.ops["device"].max()) + 1
    program = build_program(load_trace(trace).ops, str(path))
    run = run_policy(SimBackend(load_profile("h100-sxm-pcie5"), n_gpus), as_recorded, program, AsRecordedParams())
    makespan = float(run.ops["end_us"].max())
    assert makespan > 0
    # Recorded on other GPUs with other copy speeds: the simulation is checked for sanity, not fidelity.
    assert 0.2 < makespan / program.recorded_span_us < 5.0


# --------------------------------------------------------------------------- what-ifs


def test_what_ifs_predict_the_real_programs_from_other_recordings():
    # Sim of the what-if on one recording against the recorded span of the program that does it for real
    # (traces/recorded/README.md): async D2H within the issue's 5% (+4.0%: each batch pays the side-stream hand-off,
    # 63 µs measured on this pair, but the real program's kernel launches also ran 3% faster, 1,584 vs 1,660 µs of
    # launch gaps and calls a step, which no what-if models); prefetch -7.8%, below: the same matrix product
    # ran 6% longer in the real program's recording (703 vs 663 µs a kernel, copy beside it or not).
    spans = {
        p: _sim_spec(SPECS_DIR / f"recorded_{p}.toml").loc["as_recorded", "recorded_makespan_us"]
        for p in ("layers_prefetch", "decode_async")
    }
    prefetch = _sim_spec(SPECS_DIR / "whatif_layers_prefetch.toml").loc["prefetch_copies", "makespan_us"]
    backup = _sim_spec(SPECS_DIR / "whatif_decode_async.toml").loc["async_d2h", "makespan_us"]
    assert 0.90 * spans["layers_prefetch"] < prefetch < spans["layers_prefetch"]
    assert backup == pytest.approx(spans["decode_async"], rel=0.05)


def test_graph_launch_removes_the_per_kernel_host_time(tmp_path):
    loaded = load_spec(SPECS_DIR / "whatif_decode_graph.toml")
    program = loaded.workload.prepare(loaded.prepare_context())
    from workloads.recorded.whatif import graph_launch

    graphs = graph_launch(program)
    launches = [c for c in program.threads[0].calls if c.kind == "call_launch"]
    captured = [c for c in graphs.threads[0].calls if c.kind == "call_graph_launch"]
    assert len(captured) == 24  # one per step
    assert sum(len(c.ops) for c in captured) == sum(len(c.ops) for c in launches) + 24  # + each step's D2D state copy
    assert all(c.synthetic for c in captured)


@pytest.mark.parametrize(
    ("policy", "trace", "looked_for"),
    [
        ("prefetch_copies", "decode_inline-sync", "host-to-device copies"),
        ("async_d2h", "layers_sync-sync", "device-to-host copy"),
        ("scale_kernels", "layers_sync-sync", "no kernel name matches 'nothing-like-this'"),
    ],
)
def test_a_what_if_that_does_not_apply_is_refused_before_running(tmp_path, policy, trace, looked_for):
    spec = tmp_path / "s.toml"
    extra = 'factors = { "nothing-like-this" = 2.0 }\n' if policy == "scale_kernels" else ""
    spec.write_text(
        f'name = "w"\nprofile = "h200"\n[workload]\nkind = "recorded"\n'
        f'trace = "{TRACES_DIR / "recorded" / trace}.parquet"\n'
        f'[[policies]]\nname = "as_recorded"\n[[policies]]\nname = "{policy}"\n{extra}'
    )
    result = runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out")])
    message = " ".join(result.output.split())
    assert result.exit_code == 2, message
    assert "s.toml" in message and policy in message and looked_for in message
    assert not (tmp_path / "out").exists()


def test_a_recording_as_a_run_is_on_the_simulations_clock_and_compares_with_it(tmp_path):
    spec = SPECS_DIR / "recorded_layers_prefetch.toml"
    result = runner.invoke(app, ["trace", "as-run", str(spec), "--out", str(tmp_path / "rec")])
    assert result.exit_code == 0, result.output
    assert runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "sim")]).exit_code == 0
    rec = pd.read_parquet(tmp_path / "rec" / "metrics.parquet").query("item == -1").set_index("metric")["value"]
    assert rec["makespan_us"] == pytest.approx(rec["recorded_makespan_us"])  # the same program start
    runs = pd.read_parquet(tmp_path / "rec" / "runs.parquet")
    assert runs["backend"].tolist() == ["recording"] and runs["device_name"].tolist() == ["NVIDIA H200"]
    ops = pd.read_parquet(tmp_path / "rec" / "ops.parquet")
    assert {"s7", "s13"} <= set(ops["stream"])  # the same lane names as the simulation's
    out = tmp_path / "fidelity.parquet"
    result = runner.invoke(app, ["compare", str(tmp_path / "rec"), str(tmp_path / "sim"), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out).set_index(["policy_label", "metric"])
    assert table.loc[("as_recorded", "makespan_us"), "rel_error"] == pytest.approx(-0.0104, abs=0.002)
    again = runner.invoke(
        app, ["trace", "as-run", str(SPECS_DIR / "layer_streaming_demo.toml"), "--out", str(tmp_path / "x")]
    )
    assert again.exit_code == 2 and "recorded spec" in again.output


def test_step_program_is_made_once_while_it_lives_and_freed_with_its_run():
    """The policies cache a program's steps weakly: the same object while a run holds it, made again after."""
    import gc
    import weakref

    from workloads.recorded.policies import step_program_for

    program = build_program(load_trace(TRACES_DIR / "recorded" / "decode_inline.parquet").ops, "decode_inline")

    class _Rt:
        profile = load_profile("h200")

    made = step_program_for(_Rt(), program, AsRecordedParams())
    assert step_program_for(_Rt(), program, AsRecordedParams()) is made  # found while it lives
    assert step_program_for(_Rt(), program, AsRecordedParams(min_kernel_us=4.0)) is not made  # other parameters
    dropped = weakref.ref(made)
    steps_count = made.steps_count
    del made
    gc.collect()
    assert dropped() is None  # nothing but the run held it
    again = step_program_for(_Rt(), program, AsRecordedParams())
    assert again.steps_count == steps_count
