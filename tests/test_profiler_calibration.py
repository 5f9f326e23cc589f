"""The profiler calibration: its least-squares fit, spreads, storage in a profile, and (with torch on CPU) one round."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import tomllib
from pathlib import Path

import numpy as np
import pytest

from harness.profile import HardwareProfile, Profile, ProfilerCalibration, Spread, load_profile
from harness.profiler_fit import ShapeTiming, compare_calibrations, fit_overheads, nnls, summarize
from replay.calibrate import write_profile
from replay.profiler_calibration import CPU_SHAPES, PASSES, STEPS, profile_with_calibration

ROOT = Path(__file__).resolve().parent.parent
TRUE_US = {"aten_op": 1.5, "runtime_call": 4.0, "range": 6.0, "graph_launch": 30.0, "graph_kernel": 0.8}
COUNTS = {
    "launch": {"aten_op": 320, "runtime_call": 65},
    "views": {"aten_op": 104, "runtime_call": 9},
    "composite": {"aten_op": 160, "runtime_call": 33},
    "ranges": {"aten_op": 160, "runtime_call": 33, "range": 32},
    "graph16": {"runtime_call": 2, "graph_launch": 1, "graph_kernel": 16},
    "graph96": {"runtime_call": 2, "graph_launch": 1, "graph_kernel": 96},
}


def _round(noise_us: float, rng: np.random.Generator, truth: dict[str, float] = TRUE_US) -> list[ShapeTiming]:
    out = []
    for shape, counts in COUNTS.items():
        base = 400.0 + 10 * len(shape)
        added = sum(n * truth[k] for k, n in counts.items())
        out.append(ShapeTiming(shape, base, base + added + rng.normal(0, noise_us), counts))
    return out


UNCALIBRATED = "h200"  # a bundled profile without a profiler calibration (the H100's has one since 2026-12-07)


def test_fit_recovers_each_kind_of_overhead_from_exact_timings():
    fit = fit_overheads(_round(0.0, np.random.default_rng(0)))
    assert fit.overhead_us == pytest.approx(TRUE_US, abs=1e-6)
    assert all(abs(r) < 1e-6 for r in fit.residual_us.values())


def test_fit_never_reports_a_negative_overhead_and_leaves_out_kinds_no_shape_has():
    rng = np.random.default_rng(1)
    timings = [t for t in _round(0.0, rng, {**TRUE_US, "range": -2.0}) if not t.shape.startswith("graph")]
    fit = fit_overheads(timings)
    assert set(fit.overhead_us) == {"aten_op", "runtime_call", "range"}  # no graph shape: no graph figures
    assert fit.overhead_us["range"] == 0.0 and min(fit.overhead_us.values()) >= 0.0


def test_nnls_matches_unconstrained_least_squares_when_that_is_non_negative():
    rng = np.random.default_rng(2)
    a = rng.uniform(1, 10, (8, 3))
    b = a @ np.array([1.0, 2.0, 3.0]) + rng.normal(0, 0.01, 8)
    assert nnls(a, b) == pytest.approx(np.linalg.lstsq(a, b, rcond=None)[0])


def test_summary_is_the_median_over_rounds_with_half_the_interquartile_range_as_spread():
    rng = np.random.default_rng(3)
    rounds = [_round(5.0, rng) for _ in range(9)]
    calibration, text = summarize(rounds, {"call_launch": [7.0, 9.0, 8.0]}, "2.11.0", "2026-12-07")
    per_round = [fit_overheads(r).overhead_us["runtime_call"] for r in rounds]
    q25, q50, q75 = np.percentile(per_round, [25, 50, 75])
    assert calibration.overhead["runtime_call"].median_us == pytest.approx(q50, abs=1e-3)
    assert calibration.overhead["runtime_call"].spread_us == pytest.approx((q75 - q25) / 2, abs=1e-3)
    assert calibration.floor_us == {"call_launch": 8.0} and calibration.rounds == 9
    for kind, true in TRUE_US.items():  # 5 µs of noise per shape step: each figure near the truth
        assert calibration.overhead[kind].median_us == pytest.approx(true, abs=max(0.5, true * 0.25))
    assert "graph96" in text and "fit residual" in text


def test_two_calibrations_agree_when_their_medians_differ_by_less_than_their_spreads():
    def cal(median: float, spread: float) -> dict[str, ProfilerCalibration]:
        return {
            "cpu_cuda": ProfilerCalibration(
                torch="2.11", date="d", rounds=9, overhead={"aten_op": Spread(median_us=median, spread_us=spread)},
                floor_us={},
            )
        }

    (same,) = compare_calibrations(cal(2.0, 0.3), cal(2.5, 0.3))
    (apart,) = compare_calibrations(cal(2.0, 0.1), cal(2.5, 0.1))
    assert same.agrees is True and apart.agrees is False and apart.difference_us == pytest.approx(0.5)


def _result() -> dict:
    rng = np.random.default_rng(4)
    floors = {"call_launch": [6.5], "call_graph_launch": [9.0]}
    calibration, _ = summarize([_round(1.0, rng) for _ in range(3)], floors, "2.11.0+cu130", "2026-12-07")
    host = {
        "launch_us": 6.5, "graph_launch_us": 9.0, "copy_launch_us": 8.0, "record_us": 2.0, "wait_us": 1.5,
        "sync_wake_us": 3.0, "alloc_us": 4.0, "free_us": 2.0,
    }  # fmt: skip
    return {"calibrations": {"cpu_cuda": calibration}, "host_costs_us": host}


def test_a_calibrated_profile_is_written_read_back_and_charges_eager_calls_its_own_costs(tmp_path):
    base = load_profile(UNCALIBRATED)
    raw = tomllib.loads(base.path.read_text())
    path = write_profile(profile_with_calibration(raw, _result(), base.host.thread_wake_us), tmp_path / "p.toml")
    loaded = load_profile(path)
    assert loaded.host == base.host  # the replay engine's costs are untouched
    assert loaded.pytorch_eager_measured and not base.pytorch_eager_measured
    assert loaded.program_call_cost_us("call_launch") == 6.5
    assert loaded.program_call_cost_us("call_graph_launch") == 9.0
    assert loaded.program_call_cost_us("record") == 2.0
    assert base.program_call_cost_us("call_launch") == base.host.launch_us  # no eager figures: the engine's
    calibration = loaded.profiler_calibration("cpu_cuda")
    assert calibration.overhead_us("graph_kernel") == pytest.approx(TRUE_US["graph_kernel"], abs=0.2)
    assert calibration.floor_us["call_graph_launch"] == 9.0
    assert loaded.profiler_calibration("cuda") is None
    with pytest.raises(KeyError, match="no host cost"):
        loaded.program_call_cost_us("call_teleport")


def test_host_cost_kinds_load_from_named_tables_and_older_profiles_still_load():
    raw = tomllib.loads(load_profile(UNCALIBRATED).path.read_text())
    named = {k: v for k, v in raw.items() if k != "host"}
    named["host_costs"] = {"replay_engine": raw["host"], "pytorch_eager": raw["host"]}
    figures = HardwareProfile.model_validate(named)
    assert figures.host == figures.pytorch_eager_host == HardwareProfile.model_validate(raw).host
    with pytest.raises(ValueError, match="once"):
        HardwareProfile.model_validate({**raw, "host_costs": {"replay_engine": raw["host"]}})
    with pytest.raises(ValueError, match="unknown kind"):
        HardwareProfile.model_validate({**raw, "host_costs": {"python": raw["host"]}})
    with pytest.raises(ValueError, match="unknown profiler mode"):
        HardwareProfile.model_validate({**raw, "profiler": {"everything": _result()["calibrations"]["cpu_cuda"]}})
    assert Profile(HardwareProfile.model_validate(raw)).profiler_calibration("cpu_cuda") is None


def test_compare_tool_exits_zero_for_one_calibration_against_itself_and_two_without_one(tmp_path):
    base = load_profile(UNCALIBRATED)
    raw = tomllib.loads(base.path.read_text())
    path = write_profile(profile_with_calibration(raw, _result(), 0.0), tmp_path / "p.toml")
    repo = Path(__file__).resolve().parents[1]
    tool, env = repo / "tools" / "compare_profiler_calibrations.py", {**os.environ, "PYTHONPATH": str(repo)}
    same = subprocess.run([sys.executable, str(tool), str(path), str(path)], capture_output=True, text=True, env=env)
    assert same.returncode == 0, same.stderr
    assert "cpu_cuda" in same.stdout and "yes" in same.stdout and "NO" not in same.stdout
    none = subprocess.run(
        [sys.executable, str(tool), str(path), str(base.path)], capture_output=True, text=True, env=env
    )
    assert none.returncode == 2 and "no profiler mode" in none.stderr


@pytest.mark.torch
def test_one_round_on_the_cpu_counts_every_shapes_events_from_its_own_trace(tmp_path):
    from replay.profiler_calibration import run_round

    result = run_round("cpu_cuda", "cpu", tmp_path)
    shapes = {s["shape"]: s for s in result["shapes"]}
    assert set(shapes) == set(CPU_SHAPES) and PASSES >= 3 and all(STEPS[s] >= 20 for s in CPU_SHAPES)
    launch, views, ranges = shapes["launch"]["counts"], shapes["views"]["counts"], shapes["ranges"]["counts"]
    per_add = launch["aten_op"] / 64  # the aten ops of one tiny add on this torch (counted, not assumed)
    assert per_add >= 1 and per_add == int(per_add)
    assert views["aten_op"] == 8 * per_add + 64  # 64 views: one aten op each, and nothing else
    assert ranges["range"] == 32 and ranges["aten_op"] == 32 * per_add
    assert all(s["unprofiled_us"] > 0 and s["profiled_us"] > 0 for s in shapes.values())
    assert list(tmp_path.iterdir()) == []  # the exported trace is removed


def test_events_of_a_cuda_only_trace_are_counted_between_the_marker_kernels(tmp_path):
    from replay.profiler_calibration import count_events

    host = {"pid": 1, "tid": 1}

    def call(name, ts, corr):
        args = {"correlation": corr}
        return {"ph": "X", "cat": "cuda_runtime", "name": name, **host, "ts": ts, "dur": 2, "args": args}

    def kernel(name, ts, corr):
        return {"ph": "X", "cat": "kernel", "name": name, "pid": 0, "tid": 7, "ts": ts, "dur": 1,
                "args": {"correlation": corr}}  # fmt: skip

    events = [call("cudaLaunchKernel", 0, 1), kernel("at::cuda::spin_kernel(long)", 5, 1)]
    events += [call("cudaLaunchKernel", 10 + 10 * i, 10 + i) for i in range(4)]
    events += [call("cudaGraphLaunch", 60, 20)] + [kernel("k", 70 + i, 20) for i in range(3)]
    events += [call("cudaLaunchKernel", 100, 2), kernel("at::cuda::spin_kernel(long)", 105, 2)]
    events += [call("cudaLaunchKernel", 200, 30)]  # after the last marker: not counted
    path = tmp_path / "cuda_only.json"
    path.write_text(__import__("json").dumps({"traceEvents": events}))
    counts = count_events(path, ["launch"], {"launch": 2}, 1)["launch"]
    assert counts == {"aten_op": 0, "runtime_call": 2.5, "range": 0, "graph_launch": 0.5, "graph_kernel": 1.5,
                      "graph_launch_call_us": 2.0, "kernel_launch_call_us": 2.0}  # calls' durations, not counts


def test_the_cli_refuses_a_profiler_calibration_without_cuda_and_writes_nothing(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "p.toml"
    result = CliRunner().invoke(app, ["calibrate", "--profiler", "--name", "x", "--out", str(out)])
    if importlib.util.find_spec("torch") is not None:
        import torch

        if torch.cuda.is_available():
            pytest.skip("this machine has CUDA")
    assert result.exit_code == 2 and "calibrate --profiler" in result.output and "CUDA" in result.output
    assert not out.exists()


def test_the_parent_interleaves_modes_leaves_failed_rounds_out_and_keeps_every_round(tmp_path, monkeypatch):
    import replay.profiler_calibration as pc

    rng = np.random.default_rng(5)
    calls: list[str] = []

    def fake_spawn(args, workdir, log):
        mode = args[args.index("--mode") + 1]
        calls.append(mode)
        if len(calls) == 4:
            raise RuntimeError("calibration round failed (exit 1): boom")
        shapes = [
            {"shape": t.shape, "unprofiled_us": t.unprofiled_us, "profiled_us": t.profiled_us, "counts": t.counts}
            for t in _round(1.0, rng, {**TRUE_US, "aten_op": 1.5 if mode == "cpu_cuda" else 0.0})
        ]
        host = {"launch_us": 6.0, "graph_launch_us": 9.0, "copy_launch_us": 8.0, "record_us": 2.0, "wait_us": 1.0,
                "sync_wake_us": 3.0, "alloc_us": 4.0, "free_us": 2.0}  # fmt: skip
        return {"mode": mode, "device": "fake", "torch": "2.11", "host_costs_us": host, "shapes": shapes}

    monkeypatch.setattr(pc, "_spawn", fake_spawn)
    raw = tmp_path / "rounds.json"
    result = pc.calibrate_profiler(("cpu_cuda", "cuda"), 3, "cuda:0", log=lambda line: None, raw_path=raw)
    assert calls == ["cpu_cuda", "cuda", "cuda", "cpu_cuda", "cpu_cuda", "cuda"]  # order rotates each round
    assert len(result["failures"]) == 1 and "boom" in result["failures"][0]
    cals = result["calibrations"]
    assert (cals["cpu_cuda"].rounds, cals["cuda"].rounds) == (2, 3)
    assert cals["cpu_cuda"].overhead_us("aten_op") == pytest.approx(1.5, abs=0.3)
    assert cals["cpu_cuda"].floor_us["call_graph_launch"] == 9.0
    assert len(__import__("json").loads(raw.read_text())["rounds"]) == 5
    stopped = pc.calibrate_profiler(("cuda",), 9, "cuda:0", log=lambda line: None, budget_s=-1.0)
    assert stopped["calibrations"]["cuda"].rounds == 1  # the first round always runs; none after the budget


def test_a_check_shape_is_left_out_of_the_fit_and_gives_the_program_scale():
    rng = np.random.default_rng(5)
    block = {"aten_op": 200, "runtime_call": 60, "range": 1}  # a real program's events cost 1.3x the tight loops'
    rounds = []
    for _ in range(5):
        timings = _round(0.0, rng)
        added = 1.3 * sum(n * TRUE_US[k] for k, n in block.items())
        timings.append(ShapeTiming("block", 900.0, 900.0 + added + rng.normal(0, 2.0), block))
        rounds.append(timings)
    calibration, text = summarize(rounds, {}, "2.11.0", "2026-12-07", check_shapes=("block",))
    for kind, true in TRUE_US.items():  # the block did not pull the fitted figures
        assert calibration.overhead[kind].median_us == pytest.approx(true, abs=1e-6)
    assert calibration.program_scale.median == pytest.approx(1.3, abs=0.01)
    assert "block" in calibration.program_scale.source and "program scale 1.30" in text
    scale = calibration.program_scale.median
    assert calibration.compensation_us("runtime_call") == pytest.approx(scale * calibration.overhead_us("runtime_call"))
    assert calibration.compensation_us("graph_kernel") == calibration.overhead_us("graph_kernel")  # graphs unscaled
    unscaled, _ = summarize(rounds, {}, "2.11.0", "2026-12-07")  # fitted with the block: no scale
    assert unscaled.program_scale is None and unscaled.compensation_us("aten_op") == unscaled.overhead_us("aten_op")


def test_program_scale_takes_graph_events_as_predicted_and_needs_eager_events():
    from harness.profiler_fit import program_scale_of

    overhead = {"aten_op": 1.0, "runtime_call": 3.0, "graph_kernel": 0.5}
    mixed = ShapeTiming("s", 100.0, 100.0 + 2 * (10 * 1.0 + 5 * 3.0) + 40 * 0.5, {"aten_op": 10, "runtime_call": 5,
                                                                                    "graph_kernel": 40})
    assert program_scale_of(mixed, overhead) == pytest.approx(2.0)
    assert program_scale_of(ShapeTiming("g", 1.0, 30.0, {"graph_kernel": 40}), overhead) is None
    assert program_scale_of(ShapeTiming("fast", 100.0, 90.0, {"aten_op": 10}), overhead) == 0.0


def test_gpu_time_the_profiler_adds_to_a_graph_replay_is_fitted_per_replay_and_per_kernel():
    from harness.profiler_fit import fit_gpu_overheads

    def graph(kernels: int, added_us: float) -> ShapeTiming:
        counts = {"runtime_call": 2, "graph_launch": 1, "graph_kernel": kernels}
        return ShapeTiming(f"graph{kernels}", 100.0, 180.0, counts, 1.5 * kernels, 1.5 * kernels + added_us)

    rounds = [[*_round(0.0, np.random.default_rng(6)), graph(16, 2.0 + 16 * 0.2), graph(96, 2.0 + 96 * 0.2)]]
    rounds[0] = [t for t in rounds[0] if t.shape not in ("graph16", "graph96")] + rounds[0][-2:]
    fit = fit_gpu_overheads(rounds[0])
    assert fit == pytest.approx({"graph_launch": 2.0, "graph_kernel": 0.2})
    calibration, text = summarize(rounds, {}, "2.11.0", "2026-12-07")
    assert calibration.gpu_overhead["graph_kernel"].median_us == pytest.approx(0.2)
    assert "GPU time a replay 24.0 -> 29.2 µs profiled" in text
    assert fit_gpu_overheads(rounds[0][:-1]) is None  # one timed graph shape: nothing to fit
    untimed, _ = summarize([_round(0.0, np.random.default_rng(7))], {}, "2.11.0", "2026-12-07")
    assert untimed.gpu_overhead == {}


def test_the_side_stream_hand_off_is_measured_unprofiled_and_profiled_and_charged_from_the_profile(
    tmp_path, monkeypatch
):
    # Issue 24: async_d2h charges each batch the Python of the hand-off idiom ([host_costs.pytorch_eager]
    # stream_handoff_us) plus, predicting a profiled program, what the profiler adds to it ([profiler.<mode>]).
    import replay.profiler_calibration as pc
    from workloads.recorded.host_costs import stream_handoff_us
    from workloads.recorded.program import RecordedProgram

    rng = np.random.default_rng(7)
    handoff_profiled = {"cpu_cuda": 35.0, "cuda": 24.0}

    def fake_spawn(args, workdir, log):
        mode = args[args.index("--mode") + 1]
        shapes = [
            {"shape": t.shape, "unprofiled_us": t.unprofiled_us, "profiled_us": t.profiled_us, "counts": t.counts}
            for t in _round(1.0, rng)
        ]
        host = {"launch_us": 6.0, "graph_launch_us": 9.0, "copy_launch_us": 8.0, "record_us": 2.0, "wait_us": 1.0,
                "sync_wake_us": 3.0, "alloc_us": 4.0, "free_us": 2.0, "stream_handoff_us": 20.0}  # fmt: skip
        return {"mode": mode, "device": "fake", "torch": "2.11", "host_costs_us": host, "shapes": shapes,
                "stream_handoff_profiled_us": handoff_profiled[mode]}  # fmt: skip

    monkeypatch.setattr(pc, "_spawn", fake_spawn)
    result = pc.calibrate_profiler(("cpu_cuda", "cuda"), 2, "cuda:0", log=lambda line: None)
    cals = result["calibrations"]
    assert cals["cpu_cuda"].overhead_us("stream_handoff") == pytest.approx(15.0)
    assert cals["cuda"].overhead_us("stream_handoff") == pytest.approx(4.0)
    base = load_profile(UNCALIBRATED)
    raw = tomllib.loads(base.path.read_text())
    loaded = load_profile(write_profile(profile_with_calibration(raw, result, 0.0), tmp_path / "p.toml"))
    assert loaded.figures.pytorch_eager_host.stream_handoff_us == 20.0
    recording = RecordedProgram((), (), 1, 0.0, 1.0, (), True, 0, 0, "hand-made", profiler_mode="cpu_cuda")
    assert stream_handoff_us(recording, loaded, profiled=True) == pytest.approx(35.0)
    assert stream_handoff_us(recording, loaded, profiled=False) == pytest.approx(20.0)


def test_a_real_programs_graph_gives_the_gpu_figure_and_stays_out_of_both_fits():
    """graph_block (the block step as one CUDA graph): its replays' added GPU time per kernel is gpu_overhead."""
    rng = np.random.default_rng(7)
    rounds, per_kernel = [], [0.18, 0.21, 0.2, 0.19, 0.22]
    for x in per_kernel:
        timings = _round(0.0, rng)
        counts = {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 120}
        timings.append(ShapeTiming("graph_block", 300.0, 900.0, counts, 250.0, 250.0 + 120 * x))
        rounds.append(timings)
    with_block, text = summarize(rounds, {}, "2.11.0", "2026-12-07", gpu_check_shapes=("graph_block",))
    without, _ = summarize([r[:-1] for r in rounds], {}, "2.11.0", "2026-12-07")
    assert with_block.overhead == without.overhead  # its 600 µs of host time pulled no fitted figure
    assert with_block.gpu_overhead["graph_kernel"].median_us == pytest.approx(0.2, abs=1e-6)
    assert set(with_block.gpu_overhead) == {"graph_kernel"}
    assert "graph_block" in text and "GPU µs a kernel 0.200" in text
    if without.gpu_overhead:  # the tight graphs' fit is kept in the notes, not used
        assert "tight graphs' GPU fit (not used)" in text


