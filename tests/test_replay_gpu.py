"""The replay engine on a real CUDA GPU (skipped without torch and CUDA; run on the lent H100).

Output of runs on the device is kept with each benchmark's measurements (measurements/*/gpu_tests.log).
"""

from __future__ import annotations

import pandas as pd
import pytest

from harness.backend import ops_frame
from harness.profile import load_profile
from harness.runtime import Direction, HostMemory, KernelKind
from harness.workload import NoParams
from workloads.layer_streaming import WORKLOAD as LAYERS
from workloads.layer_streaming.inputs import LayerStreamingInputs, Segment
from workloads.layer_streaming.policies import (
    PrefetchParams,
    StreamingResult,
    prefetch,
    sync,
)

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

MiB = 1 << 20


def backend(context, profile, budget=None, warmup=2):
    from replay.engine import ReplayBackend

    return ReplayBackend(context, profile, budget, seed=0, warmup_runs=warmup)


def frame(run) -> pd.DataFrame:
    return ops_frame(run.ops)


def inputs(n=6, nbytes=32 * MiB, compute_us=800.0) -> LayerStreamingInputs:
    return LayerStreamingInputs(tuple(Segment(i, nbytes, compute_us) for i in range(n)), HostMemory.PINNED, 1.0, "test")


def test_layer_streaming_runs_unchanged_and_streams_stay_in_order(context, profile):
    run = backend(context, profile).run(prefetch, inputs(), PrefetchParams(depth=1))
    ops = frame(run)
    assert run.result == StreamingResult(fallbacks=0, prefetched=5)
    dev = ops[ops["device"] >= 0]
    assert set(dev["kind"]) >= {"kernel", "copy_h2d", "record", "wait"}
    assert (ops["end_us"] >= ops["start_us"]).all() and (ops["start_us"] >= ops["issue_us"] - 5.0).all()
    for _, s in dev.groupby("stream"):
        s = s.sort_values("op_id")
        # In issue order, and never overlapping itself (0.5 µs: event resolution).
        assert (s["start_us"].to_numpy()[1:] >= s["end_us"].to_numpy()[:-1] - 0.5).all()
    # Every prefetched copy (all but the first) runs while the previous segment computes.
    by_name = ops.set_index("name")
    for i in range(1, 6):
        assert by_name.loc[f"params[{i}]", "start_us"] < by_name.loc[f"segment[{i - 1}]", "end_us"]
        assert by_name.loc[f"params[{i}]", "end_us"] > by_name.loc[f"segment[{i - 1}]", "start_us"]
    m = {r.metric: r.value for r in LAYERS.metrics(inputs(), ops, run.result)}
    assert m["makespan_over_overlap_bound"] < 1.25  # 0.8 ms segments: host costs weigh more than in the benchmark


def test_sync_copies_then_computes_each_segment(context, profile):
    run = backend(context, profile).run(sync, inputs(n=4), NoParams())
    ops = frame(run).set_index("name")
    for i in range(4):
        assert ops.loc[f"segment[{i}]", "start_us"] >= ops.loc[f"params[{i}]", "end_us"] - 0.5
        if i:
            assert ops.loc[f"params[{i}]", "start_us"] >= ops.loc[f"segment[{i - 1}]", "end_us"]


def test_tuned_kernels_take_their_declared_duration(context, profile):
    for kind in KernelKind:
        for duration in (150.0, 1000.0, 4000.0):
            plan = context.devices[0].kernels.plan(kind, duration)
            context.devices[0].kernels.tune(plan)
            assert plan.measured_us == pytest.approx(duration, rel=0.01), (kind, plan)


