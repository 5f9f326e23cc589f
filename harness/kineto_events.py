"""Read a torch.profiler (Kineto) Chrome trace into typed, columnar event tables.

This is the parsing half of :mod:`harness.profiler_import`: it opens the file
(plain or gzipped JSON), checks it is a Chrome trace, and sorts the events that
matter into one DataFrame per family, each row keeping ``idx``, the event's
index in ``traceEvents`` (so every later error can name it):

* ``gpu``         ``kernel``, ``gpu_memcpy``, ``gpu_memset`` (pid = device, tid = stream);
* ``calls``       ``cuda_runtime`` / ``cuda_driver`` calls on host threads;
* ``syncs``       ``cuda_sync`` events (only present when recorded with
                  ``_ExperimentalConfig(enable_cuda_sync_events=True)``);
* ``annotations`` host ``user_annotation`` ranges (``ProfilerStep#N``, record_function);
* ``flows``       ``ac2g`` flow events (host launch -> GPU op), the fallback link;
* ``cpu_ops``     host ``cpu_op`` events (aten ops; absent when recorded with CUDA activities only):
                  only their thread and start are kept, to count the profiler events in each host gap.

Every number read is checked where it is read, naming the event: a JSON number (not text or
true/false), ``ts`` finite and >= 0, ``dur`` finite, >= 0 and at most a day
(:data:`MAX_RECORDED_US`), ids and sizes whole and >= 0; and the events together span at most
a day (:func:`check_span`: a damaged or mixed-clock ``ts`` is named).

Times stay in the file's own µs clock here (``ts`` as written; ``base_us`` is
``baseTimeNanoseconds`` / 1000 when the file has one, else 0). The whole file is
parsed at once with the standard library (measured: ~6x the JSON's size in
memory), so files whose JSON is larger than :data:`MAX_TRACE_BYTES` are refused
before parsing with a message saying so.
"""

from __future__ import annotations

import gzip
import json
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import InputError

MAX_TRACE_BYTES = 512 * 1024 * 1024
"""Largest uncompressed JSON accepted (512 MiB, ~3 GB of memory while parsing)."""

MAX_RECORDED_US = 86_400e6
"""Longest duration, and longest span of a recording's events, accepted (a day, in µs): beyond it a time is
taken as damaged (a profiler window is seconds to minutes)."""

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")
CALL_CATS = ("cuda_runtime", "cuda_driver")
_CHUNK = 16 * 1024 * 1024
_NUMBER_TYPES = frozenset({int, float, type(None)})  # what json.loads makes of a JSON number (or an absent field)


@dataclass
class KinetoEvents:
    """The events of one trace file that the importer uses, one table per family."""

    path: Path
    n_events: int
    base_us: float  # baseTimeNanoseconds / 1000, or 0 when ts is absolute
    gpu: pd.DataFrame  # idx, cat, name, device, stream, ts, dur, correlation, bytes
    calls: pd.DataFrame  # idx, cat, name, pid, tid, ts, dur, correlation, size
    syncs: pd.DataFrame  # idx, sync_kind, device, stream, correlation, wait_stream, wait_correlation
    annotations: pd.DataFrame  # idx, name, pid, tid, ts, dur
    flows: pd.DataFrame  # idx, ph, id, pid, tid, ts
    device_names: dict[int, str] = field(default_factory=dict)
    cpu_ops: pd.DataFrame = field(default_factory=lambda: pd.DataFrame({"idx": [], "tid": [], "ts": []}))
    torch_version: str = ""  # where the file says (a top-level "torch_version" / "pytorch_version"), else ""


