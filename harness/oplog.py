"""A run's op rows, recorded one at a time and kept as typed columns: :class:`OpRow` and :class:`OpLog`.

A backend records every op it executes with ``OpLog.append(row)``, ``row`` an
11-tuple in :class:`OpRow` field order (an ``OpRow`` itself, or a plain tuple:
the hot paths skip ``OpRow``'s constructor). A long run records millions of
rows, so the log keeps no tuple for long: every :data:`OpLog.CHUNK_ROWS` rows
the pending tuples become one chunk of typed columns (numpy arrays for the
numbers, dictionary-encoded Arrow arrays for the strings, which repeat: a
stream, a kind, a kernel name).

The commonest pair of rows, a kernel that ran alone and the host sync that
waited for it (a synchronous GPU step: ``sim.engine``'s fast path), has a
record of its own. Steps come in runs (:meth:`OpLog.append_steps`): each step
of a run is issued when the previous one's sync returned, its kernel starts a
fixed host cost later and its sync returns a fixed wake-up after the kernel
ends. So a run keeps its kind (one small code for what its rows share:
device, stream, kernel name, threads), first op id, first issue time, cost
and wake-up, and each step only its kernel's end time: 8 bytes for two rows.
The other times are the same float additions redone with numpy when a column
is built, so they come out to the last bit. Both rows come out of a step in the table.

:meth:`OpLog.frame` builds the ops table in ``op_id`` order from the chunks and
the steps, with the dtypes pandas infers for the same rows given as lists (int64,
float64 and this pandas' default string dtype), without a Python loop over the rows.
A value a typed column cannot hold (a string where a number belongs, a
non-string name) is kept as a Python object for that chunk, and its column is
then built from the Python values as pandas would: the table is the same either way.
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator, Sequence
from itertools import compress
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.results import OPS_COLUMNS, OPS_TABLE_SCHEMA


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

_FIELDS = OpRow._fields
_STRING_COLUMNS = frozenset({"stream", "kind", "name", "host_memory", "thread"})
_IS_STRING = tuple(name in _STRING_COLUMNS for name in _FIELDS)
_KERNEL, _HOST_SYNC, _HOST_DEVICE = "kernel", "host_sync", -1  # harness.runtime.OpKind values; backend.HOST_DEVICE


class OpLog:
    """Op rows in typed columns: ``append`` a row, ``append_step`` a kernel + its sync; ``len``, iterate, ``frame``."""

    CHUNK_ROWS = 1 << 16
    """Rows kept as tuples before they become a chunk of columns (bounds the tuples alive at once)."""

    __slots__ = ("_pending", "_chunks", "_chunked_rows", "_run_ints", "_run_times", "_step_ends", "_kinds")

    def __init__(self, rows: Iterable[tuple] = ()) -> None:
        self._pending: list[tuple] = []
        self._chunks: list[list[Any]] = []  # per chunk, one column per OpRow field
        self._chunked_rows = 0
        self._run_ints = array("q")  # per run of steps: its code in _kinds, its first kernel's op id, its steps
        self._run_times = array("d")  # per run: its first step's issue time, the host cost, the wake-up
        self._step_ends = array("d")  # per step: when its kernel ended
        self._kinds: dict[tuple, int] = {}  # (device, stream, kernel name, thread, sync thread, sync name) -> code
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

    def append_columns(
        self, op_id: np.ndarray, strings: dict[str, tuple[np.ndarray, tuple[str, ...]]], **numbers: Any
    ) -> None:
        """Record many ops given as columns (a backend's loop that keeps only its times): ``op_id`` (int64),
        every string column as ``(codes, values)`` (row ``i`` holds ``values[codes[i]]``), every number column
        (``device``, ``bytes``, ``issue_us``, ``start_us``, ``end_us``) as an array, or a scalar for every row.
        Their op ids need not follow the rows recorded before: :meth:`frame` orders the table by op id."""
        count = len(op_id)
        if count == 0:
            return
        self._chunk()
        chunk: list[Any] = []
        for name, string in zip(_FIELDS, _IS_STRING):
            if name == "op_id":
                chunk.append(np.asarray(op_id, dtype=np.int64))
            elif string:
                codes, values = strings[name]
                codes = np.zeros(count, np.int64) if np.isscalar(codes) else np.asarray(codes, dtype=np.int64)
                chunk.append(_Coded(codes, tuple(values)))
            else:
                value = numbers[name]
                chunk.append(np.full(count, value) if np.isscalar(value) else np.asarray(value))
        self._chunks.append(chunk)
        self._chunked_rows += count

    def step_kind(self, device: int, stream: str, name: str, thread: str, sync_thread: str, sync_name: str) -> int:
        """The code :meth:`append_step` takes for steps with these shared fields (the same code for the same fields)."""
        key = (device, stream, name, thread, sync_thread, sync_name)
        code = self._kinds.get(key)
        if code is None:
            code = self._kinds[key] = len(self._kinds)
        return code

    def append_step(
        self, kind: int, op_id: int, issue_us: float, start_us: float, end_us: float, woken_us: float
    ) -> None:
        """Record two ops: kernel ``op_id`` (``kind`` from :meth:`step_kind`) issued at ``issue_us``, run from
        ``start_us`` to ``end_us``, and op ``op_id + 1``, the host sync on it from ``start_us`` to ``woken_us``.

        The times must be floats (the table's float64 columns hold them as they are).
        """
        cost, wake = start_us - issue_us, woken_us - end_us
        if issue_us + cost == start_us and end_us + wake == woken_us:  # a run of one step holds them exactly
            self.append_steps(kind, op_id, issue_us, cost, wake, (end_us,))
            return
        device, stream, name, thread, sync_thread, sync_name = list(self._kinds)[kind]
        self.append((op_id, device, stream, _KERNEL, name, 0, "", thread, issue_us, start_us, end_us))
        sync_row = (op_id + 1, _HOST_DEVICE, sync_thread, _HOST_SYNC, sync_name, 0, "", sync_thread)
        self.append((*sync_row, start_us, start_us, woken_us))

    def append_steps(
        self, kind: int, first_op_id: int, issue_us: float, cost_us: float, wake_us: float, ends_us: Sequence[float]
    ) -> None:
        """Record a run of consecutive steps of one ``kind`` (:meth:`append_step` each), one per kernel end time
        in ``ends_us``: kernel op ids ``first_op_id``, ``first_op_id + 2``, ...; the first step issued at
        ``issue_us``, each later one when the previous one's sync returned; each kernel starting at its issue
        + ``cost_us`` and each sync returning at its kernel's end + ``wake_us``. All floats."""
        if not ends_us:
            return
        self._run_ints.extend((kind, first_op_id, len(ends_us)))
        self._run_times.extend((issue_us, cost_us, wake_us))
        if isinstance(ends_us, list):
            self._step_ends.fromlist(ends_us)  # twice as fast as extend for a list
        else:
            self._step_ends.extend(ends_us)

    def __len__(self) -> int:
        return self._chunked_rows + len(self._pending) + 2 * len(self._step_ends)

    def __iter__(self) -> Iterator[OpRow]:
        """Every row: those appended one by one in the order they were, then the steps' (not ``op_id`` order)."""
        make = OpRow._make
        for chunk in self._chunks:
            yield from map(make, zip(*(_to_list(column) for column in chunk)))
        yield from map(make, list(self._pending))
        steps = self._steps()
        if steps is None:
            return
        keys = list(self._kinds)
        columns = (steps.ids, steps.codes, *steps.issue_and_start(), steps.end, steps.woken)
        for op_id, code, issue, start, end, woken in zip(*(c.tolist() for c in columns)):
            device, stream, name, thread, sync_thread, sync_name = keys[code]
            yield OpRow(op_id, device, stream, _KERNEL, name, 0, "", thread, issue, start, end)
            yield OpRow(
                op_id + 1, _HOST_DEVICE, sync_thread, _HOST_SYNC, sync_name, 0, "", sync_thread, start, start, woken
            )

    def column(self, name: str) -> Any:
        """One column of every row, in the order :meth:`__iter__` gives them (a numpy array, or a list)."""
        i = _FIELDS.index(name)
        self._chunk()
        parts = self._parts(i, self._steps())
        if not parts:
            return np.zeros(0, dtype=object if _IS_STRING[i] else None)
        column = _gathered(parts, _IS_STRING[i], None)
        return column.to_numpy(dtype=object) if isinstance(column, pd.Series) else column

    def frame(
        self, columns: Iterable[str] | None = None, *, categorical_strings: bool = False, host_rows: bool = True
    ) -> pd.DataFrame:
        """The rows as a frame with OpRow's columns (or only ``columns``) in ``op_id`` order (stable), index 0..n-1.

        Dtypes are those pandas infers from the columns as lists; a log without rows gives
        ``pd.DataFrame([], columns=...)``. A caller that reads a few columns of a long run (a metric over
        its kernels) builds only those: the string columns are most of the table's cost. A caller that only
        reads them may take them as pandas categoricals (``categorical_strings``): the log's dictionary
        encoding as it is, with the same values, at a small part of the time and memory. A caller that reads
        only the devices' ops may leave the host threads' rows out (``host_rows=False``: the table's rows
        whose ``device`` is not ``HOST_DEVICE``, renumbered 0..n-1), half of a synchronous run's rows.
        """
        names = _FIELDS if columns is None else tuple(columns)
        if unknown := [name for name in names if name not in _FIELDS]:
            raise ValueError(f"not ops-table columns: {unknown}")
        self._chunk()
        if not self._chunks and not self._step_ends:
            return pd.DataFrame([], columns=list(names))
        steps = self._steps()
        kept = None if host_rows else [_device_rows(chunk[1]) for chunk in self._chunks]
        if kept is not None and steps is None and not any(mask.any() for mask in kept):  # no device row at all
            return self.frame(columns, categorical_strings=categorical_strings).iloc[0:0]
        op_id = _gathered(self._parts(0, steps, kept), False, None)
        order = None
        if isinstance(op_id, np.ndarray) and op_id.dtype.kind in "iu":
            if len(op_id) > 1 and not (op_id[1:] > op_id[:-1]).all():
                order = np.argsort(op_id, kind="stable")
        else:  # op ids pandas would sort as objects: sort as the table did before the log
            order = pd.Series(op_id).sort_values(kind="stable").index.to_numpy()
        # Column by column: a frame made from a dict of them would also hold every number column twice at once
        # (while pandas stacks the int64 and the float64 ones into blocks).
        frame = pd.DataFrame(index=pd.RangeIndex(len(op_id)))
        del op_id
        for name in names:
            i = _FIELDS.index(name)
            frame[name] = _gathered(self._parts(i, steps, kept), _IS_STRING[i], order, categorical_strings)
        return frame

    def table(self, run_id: str, consume: bool = False) -> pa.Table | None:
        """The results' ops table of these rows: :data:`harness.results.OPS_TABLE_SCHEMA` (``run_id`` first), in
        ``op_id`` order (stable), with the values :meth:`frame` gives, its string columns dictionary-encoded as the
        log keeps them (a long run's table holds no string per row: ``harness.results.write_results`` writes them
        as the schema's strings). None when a column holds a value its type cannot (a string where a number
        belongs, a non-string name): the caller then builds the table from :meth:`frame`. With ``consume``, each
        of the log's columns is dropped once the table's is made, and the log is empty after (a long run's log and
        its table are not held whole at once)."""
        self._chunk()
        count = len(self)
        if count == 0:
            return OPS_TABLE_SCHEMA.empty_table()
        steps = self._steps()
        if not all(_typed_parts(self._parts(i, steps, numbers=False), _IS_STRING[i]) for i in range(len(_FIELDS))):
            return None
        op_id = np.concatenate(self._parts(0, steps))
        order = None
        if len(op_id) > 1 and not (op_id[1:] > op_id[:-1]).all():
            order = np.argsort(op_id, kind="stable")
        del op_id
        columns = [pa.DictionaryArray.from_arrays(np.zeros(count, np.int32), pa.array([run_id], pa.string()))]
        for i, (name, string) in enumerate(zip(_FIELDS, _IS_STRING)):
            parts, field = self._parts(i, steps), OPS_TABLE_SCHEMA.field(name)
            if consume:
                for chunk in self._chunks:
                    chunk[i] = None
            if string:
                codes, dictionary = _sorted_dictionary(*_codes(parts, order))
                del parts
                columns.append(
                    pa.DictionaryArray.from_arrays(codes.astype(np.int32), pa.array(dictionary, pa.string()))
                )
            else:
                column = np.concatenate([_numbers(p) for p in parts])
                del parts
                columns.append(pa.array(column if order is None else column[order]).cast(field.type))
        if consume:
            self.__init__()  # empty
        return pa.Table.from_arrays(columns, schema=OPS_TABLE_SCHEMA)

    # ------------------------------------------------------------------ internals
    def _chunk(self) -> None:
        """The pending tuples become one chunk of typed columns."""
        pending = self._pending
        if not pending:
            return
        self._pending = []
        columns = list(zip(*pending))
        if len(columns) != len(_FIELDS):
            raise ValueError(f"an op row has {len(columns)} fields, not the {len(_FIELDS)} of OpRow")
        self._chunks.append([_typed(values, string) for values, string in zip(columns, _IS_STRING)])
        self._chunked_rows += len(pending)

    def _parts(
        self, i: int, steps: _Steps | None, kept: list[np.ndarray] | None = None, numbers: bool = True
    ) -> list[Any]:
        """Column ``i`` in parts: each chunk's, then the steps' kernel rows, then their sync rows; with ``kept``
        (a row mask per chunk), only the chunks' kept rows and no sync rows; without ``numbers``, the chunks'
        parts only when the column is a number column (the steps' numbers are always typed)."""
        if kept is None:
            parts = [chunk[i] for chunk in self._chunks]
        else:
            parts = [_rows_of(chunk[i], mask) for chunk, mask in zip(self._chunks, kept)]
        if steps is None or (not numbers and not _IS_STRING[i] and _FIELDS[i] not in ("device", "bytes")):
            return parts
        name = _FIELDS[i]
        if name == "issue_us":
            kernel, sync = steps.issue_and_start()
        elif name == "start_us":
            kernel = sync = steps.issue_and_start()[1]
        elif name == "end_us":
            kernel, sync = steps.end, (steps.woken if kept is None else None)
        elif name == "op_id":
            kernel = steps.ids
            sync = kernel + 1 if kept is None else None
        else:
            codes = steps.codes
            keys = list(self._kinds)
            kernel_values, sync_values = {
                "device": ([k[0] for k in keys], [_HOST_DEVICE] * len(keys)),
                "stream": ([k[1] for k in keys], [k[4] for k in keys]),
                "kind": ([_KERNEL] * len(keys), [_HOST_SYNC] * len(keys)),
                "name": ([k[2] for k in keys], [k[5] for k in keys]),
                "bytes": ([0] * len(keys), [0] * len(keys)),
                "host_memory": ([""] * len(keys), [""] * len(keys)),
                "thread": ([k[3] for k in keys], [k[4] for k in keys]),
            }[name]
            kernel, sync = _Coded(codes, tuple(kernel_values)), _Coded(codes, tuple(sync_values))
        return [*parts, kernel] if kept is not None else [*parts, kernel, sync]

    def _steps(self) -> _Steps | None:
        """The steps' columns, each redone from the runs when asked for; None without steps."""
        return _Steps(self._run_ints, self._run_times, self._step_ends) if self._step_ends else None


class _Steps:
    """Per step: the kernel's op id (the sync's is the next), its code in ``OpLog._kinds``, the kernel's issue,
    start and end, and when its sync returned: each computed when asked for (a long run's columns are not all
    held at once), with the float additions :meth:`OpLog.append_steps` describes."""

    def __init__(self, run_ints: array, run_times: array, ends: array) -> None:
        runs = np.frombuffer(run_ints, dtype=np.int64).reshape(-1, 3)
        self._kinds, self._first_ids, self._counts = runs[:, 0], runs[:, 1], runs[:, 2]
        self._run_times = np.frombuffer(run_times, dtype=np.float64).reshape(-1, 3)  # first issue, cost, wake-up
        self._first = np.cumsum(self._counts) - self._counts  # each run's first step
        self.end = np.frombuffer(ends, dtype=np.float64)

    def _per_step(self, per_run: np.ndarray) -> np.ndarray:
        return np.repeat(per_run, self._counts)

    @property
    def ids(self) -> np.ndarray:
        return self._per_step(self._first_ids - 2 * self._first) + 2 * np.arange(len(self.end), dtype=np.int64)

    @property
    def codes(self) -> np.ndarray:
        return self._per_step(self._kinds)

    @property
    def woken(self) -> np.ndarray:
        return self.end + self._per_step(self._run_times[:, 2])

    def issue_and_start(self) -> tuple[np.ndarray, np.ndarray]:
        issue = np.empty_like(self.end)
        issue[1:] = self.woken[:-1]  # a step is issued when the previous one's sync returned ...
        issue[self._first] = self._run_times[:, 0]  # ... but the first of a run
        return issue, issue + self._per_step(self._run_times[:, 1])


class _Coded:
    """A step column: ``values[codes[i]]`` for each step."""

    __slots__ = ("codes", "values")

    def __init__(self, codes: np.ndarray, values: tuple) -> None:
        self.codes = codes
        self.values = values


def _device_rows(device: Any) -> np.ndarray:
    """Which rows of a chunk ran on a device (``device`` is not ``HOST_DEVICE``), from its device column."""
    if isinstance(device, np.ndarray):
        return device != _HOST_DEVICE
    return np.array([not (d == _HOST_DEVICE) for d in device], dtype=bool)


def _rows_of(part: Any, mask: np.ndarray) -> Any:
    """A chunk's column, only the rows of ``mask``."""
    if isinstance(part, np.ndarray):
        return part[mask]
    if isinstance(part, pa.DictionaryArray):
        return part.filter(pa.array(mask))
    if isinstance(part, _Coded):
        return _Coded(part.codes[mask], part.values)
    return tuple(compress(part, mask))


def _typed(values: tuple, string: bool) -> Any:
    """A chunk's column: a numpy array of numbers, a dictionary-encoded Arrow array of strings, else the tuple."""
    if string:
        try:
            array_ = pa.array(values, pa.string())
        except (pa.ArrowException, TypeError, ValueError):
            return values
        return array_.dictionary_encode() if array_.null_count == 0 else values
    array_ = np.array(values)
    return array_ if array_.dtype.kind in "iuf" and array_.ndim == 1 else values


_DEFAULT_STRING_DTYPE = pd.Series(["x"]).dtype  # what this pandas infers for a column of str


def _gathered(parts: list[Any], string: bool, order: np.ndarray | None, categorical: bool = False) -> Any:
    """One column from its parts, in ``order`` (None: as they come), typed as pandas would type its values
    (strings as a categorical when ``categorical``)."""
    if not _typed_parts(parts, string):  # Python values, in order, for pandas to infer from
        values = [v for p in parts for v in _to_list(p)]
        return values if order is None else [values[i] for i in order]
    if not string:
        column = np.concatenate([_numbers(p) for p in parts])
        return column if order is None else column[order]
    all_codes, dictionary = _codes(parts, order)
    if categorical:
        return pd.Categorical.from_codes(all_codes, categories=dictionary)
    if isinstance(_DEFAULT_STRING_DTYPE, pd.StringDtype):  # pandas >= 3 (or future.infer_string): Arrow-backed str
        encoded = pa.DictionaryArray.from_arrays(
            pa.array(all_codes.astype(np.int32)), pa.array(dictionary, pa.string())
        )
        return pd.Series(_DEFAULT_STRING_DTYPE.__from_arrow__(encoded), copy=False)
    return np.array(dictionary, dtype=object)[all_codes]  # object dtype: one str object per distinct value


def _typed_parts(parts: list[Any], string: bool) -> bool:
    """Whether a column's parts are all typed: numpy numbers, dictionary-encoded strings, step columns of str (a
    string column) or of int (a number column)."""
    if any(isinstance(p, tuple) for p in parts):
        return False
    checked: set[tuple] = set()  # the values of many parts are one tuple (a program's kernel names): checked once
    for p in parts:
        if not isinstance(p, _Coded):
            continue
        try:
            if p.values in checked:
                continue
        except TypeError:  # an unhashable value: neither a str nor an int
            return False
        if not all(isinstance(v, str) if string else type(v) is int for v in p.values):
            return False
        checked.add(p.values)
    return True


def _codes(parts: list[Any], order: np.ndarray | None) -> tuple[np.ndarray, list[str]]:
    """A typed string column as codes (int64, in ``order``) into its distinct values (first seen first)."""
    uniques: dict[str, int] = {}
    codes = []
    remaps: dict[tuple, np.ndarray] = {}  # per values tuple (many parts share one): its values' codes
    for p in parts:
        if isinstance(p, _Coded):
            remap = remaps.get(p.values)
            if remap is None:
                remap = remaps[p.values] = np.array(
                    [uniques.setdefault(v, len(uniques)) for v in p.values], dtype=np.int64
                )
            codes.append(remap[p.codes] if len(remap) else np.zeros(0, np.int64))
        else:  # a dictionary-encoded chunk
            remap = np.array([uniques.setdefault(v, len(uniques)) for v in p.dictionary.to_pylist()], dtype=np.int64)
            codes.append(remap[p.indices.to_numpy(zero_copy_only=False)] if len(remap) else np.zeros(0, np.int64))
    all_codes = np.concatenate(codes)
    return (all_codes if order is None else all_codes[order]), list(uniques)


def _sorted_dictionary(codes: np.ndarray, values: list[str]) -> tuple[np.ndarray, list[str]]:
    """Codes into ``values`` as codes into the values they use, sorted: one table's dictionary for the same strings
    however its rows were recorded (a frame of it then has the same categories)."""
    used = np.flatnonzero(np.bincount(codes, minlength=len(values)) > 0) if len(codes) else np.zeros(0, np.int64)
    kept = np.array(values, dtype=object)[used] if len(used) else np.zeros(0, object)
    order = np.argsort(kept, kind="stable")
    rank = np.zeros(len(values), np.int64)
    rank[used[order]] = np.arange(len(order))
    return rank[codes], kept[order].tolist()


def _numbers(part: Any) -> np.ndarray:
    if isinstance(part, _Coded):
        return np.array(part.values, dtype=np.int64)[part.codes] if part.values else np.zeros(0, np.int64)
    return part


def _to_list(part: Any) -> list:
    if isinstance(part, tuple):
        return list(part)
    if isinstance(part, _Coded):
        return [part.values[c] for c in part.codes.tolist()]
    if isinstance(part, pa.DictionaryArray):
        return part.to_pylist()
    return part.tolist()
