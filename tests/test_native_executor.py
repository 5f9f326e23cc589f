"""The native executor's state machine: the Python twin's rules, and the compiled executor (fake device) agreeing
with the twin to the nanosecond. No GPU needed; the compiled half skips without a C++ compiler."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from replay.native.steps import (
    STATUS_ALL_STREAMS,
    STATUS_OK,
    STATUS_UNRESOLVED,
    Dir,
    GraphDef,
    Kind,
    Mem,
    NativeProgram,
    Op,
    empty_steps,
)
from replay.native.twin import FakeCosts, run_fake

C = FakeCosts()


def steps_of(*rows: dict) -> np.ndarray:
    steps = empty_steps(len(rows))
    for i, row in enumerate(rows):
        for name, value in row.items():
            steps[i][name] = value
    return steps


def test_each_call_is_paced_to_its_gap_and_held_to_its_recorded_cost():
    steps = steps_of(
        dict(op=Op.KERNEL, stream=0, timer_ns=5000, gap_ns=1000, call_ns=4000),  # held: reaches the GPU at 3000
        dict(op=Op.KERNEL, stream=0, timer_ns=5000, gap_ns=500, call_ns=1000),  # costs more than recorded: 2000
        dict(op=Op.SYNC_STREAM, stream=0),
    )
    out = run_fake(NativeProgram([steps], streams=1, events=0), est0_ns=2000)[0]
    assert list(out["target_ns"]) == [1000, 5500, 7500]
    assert list(out["begin_ns"]) == list(out["target_ns"])  # the fake clock is never late
    assert list(out["api_ns"]) == [3000, 5500, 7500]  # begin + call - estimate (2000), never before begin
    assert list(out["done_ns"][:2]) == [5000, 7500]  # max(return, begin + call)
    # kernels: the first reaches its stream 1 µs after its call, the second queues behind it
    assert list(out["gpu_start_ns"][:2]) == [4000, 10_000] and list(out["gpu_end_ns"][:2]) == [10_000, 16_000]
    assert out["ret_ns"][2] == 16_000 and out["gpu_start_ns"][2] == -1  # the sync polled until the stream was done


def test_calls_slower_than_recorded_are_made_up_from_the_next_gaps_up_to_the_cap_and_a_sync_clears_it():
    from replay.native.twin import CATCH_UP_CAP_NS

    steps = steps_of(
        dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=5000, call_ns=1000),  # a launch costs 2000: 1000 late
        dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=5000, call_ns=1000),  # gap 5000 - 1000 made up, 1000 late
        dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=500, call_ns=3000),  # on time: 500 made up, 500 left
        dict(op=Op.SYNC_STREAM, stream=0, gap_ns=200),  # 200 made up; the sync clears the 300 left
        dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=5000, call_ns=3000),  # nothing to make up
        # a pageable copy recorded at 0 that takes ~54 µs: only CATCH_UP_CAP_NS of it is made up
        dict(op=Op.COPY, stream=0, gap_ns=1000, call_ns=0, nbytes=1_000_000, direction=Dir.H2D, memory=Mem.PAGEABLE),
        dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=30_000, call_ns=3000),
    )
    program = NativeProgram([steps], streams=1, events=0)
    out = run_fake(program, est0_ns=2000)[0]
    done, target = out["done_ns"], out["target_ns"]
    assert list(target[:3]) == [5000, 7000 + 5000 - 1000, 13_000 + 500 - 500]
    assert done[2] == target[2] + 3000
    assert target[3] == done[2] + 200 - 200
    assert target[4] == done[3] + 5000  # cleared by the sync
    assert done[5] - (target[5] + 0) > CATCH_UP_CAP_NS
    assert target[6] == done[5] + 30_000 - CATCH_UP_CAP_NS
    from replay.native.twin import rule_breaks

    assert rule_breaks(program, [out], est0_ns=2000) == []


def test_the_running_estimate_learns_what_calls_cost():
    steps = steps_of(*[dict(op=Op.KERNEL, stream=0, timer_ns=0, gap_ns=10_000, call_ns=5000) for _ in range(60)])
    out = run_fake(NativeProgram([steps], streams=1, events=0), est0_ns=0)[0]
    held = out["api_ns"] - out["begin_ns"]
    assert held[0] == 5000  # nothing learnt yet: held for all of the recorded cost
    assert 5000 - C.launch <= held[-1] <= 5000 - C.launch + 7  # then for what a launch does not cost (2000)
    assert (out["done_ns"] - out["begin_ns"] >= 5000).all()


def test_waits_on_events_nothing_recorded_are_skipped_and_counted():
    steps = steps_of(
        dict(op=Op.WAIT, stream=1, slot=0, call_ns=3000),
        dict(op=Op.KERNEL, stream=0, timer_ns=20_000),
        dict(op=Op.RECORD, stream=0, slot=0),
        dict(op=Op.WAIT, stream=1, slot=0),
        dict(op=Op.KERNEL, stream=1, timer_ns=1000),
        dict(op=Op.SYNC_EVENT, slot=0),
    )
    out = run_fake(NativeProgram([steps], streams=2, events=1))[0]
    assert list(out["status"]) == [STATUS_UNRESOLVED] + [STATUS_OK] * 5
    assert out["done_ns"][0] == out["begin_ns"][0]  # a skipped call costs nothing, its recorded cost neither
    kernel0_end, kernel1_start = out["gpu_end_ns"][1], out["gpu_start_ns"][4]
    assert out["gpu_start_ns"][2] == kernel0_end  # the record fires when stream 0 reaches it
    assert kernel1_start >= kernel0_end  # stream 1 waited for it
    assert out["ret_ns"][5] >= kernel0_end  # the host sync returned once the event had fired


def test_pageable_copies_hold_the_host_until_they_are_done_and_pinned_ones_do_not():
    steps = steps_of(
        dict(op=Op.COPY, stream=0, nbytes=2_000_000, direction=Dir.H2D, memory=Mem.PAGEABLE),
        dict(op=Op.COPY, stream=0, nbytes=2_000_000, direction=Dir.H2D, memory=Mem.PINNED),
    )
    out = run_fake(NativeProgram([steps], streams=1, events=0))[0]
    assert out["done_ns"][0] >= out["gpu_end_ns"][0]  # 100 µs of copy: the host waited
    assert out["done_ns"][1] - out["begin_ns"][1] == C.copy  # the pinned one returned after its call
    assert out["gpu_end_ns"][0] - out["gpu_start_ns"][0] == C.copy_fixed + 100_000


def test_a_join_waits_for_the_other_threads_last_call():
    main = steps_of(dict(op=Op.KERNEL, stream=0, timer_ns=1000), dict(op=Op.JOIN, slot=1))
    child = steps_of(*[dict(op=Op.KERNEL, stream=1, timer_ns=1000, gap_ns=50_000) for _ in range(3)])
    outs = run_fake(NativeProgram([main, child], streams=2, events=0))
    assert outs[0]["done_ns"][1] == outs[1]["done_ns"][-1] == 3 * 50_000 + 2 * C.launch + C.launch


def test_graphs_run_their_kernels_as_one_op():
    steps = steps_of(dict(op=Op.GRAPH, stream=0, slot=0), dict(op=Op.SYNC_STREAM, stream=0))
    graph = GraphDef([Kind.LATENCY] * 3, [1] * 3, [1000, 2000, 3000])
    out = run_fake(NativeProgram([steps], streams=1, events=0, graphs=[graph]))[0]
    assert out["gpu_end_ns"][0] - out["gpu_start_ns"][0] == 6000 + 3 * C.kernel_overhead


@pytest.mark.parametrize(
    "row, message",
    [
        (dict(op=Op.KERNEL, stream=3), "thread 0, step 0: stream 3 of 2"),
        (dict(op=Op.RECORD, stream=0, slot=5), r"thread 0, step 0: slot 5 of 1 \(RECORD\)"),
        (dict(op=99), "thread 0, step 0: op 99 is not an Op"),
        (dict(op=Op.KERNEL, stream=0, gap_ns=-1), "thread 0, step 0: gap_ns -1 < 0"),
        (dict(op=Op.JOIN, slot=0), "thread 0: joins itself"),
    ],
)
def test_bad_steps_are_refused_naming_thread_step_and_field(row, message):
    with pytest.raises(ValueError, match=message):
        NativeProgram([steps_of(row)], streams=2, events=1)


# --------------------------------------------------------------------------- the compiled executor

needs_compiler = pytest.mark.skipif(
    shutil.which("g++") is None and shutil.which("c++") is None, reason="no C++ compiler to build the executor"
)


def random_program(seed: int, threads: int = 1, n: int = 300) -> NativeProgram:
    """Steps of every kind on 3 streams, with gaps, recorded costs, events recorded late or never."""
    rng = np.random.default_rng(seed)
    ops = [Op.KERNEL] * 6 + [
        Op.COPY,
        Op.RECORD,
        Op.WAIT,
        Op.SYNC_EVENT,
        Op.SYNC_STREAM,
        Op.GRAPH,
        Op.SYNC_DEVICE,
        Op.HOST,
    ]
    all_steps = []
    for t in range(threads):
        steps = empty_steps(n)
        steps["op"] = rng.choice(ops, n)
        steps["stream"] = rng.integers(0, 3, n)
        steps["slot"] = rng.integers(0, 4, n)
        steps["slot"][steps["op"] == Op.GRAPH] = rng.integers(0, 2, int((steps["op"] == Op.GRAPH).sum()))
        steps["kind"] = rng.integers(0, 3, n)
        steps["grid"] = 1
        steps["timer_ns"] = rng.integers(0, 40_000, n)
        steps["nbytes"] = rng.integers(0, 4_000_000, n)
        steps["direction"] = rng.integers(0, 3, n)
        steps["memory"] = rng.integers(0, 2, n)
        steps["gap_ns"] = rng.integers(0, 30_000, n) * (rng.random(n) < 0.7)
        steps["call_ns"] = np.where(rng.random(n) < 0.8, rng.integers(0, 20_000, n), -1)
        if t == 0 and threads > 1:
            joins = empty_steps(threads - 1)
            joins["op"] = Op.JOIN
            joins["slot"] = np.arange(1, threads)
            steps = np.concatenate([steps, joins])
        all_steps.append(steps)
    graphs = [GraphDef([2, 2], [1, 1], [3000, 5000]), GraphDef([0], [1], [40_000])]
    return NativeProgram(all_steps, streams=3, events=4, graphs=graphs, sync_order=[1, 2, 0])


@needs_compiler
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_compiled_executor_matches_the_twin_to_the_nanosecond(seed, tmp_path, monkeypatch):
    from replay.native.library import run_fake_native

    program = random_program(seed)
    twin = run_fake(program, est0_ns=1500)
    native = run_fake_native(program, est0_ns=1500)
    assert {STATUS_OK, STATUS_ALL_STREAMS} <= set(twin[0]["status"].tolist())  # the program exercises both paths
    for name in twin[0].dtype.names:
        np.testing.assert_array_equal(native[0][name], twin[0][name], err_msg=name)


@needs_compiler
def test_compiled_executor_matches_the_twin_with_several_threads_one_after_another():
    from replay.native.library import run_fake_native

    program = random_program(7, threads=3, n=200)
    twin = run_fake(program, threaded=False)
    native = run_fake_native(program, threaded=False)
    for t in range(3):
        for name in twin[t].dtype.names:
            np.testing.assert_array_equal(native[t][name], twin[t][name], err_msg=f"thread {t} {name}")


@needs_compiler
def test_compiled_executor_runs_threads_at_once_and_keeps_each_threads_own_rules():
    from replay.native.library import run_fake_native

    program = random_program(11, threads=4, n=400)
    outs = run_fake_native(program, threaded=True)
    for out in outs:
        assert (np.diff(out["begin_ns"]) >= 0).all() and (out["begin_ns"] >= out["target_ns"]).all()
        assert (out["done_ns"] >= out["ret_ns"]).all() and (out["ret_ns"] >= out["api_ns"]).all()
    joins = program.threads[0]["op"] == Op.JOIN
    joined = program.threads[0]["slot"][joins]
    assert (outs[0]["done_ns"][joins] >= [outs[t]["done_ns"][-1] for t in joined]).all()


def test_device_syncs_and_unknown_event_syncs_wait_for_every_stream_with_work_in_sync_order():
    steps = steps_of(
        dict(op=Op.KERNEL, stream=2, timer_ns=30_000),
        dict(op=Op.KERNEL, stream=0, timer_ns=10_000),
        dict(op=Op.SYNC_DEVICE),
        dict(op=Op.HOST, gap_ns=5000),
        dict(op=Op.KERNEL, stream=1, timer_ns=10_000),
        dict(op=Op.SYNC_EVENT, slot=0),  # nothing recorded event 0: syncs stream 1, the one with work
        dict(op=Op.SYNC_DEVICE),  # nothing outstanding: returns at once
    )
    out = run_fake(NativeProgram([steps], streams=3, events=1, sync_order=[2, 1, 0]))[0]
    assert list(out["status"][[2, 5, 6]]) == [STATUS_ALL_STREAMS] * 3
    assert list(out["aux"][[2, 5, 6]]) == [0b101, 0b010, 0]
    assert out["ret_ns"][2] >= out["gpu_end_ns"][0] and out["ret_ns"][5] >= out["gpu_end_ns"][4]
    assert out["ret_ns"][6] == out["api_ns"][6]
    assert out["begin_ns"][3] - out["done_ns"][2] == 5000 and out["done_ns"][3] == out["begin_ns"][3]


@needs_compiler
def test_the_rule_check_passes_the_executors_own_runs_and_catches_a_broken_one():
    from replay.native.library import run_fake_native
    from replay.native.twin import rule_breaks

    program = random_program(3, threads=2, n=200)
    outs = run_fake_native(program, est0_ns=1800, threaded=False)
    assert rule_breaks(program, outs, est0_ns=1800) == []
    held = np.flatnonzero((program.threads[1]["op"] == Op.KERNEL) & (program.threads[1]["call_ns"] > 3000))[0]
    outs[1]["done_ns"][held] -= 1  # gone on before its recorded cost was up
    broken = rule_breaks(program, outs, est0_ns=1800)
    assert broken[0].startswith(f"thread 1, step {held} (KERNEL): done") and len(broken) == 2  # and the next target


def test_a_call_made_late_after_its_hold_is_a_timing_overshoot_not_a_broken_rule():
    """An interrupt between the hold and the call (27 µs on the H100) breaks only the timing rule: the exact rules
    still hold, and hold_overshoots_ns reports its length for a test to bound like pacing lateness."""
    from replay.native.steps import OUT_DTYPE
    from replay.native.twin import HELD_OPS, FakeGpu, FakeThread, Shared, hold_overshoots_ns, rule_breaks, run_thread

    program = random_program(3, threads=1, n=200)
    steps = program.threads[0]
    held = int(np.flatnonzero((steps["op"] == Op.KERNEL) & (steps["call_ns"] > 3000))[3])

    class Interrupted(FakeThread):
        """The fake clock, which jumps 27 µs at the clock read that makes step ``held``'s call (its 2nd of 4)."""

        reads = 0

        def now(self) -> int:
            self.reads += 1
            if self.reads == 4 * held + 2:
                self.t += 27_000
            return self.t

    out = np.zeros(len(steps), OUT_DTYPE)
    run_thread(Interrupted(FakeGpu(program)), Shared(program.events, 1, program.sync_order), 0, steps, out, 0, 1800)
    outs = [out]
    overshoots = hold_overshoots_ns(program, outs, est0_ns=1800)
    held_steps = np.flatnonzero(np.isin(steps["op"], HELD_OPS) & (steps["call_ns"] >= 0) & (out["status"] == STATUS_OK))
    assert overshoots[list(held_steps).index(held)] == 27_000 and np.count_nonzero(overshoots) == 1
    assert rule_breaks(program, outs, est0_ns=1800, slack_ns=None) == []
    assert rule_breaks(program, outs, est0_ns=1800, slack_ns=20_000) == [
        f"thread 0, step {held} (KERNEL): called at {out['api_ns'][held]}, 27000 ns after its hold"
    ]


