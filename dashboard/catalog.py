"""Every loaded results folder combined into one set of tables.

Run ids are unique within a folder, not across folders (the same spec simulated
twice gives the same ids), so every table gains a ``folder`` column and runs
are identified by ``(folder, run_id)``; ``run_label`` names a run for people.

Ops are never loaded up front: a folder's ``ops.parquet`` is only checked
(schema, version, row count) when the folder is read, and one run's ops are read
on demand with a pyarrow dataset filter (:func:`read_run_ops`), so a collection
of millions of ops costs the server only the runs someone looks at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from harness.results import (
    CORE_SCHEMAS,
    METRICS_SCHEMA,
    OPS_SCHEMA,
    RESULTS_SCHEMA_VERSION,
    RUNS_SCHEMA,
    ResultsError,
)

RUN_KEY = ["folder", "run_id"]


OPS_FILE = "ops.parquet"
RUN_OPS_COLUMNS = [c for c in OPS_SCHEMA.names if c != "run_id"]
# Text columns (and the run id filtered on) read as dictionaries: no string per op is ever made, so a million-op
# run is read several times faster and with ~100 MB less at its peak than as strings turned into categoricals.
_DICTIONARY_TEXT = ds.ParquetFileFormat(
    read_options=ds.ParquetReadOptions(
        dictionary_columns=[
            f.name for f in OPS_SCHEMA if pa.types.is_string(f.type) or pa.types.is_large_string(f.type)
        ]
    )
)
# What the timeline, the request drill-down and the search read: a third less to read and hold than every column.
TIMELINE_COLUMNS = ["device", "stream", "kind", "name", "bytes", "thread", "issue_us", "start_us", "end_us"]


@dataclass(frozen=True)
class FolderTables:
    """A results folder without its ops: runs, metrics and workload tables, and how many ops ``ops.parquet`` holds."""

    path: Path
    runs: pd.DataFrame
    metrics: pd.DataFrame
    extra: dict[str, pd.DataFrame]
    n_ops: int


@dataclass(frozen=True)
class FolderLoad:
    """One path's outcome: a results folder, a lone table file, or why it cannot be read."""

    path: Path
    results: FolderTables | None = None
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # a lone table file, by its harness.table name
    error: str = ""

    @property
    def ok(self) -> bool:
        return not self.error


def load_table_file(path: Path) -> FolderLoad:
    """A single results-style Parquet table (e.g. a stored fidelity table) outside a results folder."""
    try:
        table = pq.read_table(path)
    except Exception as err:  # pyarrow raises several types for corrupt files
        return FolderLoad(path, error=f"{path}: unreadable Parquet file: {err}")
    meta = table.schema.metadata or {}
    version = meta.get(b"harness.schema_version", b"").decode()
    if version != RESULTS_SCHEMA_VERSION:
        return FolderLoad(
            path, error=f"{path}: results schema version {version or 'missing'}, expected {RESULTS_SCHEMA_VERSION}"
        )
    name = meta.get(b"harness.table", b"").decode() or path.stem
    return FolderLoad(path, tables={name: table.to_pandas()})


def _check_version(file: Path, metadata: dict | None) -> None:
    version = (metadata or {}).get(b"harness.schema_version", b"").decode()
    if version != RESULTS_SCHEMA_VERSION:
        raise ResultsError(f"{file}: results schema version {version or 'missing'}, expected {RESULTS_SCHEMA_VERSION}")


def read_folder(path: Path) -> FolderTables:
    """Like :func:`harness.results.read_results` (same checks, same messages) but ``ops.parquet`` is only checked."""
    path = Path(path)
    if not path.is_dir():
        raise ResultsError(f"{path}: not a results folder")
    frames: dict[str, pd.DataFrame] = {}
    columns: dict[str, list[str]] = {}
    n_ops = 0
    for file in sorted(path.glob("*.parquet")):
        try:
            if file.name == OPS_FILE:
                meta = pq.ParquetFile(file).metadata
                schema = meta.schema.to_arrow_schema()
                _check_version(file, schema.metadata)
                columns["ops"], n_ops = schema.names, meta.num_rows
                continue
            table = pq.read_table(file)
        except ResultsError:
            raise
        except Exception as err:  # pyarrow raises several types for corrupt files
            raise ResultsError(f"{file}: unreadable Parquet file: {err}") from None
        _check_version(file, table.schema.metadata)
        frames[file.stem] = table.to_pandas()
        columns[file.stem] = table.schema.names
    for name, schema in CORE_SCHEMAS.items():
        if name not in columns:
            raise ResultsError(f"{path}: {name}.parquet is missing")
        missing = [c for c in schema.names if c not in columns[name]]
        if missing:
            raise ResultsError(f"{path / (name + '.parquet')}: missing columns {missing}")
    extra = {k: v for k, v in frames.items() if k not in CORE_SCHEMAS}
    return FolderTables(path, frames["runs"], frames["metrics"], extra, n_ops)


