"""Export a results run's ops table as a Chrome trace in Kineto's own conventions.

``export_perfetto(ops, path)`` writes what torch.profiler would have written for
the run, so the file opens in the Perfetto UI (ui.perfetto.dev) and in tools
made for profiler traces (HolisticTraceAnalysis), and imports back through
:mod:`harness.profiler_import`:

* GPU ops on ``pid`` = device, ``tid`` = a numeric stream id (thread names say
  ``stream <id> <name>``): kernels (cat ``kernel``), copies (cat ``gpu_memcpy``,
  named ``Memcpy HtoD (Pinned -> Device)`` and the like), with ``args`` holding
  device, stream, correlation, bytes and the op's own name;
* one host process (pid :data:`HOST_PID`) with a track per host thread: a
  ``cuda_runtime`` slice per device op at its ``issue_us`` (cudaLaunchKernel,
  cudaMemcpyAsync, cudaEventRecord, cudaStreamWaitEvent; zero length: the ops
  table does not record the call's own cost), the host ops (``host_sync`` as
  cudaStreamSynchronize / cudaEventSynchronize, ``host_alloc`` as cudaMalloc,
  ``host_work`` and the rest as ``cpu_op`` slices);
* ``ac2g`` flow arrows from each launch to its GPU op (id = correlation);
* stream waits as ``cuda_sync`` "Stream Wait Event" slices naming the stream
  and the record call they wait on, as Kineto writes them with sync events on,
  so cross-stream dependencies survive the round trip.

Times are the table's µs (since the run began). The file is written to a
temporary sibling and renamed into place; a ``.gz`` suffix gzips it.
"""

from __future__ import annotations

import gzip
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.results import OPS_COLUMNS

HOST_PID = 100000
"""The host process's pid in exported traces (GPU processes use pid = device)."""

_COPY_NAMES = {
    "copy_h2d": ("HtoD", "{host} -> Device"),
    "copy_d2h": ("DtoH", "Device -> {host}"),
    "copy_d2d": ("DtoD", "Device -> Device"),
}
_HOST_MEMORY = {"pinned": "Pinned", "pageable": "Pageable"}
_LAUNCH_CALLS = {
    "kernel": "cudaLaunchKernel",
    "record": "cudaEventRecord",
    "wait": "cudaStreamWaitEvent",
    "memset": "cudaMemsetAsync",
}
_OPS_COLUMNS = OPS_COLUMNS[1:]  # a run's ops, without run_id


@dataclass(frozen=True)
class PerfettoExport:
    """What was written: the file, the numeric id given to each (device, stream) and host thread."""

    path: Path
    streams: dict[tuple[int, str], int]
    threads: dict[str, int]
    n_events: int


def export_perfetto(ops: pd.DataFrame, path: str | Path, title: str = "harness run") -> PerfettoExport:
    """Write one run's ops (results OPS_SCHEMA columns) as a Kineto-style Chrome trace JSON."""
    ops = _one_run(ops).sort_values(["issue_us", "op_id"], kind="stable")
    streams = _stream_ids(ops)
    threads = {name: i + 1 for i, name in enumerate(pd.unique(ops["thread"].fillna("main")))}
    events = _metadata(ops, streams, threads)
    records = {
        r.name: (int(r.op_id) + 1, streams[(int(r.device), r.stream)])
        for r in ops[ops["kind"] == "record"].itertuples()
    }
    for op in ops.itertuples(index=False):
        tid = threads[op.thread if isinstance(op.thread, str) else "main"]
        if op.device >= 0:
            events += _device_op(op, streams[(int(op.device), op.stream)], tid, records)
        else:
            events += _host_op(op, tid, streams)
    doc = {
        "schemaVersion": 1,
        "deviceProperties": [{"id": int(d), "name": "harness run"} for d in sorted({d for d, _ in streams})],
        "distributedInfo": {"rank": 0},
        "traceName": title,
        "displayTimeUnit": "ms",
        "traceEvents": events,
    }
    return PerfettoExport(_write_atomic(Path(path), doc), streams, threads, len(events))


def _one_run(ops: pd.DataFrame) -> pd.DataFrame:
    missing = [c for c in _OPS_COLUMNS if c not in ops.columns]
    if missing:
        raise ValueError(f"ops table lacks columns {missing}")
    if "run_id" in ops.columns and ops["run_id"].nunique() > 1:
        raise ValueError(f"ops table holds {ops['run_id'].nunique()} runs; select one (run_id) before exporting")
    return ops[_OPS_COLUMNS].copy()


def _stream_ids(ops: pd.DataFrame) -> dict[tuple[int, str], int]:
    """A numeric tid per (device, stream name), from 7 up (Kineto's default stream is 7)."""
    device_ops = ops[ops["device"] >= 0]
    pairs = pd.unique(pd.Series(list(zip(device_ops["device"].astype(int), device_ops["stream"]))))
    return {(int(d), s): 7 + i for i, (d, s) in enumerate(pairs)}


