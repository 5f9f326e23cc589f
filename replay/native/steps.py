"""The step arrays the native executor runs: one numpy structured array per host thread.

``STEP_DTYPE`` has exactly the layout of ``struct Step`` in ``src/executor.hpp``,
and ``OUT_DTYPE`` that of ``struct Out``: the arrays cross into C++ as they are.
All times are integer nanoseconds. A step is one runtime call:

* ``gap_ns``: host time before the call (the recorded CPU work); the call is due
  ``gap_ns`` after the previous call was done (its *target*);
* ``call_ns``: the call's own recorded cost, or -1: the call takes what it
  takes. A call that costs less than ``call_ns`` is held back so that it reaches
  the device at the end of its recorded cost and the thread goes on
  ``call_ns`` after it began (:mod:`.twin` says how);
* ``op`` and its operands (:class:`Op`): ``stream``, ``slot`` (a symbolic event,
  a graph, or a thread to join), a kernel's ``kind``, ``grid`` and ``timer_ns``,
  a copy's ``nbytes``, ``direction`` and ``memory``; ``ev_a``/``ev_b`` are the
  timing events of the device op and ``stamp`` the kernel's stamp slot, given
  out by :func:`number_device_slots`.

Symbolic events are resolved when a step runs: a wait on an event no step has
recorded yet is skipped and counted as unresolved; a host sync on one syncs
every stream with work outstanding instead (``harness.program``'s semantics).
Which streams have work outstanding is shared by the threads: kernels, graphs
and copies set their stream's, syncs clear it.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

import numpy as np


class Op(enum.IntEnum):
    HOST = 0  # host work only (the gap)
    KERNEL = 1
    GRAPH = 2  # slot: graph index
    COPY = 3
    RECORD = 4  # slot: symbolic event
    WAIT = 5  # slot: symbolic event
    SYNC_EVENT = 6  # slot: symbolic event
    SYNC_STREAM = 7
    JOIN = 8  # slot: thread index
    SYNC_DEVICE = 9  # sync every stream with work outstanding, in the program's sync order


class Kind(enum.IntEnum):  # harness.runtime.KernelKind, as numbers
    COMPUTE = 0
    MEMORY = 1
    LATENCY = 2


class Dir(enum.IntEnum):  # harness.runtime.Direction
    H2D = 0
    D2H = 1
    D2D = 2


class Mem(enum.IntEnum):  # harness.runtime.HostMemory
    PINNED = 0
    PAGEABLE = 1


STEP_DTYPE = np.dtype(
    [
        ("op", "<i4"),
        ("stream", "<i4"),
        ("slot", "<i4"),
        ("kind", "<i4"),
        ("grid", "<i4"),
        ("ev_a", "<i4"),
        ("ev_b", "<i4"),
        ("stamp", "<i4"),
        ("memory", "<i4"),
        ("direction", "<i4"),
        ("nbytes", "<i8"),
        ("timer_ns", "<i8"),
        ("gap_ns", "<i8"),
        ("call_ns", "<i8"),
    ]
)
assert STEP_DTYPE.itemsize == 72

OUT_DTYPE = np.dtype(
    [
        ("target_ns", "<i8"),  # when the call was due
        ("begin_ns", "<i8"),  # when the thread began it (pacing done): lateness = begin - target
        ("api_ns", "<i8"),  # when the device call was made (begin, or later when held to its recorded cost)
        ("ret_ns", "<i8"),  # when the device call returned (a blocking call: when it stopped waiting)
        ("done_ns", "<i8"),  # when the thread went on: max(ret, begin + call_ns)
        ("gpu_start_ns", "<i8"),  # device op on the host clock; -1: none
        ("gpu_end_ns", "<i8"),
        ("status", "<i4"),  # STATUS_*
        ("aux", "<i4"),  # wait / sync_event: the timing event it waited on; STATUS_ALL_STREAMS: the streams synced
    ]
)
assert OUT_DTYPE.itemsize == 64

STATUS_OK = 0
STATUS_UNRESOLVED = 1  # a wait on an event nothing had recorded yet: skipped
STATUS_ALL_STREAMS = 2  # a sync of every stream with work (SYNC_DEVICE, or a SYNC_EVENT nothing had recorded):
# aux has bit k set for each stream k < 31 it synced (in sync order)

NO_EVENT = -1


def empty_steps(n: int) -> np.ndarray:
    steps = np.zeros(n, STEP_DTYPE)
    steps["ev_a"] = steps["ev_b"] = steps["stamp"] = NO_EVENT
    steps["call_ns"] = -1
    return steps


def needs_events(op: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(needs ev_a, needs ev_b) per step: timing events of copies, graphs and waits; a record's own event."""
    a = np.isin(op, (Op.COPY, Op.GRAPH, Op.WAIT, Op.RECORD))
    b = np.isin(op, (Op.COPY, Op.GRAPH, Op.WAIT))
    return a, b


