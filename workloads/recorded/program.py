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
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from harness.gc_pause import collector_paused
from harness.id_membership import isin_ids
from harness.memory_release import release_freed_memory

if TYPE_CHECKING:
    from workloads.recorded.calltable import CallTable

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
TEXT_CODE = "{}#code"  # build_program's frame: beside each text column, its codes (one per distinct string)
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


class ThreadProgram:
    """One host thread's calls: given as ``Call`` objects, or as columns (:class:`~.calltable.CallTable`, what
    ``build_program`` makes) whose ``Call`` objects are made the first time ``calls`` is read."""

    __slots__ = ("name", "_calls", "table")

    def __init__(self, name: str, calls: tuple[Call, ...] | None = None, table: CallTable | None = None) -> None:
        if calls is None and table is None:
            raise ValueError(f"thread {name!r}: give its calls or its call table")
        self.name = name
        self._calls = calls
        self.table = table

    @property
    def calls(self) -> tuple[Call, ...]:
        if self._calls is None:
            self._calls = self.table.calls()
        return self._calls

    @property
    def call_count(self) -> int:
        return len(self._calls) if self._calls is not None else len(self.table)

    def __repr__(self) -> str:
        return f"ThreadProgram({self.name!r}, {self.call_count} calls)"


@dataclass(frozen=True, slots=True)
class GraphTiming:
    """The GPU's time around a CUDA graph's kernels, as the recording shows it (medians over its graph launches).

    A graph's kernels start ``lead_in_us`` after its ``cudaGraphLaunch`` returns, run
    ``kernel_gap_us`` apart on average (the median over graphs of each graph's mean gap: the
    gaps' sum is what the GPU spends, and a big model's graph has a few 7 µs gaps among its
    0.4 µs ones), and the next op queued behind the graph on its stream starts ``tail_us`` after
    the graph's last kernel ends (measured only where that op was launched before the graph
    ended, so that it waited for it). Where most graphs were queued behind earlier work (graphs
    issued back to back), a graph's start after the work ahead is the tail and the lead-in
    together, so the lead-in is what that start kept beyond the tail (often 0). Both are kept
    apart too: ``idle_lead_us``, the median lead-in of the launches onto an idle stream, and
    ``queued_gap_us``, the median start of the queued ones after the work ahead (None where
    there are none): the re-issue makes the first a latency of the launch and keeps of the second
    only what it holds beyond the tail as GPU time (``steps.graph_latency_us``, ``steps.timed_graph``).

    Where the graphs launched onto an idle stream start their first kernel *before* the launch
    call returns (a big graph under the profiler: the gpu-size decoder's 250 kernels start 19 µs
    into a 211 µs ``cudaGraphLaunch``, the GPU runs while CUPTI keeps the call going),
    ``issued_in_call_us`` is that time from the call's start to the first kernel and
    ``call_after_issue_us`` the time the call went on after it (medians), and the lead-in is
    counted from there (0). The re-issued launch hands the GPU its graph ``issued_in_call_us`` into
    the call, or later where the call is longer than the two together (a graph's first launch
    uploads it first: 444 µs in, then 288 µs), and the rest of the call is host time after it.
    None: the kernels start after the call returns (smaller graphs), or the recording has no
    launch onto an idle stream to show it.
    """

    launches: int
    lead_in_us: float
    kernel_gap_us: float
    tail_us: float
    issued_in_call_us: float | None = None
    call_after_issue_us: float = 0.0
    idle_lead_us: float | None = None  # median first kernel after the launch returned, stream idle (None: none such)
    queued_gap_us: float | None = None  # median first kernel after the work ahead ended, queued (None: none such)


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
    what_ifs: tuple = ()  # what each what-if applied to it changed (whatif.WhatIfSummary), in order
    graph_timing: GraphTiming | None = None  # the GPU's time around its CUDA graphs' kernels, as recorded
    # the recording's simple calls (median µs, count) before a what-if changed its calls, which a graph launch
    # replaces: the recording's host speed stays known (compensation.host_speed); None until a what-if runs
    recorded_simple_calls: tuple[float, int] | None = None


