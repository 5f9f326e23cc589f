"""The native executor's state machine, in Python, with the fake device: the C++ in ``src/`` mirrors it line by line.

One host thread runs its steps (:mod:`.steps`) like this:

1. **Pace.** The step is due ``gap_ns`` after the previous step was done (its
   *target*); the thread spins on the clock until then and *begins* it
   (``begin - target`` is the pacing lateness).
2. **Hold to the recorded cost.** A device call with a recorded cost
   (``call_ns`` >= 0: kernel, graph, copy, record, wait) is held until
   ``begin + call_ns - estimate``, where ``estimate`` is what such calls have
   cost this thread (a running mean, 1/8 per call, from ``est0_ns``): the call
   reaches the device at the end of its recorded cost, as in the recording and
   as the simulator charges it.
3. **Call.** The device call (``api`` .. ``ret``). A wait on a symbolic event
   that no step has recorded yet is skipped (status unresolved); a host sync on
   one, and a device sync, sync every stream with work outstanding, in the
   program's sync order. Syncs, joins and pageable copies spin until done.
4. **Go on** at ``done = max(ret, begin + call_ns)`` (``ret`` for syncs and joins;
   a join goes on no earlier than the joined thread's last step was done).
5. **Catch up.** A held call done later than ``target + call_ns`` (paced late, or
   a call slower than its estimate) leaves the thread behind the recorded
   timeline by that much, at most ``CATCH_UP_CAP_NS`` a step (the jitter of a
   launch or of the host's scheduler, not a call that blocks); the next gaps
   are shortened by what is behind until it is made up, so that such lateness
   does not add up over thousands of calls (the simulator has none). A sync or
   a join waits for the device or another thread: it clears what was behind.

The device is an interface (:class:`Device`): the CUDA one (``src/cuda_api.cu``),
and the fake one here and in ``src/fake_device.hpp``, which keeps a virtual clock
per thread and models the GPU's streams in whole nanoseconds, so that the twin
and the compiled executor must agree to the nanosecond (``tests/test_native_executor.py``).
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from replay.native.steps import (
    NO_EVENT,
    OUT_DTYPE,
    STATUS_ALL_STREAMS,
    STATUS_OK,
    STATUS_UNRESOLVED,
    Dir,
    Mem,
    NativeProgram,
    Op,
)

HELD_OPS = (Op.KERNEL, Op.GRAPH, Op.COPY, Op.RECORD, Op.WAIT)  # calls held to their recorded cost
WORK_OPS = (Op.KERNEL, Op.GRAPH, Op.COPY)  # leave work outstanding on their stream
WAITING_OPS = (Op.SYNC_EVENT, Op.SYNC_STREAM, Op.SYNC_DEVICE, Op.JOIN)  # wait out the device or a thread (rule 5)
MASK_STREAMS = 31  # streams a STATUS_ALL_STREAMS step can name in aux
EST_SHIFT = 3  # the running estimate moves 1/8 of the way per call
CATCH_UP_CAP_NS = 10_000  # a held call's lateness made up from the next gaps, at most (rule 5)


def _trunc_div(x: int, d: int) -> int:
    """C++'s integer division (toward zero)."""
    q = abs(x) // d
    return q if x >= 0 else -q


class Device(Protocol):
    """What the state machine asks of a device and its clock (one view per host thread)."""

    def now(self) -> int: ...
    def spin_until(self, t_ns: int) -> None: ...
    def relax(self) -> None: ...  # one poll of the device: the fake's clock moves
    def pause(self) -> None: ...  # let another host thread run: no clock of the device's moves
    def launch(self, step: np.void) -> None: ...
    def launch_graph(self, step: np.void) -> None: ...
    def copy(self, step: np.void) -> None: ...
    def record(self, step: np.void) -> None: ...
    def wait(self, step: np.void, event: int) -> None: ...
    def query_event(self, event: int) -> bool: ...
    def query_stream(self, stream: int) -> bool: ...


class Shared:
    """What the threads of one run share: each symbolic event's latest record, the streams with work outstanding
    (and the order a device sync goes through them), which threads are done."""

    def __init__(self, events: int, threads: int, sync_order: list[int]) -> None:
        self.latest = [NO_EVENT] * events
        self.sync_order = list(sync_order)
        self.outstanding = [False] * len(sync_order)
        self.end_ns = [0] * threads  # when each thread's last step was done (set before done)
        self.done = [False] * threads