@needs_compiler
def test_threads_at_once_on_streams_of_their_own_match_the_twin_to_the_nanosecond():
    """Threads that share no stream and no event cannot race: run at once, each must be what the twin says."""
    from replay.native.library import run_fake_native

    rng = np.random.default_rng(21)
    ops = [Op.KERNEL] * 4 + [Op.COPY, Op.RECORD, Op.WAIT, Op.SYNC_STREAM, Op.HOST, Op.GRAPH]
    threads = []
    for t in range(3):
        n = 300
        steps = empty_steps(n)
        steps["op"] = rng.choice(ops, n)
        steps["op"][0] = Op.RECORD  # its event is recorded before any wait on it
        steps["stream"] = t
        steps["slot"] = np.where(steps["op"] == Op.GRAPH, 0, t)
        steps["kind"], steps["grid"] = 2, 1
        steps["timer_ns"] = rng.integers(0, 30_000, n)
        steps["nbytes"] = rng.integers(0, 2_000_000, n)
        steps["direction"] = rng.integers(0, 3, n)
        steps["memory"] = rng.integers(0, 2, n)
        steps["gap_ns"] = rng.integers(0, 20_000, n)
        steps["call_ns"] = np.where(rng.random(n) < 0.8, rng.integers(0, 15_000, n), -1)
        threads.append(steps)
    joins = empty_steps(2)
    joins["op"], joins["slot"] = Op.JOIN, [1, 2]
    threads[0] = np.concatenate([threads[0], joins])
    program = NativeProgram(threads, streams=3, events=3, graphs=[GraphDef([2, 2], [1, 1], [2000, 4000])])
    twin = run_fake(program, threaded=False)
    for _ in range(3):
        native = run_fake_native(program, threaded=True)
        for t in range(3):
            for name in twin[t].dtype.names:
                np.testing.assert_array_equal(native[t][name], twin[t][name], err_msg=f"thread {t} {name}")


