"""The results schema shared by every backend, and its atomic writer and reader.

A results folder holds one Parquet file per table (schema version 1):

* ``runs.parquet``    one row per run (a policy, a repetition, a backend);
* ``ops.parquet``     the timeline: every op every run executed;
* ``metrics.parquet`` long format: one row per (run, metric, item).

Workloads may add tables of their own (a ``requests`` table, say); every table
carries ``run_id``. Each file's Parquet metadata holds
``harness.schema_version`` and ``harness.table``. The columns are documented in
the README ("Results schema") and defined here, once.

Writes are atomic: tables go to a hidden sibling folder that is renamed into
place only when every table is on disk, so an interrupted run leaves no
half-written results folder behind.
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

RESULTS_SCHEMA_VERSION = "1"

RUNS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),  # "<spec>:<policy label>:<backend>:r<repetition>"
        ("spec_name", pa.string()),
        ("spec_path", pa.string()),
        ("spec_sha256", pa.string()),  # hash of the spec file's bytes
        ("workload", pa.string()),
        ("policy", pa.string()),  # policy name in the workload's registry
        ("policy_label", pa.string()),  # unique label within the spec (defaults to the name)
        ("params_json", pa.string()),  # the policy's parameters, JSON, keys sorted
        ("backend", pa.string()),  # "sim" or "replay"
        ("profile", pa.string()),  # hardware profile name
        ("device_name", pa.string()),  # GPU the run modelled (sim) or ran on (replay)
        ("seed", pa.int64()),
        ("repetition", pa.int64()),
        ("package_version", pa.string()),
        ("status", pa.string()),  # "ok" or "failed"
        ("error", pa.string()),  # why it failed; "" when ok
        ("started_at", pa.string()),  # UTC, ISO 8601
        ("wall_s", pa.float64()),  # wall-clock seconds the run took to execute (simulate or replay)
        ("n_ops", pa.int64()),
    ]
)

OPS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("op_id", pa.int64()),  # unique within a run, increasing in issue order
        ("device", pa.int32()),  # GPU index; -1 for host-thread ops
        ("stream", pa.string()),  # stream name; the thread name for host ops
        ("kind", pa.string()),  # harness.runtime.OpKind value
        ("name", pa.string()),
        ("bytes", pa.int64()),  # bytes moved (copies); 0 otherwise
        ("host_memory", pa.string()),  # "pinned" / "pageable" for H2D/D2H copies; "" otherwise
        ("thread", pa.string()),  # host thread that issued the op
        ("issue_us", pa.float64()),  # when the host thread made the call
        ("start_us", pa.float64()),  # when the device (or host) began the op
        ("end_us", pa.float64()),
    ]
)
OPS_COLUMNS = OPS_SCHEMA.names

METRICS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("metric", pa.string()),  # name with its unit as suffix, e.g. makespan_us
        ("item", pa.int64()),  # -1: the whole run; else the index of a segment/request/...
        ("value", pa.float64()),
        ("unit", pa.string()),  # "us", "fraction", "count", "bytes", ...
    ]
)

CORE_SCHEMAS = {"runs": RUNS_SCHEMA, "ops": OPS_SCHEMA, "metrics": METRICS_SCHEMA}


@dataclass(frozen=True)
class Results:
    """One results folder, loaded."""

    path: Path
    runs: pd.DataFrame
    ops: pd.DataFrame
    metrics: pd.DataFrame
    extra: dict[str, pd.DataFrame]


def to_table(name: str, frame: pd.DataFrame, schema: pa.Schema | None = None) -> pa.Table:
    """Convert a frame to an Arrow table with the table's schema and metadata."""
    schema = schema or CORE_SCHEMAS[name]
    missing = [c for c in schema.names if c not in frame.columns]
    if missing:
        raise ValueError(f"table {name!r} is missing columns {missing}")
    table = pa.Table.from_pandas(frame[schema.names], schema=schema, preserve_index=False)
    meta = {b"harness.schema_version": RESULTS_SCHEMA_VERSION.encode(), b"harness.table": name.encode()}
    return table.replace_schema_metadata(meta)


def write_results(out_dir: Path, tables: dict[str, pa.Table]) -> Path:
    """Write every table into ``out_dir`` at once; refuse to overwrite."""
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten")
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    if staging.exists():
        shutil.rmtree(staging)
    staging.mkdir()
    try:
        for name, table in tables.items():
            pq.write_table(table, staging / f"{name}.parquet")
        os.rename(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return out_dir


class ResultsError(Exception):
    """A results folder that cannot be read, naming the folder and file."""


def read_results(path: Path) -> Results:
    """Load a results folder, checking its schema version and required columns."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path}: not a results folder")
    frames: dict[str, pd.DataFrame] = {}
    for file in sorted(path.glob("*.parquet")):
        try:
            table = pq.read_table(file)
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise ResultsError(f"{file}: unreadable Parquet file: {err}") from None
        meta = table.schema.metadata or {}
        version = meta.get(b"harness.schema_version", b"").decode()
        if version != RESULTS_SCHEMA_VERSION:
            raise ResultsError(f"{file}: results schema version {version or 'missing'}, expected {RESULTS_SCHEMA_VERSION}")
        frames[file.stem] = table.to_pandas()
    for name, schema in CORE_SCHEMAS.items():
        if name not in frames:
            raise ResultsError(f"{path}: {name}.parquet is missing")
        missing = [c for c in schema.names if c not in frames[name].columns]
        if missing:
            raise ResultsError(f"{path / (name + '.parquet')}: missing columns {missing}")
    extra = {k: v for k, v in frames.items() if k not in CORE_SCHEMAS}
    return Results(path, frames["runs"], frames["ops"], frames["metrics"], extra)
