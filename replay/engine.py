"""The replay backend: the runtime interface (``harness.runtime``) on real CUDA GPUs via PyTorch.

The same policy generator functions that run in the simulator run here
unchanged. Each runtime command does the real thing:

* **host threads** are Python threads (the main one is the caller's), each
  driving its policy generator; **queues** are bounded ``queue.Queue``s;
* **streams** are ``torch.cuda.Stream``s (from PyTorch's pool of 32 per
  priority: a run that would alias two streams is refused), **events**
  ``torch.cuda.Event``s;
* **copies** move the recorded bytes between pooled host buffers (pinned or
  pageable, see :mod:`replay.pools`) and the named device buffer (or device
  scratch); a pageable copy holds the issuing thread until it has finished, as
  the simulator models it (the driver stages pageable memory);
* **kernels** run real work calibrated to their duration (:mod:`replay.kernels`);
  a **graph launch** replays a CUDA graph captured (once, after the kernels
  are tuned) of its kernels' stand-ins, and is one op row;
* **alloc** really allocates (``torch.empty`` through the caching allocator),
  against the run's device budget (the spec's, capped by what the GPU has
  free) and returns ``None`` when the budget or the GPU is full; **free**
  releases it (``record_stream`` for every stream whose last copy into or out
  of it has not finished);
* **host work** is a precise wait (:func:`replay.clock.precise_wait_us`);
* **blocking commands** (``sync_event``, ``sync_stream``, a pageable copy)
  poll the event or stream until it completes rather than block in the
  driver (:meth:`_Run._spin_until` says why).

**Timeline.** Every device op is bracketed by two timing events on its stream
(a record is one event); host ops are timed on the host clock; both are mapped
to one clock, µs since the run started (:mod:`replay.clock`), into the same ops
rows as the simulator (:class:`harness.backend.OpRow`). A device op's
start is when its stream reached it, so on an idle stream it includes the time
the host took to issue it (the simulator charges the same as ``launch_us`` /
``copy_launch_us`` before the op starts); a host-link copy that queued behind
another stream's copy in the same direction starts when that one ended
(:func:`_engine_starts`), as the simulator's copy engine does.

**Warm-up.** Before the first timed run of a policy with given inputs, the
backend runs it twice untimed: the first run makes every host buffer, warms
the caching allocator and collects the kernel durations, which are then tuned
(:meth:`replay.plan.StandIn.tune`); the second runs the tuned plans.
A :class:`ReplayContext` holds this state across the repetitions and policies
of a spec; a run in another ``HARNESS_REPLAY_NATIVE`` mode warms up again.
"""

from __future__ import annotations

import itertools
import queue as queue_module
import sys
import threading
from collections.abc import Callable, Generator
from typing import Any

