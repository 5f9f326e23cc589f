"""The runtime interface a scheduling policy is written against.

A policy is written once and runs unchanged on the simulator (``sim``) and on a
real CUDA GPU (``replay``). This module is the whole contract between the two.

Contract
--------
1. **A host thread is a generator.** A policy's entry point is a generator
   function ``main(rt, *args)``; it asks for every runtime action by *yielding
   a command* built with ``rt``'s methods and receives the command's result as
   the value of the ``yield``::

       compute = yield rt.create_stream(device=0, name="compute")
       buf = yield rt.alloc(device=0, nbytes=64 << 20, name="params")
       if buf is None:                      # allocation failed: fall back
           ...
       yield rt.copy(compute, 64 << 20, Direction.H2D, buffer=buf)
       yield rt.launch(compute, "gemm", duration_us=850.0, compute_share=1.0)
       done = yield rt.record(compute)
       yield rt.sync_event(done)

   Helpers compose with ``yield from``. A policy never calls ``time.sleep``,
   ``torch`` or ``simpy`` itself: the backend that drives the generator does.

2. **Every action is yielded, blocking or not.** Issuing GPU work costs the
   host time (the launch overhead); the ``yield`` is where a backend charges
   it. Time passes for a host thread only inside a ``yield``.

3. **Blocking and non-blocking commands.**
   Non-blocking (return once the work is queued on the stream):
   ``launch``, ``launch_graph`` (a captured CUDA graph of kernels: one host
   launch cost, ``graph_launch_us``, for all of them), ``copy`` from pinned
   memory, ``record``, ``wait_event``.
   Blocking (return when the condition holds): ``sync_event``,
   ``sync_stream``, ``launch_sync`` (a launch and a sync of its stream, as
   one call: it returns the host time at which the sync returned, what a
   ``now`` right after it would say), ``launch_sync_series`` (``launch_sync``
   once per duration, stopping early when a condition the policy gives holds
   after a step: the list of those times), ``host_work``, ``put`` on a full queue, ``get`` on an
   empty queue, ``join``, and ``copy`` from *pageable* host memory, which
   holds the issuing host thread until the copy has finished (as CUDA does:
   the driver stages pageable memory through a pinned bounce buffer).
   Immediate (no time passes): ``now``, ``query_event``, ``create_stream``,
   ``make_queue``, ``spawn``.

4. **Streams** are in-order queues on one device: work on a stream starts in
   issue order and never overlaps itself. Work on different streams is
   unordered except through events: ``record(s)`` returns an event that
   completes when everything issued to ``s`` before it has completed;
   ``wait_event(s2, ev)`` makes ``s2`` start nothing issued after the wait
   before ``ev`` completes.

5. **Kernels** are described, not written: a name, the solo duration in µs
   (how long it takes alone on an idle GPU), the share of the GPU's compute
   it occupies (0 < share <= 1) and a :class:`KernelKind` saying what bounds it
   (the replay engine picks real GPU work of that kind, calibrated to the
   duration). Concurrent kernels whose shares sum past 1 stretch.

6. **Memory.** ``alloc`` reserves device memory against the device's capacity
   and returns a :class:`Buffer`, or ``None`` when it does not fit: the policy
   decides the fallback. ``free`` returns it. Copies may name the buffer they
   fill or drain; the byte count is what moves.

7. **Host threads and queues.** ``spawn(fn, *args)`` starts another host
   thread running generator function ``fn(rt, *args)`` and returns a
   :class:`Thread`; ``join`` waits for it and returns its return value.
   ``make_queue(capacity)`` makes a bounded FIFO shared between threads.

8. **Units.** Time is in microseconds since the start of the run, sizes in
   bytes, everywhere.

9. **Determinism.** A policy takes its randomness from ``rt.rng`` (seeded
   from the spec), so the same spec and seed give the same run in the
   simulator.

10. **What a policy returns.** ``main`` returns the run's result: a typed
    value (a frozen dataclass of counts, logs, ...) that the workload's
    ``metrics`` reads; the backend hands it back untouched. A spawned thread's
    return value is what ``join`` returns.

11. **Python rules.** ``yield`` cannot appear inside a comprehension or a
    lambda (it would make that a generator of its own): build lists with a
    loop, one ``yield`` per command. A helper that issues commands is itself a
    generator, called with ``yield from``.

12. **Host cost of a call.** ``launch``, ``launch_graph``, ``copy``, ``record``
    and ``wait_event`` take an optional ``host_us``: what this call costs the
    host, when the policy knows it (a recorded program knows what each call
    took). The simulator charges it instead of the profile's figure; a real
    backend pays what the call really costs. Likewise ``copy`` takes an optional
    ``duration_us``, the copy's own time as recorded: the simulator moves its
    bytes at the rate that gives that time alone (sharing the link as any copy)
    instead of the link model's; a real backend moves the bytes.

13. **What a policy may know.** ``rt.devices`` (index, name, memory of each
    device the run has), ``rt.profile`` (the hardware profile the run uses:
    the simulator's model, or the replay's calibrated figures), ``rt.backend``
    ("sim" or "replay"), ``rt.seed`` and ``rt.rng``.

14. **Programs.** ``run_program(program, streams, communicators)`` runs a stretch of
    calls given up front as arrays of steps (:mod:`harness.program`): what the policy
    does not read the results of. It is defined as the commands its reference
    interpreter (``harness.program.expand``) issues; a backend may run it natively,
    with the same op rows.

15. **Collectives** (many GPUs, NCCL's model). ``create_communicator(devices)``
    returns a :class:`Communicator`, a fixed set of devices (its ranks, in that
    order). Each rank issues its part of a collective on a stream of its own
    device, as NCCL is called once per rank: ``all_reduce``, ``all_gather``,
    ``reduce_scatter``, ``broadcast`` (from ``root``), ``send`` / ``recv`` (to or
    from ``peer``); non-blocking, ordered on the stream like a kernel. The k-th
    collective a rank issues on a communicator meets the k-th of every other
    rank (send/recv: the k-th from one rank to one peer), and they must agree on
    the operation and the size; it starts when every rank's stream has reached
    it (rendezvous) and ends on every rank together. ``nbytes`` is nccl-tests'
    *size*: the buffer of an all-reduce or broadcast, the gathered output of an
    all-gather, the full input of a reduce-scatter, the message of a send/recv.
    ``algorithm`` (optional: ``"ring"``, ``"tree"``, ...) is the one NCCL ran when the
    policy knows it (a recording); the simulator then times that one.

16. **Launch latency.** ``launch_graph`` takes an optional ``latency_us``: its first
    kernel starts at the later of the stream's earlier work's end and the call's
    return plus ``latency_us`` (a graph launched onto an idle stream waits it out,
    one queued behind earlier work hides it). The simulator models it so; a real
    backend's graph launch has a latency of its own and pays that instead.

Results are handles that are opaque to the policy (:class:`Stream`,
:class:`Event`, :class:`Buffer`, :class:`Thread`, :class:`Queue`), plain
values (``bool``, ``float``), or ``None``. A backend may hang its own object
on a handle's ``native`` slot; policies never touch it.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Callable, Generator, Iterable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from harness.profile import Profile
    from harness.program import StepProgram


class Direction(str, enum.Enum):
    """Which way a copy moves bytes."""

    H2D = "h2d"
    D2H = "d2h"
    D2D = "d2d"


class HostMemory(str, enum.Enum):
    """Kind of host memory on the host side of an H2D/D2H copy."""

    PINNED = "pinned"
    PAGEABLE = "pageable"


class KernelKind(str, enum.Enum):
    """What bounds a kernel; the replay engine picks real work of this kind."""

    COMPUTE = "compute"  # matrix products: occupies SMs
    MEMORY = "memory"  # device-memory bandwidth bound
    LATENCY = "latency"  # neither: a fixed wait on the device


# --------------------------------------------------------------------------- handles


@dataclass(eq=False, slots=True)
class Stream:
    """An in-order queue of device work on one device."""

    id: int
    device: int
    name: str
    native: Any = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class Event:
    """A CUDA-style event: completes when its stream reaches the record point."""

    id: int
    stream: Stream
    native: Any = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class Buffer:
    """A device-memory allocation."""

    id: int
    device: int
    nbytes: int
    name: str
    native: Any = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class Thread:
    """A host thread spawned by a policy."""

    id: int
    name: str
    native: Any = field(default=None, repr=False)


@dataclass(eq=False, slots=True)
class Queue:
    """A bounded FIFO between host threads."""

    id: int
    name: str
    capacity: int
    native: Any = field(default=None, repr=False)


# --------------------------------------------------------------------------- commands


class Command:
    """Base of everything a policy yields."""

    __slots__ = ()


@dataclass(frozen=True, slots=True)
class CreateStream(Command):
    device: int
    name: str


@dataclass(slots=True)  # not frozen: built for every kernel, and a frozen dataclass's __init__ costs 4x; never hashed
class Launch(Command):
    stream: Stream
    name: str
    duration_us: float
    compute_share: float
    kind: KernelKind
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's


@dataclass(slots=True)  # not frozen, as Launch
class LaunchSync(Launch):
    """A launch followed by a sync of its stream (``launch`` + ``sync_stream`` + ``now`` in one round trip).

    A launch's fields; backends dispatch on the exact command type, so it is never taken for a plain launch.
    """


@dataclass(slots=True)  # not frozen, as Launch
class LaunchSyncSeries(Command):
    """``launch_sync`` of one kernel per duration in turn, until ``until()`` is true after a step.

    ``durations_us`` is consumed one step at a time (it may be a generator), so a series that
    stops early never prices the steps it did not run.
    """

    stream: Stream
    name: str
    durations_us: Iterable[float]  # a list checked when the command was built, or an iterator checked as taken
    compute_share: float
    kind: KernelKind
    until: Callable[[], object] | None = None

    def each_duration_us(self) -> Iterator[float]:
        """The durations, each checked as ``launch`` checks its own (contract point 5)."""
        if isinstance(self.durations_us, list):
            return iter(self.durations_us)
        return self._checked(self.durations_us)

    def _checked(self, durations_us: Iterable[float]) -> Iterator[float]:
        for i, duration in enumerate(durations_us):
            if duration.__class__ is not float:
                duration = float(duration)
            if not duration >= 0.0:  # also rejects NaN
                raise ValueError(
                    f"kernel {self.name!r}, step {i} of a series: duration_us must be >= 0, got {duration}"
                )
            yield duration


@dataclass(frozen=True, slots=True)
class GraphKernel:
    """One kernel of a captured graph: described like a launch (contract point 5)."""

    name: str
    duration_us: float
    compute_share: float = 1.0
    kind: KernelKind = KernelKind.COMPUTE


@dataclass(frozen=True, slots=True)
class LaunchGraph(Command):
    stream: Stream
    name: str
    kernels: tuple[GraphKernel, ...]
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's
    latency_us: float = 0.0  # the launch's latency: its first kernel starts no earlier than this after the call returns


@dataclass(slots=True)  # not frozen, as Launch
class Copy(Command):
    stream: Stream
    nbytes: int
    direction: Direction
    host_memory: HostMemory
    name: str
    buffer: Buffer | None
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's
    # The copy's own time when the policy knows it (a recording): a simulator takes it for its link model's (a host-link
    # copy moves its bytes at nbytes / duration_us, sharing the link as any copy); a GPU moves the bytes. None: the model's.
    duration_us: float | None = None


@dataclass(slots=True)  # not frozen, as Launch
class Record(Command):
    stream: Stream
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's


@dataclass(slots=True)  # not frozen, as Launch
class WaitEvent(Command):
    stream: Stream
    event: Event
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's


@dataclass(frozen=True, slots=True)
class QueryEvent(Command):
    event: Event


@dataclass(frozen=True, slots=True)
class SyncEvent(Command):
    event: Event


@dataclass(frozen=True, slots=True)
class SyncStream(Command):
    stream: Stream


@dataclass(frozen=True, slots=True)
class HostWork(Command):
    duration_us: float
    name: str


@dataclass(frozen=True, slots=True)
class Spawn(Command):
    fn: Callable[..., Generator[Command, Any, Any]]
    args: tuple[Any, ...]
    name: str


@dataclass(frozen=True, slots=True)
class Join(Command):
    thread: Thread


@dataclass(frozen=True, slots=True)
class MakeQueue(Command):
    capacity: int
    name: str


@dataclass(frozen=True, slots=True)
class Put(Command):
    queue: Queue
    item: Any


@dataclass(frozen=True, slots=True)
class Get(Command):
    queue: Queue


@dataclass(frozen=True, slots=True)
class Now(Command):
    pass


@dataclass(slots=True)  # not frozen, as Launch
class Alloc(Command):
    device: int
    nbytes: int
    name: str


@dataclass(slots=True)  # not frozen, as Launch
class Free(Command):
    buffer: Buffer


# --------------------------------------------------------------------------- collectives (contract point 15)


class CollectiveOp(str, enum.Enum):
    """What a collective does; send and recv are the two halves of one point-to-point transfer."""

    ALL_REDUCE = "all_reduce"
    ALL_GATHER = "all_gather"
    REDUCE_SCATTER = "reduce_scatter"
    BROADCAST = "broadcast"
    SEND = "send"
    RECV = "recv"


COLLECTIVE_ALGORITHMS = ("ring", "tree", "nvls", "nvls_tree", "collnet_direct", "collnet_chain", "pat")
"""NCCL's algorithms, as a recording names them (its kernel names: ``..._RING_LL``); the simulator models ring and
tree and takes its own choice for the others."""


@dataclass(eq=False, slots=True)
class Communicator:
    """A set of devices that run collectives together (an NCCL communicator); rank i is ``devices[i]``."""

    id: int
    devices: tuple[int, ...]
    name: str
    native: Any = field(default=None, repr=False)

    def rank_of(self, device: int) -> int:
        return self.devices.index(device)


@dataclass(frozen=True, slots=True)
class CreateCommunicator(Command):
    devices: tuple[int, ...]
    name: str


@dataclass(slots=True)  # not frozen, as Launch
class Collective(Command):
    """One rank's part of a collective, issued on a stream of that rank's device."""

    stream: Stream
    comm: Communicator
    op: CollectiveOp
    nbytes: int
    name: str
    peer: int | None = None  # the root device of a broadcast, the other device of a send/recv
    host_us: float | None = None  # the call's own host cost when the policy knows it (a recording); None: the profile's
    # NCCL's algorithm when the policy knows it (a recording names it: "ring", "tree", ...); None: the backend's choice
    algorithm: str | None = None


@dataclass(frozen=True, slots=True, eq=False)
class RunProgram(Command):
    """Run a step program (:class:`harness.program.StepProgram`) on these streams, one handle per stream it indexes,
    and these communicators, one per communicator its collective steps index.

    Its semantics and its reference interpreter (``expand``) are in :mod:`harness.program`;
    it returns a :class:`harness.program.ProgramOutcome`.
    """

    program: StepProgram
    streams: tuple[Stream, ...]
    communicators: tuple[Communicator, ...] = ()


_NOW = Now()

COMMANDS: dict[type[Command], str] = {
    Now: "now",
    CreateStream: "create_stream",
    QueryEvent: "query_event",
    MakeQueue: "make_queue",
    Spawn: "spawn",
    Launch: "launch",
    LaunchSync: "launch_sync",
    LaunchSyncSeries: "launch_sync_series",
    LaunchGraph: "launch_graph",
    Copy: "copy",
    Record: "record",
    WaitEvent: "wait_event",
    SyncEvent: "sync_event",
    SyncStream: "sync_stream",
    HostWork: "host_work",
    Join: "join",
    Put: "put",
    Get: "get",
    Alloc: "alloc",
    Free: "free",
    CreateCommunicator: "create_communicator",
    Collective: "collective",
    RunProgram: "run_program",
}
"""Every runtime command and the name of its handler: a backend implements ``_<name>(cmd, thread)`` for each."""

IMMEDIATE: frozenset[type[Command]] = frozenset({Now, CreateStream, QueryEvent, MakeQueue, Spawn, CreateCommunicator})
"""Commands during which no time passes for the host thread (contract point 3)."""

PolicyGen = Generator[Command, Any, Any]
"""What a host-thread function returns: a generator of commands."""


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """What a policy may know about a device before it starts."""

    index: int
    name: str
    memory_bytes: int


def _host_cost(host_us: float | None) -> float | None:
    if host_us is None:
        return None
    if not host_us >= 0.0:  # also rejects NaN
        raise ValueError(f"host_us must be >= 0, got {host_us}")
    return float(host_us)


def _kernel(
    command: type[Launch],
    stream: Stream,
    name: str,
    duration_us: float,
    compute_share: float,
    kind: KernelKind,
    host_us: float | None,
) -> Launch:
    """A kernel command with its fields checked (contract point 5); numbers as floats, the kind as the enum."""
    if (  # valid as given, nothing to coerce: no float() calls (the hot path of a batching server)
        duration_us.__class__ is float
        and compute_share.__class__ is float
        and kind.__class__ is KernelKind
        and host_us is None
        and duration_us >= 0.0
        and 0.0 < compute_share <= 1.0
    ):
        return command(stream, name, duration_us, compute_share, kind)
    if not duration_us >= 0.0:  # also rejects NaN
        raise ValueError(f"kernel {name!r}: duration_us must be >= 0, got {duration_us}")
    share, kind = _share_and_kind(name, compute_share, kind)
    return command(stream, name, float(duration_us), share, kind, _host_cost(host_us))


def _share_and_kind(name: str, compute_share: float, kind: KernelKind) -> tuple[float, KernelKind]:
    """A kernel's compute share and kind, checked and coerced (contract point 5)."""
    if not 0.0 < compute_share <= 1.0:
        raise ValueError(f"kernel {name!r}: compute_share must be in (0, 1], got {compute_share}")
    return float(compute_share), kind if kind.__class__ is KernelKind else KernelKind(kind)  # enum call only to coerce


