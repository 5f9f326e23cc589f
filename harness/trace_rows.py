"""The row checks of an op trace (:mod:`harness.trace`), column-wise: no per-row Python, no frame copies.

:func:`check_rows` refuses the first bad row of a trace, naming it (rows count from 0),
with the rules and messages of the format's docstring in :mod:`harness.trace`. It reads
the trace through :class:`TraceColumns`: numbers as float64 arrays (NaN where null or
not a number, as ``pd.to_numeric(errors="coerce")`` gives them), strings as codes into
their distinct values (-1 where null). :class:`ArrowColumns` views an Arrow table as read
from the file (strings dictionary-encoded: a million rows are a few thousand distinct
strings), :class:`FrameColumns` a pandas frame about to be written.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from harness.errors import InputError
from harness.id_membership import isin_ids


class TraceColumns:
    """A trace's columns as the checks read them (see the module docstring)."""

    rows: int

    def numbers(self, name: str) -> np.ndarray:
        """Column ``name`` as float64, NaN where null or not a number."""
        raise NotImplementedError

    def nulls(self, name: str) -> np.ndarray:
        """Where column ``name`` is null (NaN counts as null in a number column)."""
        raise NotImplementedError

    def codes(self, name: str) -> tuple[np.ndarray, list]:
        """Column ``name`` as codes (int64, -1 where null) into its distinct values."""
        raise NotImplementedError

    def value(self, name: str, row: int) -> object:
        """The cell as pandas shows it (a float in a number column that holds nulls)."""
        raise NotImplementedError

    def keys(self, name: str) -> np.ndarray:
        """A number column for comparing its values: int64 where pandas holds it as ints, else :meth:`numbers`."""
        raise NotImplementedError

    def is_float(self, name: str) -> bool:
        """Whether pandas holds the column as floats (a float column, or an int column with nulls)."""
        raise NotImplementedError


class FrameColumns(TraceColumns):
    """A pandas frame's columns."""

    def __init__(self, frame: pd.DataFrame) -> None:
        self.frame = frame
        self.rows = len(frame)

    def numbers(self, name: str) -> np.ndarray:
        return pd.to_numeric(self.frame[name], errors="coerce").to_numpy(dtype=float)

    def nulls(self, name: str) -> np.ndarray:
        return self.frame[name].isna().to_numpy()

    def codes(self, name: str) -> tuple[np.ndarray, list]:
        codes, uniques = pd.factorize(self.frame[name], use_na_sentinel=True)
        return codes.astype(np.int64), list(uniques)

    def value(self, name: str, row: int) -> object:
        value = self.frame[name].iloc[row]
        return value.item() if isinstance(value, np.generic) else value

    def is_float(self, name: str) -> bool:
        return pd.api.types.is_float_dtype(self.frame[name].dtype)

    def keys(self, name: str) -> np.ndarray:
        column = self.frame[name]
        return column.to_numpy() if pd.api.types.is_integer_dtype(column.dtype) else self.numbers(name)


