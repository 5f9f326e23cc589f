"""The op-trace format: recorded GPU work as a Parquet table (format version 1).

One row per op, in the vocabulary of the results' ops table, so that the same
file can hold a synthetic workload description, a harness replay, or what a
PyTorch profiler trace records (kernels and copies with their streams, bytes,
launch and start times):

==============  =========  ========  ===================================================
column          type       required  meaning
==============  =========  ========  ===================================================
device          int32      yes       GPU index (-1 for host-side ops)
stream          string     yes       stream name or profiler stream id
kind            string     yes       kernel, copy_h2d, copy_d2h, copy_d2d, record, wait,
                                     host_work, host_sync
name            string     yes       kernel or op name
bytes           int64      yes       bytes moved (copies); 0 otherwise
duration_us     float64    yes       measured duration, µs, >= 0
start_us        float64    no        device start time, µs (null when unknown)
launch_us       float64    no        host time of the launch call, µs
thread          string     no        host thread that launched it
group           string     no        logical unit the op belongs to (segment, layer,
                                     step, request); workloads aggregate by it
compute_share   float64    no        share of the GPU's compute a kernel occupies
host_memory     string     no        pinned / pageable for host copies
==============  =========  ========  ===================================================

File metadata (Parquet key-value, UTF-8): ``harness.trace.format_version``
("1"), ``harness.trace.source`` (where it came from: a tool and command, a
recording, a generator), ``harness.trace.hardware`` (the GPU, or "synthetic"),
``harness.trace.date`` (ISO date), and optionally ``harness.trace.description``.
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
from harness.runtime import OpKind

TRACE_FORMAT_VERSION = "1"

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
    ]
)
REQUIRED_COLUMNS = [f.name for f in TRACE_SCHEMA if not f.nullable]
REQUIRED_METADATA = ("source", "hardware", "date")
_KINDS = {k.value for k in OpKind}


@dataclass(frozen=True)
class Provenance:
    source: str
    hardware: str
    date: str
    description: str = ""

    def to_metadata(self) -> dict[bytes, bytes]:
        meta = {"format_version": TRACE_FORMAT_VERSION, **self.__dict__}
        return {f"harness.trace.{k}".encode(): str(v).encode() for k, v in meta.items()}


@dataclass(frozen=True)
class Trace:
    path: Path
    ops: pd.DataFrame
    provenance: Provenance


def write_trace(path: Path, ops: pd.DataFrame, provenance: Provenance) -> Path:
    """Validate and write a trace; the file appears only once complete."""
    frame = ops.copy()
    for field in TRACE_SCHEMA:
        if field.name not in frame.columns:
            if not field.nullable:
                raise ValueError(f"trace is missing required column {field.name!r}")
            frame[field.name] = None
    _check_rows(Path(path), frame)
    table = pa.Table.from_pandas(frame[TRACE_SCHEMA.names], schema=TRACE_SCHEMA, preserve_index=False)
    table = table.replace_schema_metadata(provenance.to_metadata())
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return path


def read_stamped_parquet(
    path: Path, what: str, prefix: str, version: str, required_metadata: Iterable[str], required_columns: Iterable[str]
) -> tuple[pa.Table, dict[str, str]]:
    """Read a Parquet file whose metadata carries ``<prefix>.format_version`` and provenance keys.

    Checks the version, that every ``<prefix>.<key>`` of ``required_metadata`` is
    non-empty and that the required columns exist; errors name the file and the
    key or column. Returns the table and its metadata, decoded.
    """
    if not path.exists():
        raise InputError(path, "", f"{what} not found")
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for malformed files
        raise InputError(path, "", f"not a readable Parquet file ({err})") from None
    meta = {k.decode(): v.decode() for k, v in (table.schema.metadata or {}).items()}
    found = meta.get(f"{prefix}.format_version")
    if found != version:
        raise InputError(path, f"metadata '{prefix}.format_version'", f"expected {version!r}, found {found!r}")
    for key in required_metadata:
        if not meta.get(f"{prefix}.{key}"):
            raise InputError(path, f"metadata '{prefix}.{key}'", "missing (provenance is required)")
    for column in required_columns:
        if column not in table.column_names:
            raise InputError(path, f"column '{column}'", "missing")
    return table, meta


def load_trace(path: Path) -> Trace:
    """Read and validate a trace file; errors name the file and the column or row."""
    path = Path(path)
    table, meta = read_stamped_parquet(path, "trace file", "harness.trace", TRACE_FORMAT_VERSION, REQUIRED_METADATA, REQUIRED_COLUMNS)
    frame = table.to_pandas()
    for field in TRACE_SCHEMA:
        if field.name not in frame.columns:
            frame[field.name] = None
    _check_rows(path, frame)
    provenance = Provenance(
        meta["harness.trace.source"],
        meta["harness.trace.hardware"],
        meta["harness.trace.date"],
        meta.get("harness.trace.description", ""),
    )
    return Trace(path, frame[TRACE_SCHEMA.names], provenance)


def _first(mask: np.ndarray) -> int | None:
    return int(mask.argmax()) if mask.any() else None


def _check_rows(path: Path, frame: pd.DataFrame) -> None:
    """Reject the first bad row, naming it (rows count from 0)."""
    for column in REQUIRED_COLUMNS:
        if (i := _first(frame[column].isna().to_numpy())) is not None:
            raise InputError(path, f"row {i}, column '{column}'", "missing value")
    durations = pd.to_numeric(frame["duration_us"], errors="coerce").to_numpy(dtype=float)
    if (i := _first(~np.isfinite(durations) | (durations < 0))) is not None:
        raise InputError(path, f"row {i}, column 'duration_us'", f"must be a finite number >= 0, got {frame['duration_us'].iloc[i]!r}")
    sizes = pd.to_numeric(frame["bytes"], errors="coerce").to_numpy(dtype=float)
    if (i := _first(~np.isfinite(sizes) | (sizes < 0))) is not None:
        raise InputError(path, f"row {i}, column 'bytes'", f"must be an integer >= 0, got {frame['bytes'].iloc[i]!r}")
    if (i := _first(~frame["kind"].isin(_KINDS).to_numpy())) is not None:
        raise InputError(path, f"row {i}, column 'kind'", f"unknown op kind {frame['kind'].iloc[i]!r}; expected one of {sorted(_KINDS)}")
    shares = pd.to_numeric(frame["compute_share"], errors="coerce").to_numpy(dtype=float)
    if (i := _first(~np.isnan(shares) & ~((shares > 0) & (shares <= 1)))) is not None:
        raise InputError(path, f"row {i}, column 'compute_share'", f"must be in (0, 1], got {shares[i]}")