@needs_compiler
def test_threaded_runs_reuse_the_pools_threads_and_place_them_again_only_when_asked(monkeypatch):
    """The executor's host threads are made and placed once (src/worker_pool.hpp): a run that spawned and pinned
    its threads took 160-180 µs on the lent hosts before its first step. Runs of more threads grow the pool, runs
    of fewer leave the rest idle, a changed HARNESS_NATIVE_CPUS places them again, and every run's results stay
    the twin's."""
    from replay.native.library import fake_pool_stats, run_fake_native

    monkeypatch.setenv("HARNESS_NATIVE_CPUS", "off")
    program = random_program(5, threads=3, n=60)
    twin = run_fake(program, threaded=False)
    serial = run_fake_native(program, threaded=False)  # the same rules, run one thread after another
    for t in range(3):
        for name in twin[t].dtype.names:
            np.testing.assert_array_equal(serial[t][name], twin[t][name], err_msg=f"thread {t} {name}")

    run_fake_native(program, threaded=True)
    size, placed = fake_pool_stats()
    assert size >= 3
    for _ in range(3):
        outs = run_fake_native(program, threaded=True)
        for out in outs:  # each thread still keeps its own rules
            assert (np.diff(out["begin_ns"]) >= 0).all() and (out["begin_ns"] >= out["target_ns"]).all()
    assert fake_pool_stats() == (size, placed), "the same placement again must not place (or make) threads again"

    one = NativeProgram([program.threads[1][program.threads[1]["op"] != Op.JOIN]], streams=program.streams,
                        events=program.events, graphs=program.graphs)  # fmt: skip
    run_fake_native(one, threaded=True)
    assert fake_pool_stats() == (size, placed), "a run of fewer threads leaves the others where they are"

    monkeypatch.setenv("HARNESS_NATIVE_CPUS", "0,0,0")  # every thread onto CPU 0 (granted or not, each is placed)
    run_fake_native(program, threaded=True)
    size_after, placed_after = fake_pool_stats()
    assert size_after == size and placed_after == placed + 3, "a new placement is applied to each thread once"
    run_fake_native(program, threaded=True)
    assert fake_pool_stats() == (size, placed + 3)
