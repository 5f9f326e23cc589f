"""A program command through the native executor's steps (fake device) gives the op rows of its reference
expansion: per host thread, the same ops of the same kinds, names and streams, in the same order."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from harness.backend import ops_frame, run_policy
from harness.paths import SPECS_DIR
from harness.program import GRAPH_KERNEL_DTYPE, OP_GRAPH, OP_SYNC_STREAM, ProgramThread, StepProgram, new_steps
from harness.runner import prepare_spec
from harness.runtime import CreateStream, DeviceInfo, RunProgram, Runtime, Stream
from harness.spec import load_spec
from replay.floor import FloorLifts
from replay.native.program import Calibration, lifts_into, op_rows, to_native
from replay.native.twin import run_fake
from sim import SimBackend

CAL = Calibration(sms=132, floor_us=3.2, overhead_us=(1.5, 1.8, 1.2))
SPECS = ["recorded_decode_async.toml", "recorded_layers_prefetch.toml", "recorded_decode_inline_nosync.toml"]


def _program_command(loaded, policy, inputs) -> RunProgram:
    """The RunProgram the policy yields (its streams made up: nothing runs)."""
    rt = Runtime([DeviceInfo(0, "gpu", 80 << 30)], backend="replay", seed=0, profile=loaded.profile)
    gen = policy.policy.main(rt, inputs, policy.params)
    value, ids = None, 0
    while True:
        cmd = gen.send(value)
        if isinstance(cmd, RunProgram):
            gen.close()
            return cmd
        assert isinstance(cmd, CreateStream), cmd
        ids += 1
        value = Stream(ids, cmd.device, cmd.name)


def _native_frame(cmd: RunProgram, converted, outs) -> pd.DataFrame:
    names = ["main"] + [t.name for t in cmd.program.threads[1:]]
    ids = iter(range(1000, 10**9))
    host, device, _ = op_rows(
        cmd.program, converted, outs, names, [(s.device, s.name) for s in cmd.streams],
        lambda ns: np.asarray(ns, dtype=np.float64) / 1e3, lambda: next(ids),
    )  # fmt: skip
    return ops_frame(host + device)


def _shape(frame: pd.DataFrame) -> pd.DataFrame:
    """Per thread, in order: kind, stream, name (events by their order of first appearance)."""
    frame = frame.sort_values("op_id", kind="stable")
    events = {}
    names = [events.setdefault(n, f"e{len(events)}") if n.startswith("event") else n for n in frame["name"]]
    shaped = frame.assign(name=names)[["thread", "kind", "stream", "name", "bytes", "host_memory"]]
    return shaped.sort_values("thread", kind="stable").reset_index(drop=True)


@pytest.mark.parametrize("spec", SPECS)
def test_native_rows_are_the_reference_expansions_rows(spec):
    loaded = load_spec(SPECS_DIR / spec)
    prepared = prepare_spec(loaded)
    policy = loaded.policies[0]
    reference = run_policy(SimBackend(loaded.profile), policy.policy.main, prepared.inputs, policy.params).ops
    cmd = _program_command(loaded, policy, prepared.inputs)
    converted = to_native(cmd.program, CAL)
    outs = run_fake(converted.native)
    native = _native_frame(cmd, converted, outs)
    pd.testing.assert_frame_equal(_shape(native), _shape(reference))
    assert (native["end_us"] >= native["start_us"]).all()
    device_ops = native[native["device"] >= 0]
    assert (device_ops["start_us"] >= device_ops["issue_us"]).all()  # the fake GPU ran nothing before its call


def test_kernels_below_the_floor_are_lifted_and_counted_once_per_run():
    loaded = load_spec(SPECS_DIR / "recorded_decode_inline.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    converted = to_native(cmd.program, CAL)
    durations = np.concatenate([t.steps["duration_us"][t.steps["op"] == 1] for t in cmd.program.threads])
    below = durations[(durations > 0) & (durations < CAL.floor_us)]
    assert converted.lifted == len(below) > 0
    assert converted.lift_us == pytest.approx(float((CAL.floor_us - below).sum()))
    lifts = FloorLifts()
    lifts_into(lifts, converted)
    assert lifts.count == len(below)
    kernels = np.concatenate([t[t["op"] == 1] for t in converted.native.threads])
    assert kernels["timer_ns"].min() >= 0
    short = kernels["kind"] == 2
    # a lifted latency kernel's timer is the floor less that kind's overhead
    assert kernels["timer_ns"][short].min() == round((CAL.floor_us - CAL.overhead_us[2]) * 1e3)


def test_a_graph_launch_is_one_kernel_row_named_for_the_graph_as_on_the_interpreted_replay():
    loaded = load_spec(SPECS_DIR / "recorded_decode_graph.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    converted = to_native(cmd.program, CAL)
    native = _native_frame(cmd, converted, run_fake(converted.native))
    steps = np.concatenate([t.steps for t in cmd.program.threads])
    graphs = steps[steps["op"] == 8]
    kernels = native[native["kind"] == "kernel"]
    assert sorted(kernels["name"]) == sorted(cmd.program.names[n] for n in graphs["name"])
    assert len(converted.native.graphs) == len({(int(g["graph_first"]), int(g["graph_count"])) for g in graphs})
    # the fake GPU runs a graph for its kernels' timers plus a fixed cost each: every row spans at least the timers
    timers = {i: sum(g.timer_ns) / 1e3 for i, g in enumerate(converted.native.graphs)}
    assert ((kernels["end_us"] - kernels["start_us"]).to_numpy() >= min(timers.values())).all()


def test_graphs_are_tuned_to_their_kernels_durations_and_the_profiles_gaps():
    loaded = load_spec(SPECS_DIR / "recorded_decode_graph.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    converted = to_native(cmd.program, CAL, graph_gap_us=0.5)
    step = next(s for t in cmd.program.threads for s in t.steps if s["op"] == 8)
    kernels = cmd.program.graph_kernels[step["graph_first"] : step["graph_first"] + step["graph_count"]]
    durations = np.maximum(kernels["duration_us"], CAL.floor_us)[kernels["duration_us"] > 0]
    graph = converted.native.graphs[0]
    assert len(graph.kinds) == len(durations)
    # launched onto an idle stream (tuned alone, from the launch's return): the launch's latency too
    assert graph.alone and step["duration_us"] > 5.0
    assert graph.target_ns == round((step["duration_us"] + durations.sum() + (len(durations) - 1) * 0.5) * 1e3)


def test_a_graph_tuned_alone_takes_its_launchs_latency_and_one_tuned_back_to_back_does_not():
    """The simulator starts a graph launched onto an idle stream its latency after the call returns (runtime contract
    point 16); the native replay times such a launch alone, from the call's return, the GPU's own lead-in included,
    so its target holds the latency: the replay's idle launch then takes what the simulator's does. A graph queued
    behind work hides its latency in both."""
    names = ("k", "g")
    graphs = np.zeros(2, GRAPH_KERNEL_DTYPE)
    graphs["name"], graphs["kind"], graphs["duration_us"], graphs["share"] = 0, 2, [10.0, 20.0], 1.0
    steps = new_steps(4)
    steps["stream"] = 0
    steps["op"] = [OP_GRAPH, OP_SYNC_STREAM, OP_GRAPH, OP_GRAPH]
    steps["name"], steps["graph_first"], steps["graph_count"] = 1, 0, 2
    steps["duration_us"] = [6.0, 0.0, 6.0, 6.0]
    program = StepProgram((ProgramThread("main", steps),), names, 1, graphs)
    converted = to_native(program, CAL, graph_gap_us=0.5)
    alone, queued = converted.native.graphs
    assert alone.alone and not queued.alone
    assert alone.target_ns == round((6.0 + 30.0 + 0.5) * 1e3) and queued.target_ns == round((30.0 + 0.5) * 1e3)
    slots = converted.native.threads[0]["slot"]
    assert slots[0] == slots[2] != slots[3]  # after the sync the stream is idle again: the alone graph, reused


def test_a_graph_launched_on_a_stream_the_program_synced_is_tuned_alone_else_back_to_back():
    from replay.native.program import launched_idle
    from replay.native.steps import Op

    op = np.array([Op.GRAPH, Op.COPY, Op.GRAPH, Op.SYNC_STREAM, Op.GRAPH, Op.KERNEL, Op.SYNC_DEVICE, Op.GRAPH])
    stream = np.array([0, 0, 0, 0, 0, 1, -1, 1])
    assert launched_idle(op, stream).tolist() == [True, False, False, False, True, True, True, True]
    # a sync of another stream leaves this one busy
    other = launched_idle(np.array([Op.KERNEL, Op.GRAPH, Op.SYNC_STREAM, Op.GRAPH]), np.array([1, 0, 1, 0]))
    assert other.tolist() == [True, True, False, False]
    # decode_graph syncs its stream after each step's copy: every launch finds it idle
    loaded = load_spec(SPECS_DIR / "recorded_decode_graph.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    converted = to_native(cmd.program, CAL, graph_gap_us=0.5)
    assert converted.native.graphs and all(g.alone for g in converted.native.graphs)


def test_graph_kernels_are_lifted_to_the_floor_inside_a_graph_not_to_the_streams_floor():
    # On the H100 a graph's stand-ins run back to back at ~1 µs, a stream's at ~3.2 µs: lifting the decode graphs'
    # 1 µs kernels to the stream's floor made their graphs ~2x too long (+26% to +49% on the span).
    loaded = load_spec(SPECS_DIR / "recorded_decode_graph.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    cal = Calibration(CAL.sms, CAL.floor_us, CAL.overhead_us, graph_floor_us=0.9)
    converted = to_native(cmd.program, cal, graph_gap_us=0.5)
    steps = np.concatenate([t.steps for t in cmd.program.threads])
    launches = steps[steps["op"] == 8]
    lifted, lift_us = 0, 0.0
    for g in launches:
        d = cmd.program.graph_kernels["duration_us"][g["graph_first"] : g["graph_first"] + g["graph_count"]]
        below = d[(d > 0) & (d < 0.9)]
        lifted, lift_us = lifted + len(below), lift_us + float((0.9 - below).sum())
    assert converted.lifted == lifted < to_native(cmd.program, CAL).lifted
    assert converted.lift_us == pytest.approx(lift_us)
    first = launches[0]
    d = cmd.program.graph_kernels["duration_us"][first["graph_first"] : first["graph_first"] + first["graph_count"]]
    kept = np.maximum(d, 0.9)[d > 0]
    latency = first["duration_us"]  # an idle launch (tuned alone): the launch's latency in its target
    assert converted.native.graphs[0].target_ns == round((latency + kept.sum() + (len(kept) - 1) * 0.5) * 1e3)
    # launched kernels still lift to the stream's floor
    assert Calibration(1, 3.2, (0.0, 0.0, 0.0)).in_graph_floor_us == 3.2 and cal.in_graph_floor_us == 0.9


def test_a_zero_duration_launch_issues_no_kernel_and_still_makes_its_zero_length_kernel_row():
    import dataclasses

    loaded = load_spec(SPECS_DIR / "recorded_decode_inline.toml")
    prepared = prepare_spec(loaded)
    cmd = _program_command(loaded, loaded.policies[0], prepared.inputs)
    thread = cmd.program.threads[0]
    steps = thread.steps.copy()
    launches = np.flatnonzero(steps["op"] == 1)
    steps["duration_us"][launches[::2]] = 0.0  # every other launch: nothing to run
    program = dataclasses.replace(cmd.program, threads=(dataclasses.replace(thread, steps=steps),))
    converted = to_native(program, CAL)
    ours = converted.native.threads[0]
    assert (ours["op"][launches[::2]] == 4).all() and (ours["op"][launches[1::2]] == 1).all()  # records, kernels
    outs = run_fake(converted.native)
    frame = _native_frame(dataclasses.replace(cmd, program=program), converted, outs)
    kernels = frame[frame["kind"] == "kernel"].sort_values("op_id")
    assert len(kernels) == len(launches) and (frame["kind"] == "record").sum() == 0
    lengths = (kernels["end_us"] - kernels["start_us"]).to_numpy()
    assert (lengths[::2] == 0).all() and (lengths[1::2] > 0).all()
    assert converted.lifted == len(launches[1::2])  # nothing lifted for the empty ones


def test_a_native_program_knows_its_copy_buffers_when_made_not_on_each_run():
    # The buffers the executor's copies need were worked out from the steps on every run, after the program's
    # issue (tens of µs of its first gap); they are the program's own figures now.
    from replay.native.steps import Dir, NativeProgram, Op, empty_steps

    steps = empty_steps(4)
    for i, (direction, nbytes) in enumerate([(Dir.H2D, 1 << 20), (Dir.D2D, 4 << 20), (Dir.D2H, 2 << 20)]):
        steps["op"][i], steps["direction"][i], steps["nbytes"][i] = Op.COPY, direction, nbytes
    steps["op"][3] = Op.SYNC_STREAM
    program = NativeProgram([steps], streams=1, events=1)
    assert (program.host_bytes, program.device_bytes) == (2 << 20, 4 << 20)  # the link's largest; the largest
    none = empty_steps(1)
    none["op"][0] = Op.SYNC_STREAM
    assert (NativeProgram([none], streams=1, events=1).host_bytes, NativeProgram([none], streams=1, events=1).device_bytes) == (0, 0)
