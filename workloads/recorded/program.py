"""A recorded program: each host thread's runtime calls, in order, with the GPU ops each one launched.

Built from an op trace that ``harness trace import`` wrote from a torch.profiler
recording (format version 2: host calls of device -1 with their ``host_gap_us``,
GPU ops linked to their call by ``correlation``). What a call becomes when the
program is re-issued through the runtime (:mod:`.policies`):

* ``call_launch`` / ``call_memset``: its kernel(s) / memset, each a kernel of the
  recorded GPU duration on the recorded stream; ``call_graph_launch``: one graph
  launch of all the kernels that share its correlation;
* ``call_memcpy``: its copies; host-link copies move their recorded bytes
  through the profile's link model (pinned or pageable as recorded), a
  device-to-device copy is a memory-bound kernel of its recorded duration; a
  synchronous ``cudaMemcpy`` (no ``Async``) also waits for its stream;
* ``call_record`` / ``call_wait`` / ``call_sync_event``: events, when the
  recording has CUDA sync events (the record's stream and the event each wait
  names); without them, waits are **inferred** (:func:`infer_waits`);
* ``call_sync_stream`` / ``call_sync_device``: the host waits for the stream (for
  every stream with work outstanding, when the recording does not name it);
* every other call (allocation, free, queries): host time of its recorded duration.

A thread's own CPU work between calls (``host_gap_us``) is host work before the
next call; each call also keeps the profiler events that CPU time held (the aten
ops and record_function ranges of its gap, and the runtime calls folded into it),
which :mod:`.compensation` turns into the profiler overhead to take out. Syncs
before the program's first GPU work (waits for work from before the recording
window) are dropped, and the program starts where they ended.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.gc_pause import collector_paused

StreamKey = tuple[int, str]  # (device, recorded stream id)

SYNC_CALLS = ("call_sync_stream", "call_sync_device", "call_sync_event")
MODELLED_CALLS = (
    "call_launch",
    "call_memset",
    "call_memcpy",
    "call_graph_launch",
    "call_record",
    "call_wait",
    *SYNC_CALLS,
)
_MODELLED = frozenset(MODELLED_CALLS)
INFER_TOLERANCE_US = 20.0  # a GPU op that started this much later than its launch and stream allowed was held


@dataclass(frozen=True, slots=True)
class DeviceOp:
    """A GPU op as recorded: kernel, memset, copy_h2d, copy_d2h or copy_d2d."""

    kind: str
    stream: StreamKey
    name: str
    duration_us: float
    nbytes: int
    host_memory: str


@dataclass(frozen=True, slots=True, eq=False)  # compared and hashed by identity: policies cache per call
class Call:
    """One runtime call of a host thread, with what it launched and what it orders."""

    kind: str  # a CALL_KINDS value of harness.trace
    name: str
    host_before_us: float  # the thread's CPU time before the call (its gap, plus calls not modelled)
    duration_us: float  # the call's recorded duration
    stream: StreamKey | None  # the stream it addresses, where recorded
    ops: tuple[DeviceOp, ...]
    group: str  # the step / record_function range it belongs to ("" when none)
    event: int | None = None  # call_record: the event it records (its correlation)
    waits_for: int | None = None  # call_wait / call_sync_event: the event waited on, where recorded
    synchronous: bool = False  # a cudaMemcpy without Async: the host waits for the copy
    wait_before: tuple[tuple[StreamKey, int], ...] = ()  # inferred: (stream, event) waits before the ops
    record_after: tuple[tuple[StreamKey, int], ...] = ()  # inferred: (stream, event) records after the ops
    synthetic: bool = False  # added by a what-if (whatif.py): it costs what the profile says, not a recorded duration
    # Profiler events recorded in host_before_us (format-3 traces; 0 otherwise): aten ops and record_function
    # ranges that began in it, and runtime calls not modelled (allocation, queries, ...) folded into it.
    gap_aten_ops: int = 0
    gap_ranges: int = 0
    gap_calls: int = 0


@dataclass(frozen=True, slots=True)
class ThreadProgram:
    name: str
    calls: tuple[Call, ...]


@dataclass(frozen=True, slots=True)
class RecordedProgram:
    threads: tuple[ThreadProgram, ...]  # the first is the main thread (the earliest caller)
    streams: tuple[StreamKey, ...]  # every stream the program uses, by device then id
    devices: int
    start_us: float  # the program's start in the trace's clock: the end of the syncs before its first GPU work
    recorded_span_us: float  # program start to the last GPU op's or call's end
    recorded_group_us: tuple[tuple[str, float], ...]  # per group: its GPU ops' first start to last end, as recorded
    sync_events: bool  # the recording names each wait's record (CUDA sync events with record correlations)
    inferred_waits: int  # cross-stream waits inferred from start times (no sync events)
    unlinked_ops: int  # GPU ops with no launching call in the trace (left out)
    source: str
    profiler_mode: str = ""  # the recording's torch.profiler mode (the trace's provenance; "" when unknown)
    gap_counts: bool = False  # the trace says which profiler events each call's gap holds (format 3)


_OP_COLUMNS = ("correlation", "kind", "device", "stream", "name", "duration_us", "bytes", "host_memory")
_CALL_COLUMNS = ("start_us", "host_gap_us", "duration_us", "correlation", "stream", "wait_correlation")
_CALL_COLUMNS += ("kind", "name", "group", "gap_aten_ops", "gap_ranges")


def _rows(frame: pd.DataFrame, columns: tuple[str, ...]):
    """The frame's rows as tuples of Python values (what ``itertuples`` gives, without a namedtuple per row)."""
    return zip(*(frame[column].tolist() for column in columns))