def buffer_bytes(threads: list[np.ndarray]) -> tuple[int, int]:
    """(host, device) bytes the executor's copy buffers need: the largest host-link copy, the largest copy. Worked out
    once, when the program is made, not on each run: on the run's path it cost ~40 µs of a program's first gap."""
    host_bytes = device_bytes = 0
    for steps in threads:
        copies = steps[steps["op"] == int(Op.COPY)]
        if len(copies):
            device_bytes = max(device_bytes, int(copies["nbytes"].max()))
            link = copies[copies["direction"] != int(Dir.D2D)]
            if len(link):
                host_bytes = max(host_bytes, int(link["nbytes"].max()))
    return host_bytes, device_bytes


def number_device_slots(threads: list[np.ndarray]) -> tuple[int, int]:
    """Give every step its timing events and stamp slot (in place); (events, stamps) the run needs."""
    events = stamps = 0
    for steps in threads:
        a, b = needs_events(steps["op"])
        n_a, n_b = int(a.sum()), int(b.sum())
        steps["ev_a"] = NO_EVENT
        steps["ev_b"] = NO_EVENT
        steps["ev_a"][a] = np.arange(events, events + n_a)
        events += n_a
        steps["ev_b"][b] = np.arange(events, events + n_b)
        events += n_b
        k = steps["op"] == Op.KERNEL
        steps["stamp"] = NO_EVENT
        steps["stamp"][k] = np.arange(stamps, stamps + int(k.sum()))
        stamps += int(k.sum())
    return events, stamps


@dataclass
class GraphDef:
    """A graph's kernels: (kind, grid, timer_ns) each; captured once, launched by GRAPH steps.

    ``target_ns``: what one launch should take on the GPU (its kernels' durations and the gaps between them);
    the CUDA executor tunes the captured graph to it (0: as captured). ``alone``: its launches find their stream
    idle (the program synced it since its last work), so a launch is timed alone when tuned, else back to back.
    """

    kinds: list[int]
    grids: list[int]
    timer_ns: list[int]
    target_ns: int = 0
    alone: bool = False


@dataclass
class NativeProgram:
    """What the executor runs: per-thread steps, the number of streams and symbolic events, graphs."""

    threads: list[np.ndarray]
    streams: int
    events: int  # symbolic event slots
    graphs: list[GraphDef] = field(default_factory=list)
    sync_order: list[int] | None = None  # SYNC_DEVICE's stream order; None: by index

    def __post_init__(self) -> None:
        if self.sync_order is None:
            self.sync_order = list(range(self.streams))
        if sorted(self.sync_order) != list(range(self.streams)):
            raise ValueError(f"sync_order {self.sync_order} is not an order of the {self.streams} streams")
        for i, steps in enumerate(self.threads):
            if steps.dtype != STEP_DTYPE:
                raise TypeError(f"thread {i}: steps must have STEP_DTYPE, got {steps.dtype}")
        self.timing_events, self.stamps = number_device_slots(self.threads)
        self.host_bytes, self.device_bytes = buffer_bytes(self.threads)
        self.check()

    def check(self) -> None:
        """Refuse operands out of range, naming the thread, step and field."""
        limits = {
            Op.RECORD: self.events,
            Op.WAIT: self.events,
            Op.SYNC_EVENT: self.events,
            Op.GRAPH: len(self.graphs),
            Op.JOIN: len(self.threads),
        }
        for t, steps in enumerate(self.threads):
            ops = steps["op"]
            bad = ~np.isin(ops, [int(o) for o in Op])
            if bad.any():
                i = int(np.argmax(bad))
                raise ValueError(f"thread {t}, step {i}: op {int(ops[i])} is not an Op")
            streamed = ~np.isin(ops, (Op.SYNC_EVENT, Op.JOIN, Op.HOST, Op.SYNC_DEVICE))
            out = streamed & ((steps["stream"] < 0) | (steps["stream"] >= self.streams))
            if out.any():
                i = int(np.argmax(out))
                raise ValueError(f"thread {t}, step {i}: stream {int(steps['stream'][i])} of {self.streams}")
            for op, limit in limits.items():
                mine = ops == op
                out = mine & ((steps["slot"] < 0) | (steps["slot"] >= limit))
                if out.any():
                    i = int(np.argmax(out))
                    raise ValueError(f"thread {t}, step {i}: slot {int(steps['slot'][i])} of {limit} ({op.name})")
            if (ops == Op.JOIN).any() and (steps["slot"][ops == Op.JOIN] == t).any():
                raise ValueError(f"thread {t}: joins itself")
            for name in ("gap_ns", "timer_ns", "nbytes"):
                if (steps[name] < 0).any():
                    i = int(np.argmax(steps[name] < 0))
                    raise ValueError(f"thread {t}, step {i}: {name} {int(steps[name][i])} < 0")