def read_json_bytes(path: Path, limit: int = MAX_TRACE_BYTES) -> bytes:
    """The file's JSON text (gunzipped when it is gzip), refusing more than ``limit`` bytes."""
    if not path.is_file():
        raise InputError(path, "", "profiler trace not found")
    with path.open("rb") as raw:
        gzipped = raw.read(2) == b"\x1f\x8b"
    if not gzipped:
        if path.stat().st_size > limit:
            raise InputError(path, "", _too_big(path.stat().st_size, limit))
        return path.read_bytes()
    chunks, total = [], 0
    try:
        with gzip.open(path, "rb") as stream:
            while chunk := stream.read(_CHUNK):
                total += len(chunk)
                if total > limit:
                    raise InputError(path, "", _too_big(total, limit, "at least "))
                chunks.append(chunk)
    except (OSError, EOFError, zlib.error) as err:
        around = sum(chunk.count(b'"ph"') for chunk in chunks)
        where = f"byte {total} of the uncompressed data (around event {around})"
        raise InputError(path, where, f"corrupt or truncated gzip ({err})") from None
    return b"".join(chunks)


def _too_big(size: int, limit: int, prefix: str = "") -> str:
    return (
        f"trace JSON is {prefix}{size / 2**20:.0f} MiB, above the {limit / 2**20:.0f} MiB import limit "
        "(the whole file is parsed in memory); record a shorter window (schedule(active=...)) or split it"
    )


def parse_events(path: Path, data: bytes) -> tuple[list, dict]:
    """Parse the JSON; return the event list and the top-level object (empty for a bare array)."""
    try:
        doc = json.loads(data)
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise _json_error(path, data, err) from None
    except RecursionError:
        raise InputError(path, "", "not a Chrome trace (JSON nested too deeply)") from None
    if isinstance(doc, list):
        return doc, {}
    if not isinstance(doc, dict) or not isinstance(doc.get("traceEvents"), list):
        raise InputError(path, "", "not a Chrome trace: expected a JSON object with a 'traceEvents' list")
    return doc["traceEvents"], doc


def _json_error(path: Path, data: bytes, err: ValueError) -> InputError:
    pos = getattr(err, "pos", None) or getattr(err, "start", 0)
    around = max(data.count(b'"ph"', 0, pos) - 1, 0)
    ends_early = pos >= len(data.rstrip()) - 1 or str(getattr(err, "msg", "")).startswith("Unterminated string")
    what = "file ends early (truncated)" if ends_early else f"not valid JSON ({getattr(err, 'msg', err)})"
    return InputError(path, f"byte {pos} (around event {around})", what)


def load_kineto_events(path: Path, limit: int = MAX_TRACE_BYTES) -> KinetoEvents:
    """Read ``path`` and sort its events into typed tables; errors name the file and event index."""
    path = Path(path)
    events, top = parse_events(path, read_json_bytes(path, limit))
    groups = _group_indices(path, events)
    base_ns = top.get("baseTimeNanoseconds")
    loaded = KinetoEvents(
        path=path,
        n_events=len(events),
        base_us=float(base_ns) / 1000.0 if isinstance(base_ns, (int, float)) else 0.0,
        gpu=_gpu_table(path, events, groups["gpu"]),
        calls=_call_table(path, events, groups["calls"]),
        syncs=_sync_table(events, groups["syncs"]),
        annotations=_annotation_table(path, events, groups["annotations"]),
        flows=_flow_table(path, events, groups["flows"]),
        device_names=_device_names(top.get("deviceProperties")),
        cpu_ops=_cpu_op_table(path, events, groups["cpu_ops"]),
        torch_version=str(top.get("torch_version") or top.get("pytorch_version") or ""),
    )
    check_span(path, [loaded.gpu, loaded.calls, loaded.annotations, loaded.cpu_ops, loaded.flows])
    return loaded


def _group_indices(path: Path, events: list) -> dict[str, list[int]]:
    """Event indices per family, in file order; a non-object event is rejected by index."""
    groups: dict[str, list[int]] = {"gpu": [], "calls": [], "syncs": [], "annotations": [], "flows": [], "cpu_ops": []}
    for i, event in enumerate(events):
        if not isinstance(event, dict):
            raise InputError(path, f"event {i}", f"expected a JSON object, got {type(event).__name__}")
        ph, cat = event.get("ph"), event.get("cat")
        if ph == "X":
            if cat in GPU_CATS:
                groups["gpu"].append(i)
            elif cat in CALL_CATS:
                groups["calls"].append(i)
            elif cat == "cuda_sync":
                groups["syncs"].append(i)
            elif cat == "user_annotation":
                groups["annotations"].append(i)
            elif cat == "cpu_op":
                groups["cpu_ops"].append(i)
        elif cat == "ac2g" and ph in ("s", "f"):
            groups["flows"].append(i)
    for family in ("gpu", "calls", "syncs"):  # the families whose args are read
        idx = groups[family]
        if not {type(events[i].get("args")) for i in idx} <= {dict, type(None)}:
            i = next(i for i in idx if not isinstance(events[i].get("args"), (dict, type(None))))
            got = type(events[i]["args"]).__name__
            raise InputError(path, f"event {i}, field 'args'", f"expected a JSON object, got {got}")
    return groups


