"""One host thread, no event queue: every op's start and end worked out when it is issued.

A run whose policy keeps to one host thread (no ``spawn``, no queues) issues its
calls in time order, and as long as nothing on its devices contends, when an op
will start and end is known the moment it reaches its stream:

* a stream's op starts when the op is issued or when the stream's previous op
  ends, whichever is later (after a graph node's launch gap; a graph's first
  kernel no earlier than its launch's ``latency_us`` after the call returned);
* a kernel alone on the device's compute runs at its solo rate; a wait ends when
  its event's record op runs; a record op runs when its stream reaches it;
* a copy takes its direction's copy engine when its stream reaches it, or when
  the engine's previous copy ends, then pays the curve's latency and moves its
  bytes at the curve's bandwidth for its size;
* a sync ends when the op it waits for ends, plus ``sync_wake_us``;
* a kernel queued behind a host-link copy starts ``kernel_after_copy_us`` after
  the copy's end at the earliest, one queued behind a wait that blocked
  ``kernel_after_event_us`` after the event completed (the stream's ``handoff_us``).

These are the full model's rules (``sim.engine``) with the same arithmetic, so
the op timeline is identical to the last bit. The executor gives up, raising
:class:`NeedsEventModel`, the moment the run does something whose timing would
depend on contention or on the order of simultaneous events: a second host
thread or a queue; a kernel or device-to-device copy that would overlap (or
touch) compute work of another stream; a copy that would request its engine
before, or at the same instant as, a copy of another stream issued earlier; a
transfer that would overlap (or touch) one in the other direction of the same
link; an event queried at the very instant it completes; anything the full
model would reject. The overlap checks are conservative: they compare with the
latest end so far, not with every interval, so they may give up where the full
model would have found no contention; then the full model simply runs instead.
``SimBackend.run`` catches it and runs the policy again from the start on the
full model (policies are deterministic functions of their inputs and
``rt.rng``, which is re-seeded), so giving up costs time, never accuracy.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from harness.backend import HOST_DEVICE, RunResult
from harness.oplog import OpLog
from harness.profile import Profile
from harness.program import expand
from harness.runtime import (
    COPY_KIND,
    Alloc,
    Buffer,
    Copy,
    CreateStream,
    Direction,
    Event,
    Free,
    HostMemory,
    HostWork,
    Launch,
    LaunchGraph,
    LaunchSync,
    LaunchSyncSeries,
    Now,
    OpKind,
    PolicyGen,
    QueryEvent,
    Record,
    RunProgram,
    Runtime,
    Stream,
    SyncEvent,
    SyncStream,
    Thread,
    WaitEvent,
)
from sim.fluid import DONE_TOLERANCE, solo_end_us
from sim.program import run_on_timeline

_NEVER = float("-inf")
_KERNEL = OpKind.KERNEL.value
_RECORD = OpKind.RECORD.value
_WAIT = OpKind.WAIT.value
_HOST_SYNC = OpKind.HOST_SYNC.value
_HOST_WORK = OpKind.HOST_WORK.value
_COPY_D2D = OpKind.COPY_D2D.value
_PINNED = HostMemory.PINNED.value
_PAGEABLE = HostMemory.PAGEABLE.value
_MAIN = "main"


class NeedsEventModel(Exception):
    """The run does something whose timing this executor cannot work out exactly; the SimPy model must run it."""


class _Engine:
    """One copy engine of a device (one per direction) and its direction of the host link."""

    __slots__ = ("free_us", "request_us", "stream", "link_end_us", "other", "kind", "pinned", "pageable")

    def __init__(self, profile: Profile, direction: Direction) -> None:
        self.free_us = _NEVER  # when its latest copy ends
        self.request_us = _NEVER  # when its latest copy asked for it
        self.stream: _Stream | None = None  # ... from which stream
        self.link_end_us = _NEVER  # latest end of a transfer in this direction
        self.other: _Engine | None = None  # the other direction's engine
        self.kind = COPY_KIND[direction].value
        self.pinned = profile.curve(direction, HostMemory.PINNED)
        self.pageable = profile.curve(direction, HostMemory.PAGEABLE)


class _Device:
    __slots__ = ("index", "capacity_bytes", "used_bytes", "compute_end_us", "compute_stream", "h2d", "d2h")

    def __init__(self, index: int, capacity_bytes: int, profile: Profile) -> None:
        self.index = index
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0
        self.compute_end_us = _NEVER  # latest end of compute work (kernels, D2D copies) so far
        self.compute_stream: _Stream | None = None  # ... and the stream it ran on
        self.h2d = _Engine(profile, Direction.H2D)
        self.d2h = _Engine(profile, Direction.D2H)
        self.h2d.other, self.d2h.other = self.d2h, self.h2d


class _Stream:
    __slots__ = ("device", "name", "tail_us", "sync_name", "handoff_us")

    def __init__(self, device: _Device, name: str) -> None:
        self.device = device
        self.name = name
        self.tail_us = _NEVER  # when the last op issued to it ends
        self.sync_name = "sync:" + name  # the name of a host sync on it
        self.handoff_us = _NEVER  # a kernel starts no earlier: the latest copy's end or awaited event, plus latency


class TimelineRun:
    """Runs one policy on the timeline executor (see the module's docstring); made fresh for each run."""

    def __init__(
        self, profile: Profile, runtime: Runtime, devices: int, capacity_bytes: int, fast_programs: bool = True
    ) -> None:
        self.profile = profile
        self.fast_programs = fast_programs  # False: program commands through their reference expansion
        self.runtime = runtime
        self.devices = [_Device(i, capacity_bytes, profile) for i in range(devices)]
        self.host = profile.host
        self.after_copy_us = profile.device.kernel_after_copy_us
        self.after_event_us = profile.device.kernel_after_event_us
        self.rows: list[tuple] = []  # op rows (OpRow field order) not yet in the log
        self.log = OpLog()
        self.now_us = 0  # SimPy's clock starts at the int 0 too: a run that never moves it records ints
        self.next_id = 0
        self.handlers: dict[type, Callable[[Any], Any]] = {
            Now: self._now,
            CreateStream: self._create_stream,
            QueryEvent: self._query_event,
            Launch: self._launch,
            LaunchSync: self._launch_sync,
            LaunchSyncSeries: self._launch_sync_series,
            LaunchGraph: self._launch_graph,
            Copy: self._copy,
            Record: self._record,
            WaitEvent: self._wait_event,
            SyncEvent: self._sync_event,
            SyncStream: self._sync_stream,
            HostWork: self._host_work,
            Alloc: self._alloc,
            Free: self._free,
            RunProgram: self._run_program,
        }  # every other command (spawn, join, queues) needs the event model

    def run(self, main: Callable[..., PolicyGen], *args: Any) -> RunResult:
        self.next_id += 1
        Thread(self.next_id, _MAIN)  # the main thread's id, as the full model numbers it
        result = self._drive(main(self.runtime, *args))
        self.log.extend(self.rows)
        return RunResult(self.log, result, self.now_us)

    def _drive(self, gen: PolicyGen) -> Any:
        """Run a generator of commands to its end; returns its return value."""
        send = gen.send
        handlers = self.handlers
        rows, log, chunk = self.rows, self.log, OpLog.CHUNK_ROWS
        value: Any = None
        while True:
            try:
                cmd = send(value)
            except StopIteration as stop:
                return stop.value
            handler = handlers.get(type(cmd))
            if handler is None:
                raise NeedsEventModel(f"{type(cmd).__name__} needs the event model")
            value = handler(cmd)
            if len(rows) >= chunk:  # rows are appended to a list (the cheapest append there is), logged in chunks
                log.extend(rows)
                rows.clear()

    def _run_program(self, cmd: RunProgram) -> Any:
        """A program command: its steps in one loop (:func:`sim.program.run_on_timeline`), or (``fast_programs``
        off) its reference expansion (``harness.program.expand``) on this executor."""
        if self.fast_programs:
            return run_on_timeline(self, cmd)
        return self._drive(expand(self.runtime, cmd))

    # ------------------------------------------------------------------ host
    def _host_row(self, kind: str, name: str, start_us: float) -> None:
        self.next_id += 1
        self.rows.append((self.next_id, HOST_DEVICE, _MAIN, kind, name, 0, "", _MAIN, start_us, start_us, self.now_us))

    def _now(self, cmd: Now) -> float:
        return self.now_us

    def _host_work(self, cmd: HostWork) -> None:
        start = self.now_us
        if cmd.duration_us > 0.0:
            self.now_us = start + cmd.duration_us
        self._host_row(_HOST_WORK, cmd.name, start)

    def _wake_after(self, ready_us: float, name: str) -> None:
        """Block the host until ``ready_us``, pay the wake-up, record the sync."""
        start = self.now_us
        now = ready_us if ready_us > start else start
        wake = self.host.sync_wake_us
        self.now_us = now + wake if wake > 0.0 else now
        self._host_row(_HOST_SYNC, name, start)

    def _sync_stream(self, cmd: SyncStream | LaunchSync) -> None:
        stream: _Stream = cmd.stream.native
        self._wake_after(stream.tail_us, stream.sync_name)

    def _sync_event(self, cmd: SyncEvent) -> None:
        self._wake_after(cmd.event.native, "sync_event")

    def _query_event(self, cmd: QueryEvent) -> bool:
        done_us = cmd.event.native
        if done_us == self.now_us:
            raise NeedsEventModel("an event queried at the instant it completes")
        return done_us < self.now_us

    def _pay(self, cost_us: float) -> float:
        """Charge the host a call's cost; returns when the call was made."""
        issue = self.now_us
        if cost_us > 0.0:
            self.now_us = issue + cost_us
        return issue

    # ------------------------------------------------------------------ memory and streams
    def _create_stream(self, cmd: CreateStream) -> Stream:
        self.next_id += 1
        handle = Stream(self.next_id, cmd.device, cmd.name)
        handle.native = _Stream(self.devices[cmd.device], cmd.name)
        return handle

    def _alloc(self, cmd: Alloc) -> Buffer | None:
        self._pay(self.host.alloc_us)
        device = self.devices[cmd.device]
        if device.used_bytes + cmd.nbytes > device.capacity_bytes:
            return None
        device.used_bytes += cmd.nbytes
        self.next_id += 1
        return Buffer(self.next_id, cmd.device, cmd.nbytes, cmd.name)

    def _free(self, cmd: Free) -> None:
        self._pay(self.host.free_us)
        buffer = cmd.buffer
        if buffer.native == "freed":
            raise NeedsEventModel("a buffer freed twice (the full model reports it)")
        buffer.native = "freed"
        self.devices[buffer.device].used_bytes -= buffer.nbytes

    # ------------------------------------------------------------------ device work
    def _compute(self, stream: _Stream, start_us: float, work_us: float, share: float) -> float:
        """When compute work started at ``start_us`` ends, running alone (``sim.fluid``'s arithmetic)."""
        if work_us <= DONE_TOLERANCE:
            return start_us  # never reaches the compute server
        device = stream.device
        if device.compute_stream is not stream and start_us <= device.compute_end_us:
            raise NeedsEventModel("compute work of two streams overlaps")
        end = solo_end_us(start_us, work_us, share)
        if end > device.compute_end_us:
            device.compute_end_us = end
            device.compute_stream = stream
        return end

    def _kernel(
        self,
        handle: Stream,
        name: str,
        work_us: float,
        share: float,
        issue_us: float,
        gap_us: float,
        not_before_us: float = _NEVER,
    ) -> None:
        stream: _Stream = handle.native
        self.next_id += 1
        ready = self.now_us if self.now_us > stream.tail_us else stream.tail_us
        start = ready + gap_us if gap_us > 0.0 else ready
        if not_before_us > start:  # a graph launch's latency, not yet out (the model's timeout)
            start = start + (not_before_us - start)
        if stream.handoff_us > start:  # released by a copy or an event just now (the model's timeout)
            start = start + (stream.handoff_us - start)
        end = self._compute(stream, start, work_us, share) if work_us > 0.0 else start
        stream.tail_us = end
        self.rows.append(
            (self.next_id, stream.device.index, stream.name, _KERNEL, name, 0, "", _MAIN, issue_us, start, end)
        )

    def _launch(self, cmd: Launch) -> None:
        issue = self._pay(self.host.launch_us if cmd.host_us is None else cmd.host_us)
        self._kernel(cmd.stream, cmd.name, cmd.duration_us, cmd.compute_share, issue, 0.0)

    def _launch_sync(self, cmd: LaunchSync) -> float:
        """A launch, then a sync of its stream; returns when the host woke."""
        self._launch(cmd)
        self._sync_stream(cmd)
        return self.now_us

    def _launch_sync_series(self, cmd: LaunchSyncSeries) -> list[float]:
        """``launch_sync`` per duration until ``until()`` holds after a step; returns when each woke."""
        times: list[float] = []
        for duration in cmd.each_duration_us():
            times.append(self._launch_sync(LaunchSync(cmd.stream, cmd.name, duration, cmd.compute_share, cmd.kind)))
            if cmd.until is not None and cmd.until():
                break
        return times

    def _launch_graph(self, cmd: LaunchGraph) -> None:
        issue = self._pay(self.host.graph_launch_cost_us if cmd.host_us is None else cmd.host_us)
        gap = self.profile.device.graph_kernel_gap_us
        kernels = cmd.kernels
        first = kernels[0]
        not_before = self.now_us + cmd.latency_us if cmd.latency_us > 0.0 else _NEVER
        self._kernel(cmd.stream, first.name, first.duration_us, first.compute_share, issue, 0.0, not_before)
        for k in kernels[1:]:
            self._kernel(cmd.stream, k.name, k.duration_us, k.compute_share, issue, gap)

    def _copy(self, cmd: Copy) -> None:
        issue = self._pay(self.host.copy_launch_us if cmd.host_us is None else cmd.host_us)
        now = self.now_us
        stream: _Stream = cmd.stream.native
        device = stream.device
        self.next_id += 1
        ready = now if now > stream.tail_us else stream.tail_us
        direction = cmd.direction
        nbytes = cmd.nbytes
        if direction is Direction.D2D:
            solo_us = self.profile.d2d_time_us(nbytes) if cmd.duration_us is None else cmd.duration_us
            end = self._compute(stream, ready, solo_us, 1.0)
            start, kind, memory = ready, _COPY_D2D, ""
        else:
            engine = device.h2d if direction is Direction.H2D else device.d2h
            # The engine is FIFO by request time: a request earlier than (or simultaneous with) one of
            # another stream already placed would have been served in another order.
            if ready < engine.request_us or (ready == engine.request_us and engine.stream is not stream):
                raise NeedsEventModel("copies of two streams reach one copy engine out of issue order")
            engine.request_us = ready
            engine.stream = stream
            start = ready if ready > engine.free_us else engine.free_us
            pinned = cmd.host_memory is HostMemory.PINNED
            curve = engine.pinned if pinned else engine.pageable
            recorded = cmd.duration_us
            moving = start + curve.latency_us if curve.latency_us > 0.0 and recorded is None else start
            if recorded is not None:  # the recording's time: the link busy for all of it
                if moving <= engine.other.link_end_us:
                    raise NeedsEventModel("transfers in both directions of one link overlap")
                end = moving + recorded
                engine.link_end_us = end
            elif nbytes > 0:
                if moving <= engine.other.link_end_us:
                    raise NeedsEventModel("transfers in both directions of one link overlap")
                moving_us = nbytes / curve.bandwidth_bytes_per_us(nbytes)
                if moving_us < 0.0:  # max(moving_us, 0.0), as sim.fluid writes it, without the call
                    moving_us = 0.0
                end = moving + moving_us
                engine.link_end_us = end
            else:
                end = moving
            engine.free_us = end
            kind, memory = engine.kind, _PINNED if pinned else _PAGEABLE
            if self.after_copy_us > 0.0:
                stream.handoff_us = end + self.after_copy_us
        stream.tail_us = end
        row = (self.next_id, device.index, stream.name, kind, cmd.name, nbytes, memory, _MAIN, issue, start, end)
        self.rows.append(row)
        if memory is _PAGEABLE:  # the driver stages pageable memory through a pinned buffer: the host is held
            self._wake_after(end, "pageable:" + cmd.name)

    def _record(self, cmd: Record) -> Event:
        issue = self._pay(self.host.record_us if cmd.host_us is None else cmd.host_us)
        now = self.now_us
        stream: _Stream = cmd.stream.native
        self.next_id += 1
        event = Event(self.next_id, cmd.stream)
        self.next_id += 1
        at = now if now > stream.tail_us else stream.tail_us
        stream.tail_us = at
        event.native = at  # when it completes
        self.rows.append(
            (
                self.next_id,
                stream.device.index,
                stream.name,
                _RECORD,
                f"event{event.id}",
                0,
                "",
                _MAIN,
                issue,
                at,
                at,
            )
        )
        return event

    def _wait_event(self, cmd: WaitEvent) -> None:
        issue = self._pay(self.host.wait_us if cmd.host_us is None else cmd.host_us)
        now = self.now_us
        stream: _Stream = cmd.stream.native
        self.next_id += 1
        start = now if now > stream.tail_us else stream.tail_us
        done_us = cmd.event.native
        end = done_us if done_us > start else start
        if self.after_event_us > 0.0:
            if done_us == start:
                raise NeedsEventModel("a wait reached at the instant its event completes (is it released or not?)")
            if done_us > start:
                stream.handoff_us = end + self.after_event_us
        stream.tail_us = end
        self.rows.append(
            (
                self.next_id,
                stream.device.index,
                stream.name,
                _WAIT,
                f"event{cmd.event.id}",
                0,
                "",
                _MAIN,
                issue,
                start,
                end,
            )
        )