_GEMM = re.compile(r"gemm|matmul|cutlass|xmma|mma_|cublas|sm\d\d_", re.IGNORECASE)


def is_gemm(name: str) -> bool:
    """Whether a recorded kernel is a matrix product (the replay then stands it in with matrix work)."""
    return _GEMM.search(name) is not None


@collector_paused()  # a program of a long recording is millions of objects kept to the end
def build_program(ops: pd.DataFrame, source: str, profiler_mode: str = "") -> RecordedProgram:
    """The recorded program of an imported trace (see the module docstring); its threads' calls as columns."""
    from workloads.recorded.calltable import OpTable, thread_table

    missing = [c for c in ("gap_aten_ops", "gap_ranges") if c not in ops.columns]  # frames of older traces
    ops = ops.assign(**dict.fromkeys(missing)) if missing else ops
    is_call = ops["kind"].str.startswith("call_").to_numpy(dtype=bool)
    # The columns used, built once (no copy of the frame per step). A text column is its codes (TEXT_CODE, one per
    # distinct string, -1 where missing) until the calls and the GPU ops are taken from the rows: then it becomes
    # Python strings in an object column (Arrow-backed ones are slow to take and filter; pandas 3 would infer them
    # from an object array), each distinct one made once, beside its codes, which the call table reads rather than
    # hash the strings again.
    columns: dict[str, object] = {}
    strings: dict[str, np.ndarray] = {}  # per text column, its distinct strings by code (code -1: the last, None)
    for c in _USED_COLUMNS:
        if c not in ops.columns:
            continue
        if _is_text(ops[c].dtype):
            strings[c], columns[TEXT_CODE.format(c)] = _distinct_strings(ops[c])
        else:
            columns[c] = ops[c].to_numpy()
    order = [name for c in _USED_COLUMNS for name in (c, TEXT_CODE.format(c)) if name in columns or name in strings]
    ops = pd.DataFrame(columns, copy=False)
    del columns  # the frame holds them (and the trace's frame, handed over, is freed with them below)
    call_rows = np.flatnonzero(is_call)
    if "thread" in strings:  # the threads in the order of their names (each code ranked once)
        thread_rank = _sorted_rank(strings["thread"])[ops[TEXT_CODE.format("thread")].to_numpy()[call_rows]]
    else:
        thread_rank, _ = pd.factorize(ops["thread"].to_numpy()[call_rows], sort=True, use_na_sentinel=False)
    call_rows = call_rows[np.lexsort((ops["start_us"].to_numpy()[call_rows], thread_rank))]
    # The calls by thread, then start (a stable sort: ties keep the trace's order): their columns read here first,
    # the frame taken once the syncs before the first GPU work are left out.
    call_column = {c: ops[c].to_numpy()[call_rows] for c in ("correlation", "start_us", "duration_us")}
    call_column["kind"] = _text_of(ops, strings, "kind", call_rows)
    gpu = _with_strings(ops.loc[(ops["device"].to_numpy() >= 0) & ~is_call, _read_by(ops, _CALL_ONLY)], strings, order)
    is_linked = isin_ids(gpu["correlation"], call_column["correlation"])
    linked = gpu if is_linked.all() else gpu[is_linked]  # read only: every op linked (as usual), no copy of them
    # Only a wait that names its record's correlation orders streams by itself; torch 2.11's sync events
    # name the waiting stream and an event id but not the record (-1), so the ordering is inferred then.
    sync_events = bool(ops["wait_correlation"].take(call_rows).notna().any())

    call_start = call_column["start_us"]
    first_gpu_call = pd.Series(call_start[isin_ids(call_column["correlation"], linked["correlation"])]).min()
    is_leading = np.isin(call_column["kind"], SYNC_CALLS) & (call_start < first_gpu_call)
    start_us = 0.0
    if is_leading.any():
        start_us = float(pd.Series(call_start[is_leading] + call_column["duration_us"][is_leading]).max())
        call_rows = call_rows[~is_leading]
    calls = _with_strings(ops[_read_by(ops, _GPU_ONLY)].take(call_rows), strings, order)
    del ops, call_column, call_start, call_rows, thread_rank, is_call, is_leading  # the calls and the GPU ops hold
    # what is read from here on
    release_freed_memory()  # the trace's columns, freed: their pages back before the next frames are made
    op_table = OpTable.of(linked)

    calls = _without_copy_waits(calls, linked)
    waits, records, inferred = infer_waits(gpu, calls) if not sync_events else ({}, {}, 0)
    threads = []
    first_start = calls.groupby("thread", sort=False)["start_us"].min()
    own_device = _thread_devices(calls, linked)
    # What is read of the GPU ops, taken before the threads' tables are made: the ops are freed first.
    ends = [float((calls["start_us"] + calls["duration_us"]).max())]
    if len(linked):
        ends.append(float((linked["start_us"] + linked["duration_us"]).max()))
    group_us, unlinked, graph_timing = _group_spans(calls, linked), len(gpu) - len(linked), measure_graph_timing(gpu, calls)
    del gpu, linked
    release_freed_memory()
    thread_names = calls["thread"].unique()
    one = len(thread_names) == 1 and pd.notna(thread_names[0])
    by_thread = [(thread_names[0], calls)] if one else calls.groupby("thread", sort=False)
    for thread, rows in by_thread:  # one thread: its rows are the calls (a group would be a copy of them)
        table = thread_table(rows, op_table, start_us, waits, records, own_device.get(thread, 0))
        threads.append(ThreadProgram(str(thread), table=table))
    threads.sort(key=lambda t: float(first_start[t.name] if t.name in first_start.index else 0.0))

    streams = tuple(sorted(set(op_table.stream.tolist()), key=lambda s: (s[0], _natural(s[1]))))
    return RecordedProgram(
        threads=tuple(threads),
        streams=streams,
        devices=max((s[0] for s in streams), default=0) + 1,
        start_us=start_us,
        recorded_span_us=max(ends) - start_us,
        recorded_group_us=group_us,
        sync_events=sync_events,
        inferred_waits=inferred,
        unlinked_ops=unlinked,
        source=source,
        profiler_mode=profiler_mode,
        gap_counts=bool(len(calls)) and bool(calls["gap_aten_ops"].notna().all()),
        graph_timing=graph_timing,
    )