def _pageable(step: np.void) -> bool:
    return int(step["op"]) == Op.COPY and int(step["direction"]) != Dir.D2D and int(step["memory"]) == Mem.PAGEABLE


def run_thread(
    dev: Device, shared: Shared, index: int, steps: np.ndarray, out: np.ndarray, start_ns: int, est0_ns: int
) -> None:
    """Run one thread's ``steps`` from ``start_ns``, writing ``out`` (OUT_DTYPE, host fields)."""
    est = [est0_ns] * (max(Op) + 1)
    cursor = start_ns
    behind = 0
    for i in range(len(steps)):
        s = steps[i]
        op = int(s["op"])
        call = int(s["call_ns"])
        gap = int(s["gap_ns"])
        caught = min(behind, gap)
        behind -= caught
        target = cursor + gap - caught
        dev.spin_until(target)
        begin = dev.now()
        status = STATUS_OK
        event = NO_EVENT
        aux = 0
        if op in (Op.WAIT, Op.SYNC_EVENT):
            event = shared.latest[int(s["slot"])]
            aux = event
            if event == NO_EVENT:
                status = STATUS_UNRESOLVED if op == Op.WAIT else STATUS_ALL_STREAMS
        held = op in HELD_OPS and status == STATUS_OK
        if held and call >= 0:
            hold = begin + call - est[op]
            if hold > begin:
                dev.spin_until(hold)
        api = dev.now()
        if op in WORK_OPS:
            shared.outstanding[int(s["stream"])] = True
        if op == Op.SYNC_DEVICE:
            status = STATUS_ALL_STREAMS
        if status == STATUS_ALL_STREAMS:
            aux = 0
            for k in shared.sync_order:
                if shared.outstanding[k]:
                    while not dev.query_stream(k):
                        dev.relax()
                    if k < MASK_STREAMS:
                        aux |= 1 << k
            for k in shared.sync_order:
                shared.outstanding[k] = False
        elif status == STATUS_OK:
            if op == Op.KERNEL:
                dev.launch(s)
            elif op == Op.GRAPH:
                dev.launch_graph(s)
            elif op == Op.COPY:
                dev.copy(s)
            elif op == Op.RECORD:
                dev.record(s)
                shared.latest[int(s["slot"])] = int(s["ev_a"])
            elif op == Op.WAIT:
                dev.wait(s, event)
            elif op == Op.SYNC_EVENT:
                while not dev.query_event(event):
                    dev.relax()
            elif op == Op.SYNC_STREAM:
                while not dev.query_stream(int(s["stream"])):
                    dev.relax()
                shared.outstanding[int(s["stream"])] = False
            elif op == Op.JOIN:
                while not shared.done[int(s["slot"])]:
                    dev.pause()
                dev.spin_until(shared.end_ns[int(s["slot"])])
        ret = dev.now()
        if held and _pageable(s):
            while not dev.query_event(int(s["ev_b"])):
                dev.relax()
        elif held:
            est[op] += _trunc_div(ret - api - est[op], 1 << EST_SHIFT)
        end = dev.now()
        if held and call >= 0:
            done = max(end, begin + call)
            behind += min(done - (target + call), CATCH_UP_CAP_NS)
        else:
            done = end
            if op in WAITING_OPS:
                behind = 0
        out[i] = (target, begin, api, end, done, -1, -1, status, aux)
        cursor = done
    shared.end_ns[index] = cursor
    shared.done[index] = True


# --------------------------------------------------------------------------- the fake device


@dataclass(frozen=True)
class FakeCosts:
    """The fake device's costs, in ns (the same numbers as ``src/fake_device.hpp``)."""

    launch: int = 2000
    graph: int = 2500
    copy: int = 3000
    record: int = 600
    wait: int = 600
    latency: int = 1000  # from a call to its op reaching an idle stream
    kernel_overhead: int = 1000  # a kernel runs its timer plus this
    copy_fixed: int = 1000
    copy_bytes_per_us: int = 20_000
    poll: int = 100  # one relax()


class FakeGpu:
    """Streams, timing events and kernel stamps of a modelled GPU (whole ns, no randomness)."""

    def __init__(self, program: NativeProgram, costs: FakeCosts = FakeCosts()) -> None:
        self.c = costs
        self.ready = [0] * program.streams
        self.ev = [-1] * program.timing_events
        self.stamp_start = [-1] * program.stamps
        self.stamp_end = [-1] * program.stamps
        self.graph_ns = [sum(t + costs.kernel_overhead for t in g.timer_ns) for g in program.graphs]
        self.lock = threading.Lock()


