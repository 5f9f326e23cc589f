"""The recording's host against the calibration's (compensation.host_speed): a slow-host recording is flagged.

The figure is the recording's median *simple call* (a kernel launch whose gap holds one aten op,
none in a CUDA-only recording, and nothing else) over the calibration's launch-shape call
(``floor_us.call_launch`` + ``aten_op`` + ``runtime_call``). Checked on the bundled H200 recording
of decode_inline against the same figure worked out from its op-trace columns.
"""

from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.paths import TRACES_DIR
from harness.profile import ProfilerCalibration, Spread
from harness.trace import load_trace
from workloads.recorded.compensation import (
    MIN_SIMPLE_CALLS,
    SLOW_HOST_RATIO,
    host_speed,
    simple_calls,
)
from workloads.recorded.program import ThreadProgram, build_program

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))

RECORDED = TRACES_DIR / "recorded"


def _calibration(floor: float | None = 5.0, aten: float = 1.0, call: float = 3.0) -> ProfilerCalibration:
    return ProfilerCalibration(
        torch="2.11.0",
        date="2026-12-07",
        rounds=9,
        overhead={
            "aten_op": Spread(median_us=aten, spread_us=0.1),
            "runtime_call": Spread(median_us=call, spread_us=0.1),
        },
        floor_us={} if floor is None else {"call_launch": floor},
    )


@pytest.fixture(scope="module")
def program():
    trace = load_trace(RECORDED / "decode_inline-sync.parquet")
    return build_program(trace.ops, "decode_inline-sync", trace.provenance.profiler_mode)


def _slower(program, factor: float):
    """The program with every recorded gap and call cost ``factor`` times as long (a slower host)."""
    threads = []
    for thread in program.threads:
        calls = tuple(replace(c, host_before_us=c.host_before_us * factor, duration_us=c.duration_us * factor)
                      for c in thread.calls)  # fmt: skip
        threads.append(ThreadProgram(thread.name, calls))
    return replace(program, threads=tuple(threads))


def test_simple_calls_are_launches_with_one_aten_op_and_nothing_else_in_their_gap():
    kind = np.array(["call_launch", "call_launch", "call_launch", "call_launch", "call_memcpy", "call_launch"])
    aten = np.array([1, 2, 1, 1, 1, 0])
    ranges = np.array([0, 0, 1, 0, 0, 0])
    folded = np.array([0, 0, 0, 1, 0, 0])
    assert simple_calls(kind, aten, ranges, folded, cuda_only=False).tolist() == [1, 0, 0, 0, 0, 0]
    assert simple_calls(kind, aten, ranges, folded, cuda_only=True).tolist() == [0, 0, 0, 0, 0, 1]


def test_the_ratio_is_the_median_simple_call_over_the_calibrated_one(program):
    ops = load_trace(RECORDED / "decode_inline-sync.parquet").ops
    calls = ops[ops["kind"] == "call_launch"]
    assert program.profiler_mode == "cpu_cuda_sync"
    speed = host_speed(program, _calibration(floor=5.0, aten=1.0, call=3.0))
    assert speed is not None and speed.calibrated_us == pytest.approx(9.0)
    assert speed.calls >= MIN_SIMPLE_CALLS and speed.calls <= len(calls)
    assert speed.ratio == pytest.approx(speed.recorded_us / 9.0)
    # the same figure from the calls' own columns: gap (with folded calls: none here) plus the call's time
    mine = [c.host_before_us + c.duration_us for t in program.threads for c in t.calls
            if c.kind == "call_launch" and c.gap_aten_ops == 1 and c.gap_ranges == 0 and c.gap_calls == 0]  # fmt: skip
    assert speed.recorded_us == pytest.approx(float(np.median(mine)))


def test_a_slower_host_scales_the_ratio_and_is_flagged_past_the_bar(program):
    calibration = _calibration()
    base = host_speed(program, calibration)
    # a calibration under which this recording sits just below the bar, then the same recording 1.2x slower
    at_bar = _calibration(floor=base.recorded_us / (SLOW_HOST_RATIO * 0.95) - 4.0)
    normal = host_speed(program, at_bar)
    assert normal.ratio == pytest.approx(SLOW_HOST_RATIO * 0.95) and not normal.slow
    slow = host_speed(_slower(program, 1.2), at_bar)
    assert slow.ratio == pytest.approx(normal.ratio * 1.2) and slow.slow


def test_no_figure_without_a_launch_floor_or_enough_simple_calls(program):
    assert host_speed(program, _calibration(floor=None)) is None
    few = []
    for thread in program.threads:
        kept, simple = [], 0
        for c in thread.calls:
            if c.kind == "call_launch" and c.gap_aten_ops == 1 and c.gap_ranges == 0 and c.gap_calls == 0:
                simple += 1
                if simple >= MIN_SIMPLE_CALLS:
                    c = replace(c, gap_aten_ops=2)
            kept.append(c)
        few.append(ThreadProgram(thread.name, tuple(kept)))
    assert host_speed(replace(program, threads=tuple(few)), _calibration()) is None


def test_the_corpus_summary_names_flagged_recordings_and_gives_the_family_without_them():
    from corpus_table import summary

    programs = pd.DataFrame(
        {
            "program": ["decode_eager_host", "decode_eager_host_backup", "decode_graph_host", "layers_small"],
            "mode": ["sync"] * 4,
            "error_vs_recording": [0.0, 0.0, 0.0, 0.0],
            "error_vs_unprofiled": [0.02, 0.9, -0.04, 0.1],
            "host_vs_calibration": [1.3, 1.9, np.nan, np.nan],
            "host_slow": [False, True, False, False],
        }
    )
    pairs = pd.DataFrame(columns=["mode", "predicted_change"])
    lines = summary(programs, pairs)
    assert any("decoder family only: median |error| 4.0%, worst 90.0% (3 recordings)" in x for x in lines)
    assert any("much slower than the calibration's" in x and "decode_eager_host_backup (1 recordings)" in x
               for x in lines)  # fmt: skip
    assert any("without the flagged recordings: median |error| 3.0%, worst 4.0% (2 recordings)" in x for x in lines)