def _device_op(kind, device, stream, name, duration_us, nbytes, host_memory) -> DeviceOp:
    memory = host_memory if isinstance(host_memory, str) and host_memory else "pinned"
    return DeviceOp(kind, (int(device), str(stream)), str(name), float(duration_us), int(nbytes), memory)


_GEMM = re.compile(r"gemm|matmul|cutlass|xmma|mma_|cublas|sm\d\d_", re.IGNORECASE)


def is_gemm(name: str) -> bool:
    """Whether a recorded kernel is a matrix product (the replay then stands it in with matrix work)."""
    return _GEMM.search(name) is not None


@collector_paused()  # a program of a long recording is millions of objects kept to the end
def build_program(ops: pd.DataFrame, source: str, profiler_mode: str = "") -> RecordedProgram:
    """The recorded program of an imported trace (see the module docstring)."""
    missing = [c for c in ("gap_aten_ops", "gap_ranges") if c not in ops.columns]  # frames of older traces
    ops = ops.assign(**dict.fromkeys(missing)) if missing else ops
    is_call = ops["kind"].str.startswith("call_").to_numpy(dtype=bool)  # before the strings become objects
    text = [c for c in ops.columns if pd.api.types.is_string_dtype(ops[c].dtype)]
    ops = ops.astype(dict.fromkeys(text, object))  # row iteration over Arrow-backed strings is ~6x slower
    calls = ops[is_call].sort_values(["thread", "start_us"], kind="stable")
    gpu = ops[(ops["device"].to_numpy() >= 0) & ~is_call]
    linked = gpu[gpu["correlation"].isin(calls["correlation"])]
    by_corr: dict[int, list[DeviceOp]] = {}
    for correlation, *op in _rows(linked.sort_values(["correlation", "start_us"], kind="stable"), _OP_COLUMNS):
        by_corr.setdefault(int(correlation), []).append(_device_op(*op))
    # Only a wait that names its record's correlation orders streams by itself; torch 2.11's sync events
    # name the waiting stream and an event id but not the record (-1), so the ordering is inferred then.
    sync_events = bool(calls["wait_correlation"].notna().any())

    first_gpu_call = calls[calls["correlation"].isin(by_corr)]["start_us"].min()
    leading = calls[calls["kind"].isin(SYNC_CALLS) & (calls["start_us"] < first_gpu_call)]
    start_us = float((leading["start_us"] + leading["duration_us"]).max()) if len(leading) else 0.0
    calls = calls.drop(leading.index)

    waits, records, inferred = infer_waits(gpu, calls) if not sync_events else ({}, {}, 0)
    threads = []
    for thread, rows in calls.groupby("thread", sort=False):
        threads.append(ThreadProgram(str(thread), _thread_calls(rows, by_corr, start_us, waits, records)))
    threads.sort(key=lambda t: float(calls[calls["thread"] == t.name]["start_us"].min()))

    ends = [float((calls["start_us"] + calls["duration_us"]).max())]
    if len(linked):
        ends.append(float((linked["start_us"] + linked["duration_us"]).max()))
    streams = tuple(
        sorted({op.stream for group in by_corr.values() for op in group}, key=lambda s: (s[0], _natural(s[1])))
    )
    return RecordedProgram(
        threads=tuple(threads),
        streams=streams,
        devices=max((s[0] for s in streams), default=0) + 1,
        start_us=start_us,
        recorded_span_us=max(ends) - start_us,
        recorded_group_us=_group_spans(calls, linked),
        sync_events=sync_events,
        inferred_waits=inferred,
        unlinked_ops=len(gpu) - len(linked),
        source=source,
        profiler_mode=profiler_mode,
        gap_counts=bool(len(calls)) and bool(calls["gap_aten_ops"].notna().all()),
    )


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


def _missing(value: object) -> bool:
    """``pd.isna`` of one cell, without its per-call cost (it is called for every row of a recording)."""
    return value is None or value is pd.NA or value != value


