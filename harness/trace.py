"""The op-trace format: recorded GPU work as a Parquet table (format version 3).

One row per op, in the vocabulary of the results' ops table, so that the same
file can hold a synthetic workload description, a harness replay, or what a
PyTorch profiler trace records (kernels and copies with their streams, bytes,
launch and start times, and every CUDA runtime call of each host thread;
:mod:`harness.profiler_import` writes those). Version 1 files (the first twelve
columns) and version 2 files (without the ``gap_*`` counts) are still read; the
later columns then read as null (a recording then cannot say which profiler
events its gaps hold, and profiler-overhead compensation says so):

==============  =========  ========  ===================================================
column          type       required  meaning
==============  =========  ========  ===================================================
device          int32      yes       GPU index (-1 for host-side ops)
stream          string     yes       stream name or profiler stream id
kind            string     yes       GPU ops: kernel, copy_h2d, copy_d2h, copy_d2d, memset;
                                     record, wait, host_work, host_sync, host_alloc; host
                                     runtime calls (device -1): the CALL_KINDS below
name            string     yes       kernel or op name
bytes           int64      yes       bytes moved (copies); 0 otherwise
duration_us     float64    yes       measured duration, µs, >= 0
start_us        float64    no        device start time, µs (null when unknown)
launch_us       float64    no        host time of the launch call, µs
thread          string     no        host thread that launched it
group           string     no        logical unit the op belongs to (segment, layer,
                                     step, request); workloads aggregate by it
compute_share   float64    no        share of the GPU's compute a kernel occupies
host_memory     string     no        pinned / pageable for host copies ("" when the
                                     recording does not say)
-- version 2 --
correlation     int64      no        runtime correlation id: a host call and the GPU ops
                                     it launched share it (a graph launch: many ops)
host_gap_us     float64    no        host calls: the thread's own CPU time between the end
                                     of its previous call (or time 0) and this call, µs
wait_stream     string     no        call_wait / call_sync_event: the stream whose event
                                     is waited on (null when sync events were not recorded)
wait_correlation int64     no        ... and the correlation of that event's record call
annotation      string     no        innermost record_function range around the host call
source_index    int64      no        index of the event in the source file (traceEvents)
-- version 3 --
gap_aten_ops    int64      no        host calls: the profiler's aten ops (``cpu_op``) that began
                                     on the call's thread in its gap (after the previous call
                                     ended, up to this call's start); 0 in a CUDA-only recording
gap_ranges      int64      no        ... and the record_function ranges (``user_annotation``,
                                     ``ProfilerStep#N`` too) that began there
==============  =========  ========  ===================================================

Times are µs; in an imported trace, µs since the first imported event.

Reading a trace (:func:`load_trace`) and writing one (:func:`write_trace`) check it as
strictly as a spec, naming the file and the first bad row or column: each column has its
type (durations stored as text are refused), required values are present (not null or NaN),
times are finite, >= 0 and at most a day (:data:`MAX_TRACE_TIME_US`), copies move bytes,
GPU ops are on a device >= 0 and host calls on -1, ``host_memory`` is one of
:data:`HOST_MEMORY`, and where the rows carry correlations they are consistent (one host
call per id, a call's GPU ops on one device, one GPU op per kernel launch, no GPU op twice).

File metadata (Parquet key-value, UTF-8): ``harness.trace.format_version``
("1"), ``harness.trace.source`` (where it came from: a tool and command, a
recording, a generator), ``harness.trace.hardware`` (the GPU, or "synthetic"),
``harness.trace.date`` (ISO date), and optionally ``harness.trace.description``,
``harness.trace.sync_events`` ("recorded" / "absent": whether cross-stream
dependencies were recorded), ``harness.trace.profiler_mode`` (an imported
recording's torch.profiler mode: ``cpu_cuda``, ``cpu_cuda_sync``, ``cuda`` or
``cuda_sync``, see :data:`harness.profile.PROFILER_MODES`), ``harness.trace.torch``
(the torch version, where the recording says) and ``harness.trace.notes``
(caveats of an import).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import InputError
from harness.memory_release import release_freed_memory
from harness.runtime import OpKind
from harness.trace_rows import ArrowColumns, FrameColumns, check_rows

TRACE_FORMAT_VERSION = "3"
READABLE_TRACE_VERSIONS = ("1", "2", "3")

TRACE_SCHEMA = pa.schema(
    [
        pa.field("device", pa.int32(), nullable=False),
        pa.field("stream", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),
        pa.field("name", pa.string(), nullable=False),
        pa.field("bytes", pa.int64(), nullable=False),
        pa.field("duration_us", pa.float64(), nullable=False),
        pa.field("start_us", pa.float64()),
        pa.field("launch_us", pa.float64()),
        pa.field("thread", pa.string()),
        pa.field("group", pa.string()),
        pa.field("compute_share", pa.float64()),
        pa.field("host_memory", pa.string()),
        pa.field("correlation", pa.int64()),
        pa.field("host_gap_us", pa.float64()),
        pa.field("wait_stream", pa.string()),
        pa.field("wait_correlation", pa.int64()),
        pa.field("annotation", pa.string()),
        pa.field("source_index", pa.int64()),
        pa.field("gap_aten_ops", pa.int64()),
        pa.field("gap_ranges", pa.int64()),
    ]
)
REQUIRED_COLUMNS = [f.name for f in TRACE_SCHEMA if not f.nullable]
REQUIRED_METADATA = ("source", "hardware", "date")
GPU_KINDS = ("kernel", "copy_h2d", "copy_d2h", "copy_d2d", "memset")
CALL_KINDS = (
    "call_launch",  # cudaLaunchKernel and the like: one kernel
    "call_graph_launch",  # cudaGraphLaunch: every kernel of the graph shares its correlation
    "call_memcpy",
    "call_memset",
    "call_sync_stream",
    "call_sync_device",
    "call_sync_event",
    "call_record",  # cudaEventRecord
    "call_wait",  # cudaStreamWaitEvent
    "call_malloc",
    "call_free",
    "call_other",  # any other runtime call (queries, attributes, stream creation, ...)
)
KNOWN_KINDS = frozenset({k.value for k in OpKind} | set(GPU_KINDS) | set(CALL_KINDS))
COPY_KINDS = ("copy_h2d", "copy_d2h", "copy_d2d")
HOST_MEMORY = ("pinned", "pageable", "")
MAX_TRACE_TIME_US = 86_400e6
"""Longest duration or time (µs since the trace's start) a trace may give: a day. Beyond it a value is
taken as damaged (a recording spans seconds to minutes; a synthetic op lasts ms)."""
TIME_COLUMNS = ("duration_us", "start_us", "launch_us", "host_gap_us")


@dataclass(frozen=True)
class Provenance:
    source: str
    hardware: str
    date: str
    description: str = ""
    sync_events: str = ""  # "recorded" / "absent" for an imported profiler trace
    notes: str = ""  # caveats of an import, one per line
    profiler_mode: str = ""  # an imported recording's torch.profiler mode (harness.profile.PROFILER_MODES)
    torch: str = ""  # the torch version that recorded it, where the recording says

    def to_metadata(self) -> dict[bytes, bytes]:
        meta = {
            "format_version": TRACE_FORMAT_VERSION,
            **{k: v for k, v in self.__dict__.items() if v or k == "description"},
        }
        return {f"harness.trace.{k}".encode(): str(v).encode() for k, v in meta.items()}


@dataclass(frozen=True)
class Trace:
    path: Path
    ops: pd.DataFrame
    provenance: Provenance
    format_version: str = TRACE_FORMAT_VERSION  # the file's (older versions lack later columns: null)


def write_trace(path: Path, ops: pd.DataFrame, provenance: Provenance) -> Path:
    """Validate and write a trace; the file appears only once complete."""
    frame = ops.copy()
    for field in TRACE_SCHEMA:
        if field.name not in frame.columns:
            if not field.nullable:
                raise ValueError(f"trace is missing required column {field.name!r}")
            frame[field.name] = None
    check_rows(Path(path), FrameColumns(frame))
    table = pa.Table.from_pandas(frame[TRACE_SCHEMA.names], schema=TRACE_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(provenance.to_metadata())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    try:
        pq.write_table(table, partial)
        partial.replace(path)
    finally:
        partial.unlink(missing_ok=True)
    return path


def read_stamped_parquet(
    path: Path,
    what: str,
    prefix: str,
    version: str | tuple[str, ...],
    required_metadata: Iterable[str],
    required_columns: Iterable[str],
    read_dictionary: Iterable[str] = (),
) -> tuple[pa.Table, dict[str, str]]:
    """Read a Parquet file whose metadata carries ``<prefix>.format_version`` and provenance keys.

    Checks the version (one, or a tuple of those accepted), that every ``<prefix>.<key>`` of ``required_metadata`` is
    non-empty and that the required columns exist; errors name the file and the
    key or column. Returns the table and its metadata, decoded; the string columns named in ``read_dictionary``
    come dictionary-encoded.
    """
    if not path.exists():
        raise InputError(path, "", f"{what} not found")
    try:
        table = _read_parquet(path, list(read_dictionary) or None)
    except Exception as err:  # pyarrow raises several types for malformed files
        raise InputError(path, "", f"not a readable Parquet file ({err})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    found = meta.get(f"{prefix}.format_version")
    accepted = (version,) if isinstance(version, str) else tuple(version)
    if found not in accepted:
        expected = " or ".join(repr(v) for v in accepted)
        raise InputError(path, f"metadata '{prefix}.format_version'", f"expected {expected}, found {found!r}")
    for key in required_metadata:
        if not meta.get(f"{prefix}.{key}"):
            raise InputError(path, f"metadata '{prefix}.{key}'", "missing (provenance is required)")
    for column in required_columns:
        if column not in table.column_names:
            raise InputError(path, f"column '{column}'", "missing")
    return table, meta


def _read_parquet(path: Path, read_dictionary: list[str] | None) -> pa.Table:
    """A Parquet file's table. A file is read by its own reader (``ParquetFile``), not through the dataset layer
    ``pq.read_table`` builds (a folder is read that way): the same table, at a third of the CPU time in a fresh
    process (a 1 M-row trace: 0.15-0.19 s against 0.6-0.74 s on the dev box)."""
    if not path.is_file():
        return pq.read_table(path, read_dictionary=read_dictionary)
    with pq.ParquetFile(path, read_dictionary=read_dictionary) as parquet:
        return parquet.read()


def load_trace(path: Path, categorical_strings: bool = False) -> Trace:
    """Read and validate a trace file; errors name the file and the column or row.

    The rows are checked on the Arrow table as read (:mod:`harness.trace_rows`), its strings
    dictionary-encoded; the frame then has them as pandas strings, or (``categorical_strings``)
    as pandas categoricals: the same values at a small part of the memory and time (a reader
    that only compares, groups or factorizes them, such as the recorded workload)."""
    path = Path(path)
    table, meta = read_stamped_parquet(
        path,
        "trace file",
        "harness.trace",
        READABLE_TRACE_VERSIONS,
        REQUIRED_METADATA,
        REQUIRED_COLUMNS,
        read_dictionary=(strings := _stored_strings(path)),
    )
    _check_types(path, table)
    check_rows(path, ArrowColumns(table))
    if not categorical_strings:  # back to the stored type
        for name in strings:
            i = table.column_names.index(name)
            table = table.set_column(i, name, table.column(i).cast(table.schema.field(i).type.value_type))
    frame = table.to_pandas(split_blocks=True, self_destruct=True)  # each column freed once converted
    for field in TRACE_SCHEMA:
        if field.name not in frame.columns:
            frame[field.name] = None
    provenance = Provenance(
        meta["harness.trace.source"],
        meta["harness.trace.hardware"],
        meta["harness.trace.date"],
        meta.get("harness.trace.description", ""),
        meta.get("harness.trace.sync_events", ""),
        meta.get("harness.trace.notes", ""),
        meta.get("harness.trace.profiler_mode", ""),
        meta.get("harness.trace.torch", ""),
    )
    trace = Trace(path, frame[TRACE_SCHEMA.names], provenance, meta["harness.trace.format_version"])
    del table, frame
    release_freed_memory()  # the Arrow table and the reader's buffers (a long trace's: hundreds of MB)
    return trace


def _stored_strings(path: Path) -> list[str]:
    """The columns a Parquet file stores as plain strings (none where its schema cannot be read)."""
    try:
        schema = pq.read_schema(path)
    except Exception:  # read_stamped_parquet names what is wrong with the file
        return []
    return [f.name for f in schema if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)]


def require_values(path: Path, ops: pd.DataFrame, column: str, rows: np.ndarray, why: str) -> None:
    """Refuse the first of ``rows`` (a boolean mask) whose optional ``column`` is null, naming it and ``why``."""
    if (i := _first(rows & ops[column].isna().to_numpy())) is not None:
        raise InputError(path, f"row {i}, column '{column}'", f"missing value ({why})")


def _first(mask: np.ndarray) -> int | None:
    return int(mask.argmax()) if mask.any() else None


def _type_fits(found: pa.DataType, wanted: pa.DataType) -> bool:
    """Whether a column stored as ``found`` reads as the schema's ``wanted`` without a change of meaning."""
    if pa.types.is_null(found):  # a column of nulls only
        return True
    if pa.types.is_integer(wanted):
        return pa.types.is_integer(found)
    if pa.types.is_floating(wanted):
        return pa.types.is_integer(found) or pa.types.is_floating(found)
    if pa.types.is_string(wanted):
        return pa.types.is_string(found) or pa.types.is_large_string(found) or pa.types.is_dictionary(found)
    return found.equals(wanted)


def _check_types(path: Path, table: pa.Table) -> None:
    """Refuse a column stored with another type than the format's, naming it and its first value."""
    for field in TRACE_SCHEMA:
        if field.name not in table.column_names:
            continue
        column = table.column(field.name)
        if pa.types.is_dictionary(column.type):  # strings are read dictionary-encoded: their values' type counts
            if pa.types.is_string(field.type) and _type_fits(column.type.value_type, field.type):
                continue
            found = column.type.value_type
        elif _type_fits(column.type, field.type):
            continue
        else:
            found = column.type
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        row = _first(valid)
        where = f"row {row}, column '{field.name}'" if row is not None else f"column '{field.name}'"
        shown = f": {column[row].as_py()!r}" if row is not None else ""
        raise InputError(path, where, f"expected {_TYPE_WORDS.get(str(field.type), field.type)}, found {found}{shown}")


_TYPE_WORDS = {
    "int32": "whole numbers (int32)",
    "int64": "whole numbers (int64)",
    "double": "numbers (float64)",
    "string": "text (string)",
}
