"""A host thread's recorded calls as columns: what :func:`~.program.build_program` makes of a long recording.

A recording of a million ops is half a million calls; as :class:`~.program.Call`
objects they cost most of the time it takes to simulate it. :func:`thread_table`
works out, column-wise, exactly the calls ``build_program`` defines (the module
docstring of :mod:`.program`): which trace rows become calls, each call's CPU
time before it (its gap plus the calls folded into it, summed in trace order as
the row-by-row definition adds them), its GPU ops (a slice of one op table), its
stream, event and counts. :meth:`CallTable.calls` makes the ``Call`` objects
when something needs them (a what-if, compensation of a program with graph
launches, tests); :mod:`.steps` builds a step program from the columns directly.
"""

from __future__ import annotations

import ctypes
from dataclasses import dataclass

import numpy as np
import pandas as pd

from harness.memory_release import release_freed_memory
from workloads.recorded.program import MODELLED_CALLS, TEXT_CODE, Call, DeviceOp


@dataclass(frozen=True, eq=False)
class OpTable:
    """A program's GPU ops linked to calls, sorted by (correlation, start): a call's ops are one slice."""

    correlation: np.ndarray  # int64
    kind: np.ndarray  # object: kernel, memset, copy_h2d, copy_d2h, copy_d2d
    stream: np.ndarray  # object: StreamKey
    name: np.ndarray  # object: str
    duration_us: np.ndarray  # float64
    nbytes: np.ndarray  # int64
    host_memory: np.ndarray  # object: "pinned" / "pageable"

    @classmethod
    def of(cls, linked: pd.DataFrame) -> OpTable:
        ops = linked.sort_values(["correlation", "start_us"], kind="stable")
        devices = ops["device"].to_numpy().astype(np.int64)
        streams = _per_distinct(
            (devices, ops["stream"].to_numpy(dtype=object)),
            lambda device, stream: (int(device), str(stream)),
            (None, _codes(ops, "stream")),
        )
        memory = _per_distinct(
            (ops["host_memory"].to_numpy(dtype=object),),
            lambda m: m if isinstance(m, str) and m != "" else "pinned",
            (_codes(ops, "host_memory"),),
        )
        return cls(
            ops["correlation"].to_numpy().astype(np.int64),
            ops["kind"].to_numpy(dtype=object),
            streams,
            _per_distinct((ops["name"].to_numpy(dtype=object),), str, (_codes(ops, "name"),)),
            ops["duration_us"].to_numpy(dtype=np.float64),
            ops["bytes"].to_numpy().astype(np.int64),
            memory,
        )

    def slice_of(self, correlation: np.ndarray, known: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(first, count) of each correlation's ops; 0 ops where ``known`` is False."""
        first = np.searchsorted(self.correlation, correlation, side="left")
        count = np.searchsorted(self.correlation, correlation, side="right") - first
        return first.astype(np.int64), np.where(known, count, 0).astype(np.int64)

    def device_ops(self, first: int, count: int) -> tuple[DeviceOp, ...]:
        end = first + count
        return tuple(
            DeviceOp(kind, stream, name, duration, nbytes, memory)
            for kind, stream, name, duration, nbytes, memory in zip(
                self.kind[first:end].tolist(),
                self.stream[first:end].tolist(),
                self.name[first:end].tolist(),
                self.duration_us[first:end].tolist(),
                self.nbytes[first:end].tolist(),
                self.host_memory[first:end].tolist(),
            )
        )


@dataclass(frozen=True, eq=False)
class CallTable:
    """One thread's calls, a row per call (the fields of :class:`~.program.Call`, ops as a slice of ``ops``)."""

    kind: np.ndarray  # object
    name: np.ndarray  # object
    host_before_us: np.ndarray  # float64
    duration_us: np.ndarray  # float64
    stream: np.ndarray  # object: StreamKey or None
    group: np.ndarray  # object: str
    correlation: np.ndarray  # object: int or None
    waits_for: np.ndarray  # object: int or None
    op_first: np.ndarray  # int64
    op_count: np.ndarray  # int64
    gap_aten_ops: np.ndarray  # int64
    gap_ranges: np.ndarray  # int64
    gap_calls: np.ndarray  # int64
    ops: OpTable
    waits: dict  # correlation -> [(stream, event)]: inferred waits before the call's ops
    records: dict  # correlation -> [(stream, event)]: inferred records after them

    def __len__(self) -> int:
        return len(self.kind)

    @property
    def inferred(self) -> bool:
        """Whether any call of the thread has inferred waits or records."""
        if not self.waits and not self.records:
            return False
        keys = set(self.waits) | set(self.records)
        return any(c in keys for c in self.correlation.tolist())

    def with_costs(self, host_before_us: np.ndarray, duration_us: np.ndarray) -> CallTable:
        """The same calls with other CPU times (compensation)."""
        fields = dict(self.__dict__)
        fields.update(host_before_us=host_before_us, duration_us=duration_us)
        return CallTable(**fields)

    def calls(self) -> tuple[Call, ...]:
        ops, waits, records = self.ops, self.waits, self.records
        out = []
        columns = (
            self.kind.tolist(),
            self.name.tolist(),
            self.host_before_us.tolist(),
            self.duration_us.tolist(),
            self.stream.tolist(),
            self.group.tolist(),
            self.correlation.tolist(),
            self.waits_for.tolist(),
            self.op_first.tolist(),
            self.op_count.tolist(),
            self.gap_aten_ops.tolist(),
            self.gap_ranges.tolist(),
            self.gap_calls.tolist(),
        )
        for kind, name, before, duration, stream, group, corr, wait, first, count, aten, ranges, folded in zip(
            *columns
        ):
            out.append(
                Call(
                    kind=kind,
                    name=name,
                    host_before_us=before,
                    duration_us=duration,
                    stream=stream,
                    ops=ops.device_ops(first, count) if count else (),
                    group=group,
                    event=corr if kind == "call_record" else None,
                    waits_for=wait,
                    synchronous=kind == "call_memcpy" and "Async" not in name,
                    wait_before=tuple(waits.get(corr, ())),
                    record_after=tuple(records.get(corr, ())),
                    gap_aten_ops=aten,
                    gap_ranges=ranges,
                    gap_calls=folded,
                )
            )
        return tuple(out)


def _per_distinct(keys: tuple[np.ndarray, ...], make, codes: tuple[np.ndarray | None, ...] | None = None) -> np.ndarray:
    """An object array of ``make(*key)`` per row, ``make`` called once per distinct key (rows of a key share it).

    ``codes``: per key, its values' codes where known (``TEXT_CODE`` columns: one per distinct value), which
    spares hashing the values; None (or a None entry) to factorize that key."""
    if len(keys[0]) == 0:
        return np.empty(0, object)
    combined = np.zeros(len(keys[0]), np.int64)
    for i, key in enumerate(keys):  # one code per distinct combination: the codes of each key, mixed in
        key_codes = codes[i] if codes is not None and codes[i] is not None else None
        if key_codes is None:
            key_codes = pd.factorize(key, use_na_sentinel=False)[0]
        key_codes = key_codes.astype(np.int64) - int(key_codes.min())
        combined = combined * (int(key_codes.max()) + 1) + key_codes
    if int(combined.max()) < _LOOKUP_CODES:  # a row of each distinct code (any: its rows hold the same key), no sort
        row_of = np.full(int(combined.max()) + 1, -1, np.int64)
        row_of[combined] = np.arange(len(combined))
        used = np.flatnonzero(row_of >= 0)
        values = np.empty(len(row_of), object)
        values[used] = [make(*(key[i] for key in keys)) for i in row_of[used].tolist()]
        return values[combined]
    _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    values = np.empty(len(first), object)
    values[:] = [make(*(key[i] for key in keys)) for i in first.tolist()]
    return values[inverse]


_LOOKUP_CODES = 1 << 22  # combined codes below it: a lookup table by code (32 MB at most) rather than a sort


def factorize_shared(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, uniques)`` of an object array by object identity: ``uniques[codes]`` is ``values``, the uniques in
    order of first appearance, as ``pd.factorize(values, use_na_sentinel=False)`` gives them where every distinct
    value is one object (the columns :func:`_per_distinct` makes). Equal values held by distinct objects get a
    code each; a caller that maps each unique through a function of its value (or registers it by value, in
    order) gets the same result as from ``pd.factorize``, which hashes every row's value (50x slower for a
    column of a few long kernel names)."""
    values = np.ascontiguousarray(values, dtype=object)
    if len(values) == 0:
        return np.zeros(0, np.intp), np.empty(0, object)
    # An object array's buffer holds one object address per row: read as integers (copied while ``values`` lives).
    addresses = np.frombuffer((ctypes.c_size_t * len(values)).from_address(values.ctypes.data), np.uintp).copy()
    codes = pd.factorize(addresses)[0]  # numbered in order of first appearance: each first row raises the maximum
    first = np.flatnonzero(np.diff(np.maximum.accumulate(codes), prepend=-1))
    return codes, values[first]


def _codes(rows: pd.DataFrame, column: str) -> np.ndarray | None:
    """The codes ``build_program`` keeps beside a text column (None where the frame has none)."""
    name = TEXT_CODE.format(column)
    return rows[name].to_numpy() if name in rows.columns else None


def _member_of(rows: pd.DataFrame, column: str):
    """``is_in(*wanted)``: where text column ``column`` holds one of ``wanted`` (through its codes where the frame
    has them: each distinct value compared once)."""
    values = rows[column].to_numpy(dtype=object)
    codes = _codes(rows, column)
    if codes is None:
        return lambda *wanted: np.isin(values, wanted)
    size = int(codes.max()) + 2 if len(codes) else 1  # code -1 (missing): the last
    row_of = np.full(size, -1, np.int64)
    row_of[codes] = np.arange(len(codes))  # a row of each code (any: they hold the same value)
    kept = np.flatnonzero(row_of[:-1] >= 0)
    first = row_of[kept]

    def is_in(*wanted: object) -> np.ndarray:
        lookup = np.zeros(size, bool)
        lookup[kept] = [v in wanted for v in values[first].tolist()]
        return lookup[codes]

    return is_in


def _counts(column: pd.Series) -> np.ndarray:
    """A count column (NaN / None: 0) as int64."""
    return pd.to_numeric(column, errors="coerce").fillna(0).to_numpy().astype(np.int64)


def thread_table(
    rows: pd.DataFrame, ops: OpTable, start_us: float, waits: dict, records: dict, device: int = 0
) -> CallTable:
    """The calls of one thread's trace rows (in start order), as ``build_program`` defines them; ``device``: the
    device of the streams its calls name without launching on them (syncs, records, waits): a rank's own GPU."""
    n = len(rows)
    start = rows["start_us"].to_numpy(dtype=np.float64)
    duration = rows["duration_us"].to_numpy(dtype=np.float64)
    host_gap = pd.to_numeric(rows["host_gap_us"], errors="coerce").to_numpy(dtype=np.float64)
    corr_missing = rows["correlation"].isna().to_numpy()
    correlation = pd.to_numeric(rows["correlation"], errors="coerce").fillna(-1).to_numpy().astype(np.int64)
    kind = rows["kind"].to_numpy(dtype=object)
    name = _per_distinct((rows["name"].to_numpy(dtype=object),), str, (_codes(rows, "name"),))
    group = _per_distinct(
        (rows["group"].to_numpy(dtype=object),), lambda g: g if isinstance(g, str) else "", (_codes(rows, "group"),)
    )
    wait_missing = rows["wait_correlation"].isna().to_numpy()
    wait = pd.to_numeric(rows["wait_correlation"], errors="coerce").fillna(0).to_numpy().astype(np.int64)
    aten, ranges = _counts(rows["gap_aten_ops"]), _counts(rows["gap_ranges"])

    op_first, op_count = ops.slice_of(correlation, ~corr_missing)
    stream = _per_distinct(
        (rows["stream"].to_numpy(dtype=object),),
        lambda s: (device, s) if isinstance(s, str) and s else None,
        (_codes(rows, "stream"),),
    )
    has_ops = op_count > 0
    if has_ops.any():
        stream[has_ops] = ops.stream[op_first[has_ops]]
    no_stream = np.equal(stream, None)
    kind_is = _member_of(rows, "kind")
    unnamed = (kind_is("call_record") & no_stream) | (kind_is("call_wait") & (no_stream | wait_missing))
    kept = kind_is(*MODELLED_CALLS) & ~unnamed

    # CPU time before each call: its gap, plus the gaps and durations of the calls folded into it, added in
    # trace order (build_program's definition); the first call's gap is measured from the program's start.
    gap = np.where(host_gap > 0.0, host_gap, 0.0)  # max(0.0, gap); a missing gap is 0
    kept_at = np.flatnonzero(kept)
    seg_begin = np.concatenate(([0], kept_at[:-1] + 1)).astype(np.int64) if len(kept_at) else kept_at
    lengths = kept_at - seg_begin + 1
    before = gap[kept_at]  # a call with nothing folded into it: 0.0 + its gap
    loop = lengths > 1
    if len(kept_at):
        loop[0] = True  # the first call's gap has a rule of its own
    for k in np.flatnonzero(loop).tolist():  # the rest in order, as the definition adds them
        pending = 0.0
        previous_end = start_us
        last = int(kept_at[k])
        for r in range(int(seg_begin[k]), last + 1):
            if k == 0 and pending == 0.0:
                g = max(0.0, float(start[r]) - previous_end)
            else:
                g = float(gap[r])
            previous_end = float(start[r]) + float(duration[r])
            pending += g
            if r != last:
                pending += float(duration[r])
        before[k] = pending
    covered = int(kept_at[-1]) + 1 if len(kept_at) else 0
    aten_sum = np.add.reduceat(aten[:covered], seg_begin) if covered else np.zeros(0, np.int64)
    ranges_sum = np.add.reduceat(ranges[:covered], seg_begin) if covered else np.zeros(0, np.int64)

    table = {
        "kind": kind[kept_at],
        "name": name[kept_at],
        "host_before_us": before,
        "duration_us": duration[kept_at].copy(),
        "stream": stream[kept_at],
        "group": group[kept_at],
        "op_first": op_first[kept_at],
        "op_count": op_count[kept_at],
        "gap_aten_ops": aten_sum,
        "gap_ranges": ranges_sum,
        "gap_calls": (lengths - 1).astype(np.int64),
    }
    correlation, corr_missing = correlation[kept_at], corr_missing[kept_at]
    wait, wait_missing = wait[kept_at], wait_missing[kept_at]
    # The rows' columns are freed, and their pages handed back, before the call's ids become Python ints (half a
    # million of them, in memory of their own): a long recording's build peaks here.
    del rows, start, duration, host_gap, kind, name, group, aten, ranges, op_first, op_count, stream, no_stream
    del unnamed, kept, gap, kept_at, seg_begin, lengths, before, loop, kind_is, has_ops
    release_freed_memory()
    corr_kept = correlation.astype(object)  # Python ints
    corr_kept[corr_missing] = None
    waits_for = wait.astype(object)
    waits_for[wait_missing] = None
    return CallTable(
        **table,
        correlation=corr_kept,
        waits_for=waits_for,
        ops=ops,
        waits=waits,
        records=records,
    )
