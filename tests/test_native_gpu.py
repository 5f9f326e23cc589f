"""The native executor on a real CUDA GPU (skipped without torch, CUDA or nvcc; run by tools/gpu_native_check.sh)."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest

from harness.backend import ops_frame
from harness.paths import SPECS_DIR
from harness.runner import prepare_spec
from harness.spec import load_spec
from replay.native.steps import STATUS_OK, Kind, NativeProgram, Op, empty_steps
from replay.native.twin import hold_overshoots_ns, rule_breaks

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
    pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc to build the executor"),
]


@pytest.fixture(scope="module")
def runner():
    from replay.native.executor import NativeRunner

    return NativeRunner(0)


def test_calibration_is_sane(runner):
    cal = runner.calibration
    assert cal.sms > 0 and 0.5 < cal.floor_us < 10.0
    assert all(-5.0 < o < 20.0 for o in cal.overhead_us), cal


def test_kernels_keep_their_durations_and_calls_keep_the_rules(runner):
    n = 400
    steps = empty_steps(n + 1)
    steps["op"][:n] = Op.KERNEL
    steps["kind"][:n] = Kind.LATENCY
    steps["grid"][:n] = 1
    durations_us = np.tile([20.0, 50.0, 100.0, 200.0], n // 4)
    steps["timer_ns"][:n] = [runner.calibration.timer_ns(Kind.LATENCY, d) for d in durations_us]
    steps["gap_ns"][:n] = 150_000  # idle GPU between kernels: each runs alone
    steps["call_ns"][:n] = 8000
    steps["op"][n] = Op.SYNC_STREAM
    program = NativeProgram([steps], streams=1, events=1)
    outs = runner.lib.run(program)
    out = outs[0]
    assert (out["status"] == STATUS_OK).all()
    measured = (out["gpu_end_ns"][:n] - out["gpu_start_ns"][:n]) / 1e3
    # in-kernel stamps span the kernel's own run: its timer (the duration less the kind's back-to-back overhead)
    timers_us = steps["timer_ns"][:n] / 1e3
    assert np.median(np.abs(measured - timers_us)) < 1.5, measured[:8]
    assert (measured <= durations_us + 2.0).all()
    # the exact rules hold; the call after its hold is timing, which an interrupt of the host breaks (27 µs once in
    # 400 calls on the H100): bounded like pacing lateness, median and p99 (at most 4 of the 400 calls later than 3 µs)
    assert rule_breaks(program, outs, est0_ns=2000, slack_ns=None) == []
    overshoot_us = hold_overshoots_ns(program, outs, est0_ns=2000) / 1e3
    print(f"calls after their hold: median {np.median(overshoot_us):.2f} µs, worst {np.sort(overshoot_us)[-5:]}")
    assert np.median(overshoot_us) < 1.0 and np.count_nonzero(overshoot_us > 3.0) <= n // 100
    lateness = out["begin_ns"][:n] - out["target_ns"][:n]
    # the median only: a p99 over 400 launches is their 4th worst, one scheduler hiccup (8.7 µs on the H100);
    # issue 23 sets lateness p99 over 10,000 launches (the next test)
    assert np.median(lateness) < 1000
    # each kernel reaches the GPU about when its recorded call cost is up (8 µs after it began)
    reach = (out["gpu_start_ns"][:n] - out["begin_ns"][:n]) / 1e3
    assert 4.0 < np.median(reach) < 14.0


@pytest.mark.parametrize("gap_us", [5, 15])
def test_paced_launches_meet_issue_23s_lateness_over_10000_launches(runner, gap_us):
    from replay.native.probe import TARGETS, probe_program, summarize

    n = 10_000
    program = probe_program(n, gap_us * 1000)
    runner.lib.run(program)  # warm-up, as the probe
    out = runner.lib.run(program)[0]
    s = summarize(out, n)
    print(f"gap {gap_us} µs, {runner.lib.launch_api} launches, threads {runner.lib.placement}: {s}")
    assert s["late_median_us"] <= TARGETS["late_median_us"] and s["late_p99_us"] <= TARGETS["late_p99_us"], s


def test_kernels_go_out_packed_through_the_driver_from_threads_pinned_to_cpus_of_their_own(runner, monkeypatch):
    from replay.native.probe import probe_program

    assert (runner.lib.launch_api, runner.lib.launch_note) == ("packed", "")
    monkeypatch.delenv("HARNESS_NATIVE_CPUS", raising=False)
    runner.lib.run(probe_program(10, 5000))
    assert runner.lib.placement == ("pinned" if len(os.sched_getaffinity(0)) > 1 else "unpinned")


def test_a_graph_launched_alone_takes_longer_than_back_to_back(runner):
    """Alone, a graph pays the GPU's own lead-in and tail (and the host's poll); back to back they overlap."""
    n = 32
    index = runner.lib.graph([int(Kind.LATENCY)] * n, [1] * n, [2000] * n)
    runner.lib.time_graph_ns(index, reps=3)
    back_to_back, alone = runner.lib.time_graph_ns(index, reps=10), runner.lib.time_graph_alone_ns(index)
    print(f"graph of {n} 2 µs stand-ins: {back_to_back / 1e3:.1f} µs back to back, {alone / 1e3:.1f} µs alone")
    assert n * 2000 <= back_to_back < alone < back_to_back + 50_000


def test_a_program_given_its_start_paces_its_first_step_from_it(runner):
    import time

    steps = empty_steps(2)
    steps["op"][0], steps["kind"][0], steps["grid"][0], steps["timer_ns"][0] = Op.KERNEL, Kind.LATENCY, 1, 5000
    # the set-up before the threads run is taken from this first gap: 0.35-0.55 ms on the lent H100/H200s
    # (2026-12-07; 400 µs left the first step 22 µs late on an H200), so the gap is well above it
    steps["gap_ns"][0] = 2_000_000
    steps["op"][1] = Op.SYNC_STREAM
    program = NativeProgram([steps], streams=1, events=1)
    runner.lib.run(program)  # warm-up
    start = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
    out = runner.lib.run(program, start_ns=start)[0]
    assert out["target_ns"][0] == start + 2_000_000
    assert 0 <= out["begin_ns"][0] - out["target_ns"][0] < 20_000


def test_a_traced_graph_stamps_each_kernel_in_order_after_the_launch_returns(runner):
    n, timer_ns = 8, 5000
    trace = runner.lib.trace_graph([int(Kind.LATENCY)] * n, [1] * n, [timer_ns] * n, reps=3)
    assert trace.shape == (3, 3 + 2 * n)
    for row in trace:
        call, ret, idle = row[:3]
        starts, ends = row[3 : 3 + n], row[3 + n :]
        assert call <= ret < idle
        assert (starts > 0).all() and (ends > starts).all()
        assert (starts[1:] >= ends[:-1] - 200).all()  # in order, one after another (200 ns: the clock mapping)
        assert np.median(ends - starts) == pytest.approx(timer_ns, abs=1500)
        assert starts[0] > call - 1000 and ends[-1] < idle + 1000  # within the launch and the host seeing it idle


def test_stand_ins_run_shorter_back_to_back_inside_a_graph_than_on_a_stream(runner):
    cal = runner.calibration
    print(f"floor {cal.floor_us:.2f} µs on a stream, {cal.in_graph_floor_us:.2f} µs inside a graph")
    assert 0.1 < cal.in_graph_floor_us < cal.floor_us


def test_a_recorded_spec_replays_natively_with_the_interpreted_replays_rows(context, monkeypatch):
    from replay.engine import ReplayBackend

    loaded = load_spec(SPECS_DIR / "recorded_decode_async.toml")
    prepared = prepare_spec(loaded)
    policy = loaded.policies[0]
    frames = {}
    for mode in ("off", "on"):
        monkeypatch.setenv("HARNESS_REPLAY_NATIVE", mode)
        backend = ReplayBackend(context, loaded.profile, loaded.device_memory_bytes, seed=0)
        run = backend.run(policy.policy.main, prepared.inputs, policy.params)
        frames[mode] = ops_frame(run.ops)
        assert run.metrics["replay_kernels_lifted"][0] >= 0
    off, on = frames["off"], frames["on"]
    assert off.groupby("kind").size().to_dict() == on.groupby("kind").size().to_dict()
    assert (on["end_us"] >= on["start_us"]).all()
    span_off, span_on = off["end_us"].max(), on["end_us"].max()
    recorded = prepared.inputs.recorded_span_us
    print(f"span: recorded {recorded:.0f} µs, interpreted {span_off:.0f}, native {span_on:.0f}")
    assert abs(span_on / recorded - 1.0) < 0.10