from harness.backend import HOST_DEVICE, Backend, OpRow, RunResult, command_handlers
from harness.profile import Profile
from harness.program import expand
from harness.runtime import (
    COPY_KIND,
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
from replay.clock import RunClock, precise_wait_us, yield_gil
from replay.floor import FloorLifts, graph_lifts, lifted_us
from replay.gpu import require_cuda

STREAM_POOL_SIZE = 32  # torch.cuda.Stream() hands out 32 streams per priority per device, round robin
SAFETY_BYTES = 1 << 30  # device memory left to the CUDA context, cuBLAS workspaces and fragmentation
_POLL_S = 0.05


class ReplayError(RuntimeError):
    """A policy did something the replay cannot do (too many streams, a copy past the budget, ...)."""


class NeedsDistributedReplay(ReplayError):
    """A collective among several GPUs: this one-process replay runs communicators of one device only."""


class ReplayAborted(RuntimeError):
    """A host thread was stopped because another one failed."""


class _DeviceBuffer:
    __slots__ = ("tensor", "streams", "freed")

    def __init__(self, tensor: Any) -> None:
        self.tensor = tensor
        self.streams: dict[
            int, tuple[Any, Any]
        ] = {}  # stream id -> (stream, end event of its last copy into/out of it)
        self.freed = False


class _ThreadState:
    __slots__ = ("thread", "result", "error", "done")

    def __init__(self) -> None:
        self.thread: threading.Thread | None = None
        self.result: Any = None
        self.error: BaseException | None = None
        self.done = threading.Event()


class _DeviceState:
    """Per-device GPU state shared by every run: kernel factory, scratch, event pool."""

    def __init__(self, torch: Any, index: int) -> None:
        from replay.kernels import make_kernels

        self.index = index
        self.device = torch.device("cuda", index)
        with torch.cuda.device(self.device):
            self.kernels = make_kernels(torch, self.device)
        self.name = torch.cuda.get_device_name(index)
        self.total_bytes = torch.cuda.get_device_properties(index).total_memory


class ReplayContext:
    """GPU state shared by the runs of a spec: devices, host pools, tuned kernels, warm-up bookkeeping."""

    def __init__(self, devices: int = 1) -> None:
        from replay.pools import DeviceScratch, HostPools

        torch = require_cuda(devices - 1)
        self.torch = torch
        self.devices = [_DeviceState(torch, i) for i in range(devices)]
        self.host = HostPools(torch)
        self.scratch = DeviceScratch(torch)
        self.warmed: set[Any] = set()
        self.native: Any = None  # replay.native.executor.NativeRunner, made when a program first runs natively
        self._graphs: dict[Any, Any] = {}  # (device, plan ids) -> captured torch.cuda.CUDAGraph
        # (device, id(kernels)) -> (kernels, plans, (kernels lifted, µs added) per launch)
        self._graph_plans: dict[tuple[int, int], tuple[Any, Any, tuple[int, float]]] = {}
        # Timing events, pooled per device: an event belongs to the device it was first recorded on.
        self._events: list[list[Any]] = [[] for _ in self.devices]
        self._next_event = [0] * len(self.devices)
        self._event_lock = threading.Lock()

    def graph_plans(self, device: int, kernels: tuple[Any, ...]) -> tuple[Any, ...]:
        """The stand-in plans of a graph's kernels, made once per kernels tuple (a policy that launches the
        same graph again passes the same tuple: planning 100 kernels per launch would cost the host ~1 ms)."""
        entry = self._graph_plans.get((device, id(kernels)))
        if entry is None or entry[0] is not kernels:
            factory = self.devices[device].kernels
            floor_us = factory.min_kernel_us
            plans = tuple(
                factory.plan(k.kind, lifted_us(k.duration_us, floor_us), k.name, k.compute_share)
                for k in kernels
                if k.duration_us > 0
            )
            lifts = graph_lifts([k.duration_us for k in kernels], floor_us)
            entry = self._graph_plans[(device, id(kernels))] = (
                kernels,
                plans,
                lifts,
            )  # keeps kernels alive: its id stays its own
        return entry[1]

    def graph_lifts(self, device: int, kernels: tuple[Any, ...]) -> tuple[int, float]:
        """(kernels lifted to the floor, µs added) per launch of the graph of ``kernels`` (after graph_plans)."""
        return self._graph_plans[(device, id(kernels))][2]

    def graph(self, device: int, plans: tuple[Any, ...], gap_us: float = 0.0) -> Any:
        """The CUDA graph of ``plans``' stand-in kernels on ``device``, captured and tuned on first use.

        Stand-ins are tuned back to back on a stream, where each launch costs the
        device a little; inside a graph they run shorter (on the H200, 3 µs
        stand-ins ran ~1 µs). So the captured graph is tuned as a whole to what
        the simulator models: the kernels' durations plus ``gap_us`` between
        consecutive ones (the profile's ``graph_kernel_gap_us``), the difference
        spread evenly over its kernels.
        """
        key = (device, tuple(id(p) for p in plans), gap_us)
        graph = self._graphs.get(key)
        if graph is None:
            factory = self.devices[device].kernels
            target_us = sum(p.duration_us for p in plans) + (len(plans) - 1) * gap_us
            tuned = list(plans)
            for _ in range(4):
                graph = self._capture(device, tuned)
                error_us = target_us - factory.gpu_time_us(graph.replay, reps=5)
                if abs(error_us) <= max(0.5, 1e-3 * target_us):
                    break
                tuned = [factory.lengthened(p, error_us / len(tuned)) for p in tuned]
            self._graphs[key] = graph
        return graph

    def _capture(self, device: int, plans: list[Any]) -> Any:
        torch = self.torch
        state = self.devices[device]
        capture = torch.cuda.Stream(state.device)
        capture.wait_stream(torch.cuda.current_stream(state.device))
        graph = torch.cuda.CUDAGraph()
        # thread_local: other policy threads may call CUDA while this one captures
        with torch.cuda.graph(graph, stream=capture, capture_error_mode="thread_local"):
            for plan in plans:
                state.kernels.issue(plan, capture)
        torch.cuda.current_stream(state.device).wait_stream(capture)
        return graph

    def free_bytes(self, device: int) -> int:
        """Device memory still available to policy allocations: what CUDA has free plus what the allocator caches."""
        torch = self.torch
        free, _ = torch.cuda.mem_get_info(device)
        cached = torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device)
        return max(0, free + cached - SAFETY_BYTES)

    # Timing events are pooled: creating one costs host time inside the timed region.
    def take_event(self, device: int = 0) -> Any:
        """An event for a stream of ``device`` (events of one device cannot be recorded on another's streams)."""
        with self._event_lock:
            pool = self._events[device]
            if self._next_event[device] == len(pool):
                pool.append(self.torch.cuda.Event(enable_timing=True))
            event = pool[self._next_event[device]]
            self._next_event[device] += 1
        return event

    def reset_events(self) -> None:
        self._next_event = [0] * len(self.devices)

    def reserve_events(self, count: int) -> None:
        for pool in self._events:
            while len(pool) < count:
                pool.append(self.torch.cuda.Event(enable_timing=True))