class FakeThread:
    """One host thread's view of the fake GPU, with its own virtual clock."""

    def __init__(self, gpu: FakeGpu, start_ns: int = 0) -> None:
        self.gpu = gpu
        self.t = start_ns

    def now(self) -> int:
        return self.t

    def spin_until(self, t_ns: int) -> None:
        self.t = max(self.t, t_ns)

    def relax(self) -> None:
        self.t += self.gpu.c.poll

    def pause(self) -> None:
        os.sched_yield()

    def _issue(self, cost: int, stream: int) -> int:
        """Charge the call; when the op reaches its stream."""
        api = self.t
        self.t += cost
        return max(api + self.gpu.c.latency, self.gpu.ready[stream])

    def launch(self, s: np.void) -> None:
        g = self.gpu
        with g.lock:
            start = self._issue(g.c.launch, int(s["stream"]))
            end = start + int(s["timer_ns"]) + g.c.kernel_overhead
            g.ready[int(s["stream"])] = end
            g.stamp_start[int(s["stamp"])], g.stamp_end[int(s["stamp"])] = start, end

    def launch_graph(self, s: np.void) -> None:
        g = self.gpu
        with g.lock:
            a = self._issue(g.c.graph, int(s["stream"]))
            b = a + g.graph_ns[int(s["slot"])]
            g.ready[int(s["stream"])] = b
            g.ev[int(s["ev_a"])], g.ev[int(s["ev_b"])] = a, b

    def copy(self, s: np.void) -> None:
        g = self.gpu
        with g.lock:
            a = self._issue(g.c.copy, int(s["stream"]))
            b = a + g.c.copy_fixed + int(s["nbytes"]) * 1000 // g.c.copy_bytes_per_us
            g.ready[int(s["stream"])] = b
            g.ev[int(s["ev_a"])], g.ev[int(s["ev_b"])] = a, b

    def record(self, s: np.void) -> None:
        g = self.gpu
        with g.lock:
            g.ev[int(s["ev_a"])] = self._issue(g.c.record, int(s["stream"]))

    def wait(self, s: np.void, event: int) -> None:
        g = self.gpu
        with g.lock:
            a = self._issue(g.c.wait, int(s["stream"]))
            b = max(a, g.ev[event])
            g.ready[int(s["stream"])] = b
            g.ev[int(s["ev_a"])], g.ev[int(s["ev_b"])] = a, b

    def query_event(self, event: int) -> bool:
        with self.gpu.lock:
            return 0 <= self.gpu.ev[event] <= self.t

    def query_stream(self, stream: int) -> bool:
        with self.gpu.lock:
            return self.gpu.ready[stream] <= self.t


def fill_device_times(program: NativeProgram, outs: list[np.ndarray], gpu: FakeGpu) -> None:
    """Each device op's start and end from the fake GPU's events and stamps (in place)."""
    ev = np.asarray(gpu.ev + [-1], dtype=np.int64)  # index -1 -> -1
    starts = np.asarray(gpu.stamp_start + [-1], dtype=np.int64)
    ends = np.asarray(gpu.stamp_end + [-1], dtype=np.int64)
    for steps, out in zip(program.threads, outs):
        kernel = steps["op"] == Op.KERNEL
        record = steps["op"] == Op.RECORD
        ok = out["status"] == STATUS_OK
        a = np.where(kernel, starts[steps["stamp"]], ev[steps["ev_a"]])
        b = np.where(kernel, ends[steps["stamp"]], np.where(record, ev[steps["ev_a"]], ev[steps["ev_b"]]))
        out["gpu_start_ns"] = np.where(ok, a, -1)
        out["gpu_end_ns"] = np.where(ok, b, -1)


def run_fake(
    program: NativeProgram, est0_ns: int = 2000, costs: FakeCosts = FakeCosts(), threaded: bool = True
) -> list[np.ndarray]:
    """Run ``program`` on the fake device, one Python thread per host thread; the out arrays, per thread.

    ``threaded=False`` runs the threads one after another, the last first: the same on every run (threads that
    share a stream, or an event recorded by one and waited on by another, race when threaded).
    """
    gpu = FakeGpu(program, costs)
    shared = Shared(program.events, len(program.threads), program.sync_order)
    outs = [np.zeros(len(steps), OUT_DTYPE) for steps in program.threads]
    errors: list[BaseException] = []

    def body(t: int) -> None:
        try:
            run_thread(FakeThread(gpu), shared, t, program.threads[t], outs[t], 0, est0_ns)
        except BaseException as err:  # pragma: no cover - surfaced below
            errors.append(err)
            shared.done[t] = True

    if threaded:
        workers = [threading.Thread(target=body, args=(t,)) for t in range(len(program.threads))]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    else:  # one after another, the last thread first: a thread that joins others runs after them
        for t in reversed(range(len(program.threads))):
            body(t)
    if errors:
        raise errors[0]
    fill_device_times(program, outs, gpu)
    return outs


