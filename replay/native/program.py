"""A program command (``harness.program.RunProgram``) as the native executor's steps, and its results as op rows.

:func:`to_native` turns the command's step program into a :class:`~replay.native.steps.NativeProgram`:

* launches become stand-in kernels: a duration below the GPU's floor runs at
  the floor (:mod:`replay.floor`, counted), the timer is the duration less
  what a stand-in of that kind costs beyond its timer (``Calibration``), the
  grid as :mod:`replay.timed` sizes it; a graph launch's kernels are captured
  once as a CUDA graph (``graph_index``), those below the floor *inside a
  graph* (``Calibration.graph_floor_us``, far lower) lifted to it; a
  zero-duration launch issues no work (as on the interpreted replay): it
  becomes a record of its stream, its row a zero-length kernel row;
* symbolic events become dense slots; the first thread joins the others after
  its last step, as ``harness.program.expand`` does;
* ``gap_us``/``host_us`` become ``gap_ns``/``call_ns`` (NaN: -1, the call costs
  what it costs).

:func:`op_rows` turns what the executor returned into the op rows that
``expand``'s commands make on the interpreted replay: host work for each gap,
a device row per kernel, graph, copy, record and wait, a host-sync row per
sync (and per pageable copy), with the same kinds and names; a device sync
makes one row per stream it synced, the first from when it began, the others
zero-length when it returned (only the first of them waited).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from harness.backend import HOST_DEVICE
from harness.oplog import OpRow
from harness.program import (
    OP_COPY,
    OP_GRAPH,
    OP_HOST,
    OP_LAUNCH,
    OP_RECORD,
    OP_SYNC_DEVICE,
    OP_SYNC_EVENT,
    OP_SYNC_STREAM,
    OP_WAIT,
    StepProgram,
)
from replay.floor import FloorLifts
from replay.native.steps import (
    STATUS_ALL_STREAMS,
    STATUS_UNRESOLVED,
    Dir,
    GraphDef,
    Kind,
    NativeProgram,
    Op,
    empty_steps,
)

_OPS = {
    OP_HOST: Op.HOST,
    OP_LAUNCH: Op.KERNEL,
    OP_COPY: Op.COPY,
    OP_RECORD: Op.RECORD,
    OP_WAIT: Op.WAIT,
    OP_SYNC_STREAM: Op.SYNC_STREAM,
    OP_SYNC_EVENT: Op.SYNC_EVENT,
    OP_SYNC_DEVICE: Op.SYNC_DEVICE,
    OP_GRAPH: Op.GRAPH,
}
_OP_TABLE = np.full(256, -1, np.int32)
for _theirs, _ours in _OPS.items():
    _OP_TABLE[_theirs] = int(_ours)
_COPY_KINDS = ("copy_h2d", "copy_d2h", "copy_d2d")  # by Dir
_MEMORY = ("pinned", "pageable")


@dataclass(frozen=True)
class Calibration:
    """What the GPU measured of the stand-ins: SMs, the floor, each kind's cost beyond its timer (µs)."""

    sms: int
    floor_us: float
    overhead_us: tuple[float, float, float]  # by Kind: compute, memory, latency
    graph_floor_us: float | None = None  # a stand-in's floor inside a CUDA graph (None: ``floor_us``)

    @property
    def in_graph_floor_us(self) -> float:
        """The floor graph kernels are lifted to: inside a graph stand-ins run back to back far shorter than on a
        stream (~1 µs against ~3 µs), so lifting them to the stream's floor would add ~2 µs to every one."""
        return self.floor_us if self.graph_floor_us is None else self.graph_floor_us

    def grid(self, kind: int, share: float) -> int:
        if kind == Kind.COMPUTE:
            return max(1, round(2 * self.sms * share))
        if kind == Kind.MEMORY:
            return 4 * self.sms
        return 1

    def timer_ns(self, kind: int, duration_us: float) -> int:
        return max(0, int(round((duration_us - self.overhead_us[kind]) * 1e3)))