def _thread_devices(calls: pd.DataFrame, linked: pd.DataFrame) -> dict:
    """Each thread whose launches all went to one device (a rank of a multi-rank recording): that device. The
    streams its other calls name (a sync, a record, a wait) are on it; other threads' are on device 0."""
    threads = calls["thread"].unique()
    if len(threads) == 1 and pd.notna(threads[0]):  # one thread: the devices of the GPU ops its calls launched
        found = linked["device"][isin_ids(linked["correlation"], calls["correlation"])].unique()
        return {threads[0]: int(found[0])} if len(found) == 1 else {}
    thread_of = calls[["correlation", "thread"]].drop_duplicates("correlation").set_index("correlation")["thread"]
    devices = linked["device"].groupby(linked["correlation"].map(thread_of)).unique()
    return {thread: int(found[0]) for thread, found in devices.items() if len(found) == 1}


def _without_copy_waits(calls: pd.DataFrame, linked: pd.DataFrame) -> pd.DataFrame:
    """Calls that hold the host until their copy is done (a copy from pageable memory, which the driver stages; a
    ``cudaMemcpy`` without ``Async``) keep as their duration only what follows the copy's end: both backends hold
    the host until the copy ends themselves, so the recorded wait (behind the stream's earlier work, then the copy
    itself) would be paid twice. (The copy's own start-up latency is in the profile's link curve.)"""
    memcpy = calls["kind"].to_numpy() == "call_memcpy"
    if not memcpy.any() or linked.empty:
        return calls
    copies = linked[linked["kind"].isin(("copy_h2d", "copy_d2h"))]
    copy_end = (copies["start_us"] + copies["duration_us"]).groupby(copies["correlation"]).max()
    pageable = set(copies.loc[copies["host_memory"] == "pageable", "correlation"].tolist())
    synchronous = ~_per_value(calls, "name", lambda name: "Async" in str(name), bool)
    correlation = calls["correlation"]  # ids tested by a bitmap (Series.isin hashes every row's)
    holds = memcpy & (isin_ids(correlation, np.array(list(pageable))) | synchronous)
    holds &= isin_ids(correlation, copy_end.index)
    if not holds.any():
        return calls
    held = calls[holds]
    own_us = (held["start_us"] + held["duration_us"]) - held["correlation"].map(copy_end).to_numpy()
    calls = calls.copy()
    calls.loc[held.index, "duration_us"] = np.clip(own_us.to_numpy(dtype=float), 0.0, held["duration_us"].to_numpy())
    return calls