# --------------------------------------------------------------------------- checking a real run against the twin


def rule_breaks(program: NativeProgram, outs: list[np.ndarray], est0_ns: int, slack_ns: int | None = 0) -> list[str]:
    """Where a run's outputs break the state machine's rules (empty: none); for runs on a real clock.

    A real clock cannot be replayed, but each rule can be checked from what the
    run wrote: every target is the previous step's ``done`` plus the gap less
    what is made up of the thread's lateness (rule 5, recomputed); no
    step begins before its target; a held call is made no earlier than
    ``begin + call_ns - estimate``, the estimate recomputed from the run's own
    call times exactly as the executor keeps it; ``done`` is ``max(end, begin
    + call_ns)`` for held calls and ``end`` otherwise; times never go back.
    These hold exactly on any clock. One rule is about time: a held call is
    made no later than ``slack_ns`` after its hold (0 for the fake device;
    ``None`` skips it: on a real host an interrupt between the hold and the
    call breaks it, which :func:`hold_overshoots_ns` measures instead).
    """
    breaks, overshoots = _check(program, outs, est0_ns)
    if slack_ns is not None:
        breaks += [f"{where}: called at {api}, {late} ns after its hold" for where, api, late in overshoots
                   if late > slack_ns]  # fmt: skip
    return breaks


def hold_overshoots_ns(program: NativeProgram, outs: list[np.ndarray], est0_ns: int) -> np.ndarray:
    """How long after its hold each held call was made (ns), in thread then step order: the pacing lateness of held
    calls (0 where the clock was read on time; an interrupt in between shows as its length)."""
    return np.asarray([late for _, _, late in _check(program, outs, est0_ns)[1]], dtype=np.int64)


def _check(
    program: NativeProgram, outs: list[np.ndarray], est0_ns: int
) -> tuple[list[str], list[tuple[str, int, int]]]:
    """(the exact rules' breaks, (where, api, ns after its hold) of every held call with a recorded cost)."""
    breaks: list[str] = []
    overshoots: list[tuple[str, int, int]] = []
    for t, (steps, out) in enumerate(zip(program.threads, outs)):
        est = [est0_ns] * (max(Op) + 1)
        cursor = None
        behind = 0
        for i in range(len(steps)):
            s, o = steps[i], out[i]
            op, call, status = int(s["op"]), int(s["call_ns"]), int(o["status"])
            target, begin, api, ret, done = (
                int(o[k]) for k in ("target_ns", "begin_ns", "api_ns", "ret_ns", "done_ns")
            )
            where = f"thread {t}, step {i} ({Op(op).name})"
            gap = int(s["gap_ns"])
            caught = min(behind, gap)
            behind -= caught
            if cursor is not None and target != cursor + gap - caught:
                breaks.append(f"{where}: target {target} != previous done {cursor} + gap {gap} - made up {caught}")
            if not target <= begin <= api <= ret:
                breaks.append(f"{where}: times out of order: target {target} begin {begin} api {api} ret {ret}")
            held = op in HELD_OPS and status == STATUS_OK
            if held and call >= 0 and api < begin + call - est[op]:
                breaks.append(f"{where}: called at {api}, before its hold {begin + call - est[op]}")
            if held and call >= 0:
                overshoots.append((where, api, api - max(begin, begin + call - est[op])))
            expect = max(ret, begin + call) if held and call >= 0 else ret
            if done != expect:
                breaks.append(f"{where}: done {done} != {expect}")
            if held and call >= 0:  # from what done should be: a wrong done shows in the next target as well
                behind += min(expect - (target + call), CATCH_UP_CAP_NS)
            elif op in WAITING_OPS:
                behind = 0
            if held and not _pageable(s):
                # the executor reads ``ret`` before a pageable copy's wait; otherwise ret is the call's return
                est[op] += _trunc_div(ret - api - est[op], 1 << EST_SHIFT)
            cursor = done
    return breaks, overshoots