class ArrowColumns(TraceColumns):
    """An Arrow table's columns (strings plain or dictionary-encoded; numbers of the format's types)."""

    def __init__(self, table: pa.Table) -> None:
        self.table = table
        self.rows = table.num_rows
        self._codes: dict[str, tuple[np.ndarray, list]] = {}

    def _column(self, name: str) -> pa.ChunkedArray:
        if name in self.table.column_names:
            return self.table.column(name)
        return pa.chunked_array([pa.nulls(self.rows)])

    def numbers(self, name: str) -> np.ndarray:
        column = self._column(name)
        if not (pa.types.is_integer(column.type) or pa.types.is_floating(column.type)):
            return np.full(self.rows, np.nan)  # null or text: pd.to_numeric(errors="coerce") of it, where checked
        return column.cast(pa.float64(), safe=False).to_numpy()  # nulls: NaN; as numpy converts a large int

    def nulls(self, name: str) -> np.ndarray:
        column = self._column(name)
        null = column.is_null(nan_is_null=True) if pa.types.is_floating(column.type) else column.is_null()
        return null.to_numpy()

    def codes(self, name: str) -> tuple[np.ndarray, list]:
        found = self._codes.get(name)
        if found is not None:
            return found
        column = self._column(name)
        if not pa.types.is_dictionary(column.type):
            column = pc.dictionary_encode(column)
        encoded = column.unify_dictionaries() if isinstance(column, pa.ChunkedArray) else column
        chunks = encoded.chunks if isinstance(encoded, pa.ChunkedArray) else [encoded]
        dictionary = chunks[0].dictionary.to_pylist() if chunks else []
        # int32: a code per row of each string column checked, kept while the checks run (4 MB a million rows)
        parts = [c.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int32) for c in chunks]
        codes = np.concatenate(parts) if parts else np.zeros(0, np.int32)
        found = self._codes[name] = (codes, dictionary)
        return found

    def value(self, name: str, row: int) -> object:
        value = self._column(name)[row].as_py()
        return float(value) if self.is_float(name) and value is not None else value

    def is_float(self, name: str) -> bool:
        column = self._column(name)
        if pa.types.is_floating(column.type):
            return True
        return pa.types.is_integer(column.type) and column.null_count > 0

    def keys(self, name: str) -> np.ndarray:
        column = self._column(name)
        if pa.types.is_integer(column.type) and column.null_count == 0:
            return column.cast(pa.int64()).to_numpy()
        return self.numbers(name)


def _first(mask: np.ndarray) -> int | None:
    return int(mask.argmax()) if mask.any() else None


def _member(value: object, allowed: object) -> bool:
    try:
        return value in allowed
    except TypeError:  # an unhashable cell (a list in a frame): never one of the allowed strings
        return False


def _in(columns: TraceColumns, name: str, allowed: object) -> np.ndarray:
    """Where string column ``name`` holds one of ``allowed`` (never where null)."""
    codes, values = columns.codes(name)
    lookup = np.array([_member(v, allowed) for v in values] + [False], dtype=bool)  # code -1: the last, False
    return lookup[codes]