class ReplayBackend(Backend):
    """Runs one policy (a main generator function) to completion on real GPUs.

    ``device_memory_bytes`` is the run's device budget (the spec's), capped by
    the profile's memory figure and by what the GPU has free.
    """

    name = "replay"

    def __init__(
        self,
        context: ReplayContext,
        profile: Profile,
        device_memory_bytes: int | None = None,
        seed: int = 0,
        warmup_runs: int = 2,
    ) -> None:
        self.context = context
        self.profile = profile
        self.seed = seed
        self.warmup_runs = warmup_runs
        self.device_name = context.devices[0].name
        budget = min(device_memory_bytes or profile.device.memory_bytes, profile.device.memory_bytes)
        self.capacity_bytes = [min(budget, context.free_bytes(d.index)) for d in context.devices]
        self.last_warmup: list[RunResult] = []

    def run(self, main: Callable[..., Generator[Command, Any, Any]], *args: Any) -> RunResult:
        key = _warm_key(main, args)
        if key not in self.context.warmed:
            self.last_warmup = []
            for i in range(self.warmup_runs):
                self.last_warmup.append(self._new_run().execute(main, args))
                if i == 0:
                    for device in self.context.devices:
                        device.kernels.tune_untuned()
            self.context.warmed.add(key)
        return self._new_run().execute(main, args)

    def _new_run(self) -> _Run:
        """The state of one run (``replay.distributed`` makes one that replays a single rank's device)."""
        return _Run(self)


_HOST_LINK_KINDS = (OpKind.COPY_H2D.value, OpKind.COPY_D2H.value)


def _engine_starts(rows: list[OpRow]) -> list[OpRow]:
    """Start each host-link copy when its direction's copy engine was free, not when its stream reached it.

    A copy's start event fires when its stream gets to it; if another stream's
    copy in the same direction still holds the copy engine, the bytes do not
    move until that copy ends (measured on the H100: two 512 MiB H2D copies on
    two streams end 9.8 and 19.7 ms after they were issued together, one after
    the other). The simulator starts a copy when it claims the engine, so the
    replay does the same: within a device and direction, in order of end time,
    a copy starts no earlier than the previous one ended.
    """
    moved: dict[int, OpRow] = {}
    last_end: dict[tuple[int, str], float] = {}
    for row in sorted((r for r in rows if r.kind in _HOST_LINK_KINDS), key=lambda r: r.end_us):
        key = (row.device, row.kind)
        previous = last_end.get(key)
        if previous is not None and row.start_us < previous:
            moved[row.op_id] = row._replace(start_us=min(previous, row.end_us))
        last_end[key] = row.end_us
    return [moved.get(r.op_id, r) for r in rows]