def _fake_rounds(monkeypatch, seconds_a_round: list[float]):
    """calibrate_profiler with fake rounds that each take the given (fake) seconds."""
    import replay.profiler_calibration as pc

    rng = np.random.default_rng(11)
    clock = [0.0]

    def fake_spawn(args, workdir, log):
        mode = args[args.index("--mode") + 1]
        clock[0] += seconds_a_round[0]
        shapes = [
            {"shape": t.shape, "unprofiled_us": t.unprofiled_us, "profiled_us": t.profiled_us, "counts": t.counts}
            for t in _round(1.0, rng)
        ]
        host = {"launch_us": 6.0, "graph_launch_us": 9.0, "copy_launch_us": 8.0, "record_us": 2.0, "wait_us": 1.0,
                "sync_wake_us": 3.0, "alloc_us": 4.0, "free_us": 2.0}  # fmt: skip
        return {"mode": mode, "device": "fake GPU", "torch": "2.11", "host_costs_us": host, "shapes": shapes}

    monkeypatch.setattr(pc, "_spawn", fake_spawn)
    monkeypatch.setattr(pc.time, "monotonic", lambda: clock[0])
    return pc


def test_no_round_starts_that_would_end_after_the_budget(monkeypatch):
    pc = _fake_rounds(monkeypatch, [50.0])  # each mode's process 50 s: a round of two modes 100 s
    lines: list[str] = []
    result = pc.calibrate_profiler(("cpu_cuda", "cuda"), 9, "cuda:0", log=lines.append, budget_s=250.0)
    # after 2 rounds (200 s) a third would end at 300 s > 250 s: it is not started (it used to be, 200 < 250)
    assert result["calibrations"]["cuda"].rounds == 2
    assert any("stopping after 2 rounds" in line for line in lines)