# --------------------------------------------------------------------------- overheads scaled to the recording host


def test_recording_host_scale_multiplies_the_eager_overheads_by_the_ratio(program):
    from workloads.recorded.compensation import scaled_to, without_profiler_overhead

    calibration = _calibration(floor=1.0, aten=0.2, call=0.5)  # small figures: no call is clamped at its floor
    speed = host_speed(program, calibration)
    scaled = scaled_to(calibration, speed)
    assert scaled.compensation_us("aten_op") == pytest.approx(0.2 * speed.ratio)
    assert scaled.compensation_us("runtime_call") == pytest.approx(0.5 * speed.ratio)
    assert scaled_to(calibration, None) is calibration
    _, plain = without_profiler_overhead(program, calibration)
    _, by_host = without_profiler_overhead(program, scaled)
    assert by_host == pytest.approx(plain * speed.ratio, rel=1e-9)
    # a recording 1.2x slower (same events) has 1.2x the ratio, and 1.2x the overhead is taken out
    slower = _slower(program, 1.2)
    _, slower_removed = without_profiler_overhead(slower, scaled_to(calibration, host_speed(slower, calibration)))
    assert slower_removed == pytest.approx(by_host * 1.2, rel=1e-9)


def test_runs_scale_by_the_recording_host_by_default_and_by_the_calibration_when_asked(tmp_path):
    from harness.profile import ProgramScale, load_profile
    from harness.runner import run_spec
    from harness.spec import load_spec
    from sim import SimBackend

    calibration = _calibration(floor=1.0, aten=0.2, call=0.5).model_copy(
        update={"program_scale": ProgramScale(median=1.0, spread=0.0, source="test")}
    )
    h200 = load_profile("h200")
    profile = type(h200)(h200.figures.model_copy(update={"profiler": {"cpu_cuda_sync": calibration}}))
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "r"\nprofile = "h200"\nrepetitions = 1\n[workload]\nkind = "recorded"\n'
        f'trace = "{RECORDED / "decode_inline-sync.parquet"}"\n'
        '[[policies]]\nname = "as_recorded"\nlabel = "host"\nprofiler_overhead = "subtract"\n'
        '[[policies]]\nname = "as_recorded"\nlabel = "cal"\nprofiler_overhead = "subtract"\n'
        'overhead_scale = "calibration"\n'
    )
    results = run_spec(load_spec(spec), lambda s, rep: SimBackend(profile, 1, s.device_memory_bytes, seed=rep))
    assert results.failed.empty
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    table = m[m["item"] == -1].pivot_table(index="policy_label", columns="metric", values="value")
    ratio = table.loc["host", "recording_host_vs_calibration"]
    assert ratio == pytest.approx(table.loc["cal", "recording_host_vs_calibration"]) and ratio > 1.0
    assert table.loc["host", "recording_host_slow"] == float(ratio > SLOW_HOST_RATIO)
    removed_host, removed_cal = (table.loc[x, "profiler_overhead_removed_us"] for x in ("host", "cal"))
    assert removed_host == pytest.approx(removed_cal * ratio, rel=1e-6)
    assert table.loc["host", "makespan_us"] < table.loc["cal", "makespan_us"]


def test_harness_sim_warns_below_its_table_about_a_slow_host_recording(tmp_path):
    """The notes ``harness sim`` prints: a warning for a compensated run whose recording was flagged, none else."""
    from harness.profile import load_profile
    from harness.runner import run_spec
    from harness.spec import load_spec
    from sim import SimBackend
    from workloads.recorded.metrics import notes

    h200 = load_profile("h200")

    def results(floor: float):
        calibration = _calibration(floor=floor, aten=0.2, call=0.5)
        profile = type(h200)(h200.figures.model_copy(update={"profiler": {"cpu_cuda_sync": calibration}}))
        spec = tmp_path / f"spec{floor}.toml"
        spec.write_text(
            f'name = "r"\nprofile = "h200"\nrepetitions = 1\n[workload]\nkind = "recorded"\n'
            f'trace = "{RECORDED / "decode_inline-sync.parquet"}"\n'
            '[[policies]]\nname = "as_recorded"\n'
            '[[policies]]\nname = "as_recorded"\nlabel = "unprofiled"\nprofiler_overhead = "subtract"\n'
        )
        return run_spec(load_spec(spec), lambda s, rep: SimBackend(profile, 1, s.device_memory_bytes, seed=rep))

    program = build_program(load_trace(RECORDED / "decode_inline-sync.parquet").ops, "x", "cpu_cuda_sync")
    recorded = host_speed(program, _calibration()).recorded_us
    slow = notes(results(floor=recorded / (2 * SLOW_HOST_RATIO) - 0.7).tables)  # the ratio 2x the bar
    assert [x for x in slow if "WARNING" in x] == [slow[-1]] and slow[-1].startswith("unprofiled: WARNING")
    assert f"took {2 * SLOW_HOST_RATIO:.2f}x" in slow[-1] and "record again" in slow[-1]
    ordinary = notes(results(floor=recorded - 0.7).tables)  # the ratio 1
    assert not [x for x in ordinary if "WARNING" in x]
