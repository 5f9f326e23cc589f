"""Import a torch.profiler (Kineto) Chrome trace into the project's op-trace format.

``import_profiler_trace(path, device)`` reads ``PROFILE.json[.gz]`` (see
:mod:`harness.kineto_events` for the parsing and its size limit) and returns one
op table in the vocabulary of :mod:`harness.trace` (format version 2):

* every GPU op of the chosen device(s) (``kernel``, ``copy_h2d``/``copy_d2h``/
  ``copy_d2d`` with pinned/pageable from names such as
  ``Memcpy HtoD (Pinned -> Device)``, ``memset``): device (pid), stream (tid),
  start, duration, bytes, and the host call that launched it (``launch_us``,
  ``thread``, ``correlation``);
* every CUDA runtime (or driver) call of each host thread as a ``call_*`` row
  (device -1) with its start, duration, the stream it addressed where known,
  and ``host_gap_us``: the thread's own CPU time since its previous call;
* links: ``args.correlation``, or the ``ac2g`` flow events when an op lacks it;
  a CUDA-graph launch is one call whose kernels all share its correlation;
* ``group``: the ``ProfilerStep#N`` around the launching call (else its
  innermost record_function range); ``annotation``: that innermost range;
* per host call, the profiler events its gap holds (``gap_aten_ops``,
  ``gap_ranges``: aten ops and record_function ranges that began on its thread
  after the previous call ended), so that a simulation can take out the
  profiler's calibrated overhead (``profiler_overhead = "subtract"``);
* the recording's profiler mode in the provenance (``cpu_cuda``,
  ``cpu_cuda_sync``, ``cuda``, ``cuda_sync``: CPU activities are taken as
  recorded when the file has any ``cpu_op`` or ``user_annotation``). A CUDA-only
  recording (runtime calls, no aten ops) imports the same way. A host-bound
  recording (the GPU idle most of the span) taken with CPU activities gets a
  warning (``ImportedTrace.warnings``): the profiler inflated it most.

Times are µs since the first imported event, whether the file's ``ts`` is
absolute epoch µs (older torch) or relative to ``baseTimeNanoseconds`` (newer).
A GPU op that appears to start before its launch call (host and GPU clocks
disagree by a µs or so) gets ``launch_us`` clamped to its start; overlapping
calls on a thread get a zero gap; both are counted in the provenance notes.
Stream-wait and event-record details (``wait_stream``, ``wait_correlation``)
come from ``cuda_sync`` events, present only when recorded with
``_ExperimentalConfig(enable_cuda_sync_events=True)``; without them the
provenance says cross-stream dependencies are not recorded.

ROCm traces (roctracer through Kineto) use the same layout with ``hip*`` call
names and copies named ``Memcpy HtoD (Host -> Device)``; they import the same
way, with ``host_memory`` "" (not recorded) and copy bytes from the call's
``size`` argument.

CUPTI's copy kinds map to the model's copies (``HtoA``/``AtoH``/``AtoD``/``DtoA``/``AtoA``:
a CUDA array is device memory); host-to-host copies (``HtoH``) have no op in the model and are
left out, with a warning that counts them. A file holding GPU ops of several devices needs
``device`` (a simulation runs one device).

Bad input raises :class:`harness.errors.InputError` naming the file and the
event's index in ``traceEvents``; :func:`import_to_parquet` writes atomically. Besides
what :mod:`harness.kineto_events` checks (times, numbers), inconsistent correlation ids are
refused (:func:`_check_links`: a GPU op recorded twice, two calls of one id, a kernel launch
with two GPU ops, one call's ops on two devices), and so is a copy without a size or of 0
bytes (a size is taken from its call's ``args.size`` when the op has none).
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.gc_pause import collector_paused
from harness.kineto_events import MAX_TRACE_BYTES, KinetoEvents, load_kineto_events
from harness.trace import TRACE_SCHEMA, Provenance, write_trace

_MEMCPY = re.compile(r"^Memcpy (\w+) \(([\w ]+?) -> ([\w ]+?)\)$")
# CUPTI's copy kinds (A: a CUDA array, device memory laid out for textures) as the model's copies.
_COPY_KINDS = {
    "HtoD": "copy_h2d",
    "HtoA": "copy_h2d",
    "DtoH": "copy_d2h",
    "AtoH": "copy_d2h",
    "DtoD": "copy_d2d",
    "PtoP": "copy_d2d",
    "DtoA": "copy_d2d",
    "AtoD": "copy_d2d",
    "AtoA": "copy_d2d",
}
SKIPPED_COPY_KINDS = ("HtoH",)
"""CUPTI copy kinds the model has no op for (a host-to-host copy through the driver): left out with a warning."""
_HOST_MEMORY = {"Pinned": "pinned", "Pageable": "pageable", "Host": "", "Unknown": ""}
_DEVICE_MEMORY = {"Device", "Managed", "Array", "Device Static", "Managed Static"}
_CALL_PREFIX = re.compile(r"^(cuda|hip|cu)")
_CALL_SUFFIX = re.compile(r"(_v\d+|_ptsz|_ptds|_spt|R\d{4})+$")
_CALL_RULES = (
    ("call_graph_launch", re.compile(r"GraphLaunch")),
    ("call_launch", re.compile(r"(Ext|Module|ExtModule)?Launch(Cooperative)?Kernel\w*")),
    ("call_memcpy", re.compile(r"Memcpy\w*")),
    ("call_memset", re.compile(r"Memset\w*")),
    ("call_sync_stream", re.compile(r"StreamSynchronize")),
    ("call_sync_device", re.compile(r"(Device|Ctx)Synchronize")),
    ("call_sync_event", re.compile(r"EventSynchronize")),
    ("call_record", re.compile(r"EventRecord\w*")),
    ("call_wait", re.compile(r"StreamWaitEvent")),
    ("call_malloc", re.compile(r"(Malloc|MemAlloc|HostAlloc)\w*")),
    ("call_free", re.compile(r"(Free|MemFree)\w*")),
)
_NO_STREAM = {-1, 4294967295}  # a context-wide sync names no stream


@dataclass(frozen=True)
class ImportedTrace:
    """An imported profiler trace: the op table (trace format columns) and its provenance."""

    source: Path
    ops: pd.DataFrame
    provenance: Provenance
    devices: tuple[int, ...]  # the GPUs the file holds (``ops`` has the chosen ones)
    warnings: tuple[str, ...] = ()  # what the user should know before trusting a prediction from it
    origin_us: float = 0.0  # the file's clock at the ops' time 0 (epoch µs where the file's clock is; multi-rank)


@collector_paused()  # the parsed JSON is millions of objects, kept until the tables are built
def import_profiler_trace(path: str | Path, device: int | None = None, limit: int = MAX_TRACE_BYTES) -> ImportedTrace:
    """Read a Kineto Chrome trace; ``device`` keeps one GPU of a multi-GPU file (required when it holds several)."""
    path = Path(path)
    ev = load_kineto_events(path, limit)
    if ev.gpu.empty:
        raise InputError(
            path, "", "no GPU events (kernel, gpu_memcpy, gpu_memset): a CPU-only profile cannot be imported"
        )
    gpu, skipped = _classify_gpu(path, ev.gpu)
    devices = tuple(int(d) for d in sorted(ev.gpu["device"].unique()))
    gpu = _link(path, ev, gpu)
    _check_links(path, ev, gpu)
    if device is None and len(devices) > 1:
        raise InputError(
            path,
            "",
            f"the recording holds GPU ops of {len(devices)} devices {list(devices)} and a simulation runs one: "
            f"import one with --device N (e.g. --device {devices[0]})",
        )
    if device is not None:
        if device not in devices:
            raise InputError(path, "", f"device {device} has no GPU events; the trace holds devices {list(devices)}")
        gpu = gpu[gpu["device"] == device]
    calls = _host_calls(ev, gpu, device)
    ops, origin, notes = _assemble(path, ev, gpu, calls)
    provenance = _provenance(ev, origin, devices, device, notes)
    warnings = _mode_warnings(ops, provenance.profiler_mode) + _skip_warnings(skipped)
    return ImportedTrace(path, ops, provenance, devices, warnings, ev.base_us + origin)


def import_to_parquet(path: str | Path, out: str | Path, device: int | None = None) -> ImportedTrace:
    """Import ``path`` and write it to ``out`` (op-trace Parquet); nothing is written on error."""
    imported = import_profiler_trace(path, device)
    write_trace(Path(out), imported.ops, imported.provenance)
    return imported


# --- GPU ops ---------------------------------------------------------------


def memcpy_kind(name: str) -> tuple[str, str] | None:
    """(kind, host_memory) of a Kineto memcpy name, or None when the name is not understood."""
    m = _MEMCPY.match(name)
    if not m or m.group(1) not in _COPY_KINDS:
        return None
    kind, src, dst = _COPY_KINDS[m.group(1)], m.group(2), m.group(3)
    host, dev = {"copy_h2d": (src, dst), "copy_d2h": (dst, src)}.get(kind, ("Unknown", src))
    if host not in _HOST_MEMORY or dev not in _DEVICE_MEMORY or (kind == "copy_d2d" and dst not in _DEVICE_MEMORY):
        return None
    return kind, _HOST_MEMORY[host]


def skipped_copy(name: str) -> bool:
    """Whether a Kineto memcpy name is a copy kind the model lacks (:data:`SKIPPED_COPY_KINDS`)."""
    m = _MEMCPY.match(name)
    return bool(m) and m.group(1) in SKIPPED_COPY_KINDS


def _classify_gpu(path: Path, gpu: pd.DataFrame) -> tuple[pd.DataFrame, dict[str, int]]:
    """Add ``kind`` and ``host_memory``; copies of a kind the model lacks are left out (counted per name);
    an unknown memcpy name is rejected by event index."""
    if gpu["device"].isna().any() or gpu["stream"].isna().any():
        bad = int(gpu.loc[gpu["device"].isna() | gpu["stream"].isna(), "idx"].iloc[0])
        raise InputError(path, f"event {bad}", "GPU op without a numeric pid (device) and tid (stream)")
    copies = gpu["cat"] == "gpu_memcpy"
    names = gpu.loc[copies, "name"].unique()
    skip = {name for name in names if skipped_copy(name)}
    skipped: dict[str, int] = {}
    if skip:
        left_out = copies & gpu["name"].isin(skip)
        skipped = gpu.loc[left_out, "name"].value_counts().to_dict()
        gpu, copies = gpu[~left_out], copies[~left_out]
    gpu = gpu.copy()
    gpu["kind"] = gpu["cat"].map({"kernel": "kernel", "gpu_memset": "memset", "gpu_memcpy": ""})
    gpu["host_memory"] = None
    parsed = {name: memcpy_kind(name) for name in names if name not in skip}
    for name, result in parsed.items():
        if result is None:
            first = int(gpu.loc[copies & (gpu["name"] == name), "idx"].iloc[0])
            raise InputError(
                path,
                f"event {first}",
                f"unknown memcpy name {name!r}; expected 'Memcpy <kind> (<src> -> <dst>)' with a kind of "
                f"{'|'.join([*_COPY_KINDS, *SKIPPED_COPY_KINDS])} and Pinned, Pageable, Host or Device memory",
            )
    gpu.loc[copies, "kind"] = gpu.loc[copies, "name"].map(lambda n: parsed[n][0])
    gpu.loc[copies, "host_memory"] = gpu.loc[copies, "name"].map(lambda n: parsed[n][1])
    gpu.loc[gpu["kind"].isin(["copy_h2d", "copy_d2h"]) & gpu["host_memory"].isna(), "host_memory"] = ""
    return gpu, skipped


def _skip_warnings(skipped: dict[str, int]) -> tuple[str, ...]:
    if not skipped:
        return ()
    counts = ", ".join(f"{n} x {name!r}" for name, n in sorted(skipped.items()))
    total = sum(skipped.values())
    return (
        f"{total} GPU copie(s) of a kind the model lacks left out ({counts}): their launch calls stay, "
        "as host time; a prediction misses the stream time they took",
    )


def _check_links(path: Path, ev: KinetoEvents, gpu: pd.DataFrame) -> None:
    """Refuse inconsistent correlation ids, naming the two events at odds.

    A GPU op recorded twice (same name, device, stream, start, duration and correlation); two
    runtime calls of one correlation id; GPU ops of one call on two devices; a single-kernel
    launch call (``cudaLaunchKernel`` and the like) with more than one GPU op.
    """
    same = ["device", "stream", "ts", "dur", "name", "correlation"]
    twice = gpu.duplicated(same, keep="first")
    if twice.any():
        second = gpu[twice].iloc[0]
        first = gpu[(gpu[same] == second[same]).all(axis=1)].iloc[0]
        raise InputError(
            path,
            f"event {int(second['idx'])}",
            f"GPU op {second['name'][:60]!r} is recorded twice: the same op as event {int(first['idx'])} "
            f"(device {second['device']}, stream {second['stream']}, ts {second['ts']:.17g}, "
            f"correlation {second['correlation']})",
        )
    calls = ev.calls.dropna(subset=["correlation"])
    repeated = calls["correlation"].duplicated(keep="first")
    if repeated.any():
        second = calls[repeated].iloc[0]
        first = calls[calls["correlation"] == second["correlation"]].iloc[0]
        raise InputError(
            path,
            f"event {int(second['idx'])}",
            f"runtime call {second['name']!r} has correlation {second['correlation']}, already the correlation "
            f"of event {int(first['idx'])} ({first['name']!r}): a correlation id names one call",
        )
    devices = gpu.groupby("correlation")["device"].nunique()
    if (devices > 1).any():
        corr = devices[devices > 1].index[0]
        ops = gpu[gpu["correlation"] == corr]
        other = ops[ops["device"] != ops["device"].iloc[0]].iloc[0]
        raise InputError(
            path,
            f"event {int(other['idx'])}",
            f"GPU op {other['name'][:60]!r} on device {other['device']} shares correlation {corr} with event "
            f"{int(ops['idx'].iloc[0])} on device {ops['device'].iloc[0]}: one launch call runs on one device",
        )
    kinds = calls["name"].map({n: call_kind(n) for n in calls["name"].unique()})
    single = calls.loc[kinds == "call_launch", ["correlation", "idx", "name"]]
    launched = gpu[gpu["correlation"].isin(single["correlation"])]
    extra = launched["correlation"].duplicated(keep="first")
    if extra.any():
        second = launched[extra].iloc[0]
        corr = second["correlation"]
        first = launched[launched["correlation"] == corr].iloc[0]
        call = single[single["correlation"] == corr].iloc[0]
        raise InputError(
            path,
            f"event {int(second['idx'])}",
            f"GPU op {second['name'][:60]!r} has correlation {corr} of launch call event {int(call['idx'])} "
            f"({call['name']!r}), which already launched event {int(first['idx'])} ({first['name'][:60]!r}): "
            "a kernel launch issues one kernel (a kernel issued twice?)",
        )


def _link(path: Path, ev: KinetoEvents, gpu: pd.DataFrame) -> pd.DataFrame:
    """Fill missing correlations from ``ac2g`` flows; reject GPU ops linked by neither."""
    missing = gpu["correlation"].isna()
    if missing.any():
        gpu = gpu.copy()
        gpu.loc[missing, "correlation"] = _correlations_from_flows(ev, gpu[missing])
        if gpu["correlation"].isna().any():
            bad = gpu[gpu["correlation"].isna()].iloc[0]
            raise InputError(
                path,
                f"event {int(bad['idx'])}",
                f"GPU op {bad['name'][:60]!r} has no args.correlation and no ac2g flow linking it to a host call",
            )
    return gpu


def _correlations_from_flows(ev: KinetoEvents, ops: pd.DataFrame) -> pd.Series:
    """The correlation of the call each op's ``ac2g`` flow starts at (NA where there is none)."""
    flows = ev.flows

    def key(pid: object, tid: object, ts: object) -> str:
        return f"{pid}|{tid}|{ts!r}"

    finish = {key(p, t, ts): i for p, t, ts, i in zip(flows["pid"], flows["tid"], flows["ts"], flows["id"])}
    starts = flows[flows["ph"] == "s"]
    start_at = dict(zip(starts["id"], (key(p, t, ts) for p, t, ts in zip(starts["pid"], starts["tid"], starts["ts"]))))
    call_at = {
        key(p, t, ts): c
        for p, t, ts, c in zip(ev.calls["pid"], ev.calls["tid"], ev.calls["ts"], ev.calls["correlation"])
    }
    found = []
    for d, s, ts in zip(ops["device"], ops["stream"], ops["ts"]):
        flow = finish.get(key(d, s, ts))
        found.append(call_at.get(start_at.get(flow, ""), pd.NA))
    return pd.Series(found, index=ops.index, dtype="Int64")