def test_kernel_in_a_run_matches_its_duration(context, profile):
    def main(rt):
        s = yield rt.create_stream(0, "s")
        for i in range(5):
            yield rt.launch(s, f"k{i}", 1500.0, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(s)

    ops = frame(backend(context, profile).run(main))
    k = ops[ops["kind"] == "kernel"]
    durations = (k["end_us"] - k["start_us"]).to_numpy()[1:]  # the first includes its issue time on an idle stream
    assert durations == pytest.approx([1500.0] * 4, rel=0.02)


def test_a_series_runs_its_steps_in_turn_and_stops_when_told(context, profile):
    """launch_sync_series: one kernel and one host sync per step, each kernel issued after the previous
    sync returned, a time per step run (when its sync returned), and no step after ``until()`` held."""

    def main(rt):  # the replay runs it again for each warm-up: a fresh count each time
        checked = []

        def third_step_done() -> bool:
            checked.append(1)
            return len(checked) == 3

        s = yield rt.create_stream(0, "s")
        times = yield rt.launch_sync_series(s, "step", iter([400.0, 800.0, 1200.0, 1600.0]), until=third_step_done)
        return times, (yield rt.now())

    run = backend(context, profile).run(main)
    times, now = run.result
    ops = frame(run)
    kernels, syncs = ops[ops["kind"] == "kernel"], ops[ops["kind"] == "host_sync"]
    assert list(kernels["name"]) == ["step"] * 3 and len(syncs) == 3 and len(times) == 3
    # each on an idle stream: its span starts when the stream reached it, so it includes the launch's latency
    assert (kernels["end_us"] - kernels["start_us"]).to_numpy() == pytest.approx([400.0, 800.0, 1200.0], abs=60.0)
    # each time is read right after its sync row closed: within a few µs of it, and in order
    assert times == pytest.approx(list(syncs["end_us"]), abs=20.0) and times == sorted(times) and times[-1] <= now
    assert (kernels["issue_us"].to_numpy()[1:] >= syncs["end_us"].to_numpy()[:-1]).all()


def test_kernel_shorter_than_the_gpu_runs_is_lifted_to_its_floor_and_counted(context, profile):
    from replay.floor import KERNEL_LIFT_US, KERNELS_LIFTED

    def main(rt):
        s = yield rt.create_stream(0, "s")
        yield rt.launch(s, "tiny", 0.01, 1.0, KernelKind.LATENCY)
        yield rt.launch(s, "long", 50.0, 1.0, KernelKind.LATENCY)
        yield rt.sync_stream(s)

    run = backend(context, profile).run(main)
    floor_us = context.devices[0].kernels.min_kernel_us
    assert run.metrics[KERNELS_LIFTED] == (1.0, "count")
    assert run.metrics[KERNEL_LIFT_US][0] == pytest.approx(floor_us - 0.01)
    assert [r.name for r in run.ops if r.kind == "kernel"] == ["tiny", "long"]


def test_alloc_respects_the_budget_and_prefetch_falls_back(context, profile):
    segs = inputs(n=4, nbytes=96 * MiB)
    run = backend(context, profile, budget=150 * MiB).run(prefetch, segs, PrefetchParams(depth=1))
    assert run.result.fallbacks == 3  # no two segments fit together: every later one takes the sync path


def test_alloc_past_the_real_gpu_returns_none(context, profile):
    def main(rt):
        return (yield rt.alloc(0, 1 << 50, "huge"))

    b = backend(context, profile, warmup=0)
    b.capacity_bytes = [1 << 51]  # lift the budget so the real allocator is asked
    assert b.run(main).result is None


def test_pageable_copy_holds_the_host_and_pinned_does_not(context, profile):
    def main(rt, memory):
        s = yield rt.create_stream(0, "s")
        buf = yield rt.alloc(0, 64 * MiB)
        yield rt.launch(s, "busy", 3000.0, 1.0, KernelKind.LATENCY)
        t0 = yield rt.now()
        yield rt.copy(s, 64 * MiB, Direction.H2D, memory, "c", buf)
        t1 = yield rt.now()
        yield rt.sync_stream(s)
        return t1 - t0

    pinned = backend(context, profile).run(main, HostMemory.PINNED).result
    pageable = backend(context, profile).run(main, HostMemory.PAGEABLE).result
    assert pinned < 1000.0  # the call's own host time (205 µs measured once on the lent H200's slow host)
    assert pageable > 3000.0  # held until the 3 ms kernel and the copy are done


def test_host_work_is_a_precise_wait(context, profile):
    def main(rt):
        t0 = yield rt.now()
        yield rt.host_work(1000.0)
        t1 = yield rt.now()
        return t1 - t0

    assert backend(context, profile, warmup=0).run(main).result == pytest.approx(1000.0, abs=50.0)


def test_a_graph_launch_runs_its_kernels_for_their_durations_plus_the_profile_gap(context, profile):
    from harness.runtime import GraphKernel

    kernels = tuple(GraphKernel(f"g{i}", 5.0, 1.0, KernelKind.LATENCY) for i in range(20))

    def main(rt):
        s = yield rt.create_stream(0, "s")
        yield rt.launch(s, "busy", 2000.0, 1.0, KernelKind.LATENCY)  # the graph's op then starts when the GPU does
        t0 = yield rt.now()
        yield rt.launch_graph(s, "graph", kernels)
        t1 = yield rt.now()
        yield rt.sync_stream(s)
        return t1 - t0

    run = backend(context, profile).run(main)
    graph = frame(run).set_index("name").loc["graph"]
    expected = 20 * 5.0 + 19 * profile.device.graph_kernel_gap_us
    assert graph["end_us"] - graph["start_us"] == pytest.approx(expected, rel=0.05, abs=2.0)
    assert run.result < 200.0  # one launch of the whole graph, not 20


def test_threads_and_queues(context, profile):
    def producer(rt, q, n):
        for i in range(n):
            yield rt.host_work(100.0)
            yield rt.put(q, i)
        return "done"

    def main(rt):
        q = yield rt.make_queue(2)
        th = yield rt.spawn(producer, q, 6, name="producer")
        got = []
        for _ in range(6):
            got.append((yield rt.get(q)))
        return got, (yield rt.join(th))

    run = backend(context, profile, warmup=0).run(main)
    assert run.result == ([0, 1, 2, 3, 4, 5], "done")
    assert set(frame(run)["thread"]) == {"producer"}


def test_a_failing_thread_fails_the_run(context, profile):
    def bad(rt):
        yield rt.host_work(10.0)
        raise RuntimeError("boom")

    def main(rt):
        th = yield rt.spawn(bad, name="bad")
        return (yield rt.join(th))

    with pytest.raises(RuntimeError, match="boom"):
        backend(context, profile, warmup=0).run(main)


def test_more_streams_than_the_pool_are_refused(context, profile):
    from replay.engine import ReplayError

    def main(rt):
        for i in range(40):
            yield rt.create_stream(0, f"s{i}")

    with pytest.raises(ReplayError, match="pool has 32 streams"):
        backend(context, profile, warmup=0).run(main)


def test_events_order_streams(context, profile):
    def main(rt):
        a = yield rt.create_stream(0, "a")
        b = yield rt.create_stream(0, "b")
        yield rt.launch(a, "first", 2000.0, 1.0, KernelKind.LATENCY)
        ev = yield rt.record(a)
        yield rt.wait_event(b, ev)
        yield rt.launch(b, "second", 100.0, 1.0, KernelKind.LATENCY)
        yield rt.sync_stream(b)
        return (yield rt.query_event(ev))

    run = backend(context, profile).run(main)
    ops = frame(run).set_index("name")
    assert run.result is True
    assert ops.loc["second", "start_us"] >= ops.loc["first", "end_us"] - 0.5


def test_cli_replay_writes_results_with_backend_replay(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app
    from harness.results import read_results

    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "r"\nprofile = "h100-sxm-pcie5"\nrepetitions = 2\n[workload]\nkind = "layer_streaming"\nsegments = 4\n'
        'param_bytes = 16777216\ncompute_us = 500.0\n[[policies]]\nname = "sync"\n[[policies]]\nname = "prefetch"\n'
    )
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["replay", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    res = read_results(out)
    assert set(res.runs["backend"]) == {"replay"} and set(res.runs["status"]) == {"ok"}
    assert len(res.runs) == 4 and res.runs["device_name"].str.contains("NVIDIA").all()


def test_cli_replay_refuses_a_budget_larger_than_the_gpu(tmp_path):
    import re

    import torch
    from typer.testing import CliRunner

    from harness.cli import app

    # A budget 1 GiB above this GPU's memory (whatever GPU it is), under a profile that allows it.
    budget = torch.cuda.mem_get_info()[1] + (1 << 30)
    profile = tmp_path / "big.toml"
    text = load_profile("h100-sxm-pcie5").path.read_text()
    profile.write_text(re.sub(r"(?m)^memory_bytes = \d+", f"memory_bytes = {budget}", text, count=1))
    spec = tmp_path / "s.toml"
    spec.write_text(
        f'name = "r"\nprofile = "{profile}"\ndevice_memory_bytes = {budget}\n[workload]\nkind = "layer_streaming"\n'
        'segments = 2\nparam_bytes = 16777216\ncompute_us = 500.0\n[[policies]]\nname = "sync"\n'
    )
    result = CliRunner().invoke(app, ["replay", str(spec), "--out", str(tmp_path / "o")])
    assert result.exit_code == 2
    assert "device_memory_bytes" in result.output and "bytes free" in result.output
    assert not (tmp_path / "o").exists()


def test_copy_without_a_buffer_past_the_budget_is_refused(context, profile):
    from replay.engine import ReplayError

    def main(rt):
        s = yield rt.create_stream(0, "s")
        yield rt.copy(s, 64 * MiB, Direction.H2D, HostMemory.PINNED, "big")

    with pytest.raises(ReplayError, match=r"copy 'big': 67108864 bytes do not fit the device budget of 33554432 bytes"):
        backend(context, profile, budget=32 * MiB, warmup=0).run(main)


def test_stand_ins_are_the_timed_kernels_when_cupy_is_there(context):
    import importlib.util

    expected = "timed" if importlib.util.find_spec("cupy") else "sized"
    import os

    if os.environ.get("HARNESS_REPLAY_KERNELS") == "sized":
        expected = "sized"
    assert context.devices[0].kernels.stand_in == expected


def test_copy_calibration_times_pooled_copies_and_probes_the_link(context, profile):
    """The calibration's copy rounds and drift probe through the replay engine give a valid [link] section whose
    pinned copies run near the PCIe bandwidth, each size with its spread, and a drift within a few percent."""
    import time

    from harness.profile import HardwareProfile
    from replay.copy_calibration import CopyCase, CopyPlan, LinkProber, drift_section, measure_link

    cases = tuple(
        CopyCase(d, m, n, profile.copy_time_us(n, d, m))
        for d in (Direction.H2D, Direction.D2H)
        for m in (HostMemory.PINNED, HostMemory.PAGEABLE)
        for n in (1 * MiB, 16 * MiB, 64 * MiB)
    )
    replay = backend(context, profile)
    prober = LinkProber(replay, time.monotonic, reps=5)
    prober.probe("start")
    link, duplex_us = measure_link(replay, CopyPlan(cases, rounds=3, duplex_bytes=64 * MiB), print)
    prober.probe("end")
    link["drift"] = drift_section(prober.probes)
    raw = profile.figures.model_dump(mode="json", exclude_none=True)
    figures = HardwareProfile.model_validate({**raw, "link": link})
    for direction in ("h2d", "d2h"):
        table = getattr(figures.link, direction).pinned
        big = dict(table.samples)[64 * MiB]
        assert 30.0 < 64 * MiB / big / 1e3 < 70.0  # GB/s on a PCIe Gen5 x16 link
        assert [n for n, _ in table.spread_us] == [1 * MiB, 16 * MiB, 64 * MiB]
    assert 0 < figures.link.duplex_bandwidth_factor <= 1 and duplex_us > 0
    assert figures.link.drift.spread_frac < 0.2