@dataclass
class Converted:
    """A step program as native steps, with what the rows need back."""

    native: NativeProgram
    lifted: int  # kernels lifted to the floor per run, graph kernels once per launch
    lift_us: float


def launched_idle(op: np.ndarray, stream: np.ndarray) -> np.ndarray:
    """Per step of one thread (native ops): whether its stream has no work outstanding from this thread when the
    step runs, as far as the thread knows: a kernel, graph or copy makes its stream busy; a sync of that stream
    or a device sync idles it (an event sync does not: which stream's work it waited for is not followed). A graph launched on an idle stream
    pays the GPU's own lead-in and tail in full (its launch is timed alone when tuned, :class:`GraphDef`, to the
    launch's latency and its kernels: :func:`to_native`)."""
    idle = np.ones(len(op), bool)
    busy: set[int] = set()
    for i, (o, s) in enumerate(zip(op.tolist(), stream.tolist())):
        idle[i] = s not in busy
        if o in (Op.KERNEL, Op.GRAPH, Op.COPY):
            busy.add(s)
        elif o == Op.SYNC_STREAM:
            busy.discard(s)
        elif o == Op.SYNC_DEVICE:
            busy.clear()
    return idle


def to_native(
    program: StepProgram,
    cal: Calibration,
    graph_index: Callable[[GraphDef], int] | None = None,
    graph_gap_us: float = 0.0,
) -> Converted:
    """The native steps of ``program`` (``graph_index``: a graph's executor index, None: its place in the list).

    A graph is to take its kernels' (lifted) durations plus ``graph_gap_us`` between consecutive ones (the
    profile's ``graph_kernel_gap_us``), as the interpreted replay tunes its captured graphs. A graph launched onto
    an idle stream (tuned alone, from its launch's return to its stream going idle: the GPU's own lead-in
    included) is to take its launch's latency too (the step's ``duration_us``, runtime contract point 16), which
    the simulator waits out there; one queued behind work hides its latency on the GPU as in the simulator.
    """
    floor, graph_floor = cal.floor_us, cal.in_graph_floor_us
    events = np.unique(
        np.concatenate(
            [t.steps["event"][np.isin(t.steps["op"], (OP_RECORD, OP_WAIT, OP_SYNC_EVENT))] for t in program.threads]
        )
    )
    marker = len(events)  # the symbolic event slot zero-duration launches record (nothing waits on it)
    has_markers = False
    graphs: list[GraphDef] = []
    graph_slots: dict[tuple[int, int], int] = {}
    graph_lifts: dict[int, tuple[int, float]] = {}
    lifted, lift_us = 0, 0.0
    threads = []
    for index, thread in enumerate(program.threads):
        theirs = thread.steps
        n = len(theirs)
        extra = len(program.threads) - 1 if index == 0 else 0
        steps = empty_steps(n + extra)
        ours = steps[:n]
        op = _OP_TABLE[theirs["op"]]
        ours["op"] = op
        ours["stream"] = theirs["stream"]
        ours["gap_ns"] = np.rint(theirs["gap_us"] * 1e3).astype(np.int64)
        host = theirs["host_us"]
        ours["call_ns"] = np.where(np.isnan(host), -1, np.rint(np.nan_to_num(host) * 1e3)).astype(np.int64)
        evented = np.isin(op, (Op.RECORD, Op.WAIT, Op.SYNC_EVENT))
        ours["slot"][evented] = np.searchsorted(events, theirs["event"][evented])
        copy = op == Op.COPY
        ours["direction"][copy] = theirs["kind"][copy]
        ours["memory"][copy] = theirs["pageable"][copy]
        ours["nbytes"][copy] = theirs["nbytes"][copy]
        # a zero-duration launch issues no work, as on the interpreted replay: a record of its stream marks it
        empty = np.flatnonzero((op == Op.KERNEL) & (theirs["duration_us"] <= 0.0))
        if len(empty):
            ours["op"][empty] = Op.RECORD
            ours["slot"][empty] = marker
            op = ours["op"]
            has_markers = True
        launch = np.flatnonzero(op == Op.KERNEL)
        if len(launch):
            duration = theirs["duration_us"][launch]
            below = (duration > 0) & (duration < floor)
            lifted += int(below.sum())
            lift_us += float((floor - duration[below]).sum())
            duration = np.where(below, floor, duration)
            kinds = theirs["kind"][launch].astype(np.int32)
            ours["kind"][launch] = kinds
            overhead = np.asarray(cal.overhead_us)[kinds]
            ours["timer_ns"][launch] = np.maximum(0, np.rint((duration - overhead) * 1e3)).astype(np.int64)
            shares = theirs["share"][launch]
            ours["grid"][launch] = [cal.grid(k, s) for k, s in zip(kinds.tolist(), shares.tolist())]
        graph_steps = np.flatnonzero(op == Op.GRAPH)
        idle = launched_idle(op, ours["stream"]) if len(graph_steps) else None
        for i in graph_steps.tolist():
            alone = bool(idle[i])
            latency_us = float(theirs["duration_us"][i]) if alone else 0.0  # in an alone launch's target only
            key = (int(theirs["graph_first"][i]), int(theirs["graph_count"][i]), alone, latency_us)
            slot = graph_slots.get(key)
            if slot is None:
                kernels = program.graph_kernels[key[0] : key[0] + key[1]]
                durations = kernels["duration_us"]
                below = (durations > 0) & (durations < graph_floor)
                graph_lifts_key = (int(below.sum()), float((graph_floor - durations[below]).sum()))
                runs = durations > 0  # a zero-duration kernel issues no work (as on the interpreted replay)
                durations = np.where(below, graph_floor, durations)[runs]
                kinds = kernels["kind"][runs].astype(int).tolist()
                graph = GraphDef(
                    kinds,
                    [cal.grid(k, s) for k, s in zip(kinds, kernels["share"][runs].tolist())],
                    [cal.timer_ns(k, d) for k, d in zip(kinds, durations.tolist())],
                    int(round((latency_us + float(durations.sum()) + max(0, len(kinds) - 1) * graph_gap_us) * 1e3)),
                    alone=alone,
                )
                slot = graph_index(graph) if graph_index is not None else len(graphs)
                graphs.append(graph)
                graph_slots[key] = slot
                graph_lifts[slot] = graph_lifts_key
            ours["slot"][i] = slot
            lifted += graph_lifts[slot][0]
            lift_us += graph_lifts[slot][1]
        if extra:
            steps["op"][n:] = Op.JOIN
            steps["slot"][n:] = np.arange(1, len(program.threads))
        threads.append(steps)
    if graph_index is not None:  # the executor's indices: the list only has to be long enough
        graphs = graphs + [GraphDef([], [], [])] * (max(graph_slots.values(), default=-1) + 1 - len(graphs))
    symbolic = max(1, len(events) + has_markers)
    native = NativeProgram(threads, program.streams, symbolic, graphs, list(program.sync_order))
    return Converted(native, lifted, lift_us)