def check_rows(path: Path, columns: TraceColumns) -> None:
    """Reject the first bad row, naming it (rows count from 0)."""
    from harness.trace import (
        CALL_KINDS,
        COPY_KINDS,
        GPU_KINDS,
        HOST_MEMORY,
        KNOWN_KINDS,
        MAX_TRACE_TIME_US,
        REQUIRED_COLUMNS,
        TIME_COLUMNS,
    )

    for column in REQUIRED_COLUMNS:
        if (i := _first(columns.nulls(column))) is not None:
            what = "missing value" + (" (null or NaN)" if columns.is_float(column) else "")
            raise InputError(path, f"row {i}, column '{column}'", what)
    for column in TIME_COLUMNS:
        times = columns.numbers(column)
        present = ~columns.nulls(column)
        with np.errstate(invalid="ignore"):
            bad = present & ~((times >= 0) & (times <= MAX_TRACE_TIME_US))  # NaN, inf, negative, beyond a day
        if (i := _first(bad)) is not None:
            raise InputError(
                path,
                f"row {i}, column '{column}'",
                f"must be a finite number of µs >= 0 and at most a day ({MAX_TRACE_TIME_US:.3g}), "
                f"got {columns.value(column, i)!r}",
            )
    sizes = columns.numbers("bytes")
    if (i := _first(~np.isfinite(sizes) | (sizes < 0))) is not None:
        got = columns.value("bytes", i)
        raise InputError(path, f"row {i}, column 'bytes'", f"must be an integer >= 0, got {got!r}")
    if (i := _first(~_in(columns, "kind", KNOWN_KINDS))) is not None:
        raise InputError(
            path,
            f"row {i}, column 'kind'",
            f"unknown op kind {columns.value('kind', i)!r}; expected one of {sorted(KNOWN_KINDS)}",
        )
    if (i := _first(_in(columns, "kind", COPY_KINDS) & (sizes == 0))) is not None:
        raise InputError(
            path,
            f"row {i}, column 'bytes'",
            f"a {columns.value('kind', i)} of 0 bytes: a copy must say what it moves",
        )
    device = columns.numbers("device")
    on_gpu = _in(columns, "kind", GPU_KINDS)
    is_call = _in(columns, "kind", CALL_KINDS)
    if (i := _first((device < -1) | (on_gpu & (device < 0)) | (is_call & (device != -1)))) is not None:
        rule = "a GPU op's device is >= 0" if on_gpu[i] else "a host call's device is -1" if is_call[i] else ">= -1"
        raise InputError(
            path, f"row {i}, column 'device'", f"{columns.value('kind', i)} on device {int(device[i])}: {rule}"
        )
    shares = columns.numbers("compute_share")
    if (i := _first(~np.isnan(shares) & ~((shares > 0) & (shares <= 1)))) is not None:
        raise InputError(path, f"row {i}, column 'compute_share'", f"must be in (0, 1], got {shares[i]}")
    memory_codes, _ = columns.codes("host_memory")
    if (i := _first((memory_codes >= 0) & ~_in(columns, "host_memory", HOST_MEMORY))) is not None:
        raise InputError(
            path,
            f"row {i}, column 'host_memory'",
            f"expected 'pinned', 'pageable' or '', got {columns.value('host_memory', i)!r}",
        )
    for column in ("gap_aten_ops", "gap_ranges"):
        counts = columns.numbers(column)
        if (i := _first(counts < 0)) is not None:
            raise InputError(path, f"row {i}, column '{column}'", f"must be >= 0, got {columns.value(column, i)!r}")
    check_correlations(path, columns, on_gpu, is_call, _in(columns, "kind", ("call_launch",)))


def _duplicated(keys: list[np.ndarray]) -> np.ndarray:
    """Per row, whether an earlier row has the same keys (``DataFrame.duplicated(keep="first")``; NaN equals NaN)."""
    if len(keys[0]) and keys[-1].dtype.kind in "iu":
        return _duplicated_ids(keys[-1], lambda rows: [key[rows] for key in keys[:-1]])
    return _duplicated_rows(keys)


def _duplicated_ids(ids: np.ndarray, other_keys: Callable[[np.ndarray], list[np.ndarray]]) -> np.ndarray:
    """:func:`_duplicated` of the keys ``[*other_keys(rows), ids]`` where ``ids`` are whole numbers (correlations:
    nearly all distinct) and ``other_keys(rows)`` gives the other keys at ``rows``: only the rows whose id another
    row shares can repeat a row, so they alone are compared on every key (the other keys are made for them only);
    ids in increasing order (a recording's calls and, as a rule, its GPU ops) share none, told in one pass."""
    count = len(ids)
    again = np.zeros(count, bool)
    if count < 2 or (ids[1:] > ids[:-1]).all():
        return again
    order = np.argsort(ids, kind="stable")
    ordered = ids[order]
    shared = ordered[1:] == ordered[:-1]
    if not shared.any():
        return again
    repeated = np.zeros(count, bool)  # rows whose id another row has
    repeated[order[1:][shared]] = True
    repeated[order[:-1][shared]] = True
    rows = np.flatnonzero(repeated)  # in row order: the first of equal rows stays the first
    again[rows] = _duplicated_rows([*other_keys(rows), ids[rows]])
    return again


def _duplicated_rows(keys: list[np.ndarray]) -> np.ndarray:
    """:func:`_duplicated` by a sort on every key."""
    count = len(keys[0])
    if count == 0:
        return np.zeros(0, bool)
    order = np.lexsort(keys[::-1])  # stable: equal rows keep their order, the first of them first
    same = np.ones(count - 1, bool)
    for key in keys:
        ordered = key[order]
        equal = ordered[1:] == ordered[:-1]
        if ordered.dtype.kind == "f":
            equal |= np.isnan(ordered[1:]) & np.isnan(ordered[:-1])
        same &= equal
    again = np.zeros(count, bool)
    again[order[1:]] = same
    return again