def test_from_raw_refits_the_rounds_a_stopped_calibration_left_into_a_profile(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from harness.cli import app

    pc = _fake_rounds(monkeypatch, [1.0])
    raw = tmp_path / "rounds.json"
    measured = pc.calibrate_profiler(("cpu_cuda", "cuda"), 3, "cuda:0", log=lambda line: None, raw_path=raw)
    out = tmp_path / "refit.toml"
    args = ["calibrate", "--profiler", "--name", "refit", "--out", str(out), "--from-raw", str(raw),
            "--base-profile", UNCALIBRATED]  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    refit = load_profile(str(out))
    for mode in ("cpu_cuda", "cuda"):
        cal = refit.profiler_calibration(mode)
        assert cal is not None and cal.rounds == 3
        assert cal.overhead_us("aten_op") == pytest.approx(measured["calibrations"][mode].overhead_us("aten_op"))
    # a file that is not a --raw file is refused naming it, and nothing is written
    bad = tmp_path / "bad.json"
    bad.write_text('{"rounds": [{"mode": "cpu_cuda"}]}')
    out2 = tmp_path / "never.toml"
    args = ["calibrate", "--profiler", "--name", "x", "--out", str(out2), "--from-raw", str(bad)]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 2 and "bad.json: round 0 has no device" in result.output
    assert not out2.exists()


def test_a_graph_replay_timed_behind_held_gpu_work_gives_the_gpu_figure_and_says_so():
    """Timed with the GPU idle, a profiled replay's interval holds its cudaGraphLaunch's host time under CUPTI
    (here 1.1 µs a kernel more); the queued timing (the replay behind held GPU work) is the GPU's time alone and is
    the figure; the calibration says which timing it holds (gpu_timing)."""
    rng = np.random.default_rng(3)
    counts = {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 52}
    idle, queued = [], []
    for x in (0.18, 0.21, 0.2, 0.19, 0.22):
        timings = _round(0.0, rng)
        launch_us = 52 * 1.1  # the profiled launch's host time, in the idle interval only
        idle.append(timings + [ShapeTiming("graph_block", 98.0, 190.0, counts, 91.0, 91.0 + 52 * x + launch_us)])
        queued.append(timings + [ShapeTiming("graph_block", 98.0, 190.0, counts, 91.0, 91.0 + 52 * x + launch_us,
                                             88.0, 88.0 + 52 * x)])  # fmt: skip
    old, _ = summarize(idle, {}, "2.11.0", "2026-12-07", gpu_check_shapes=("graph_block",))
    new, text = summarize(queued, {}, "2.11.0", "2026-12-07", gpu_check_shapes=("graph_block",))
    assert old.gpu_overhead["graph_kernel"].median_us == pytest.approx(1.3, abs=1e-6) and old.gpu_timing == "idle"
    assert new.gpu_overhead["graph_kernel"].median_us == pytest.approx(0.2, abs=1e-6) and new.gpu_timing == "queued"
    assert "queued 88.0 -> 98.4 µs" in text
    assert ProfilerCalibration.model_validate(new.model_dump()).gpu_timing == "queued"  # survives the profile's TOML
    assert ProfilerCalibration.model_validate(old.model_dump(exclude={"gpu_timing"})).gpu_timing == ""  # older ones


def test_the_graph_probe_reads_each_launchs_kernels_and_call_time_and_refuses_without_cuda(tmp_path):
    spec = importlib.util.spec_from_file_location("graph_gpu_probe", ROOT / "tools" / "graph_gpu_probe.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    events = []
    for corr, (kernels, dur) in enumerate([(3, 80.0), (3, 90.0), (3, 200.0)]):
        events.append({"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 1000 * corr, "dur": dur,
                       "args": {"correlation": corr}})  # fmt: skip
        events += [{"ph": "X", "cat": "kernel", "name": "k", "ts": 1000 * corr + 300 + i, "dur": 1.0,
                    "args": {"correlation": corr}} for i in range(kernels)]  # fmt: skip
    events.append({"ph": "X", "cat": "kernel", "name": "hold", "ts": 5, "dur": 80, "args": {"correlation": 99}})
    trace = tmp_path / "t.json"
    trace.write_text(__import__("json").dumps({"traceEvents": events}))
    assert probe._trace_figures(trace) == {"graph_kernels": 3, "launch_call_profiled_us": 90.0}
    if importlib.util.find_spec("torch") is None:  # the CI box: no torch, so no CUDA: one line, exit 2
        command = [sys.executable, str(ROOT / "tools" / "graph_gpu_probe.py"), "--out", str(tmp_path / "o")]
        done = subprocess.run(command, capture_output=True, text=True)
        assert done.returncode == 2 and "no CUDA device" in done.stderr and not (tmp_path / "o").exists()