# --- host calls --------------------------------------------------------------


def call_kind(name: str) -> str:
    """The ``call_*`` kind of a CUDA/HIP runtime or driver call name."""
    core = _CALL_SUFFIX.sub("", _CALL_PREFIX.sub("", name))
    return next((kind for kind, rule in _CALL_RULES if rule.fullmatch(core)), "call_other")


def _host_calls(ev: KinetoEvents, gpu: pd.DataFrame, device: int | None) -> pd.DataFrame:
    """Calls with their kind, addressed device/stream and sync details; other devices' calls dropped."""
    calls = ev.calls.copy()
    calls["kind"] = calls["name"].map({n: call_kind(n) for n in calls["name"].unique()})
    all_ops = ev.gpu.drop_duplicates("correlation")[["correlation", "device", "stream"]]
    calls = calls.merge(
        all_ops.rename(columns={"device": "op_device", "stream": "op_stream"}), on="correlation", how="left"
    )
    syncs = ev.syncs.drop_duplicates("correlation")[
        ["correlation", "device", "stream", "wait_stream", "wait_correlation"]
    ]
    syncs = syncs.mask(syncs.isin([-1]))  # -1: the sync names no stream or record
    calls = calls.merge(
        syncs.rename(columns={"device": "sync_device", "stream": "sync_stream"}), on="correlation", how="left"
    )
    target = calls["op_device"].fillna(calls["sync_device"])
    if device is not None:
        calls = calls[target.isna() | (target == device)]
    sync_stream = calls["sync_stream"].where(~calls["sync_stream"].isin(list(_NO_STREAM)))
    calls["stream"] = calls["op_stream"].fillna(sync_stream)
    calls = _record_streams(calls)
    op_bytes = gpu.groupby("correlation")["bytes"].sum(min_count=1)  # NA where no op says (not 0)
    calls["size"] = calls["size"].fillna(calls["correlation"].map(op_bytes))
    return calls.drop(columns=["op_device", "op_stream", "sync_device", "sync_stream"])