def _varies_within(groups: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Per row, whether ``values`` takes more than one value among the rows of its group."""
    if len(groups) < 2 or (groups[1:] > groups[:-1]).all() or values.min() == values.max():
        return np.zeros(len(groups), bool)  # a row per group, or one value in all
    order = np.argsort(groups, kind="stable")
    ordered = groups[order]
    begins = np.flatnonzero(np.concatenate(([True], ordered[1:] != ordered[:-1])))
    low = np.minimum.reduceat(values[order], begins)
    high = np.maximum.reduceat(values[order], begins)
    per_group = low != high
    varies = np.empty(len(groups), bool)
    varies[order] = np.repeat(per_group, np.diff(np.append(begins, len(groups))))
    return varies


def check_correlations(
    path: Path, columns: TraceColumns, on_gpu: np.ndarray, is_call: np.ndarray, is_launch: np.ndarray
) -> None:
    """An imported trace's links: one call per correlation; a call's GPU ops on one device; one op per kernel
    launch; no GPU op twice. Rows without a correlation (synthetic traces) are not checked."""
    linked = ~columns.nulls("correlation")
    if not linked.any():
        return
    corr = columns.keys("correlation")
    calls = np.flatnonzero(is_call & linked)
    again = _duplicated([corr[calls]])
    if again.any():
        i = int(calls[again.argmax()])
        first = int(calls[np.flatnonzero(corr[calls] == corr[i])[0]])
        shown = columns.value("correlation", i)
        raise InputError(
            path, f"row {i}, column 'correlation'", f"{shown} is also the correlation of host call row {first}"
        )
    gpu = np.flatnonzero(on_gpu & linked)
    gpu_corr = corr[gpu]
    if len(gpu_corr) < 2 or (gpu_corr[1:] > gpu_corr[:-1]).all():
        return  # no two GPU ops share a correlation (a recording's usual order): none twice, none on two devices
    gpu_device = columns.keys("device")[gpu]

    def gpu_keys(rows: np.ndarray) -> list[np.ndarray]:  # device, stream, start, duration and name of gpu[rows]
        at = gpu[rows]
        return [
            gpu_device[rows],
            columns.codes("stream")[0][at],
            columns.numbers("start_us")[at],
            columns.numbers("duration_us")[at],
            columns.codes("name")[0][at],
        ]

    twice = _duplicated_ids(gpu_corr, gpu_keys) if gpu_corr.dtype.kind in "iu" else _duplicated(
        [*gpu_keys(np.arange(len(gpu))), gpu_corr]
    )
    if twice.any():
        i = int(gpu[twice.argmax()])
        name = columns.value("name", i)
        raise InputError(path, f"row {i}", f"GPU op {name!r} is recorded twice (an identical row before)")
    several = _varies_within(gpu_corr, gpu_device)
    if several.any():
        i = int(gpu[several.argmax()])
        most = max(len(set(gpu_device[gpu_corr == c].tolist())) for c in set(gpu_corr[several].tolist()))
        raise InputError(
            path,
            f"row {i}, column 'correlation'",
            f"GPU ops of correlation {columns.value('correlation', i)} run on {most} devices: "
            "one launch call runs on one",
        )
    launches = corr[is_launch & linked]
    per_launch = gpu[isin_ids(gpu_corr, launches)]  # a bitmap: np.isin sorts, pandas' isin hashes
    extra = _duplicated([corr[per_launch]])
    if extra.any():
        i = int(per_launch[extra.argmax()])
        raise InputError(
            path,
            f"row {i}, column 'correlation'",
            f"a second GPU op for the kernel launch of correlation {columns.value('correlation', i)}: "
            "a launch issues one kernel",
        )