def measure_graph_timing(gpu: pd.DataFrame, calls: pd.DataFrame) -> GraphTiming | None:
    """What the recording shows of the GPU around its graphs' kernels (:class:`GraphTiming`); None without graphs."""
    launches = calls[calls["kind"] == "call_graph_launch"]
    kernels = gpu[gpu["correlation"].isin(launches["correlation"])]
    if kernels.empty:
        return None
    returned = (launches["start_us"] + launches["duration_us"]).groupby(launches["correlation"]).max()
    called = launches["start_us"].groupby(launches["correlation"]).min()
    ordered = gpu.assign(end_us=gpu["start_us"] + gpu["duration_us"]).sort_values("start_us", kind="stable")
    by_stream = dict(tuple(ordered.groupby(["device", "stream"], sort=False)))  # each stream's ops, in start order
    leads, queued, gaps, tails, into_call, after_issue = [], [], [], [], [], []
    for correlation, graph in ordered[ordered["correlation"].isin(returned.index)].groupby("correlation"):
        starts, ends = graph["start_us"].to_numpy(), graph["end_us"].to_numpy()
        device, stream = graph["device"].iloc[0], graph["stream"].iloc[0]
        on_stream = by_stream[(device, stream)]
        before = on_stream[(on_stream["start_us"] < starts[0]) & (on_stream["correlation"] != correlation)]
        previous_end = float(before["end_us"].max()) if len(before) else -np.inf
        if previous_end <= returned[correlation]:  # the stream was idle when the launch returned: the lead-in
            leads.append(float(starts[0] - returned[correlation]))  # < 0: started before the call returned
            if previous_end <= called[correlation]:  # idle from the call's start: when the GPU had the graph
                into_call.append(float(starts[0] - called[correlation]))
                after_issue.append(float(returned[correlation] - starts[0]))
        else:  # queued behind earlier work: its start follows that work's end by the previous tail + this lead-in
            queued.append(max(0.0, float(starts[0] - previous_end)))
        if len(starts) > 1:
            gaps.append(float(np.clip(starts[1:] - ends[:-1], 0.0, None).mean()))
        last = float(ends.max())
        behind = on_stream[(on_stream["start_us"] >= last - 0.5) & (on_stream["correlation"] != correlation)]
        if len(behind) and float(behind["launch_us"].iloc[0]) < last:
            tails.append(max(0.0, float(behind["start_us"].iloc[0]) - last))
    tail_us = float(np.median(tails)) if tails else 0.0
    issued_in_call_us, call_after_issue_us = None, 0.0
    if len(leads) >= len(queued):
        lead_in_us = float(np.median(np.clip(leads, 0.0, None)))
        if float(np.median(leads)) < 0.0 and into_call:  # most started before their call returned: the GPU had
            issued_in_call_us = max(0.0, float(np.median(into_call)))  # them that far into it, the first kernel
            call_after_issue_us = max(0.0, float(np.median(after_issue)))  # starting there
            lead_in_us = 0.0
    else:  # most graphs queued behind earlier work: what their start kept after the work ahead, less its tail
        lead_in_us = max(0.0, float(np.median(queued)) - tail_us)
    return GraphTiming(
        launches=len(leads) + len(queued),
        lead_in_us=lead_in_us,
        kernel_gap_us=float(np.median(gaps)) if gaps else 0.0,
        tail_us=tail_us,
        issued_in_call_us=issued_in_call_us,
        call_after_issue_us=call_after_issue_us,
        idle_lead_us=float(np.median(np.clip(leads, 0.0, None))) if leads else None,
        queued_gap_us=float(np.median(queued)) if queued else None,
    )


