"""The simulator backend: drives policy generators on a SimPy model of GPUs.

What is modelled (figures from the hardware profile, see ``harness.profile``):

* **host threads** are SimPy processes, one per policy thread. Each runtime call
  costs the calling thread the profile's host time (``launch_us``,
  ``copy_launch_us``, ``graph_launch_us``, ``record_us``, ``wait_us``,
  ``alloc_us``, ``free_us``; or the call's own ``host_us`` when the policy
  gives it) before the work reaches its stream; a thread that blocked on the GPU pays
  ``sync_wake_us`` when it wakes, one that blocked on another host thread (a
  queue get or put, a join) ``thread_wake_us``. Host threads never contend for
  CPU cores.
* **streams** are in-order queues, each served by one SimPy process.
* **compute** is one fluid server per device (:func:`sim.fluid.compute_rates`).
* **copies**: one copy engine per direction per device (H2D and D2H overlap),
  FIFO across streams. A copy holds its engine for ``latency_us`` and then
  moves its bytes over the device's host link, a fluid server whose two
  directions slow by the duplex factor while both are busy (a copy that carries
  its recorded time, ``Copy.duration_us``, moves its bytes at the rate that gives
  that time alone, without the latency). A pageable copy
  also holds its issuing host thread until it has finished. D2D copies run
  through the compute server as memory-bound work of share 1.
* **events** complete when their stream reaches them; a stream waiting on an
  event starts nothing after the wait until the event completes.
* **memory**: allocations are checked against each device's capacity.
* **collectives** (:mod:`sim.collectives`): each rank's part waits on its stream
  until every rank's stream has reached it, then the collective runs on every
  participating device's compute server (its solo time from the profile, at
  NCCL's compute share) and ends on all ranks with the slowest.

Every op is recorded as a row of an :class:`harness.backend.OpLog` (a tuple in
:class:`harness.backend.OpRow` field order).

**Fast paths.** The SimPy model above is the reference. These shortcuts skip its
event queue where nothing else can happen in the meantime, and give the same
op timeline to the last bit (``tests/test_sim_fast_paths.py`` checks it against
``SimBackend(..., fast=False)``, which turns them off):

* a run of one host thread is first tried on :mod:`sim.timeline`, which works out
  every op's start and end when it is issued, with no event queue at all; the
  moment the run needs the event model (a second thread, a queue, contention on
  compute, a copy engine or the link), that executor gives up and the run starts
  again here (``SimBackend.timeline_gave_up`` says why);

* a host thread that must wait ``d`` µs (a call's host cost, host work, a
  wake-up) moves the clock itself when the next pending event lies strictly
  after ``now + d`` (and no other callback of the event that woke it is still
  to run): SimPy would have run nothing but that timeout in between;
* a kernel launched on an idle stream of a device whose compute is idle, and
  synchronised on by the very next call of the same thread (or launched with
  ``launch_sync``), is recorded at once with its start and end (solo rate) and
  the thread wakes after the sync, when no pending event falls before that
  wake-up; otherwise the kernel goes to its stream as usual, at the same instant;
* a ``launch_sync_series`` runs each step as that ``launch_sync`` would: the steps
  that may take the fast path above run in one loop (``_solo_steps``), with no
  round trip to the policy between them;
* a held kernel whose thread then syncs its stream, when that fast path is not open
  (another event falls before the thread would wake), starts on its device from
  the thread itself when the stream worker's wake-up would have been the next event
  run: the worker stays parked until the kernel ends (``_Flight``);
* a program command (``harness.program.RunProgram``) runs its steps in one loop on the
  timeline executor (:func:`sim.program.run_on_timeline`), or, on this model, as commands
  made straight from its steps (``SimBackend(fast_programs=False)``: its reference expansion);
* a queue put with room (a get with an item) that no other thread waits on, while
  nothing else is due at this instant, takes effect at once: SimPy's event for it
  would have been the very next one run, and the thread did not block.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Generator, Iterator
from heapq import heappop
from typing import Any

import simpy
from simpy.core import EmptySchedule, StopSimulation
from simpy.events import EventPriority

from harness.backend import HOST_DEVICE, Backend, OpLog, RunResult, command_handlers
from harness.gc_pause import collector_paused
from harness.profile import Profile
from harness.program import expand
from harness.runtime import (
    COPY_KIND,
    IMMEDIATE,
    Alloc,
    Buffer,
    Collective,
    Command,
    Communicator,
    Copy,
    CreateCommunicator,
    CreateStream,
    DeviceInfo,
    Direction,
    Event,
    Free,
    Get,
    HostMemory,
    HostWork,
    Join,
    Launch,
    LaunchGraph,
    LaunchSync,
    LaunchSyncSeries,
    MakeQueue,
    Now,
    OpKind,
    Put,
    QueryEvent,
    Queue,
    Record,
    RunProgram,
    Runtime,
    Spawn,
    Stream,
    SyncEvent,
    SyncStream,
    Thread,
    WaitEvent,
    event_name,
)
from sim.collectives import CollectiveBook, CollectiveModel, Meeting
from sim.fluid import DONE_TOLERANCE, FluidServer, compute_rates, duplex_link_rates, solo_end_us
from sim.program import program_commands
from sim.timeline import NeedsEventModel, TimelineRun

_KERNEL = OpKind.KERNEL.value
_INFINITY = float("inf")
_NO_STEPS: Iterator[float] = iter(())  # the rest of a series of one step (an exhausted iterator stays exhausted)
_HOST_SYNC = OpKind.HOST_SYNC.value


class _Environment(simpy.Environment):
    """SimPy's environment, telling the fast paths whether the callback running now is its event's last.

    ``step`` is SimPy's own (``simpy.core.Environment.step``) plus that flag: a host thread may move
    the clock itself only when no other callback of the event that resumed it is still to run at
    the current time.
    """

    def __init__(self) -> None:
        super().__init__()
        self.last_callback = True

    def step(self) -> None:
        try:
            self._now, _, _, event = heappop(self._queue)
        except IndexError:
            raise EmptySchedule from None
        callbacks, event.callbacks = event.callbacks, None
        last = len(callbacks) - 1
        try:
            for i, callback in enumerate(callbacks):
                self.last_callback = i == last
                callback(event)
        except StopSimulation:  # as SimPy does: the remaining callbacks run when the simulation resumes
            event.callbacks = callbacks[callbacks.index(callback) + 1 :]
            self.schedule(event, EventPriority(-1))
            raise
        finally:
            self.last_callback = True
        if not event._ok and not hasattr(event, "_defused"):
            exc = type(event._value)(*event._value.args)
            exc.__cause__ = event._value
            raise exc


class PolicyError(RuntimeError):
    """A policy did something the runtime contract forbids."""


class SimDeadlock(RuntimeError):
    """The simulation ran out of events while the main thread was still blocked."""


class _Op:
    __slots__ = (
        "id",
        "kind",
        "name",
        "nbytes",
        "host_memory",
        "direction",
        "work",
        "share",
        "event",
        "thread",
        "issue_us",
        "delay",
        "not_before",
    )

    def __init__(
        self,
        op_id,
        kind,
        name,
        thread,
        issue_us,
        nbytes=0,
        host_memory="",
        direction=None,
        work=0.0,
        share=1.0,
        event=None,
    ):
        self.id = op_id
        self.kind = kind
        self.name = name
        self.nbytes = nbytes
        self.host_memory = host_memory
        self.direction = direction
        self.work = work
        self.share = share
        self.event = event
        self.thread = thread
        self.issue_us = issue_us
        self.delay = 0.0  # device time before the op starts once its stream reaches it (a graph node's launch)
        self.not_before = _NO_HANDOFF  # it starts no earlier (a graph launch's latency after its call returned)


class _SimEvent:
    __slots__ = ("done", "waiters")

    def __init__(self) -> None:
        self.done = False
        self.waiters: simpy.Event | None = None


class _SimDevice:
    __slots__ = ("index", "compute", "link", "engines", "capacity_bytes", "used_bytes")

    def __init__(self, env: simpy.Environment, index: int, profile: Profile, capacity_bytes: int) -> None:
        self.index = index
        self.compute = FluidServer(env, compute_rates)
        self.link = FluidServer(env, duplex_link_rates(profile.duplex_bandwidth_factor))
        self.engines = {Direction.H2D: simpy.Resource(env, 1), Direction.D2H: simpy.Resource(env, 1)}
        self.capacity_bytes = capacity_bytes
        self.used_bytes = 0


class _SimStream:
    __slots__ = (
        "handle",
        "device",
        "pending",
        "wakeup",
        "issued",
        "completed",
        "sync_waiters",
        "sync_name",
        "step_kinds",
        "handoff_us",
    )

    def __init__(self, handle: Stream, device: _SimDevice) -> None:
        self.handle = handle
        self.sync_name = f"sync:{handle.name}"  # the ops-table name of a host sync on it, one str for every row
        self.step_kinds: dict[tuple[str, ...], int] = {}  # (kernel, thread[, sync thread]) -> OpLog.step_kind
        self.device = device
        self.pending: deque[_Op] = deque()
        self.wakeup: simpy.Event | None = None
        self.issued = 0
        self.completed = 0
        self.sync_waiters: deque[tuple[int, simpy.Event]] = deque()
        # A kernel reaching this stream starts no earlier: the latest copy's end plus kernel_after_copy_us,
        # or the latest awaited event's completion plus kernel_after_event_us (-inf: nothing to wait for).
        self.handoff_us = _NO_HANDOFF


_NO_HANDOFF = float("-inf")


def _count_completed(stream: _SimStream) -> None:
    """One more op of ``stream`` is done: wake the syncs that were waiting for it."""
    stream.completed += 1
    waiters = stream.sync_waiters
    while waiters and waiters[0][0] <= stream.completed:
        waiters.popleft()[1].succeed()


class _Flight:
    """A kernel started by its launching thread (``SimBackend._start_held``): when its fluid job completes,
    this does what the stream's worker would have done then, in the same event: record the kernel's row,
    count it completed, wake the syncs it satisfies, and then either go on with ops queued behind it (the
    worker, woken here at once, takes them as it would have) or leave the stream idle."""

    __slots__ = ("backend", "stream", "op_id", "name", "thread", "issue_us", "start_us", "parked")

    def __init__(
        self,
        backend: SimBackend,
        stream: _SimStream,
        op_id: int,
        name: str,
        thread: str,
        issue_us: float,
        start_us: float,
        parked: simpy.Event,
    ) -> None:
        self.backend = backend
        self.stream = stream
        self.op_id = op_id
        self.name = name
        self.thread = thread
        self.issue_us = issue_us
        self.start_us = start_us
        self.parked = parked  # the wake-up the stream's worker waits on

    def __call__(self, done: simpy.Event) -> None:
        stream = self.stream
        end = self.backend.env._now
        row = (self.op_id, stream.device.index, stream.handle.name, _KERNEL, self.name, 0, "", self.thread)
        self.backend.ops.append((*row, self.issue_us, self.start_us, end))
        _count_completed(stream)
        parked = self.parked
        if not stream.pending:
            stream.wakeup = parked
            return
        # Ops were queued behind it: the worker takes the next one now, within this event, as it would have
        # (its wake-up runs here, not scheduled: SimPy's own steps for an event, done at once).
        parked._ok, parked._value = True, None
        callbacks, parked.callbacks = parked.callbacks, None
        for callback in callbacks:
            callback(parked)


class SimBackend(Backend):
    """Runs one policy (a main generator function) to completion on the model."""

    name = "sim"

    def __init__(
        self,
        profile: Profile,
        devices: int = 1,
        device_memory_bytes: int | None = None,
        seed: int = 0,
        *,
        fast: bool = True,
        fast_programs: bool = True,
    ) -> None:
        if devices < 1:
            raise ValueError("a simulation needs at least one device")
        self.profile = profile
        self.device_name = profile.device.gpu_name
        self.fast = fast  # False: every op through the SimPy model (the reference the fast paths are tested against)
        self.fast_programs = fast_programs  # False: program commands through their reference expansion
        self.env = _Environment()
        capacity = min(device_memory_bytes or profile.device.memory_bytes, profile.device.memory_bytes)
        self.devices = [_SimDevice(self.env, i, profile, capacity) for i in range(devices)]
        self.runtime = Runtime(
            [DeviceInfo(i, profile.device.gpu_name, capacity) for i in range(devices)],
            backend="sim",
            seed=seed,
            profile=profile,
        )
        self.seed = seed
        self.timeline_gave_up: str | None = None  # why the run left the timeline executor, if it did
        self.collective_model = CollectiveModel(profile)
        self._collectives = CollectiveBook(self.env, self._start_collective)
        self.ops = OpLog()
        self._next_id = 0
        self._main_return_us = 0.0
        self._host = profile.host
        self._launch_us, self._sync_wake_us = profile.host.launch_us, profile.host.sync_wake_us  # the hot path's
        # a kernel that may fuse with the next call's sync: stream, op id, launch command, thread name, issue, end
        self._held: tuple[_SimStream, int, Launch, str, float, float] | None = None
        handlers = command_handlers(self)
        self._immediate: dict[type, Callable[[Any, Thread], Any]] = {
            c: h for c, h in handlers.items() if c in IMMEDIATE
        }
        self._timed: dict[type, Callable[[Any, Thread], Generator]] = {
            c: h for c, h in handlers.items() if c not in IMMEDIATE
        }

    # ------------------------------------------------------------------ driving
    def run(self, main: Callable[..., Generator[Command, Any, Any]], *args: Any) -> RunResult:
        # The run keeps every op row alive to its end: no cyclic collection while it runs (harness.gc_pause).
        with collector_paused():
            if self.fast:  # one host thread and no contention: no event queue at all (sim.timeline)
                runtime = Runtime(self.runtime.devices, backend="sim", seed=self.seed, profile=self.profile)
                capacity = self.devices[0].capacity_bytes
                timeline = TimelineRun(self.profile, runtime, len(self.devices), capacity, self.fast_programs)
                try:
                    return timeline.run(main, *args)
                except NeedsEventModel as gave_up:  # run it again from the start on the full model
                    self.timeline_gave_up = str(gave_up)
            return self._run_on_event_model(main, *args)

    def _run_on_event_model(self, main: Callable[..., Generator[Command, Any, Any]], *args: Any) -> RunResult:
        main_thread = Thread(self._new_id(), "main")
        process = self.env.process(self._drive(main(self.runtime, *args), main_thread))
        main_thread.native = process
        self.env.run()
        if not process.triggered:
            unfinished = self._collectives.unfinished()
            waiting = f"; unfinished collectives: {'; '.join(unfinished)}" if unfinished else ""
            raise SimDeadlock(
                "the main thread is still blocked after every event ran (waiting on work that never completes?)"
                + waiting
            )
        if not process.ok:  # pragma: no cover - SimPy re-raises before this
            raise process.value
        return RunResult(self.ops, process.value, self._main_return_us)

    def _drive(self, gen: Generator[Command, Any, Any], thread: Thread) -> Generator[simpy.Event, Any, Any]:
        value: Any = None
        immediate = self._immediate
        timed = self._timed
        fast = self.fast
        env = self.env
        send = gen.send
        while True:
            try:
                cmd = send(value)
            except StopIteration as stop:
                if self._held is not None:
                    self._release_held()
                if thread.name == "main":
                    self._main_return_us = self.env.now
                return stop.value
            kind = type(cmd)
            if self._held is not None:
                if kind is SyncStream and self._fused_sync(cmd, thread):
                    value = None
                    continue
                if not (kind is SyncStream and cmd.stream.native is self._held[0] and self._start_held()):
                    self._release_held()
            if kind is LaunchSync:
                if fast and self._launch_sync_at_once(
                    cmd.stream, cmd.name, cmd.duration_us, cmd.compute_share, cmd.host_us, thread
                ):
                    value = env._now
                    continue
            elif kind is Launch and fast and self._launch_at_once(cmd, thread):
                value = None
                continue
            elif kind is Put and fast and self._handoff_now_due(cmd.queue.native, put=True):
                cmd.queue.native.items.append(cmd.item)
                value = None
                continue
            elif kind is Get and fast and self._handoff_now_due(cmd.queue.native, put=False):
                value = cmd.queue.native.items.pop(0)
                continue
            handler = immediate.get(kind)
            if handler is not None:
                value = handler(cmd, thread)
                continue
            timed_handler = timed.get(kind)
            if timed_handler is None:
                raise PolicyError(f"thread {thread.name!r} yielded {cmd!r}, which is not a runtime command")
            value = yield from timed_handler(cmd, thread)

    def _new_id(self) -> int:
        self._next_id += 1
        return self._next_id

    # ------------------------------------------------------------------ fast paths
    def _nothing_due_by(self, t: float) -> bool:
        """Whether SimPy would run nothing else up to and including ``t``: no other callback of the event
        running now is left, and no pending event falls at or before ``t``."""
        env = self.env
        if not env.last_callback:
            return False
        queue = env._queue
        return not queue or queue[0][0] > t

    def _skip_to(self, t: float) -> bool:
        """Move the clock to ``t`` at once if SimPy would run nothing before a timeout ending there."""
        if self.fast and self._nothing_due_by(t):
            self.env._now = t
            return True
        return False

    def _handoff_now_due(self, store: simpy.Store, put: bool) -> bool:
        """Whether a put (``put``) or a get on ``store`` may skip SimPy's event for it: it would succeed at
        once (room for the item, or an item to take, and no other putter or getter waiting, so its event
        would serve no one else when it runs) and that event would be the next one run (nothing else due
        now, no other callback of the current event still to run): the thread would resume before anything
        else happens, without a wake-up (it did not block)."""
        if store.put_queue or store.get_queue:
            return False
        if (len(store.items) >= store.capacity) if put else not store.items:
            return False
        return self._nothing_due_by(self.env._now)

    def _release_held(self) -> None:
        """The held kernel goes to its stream, at the instant it was launched (no time has passed since)."""
        stream, op_id, cmd, thread_name, issue, _ = self._held
        self._held = None
        op = _Op(op_id, OpKind.KERNEL, cmd.name, thread_name, issue, work=cmd.duration_us, share=cmd.compute_share)
        self._enqueue(stream.handle, op)

    def _start_held(self) -> bool:
        """The held kernel starts on its device now, from its launching thread, which syncs its stream next;
        False: nothing done (``_release_held`` then hands it to the stream's worker).

        Handed over, the kernel would start when the worker's wake-up ran, and that wake-up would be the next
        event run (nothing else due now, no other callback of the current event left, and the thread blocks
        on its sync without making an event): so starting it here makes the same fluid job and timer, and
        every later event keeps its place. The worker stays parked until the kernel ends (:class:`_Flight`).
        """
        stream, op_id, cmd, thread_name, issue, _ = self._held
        env = self.env
        if cmd.duration_us <= DONE_TOLERANCE or not self._nothing_due_by(env._now):
            return False
        self._held = None
        stream.issued += 1
        parked, stream.wakeup = stream.wakeup, None  # the stream is busy; its worker waits on ``parked``
        done = stream.device.compute.submit(cmd.duration_us, cmd.compute_share)
        done.callbacks.append(_Flight(self, stream, op_id, cmd.name, thread_name, issue, env._now, parked))
        return True

    def _fused_sync(self, cmd: SyncStream | LaunchSync, thread: Thread) -> bool:
        """The held kernel's stream sync, without SimPy, when nothing else can happen until the thread wakes."""
        stream, op_id, launch, thread_name, issue, end = self._held
        if cmd.stream.native is not stream:
            return False
        wake = self._host.sync_wake_us
        woken = end + wake if wake > 0.0 else end
        if not self._nothing_due_by(woken):
            return False
        self._held = None
        self._record_step(stream, op_id, launch.name, thread_name, issue, self.env._now, end, thread.name, woken)
        return True

    def _launch_sync_at_once(
        self, handle: Stream, name: str, duration_us: float, share: float, host_us: float | None, thread: Thread
    ) -> bool:
        """``launch_sync`` without SimPy (the held kernel and its fused sync in one go); False: nothing done.

        A series of one step (:meth:`_solo_steps`, which holds the conditions and the arithmetic).
        """
        return self._solo_steps(handle, name, share, duration_us, _NO_STEPS, None, thread, [], host_us) is None

    def _record_step(
        self,
        stream: _SimStream,
        op_id: int,
        name: str,
        thread_name: str,
        issue: float,
        start: float,
        end: float,
        sync_thread: str,
        woken: float,
    ) -> None:
        """A kernel that ran solo from ``start`` to ``end`` and the host sync on it that woke at ``woken``."""
        stream.issued += 1
        stream.completed += 1
        self.env._now = woken
        self._next_id += 1
        if type(issue) is not float or self._next_id != op_id + 1:
            self._record_rows(stream, op_id, name, thread_name, issue, start, end, self._next_id, sync_thread, woken)
            return
        # floats all (issue is): one step record (harness.oplog)
        self.ops.append_step(self._step_kind(stream, name, thread_name, sync_thread), op_id, issue, start, end, woken)

    def _step_kind(self, stream: _SimStream, name: str, thread_name: str, sync_thread: str) -> int:
        """The op log's code for steps of kernel ``name`` on ``stream`` (:meth:`harness.oplog.OpLog.step_kind`)."""
        key = (name, thread_name) if thread_name == sync_thread else (name, thread_name, sync_thread)
        kind = stream.step_kinds.get(key)
        if kind is None:
            kind = stream.step_kinds[key] = self.ops.step_kind(
                stream.device.index, stream.handle.name, name, thread_name, sync_thread, stream.sync_name
            )
        return kind

    def _record_rows(
        self,
        stream: _SimStream,
        op_id: int,
        name: str,
        thread_name: str,
        issue: float,
        start: float,
        end: float,
        sync_id: int,
        sync_thread: str,
        woken: float,
    ) -> None:
        """The two rows of a step one by one (SimPy's clock is still the int 0: the table keeps ints as they are)."""
        append = self.ops.append
        append((op_id, stream.device.index, stream.handle.name, _KERNEL, name, 0, "", thread_name, issue, start, end))
        row = (
            sync_id,
            HOST_DEVICE,
            sync_thread,
            _HOST_SYNC,
            stream.sync_name,
            0,
            "",
            sync_thread,
            start,
            start,
            woken,
        )
        append(row)

    # ------------------------------------------------------------------ immediate commands
    def _now(self, cmd: Now, thread: Thread) -> float:
        return self.env.now

    def _query_event(self, cmd: QueryEvent, thread: Thread) -> bool:
        return cmd.event.native.done

    def _create_stream(self, cmd: CreateStream, thread: Thread) -> Stream:
        handle = Stream(self._new_id(), cmd.device, cmd.name)
        stream = _SimStream(handle, self.devices[cmd.device])
        handle.native = stream
        self.env.process(self._stream_worker(stream))
        return handle

    def _create_communicator(self, cmd: CreateCommunicator, thread: Thread) -> Communicator:
        return Communicator(self._new_id(), cmd.devices, cmd.name)

    def _make_queue(self, cmd: MakeQueue, thread: Thread) -> Queue:
        return Queue(self._new_id(), cmd.name, cmd.capacity, simpy.Store(self.env, cmd.capacity))

    def _spawn(self, cmd: Spawn, thread: Thread) -> Thread:
        child = Thread(self._new_id(), cmd.name)
        child.native = self.env.process(self._drive(cmd.fn(self.runtime, *cmd.args), child))
        return child

    # ------------------------------------------------------------------ host-timed commands
    def _launch_at_once(self, cmd: Launch, thread: Thread) -> bool:
        """``_launch`` without a generator, when its host cost needs no SimPy timeout; False: nothing done."""
        issue = self.env._now
        cost = self._host.launch_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            return False
        self._issue_kernel(cmd, thread, issue)
        return True

    def _launch(self, cmd: Launch, thread: Thread):
        issue = self.env._now
        cost = self._host.launch_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        self._issue_kernel(cmd, thread, issue)

    def _issue_kernel(self, cmd: Launch, thread: Thread, issue: float) -> None:
        self._next_id += 1
        op_id = self._next_id
        stream: _SimStream = cmd.stream.native
        fast = self.fast and stream.wakeup is not None and not stream.device.compute.jobs
        if fast and stream.handoff_us <= self.env._now:
            # Idle stream, idle compute: the kernel runs solo from now (sim.fluid's arithmetic).
            # Held for the next call; _fused_sync or _release_held takes it.
            end = solo_end_us(self.env._now, cmd.duration_us, cmd.compute_share)
            self._held = (stream, op_id, cmd, thread.name, issue, end)
            return
        op = _Op(op_id, OpKind.KERNEL, cmd.name, thread.name, issue, work=cmd.duration_us, share=cmd.compute_share)
        self._enqueue(cmd.stream, op)

    def _launch_sync(self, cmd: LaunchSync, thread: Thread):
        """A launch, then a sync of its stream, as the two commands would run; returns the time it woke."""
        yield from self._launch(cmd, thread)
        if self._held is not None:
            if self._fused_sync(cmd, thread):
                return self.env._now
            if not self._start_held():
                self._release_held()
        yield from self._sync_stream(cmd, thread)
        return self.env._now

    def _launch_sync_series(self, cmd: LaunchSyncSeries, thread: Thread):
        """``launch_sync`` per duration, each step as that command alone would run; returns when each woke.

        Runs of steps that may take the fast path go through :meth:`_solo_steps` in one loop; any other
        step goes as ``_launch_sync``.
        """
        times: list[float] = []
        until, env = cmd.until, self.env
        handle, name, share = cmd.stream, cmd.name, cmd.compute_share
        durations = cmd.each_duration_us()
        for duration in durations:
            if self.fast:
                left = self._solo_steps(handle, name, share, duration, durations, until, thread, times)
                if left is None:
                    return times
                duration = left
            yield from self._launch_sync(LaunchSync(handle, name, duration, share, cmd.kind), thread)
            times.append(env._now)
            if until is not None and until():
                break
        return times

    def _solo_steps(
        self,
        handle: Stream,
        name: str,
        share: float,
        duration_us: float,
        durations: Iterator[float],
        until: Callable[[], object] | None,
        thread: Thread,
        times: list[float],
        host_us: float | None = None,
    ) -> float | None:
        """Steps of a series, from one of ``duration_us`` on, each ``launch_sync`` without SimPy: the held
        kernel and its fused sync in one go, each paying ``host_us`` (None: the profile's launch cost).

        The conditions are the two steps' together: the stream and its device's compute idle, and no
        pending event at or before the thread's wake-up (which implies none before the launch's host cost
        is paid). They hold for every step once they hold for the first: a step ends with its stream and
        compute idle again and adds no event. Appends each step's wake-up to ``times``; returns the
        duration of the first step that may not take the fast path, or None when the series is over
        (``durations`` ran out, or ``until()`` held).
        """
        env = self.env
        stream: _SimStream = handle.native
        issue = env._now
        if stream.wakeup is None or stream.device.compute.jobs or not env.last_callback or issue.__class__ is not float:
            return duration_us
        if stream.handoff_us > issue:  # a kernel released by a copy or an event just now: the worker starts it
            return duration_us
        queue = env._queue
        horizon = queue[0][0] if queue else _INFINITY  # a step must wake before the next pending event
        # The host costs are >= 0 (the runtime and the profile check), so issue + cost is issue when the cost is 0.
        cost, wake = self._launch_us if host_us is None else host_us, self._sync_wake_us
        first_issue, first_id = issue, self._next_id + 1
        ends: list[float] = []  # each step's kernel end (the op log's record of a run of steps)
        end_at, woke_at = ends.append, times.append
        left: float | None = duration_us
        solo = share <= 1.0  # then sim.fluid.solo_end_us is start + work, or start for work the server counts as done
        while True:
            start = issue + cost
            if solo:
                end = start + left if left > DONE_TOLERANCE else start
            else:
                end = solo_end_us(start, left, share)
            woken = end + wake
            if woken >= horizon:
                break
            end_at(end)
            woke_at(woken)
            issue = woken
            if until is not None and until():
                left = None
                break
            left = next(durations, None)
            if left is None:
                break
        if ends:
            count = len(ends)
            stream.issued += count
            stream.completed += count
            env._now = issue
            self._next_id += 2 * count
            kind = self._step_kind(stream, name, thread.name, thread.name)
            self.ops.append_steps(kind, first_id, first_issue, cost, wake, ends)
        return left

    def _launch_graph(self, cmd: LaunchGraph, thread: Thread):
        issue = self.env.now
        cost = self._host.graph_launch_cost_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        gap = self.profile.device.graph_kernel_gap_us
        for i, k in enumerate(cmd.kernels):
            op = _Op(
                self._new_id(), OpKind.KERNEL, k.name, thread.name, issue, work=k.duration_us, share=k.compute_share
            )
            if i:
                op.delay = gap
            elif cmd.latency_us > 0.0:
                op.not_before = self.env._now + cmd.latency_us
            self._enqueue(cmd.stream, op)

    def _copy(self, cmd: Copy, thread: Thread):
        issue = self.env.now
        cost = self._host.copy_launch_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        if cmd.direction is Direction.D2D:
            work = self.profile.d2d_time_us(cmd.nbytes) if cmd.duration_us is None else cmd.duration_us
            memory = ""
        else:
            work = 0.0 if cmd.duration_us is None else cmd.duration_us  # > 0: the recorded time, not the link model's
            memory = cmd.host_memory.value
        op = _Op(
            self._new_id(),
            COPY_KIND[cmd.direction],
            cmd.name,
            thread.name,
            issue,
            cmd.nbytes,
            memory,
            cmd.direction,
            work,
        )
        target = self._enqueue(cmd.stream, op)
        if cmd.direction is not Direction.D2D and cmd.host_memory is HostMemory.PAGEABLE:
            # The driver stages pageable memory through a pinned buffer: the host is held.
            yield from self._block_until_stream_count(cmd.stream.native, target, thread, f"pageable:{cmd.name}")

    def _record(self, cmd: Record, thread: Thread):
        issue = self.env.now
        cost = self._host.record_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        event = Event(self._new_id(), cmd.stream, _SimEvent())
        self._enqueue(
            cmd.stream, _Op(self._new_id(), OpKind.RECORD, event_name(event), thread.name, issue, event=event.native)
        )
        return event

    def _wait_event(self, cmd: WaitEvent, thread: Thread):
        issue = self.env.now
        cost = self._host.wait_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        self._enqueue(
            cmd.stream,
            _Op(self._new_id(), OpKind.WAIT, event_name(cmd.event), thread.name, issue, event=cmd.event.native),
        )

    def _collective(self, cmd: Collective, thread: Thread):
        """One rank's part of a collective (sim.collectives): queued on its stream like a kernel."""
        issue = self.env.now
        cost = self._host.launch_us if cmd.host_us is None else cmd.host_us
        if cost > 0.0 and not self._skip_to(issue + cost):
            yield self.env.timeout(cost)
        meeting = self._collectives.issue(cmd)
        op = _Op(self._new_id(), OpKind.COLLECTIVE, cmd.name, thread.name, issue, cmd.nbytes, event=meeting)
        self._enqueue(cmd.stream, op)

    def _start_collective(self, meeting: Meeting) -> simpy.Event:
        """Every rank has reached ``meeting``: its solo time at NCCL's share of each GPU; ends with the slowest."""
        _, time_us = self.collective_model.time_us(meeting.op, meeting.nbytes, len(meeting.devices), meeting.algorithm)
        share = self.collective_model.compute_share
        parts = [self.devices[d].compute.submit(time_us, share) for d in meeting.devices]
        return self.env.all_of(parts)

    def _sync_event(self, cmd: SyncEvent, thread: Thread):
        state: _SimEvent = cmd.event.native
        start = self.env.now
        if not state.done:
            if state.waiters is None:
                state.waiters = self.env.event()
            yield state.waiters
        wake = self._host.sync_wake_us
        if wake > 0.0 and not self._skip_to(self.env._now + wake):
            yield self.env.timeout(wake)
        self._host_op(OpKind.HOST_SYNC, "sync_event", thread, start)

    def _sync_stream(self, cmd: SyncStream | LaunchSync, thread: Thread):
        stream: _SimStream = cmd.stream.native
        yield from self._block_until_stream_count(stream, stream.issued, thread, stream.sync_name)

    def _block_until_stream_count(self, stream: _SimStream, target: int, thread: Thread, name: str):
        start = self.env.now
        if stream.completed < target:
            woken = self.env.event()
            stream.sync_waiters.append((target, woken))
            yield woken
        wake = self._host.sync_wake_us
        if wake > 0.0 and not self._skip_to(self.env._now + wake):
            yield self.env.timeout(wake)
        self._host_op(OpKind.HOST_SYNC, name, thread, start)

    def _host_work(self, cmd: HostWork, thread: Thread):
        start = self.env.now
        if cmd.duration_us > 0.0 and not self._skip_to(start + cmd.duration_us):
            yield self.env.timeout(cmd.duration_us)
        self._host_op(OpKind.HOST_WORK, cmd.name, thread, start)

    def _after_handoff(self, request: simpy.Event):
        """Yield a join/put/get request; a thread that had to block pays ``thread_wake_us`` on waking."""
        blocked = not request.triggered
        value = yield request
        wake = self._host.thread_wake_us
        if blocked and wake > 0.0 and not self._skip_to(self.env._now + wake):
            yield self.env.timeout(wake)
        return value

    def _join(self, cmd: Join, thread: Thread):
        return (yield from self._after_handoff(cmd.thread.native))

    def _put(self, cmd: Put, thread: Thread):
        yield from self._after_handoff(cmd.queue.native.put(cmd.item))

    def _get(self, cmd: Get, thread: Thread):
        return (yield from self._after_handoff(cmd.queue.native.get()))

    def _alloc(self, cmd: Alloc, thread: Thread):
        cost = self._host.alloc_us
        if cost > 0.0 and not self._skip_to(self.env._now + cost):
            yield self.env.timeout(cost)
        device = self.devices[cmd.device]
        if device.used_bytes + cmd.nbytes > device.capacity_bytes:
            return None
        device.used_bytes += cmd.nbytes
        return Buffer(self._new_id(), cmd.device, cmd.nbytes, cmd.name)

    def _run_program(self, cmd: RunProgram, thread: Thread):
        """A program command, driven as a nested policy: its commands made straight from the steps
        (:func:`sim.program.program_commands`), or (``fast_programs`` off) its reference expansion."""
        commands = program_commands if self.fast_programs else expand
        return (yield from self._drive(commands(self.runtime, cmd), thread))

    def _free(self, cmd: Free, thread: Thread):
        cost = self._host.free_us
        if cost > 0.0 and not self._skip_to(self.env._now + cost):
            yield self.env.timeout(cost)
        buffer = cmd.buffer
        if buffer.native == "freed":
            raise PolicyError(f"buffer {buffer.name!r} freed twice")
        buffer.native = "freed"
        self.devices[buffer.device].used_bytes -= buffer.nbytes

    # ------------------------------------------------------------------ streams
    def _enqueue(self, handle: Stream, op: _Op) -> int:
        """Queue an op on a stream; returns the stream's issue count after it."""
        stream: _SimStream = handle.native
        stream.pending.append(op)
        stream.issued += 1
        if stream.wakeup is not None:
            wakeup, stream.wakeup = stream.wakeup, None
            wakeup.succeed()
        return stream.issued

    def _stream_worker(self, stream: _SimStream):
        env = self.env
        device = stream.device
        name = stream.handle.name
        rows = self.ops
        after_copy = self.profile.device.kernel_after_copy_us
        after_event = self.profile.device.kernel_after_event_us
        while True:
            if not stream.pending:
                stream.wakeup = env.event()
                yield stream.wakeup
            op = stream.pending.popleft()
            if op.delay > 0.0:
                yield env.timeout(op.delay)
            if op.not_before > env._now:  # a graph launch's latency, not yet out
                yield env.timeout(op.not_before - env._now)
            start = env.now
            kind = op.kind
            if kind is OpKind.KERNEL and stream.handoff_us > start:  # released by a copy or an event just now
                yield env.timeout(stream.handoff_us - start)
                start = env.now
            if kind is OpKind.KERNEL or kind is OpKind.COPY_D2D:
                if op.work > 0.0:
                    yield device.compute.submit(op.work, op.share)
            elif kind is OpKind.RECORD:
                state: _SimEvent = op.event
                state.done = True
                if state.waiters is not None:
                    state.waiters.succeed()
            elif kind is OpKind.WAIT:
                state = op.event
                if not state.done:
                    if state.waiters is None:
                        state.waiters = env.event()
                    yield state.waiters
                    if after_event > 0.0:
                        stream.handoff_us = env.now + after_event
            elif kind is OpKind.COLLECTIVE:
                yield self._collectives.arrive(op.event, device.index)
            else:  # H2D / D2H over the host link
                engine = device.engines[op.direction]
                with engine.request() as claim:
                    yield claim
                    start = env.now
                    if op.work > 0.0:  # the recorded time: its bytes at their recorded rate, sharing the link
                        if op.nbytes > 0:
                            yield device.link.submit(op.nbytes, op.nbytes / op.work, op.direction)
                        else:
                            yield env.timeout(op.work)
                    else:
                        curve = self.profile.curve(op.direction, HostMemory(op.host_memory))
                        if curve.latency_us > 0.0:
                            yield env.timeout(curve.latency_us)
                        if op.nbytes > 0:
                            yield device.link.submit(op.nbytes, curve.bandwidth_bytes_per_us(op.nbytes), op.direction)
                if after_copy > 0.0:
                    stream.handoff_us = env.now + after_copy
            rows.append(
                (
                    op.id,
                    device.index,
                    name,
                    kind.value,
                    op.name,
                    op.nbytes,
                    op.host_memory,
                    op.thread,
                    op.issue_us,
                    start,
                    env.now,
                )
            )
            _count_completed(stream)

    def _host_op(self, kind: OpKind, name: str, thread: Thread, start: float) -> None:
        self._next_id += 1
        row = (
            self._next_id,
            HOST_DEVICE,
            thread.name,
            kind._value_,
            name,
            0,
            "",
            thread.name,
            start,
            start,
            self.env._now,
        )
        self.ops.append(row)