def _metadata(ops: pd.DataFrame, streams: dict, threads: dict) -> list[dict]:
    def meta(name: str, pid: int, tid: int, args: dict) -> dict:
        return {"name": name, "ph": "M", "ts": 0, "pid": pid, "tid": tid, "args": args}

    events = [
        meta("process_name", HOST_PID, 0, {"name": "harness host"}),
        meta("process_labels", HOST_PID, 0, {"labels": "CPU"}),
    ]
    for device in sorted({d for d, _ in streams}):
        events += [
            meta("process_name", device, 0, {"name": f"GPU {device}"}),
            meta("process_labels", device, 0, {"labels": f"GPU {device}"}),
        ]
        events.append(meta("process_sort_index", device, 0, {"sort_index": 5000000 + device}))
    events += [meta("thread_name", d, tid, {"name": f"stream {tid} {s}"}) for (d, s), tid in streams.items()]
    events += [meta("thread_name", HOST_PID, tid, {"name": name}) for name, tid in threads.items()]
    return events


def _slice(cat: str, name: str, pid: int, tid: int, start: float, end: float, args: dict) -> dict:
    ts = round(float(start), 3)
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "pid": pid,
        "tid": tid,
        "ts": ts,
        "dur": round(max(float(end) - ts, 0.0), 3),
        "args": args,
    }


def _device_op(op, stream_id: int, host_tid: int, records: dict) -> list[dict]:
    """The host call, the GPU-side event (if Kineto has one) and the flow between them."""
    corr, device = int(op.op_id) + 1, int(op.device)
    base = {
        "device": device,
        "stream": stream_id,
        "correlation": corr,
        "harness name": op.name,
        "stream name": op.stream,
    }
    call = _LAUNCH_CALLS.get(op.kind, "cudaMemcpyAsync")
    events = [_slice("cuda_runtime", call, HOST_PID, host_tid, op.issue_us, op.issue_us, {"correlation": corr})]
    if op.kind == "record":
        return events
    if op.kind == "wait":
        wait_corr, wait_stream = records.get(op.name, (-1, -1))
        sync = {
            **base,
            "cuda_sync_kind": "Stream Wait Event",
            "wait_on_stream": wait_stream,
            "wait_on_cuda_event_record_corr_id": wait_corr,
        }
        return events + [_slice("cuda_sync", "Stream Wait Event", device, stream_id, op.start_us, op.end_us, sync)]
    if op.kind in _COPY_NAMES:
        direction, sides = _COPY_NAMES[op.kind]
        name = f"Memcpy {direction} ({sides.format(host=_HOST_MEMORY.get(op.host_memory, 'Unknown'))})"
        gpu = _slice("gpu_memcpy", name, device, stream_id, op.start_us, op.end_us, {**base, "bytes": int(op.bytes)})
    else:
        cat = "gpu_memset" if op.kind == "memset" else "kernel"
        name = "Memset (Device)" if op.kind == "memset" else op.name
        gpu = _slice(
            cat,
            name,
            device,
            stream_id,
            op.start_us,
            op.end_us,
            {**base, "bytes": int(op.bytes)} if op.kind == "memset" else base,
        )
    flows = [
        {"ph": "s", "id": corr, "pid": HOST_PID, "tid": host_tid, "ts": events[0]["ts"], "cat": "ac2g", "name": "ac2g"},
        {
            "ph": "f",
            "id": corr,
            "pid": device,
            "tid": stream_id,
            "ts": gpu["ts"],
            "cat": "ac2g",
            "name": "ac2g",
            "bp": "e",
        },
    ]
    return events + [gpu] + flows


def _host_op(op, tid: int, streams: dict) -> list[dict]:
    """A host-thread op: syncs and allocations as runtime calls, the rest as CPU work."""
    corr = int(op.op_id) + 1
    if op.kind == "host_alloc":
        return [
            _slice(
                "cuda_runtime",
                "cudaMalloc",
                HOST_PID,
                tid,
                op.start_us,
                op.end_us,
                {"correlation": corr, "harness name": op.name},
            )
        ]
    if op.kind != "host_sync":
        return [_slice("cpu_op", op.name, HOST_PID, tid, op.start_us, op.end_us, {"harness kind": op.kind})]
    synced = re.fullmatch(r"sync:(.+)", str(op.name))
    target = next(((d, sid) for (d, s), sid in streams.items() if synced and s == synced.group(1)), None)
    call, kind = (
        ("cudaEventSynchronize", "Event Sync") if op.name == "sync_event" else ("cudaDeviceSynchronize", "Context Sync")
    )
    if target:
        call, kind = "cudaStreamSynchronize", "Stream Sync"
    args = {"correlation": corr, "harness name": op.name}
    events = [_slice("cuda_runtime", call, HOST_PID, tid, op.start_us, op.end_us, args)]
    if target:
        sync = {"cuda_sync_kind": kind, "stream": target[1], "correlation": corr, "device": target[0]}
        events.append(_slice("cuda_sync", kind, target[0], target[1], op.start_us, op.end_us, sync))
    return events


def _write_atomic(path: Path, doc: dict) -> Path:
    """Write JSON (gzipped for a .gz path) to a temporary sibling, then rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as raw:
            data = json.dumps(doc, separators=(",", ":")).encode()
            raw.write(gzip.compress(data, compresslevel=6) if path.suffix == ".gz" else data)
        os.replace(tmp, path)
    finally:
        Path(tmp).unlink(missing_ok=True)
    return path
