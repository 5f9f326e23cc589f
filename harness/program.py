"""A program command: a stretch of runtime calls, given up front as arrays of steps (``RunProgram``).

A policy whose next stretch of calls does not depend on their results (a recording
re-issued as recorded, a straight-line loop) may yield it once, as a
:class:`RunProgram`, instead of one command per call. A backend runs it natively
(the simulator's fast path, :mod:`sim.program`; the replay's compiled executor) or
falls back on :func:`expand`, the reference interpreter, which turns it into the
ordinary runtime commands (:mod:`harness.runtime`) it stands for. Whatever runs it,
the op rows are those of :func:`expand`'s commands: that is the definition.

Layout
------
A :class:`StepProgram` is the data (made once, reused by every run): per host
thread a NumPy structured array of steps of :data:`STEP_DTYPE` (C-compatible,
72 bytes a step, aligned), a table of names the steps index, and one array of
graph kernels (:data:`GRAPH_KERNEL_DTYPE`) that graph-launch steps index by
``graph_first``/``graph_count``. A :class:`RunProgram` command pairs it with the
run's stream handles: step field ``stream`` indexes ``RunProgram.streams``.

Step fields
-----------
``op``           an ``OP_*`` code (below)
``kind``         launch: kernel kind (:data:`KIND_CODES`); copy: direction (:data:`DIRECTION_CODES`);
                 collective: the operation (:data:`COLLECTIVE_CODES`)
``pageable``     copy: 1 when the host side is pageable memory, else 0 (pinned)
``algorithm``    collective: NCCL's algorithm when known (index into :data:`ALGORITHMS`; 0: the backend's choice)
``stream``       index into ``RunProgram.streams`` (-1: none); sync_device / sync_event: -1, or a stream
                 of the one device whose streams it syncs (a rank's ``cudaDeviceSynchronize``)
``name``         index into ``StepProgram.names``: the kernel's, copy's, graph's or collective's name (-1: none)
``gap_name``     index into ``StepProgram.names``: the name of the host work ``gap_us`` (-1: none)
``event``        record / wait / sync_event: the symbolic event id
``graph_first``, ``graph_count``  graph launch: its kernels, a slice of ``StepProgram.graph_kernels``;
                 collective: the communicator (index into ``StepProgram.communicators``) and the peer
                 device (send / recv: the other device; broadcast: the root; -1: none)
``gap_us``       the thread's own CPU time before the call (host work), µs; 0: none
``host_us``      the call's own host cost, µs (runtime contract point 12); NaN: the backend's figure
``duration_us``  launch: the kernel's solo duration, µs; copy: its recorded time, µs (0: the backend's link model);
                 graph launch: the launch's latency, µs (``launch_graph``'s ``latency_us``, runtime contract point 16)
``share``        launch: the kernel's compute share, (0, 1]
``nbytes``       copy: bytes moved; collective: nccl-tests' size (runtime contract point 15)

Semantics (what :func:`expand` issues), per step, in order
----------------------------------------------------------
1. ``gap_us > 0``: ``host_work(gap_us, names[gap_name])``.
2. The op:

   * ``OP_HOST``: nothing more (a step of host work only).
   * ``OP_LAUNCH``: ``launch(stream, name, duration_us, share, kind, host_us)``; the stream has work outstanding.
   * ``OP_COPY``: ``copy(stream, nbytes, direction, pinned/pageable, name, host_us=host_us, duration_us=duration_us)``
     (``duration_us`` 0: None, the link model's); work outstanding.
   * ``OP_GRAPH``: ``launch_graph(stream, name, kernels, host_us, latency_us=duration_us)``; work outstanding.
   * ``OP_RECORD``: ``record(stream, host_us)``; the event it returns becomes symbolic event ``event``
     (replacing an earlier one of that id) for every thread of the program.
   * ``OP_WAIT``: ``wait_event(stream, that event, host_us)`` when symbolic event ``event`` has been
     recorded by then (by any thread); else nothing, and the wait counts as unresolved.
   * ``OP_SYNC_STREAM``: ``sync_stream(stream)``; the stream has no work outstanding.
   * ``OP_SYNC_EVENT``: ``sync_event(that event)`` when symbolic event ``event`` has been recorded;
     else as ``OP_SYNC_DEVICE`` (a sync whose event is unknown waits for everything).
   * ``OP_SYNC_DEVICE``: ``sync_stream`` of every stream with work outstanding, in the order
     ``StepProgram.sync_order`` gives; then none has. With ``stream`` >= 0, only the streams on that
     stream's device (``RunProgram.streams[i].device``), which then have none.
   * ``OP_COLLECTIVE``: the collective ``kind`` names, rank ``stream``'s part of it, on communicator
     ``RunProgram.communicators[graph_first]``: ``all_reduce`` / ``all_gather`` / ``reduce_scatter``
     ``(stream, comm, nbytes, name, host_us, algorithm)``, ``broadcast(..., root=graph_count, ...)``,
     ``send`` / ``recv`` ``(stream, comm, nbytes, peer=graph_count, name, host_us)``; the stream has work
     outstanding. (A step of each rank, on its own thread as a rank's process issues it; the ranks meet as
     the runtime's collectives do.) The name is ``names[name]``, or the operation's when -1.

   "Work outstanding" and the symbolic events are shared by the program's threads and
   change when a step runs.

Communicators: ``StepProgram.communicators`` lists the devices of each communicator the
collective steps index; ``RunProgram.communicators`` holds one of those devices each
(``Runtime.run_program`` checks them, and every collective step's stream and peer).

Threads: the first runs on the thread that yielded the command; every other is spawned
(``spawn``, named ``ProgramThread.name``) before it starts, in order, and joined after it
ends, in order. The command returns a :class:`ProgramOutcome`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from harness.runtime import (
    COLLECTIVE_ALGORITHMS,
    Collective,
    CollectiveOp,
    Communicator,
    Direction,
    Event,
    GraphKernel,
    HostMemory,
    KernelKind,
    PolicyGen,
    RunProgram,
    Runtime,
    Stream,
)

OP_HOST = 0
OP_LAUNCH = 1
OP_COPY = 2
OP_RECORD = 3
OP_WAIT = 4
OP_SYNC_STREAM = 5
OP_SYNC_EVENT = 6
OP_SYNC_DEVICE = 7
OP_GRAPH = 8
OP_COLLECTIVE = 9
OP_NAMES = (
    "host", "launch", "copy", "record", "wait", "sync_stream", "sync_event", "sync_device", "graph", "collective"
)  # fmt: skip
STREAM_OPS = (OP_LAUNCH, OP_COPY, OP_RECORD, OP_WAIT, OP_SYNC_STREAM, OP_GRAPH, OP_COLLECTIVE)  # need a stream

KIND_CODES: dict[KernelKind, int] = {KernelKind.COMPUTE: 0, KernelKind.MEMORY: 1, KernelKind.LATENCY: 2}
KINDS: tuple[KernelKind, ...] = tuple(KIND_CODES)
DIRECTION_CODES: dict[Direction, int] = {Direction.H2D: 0, Direction.D2H: 1, Direction.D2D: 2}
DIRECTIONS: tuple[Direction, ...] = tuple(DIRECTION_CODES)
COLLECTIVE_CODES: dict[CollectiveOp, int] = {op: i for i, op in enumerate(CollectiveOp)}
COLLECTIVE_OPS: tuple[CollectiveOp, ...] = tuple(COLLECTIVE_CODES)
_P2P = (COLLECTIVE_CODES[CollectiveOp.SEND], COLLECTIVE_CODES[CollectiveOp.RECV])
_PEERED = (COLLECTIVE_CODES[CollectiveOp.BROADCAST], *_P2P)  # steps whose graph_count is a peer device
ALGORITHMS: tuple[str, ...] = ("", *COLLECTIVE_ALGORITHMS)  # code 0: the backend's choice

STEP_DTYPE = np.dtype(
    [
        ("op", "u1"),
        ("kind", "u1"),
        ("pageable", "u1"),
        ("algorithm", "u1"),
        ("stream", "<i4"),
        ("name", "<i4"),
        ("gap_name", "<i4"),
        ("event", "<i8"),
        ("graph_first", "<i4"),
        ("graph_count", "<i4"),
        ("gap_us", "<f8"),
        ("host_us", "<f8"),
        ("duration_us", "<f8"),
        ("share", "<f8"),
        ("nbytes", "<i8"),
    ],
    align=True,
)
"""One step (see the module docstring); 72 bytes, the layout of a C struct of these fields in this order."""

GRAPH_KERNEL_DTYPE = np.dtype(
    [("name", "<i4"), ("kind", "u1"), ("reserved", "u1", (3,)), ("duration_us", "<f8"), ("share", "<f8")], align=True
)
"""One kernel of a graph launch: name index, kind code, solo duration and compute share; 24 bytes."""

assert STEP_DTYPE.itemsize == 72 and GRAPH_KERNEL_DTYPE.itemsize == 24


def new_steps(count: int) -> np.ndarray:
    """``count`` steps, every field empty: op ``OP_HOST``, indices -1, numbers 0, ``host_us`` NaN."""
    steps = np.zeros(count, STEP_DTYPE)
    for index in ("stream", "name", "gap_name"):
        steps[index] = -1
    steps["host_us"] = math.nan
    steps["share"] = 1.0
    return steps


@dataclass(frozen=True, slots=True, eq=False)
class ProgramThread:
    """One host thread of a program: its name (a spawned thread's) and its steps."""

    name: str
    steps: np.ndarray  # of STEP_DTYPE


@dataclass(frozen=True, slots=True, eq=False)
class ProgramOutcome:
    """What a :class:`RunProgram` command returns."""

    unresolved_waits: int  # OP_WAIT steps whose event had not been recorded when they ran (left out)


class ProgramError(ValueError):
    """A step program that breaks the layout's rules (the message names the thread, the step and the field)."""


@dataclass(frozen=True, slots=True, eq=False, weakref_slot=True)  # weakly cached by the policies that make it
class StepProgram:
    """The data of a program command: per-thread steps, the names they index, graph kernels, sync order.

    Checked when made (:meth:`check`); immutable by convention (backends may cache per program).
    """

    threads: tuple[ProgramThread, ...]
    names: tuple[str, ...]
    streams: int  # how many streams the steps index
    graph_kernels: np.ndarray = field(default_factory=lambda: np.zeros(0, GRAPH_KERNEL_DTYPE))
    sync_order: tuple[int, ...] | None = None  # OP_SYNC_DEVICE's stream order; None: by index
    communicators: tuple[tuple[int, ...], ...] = ()  # the devices of each communicator OP_COLLECTIVE indexes
    _graphs: dict = field(default_factory=dict, init=False, repr=False)  # (first, count) -> tuple[GraphKernel, ...]

    def __post_init__(self) -> None:
        if self.sync_order is None:
            object.__setattr__(self, "sync_order", tuple(range(self.streams)))
        self.check()

    @property
    def steps_count(self) -> int:
        return sum(len(t.steps) for t in self.threads)

    def check(self) -> None:
        """Raise :class:`ProgramError` naming the first step that breaks a rule of the layout."""
        if not self.threads:
            raise ProgramError("a step program needs at least one thread")
        if sorted(self.sync_order) != list(range(self.streams)):
            raise ProgramError(f"sync_order {self.sync_order} is not an order of the {self.streams} streams")
        for j, devices in enumerate(self.communicators):
            if not devices or len(set(devices)) != len(devices) or min(devices) < 0:
                raise ProgramError(f"communicator {j}: needs distinct devices, got {list(devices)}")
        graphs = self.graph_kernels
        if graphs.dtype != GRAPH_KERNEL_DTYPE:
            raise ProgramError(f"graph_kernels: dtype {graphs.dtype}, expected GRAPH_KERNEL_DTYPE")
        _first_bad("graph kernel", graphs, ~((graphs["name"] >= -1) & (graphs["name"] < len(self.names))), "name")
        _first_bad("graph kernel", graphs, ~(graphs["kind"] < len(KINDS)), "kind")
        _first_bad("graph kernel", graphs, ~(graphs["duration_us"] >= 0.0), "duration_us")
        _first_bad("graph kernel", graphs, ~((graphs["share"] > 0.0) & (graphs["share"] <= 1.0)), "share")
        for thread in self.threads:
            steps = thread.steps
            where = f"thread {thread.name!r}, step"
            if steps.dtype != STEP_DTYPE:
                raise ProgramError(f"thread {thread.name!r}: steps of dtype {steps.dtype}, expected STEP_DTYPE")
            if len(steps) <= _CHECK_CHUNK_STEPS:
                self._check_steps(where, steps, graphs)
                continue
            try:  # a chunk at a time, each while it is in the cache (each rule's pass reads a 72-byte stride)
                for begin in range(0, len(steps), _CHECK_CHUNK_STEPS):
                    self._check_steps(where, steps[begin : begin + _CHECK_CHUNK_STEPS], graphs)
            except ProgramError:  # the message of the whole thread's check: its first rule broken, at its first step
                self._check_steps(where, steps, graphs)
                raise

    def _check_steps(self, where: str, steps: np.ndarray, graphs: np.ndarray) -> None:
        """Raise :class:`ProgramError` naming the first of ``steps`` that breaks the first rule any of them breaks."""
        op = steps["op"]
        _first_bad(where, steps, op > OP_COLLECTIVE, "op")
        needs_stream = np.isin(op, STREAM_OPS)
        stream = steps["stream"]
        _first_bad(where, steps, needs_stream & ~((stream >= 0) & (stream < self.streams)), "stream")
        for index in ("name", "gap_name"):
            _first_bad(where, steps, ~((steps[index] >= -1) & (steps[index] < len(self.names))), index)
        _first_bad(where, steps, (steps["gap_us"] > 0.0) & (steps["gap_name"] < 0), "gap_name")
        _first_bad(where, steps, ~(steps["gap_us"] >= 0.0), "gap_us")
        host = steps["host_us"]
        _first_bad(where, steps, ~np.isnan(host) & ~(host >= 0.0), "host_us")
        launch = op == OP_LAUNCH
        _first_bad(where, steps, launch & ~(steps["duration_us"] >= 0.0), "duration_us")
        _first_bad(where, steps, launch & ~((steps["share"] > 0.0) & (steps["share"] <= 1.0)), "share")
        _first_bad(where, steps, launch & (steps["kind"] >= len(KINDS)), "kind")
        copy = op == OP_COPY
        _first_bad(where, steps, copy & (steps["kind"] >= len(DIRECTIONS)), "kind")
        _first_bad(where, steps, copy & (steps["nbytes"] < 0), "nbytes")
        graph = op == OP_GRAPH
        first, count = steps["graph_first"], steps["graph_count"]
        bad = graph & ((count < 1) | (first < 0) | (first.astype(np.int64) + count > len(graphs)))
        _first_bad(where, steps, bad, "graph_first/graph_count")
        _first_bad(where, steps, graph & ~(steps["duration_us"] >= 0.0), "duration_us")
        syncs = (op == OP_SYNC_DEVICE) | (op == OP_SYNC_EVENT)
        _first_bad(where, steps, syncs & ~((stream >= -1) & (stream < self.streams)), "stream")
        self._check_collectives(where, steps, op == OP_COLLECTIVE)

    def _check_collectives(self, where: str, steps: np.ndarray, collective: np.ndarray) -> None:
        if not collective.any():
            return
        _first_bad(where, steps, collective & (steps["kind"] >= len(COLLECTIVE_OPS)), "kind")
        _first_bad(where, steps, collective & (steps["algorithm"] >= len(ALGORITHMS)), "algorithm")
        _first_bad(where, steps, collective & (steps["nbytes"] < 0), "nbytes")
        comm = steps["graph_first"]
        _first_bad(where, steps, collective & ~((comm >= 0) & (comm < len(self.communicators))), "graph_first")
        peered = collective & np.isin(steps["kind"], _PEERED)
        for i in np.flatnonzero(collective).tolist():
            peer = int(steps["graph_count"][i])
            devices = self.communicators[int(comm[i])]
            if (peer in devices) if peered[i] else (peer == -1):
                continue
            wanted = f"a device of its communicator {list(devices)}" if peered[i] else "-1 (no peer)"
            raise ProgramError(f"{where} {i}: field 'graph_count' (the peer) is {peer}, expected {wanted}")

    def graph(self, first: int, count: int) -> tuple[GraphKernel, ...]:
        """The kernels of a graph launch, as the runtime describes them; the same tuple every time."""
        key = (first, count)
        kernels = self._graphs.get(key)
        if kernels is None:
            names = self.names
            kernels = self._graphs[key] = tuple(
                GraphKernel(names[n] if n >= 0 else "", duration, share, KINDS[kind])
                for n, kind, duration, share in self.graph_kernels[first : first + count][
                    ["name", "kind", "duration_us", "share"]
                ].tolist()
            )
        return kernels


_CHECK_CHUNK_STEPS = 1 << 16  # steps checked at once (4.7 MB of them: in the cache for all the rules' passes)


def _first_bad(where: str, rows: np.ndarray, bad: np.ndarray, column: str) -> None:
    if bad.any():
        i = int(np.argmax(bad))
        value = rows[i][column] if column in rows.dtype.names else rows[i]
        raise ProgramError(f"{where} {i}: field {column!r} is invalid ({value!r})")


def check_collective_streams(
    program: StepProgram, streams: tuple[Stream, ...], comms: tuple[Communicator, ...]
) -> None:
    """Raise ``ValueError`` naming the first collective step whose stream is not on a device of its communicator,
    or that sends to (receives from) its own device: what the runtime's collective builders refuse."""
    devices = np.array([s.device for s in streams], dtype=np.int64)
    for thread in program.threads:
        steps = thread.steps
        for i in np.flatnonzero(steps["op"] == OP_COLLECTIVE).tolist():
            device = int(devices[steps["stream"][i]])
            comm = comms[int(steps["graph_first"][i])]
            if device not in comm.devices:
                raise ValueError(
                    f"thread {thread.name!r}, step {i}: collective on stream {streams[steps['stream'][i]].name!r}"
                    f" of device {device}, not in communicator {comm.name!r} {list(comm.devices)}"
                )
            if steps["kind"][i] in _P2P and int(steps["graph_count"][i]) == device:
                raise ValueError(f"thread {thread.name!r}, step {i}: a device cannot send to itself (device {device})")


def collective_step_name(names: tuple[str, ...], name: int, code: int) -> str:
    """A collective step's name: ``names[name]``, or its operation's when -1."""
    return names[name] if name >= 0 else COLLECTIVE_OPS[code].value


def collective_of(
    rt: Runtime,
    stream: Stream,
    comm: Communicator,
    code: int,
    algorithm_code: int,
    nbytes: int,
    peer: int,
    name: str,
    host: float | None,
) -> Collective:
    """The runtime's command a collective step stands for (its fields as named), built by ``rt``'s builders."""
    op = COLLECTIVE_OPS[code]
    algorithm = ALGORITHMS[algorithm_code] or None
    if op is CollectiveOp.SEND:
        return rt.send(stream, comm, nbytes, peer, name, host)
    if op is CollectiveOp.RECV:
        return rt.recv(stream, comm, nbytes, peer, name, host)
    if op is CollectiveOp.BROADCAST:
        return rt.broadcast(stream, comm, nbytes, peer, name, host, algorithm)
    builder = {
        CollectiveOp.ALL_REDUCE: rt.all_reduce,
        CollectiveOp.ALL_GATHER: rt.all_gather,
        CollectiveOp.REDUCE_SCATTER: rt.reduce_scatter,
    }[op]
    return builder(stream, comm, nbytes, name, host, algorithm)


# --------------------------------------------------------------------------- the reference interpreter


class ProgramState:
    """What a program's threads share while it runs: symbolic events, streams with work outstanding."""

    __slots__ = ("events", "outstanding", "unresolved_waits")

    def __init__(self) -> None:
        self.events: dict[int, Any] = {}  # symbolic id -> the backend's event (an Event for expand)
        self.outstanding: set[int] = set()  # stream indices with work not synced
        self.unresolved_waits = 0


def expand(rt: Runtime, command: RunProgram) -> PolicyGen:
    """The reference interpreter: the runtime commands ``command`` stands for (a generator policy).

    ``yield from expand(rt, command)`` in a policy, or ``backend.run(expand, command)``,
    issues exactly what a backend's native executor of the command must reproduce.
    """
    return (yield from run_threads(rt, command, _expand_thread))


def run_threads(rt: Runtime, command: RunProgram, thread_policy: Callable[..., PolicyGen]) -> PolicyGen:
    """``thread_policy(rt, command, thread, state)`` for each of the program's threads, sharing one
    :class:`ProgramState`: the first on the calling thread, the others spawned under their names and joined at the
    end; the program's outcome."""
    program = command.program
    state = ProgramState()
    others = []
    for thread in program.threads[1:]:
        others.append((yield rt.spawn(thread_policy, command, thread, state, name=thread.name)))
    yield from thread_policy(rt, command, program.threads[0], state)
    for other in others:
        yield rt.join(other)
    return ProgramOutcome(state.unresolved_waits)


def _expand_thread(rt: Runtime, command: RunProgram, thread: ProgramThread, state: ProgramState) -> PolicyGen:
    program = command.program
    names, streams, events, outstanding = program.names, command.streams, state.events, state.outstanding
    for step in iter_steps(thread.steps):
        op, kind, pageable, algo, stream, name, gap_name, event, first, count, gap_us, host_us, duration, share, n = (
            step
        )
        if gap_us > 0.0:
            yield rt.host_work(gap_us, names[gap_name])
        host = None if host_us != host_us else host_us  # NaN: the backend's figure
        if op == OP_LAUNCH:
            outstanding.add(stream)
            yield rt.launch(streams[stream], _name(names, name), duration, share, KINDS[kind], host_us=host)
        elif op == OP_COPY:
            outstanding.add(stream)
            memory = HostMemory.PAGEABLE if pageable else HostMemory.PINNED
            recorded = duration if duration > 0.0 else None
            yield rt.copy(streams[stream], n, DIRECTIONS[kind], memory, _name(names, name), host_us=host, duration_us=recorded)
        elif op == OP_GRAPH:
            outstanding.add(stream)
            yield rt.launch_graph(streams[stream], _name(names, name), program.graph(first, count), host, duration)
        elif op == OP_RECORD:
            events[event] = yield rt.record(streams[stream], host)
        elif op == OP_WAIT:
            recorded: Event | None = events.get(event)
            if recorded is None:
                state.unresolved_waits += 1
            else:
                yield rt.wait_event(streams[stream], recorded, host)
        elif op == OP_SYNC_STREAM:
            yield rt.sync_stream(streams[stream])
            outstanding.discard(stream)
        elif op == OP_SYNC_EVENT and event in events:
            yield rt.sync_event(events[event])
        elif op == OP_SYNC_EVENT or op == OP_SYNC_DEVICE:
            if stream < 0:
                for index in program.sync_order:
                    if index in outstanding:
                        yield rt.sync_stream(streams[index])
                outstanding.clear()
            else:  # one device's streams (a rank's device-wide sync)
                device = streams[stream].device
                for index in program.sync_order:
                    if index in outstanding and streams[index].device == device:
                        yield rt.sync_stream(streams[index])
                        outstanding.discard(index)
        elif op == OP_COLLECTIVE:
            outstanding.add(stream)
            comm = command.communicators[first]
            label = collective_step_name(names, name, kind)
            yield collective_of(rt, streams[stream], comm, kind, algo, n, count, label, host)
    return len(thread.steps)


def _name(names: tuple[str, ...], index: int) -> str:
    return names[index] if index >= 0 else ""


def iter_steps(steps: np.ndarray, chunk: int = 65536) -> Iterator[tuple]:
    """The steps as tuples of Python values in field order (``tolist`` a chunk at a time: bounded memory)."""
    for begin in range(0, len(steps), chunk):
        yield from steps[begin : begin + chunk].tolist()
