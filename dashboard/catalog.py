"""Every loaded results folder combined into one set of tables.

Run ids are unique within a folder, not across folders (the same spec simulated
twice gives the same ids), so every table gains a ``folder`` column and runs
are identified by ``(folder, run_id)``; ``run_label`` names a run for people.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

import pyarrow.parquet as pq

from harness.results import METRICS_SCHEMA, OPS_SCHEMA, RESULTS_SCHEMA_VERSION, RUNS_SCHEMA, Results, ResultsError, read_results

RUN_KEY = ["folder", "run_id"]


@dataclass(frozen=True)
class FolderLoad:
    """One path's outcome: a results folder, a lone table file, or why it cannot be read."""

    path: Path
    results: Results | None = None
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
        return FolderLoad(path, error=f"{path}: results schema version {version or 'missing'}, expected {RESULTS_SCHEMA_VERSION}")
    name = meta.get(b"harness.table", b"").decode() or path.stem
    return FolderLoad(path, tables={name: table.to_pandas()})


def load_path(path: Path) -> FolderLoad:
    """Read a results folder or a lone table file; a bad one becomes an error message, never an exception."""
    path = Path(path)
    if not path.exists():
        return FolderLoad(path, error=f"{path}: no such folder or file")
    if path.is_file():
        return load_table_file(path)
    try:
        return FolderLoad(path, results=read_results(path))
    except ResultsError as err:
        return FolderLoad(path, error=str(err))
    except OSError as err:
        return FolderLoad(path, error=f"{path}: cannot be read: {err}")


@dataclass(frozen=True)
class Catalog:
    runs: pd.DataFrame  # RUNS_SCHEMA + folder, run_label
    ops: pd.DataFrame  # OPS_SCHEMA + folder
    metrics: pd.DataFrame  # METRICS_SCHEMA + folder
    extra: dict[str, pd.DataFrame] = field(default_factory=dict)  # workload tables (requests, fidelity, ...) + folder
    folders: list[FolderLoad] = field(default_factory=list)

    @property
    def errors(self) -> list[FolderLoad]:
        return [f for f in self.folders if not f.ok]

    def run_ops(self, folder: str, run_id: str) -> pd.DataFrame:
        ops = self.ops
        return ops[(ops["folder"] == folder) & (ops["run_id"] == run_id)]


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
    ops = _concat([_with_folder(f.results.ops, str(f.path)) for f in good], OPS_SCHEMA.names)
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
    return Catalog(runs, ops, metrics, {k: pd.concat(v, ignore_index=True) for k, v in extra.items()}, list(loads))