def _thread_calls(rows: pd.DataFrame, by_corr, start_us: float, waits, records) -> tuple[Call, ...]:
    out: list[Call] = []
    pending_us = 0.0
    pending_aten = pending_ranges = pending_calls = 0
    previous_end = start_us
    for start, host_gap_us, duration, correlation, stream_id, wait, kind, name, group, aten, ranges in _rows(
        rows, _CALL_COLUMNS
    ):
        gap = float(start) - previous_end if not out and pending_us == 0.0 else float(host_gap_us or 0.0)
        previous_end = float(start) + float(duration)
        pending_us += max(0.0, gap)
        pending_aten += 0 if _missing(aten) else int(aten)
        pending_ranges += 0 if _missing(ranges) else int(ranges)
        corr = None if _missing(correlation) else int(correlation)
        ops = tuple(by_corr.get(corr, ())) if corr is not None else ()
        stream = (0, str(stream_id)) if isinstance(stream_id, str) and stream_id else None
        if ops:
            stream = ops[0].stream
        # A record or wait whose stream or event the recording does not name cannot be re-issued:
        # its host time stays, and the ordering it made is inferred (infer_waits).
        unnamed = (kind == "call_record" and stream is None) or (
            kind == "call_wait" and (stream is None or _missing(wait))
        )
        if kind not in _MODELLED or unnamed:
            pending_us += float(duration)  # allocation, free, queries: host time
            pending_calls += 1
            continue
        out.append(
            Call(
                kind=kind,
                name=str(name),
                host_before_us=pending_us,
                duration_us=float(duration),
                stream=stream,
                ops=ops,
                group=group if isinstance(group, str) else "",
                event=corr if kind == "call_record" else None,
                waits_for=None if _missing(wait) else int(wait),
                synchronous=kind == "call_memcpy" and "Async" not in str(name),
                wait_before=tuple(waits.get(corr, ())),
                record_after=tuple(records.get(corr, ())),
                gap_aten_ops=pending_aten,
                gap_ranges=pending_ranges,
                gap_calls=pending_calls,
            )
        )
        pending_us = 0.0
        pending_aten = pending_ranges = pending_calls = 0
    return tuple(out)


def infer_waits(gpu: pd.DataFrame, calls: pd.DataFrame) -> tuple[dict, dict, int]:
    """Cross-stream waits a recording without CUDA sync events implies, from its start times.

    A GPU op that started more than ``INFER_TOLERANCE_US`` after both its launch
    call ended and its stream's previous op ended was held by something; if an op
    on another stream of its device ended just before it started (the latest
    such end, not before what the launch and the stream allowed), the program is
    taken to have ordered them: an event recorded after that op, waited on
    before this one. Conservative: only orderings the recording shows.
    Returns ``({consumer call correlation: [(stream, event)]}, {producer call
    correlation: [(stream, event)]}, count)``; inferred events have ids < 0.
    """
    call_end = (calls["start_us"] + calls["duration_us"]).groupby(calls["correlation"]).max()
    ops = gpu.assign(end_us=gpu["start_us"] + gpu["duration_us"]).sort_values("start_us", kind="stable")
    ops = ops[ops["correlation"].isin(call_end.index)]
    ops = ops.assign(launched_us=call_end.reindex(ops["correlation"]).to_numpy(), stream=ops["stream"].astype(str))
    waits: dict[int, list] = {}
    records: dict[int, list] = {}
    inferred = 0
    for device, dev_ops in ops.groupby("device"):
        by_end = dev_ops.sort_values("end_us", kind="stable")
        ends, end_streams, end_corrs = (by_end[c].to_numpy() for c in ("end_us", "stream", "correlation"))
        previous_end: dict[str, float] = {}
        columns = (dev_ops[c].to_numpy() for c in ("stream", "start_us", "end_us", "launched_us", "correlation"))
        for stream, start, end, launched, corr in zip(*columns):
            allowed = max(previous_end.get(stream, -np.inf), launched)
            previous_end[stream] = max(previous_end.get(stream, -np.inf), end)
            if start <= allowed + INFER_TOLERANCE_US:
                continue
            i = int(np.searchsorted(ends, start + 1.0, side="right")) - 1  # the latest end by start + 1 µs ...
            while i >= 0 and ends[i] >= allowed and end_streams[i] == stream:  # ... on another stream
                i -= 1
            if i < 0 or ends[i] < allowed:
                continue
            inferred += 1
            records.setdefault(int(end_corrs[i]), []).append(((int(device), str(end_streams[i])), -inferred))
            waits.setdefault(int(corr), []).append(((int(device), str(stream)), -inferred))
    return waits, records, inferred


def _group_spans(calls: pd.DataFrame, linked: pd.DataFrame) -> tuple[tuple[str, float], ...]:
    """Per group, in order of its first call: its GPU ops' span, first start to last end."""
    order = calls.dropna(subset=["group"]).groupby("group", sort=False)["start_us"].min().sort_values().index
    ops = linked.dropna(subset=["group"])
    starts = ops.groupby("group")["start_us"].min()
    ends = (ops["start_us"] + ops["duration_us"]).groupby(ops["group"]).max()
    return tuple((str(g), float(ends[g] - starts[g])) for g in order if g in starts.index)
