"""The results schema shared by every backend, and its atomic writer and reader.

A results folder holds one Parquet file per table (schema version 1):

* ``runs.parquet``    one row per run (a policy, a repetition, a backend);
* ``ops.parquet``     the timeline: every op every run executed;
* ``metrics.parquet`` long format: one row per (run, metric, item).

Workloads may add tables of their own (a ``requests`` table, say); every table
carries ``run_id``. Each file's Parquet metadata holds
``harness.schema_version`` and ``harness.table``. The columns are documented in
the README ("Results schema") and defined here, once.

Writes are atomic: tables go to a hidden sibling folder (``.<name>.partial-<pid>``)
that is renamed into place only when every table is on disk, so an interrupted
run leaves no half-written results folder behind. A process killed outright
(``kill -9``) leaves its staging folder; the next write into the same parent
folder removes every such folder whose process is gone.
"""

from __future__ import annotations

import base64
import errno
import os
import re
import shutil
import tempfile
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


def dictionary_encoded(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its string columns dictionary-encoded (int32 codes): how a long table is held in memory."""
    return pa.schema(
        [f.with_type(pa.dictionary(pa.int32(), f.type)) if pa.types.is_string(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


def declared(schema: pa.Schema) -> pa.Schema:
    """``schema`` with its dictionary-encoded columns as their values' type: what a file of it declares."""
    return pa.schema(
        [f.with_type(f.type.value_type) if pa.types.is_dictionary(f.type) else f for f in schema],
        metadata=schema.metadata,
    )


OPS_TABLE_SCHEMA = dictionary_encoded(OPS_SCHEMA).with_metadata(
    {b"harness.schema_version": RESULTS_SCHEMA_VERSION.encode(), b"harness.table": b"ops"}
)
"""A run's ops table in memory (``harness.oplog.OpLog.table``): ``OPS_SCHEMA`` with its strings dictionary-encoded
(a million rows share a few hundred names); written and read back as ``OPS_SCHEMA``."""

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
    return table.replace_schema_metadata(table_metadata(name))


def table_metadata(name: str) -> dict[bytes, bytes]:
    """The Parquet metadata of results table ``name``."""
    return {b"harness.schema_version": RESULTS_SCHEMA_VERSION.encode(), b"harness.table": name.encode()}


class OutputPathError(Exception):
    """An output path that cannot be written (under a file, read-only, too long a name...), named in the message."""


_STAGING = re.compile(r"^\..+\.partial-(\d+)$")


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # another user's process, or not a pid we can judge: leave it
    return True


def remove_stale_staging(folder: Path) -> list[Path]:
    """Remove the ``.<name>.partial-<pid>`` folders (and files) in ``folder`` whose process is gone; returns them."""
    removed = []
    try:
        entries = list(Path(folder).iterdir())
    except OSError:
        return removed
    for entry in entries:
        match = _STAGING.match(entry.name)
        if match and int(match.group(1)) != os.getpid() and not _pid_alive(int(match.group(1))):
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry, ignore_errors=True)
            else:
                entry.unlink(missing_ok=True)
            removed.append(entry)
    return removed


def check_output_path(out: Path, what: str = "results folder") -> None:
    """Raise :class:`OutputPathError` unless ``out`` can be created: before any work, and without writing anything.

    The nearest existing ancestor must be a writable folder (probed by creating and removing a hidden temporary
    folder in it: permissions, read-only mounts and /proc all answer that) and every new name must fit the file system.
    """
    out = Path(out)
    if _exists(out):
        raise OutputPathError(f"{out}: already exists; {what}s are never overwritten")
    ancestor = out.parent
    while not _exists(ancestor) and ancestor != ancestor.parent:
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise OutputPathError(f"{out}: cannot create the {what}: {ancestor} is a file, not a folder")
    try:
        limit = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError):
        limit = 255
    staged = f".{out.name}.partial-{os.getpid()}"
    for part in (*out.relative_to(ancestor).parts[:-1], staged):
        if len(part.encode()) > limit:
            raise OutputPathError(
                f"{out}: cannot create the {what}: the name {part[:40]!r}... is longer than {limit} bytes"
            )
    try:
        tempfile.TemporaryDirectory(dir=ancestor, prefix=".harness-probe-").cleanup()
    except OSError as err:
        raise OutputPathError(f"{out}: cannot create the {what} in {ancestor}: {err.strerror or err}") from None


