"""The runtime contract as the simulator implements it: threads, queues, events, memory, errors."""

from __future__ import annotations

import pytest

from harness.backend import ops_frame
from harness.runtime import Direction
from sim import PolicyError, SimBackend, SimDeadlock

MiB = 1 << 20


def test_host_costs_are_charged_per_call(h100):
    def main(rt):
        s = yield rt.create_stream(0, "s")
        for i in range(10):
            yield rt.launch(s, f"tiny{i}", 1.0)
        return (yield rt.now())

    # Launch-bound: ten 1 µs kernels cost ten launches of host time.
    assert SimBackend(h100).run(main).result == pytest.approx(10 * h100.host.launch_us)


def test_launch_bound_regime_shows_gaps_on_the_device(h100):
    def main(rt):
        s = yield rt.create_stream(0, "s")
        for i in range(5):
            yield rt.launch(s, f"tiny{i}", 2.0)
        yield rt.sync_stream(s)

    ops = ops_frame(SimBackend(h100).run(main).ops)
    kernels = ops[ops["kind"] == "kernel"].sort_values("op_id")
    gaps = kernels["start_us"].diff().dropna()
    assert list(gaps) == pytest.approx([h100.host.launch_us] * 4)


def test_events_order_work_across_streams(h100):
    def main(rt):
        a = yield rt.create_stream(0, "a")
        b = yield rt.create_stream(0, "b")
        yield rt.launch(a, "producer", 500.0, 0.5)
        ready = yield rt.record(a)
        queried_early = yield rt.query_event(ready)
        yield rt.wait_event(b, ready)
        yield rt.launch(b, "consumer", 100.0, 0.5)
        yield rt.sync_event(ready)
        queried_late = yield rt.query_event(ready)
        yield rt.sync_stream(b)
        return queried_early, queried_late

    run = SimBackend(h100).run(main)
    assert run.result == (False, True)
    ops = ops_frame(run.ops).set_index("name")
    assert ops.loc["consumer", "start_us"] >= ops.loc["producer", "end_us"]


def test_bounded_queue_blocks_producer_and_threads_join(h100):
    def producer(rt, q, n):
        for i in range(n):
            yield rt.put(q, i)
            yield rt.host_work(10.0, f"produce{i}")
        yield rt.put(q, None)
        return "done"

    def main(rt):
        q = yield rt.make_queue(2, "items")
        t = yield rt.spawn(producer, q, 6, name="producer")
        got = []
        while (item := (yield rt.get(q))) is not None:
            got.append(item)
            yield rt.host_work(100.0, f"consume{item}")
        return got, (yield rt.join(t)), (yield rt.now())

    got, status, end = SimBackend(h100).run(main).result
    assert got == list(range(6)) and status == "done"
    assert end == pytest.approx(600.0)  # the consumer is the bottleneck: 6 x 100 µs


def test_alloc_fails_past_capacity_and_free_returns_memory(h100):
    def main(rt):
        a = yield rt.alloc(0, 600 * MiB, "a")
        b = yield rt.alloc(0, 600 * MiB, "b")
        yield rt.free(a)
        c = yield rt.alloc(0, 600 * MiB, "c")
        return a is not None, b is None, c is not None

    assert SimBackend(h100, device_memory_bytes=1024 * MiB).run(main).result == (True, True, True)


def test_devices_are_independent(h100):
    def main(rt):
        s0 = yield rt.create_stream(0, "s0")
        s1 = yield rt.create_stream(1, "s1")
        yield rt.copy(s0, 256 * MiB, Direction.H2D)
        yield rt.copy(s1, 256 * MiB, Direction.H2D)
        yield rt.sync_stream(s0)
        yield rt.sync_stream(s1)

    ops = ops_frame(SimBackend(h100, devices=2).run(main).ops)
    copies = ops[ops["kind"] == "copy_h2d"]
    assert sorted(copies["device"]) == [0, 1]
    # Each GPU has its own host link: the copies overlap at full speed.
    assert (copies["end_us"] - copies["start_us"]).max() == pytest.approx(4875.0)


def test_a_policy_that_yields_something_else_is_told_so(h100):
    def main(rt):
        yield "not a command"

    with pytest.raises(PolicyError, match="not a runtime command"):
        SimBackend(h100).run(main)


def test_waiting_on_nothing_is_reported_as_deadlock(h100):
    def main(rt):
        q = yield rt.make_queue(1)
        yield rt.get(q)  # nobody ever puts

    with pytest.raises(SimDeadlock):
        SimBackend(h100).run(main)


def test_runtime_rejects_bad_arguments_at_the_call(h100):
    rt = SimBackend(h100).runtime
    with pytest.raises(ValueError, match="duration_us"):
        rt.launch(None, "k", float("nan"))
    with pytest.raises(ValueError, match="compute_share"):
        rt.launch(None, "k", 1.0, compute_share=1.5)
    with pytest.raises(ValueError, match="device 3 does not exist"):
        rt.create_stream(3, "s")


def test_a_thread_that_blocked_on_another_thread_pays_the_wake_up(h100):
    from harness.profile import Profile

    wake_us = 120.0
    figures = h100.figures.model_copy(update={"host": h100.host.model_copy(update={"thread_wake_us": wake_us})})
    profile = Profile(figures)

    def consumer(rt, q):
        got = []
        for _ in range(2):
            item = yield rt.get(q)
            got.append(((yield rt.now()), item))
        return got

    def main(rt):
        q = yield rt.make_queue(4, "q")
        child = yield rt.spawn(consumer, q, name="consumer")
        yield rt.host_work(100.0)
        yield rt.put(q, "a")  # the consumer is blocked on the empty queue: it wakes late
        yield rt.host_work(300.0)
        yield rt.put(q, "b")  # ditto
        got = yield rt.join(child)  # the consumer is done by then: joining does not block
        return got, (yield rt.now())

    got, end = SimBackend(profile).run(main).result
    assert got == [(pytest.approx(100.0 + wake_us), "a"), (pytest.approx(400.0 + wake_us), "b")]
    assert end == pytest.approx(400.0 + wake_us + wake_us)  # join blocked until the consumer's end, then woke

    def ready(rt):
        q = yield rt.make_queue(4, "q")
        yield rt.put(q, 1)
        item = yield rt.get(q)  # already there: no wake-up
        return item, (yield rt.now())

    assert SimBackend(profile).run(ready).result == (1, 0.0)
    assert h100.host.thread_wake_us == 0.0  # profiles without the figure model hand-offs as free