def _numbers(path: Path, events: list, idx: list[int], key: str, args: bool = False) -> np.ndarray:
    """``events[i][key]`` (or ``["args"][key]``) as float64 for each index; NaN where absent.

    A value that is not a JSON number (a string, a list, true/false) is refused naming the event.
    """
    get = (lambda e: (e.get("args") or {}).get(key)) if args else (lambda e: e.get(key))
    raw = [get(events[i]) for i in idx]
    where = f"args.{key}" if args else key
    if not set(map(type, raw)) <= _NUMBER_TYPES:  # numpy would read true as 1 and "30" as 30.0
        for i, v in zip(idx, raw):
            if type(v) not in _NUMBER_TYPES:
                raise InputError(path, f"event {i}, field '{where}'", f"expected a number, got {json.dumps(v)}")
    try:
        return np.array([np.nan if v is None else v for v in raw], dtype=np.float64)
    except (TypeError, ValueError):
        for i, v in zip(idx, raw):
            try:
                float(np.nan if v is None else v)
            except (TypeError, ValueError):
                raise InputError(path, f"event {i}, field '{where}'", f"expected a number, got {v!r}") from None
        raise


def _whole(
    path: Path, events: list, idx: list[int], key: str, args: bool = False, minimum: int = 0
) -> np.ndarray:
    """``_numbers`` that must be whole numbers >= ``minimum`` where present (ids, sizes, devices, streams)."""
    values = _numbers(path, events, idx, key, args)
    present = ~np.isnan(values)
    bad = present & (~np.isfinite(values) | (values < minimum) | (np.round(values) != values))
    if bad.any():
        i = int(bad.argmax())
        where = f"args.{key}" if args else key
        got = values[i]
        rule = f"must be a whole number >= {minimum}, got {got:.17g}"
        raise InputError(path, f"event {idx[i]}, field '{where}'", rule)
    return values


def _times(path: Path, events: list, idx: list[int], with_dur: bool = True) -> dict[str, np.ndarray]:
    """``ts`` and ``dur`` (µs) checked present, finite and >= 0, ``dur`` at most a day, naming the first bad event."""
    out = {"ts": _numbers(path, events, idx, "ts")}
    if with_dur:
        out["dur"] = _numbers(path, events, idx, "dur")
    for key, values in out.items():
        with np.errstate(invalid="ignore"):
            bad = ~np.isfinite(values) | (values < 0) | ((values > MAX_RECORDED_US) if key == "dur" else False)
        if bad.any():
            i = int(bad.argmax())
            rule = "a finite number >= 0" + (f" and at most a day ({MAX_RECORDED_US:.3g} µs)" if key == "dur" else "")
            raise InputError(
                path, f"event {idx[i]}, field '{key}'", f"must be {rule}, got {_shown(events[idx[i]].get(key))}"
            )
    return out


def _shown(value: object) -> str:
    """A field's value as the error shows it (``None``: absent)."""
    return "nothing (the field is absent)" if value is None else repr(value)