def _exists(path: Path) -> bool:
    try:
        return path.exists() or path.is_symlink()
    except OSError:  # a name too long for the file system, say: not there
        return False


def write_results(out_dir: Path, tables: dict[str, pa.Table], files: dict[str, bytes] | None = None) -> Path:
    """Write every table (and ``files``: name -> bytes, such as ``verdict.json``) into ``out_dir`` at once;
    refuse to overwrite.

    Raises :class:`OutputPathError` when the folder cannot be created or written (nothing is left behind).
    """
    out_dir = Path(out_dir)
    if out_dir.exists():
        raise FileExistsError(f"{out_dir} already exists; results are never overwritten")
    try:
        out_dir.parent.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise OutputPathError(f"{out_dir}: cannot create its parent folder: {err.strerror or err}") from None
    remove_stale_staging(out_dir.parent)
    staging = out_dir.parent / f".{out_dir.name}.partial-{os.getpid()}"
    try:
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir()
    except OSError as err:
        raise OutputPathError(f"{out_dir}: cannot create the results folder: {err.strerror or err}") from None
    try:
        for name, table in tables.items():
            _write_table(table, staging / f"{name}.parquet")
        for name, data in (files or {}).items():
            (staging / name).write_bytes(data)
        os.rename(staging, out_dir)
    except BaseException as err:
        shutil.rmtree(staging, ignore_errors=True)
        if isinstance(err, OSError) or _is_os_error(err):
            raise OutputPathError(f"{out_dir}: cannot write the results: {_reason(err)}") from None
        raise
    return out_dir


def _write_table(table: pa.Table, path: Path) -> None:
    """One results file. A dictionary-encoded string column is written from its codes as they are (no string per
    row made, none hashed again) and declared as a string column: the file reads back as the strings' table would,
    its Arrow schema (``ARROW:schema``, what readers take the column types from) the same bytes."""
    dictionary_encoded = any(pa.types.is_dictionary(field.type) for field in table.schema)
    if not dictionary_encoded:
        pq.write_table(table, path, use_dictionary=_dictionary_columns(table))
        return
    schema = declared(table.schema)
    with pq.ParquetWriter(path, table.schema, use_dictionary=_dictionary_columns(table), store_schema=False) as writer:
        writer.write_table(table)
        writer.add_key_value_metadata(
            {**(schema.metadata or {}), b"ARROW:schema": base64.b64encode(schema.serialize().to_pybytes())}
        )


def _dictionary_columns(table: pa.Table) -> list[str]:
    """The columns worth dictionary-encoding in the file: all but the floats (times: nearly every value distinct,
    so the writer would build a dictionary of a million values, then give it up for plain encoding)."""
    return [field.name for field in table.schema if not pa.types.is_floating(field.type)]


def _is_os_error(err: BaseException) -> bool:
    """pyarrow reports a failed write as its own error type wrapping errno (ENOSPC, EIO...)."""
    return type(err).__name__ == "ArrowIOError" or isinstance(getattr(err, "errno", None), int)


def _reason(err: BaseException) -> str:
    code = getattr(err, "errno", None)
    return os.strerror(code) if isinstance(code, int) and code in errno.errorcode else str(err)


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
            raise ResultsError(
                f"{file}: results schema version {version or 'missing'}, expected {RESULTS_SCHEMA_VERSION}"
            )
        frames[file.stem] = table.to_pandas()
    for name, schema in CORE_SCHEMAS.items():
        if name not in frames:
            raise ResultsError(f"{path}: {name}.parquet is missing")
        missing = [c for c in schema.names if c not in frames[name].columns]
        if missing:
            raise ResultsError(f"{path / (name + '.parquet')}: missing columns {missing}")
    extra = {k: v for k, v in frames.items() if k not in CORE_SCHEMAS}
    return Results(path, frames["runs"], frames["ops"], frames["metrics"], extra)