def _record_streams(calls: pd.DataFrame) -> pd.DataFrame:
    """An event record's stream, learnt from the waits that name its correlation."""
    waits = calls.dropna(subset=["wait_correlation", "wait_stream"]).drop_duplicates("wait_correlation")
    recorded = calls["correlation"].map(dict(zip(waits["wait_correlation"], waits["wait_stream"])))
    is_record = calls["kind"] == "call_record"
    calls.loc[is_record, "stream"] = calls.loc[is_record, "stream"].fillna(recorded[is_record])
    return calls


def _gap_counts(calls: pd.DataFrame, events: pd.DataFrame) -> np.ndarray:
    """Per call: how many ``events`` (tid, ts) began on its thread after its previous call ended, up to its start.

    A thread's first call counts every earlier event of the thread; overlapping calls count none.
    """
    counts = np.zeros(len(calls), dtype=np.int64)
    if events.empty or calls.empty:
        return counts
    order = calls.sort_values(["tid", "ts", "idx"], kind="stable")
    prev_end = (order["ts"] + order["dur"]).groupby(order["tid"]).shift(1).fillna(-np.inf)
    position = pd.Series(np.arange(len(calls)), index=calls.index)
    by_thread = {tid: np.sort(part["ts"].to_numpy(dtype=float)) for tid, part in events.groupby("tid")}
    for tid, rows in order.groupby("tid", sort=False):
        ts = by_thread.get(tid)
        if ts is None:
            continue
        begin = np.searchsorted(ts, prev_end[rows.index].to_numpy(), side="right")
        end = np.searchsorted(ts, rows["ts"].to_numpy(), side="right")
        counts[position[rows.index].to_numpy()] = np.maximum(end - begin, 0)
    return counts