def check_span(path: Path, tables: list[pd.DataFrame]) -> None:
    """Refuse a recording whose events (``idx``, ``ts`` and optional ``dur`` columns) span more than a day.

    The event farthest from the median start is named: the one whose clock is off.
    """
    starts = np.concatenate([t["ts"].to_numpy(dtype=float) for t in tables])
    if len(starts) == 0:
        return
    ends = np.concatenate([(t["ts"] + t["dur"] if "dur" in t else t["ts"]).to_numpy(dtype=float) for t in tables])
    if ends.max() - starts.min() <= MAX_RECORDED_US:
        return
    index = np.concatenate([t["idx"].to_numpy(dtype=np.int64) for t in tables])
    names = [name for t in tables for name in (t["name"] if "name" in t else [""] * len(t))]
    middle = float(np.median(starts))
    far = int(np.argmax(np.maximum(np.abs(starts - middle), np.abs(ends - middle))))
    off_s = max(abs(starts[far] - middle), abs(ends[far] - middle)) / 1e6
    raise InputError(
        path,
        f"event {index[far]}" + (f" ({names[far][:60]!r})" if names[far] else ""),
        f"ts {starts[far]:.17g} lies {off_s:.6g} s from the middle of the recording; a recording spans at most a day "
        "(a damaged or mixed-clock timestamp)",
    )


def _ints(values: np.ndarray) -> pd.Series:
    return pd.Series(values).round().astype("Int64")


def _gpu_table(path: Path, events: list, idx: list[int]) -> pd.DataFrame:
    times = _times(path, events, idx)
    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "cat": [events[i]["cat"] for i in idx],
            "name": [str(events[i].get("name", "")) for i in idx],
            "device": _ints(_whole(path, events, idx, "pid")),
            "stream": _ints(_whole(path, events, idx, "tid")),
            **times,
            "correlation": _ints(_whole(path, events, idx, "correlation", args=True)),
            "bytes": _ints(_whole(path, events, idx, "bytes", args=True)),
        }
    )


def _call_table(path: Path, events: list, idx: list[int]) -> pd.DataFrame:
    sizes = [(events[i].get("args") or {}).get("size") for i in idx]  # ROCm: bytes of a hipMemcpy, as a string
    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "cat": [events[i]["cat"] for i in idx],
            "name": [str(events[i].get("name", "")) for i in idx],
            "pid": [events[i].get("pid") for i in idx],
            "tid": [str(events[i].get("tid")) for i in idx],
            **_times(path, events, idx),
            "correlation": _ints(_whole(path, events, idx, "correlation", args=True)),
            "size": _ints(pd.to_numeric(pd.Series(sizes, dtype=object), errors="coerce").to_numpy(dtype=float)),
        }
    )


def _sync_table(events: list, idx: list[int]) -> pd.DataFrame:
    args = [events[i].get("args") or {} for i in idx]

    def col(key: str) -> pd.Series:
        return _ints(
            pd.to_numeric(pd.Series([a.get(key) for a in args], dtype=object), errors="coerce").to_numpy(dtype=float)
        )

    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "sync_kind": [str(a.get("cuda_sync_kind", events[i].get("name", ""))) for a, i in zip(args, idx)],
            "device": col("device"),
            "stream": col("stream"),
            "correlation": col("correlation"),
            "wait_stream": col("wait_on_stream"),
            "wait_correlation": col("wait_on_cuda_event_record_corr_id"),
        }
    )


def _annotation_table(path: Path, events: list, idx: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "name": [str(events[i].get("name", "")) for i in idx],
            "pid": [events[i].get("pid") for i in idx],
            "tid": [str(events[i].get("tid")) for i in idx],
            **_times(path, events, idx),
        }
    )


def _cpu_op_table(path: Path, events: list, idx: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "tid": [str(events[i].get("tid")) for i in idx],
            "ts": _times(path, events, idx, with_dur=False)["ts"],
        }
    )


def _flow_table(path: Path, events: list, idx: list[int]) -> pd.DataFrame:
    return pd.DataFrame(
        {
            "idx": np.array(idx, dtype=np.int64),
            "ph": [events[i]["ph"] for i in idx],
            "id": [str(events[i].get("id")) for i in idx],
            "pid": [str(events[i].get("pid")) for i in idx],
            "tid": [str(events[i].get("tid")) for i in idx],
            "ts": _times(path, events, idx, with_dur=False)["ts"],
        }
    )


def _device_names(props: object) -> dict[int, str]:
    if not isinstance(props, list):
        return {}
    return {int(p["id"]): str(p.get("name", "")) for p in props if isinstance(p, dict) and isinstance(p.get("id"), int)}