class Runtime:
    """Builds the commands a policy yields, and tells it about the machine.

    Backends construct one per run. The builder methods validate their
    arguments, so a policy bug surfaces at the call that made it, in both
    backends alike.
    """

    def __init__(self, devices: list[DeviceInfo], backend: str, seed: int, profile: Profile | None = None) -> None:
        self.devices = devices
        self.backend = backend
        self.profile = profile
        self.seed = seed
        self.rng = random.Random(seed)

    # -- streams and device work
    def create_stream(self, device: int, name: str) -> CreateStream:
        self._check_device(device)
        return CreateStream(device, name)

    def launch(
        self,
        stream: Stream,
        name: str,
        duration_us: float,
        compute_share: float = 1.0,
        kind: KernelKind = KernelKind.COMPUTE,
        host_us: float | None = None,
    ) -> Launch:
        return _kernel(Launch, stream, name, duration_us, compute_share, kind, host_us)

    def launch_sync(
        self,
        stream: Stream,
        name: str,
        duration_us: float,
        compute_share: float = 1.0,
        kind: KernelKind = KernelKind.COMPUTE,
        host_us: float | None = None,
    ) -> LaunchSync:
        """Launch a kernel and wait for its stream (everything issued to it so far) to finish.

        The same ops as ``launch`` then ``sync_stream`` (a kernel and a host sync); the command
        returns the host time the sync returned at, as a ``now`` right after would.
        """
        return _kernel(LaunchSync, stream, name, duration_us, compute_share, kind, host_us)

    def launch_sync_series(
        self,
        stream: Stream,
        name: str,
        durations_us: Iterable[float],
        compute_share: float = 1.0,
        kind: KernelKind = KernelKind.COMPUTE,
        until: Callable[[], object] | None = None,
    ) -> LaunchSyncSeries:
        """``launch_sync`` of one kernel per duration, in turn, stopping early once ``until()`` is true.

        Exactly the ops and times of yielding ``launch_sync`` once per duration, checking
        ``until()`` after each (it is called when that step's sync has returned, as the
        policy's own code would run then): a loop whose steps depend on nothing but a
        condition the policy can state up front pays one round trip instead of one per step.
        ``durations_us`` is a list (or tuple), checked here, or an iterator taken one step at a
        time (a generator prices only the steps that run), each checked as it is taken; a
        duration is checked as ``launch`` checks its own. Returns the host time each step's
        sync returned at, one per step run.
        """
        share, kind = _share_and_kind(name, compute_share, kind)
        series = LaunchSyncSeries(stream, name, durations_us, share, kind, until)
        if isinstance(durations_us, (list, tuple)):  # checked here, at once (a NaN makes the sum NaN)
            durations = series.durations_us = list(map(float, durations_us))
            if durations and (not min(durations) >= 0.0 or (total := sum(durations)) != total):
                list(series._checked(durations))  # raises, naming the first bad step
        return series

    def launch_graph(
        self,
        stream: Stream,
        name: str,
        kernels: tuple[GraphKernel, ...],
        host_us: float | None = None,
        latency_us: float = 0.0,
    ) -> LaunchGraph:
        """Launch a captured CUDA graph of ``kernels`` on ``stream``.

        One host launch cost (``graph_launch_us``), then the kernels run in order. ``latency_us`` (contract
        point 16): the first kernel starts no earlier than that long after the call returns, nor before the
        stream's earlier work has ended: the launch's own latency, which a graph queued behind earlier work hides.
        """
        if not kernels:
            raise ValueError(f"graph {name!r}: has no kernels")
        if not latency_us >= 0.0:  # also rejects NaN
            raise ValueError(f"graph {name!r}: latency_us must be >= 0, got {latency_us}")
        for k in kernels:
            if not (k.duration_us >= 0.0 and 0.0 < k.compute_share <= 1.0):  # a launch's checks; also rejects NaN
                raise ValueError(
                    f"graph {name!r}, kernel {k.name!r}: needs duration_us >= 0 and compute_share in (0, 1]"
                )
        return LaunchGraph(stream, name, tuple(kernels), _host_cost(host_us), float(latency_us))

    def copy(
        self,
        stream: Stream,
        nbytes: int,
        direction: Direction,
        host_memory: HostMemory = HostMemory.PINNED,
        name: str = "",
        buffer: Buffer | None = None,
        host_us: float | None = None,
        duration_us: float | None = None,
    ) -> Copy:
        if nbytes < 0:
            raise ValueError(f"copy {name!r}: nbytes must be >= 0, got {nbytes}")
        if buffer is not None and nbytes > buffer.nbytes:
            raise ValueError(
                f"copy {name!r}: {nbytes} bytes do not fit buffer {buffer.name!r} of {buffer.nbytes} bytes"
            )
        # the enum calls only when coercing (a copy is built for every transfer)
        direction = direction if direction.__class__ is Direction else Direction(direction)
        host_memory = host_memory if host_memory.__class__ is HostMemory else HostMemory(host_memory)
        nbytes = nbytes if nbytes.__class__ is int else int(nbytes)
        if duration_us is not None and not duration_us > 0.0:
            raise ValueError(f"copy {name!r}: duration_us must be > 0 (or None: the link model's), got {duration_us}")
        return Copy(stream, nbytes, direction, host_memory, name, buffer, _host_cost(host_us), duration_us)

    def record(self, stream: Stream, host_us: float | None = None) -> Record:
        return Record(stream, _host_cost(host_us))

    def wait_event(self, stream: Stream, event: Event, host_us: float | None = None) -> WaitEvent:
        return WaitEvent(stream, event, _host_cost(host_us))

    def query_event(self, event: Event) -> QueryEvent:
        return QueryEvent(event)

    def sync_event(self, event: Event) -> SyncEvent:
        return SyncEvent(event)

    def sync_stream(self, stream: Stream) -> SyncStream:
        return SyncStream(stream)

    # -- collectives (contract point 15)
    def create_communicator(self, devices: Iterable[int], name: str = "comm") -> CreateCommunicator:
        ranks = tuple(int(d) for d in devices)
        if not ranks or len(set(ranks)) != len(ranks):
            raise ValueError(f"communicator {name!r}: needs distinct devices, got {list(ranks)}")
        for device in ranks:
            self._check_device(device)
        return CreateCommunicator(ranks, name)

    def all_reduce(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        name: str = "all_reduce",
        host_us: float | None = None,
        algorithm: str | None = None,
    ) -> Collective:
        return self._collective(stream, comm, CollectiveOp.ALL_REDUCE, nbytes, name, None, host_us, algorithm)

    def all_gather(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        name: str = "all_gather",
        host_us: float | None = None,
        algorithm: str | None = None,
    ) -> Collective:
        """``nbytes``: the gathered output (every rank's part together), as nccl-tests counts it."""
        return self._collective(stream, comm, CollectiveOp.ALL_GATHER, nbytes, name, None, host_us, algorithm)

    def reduce_scatter(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        name: str = "reduce_scatter",
        host_us: float | None = None,
        algorithm: str | None = None,
    ) -> Collective:
        """``nbytes``: the full input (every rank's part together), as nccl-tests counts it."""
        return self._collective(stream, comm, CollectiveOp.REDUCE_SCATTER, nbytes, name, None, host_us, algorithm)

    def broadcast(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        root: int,
        name: str = "broadcast",
        host_us: float | None = None,
        algorithm: str | None = None,
    ) -> Collective:
        """``root``: the device whose buffer every rank receives."""
        return self._collective(stream, comm, CollectiveOp.BROADCAST, nbytes, name, root, host_us, algorithm)

    def send(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        peer: int,
        name: str = "send",
        host_us: float | None = None,
    ) -> Collective:
        """Send ``nbytes`` to device ``peer``, which issues the matching ``recv``."""
        return self._collective(stream, comm, CollectiveOp.SEND, nbytes, name, peer, host_us)

    def recv(
        self,
        stream: Stream,
        comm: Communicator,
        nbytes: int,
        peer: int,
        name: str = "recv",
        host_us: float | None = None,
    ) -> Collective:
        """Receive ``nbytes`` from device ``peer``, which issues the matching ``send``."""
        return self._collective(stream, comm, CollectiveOp.RECV, nbytes, name, peer, host_us)

    def _collective(
        self,
        stream: Stream,
        comm: Communicator,
        op: CollectiveOp,
        nbytes: int,
        name: str,
        peer: int | None,
        host_us: float | None,
        algorithm: str | None = None,
    ) -> Collective:
        if algorithm is not None and algorithm not in COLLECTIVE_ALGORITHMS:
            raise ValueError(
                f"{op.value} {name!r}: algorithm {algorithm!r} is not one of {', '.join(COLLECTIVE_ALGORITHMS)}"
            )
        if stream.device not in comm.devices:
            raise ValueError(
                f"{op.value} {name!r}: stream {stream.name!r} is on device {stream.device},"
                f" not in communicator {comm.name!r} {list(comm.devices)}"
            )
        if nbytes < 0:
            raise ValueError(f"{op.value} {name!r}: nbytes must be >= 0, got {nbytes}")
        if peer is not None:
            if peer not in comm.devices:
                raise ValueError(
                    f"{op.value} {name!r}: device {peer} is not in communicator {comm.name!r} {list(comm.devices)}"
                )
            if op is not CollectiveOp.BROADCAST and peer == stream.device:
                raise ValueError(f"{op.value} {name!r}: a device cannot {op.value} to itself (device {peer})")
        return Collective(stream, comm, op, int(nbytes), name, peer, _host_cost(host_us), algorithm)
    def run_program(
        self, program: StepProgram, streams: Iterable[Stream], communicators: Iterable[Communicator] = ()
    ) -> RunProgram:
        """Run ``program`` (a :class:`harness.program.StepProgram`) with ``streams[i]`` for its stream ``i`` and
        ``communicators[j]`` for its communicator ``j`` (of the devices ``program.communicators[j]`` names).

        Its collective steps are checked here as the collective builders check theirs (the stream's device in
        the communicator, the peer in it and not the stream's own device), once for the command."""
        streams = tuple(streams)
        communicators = tuple(communicators)
        if len(streams) != program.streams:
            raise ValueError(f"the program indexes {program.streams} streams, {len(streams)} given")
        wanted = program.communicators
        if tuple(c.devices for c in communicators) != wanted:
            raise ValueError(
                f"the program's collectives need communicators of devices {[list(d) for d in wanted]},"
                f" given {[list(c.devices) for c in communicators]}"
            )
        if wanted:
            from harness.program import check_collective_streams

            check_collective_streams(program, streams, communicators)
        return RunProgram(program, streams, communicators)

    # -- host
    def host_work(self, duration_us: float, name: str = "host_work") -> HostWork:
        if not duration_us >= 0.0:
            raise ValueError(f"host work {name!r}: duration_us must be >= 0, got {duration_us}")
        return HostWork(float(duration_us), name)

    def spawn(self, fn: Callable[..., PolicyGen], *args: Any, name: str = "") -> Spawn:
        return Spawn(fn, args, name or getattr(fn, "__name__", "thread"))

    def join(self, thread: Thread) -> Join:
        return Join(thread)

    def make_queue(self, capacity: int, name: str = "queue") -> MakeQueue:
        if capacity < 1:
            raise ValueError(f"queue {name!r}: capacity must be >= 1, got {capacity}")
        return MakeQueue(capacity, name)

    def put(self, queue: Queue, item: Any) -> Put:
        return Put(queue, item)

    def get(self, queue: Queue) -> Get:
        return Get(queue)

    def now(self) -> Now:
        return _NOW

    # -- memory
    def alloc(self, device: int, nbytes: int, name: str = "") -> Alloc:
        self._check_device(device)
        if nbytes <= 0:
            raise ValueError(f"alloc {name!r}: nbytes must be > 0, got {nbytes}")
        return Alloc(device, int(nbytes), name)

    def free(self, buffer: Buffer) -> Free:
        return Free(buffer)

    def _check_device(self, device: int) -> None:
        if not 0 <= device < len(self.devices):
            raise ValueError(f"device {device} does not exist (this run has {len(self.devices)})")


# Names of the op kinds every backend records in the ops table. Record and wait
# ops are both named by event_name(event), so a wait can be matched to its record.
class OpKind(str, enum.Enum):
    KERNEL = "kernel"
    COPY_H2D = "copy_h2d"
    COPY_D2H = "copy_d2h"
    COPY_D2D = "copy_d2d"
    RECORD = "record"
    WAIT = "wait"
    HOST_WORK = "host_work"
    HOST_SYNC = "host_sync"
    COLLECTIVE = "collective"  # one rank's part of a collective or send/recv (harness.runtime: contract point 15)


def event_name(event: Event) -> str:
    """The ops-table name of an event's record op and of every wait on it."""
    return f"event{event.id}"


COPY_KIND = {Direction.H2D: OpKind.COPY_H2D, Direction.D2H: OpKind.COPY_D2H, Direction.D2D: OpKind.COPY_D2D}