def _host_gaps(calls: pd.DataFrame, origin: float) -> tuple[np.ndarray, int]:
    """Per thread: a call's start minus the previous call's end (first: minus ``origin``), clamped >= 0."""
    order = calls.sort_values(["tid", "ts", "idx"], kind="stable")
    prev_end = (order["ts"] + order["dur"]).groupby(order["tid"]).shift(1).fillna(origin)
    gaps = (order["ts"] - prev_end).reindex(calls.index).to_numpy()
    return np.maximum(gaps, 0.0), int((gaps < 0).sum())


# --- groups ----------------------------------------------------------------------


def _steps(ann: pd.DataFrame, ts: np.ndarray) -> np.ndarray:
    """The ``ProfilerStep#N`` range (any host thread) holding each time, else None."""
    out = np.full(len(ts), None, dtype=object)
    if ann.empty:
        return out
    steps = ann[ann["name"].str.startswith("ProfilerStep#")].sort_values("ts")
    if steps.empty:
        return out
    i = np.searchsorted(steps["ts"].to_numpy(), ts, side="right") - 1
    ok = (i >= 0) & (ts <= (steps["ts"] + steps["dur"]).to_numpy()[np.maximum(i, 0)])
    out[ok] = steps["name"].to_numpy()[i[ok]]
    return out


