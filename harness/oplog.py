"""A run's op rows, recorded one at a time and kept as typed columns: :class:`OpRow` and :class:`OpLog`.

A backend records every op it executes with ``OpLog.append(row)``, ``row`` an
11-tuple in :class:`OpRow` field order (an ``OpRow`` itself, or a plain tuple:
the hot paths skip ``OpRow``'s constructor). A long run records millions of
rows, so the log keeps no tuple for long: every :data:`OpLog.CHUNK_ROWS` rows
the pending tuples become one chunk of typed columns (numpy arrays for the
numbers, dictionary-encoded Arrow arrays for the strings, which repeat: a
stream, a kind, a kernel name), about 70 bytes a row instead of the ~250 of a
tuple and its objects. :meth:`OpLog.frame` builds the ops table from the chunks
with the dtypes pandas infers for the same rows given as lists (int64, float64
and this pandas' default string dtype), without a Python loop over the rows.

A value a typed column cannot hold (a string where a number belongs, a
non-string name) is kept as a Python object for that chunk, and its column is
then built from the Python values as pandas would: the table is the same either way.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.results import OPS_COLUMNS


class OpRow(NamedTuple):
    """One op of a run: a row of the ops table without its ``run_id``."""

    op_id: int  # unique within a run, increasing in issue order
    device: int  # GPU index; HOST_DEVICE for host-thread ops
    stream: str  # stream name; the thread name for host ops
    kind: str  # harness.runtime.OpKind value
    name: str
    bytes: int  # bytes moved (copies); 0 otherwise
    host_memory: str  # "pinned" / "pageable" for H2D/D2H copies; "" otherwise
    thread: str  # host thread that issued the op
    issue_us: float  # when the host thread made the call
    start_us: float  # when the device (or host) began the op
    end_us: float


assert OpRow._fields == tuple(OPS_COLUMNS[1:]), "OpRow must follow harness.results.OPS_SCHEMA"

_STRING_COLUMNS = frozenset({"stream", "kind", "name", "host_memory", "thread"})
_IS_STRING = tuple(name in _STRING_COLUMNS for name in OpRow._fields)


class OpLog:
    """Op rows in typed column chunks; ``append`` a row, ``len``, iterate (as :class:`OpRow`), :meth:`frame`."""

    CHUNK_ROWS = 1 << 16
    """Rows kept as tuples before they become a chunk of columns (bounds the tuples alive at once)."""

    __slots__ = ("_pending", "_chunks", "_chunked_rows")

    def __init__(self, rows: Iterable[tuple] = ()) -> None:
        self._pending: list[tuple] = []
        self._chunks: list[list[Any]] = []  # per chunk, one column per OpRow field
        self._chunked_rows = 0
        self.extend(rows)

    def append(self, row: tuple) -> None:
        """Record one op: an 11-tuple in :class:`OpRow` field order."""
        pending = self._pending
        pending.append(row)
        if len(pending) >= self.CHUNK_ROWS:
            self._chunk()

    def extend(self, rows: Iterable[tuple]) -> None:
        """Record many ops (a list is taken a chunk at a time, without a call per row)."""
        if not isinstance(rows, list):
            for row in rows:
                self.append(row)
            return
        self._chunk()
        step = self.CHUNK_ROWS
        for start in range(0, len(rows), step):
            self._pending = rows[start : start + step]
            self._chunk()

    def __len__(self) -> int:
        return self._chunked_rows + len(self._pending)

    def __iter__(self) -> Iterator[OpRow]:
        """The rows in the order they were recorded (not necessarily ``op_id`` order)."""
        make = OpRow._make
        for chunk in self._chunks:
            for values in zip(*(_to_list(column) for column in chunk)):
                yield make(values)
        for row in list(self._pending):
            yield make(row)

    def column(self, name: str) -> np.ndarray:
        """One column of every row, in recorded order (numbers as numpy arrays, strings as object arrays)."""
        i = OpRow._fields.index(name)
        self._chunk()
        parts = [_to_numpy(chunk[i], _IS_STRING[i]) for chunk in self._chunks]
        return np.concatenate(parts) if parts else np.zeros(0)

    def frame(self) -> pd.DataFrame:
        """The rows as a frame with OpRow's columns, in recorded order; dtypes as pandas infers them from lists."""
        self._chunk()
        if not self._chunks:
            return pd.DataFrame([], columns=list(OpRow._fields))
        columns = {}
        for i, name in enumerate(OpRow._fields):
            parts = [chunk[i] for chunk in self._chunks]
            columns[name] = _string_column(parts) if _IS_STRING[i] else _number_column(parts)
        return pd.DataFrame(columns, copy=False)

    def _chunk(self) -> None:
        """The pending tuples become one chunk of typed columns."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        columns = list(zip(*pending))
        if len(columns) != len(OpRow._fields):
            raise ValueError(f"an op row has {len(columns)} fields, not the {len(OpRow._fields)} of OpRow")
        self._chunks.append([_typed(values, string) for values, string in zip(columns, _IS_STRING)])
        self._chunked_rows += len(pending)


def _typed(values: tuple, string: bool) -> Any:
    """A chunk's column: a numpy array of numbers, a dictionary-encoded Arrow array of strings, else the tuple."""
    if string:
        try:
            array = pa.array(values, pa.string())
        except (pa.ArrowException, TypeError, ValueError):
            return values
        return array.dictionary_encode() if array.null_count == 0 else values
    array = np.array(values)
    return array if array.dtype.kind in "iuf" and array.ndim == 1 else values


_DEFAULT_STRING_DTYPE = pd.Series(["x"]).dtype  # what this pandas infers for a column of str


def _string_column(parts: list[Any]) -> Any:
    if any(isinstance(part, tuple) for part in parts):
        return [value for part in parts for value in _to_list(part)]
    if isinstance(_DEFAULT_STRING_DTYPE, pd.StringDtype):  # pandas >= 3 (or future.infer_string): Arrow-backed str
        return pd.Series(_DEFAULT_STRING_DTYPE.__from_arrow__(pa.chunked_array(parts)), copy=False)
    return np.concatenate([_to_numpy(part, True) for part in parts])  # object dtype: str objects, shared per value


def _number_column(parts: list[Any]) -> Any:
    if any(isinstance(part, tuple) for part in parts):
        return [value for part in parts for value in part]
    return np.concatenate(parts)


def _to_list(part: Any) -> list:
    if isinstance(part, tuple):
        return list(part)
    if isinstance(part, pa.DictionaryArray):
        return _to_numpy(part, True).tolist()
    return part.tolist()


def _to_numpy(part: Any, string: bool) -> np.ndarray:
    if isinstance(part, tuple):
        return np.array(part, dtype=object) if string else np.array(part)
    if isinstance(part, pa.DictionaryArray):
        return part.dictionary.to_numpy(zero_copy_only=False)[part.indices.to_numpy()]
    return part