def _warm_key(main: Callable, args: tuple) -> Any:
    """What a warm-up is good for: the policy, its inputs and whether program commands run natively (a native run
    first opens and calibrates the executor and converts the program, ~60 ms that a timed run must not count)."""
    from replay.native.executor import mode

    try:
        hash(args)
        return (main, args, mode())
    except TypeError:
        return (main, tuple(id(a) for a in args), mode())


class _Run:
    """The state of one replay run."""

    def __init__(self, backend: ReplayBackend) -> None:
        ctx = backend.context
        self.backend = backend
        self.ctx = ctx
        self.torch = ctx.torch
        self.runtime = Runtime(
            [DeviceInfo(d.index, d.name, cap) for d, cap in zip(ctx.devices, backend.capacity_bytes)],
            backend="replay",
            seed=backend.seed,
            profile=backend.profile,
        )
        self.used_bytes = [0] * len(ctx.devices)
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._device_ops: list[
            tuple
        ] = []  # (id, device, stream, kind, name, bytes, memory, thread, issue, start_ev, end_ev)
        self._host_ops: list[tuple] = []
        self._native_rows: list[OpRow] = []  # device rows of program commands the compiled executor ran
        self._children: list[Thread] = []
        self._stream_handles: dict[int, str] = {}  # cuda stream pointer -> stream name
        self._abort = threading.Event()
        self._clock = None
        self._thread_local = threading.local()
        self._handlers = command_handlers(self)
        self.lifts = FloorLifts()  # kernels below the GPU's floor run at it (replay.floor)

    # ------------------------------------------------------------------ driving
    def execute(self, main: Callable[..., Generator[Command, Any, Any]], args: tuple) -> RunResult:
        torch = self.torch
        self.ctx.reset_events()
        self.ctx.reserve_events(256)
        switch = sys.getswitchinterval()
        sys.setswitchinterval(5e-5)  # let a waiting host thread take the GIL within ~50 µs, not 5 ms
        main_thread = Thread(self._new_id(), "main")
        caller_stream = torch.cuda.current_stream(self.ctx.devices[0].device)
        try:
            self._clock = RunClock(torch, [torch.cuda.current_stream(d.device) for d in self.ctx.devices])
            try:
                result = self._drive(main(self.runtime, *args), main_thread)
                main_end = self._clock.host_us()
            except BaseException:
                self._abort.set()
                raise
            finally:
                self._join_children()
            errors = [c.native.error for c in self._children if c.native.error is not None]
            if errors:  # the thread that failed first, not one stopped because of it
                raise next((e for e in errors if not isinstance(e, ReplayAborted)), errors[0])
            for device in self.ctx.devices:
                torch.cuda.synchronize(device.device)
            rows = self._resolve()
        finally:
            sys.setswitchinterval(switch)
            torch.cuda.set_stream(caller_stream)
            for device in self.ctx.devices:
                torch.cuda.synchronize(device.device)
        return RunResult(rows, result, main_end, self.lifts.metrics())

    def _drive(self, gen: Generator[Command, Any, Any], thread: Thread) -> Any:
        value: Any = None
        handlers = self._handlers
        while True:
            if self._abort.is_set() and thread.name != "main":
                gen.close()
                raise ReplayAborted(f"thread {thread.name!r} stopped: another host thread failed")
            try:
                cmd = gen.send(value)
            except StopIteration as stop:
                return stop.value
            handler = handlers.get(type(cmd))
            if handler is None:
                raise ReplayError(f"thread {thread.name!r} yielded {cmd!r}, which is not a runtime command")
            value = handler(cmd, thread)

    def _join_children(self) -> None:
        for child in list(self._children):
            state: _ThreadState = child.native
            while not state.done.wait(_POLL_S):
                pass

    def _new_id(self) -> int:
        return next(self._ids)

    def _use_stream(self, stream: Any) -> None:
        """Make ``stream`` the calling thread's current stream.

        ``torch.cuda.stream()`` costs ~19 µs a call; this ~2, once per switch.
        """
        local = self._thread_local
        if getattr(local, "stream", None) is not stream:
            self.torch.cuda.set_stream(stream)
            local.stream = stream

    # ------------------------------------------------------------------ recording
    def _device_op(
        self,
        kind: OpKind,
        stream: Stream,
        name: str,
        nbytes: int,
        memory: str,
        thread: Thread,
        issue: float,
        start: Any,
        end: Any,
        op_id: int,
    ) -> None:
        self._device_ops.append(
            (op_id, stream.device, stream.name, kind._value_, name, nbytes, memory, thread.name, issue, start, end)
        )

    def _host_op(self, kind: OpKind, name: str, thread: Thread, start: float, op_id: int | None = None) -> None:
        end = self._clock.host_us()
        self._host_ops.append(
            OpRow(
                op_id or self._new_id(),
                HOST_DEVICE,
                thread.name,
                kind._value_,  # not .value: an enum property lookup per op
                name,
                0,
                "",
                thread.name,
                start,
                start,
                end,
            )
        )

    def _resolve(self) -> list[OpRow]:
        clock = self._clock
        device_rows = []
        for op_id, device, stream, kind, name, nbytes, memory, thread, issue, start, end in self._device_ops:
            start_us = clock.device_us(start, device)
            end_us = clock.device_us(end, device) if end is not start else start_us
            device_rows.append(
                OpRow(op_id, device, stream, kind, name, nbytes, memory, thread, issue, start_us, max(end_us, start_us))
            )
        return list(self._host_ops) + _engine_starts(device_rows + self._native_rows)

    # ------------------------------------------------------------------ streams and device work
    def _now(self, cmd: Now, thread: Thread) -> float:
        return self._clock.host_us()

    def _query_event(self, cmd: QueryEvent, thread: Thread) -> bool:
        return bool(cmd.event.native.query())

    def _create_communicator(self, cmd: CreateCommunicator, thread: Thread) -> Communicator:
        if len(cmd.devices) > 1:
            raise NeedsDistributedReplay(
                f"communicator {cmd.name!r} spans devices {list(cmd.devices)}: collectives among several GPUs need"
                " the multi-GPU replay (torch.distributed + NCCL, one process per GPU: `harness replay --distributed`);"
                " this replay runs communicators of one device only"
            )
        return Communicator(self._new_id(), cmd.devices, cmd.name)

    def _collective(self, cmd: Collective, thread: Thread) -> None:
        """A communicator of one device: the collective is a local device-to-device copy, as NCCL's out of place."""
        issue = self._clock.host_us()
        op_id = self._new_id()
        device, n = cmd.stream.device, cmd.nbytes
        if n > self.backend.capacity_bytes[device] // 2:
            raise ReplayError(f"{cmd.op.value} {cmd.name!r}: {n} bytes twice do not fit the device budget")
        s = cmd.stream.native
        start, end = self.ctx.take_event(device), self.ctx.take_event(device)
        self._use_stream(s)
        start.record(s)
        if n > 0:
            scratch = self.ctx.scratch.get(device, 2 * n)  # one buffer per device: its two halves
            scratch[n : 2 * n].copy_(scratch[:n], non_blocking=True)
        end.record(s)
        self._device_op(OpKind.COLLECTIVE, cmd.stream, cmd.name, n, "", thread, issue, start, end, op_id)

    def _make_queue(self, cmd: MakeQueue, thread: Thread) -> Queue:
        return Queue(self._new_id(), cmd.name, cmd.capacity, queue_module.Queue(cmd.capacity))

    def _create_stream(self, cmd: CreateStream, thread: Thread) -> Stream:
        torch = self.torch
        native = torch.cuda.Stream(device=self.ctx.devices[cmd.device].device)
        pointer = native.cuda_stream
        with self._lock:
            if pointer in self._stream_handles:
                raise ReplayError(
                    f"stream {cmd.name!r} would share a CUDA stream with {self._stream_handles[pointer]!r}: "
                    "PyTorch's pool "
                    f"has {STREAM_POOL_SIZE} streams per device; this run asks for more"
                )
            self._stream_handles[pointer] = cmd.name
        return Stream(self._new_id(), cmd.device, cmd.name, native)

    def _launch(self, cmd: Launch, thread: Thread) -> None:
        issue = self._clock.host_us()
        op_id = self._new_id()
        kernels = self.ctx.devices[cmd.stream.device].kernels
        duration_us = self.lifts.lift(cmd.duration_us, kernels.min_kernel_us)
        plan = kernels.plan(cmd.kind, duration_us, cmd.name, cmd.compute_share) if duration_us > 0 else None
        s = cmd.stream.native
        start, end = self.ctx.take_event(cmd.stream.device), self.ctx.take_event(cmd.stream.device)
        self._use_stream(s)
        start.record(s)
        if plan is not None:
            kernels.issue(plan, s)
        end.record(s)
        self._device_op(OpKind.KERNEL, cmd.stream, cmd.name, 0, "", thread, issue, start, end, op_id)

    def _launch_sync(self, cmd: LaunchSync, thread: Thread) -> float:
        """A launch, then a sync of its stream; the host time when the sync returned."""
        self._launch(cmd, thread)  # reads the fields Launch and LaunchSync share
        self._sync_stream(cmd, thread)
        return self._clock.host_us()

    def _launch_sync_series(self, cmd: LaunchSyncSeries, thread: Thread) -> list[float]:
        """``launch_sync`` per duration until ``until()`` holds after a step; the host time each sync returned."""
        times: list[float] = []
        for duration in cmd.each_duration_us():
            step = LaunchSync(cmd.stream, cmd.name, duration, cmd.compute_share, cmd.kind)
            times.append(self._launch_sync(step, thread))
            if cmd.until is not None and cmd.until():
                break
        return times

    def _launch_graph(self, cmd: LaunchGraph, thread: Thread) -> None:
        # cmd.latency_us (runtime contract point 16) is not played: the stand-in graph's own cudaGraphLaunch has the
        # GPU's latency, waited out onto an idle stream and hidden behind queued work, as the simulator models it.
        # (The native executor tunes a graph launched onto an idle stream to hold it: replay/native/program.py.)
        issue = self._clock.host_us()
        op_id = self._new_id()
        device = cmd.stream.device
        kernels = self.ctx.devices[device].kernels
        plans = self.ctx.graph_plans(device, cmd.kernels)
        self.lifts.add(*self.ctx.graph_lifts(device, cmd.kernels))
        s = cmd.stream.native
        start, end = self.ctx.take_event(device), self.ctx.take_event(device)
        self._use_stream(s)
        # Plans are tuned after the first warm-up run; from then on the graph is captured once and replayed.
        gap_us = self.backend.profile.device.graph_kernel_gap_us
        graph = self.ctx.graph(device, plans, gap_us) if plans and all(p.tuned for p in plans) else None
        start.record(s)
        if graph is None:
            for plan in plans:
                kernels.issue(plan, s)
        else:
            graph.replay()
        end.record(s)
        self._device_op(OpKind.KERNEL, cmd.stream, cmd.name, 0, "", thread, issue, start, end, op_id)

    def _copy(self, cmd: Copy, thread: Thread) -> None:
        issue = self._clock.host_us()
        op_id = self._new_id()
        device = cmd.stream.device
        n = cmd.nbytes
        if cmd.buffer is not None:
            dev_buffer: _DeviceBuffer = cmd.buffer.native
            if dev_buffer is None or dev_buffer.freed:
                raise ReplayError(f"copy {cmd.name!r}: buffer {cmd.buffer.name!r} was freed")
            dev = dev_buffer.tensor
        else:
            if n > self.backend.capacity_bytes[device]:
                raise ReplayError(
                    f"copy {cmd.name!r}: {n} bytes do not fit the device budget of "
                    f"{self.backend.capacity_bytes[device]} bytes"
                )
            dev = self.ctx.scratch.get(device, n)
        pageable = cmd.direction is not Direction.D2D and cmd.host_memory is HostMemory.PAGEABLE
        if cmd.direction is Direction.D2D:
            src = self.ctx.scratch.get(device, n) if cmd.buffer is not None else dev
            host = None
        else:
            host = self.ctx.host.get(cmd.host_memory, n)
        s = cmd.stream.native
        start, end = self.ctx.take_event(cmd.stream.device), self.ctx.take_event(cmd.stream.device)
        self._use_stream(s)
        start.record(s)
        block_start = self._clock.host_us()
        if n > 0:
            if cmd.direction is Direction.H2D:
                dev[:n].copy_(host[:n], non_blocking=True)
            elif cmd.direction is Direction.D2H:
                host[:n].copy_(dev[:n], non_blocking=True)
            else:
                dev[:n].copy_(src[:n], non_blocking=True)
        end.record(s)
        memory = "" if cmd.direction is Direction.D2D else cmd.host_memory.value
        if cmd.buffer is not None:
            dev_buffer.streams[id(cmd.stream)] = (s, end)
        self._device_op(COPY_KIND[cmd.direction], cmd.stream, cmd.name, n, memory, thread, issue, start, end, op_id)
        if pageable:
            self._spin_until(end.query)
            self._host_op(OpKind.HOST_SYNC, f"pageable:{cmd.name}", thread, block_start)

    def _record(self, cmd: Record, thread: Thread) -> Event:
        issue = self._clock.host_us()
        op_id = self._new_id()
        s = cmd.stream.native
        native = self.ctx.take_event(cmd.stream.device)
        native.record(s)
        event = Event(self._new_id(), cmd.stream, native)
        self._device_op(OpKind.RECORD, cmd.stream, event_name(event), 0, "", thread, issue, native, native, op_id)
        return event

    def _wait_event(self, cmd: WaitEvent, thread: Thread) -> None:
        issue = self._clock.host_us()
        op_id = self._new_id()
        s = cmd.stream.native
        start, end = self.ctx.take_event(cmd.stream.device), self.ctx.take_event(cmd.stream.device)
        start.record(s)
        s.wait_event(cmd.event.native)
        end.record(s)
        self._device_op(OpKind.WAIT, cmd.stream, event_name(cmd.event), 0, "", thread, issue, start, end, op_id)

    def _sync_event(self, cmd: SyncEvent, thread: Thread) -> None:
        start = self._clock.host_us()
        self._spin_until(cmd.event.native.query)
        self._host_op(OpKind.HOST_SYNC, "sync_event", thread, start)

    def _sync_stream(self, cmd: SyncStream, thread: Thread) -> None:
        start = self._clock.host_us()
        self._spin_until(cmd.stream.native.query)
        self._host_op(OpKind.HOST_SYNC, f"sync:{cmd.stream.name}", thread, start)

    def _spin_until(self, done: Callable[[], bool]) -> None:
        """Wait for the GPU by polling, not by blocking in the driver.

        A host thread that blocked in ``synchronize`` and woke ran its next
        commands 1.5-3x slower than one that never slept, more so the longer it
        had blocked (measured on the lent H100's host, see
        measurements/2026-11-23_h100_layer-streaming/README.md); polling keeps the thread's costs what
        calibration measured. With other policy threads alive, each poll also
        yields the GIL (:func:`replay.clock.yield_gil`; ``time.sleep(0)`` here
        made every such wait wake up to ~50 µs late, the timer slack).
        """
        share = bool(self._children)
        while not done():
            if share:
                yield_gil()

    # ------------------------------------------------------------------ host
    def _host_work(self, cmd: HostWork, thread: Thread) -> None:
        start = self._clock.host_us()
        precise_wait_us(cmd.duration_us)
        self._host_op(OpKind.HOST_WORK, cmd.name, thread, start)

    def _run_program(self, cmd: RunProgram, thread: Thread) -> Any:
        """A program command: by the compiled executor (:mod:`replay.native.executor` says when), else through
        its reference expansion (``harness.program.expand``) on this thread."""
        from replay.native.executor import runner_for

        native = runner_for(self.ctx, cmd)
        if native is None:
            return self._drive(expand(self.runtime, cmd), thread)
        gap_us = self.backend.profile.device.graph_kernel_gap_us
        host, device, outcome = native.run(cmd, thread.name, self._new_id, self._clock.origin, self.lifts, gap_us)
        with self._lock:
            self._host_ops.extend(host)
            self._native_rows.extend(device)
        return outcome

    def _spawn(self, cmd: Spawn, thread: Thread) -> Thread:
        child = Thread(self._new_id(), cmd.name, _ThreadState())
        state: _ThreadState = child.native
        gen = cmd.fn(self.runtime, *cmd.args)

        def body() -> None:
            try:
                state.result = self._drive(gen, child)
            except BaseException as err:  # reported at join, or when the run ends
                state.error = err
                if not isinstance(err, ReplayAborted):
                    self._abort.set()
            finally:
                state.done.set()

        state.thread = threading.Thread(target=body, name=f"replay:{cmd.name}", daemon=True)
        with self._lock:
            self._children.append(child)
        state.thread.start()
        return child

    def _join(self, cmd: Join, thread: Thread) -> Any:
        state: _ThreadState = cmd.thread.native
        while not state.done.wait(_POLL_S):
            self._check_abort(thread)
        if state.error is not None:
            raise state.error
        return state.result

    def _put(self, cmd: Put, thread: Thread) -> None:
        q: queue_module.Queue = cmd.queue.native
        while True:
            try:
                q.put(cmd.item, timeout=_POLL_S)
                return
            except queue_module.Full:
                self._check_abort(thread)

    def _get(self, cmd: Get, thread: Thread) -> Any:
        q: queue_module.Queue = cmd.queue.native
        while True:
            try:
                return q.get(timeout=_POLL_S)
            except queue_module.Empty:
                self._check_abort(thread)

    def _check_abort(self, thread: Thread) -> None:
        if self._abort.is_set():
            raise ReplayAborted(f"thread {thread.name!r} stopped: another host thread failed")

    # ------------------------------------------------------------------ memory
    def _alloc(self, cmd: Alloc, thread: Thread) -> Buffer | None:
        torch = self.torch
        with self._lock:
            if self.used_bytes[cmd.device] + cmd.nbytes > self.backend.capacity_bytes[cmd.device]:
                return None
            self.used_bytes[cmd.device] += cmd.nbytes
        device = self.ctx.devices[cmd.device].device
        # Allocate from one stream's pool (the device's default stream), whatever stream this thread used last.
        self._use_stream(torch.cuda.default_stream(device))
        try:
            tensor = torch.empty(cmd.nbytes, dtype=torch.uint8, device=device)
        except torch.cuda.OutOfMemoryError:
            with self._lock:
                self.used_bytes[cmd.device] -= cmd.nbytes
            return None
        return Buffer(self._new_id(), cmd.device, cmd.nbytes, cmd.name, _DeviceBuffer(tensor))

    def _free(self, cmd: Free, thread: Thread) -> None:
        buffer = cmd.buffer
        state: _DeviceBuffer = buffer.native
        if state is None or state.freed:
            raise ReplayError(f"buffer {buffer.name!r} freed twice")
        state.freed = True
        for stream, last_use in state.streams.values():
            if not last_use.query():
                # Still in use on that stream: the caching allocator must not hand it out before it is done.
                state.tensor.record_stream(stream)
        state.tensor = None
        state.streams.clear()
        with self._lock:
            self.used_bytes[buffer.device] -= buffer.nbytes