def _innermost(ann: pd.DataFrame, tid: np.ndarray, ts: np.ndarray) -> np.ndarray:
    """The innermost record_function range on the same thread holding each time, else None."""
    out = np.full(len(ts), None, dtype=object)
    if ann.empty:
        return out
    ranges = ann[~ann["name"].str.startswith("ProfilerStep#")]
    for thread, rows in ranges.groupby("tid"):
        rows = rows.sort_values(["ts", "dur"], ascending=[True, False])
        starts, ends = rows["ts"].to_numpy(), (rows["ts"] + rows["dur"]).to_numpy()
        parent = _parents(starts, ends)
        mine = np.flatnonzero(tid == thread)
        cand = np.searchsorted(starts, ts[mine], side="right") - 1
        for _ in range(len(rows)):
            outside = (cand >= 0) & (ends[np.maximum(cand, 0)] < ts[mine])
            if not outside.any():
                break
            cand[outside] = parent[cand[outside]]
        ok = cand >= 0
        out[mine[ok]] = rows["name"].to_numpy()[cand[ok]]
    return out


def _parents(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Index of each range's enclosing range (-1 at top level); ranges sorted by start."""
    parent, stack = np.full(len(starts), -1), []
    for i, (s, _e) in enumerate(zip(starts, ends)):
        while stack and ends[stack[-1]] < s:
            stack.pop()
        parent[i] = stack[-1] if stack else -1
        stack.append(i)
    return parent


# --- assembly ----------------------------------------------------------------------


def _assemble(
    path: Path, ev: KinetoEvents, gpu: pd.DataFrame, calls: pd.DataFrame
) -> tuple[pd.DataFrame, float, list[str]]:
    """Both row families in trace-format columns, rebased to the first event (``origin``), sorted by start."""
    origin = float(min(gpu["ts"].min(), calls["ts"].min() if len(calls) else np.inf))
    gaps, overlaps = _host_gaps(calls, origin)
    ts, tid = calls["ts"].to_numpy(), calls["tid"].to_numpy(dtype=object)
    annotation = _innermost(ev.annotations, tid, ts)
    step = _steps(ev.annotations, ts)
    group = np.where(pd.isna(step), annotation, step)
    host = _call_rows(calls, origin, gaps, group, annotation)
    host["gap_aten_ops"] = _gap_counts(calls, ev.cpu_ops)
    host["gap_ranges"] = _gap_counts(calls, ev.annotations[["tid", "ts"]])
    dev, notes = _gpu_rows(path, gpu, calls.assign(group=group, annotation=annotation), origin)
    ops = pd.concat([dev, host], ignore_index=True).sort_values(
        ["start_us", "source_index"], kind="stable", ignore_index=True
    )
    if overlaps:
        notes.append(
            f"{overlaps} host call(s) started before the previous call on their thread ended; their host_gap_us is 0"
        )
    for column in ("correlation", "wait_correlation", "source_index", "gap_aten_ops", "gap_ranges"):
        ops[column] = pd.to_numeric(ops[column]).astype("Int64")
    return ops[TRACE_SCHEMA.names], origin, notes


def _stream_names(streams: pd.Series) -> pd.Series:
    """Stream ids as the trace's stream names ("7"); None where unknown."""
    ids = pd.to_numeric(streams, errors="coerce").astype("Int64")
    return ids.astype(object).map(lambda v: None if v is pd.NA else str(v))


def _call_rows(
    calls: pd.DataFrame, origin: float, gaps: np.ndarray, group: np.ndarray, annotation: np.ndarray
) -> pd.DataFrame:
    start = calls["ts"].to_numpy() - origin
    return pd.DataFrame(
        {
            "device": np.full(len(calls), -1, dtype=np.int32),
            "stream": _stream_names(calls["stream"]).fillna("").to_numpy(),
            "kind": calls["kind"].to_numpy(),
            "name": calls["name"].to_numpy(),
            "bytes": calls["size"]
            .fillna(0)
            .where(calls["kind"].isin(["call_memcpy", "call_memset"]), 0)
            .astype(np.int64)
            .to_numpy(),
            "duration_us": calls["dur"].to_numpy(),
            "start_us": start,
            "launch_us": start,
            "thread": calls["tid"].to_numpy(),
            "group": group,
            "host_memory": None,
            "correlation": calls["correlation"].to_numpy(),
            "host_gap_us": gaps,
            "wait_stream": _stream_names(calls["wait_stream"]).to_numpy(),
            "wait_correlation": calls["wait_correlation"].to_numpy(),
            "annotation": annotation,
            "source_index": calls["idx"].to_numpy(),
            "compute_share": np.nan,
        }
    )


def _gpu_rows(path: Path, gpu: pd.DataFrame, calls: pd.DataFrame, origin: float) -> tuple[pd.DataFrame, list[str]]:
    """GPU ops joined to their launching call; launch clamped to start; copy bytes checked."""
    launch = calls.drop_duplicates("correlation")[["correlation", "ts", "tid", "group", "annotation", "size"]]
    gpu = gpu.merge(launch.rename(columns={"ts": "call_ts"}), on="correlation", how="left")
    nbytes = gpu["bytes"].fillna(gpu["size"])
    lacking = gpu["kind"].ne("kernel") & nbytes.isna()
    if lacking.any():
        bad = gpu[lacking].iloc[0]
        raise InputError(
            path,
            f"event {int(bad['idx'])}",
            f"{bad['kind']} {bad['name']!r} records no bytes (args.bytes), nor does its call (args.size)",
        )
    empty = gpu["kind"].str.startswith("copy_") & nbytes.eq(0)
    if empty.any():
        bad = gpu[empty].iloc[0]
        raise InputError(
            path,
            f"event {int(bad['idx'])}",
            f"{bad['kind']} {bad['name']!r} records 0 bytes (args.bytes): a copy moves something",
        )
    start = gpu["ts"].to_numpy() - origin
    launch_us = gpu["call_ts"].to_numpy(dtype=float) - origin
    early = launch_us > start
    notes = []
    if early.any():
        notes.append(
            f"{int(early.sum())} GPU op(s) started up to {np.max(launch_us[early] - start[early]):.3f} us "
            "before their launch call (clock skew); launch_us clamped to their start"
        )
    if unlinked := int(np.isnan(launch_us).sum()):
        notes.append(
            f"{unlinked} GPU op(s) have no launch call in the trace "
            "(launched before the recording window); launch_us is null"
        )
    rows = pd.DataFrame(
        {
            "device": gpu["device"].astype(np.int32).to_numpy(),
            "stream": _stream_names(gpu["stream"]).to_numpy(),
            "kind": gpu["kind"].to_numpy(),
            "name": gpu["name"].to_numpy(),
            "bytes": nbytes.where(gpu["kind"].ne("kernel"), 0).astype(np.int64).to_numpy(),
            "duration_us": gpu["dur"].to_numpy(),
            "start_us": start,
            "launch_us": np.fmin(launch_us, start),
            "thread": gpu["tid"].to_numpy(dtype=object),
            "group": gpu["group"].to_numpy(dtype=object),
            "host_memory": gpu["host_memory"].to_numpy(dtype=object),
            "correlation": gpu["correlation"].to_numpy(),
            "host_gap_us": np.nan,
            "wait_stream": None,
            "wait_correlation": pd.array([pd.NA] * len(gpu), dtype="Int64"),
            "annotation": gpu["annotation"].to_numpy(dtype=object),
            "source_index": gpu["idx"].to_numpy(),
            "compute_share": np.nan,
        }
    )
    return rows, notes


def _provenance(
    ev: KinetoEvents, origin: float, devices: tuple[int, ...], device: int | None, notes: list[str]
) -> Provenance:
    """Where the trace came from, its GPUs, recording date, and the import's caveats."""
    kept = [device] if device is not None else list(devices)
    names = sorted({ev.device_names.get(d, "") for d in kept} - {""})
    start = _absolute_start(ev.base_us + origin)
    synced = not ev.syncs.empty
    if not synced:
        notes.append(
            "cross-stream dependencies are not recorded: the trace has no cuda_sync events "
            "(record with torch.profiler._ExperimentalConfig(enable_cuda_sync_events=True)); "
            "event records and stream waits appear as host calls without wait_stream"
        )
    return Provenance(
        source=f"torch.profiler trace {ev.path.name} (harness.profiler_import)",
        hardware=", ".join(names) or "unknown GPU",
        date=start.date().isoformat() if start else dt.date.today().isoformat(),
        description=(
            f"devices {kept} of {list(devices)}; µs since "
            + (
                start.isoformat(timespec="microseconds")
                if start
                else "the first imported event (the file's clock is not epoch-based)"
            )
        ),
        sync_events="recorded" if synced else "absent",
        notes="\n".join(notes),
        profiler_mode=profiler_mode(ev),
        torch=ev.torch_version,
    )


def profiler_mode(ev: KinetoEvents) -> str:
    """The recording's torch.profiler mode (see :data:`harness.profile.PROFILER_MODES`)."""
    cpu = not ev.cpu_ops.empty or not ev.annotations.empty
    return ("cpu_cuda" if cpu else "cuda") + ("_sync" if not ev.syncs.empty else "")


HOST_BOUND_BUSY_FRAC = 0.7
"""A recording whose GPU ran less than this share of its span is taken as host-bound (warned about)."""


def gpu_busy_fraction(ops: pd.DataFrame) -> float:
    """Share of the trace's span (first op or call start to last end) that some GPU op ran."""
    gpu = ops[ops["device"] >= 0]
    if gpu.empty:
        return 0.0
    start, end = gpu["start_us"].to_numpy(float), (gpu["start_us"] + gpu["duration_us"]).to_numpy(float)
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum.accumulate(end[order])
    busy = float(e[-1] - s[0] - np.maximum(s[1:] - e[:-1], 0.0).sum())
    span = float((ops["start_us"] + ops["duration_us"]).max() - ops["start_us"].min())
    return busy / span if span > 0 else 1.0


def _mode_warnings(ops: pd.DataFrame, mode: str) -> tuple[str, ...]:
    """A host-bound recording taken with CPU activities: the mode that inflates a host-bound program most."""
    busy = gpu_busy_fraction(ops)
    if not mode.startswith("cpu") or busy >= HOST_BOUND_BUSY_FRAC:
        return ()
    return (
        f"host-bound recording (the GPU ran {busy:.0%} of its span) taken with CPU activities ({mode}): the "
        "profiler's per-op host overhead inflates it most in this mode. Simulate it with profiler_overhead = "
        '"subtract" and a profile calibrated by `harness calibrate --profiler`, or record with '
        "activities=[ProfilerActivity.CUDA] only (see traces/recorded/README.md)",
    )


def _absolute_start(epoch_us: float) -> dt.datetime | None:
    """Wall-clock time of the first imported event, when the file's clock is epoch-based."""
    if epoch_us < 1e15:  # before 2001: not an epoch clock
        return None
    return dt.datetime.fromtimestamp(epoch_us / 1e6, tz=dt.UTC)