_USED_COLUMNS = ("device", "stream", "kind", "name", "bytes", "duration_us", "start_us", "launch_us", "thread", "group")
_USED_COLUMNS += ("host_memory", "correlation", "host_gap_us", "wait_correlation", "gap_aten_ops", "gap_ranges")


_CALL_ONLY = ("thread", "host_gap_us", "wait_correlation", "gap_aten_ops", "gap_ranges")  # read of calls only
_GPU_ONLY = ("device", "bytes", "launch_us", "host_memory")  # read of GPU ops only


def _read_by(ops: pd.DataFrame, others: tuple[str, ...]) -> list[str]:
    """The columns of ``ops`` but ``others``' (and their codes): those the calls, or the GPU ops, are read for."""
    left_out = {*others, *(TEXT_CODE.format(c) for c in others)}
    return [c for c in ops.columns if c not in left_out]


def _is_text(dtype: object) -> bool:
    """A column of strings: pandas strings, or a categorical of them (``load_trace(categorical_strings=True)``)."""
    return isinstance(dtype, pd.CategoricalDtype) or pd.api.types.is_string_dtype(dtype)


def _shared_strings(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A string column as an object array of Python strings, one object per distinct string (None where missing),
    and each row's code (int32, one per distinct string, -1 where missing; a categorical's own codes, so that the
    numbering of the strings is not that of their first rows: the codes are only compared and grouped)."""
    if isinstance(column.dtype, pd.CategoricalDtype):  # load_trace(categorical_strings=True): its codes as they are
        codes, uniques = column.cat.codes.to_numpy(), column.cat.categories
    else:
        codes, uniques = pd.factorize(column, use_na_sentinel=True)
    values = np.empty(len(uniques) + 1, object)
    values[:-1] = [str(u) for u in uniques.tolist()] if len(uniques) else []
    return values[codes], codes.astype(np.int32)  # code -1 (missing): the last, None


def _distinct_strings(column: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """A string column's distinct strings as Python strings (an object array, one per code, None last) and each
    row's code (int32, -1 where missing): :func:`_shared_strings` without the object array of a string per row."""
    if not isinstance(column.dtype, pd.CategoricalDtype):
        column = column.astype("category")
    values = np.empty(len(column.cat.categories) + 1, object)
    values[:-1] = [str(u) for u in column.cat.categories.tolist()]
    return values, column.cat.codes.to_numpy().astype(np.int32)


def _sorted_rank(values: np.ndarray) -> np.ndarray:
    """Each code's rank among the distinct strings ``values`` (by code, None last) in sorted order, None after them:
    the codes ``pd.factorize(sort=True)`` would order rows by."""
    rank = np.empty(len(values), np.int64)
    rank[sorted(range(len(values) - 1), key=values.__getitem__)] = np.arange(len(values) - 1)
    rank[-1] = len(values) - 1
    return rank


def _text_of(frame: pd.DataFrame, strings: dict[str, np.ndarray], column: str, rows: np.ndarray) -> np.ndarray:
    """Text column ``column`` at ``rows``, as an object array (from its codes where ``strings`` has it)."""
    if column in strings:
        return strings[column][frame[TEXT_CODE.format(column)].to_numpy()[rows]]
    return frame[column].to_numpy()[rows]


def _with_strings(frame: pd.DataFrame, strings: dict[str, np.ndarray], order: list[str]) -> pd.DataFrame:
    """``frame`` (rows taken from build_program's frame of codes) with each text column as Python strings beside
    its codes, the columns in ``order``."""
    made = {
        c: pd.Series(values[frame[TEXT_CODE.format(c)].to_numpy()], index=frame.index, dtype=object, copy=False)
        for c, values in strings.items()
        if TEXT_CODE.format(c) in frame.columns
    }
    whole = frame.assign(**made) if made else frame
    return whole[[c for c in order if c in whole.columns]]