def read_run_ops(
    folder: Path,
    run_id: str,
    start_us: float | None = None,
    end_us: float | None = None,
    columns: list[str] | None = None,
) -> pd.DataFrame:
    """One run's ops (``columns``, by default every OPS_SCHEMA column but ``run_id``), optionally only those
    overlapping a window.

    Read with a pyarrow dataset filter, so neither other runs nor (with a window) ops outside it reach pandas;
    text columns are read as dictionaries and come back as categoricals (a million ops of a few dozen names cost
    megabytes, not hundreds).
    """
    expr = pc.field("run_id") == run_id
    if start_us is not None:
        expr &= pc.field("end_us") >= start_us
    if end_us is not None:
        expr &= pc.field("start_us") <= end_us
    table = ds.dataset(Path(folder) / OPS_FILE, format=_DICTIONARY_TEXT).to_table(
        columns=list(columns or RUN_OPS_COLUMNS), filter=expr
    )
    return table.to_pandas(strings_to_categorical=True)


def load_path(path: Path) -> FolderLoad:
    """Read a results folder or a lone table file; a bad one becomes an error message, never an exception."""
    path = Path(path)
    if not path.exists():
        return FolderLoad(path, error=f"{path}: no such folder or file")
    if path.is_file():
        return load_table_file(path)
    try:
        return FolderLoad(path, results=read_folder(path))
    except ResultsError as err:
        return FolderLoad(path, error=str(err))
    except OSError as err:
        return FolderLoad(path, error=f"{path}: cannot be read: {err}")


@dataclass(frozen=True)
class Catalog:
    runs: pd.DataFrame  # RUNS_SCHEMA + folder, run_label
    metrics: pd.DataFrame  # METRICS_SCHEMA + folder
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # workload tables (requests, fidelity, ...) + folder
    folders: list[FolderLoad] = field(default_factory=list)

    @property
    def errors(self) -> list[FolderLoad]:
        return [f for f in self.folders if not f.ok]

    def run_ops(
        self, folder: str, run_id: str, start_us: float | None = None, end_us: float | None = None
    ) -> pd.DataFrame:
        """One run's ops, read from its folder now (never held by the catalog)."""
        return read_run_ops(Path(folder), run_id, start_us, end_us)

    @property
    def n_ops(self) -> int:
        return sum(f.results.n_ops for f in self.folders if f.results is not None)


def _with_folder(frame: pd.DataFrame, folder: str) -> pd.DataFrame:
    out = frame.copy()
    out.insert(0, "folder", folder)
    return out


def _concat(frames: list[pd.DataFrame], columns: list[str]) -> pd.DataFrame:
    if not frames:
        return pd.DataFrame(columns=["folder", *columns])
    out = pd.concat(frames, ignore_index=True)
    out["folder"] = out["folder"].astype(str)
    return out


def build_catalog(loads: list[FolderLoad]) -> Catalog:
    good = [f for f in loads if f.results is not None]
    runs = _concat([_with_folder(f.results.runs, str(f.path)) for f in good], RUNS_SCHEMA.names)
    metrics = _concat([_with_folder(f.results.metrics, str(f.path)) for f in good], METRICS_SCHEMA.names)
    names = {p.name: p for p in (f.path for f in good)}
    ambiguous = len(names) < len(good)
    runs["run_label"] = [
        f"{rid} @ {folder if ambiguous else Path(folder).name}" for folder, rid in zip(runs["folder"], runs["run_id"])
    ]
    extra: dict[str, list[pd.DataFrame]] = {}
    for f in good:
        for name, frame in f.results.extra.items():
            extra.setdefault(name, []).append(_with_folder(frame, str(f.path)))
    for f in loads:
        for name, frame in f.tables.items():
            extra.setdefault(name, []).append(_with_folder(frame, str(f.path)))
    return Catalog(runs, metrics, {k: pd.concat(v, ignore_index=True) for k, v in extra.items()}, list(loads))
