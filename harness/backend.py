"""What every backend shares: the op row, the run result, the command dispatch and the ops table.

A backend (``sim.SimBackend``, ``replay.engine.ReplayBackend``) subclasses
:class:`Backend`: it has a ``name`` ("sim", "replay"), the ``device_name`` it
models or runs on, and ``run(main, *args) -> RunResult``, which drives the
policy's main host thread (``harness.runtime``) to completion. It implements
one handler per runtime command, named as :data:`harness.runtime.COMMANDS`
says; :func:`command_handlers` builds the dispatch table from that one list,
so a backend that misses a command fails when it is made, not mid-run.

Every op a run executes becomes an :class:`OpRow` (recorded in a columnar
:class:`harness.oplog.OpLog`, or listed); :func:`ops_frame` turns a
run's rows into the ops table (``harness.results.OPS_SCHEMA``) and
:func:`run_policy` runs a policy and returns that table with its result.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.gc_pause import collector_paused
from harness.oplog import OpLog, OpRow
from harness.profile import Profile
from harness.results import OPS_TABLE_SCHEMA, to_table
from harness.runtime import COMMANDS, Command, PolicyGen

HOST_DEVICE = -1  # the ops table's device for host-thread ops


@dataclass(frozen=True, slots=True)
class RunResult:
    """What a backend's ``run`` returns."""

    ops: OpLog | list[OpRow]  # the simulator records into an OpLog; a list of rows does as well
    result: Any  # what the policy's main thread returned
    main_end_us: float  # when the main thread returned
    # What the backend itself reports about the run, added to its metrics as run rows:
    # name -> (value, unit); e.g. the replay's kernels lifted to the GPU's floor (replay_kernels_lifted).
    metrics: dict[str, tuple[float, str]] = field(default_factory=dict)


class Backend:
    """Base of the simulator and the replay engine."""

    name: str = ""
    device_name: str = ""

    def run(self, main: Callable[..., PolicyGen], *args: Any) -> RunResult:
        raise NotImplementedError


def command_handlers(executor: object) -> dict[type[Command], Callable[[Any, Any], Any]]:
    """``{command class: executor._<name>}`` for every command of :data:`harness.runtime.COMMANDS`.

    ``executor`` is whatever object runs a backend's commands (the backend, or
    its per-run state); each handler takes ``(command, thread)``.
    """
    table = {}
    for command, name in COMMANDS.items():
        handler = getattr(executor, f"_{name}", None)
        if handler is None:
            raise TypeError(f"{type(executor).__name__} has no handler _{name} for {command.__name__}")
        table[command] = handler
    return table


BackendFactory = Callable[[Profile, int, "int | None", int], Backend]
"""``(profile, devices, device_memory_bytes, seed) -> backend``: how a caller that must not import a
backend (a workload's command, a tool) is handed one; ``sim.SimBackend`` itself is such a factory."""


def ops_frame(
    rows: OpLog | Iterable[tuple],
    run_id: str | None = None,
    columns: Iterable[str] | None = None,
    *,
    categorical_strings: bool = False,
    host_rows: bool = True,
) -> pd.DataFrame:
    """A run's ops table in issue (``op_id``) order, index 0..n-1; with ``run_id``, the results' ops table.

    ``columns``: only these of the table's columns (what a metric reads), in that order;
    ``categorical_strings``: the string columns as pandas categoricals, for a caller that only reads them;
    ``host_rows=False``: only the devices' rows (:meth:`harness.oplog.OpLog.frame`).
    """
    with collector_paused():  # it would rescan every row for nothing
        log = rows if isinstance(rows, OpLog) else OpLog(rows if isinstance(rows, list) else list(rows))
        frame = log.frame(columns, categorical_strings=categorical_strings, host_rows=host_rows)
    if run_id is not None:
        frame.insert(0, "run_id", run_id)
    return frame


def ops_table(rows: OpLog | Iterable[tuple], run_id: str, consume: bool = False) -> pa.Table:
    """A run's results ops table (``harness.results.OPS_TABLE_SCHEMA``: strings dictionary-encoded), in ``op_id``
    order: :meth:`harness.oplog.OpLog.table`, or, for rows whose values a column's type cannot hold, the table of
    :func:`ops_frame` (with the same dictionary-encoded strings). ``consume``: an op log is emptied as its table is
    made (:meth:`harness.oplog.OpLog.table`), when nothing reads it after."""
    with collector_paused():
        log = rows if isinstance(rows, OpLog) else OpLog(rows if isinstance(rows, list) else list(rows))
        table = log.table(run_id, consume=consume)
    if table is not None:
        return table
    plain = to_table("ops", ops_frame(log, run_id))
    return pa.Table.from_arrays(
        [_sorted_encoding(c) if pa.types.is_string(c.type) else c for c in plain.columns], schema=OPS_TABLE_SCHEMA
    )


def _sorted_encoding(column: pa.ChunkedArray) -> pa.ChunkedArray:
    """A string column dictionary-encoded with its distinct values, sorted, as dictionary (nulls kept)."""
    values = pc.drop_null(pc.unique(column))
    values = values.take(pc.sort_indices(values))
    codes = pc.index_in(column, value_set=values).cast(pa.int32())
    return pa.chunked_array(
        [pa.DictionaryArray.from_arrays(chunk, values) for chunk in codes.chunks], pa.dictionary(pa.int32(), pa.string())
    )


def categorical_ops_frame(table: pa.Table) -> pd.DataFrame:
    """An ops table (:func:`ops_table`) as the frame :func:`ops_frame` makes, its string columns pandas categoricals
    of the same values, their categories sorted (a group-by over one orders its groups as over the strings), its
    number columns numpy's int64 and the table's float64 (a time column of ints too): for metrics that read the strings only by value (compare, test, group).
    An empty table gives :func:`ops_frame`'s empty frame."""
    if table.num_rows == 0:
        return ops_frame([], run_id="")  # the run id of no row: its column typed as ops_frame types it
    columns: dict[str, Any] = {}  # the frame is made of them as they are (setting each column would copy it)
    for name, column in zip(table.column_names, table.columns):
        if pa.types.is_dictionary(column.type):
            array = column.combine_chunks() if column.num_chunks != 1 else column.chunk(0)
            values = np.array(array.dictionary.to_pylist(), dtype=object)
            order = np.argsort(values, kind="stable") if len(values) else np.zeros(0, np.int64)
            rank = np.empty(len(values), np.int64)
            rank[order] = np.arange(len(values))
            codes = rank[array.indices.to_numpy(zero_copy_only=False)] if len(values) else np.zeros(0, np.int64)
            columns[name] = pd.Categorical.from_codes(codes, categories=values[order].tolist())
        else:
            numbers = column.to_numpy()  # the table's own buffer, read-only
            columns[name] = numbers.astype(np.int64) if numbers.dtype.kind in "iu" and numbers.dtype != np.int64 else numbers
    return pd.DataFrame(columns, index=pd.RangeIndex(table.num_rows), copy=False)


@dataclass(frozen=True)
class PolicyRun:
    """One policy run: its ops table (``op_id`` order), the policy's result, when its main thread ended."""

    ops: pd.DataFrame
    result: Any
    main_end_us: float


def run_policy(backend: Backend, main: Callable[..., PolicyGen], *args: Any) -> PolicyRun:
    """Run ``main(rt, *args)`` on ``backend`` and tabulate its ops."""
    outcome = backend.run(main, *args)
    return PolicyRun(ops_frame(outcome.ops), outcome.result, outcome.main_end_us)