def _per_value(frame: pd.DataFrame, column: str, make, dtype) -> np.ndarray:
    """``make(value)`` for each row's value of text column ``column``, called once per distinct value (through the
    column's codes where the frame has them, else pd.factorize)."""
    codes_column = TEXT_CODE.format(column)
    if codes_column in frame.columns:
        codes = frame[codes_column].to_numpy()
        values = frame[column].to_numpy(dtype=object)
        kept, first = np.unique(codes, return_index=True)
        lookup = np.zeros(int(kept.max()) + 2 if len(kept) else 1, dtype)
        lookup[kept] = [make(v) for v in values[first].tolist()]  # code -1 (missing): the last
        return lookup[codes]
    codes, uniques = pd.factorize(frame[column], use_na_sentinel=False)
    return np.array([make(v) for v in uniques.tolist()] + [make(None)], dtype)[codes]


def _natural(name: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", name))


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
    call_keys, call_end = _ends_by_correlation(calls)
    # The columns read, as arrays in start order (stable), of the ops whose call is among the calls: no frame copies
    start = gpu["start_us"].to_numpy()
    order = np.argsort(start, kind="stable")
    at = _positions(call_keys, gpu["correlation"].to_numpy()[order])  # each op's call (-1: none)
    order, at = order[at >= 0], at[at >= 0]
    stream = gpu["stream"]
    codes = TEXT_CODE.format("stream")
    if pd.api.types.infer_dtype(stream, skipna=False) != "string":  # as text (already so: Python strings)
        stream, codes = stream.astype(str), None
    stream = stream.to_numpy(dtype=object)[order]
    # each op's stream as a number, one per distinct stream name (a group-by over them hashes no string)
    stream_key = gpu[codes].to_numpy()[order] if codes in gpu.columns else pd.factorize(stream)[0]
    start = start[order]
    end = start + gpu["duration_us"].to_numpy()[order]  # the same sums as over the rows before the sort
    device, correlation = gpu["device"].to_numpy()[order], gpu["correlation"].to_numpy()[order]
    launched = call_end[at]
    del order, at
    waits: dict[int, list] = {}
    records: dict[int, list] = {}
    inferred = 0
    devices = np.unique(device)
    for dev in devices.tolist():  # each device's ops, in start order
        mine = slice(None) if len(devices) == 1 else device == dev
        stream_of, start_of, end_of, key_of = stream[mine], start[mine], end[mine], stream_key[mine]
        corr_of = correlation[mine]
        by_end = np.argsort(end_of, kind="stable")
        ends, end_streams, end_corrs = end_of[by_end], stream_of[by_end], corr_of[by_end]
        # each op's stream's latest end before it (in start order; -inf for the first): a running max
        latest = pd.Series(end_of).groupby(key_of).cummax().groupby(key_of).shift(1).fillna(-np.inf)
        allowed_of = np.maximum(latest.to_numpy(), launched[mine])
        held = np.flatnonzero(~(start_of <= allowed_of + INFER_TOLERANCE_US))  # the others were not held
        for stream_name, op_start, allowed, corr in zip(
            stream_of[held].tolist(), start_of[held].tolist(), allowed_of[held].tolist(), corr_of[held].tolist()
        ):
            i = int(np.searchsorted(ends, op_start + 1.0, side="right")) - 1  # the latest end by start + 1 µs ...
            while i >= 0 and ends[i] >= allowed and end_streams[i] == stream_name:  # ... on another stream
                i -= 1
            if i < 0 or ends[i] < allowed:
                continue
            inferred += 1
            records.setdefault(int(end_corrs[i]), []).append(((int(dev), str(end_streams[i])), -inferred))
            waits.setdefault(int(corr), []).append(((int(dev), str(stream_name)), -inferred))
    return waits, records, inferred


def _ends_by_correlation(calls: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    """The calls' correlations (sorted, distinct) and the latest end of each one's calls: their group-by max, taken
    as they are where the correlations are integers, distinct and increasing already (a recording's usual order)."""
    correlation = calls["correlation"].to_numpy()
    end = calls["start_us"] + calls["duration_us"]
    if correlation.dtype.kind in "iu" and len(correlation) and bool((correlation[1:] > correlation[:-1]).all()):
        return correlation, end.to_numpy()
    grouped = end.groupby(calls["correlation"]).max()
    return grouped.index.to_numpy(), grouped.to_numpy()


def _positions(keys: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Each value's position in ``keys`` (sorted, distinct, no NaN), -1 where it is not one: ``Index.get_indexer``
    by binary search (no hash table of the keys)."""
    at = np.searchsorted(keys, values)
    found = at < len(keys)
    found[found] = keys[at[found]] == values[found]
    return np.where(found, at, -1)


def _group_spans(calls: pd.DataFrame, linked: pd.DataFrame) -> tuple[tuple[str, float], ...]:
    """Per group, in order of its first call: its GPU ops' span, first start to last end."""
    key = TEXT_CODE.format("group")
    if key not in calls.columns or key not in linked.columns:  # a frame without codes: the groups themselves
        key = "group"
    elif len(calls) and len(linked):
        return _group_spans_by_code(calls, linked, key)
    in_calls, in_ops = calls[calls["group"].notna()], linked[linked["group"].notna()]
    order = in_calls.groupby(key, sort=False)["start_us"].min().sort_values().index
    starts = in_ops.groupby(key)["start_us"].min()
    ends = (in_ops["start_us"] + in_ops["duration_us"]).groupby(in_ops[key]).max()
    order = order[order.isin(starts.index)]
    spans = (ends.reindex(order) - starts.reindex(order)).tolist()
    if key != "group":  # each code's group name
        named = in_calls.drop_duplicates(key).set_index(key)["group"]
        order = named.reindex(order)
    return tuple((str(g), float(span)) for g, span in zip(order.tolist(), spans))


def _group_spans_by_code(calls: pd.DataFrame, linked: pd.DataFrame, key: str) -> tuple[tuple[str, float], ...]:
    """:func:`_group_spans` through the groups' codes (``key``), on arrays: the same minima, maxima and sums, the
    groups in the same order (by first call in order of first appearance, then a quicksort of their first starts,
    as ``Series.sort_values`` sorts). Start times are present (a recorded op needs its start)."""
    call_codes, op_codes = calls[key].to_numpy().astype(np.int64), linked[key].to_numpy().astype(np.int64)
    size = int(max(call_codes.max(), op_codes.max())) + 1
    if size <= 0:
        return ()
    grouped = call_codes >= 0
    codes, starts = call_codes[grouped], calls["start_us"].to_numpy(dtype=np.float64)[grouped]
    first_row = np.full(size, len(codes), np.int64)  # each group's first call (among the grouped calls)
    np.minimum.at(first_row, codes, np.arange(len(codes)))
    first_start = np.full(size, np.inf)
    np.minimum.at(first_start, codes, starts)
    seen = np.flatnonzero(first_row < len(codes))
    seen = seen[np.argsort(first_row[seen], kind="stable")]  # in order of first appearance (groupby sort=False)
    order = seen[first_start[seen].argsort(kind="quicksort")]
    grouped = op_codes >= 0
    codes = op_codes[grouped]
    op_start = linked["start_us"].to_numpy(dtype=np.float64)[grouped]
    op_end = op_start + linked["duration_us"].to_numpy(dtype=np.float64)[grouped]
    lowest, highest = np.full(size, np.inf), np.full(size, -np.inf)
    np.minimum.at(lowest, codes, op_start)
    np.maximum.at(highest, codes, op_end)
    has_ops = np.zeros(size, bool)
    has_ops[codes] = True
    order = order[has_ops[order]]
    names = calls["group"].to_numpy(dtype=object)[np.flatnonzero(call_codes >= 0)[first_row[order]]]
    spans = (highest[order] - lowest[order]).tolist()
    return tuple((str(g), float(span)) for g, span in zip(names.tolist(), spans))