def op_rows(
    program: StepProgram,
    converted: Converted,
    outs: list[np.ndarray],
    thread_names: list[str],
    streams: list[tuple[int, str]],
    to_us: Callable[[np.ndarray], np.ndarray],
    new_id: Callable[[], int],
) -> tuple[list[OpRow], list[OpRow], int]:
    """(host rows, device rows, unresolved waits) of a native run, on the replay's clock (``to_us`` of ns).

    ``streams``: (device, name) per program stream; ids come from ``new_id`` in issue order.
    """
    keyed: list[tuple[tuple[float, int, int, int], OpRow]] = []  # ((issue, thread, step, sub), row without id)
    unresolved = 0
    names = program.names
    record_names: dict[int, str] = {}
    for t, (thread, steps, out) in enumerate(zip(program.threads, converted.native.threads, outs)):
        tname = thread_names[t]
        theirs = thread.steps
        n = len(theirs)
        target, begin = to_us(out["target_ns"][:n]), to_us(out["begin_ns"][:n])
        # host work runs from the previous step's done (its gap may be shortened: twin.py rule 5, catch up)
        prev_done = to_us(np.concatenate([out["target_ns"][:1] - steps["gap_ns"][:1], out["done_ns"][: n - 1]]))
        api, ret = to_us(out["api_ns"][:n]), to_us(out["ret_ns"][:n])
        g0, g1 = out["gpu_start_ns"][:n], out["gpu_end_ns"][:n]
        their_op = theirs["op"]
        gs, ge = to_us(g0), to_us(g1)
        for i, (op, status, aux, gap_us, gap_name, name, stream, nbytes, direction, pageable, ev_a) in enumerate(
            zip(
                steps["op"][:n].tolist(),
                out["status"][:n].tolist(),
                out["aux"][:n].tolist(),
                theirs["gap_us"].tolist(),
                theirs["gap_name"].tolist(),
                theirs["name"].tolist(),
                steps["stream"][:n].tolist(),
                steps["nbytes"][:n].tolist(),
                steps["direction"][:n].tolist(),
                steps["memory"][:n].tolist(),
                steps["ev_a"][:n].tolist(),
            )  # fmt: skip
        ):
            issue, api_us, ret_us = float(begin[i]), float(api[i]), float(ret[i])
            label = names[name] if name >= 0 else ""
            if gap_us > 0.0:
                start = float(prev_done[i])
                keyed.append(((start, t, i, 0), _host_row("host_work", names[gap_name], tname, start, issue)))
            device: tuple[str, str, int, str] | None = None  # kind, name, bytes, host memory
            syncs: list[tuple[str, float, float]] = []  # name, start, end
            if status == STATUS_UNRESOLVED:
                unresolved += 1
            elif status == STATUS_ALL_STREAMS:
                for k in program.sync_order:
                    if k < 31 and aux >> k & 1:
                        syncs.append((f"sync:{streams[k][1]}", ret_us if syncs else api_us, ret_us))
            elif op == Op.KERNEL or op == Op.GRAPH:
                device = ("kernel", label, 0, "")
            elif op == Op.COPY:
                link = direction != Dir.D2D
                device = (_COPY_KINDS[direction], label, nbytes, _MEMORY[pageable] if link else "")
                if link and pageable:
                    syncs.append((f"pageable:{label}", api_us, ret_us))
            elif op == Op.RECORD and their_op[i] == OP_LAUNCH:  # a zero-duration launch: a zero-length kernel
                device = ("kernel", label, 0, "")
            elif op == Op.RECORD:
                record_names[ev_a] = f"event{new_id()}"
                device = ("record", record_names[ev_a], 0, "")
            elif op == Op.WAIT:
                device = ("wait", record_names[aux], 0, "")
            elif op == Op.SYNC_EVENT:
                syncs.append(("sync_event", api_us, ret_us))
            elif op == Op.SYNC_STREAM:
                syncs.append((f"sync:{streams[stream][1]}", api_us, ret_us))
            if device is not None:
                device_index, stream_name = streams[stream]
                kind, row_name, nb, memory = device
                s0 = float(gs[i])
                row = OpRow(
                    0, device_index, stream_name, kind, row_name, nb, memory, tname, issue, s0, max(float(ge[i]), s0)
                )
                keyed.append(((issue, t, i, 1), row))
            for sub, (row_name, s0, s1) in enumerate(syncs, start=2):
                keyed.append(((issue, t, i, sub), _host_row("host_sync", row_name, tname, s0, s1)))
    keyed.sort(key=lambda k: k[0])
    host_rows, device_rows = [], []
    for _, row in keyed:
        row = row._replace(op_id=new_id())
        (host_rows if row.device == HOST_DEVICE else device_rows).append(row)
    return host_rows, device_rows, unresolved


def _host_row(kind: str, name: str, thread: str, start: float, end: float) -> OpRow:
    return OpRow(0, HOST_DEVICE, thread, kind, name, 0, "", thread, start, start, end)


def lifts_into(lifts: FloorLifts, converted: Converted) -> None:
    """Count a run of ``converted`` in the run's floor lifts."""
    lifts.add(converted.lifted, converted.lift_us)
