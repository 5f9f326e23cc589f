"""The columnar op log (harness.oplog): the ops table it builds is the one pandas builds from the rows as lists."""

from __future__ import annotations

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import ops_frame
from harness.oplog import OpLog, OpRow

NAMES = st.sampled_from(["decode", "sync:gpu", "", "event7", "naïve ✓", "k"])
NUMBER = st.one_of(st.integers(-(2**40), 2**40), st.floats(allow_nan=False, allow_infinity=False, width=64))
ROW = st.tuples(
    st.integers(0, 10**9),  # op_id
    st.integers(-1, 7),  # device
    NAMES,  # stream
    st.sampled_from(["kernel", "host_sync", "copy_h2d", "record"]),
    NAMES,  # name
    st.integers(0, 2**40),  # bytes
    st.sampled_from(["", "pinned", "pageable"]),
    NAMES,  # thread
    NUMBER,  # issue_us: SimPy's clock starts at the int 0, so ints and floats mix
    NUMBER,
    NUMBER,
)


def _reference(rows: list[tuple]) -> pd.DataFrame:
    """The ops table as it was built before the op log: one list per column, then a stable sort by op_id
    (whose index was the rows' places before the sort; the log's table has 0..n-1)."""
    if not rows:
        return pd.DataFrame(rows, columns=list(OpRow._fields))
    data = {name: [row[i] for row in rows] for i, name in enumerate(OpRow._fields)}
    return pd.DataFrame(data).sort_values("op_id", kind="stable")


def _small_chunks(rows: int) -> OpLog:
    class Small(OpLog):
        CHUNK_ROWS = rows

    return Small()


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=st.lists(ROW, max_size=40), chunk=st.integers(1, 9))
def test_the_table_is_the_one_pandas_builds_from_lists(rows, chunk) -> None:
    log = _small_chunks(chunk)  # many chunk boundaries: chunks of ints next to chunks of floats
    for row in rows:
        log.append(row)
    assert len(log) == len(rows)
    assert list(log) == rows and all(type(row) is OpRow for row in log)
    expected = _reference(rows)
    got = ops_frame(log)
    pd.testing.assert_frame_equal(got, expected.reset_index(drop=True), check_exact=True)
    assert got.dtypes.equals(expected.dtypes)
    assert ops_frame(rows).equals(expected.reset_index(drop=True))  # a plain list of rows makes the same table


STEP = st.tuples(
    st.sampled_from([(0, "gpu", "decode", "main", "main", "sync:gpu"), (1, "s1", "prefill", "t1", "t1", "sync:s1")]),
    st.floats(0.0, 1e9),  # issue
    st.floats(0.0, 10.0),  # host cost
    st.floats(0.0, 1e4),  # kernel time
    st.floats(0.0, 10.0),  # wake-up
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.one_of(ROW, STEP), max_size=40), chunk=st.integers(1, 9))
def test_steps_make_the_two_rows_they_stand_for(records, chunk) -> None:
    """A kernel + host sync recorded as one step gives the table the two rows appended one by one would."""
    log = _small_chunks(chunk)
    rows = []
    next_id = 10**9 + 1  # above the rows' op ids; steps interleave with each other in id order
    for record in records:
        if len(record) == 11:
            log.append(record)
            rows.append(record)
            continue
        (device, stream, name, thread, sync_thread, sync_name), issue, cost, work, wake = record
        start = issue + cost
        end = start + work
        woken = end + wake
        log.append_step(
            log.step_kind(device, stream, name, thread, sync_thread, sync_name), next_id, issue, start, end, woken
        )
        rows.append((next_id, device, stream, "kernel", name, 0, "", thread, issue, start, end))
        rows.append((next_id + 1, -1, sync_thread, "host_sync", sync_name, 0, "", sync_thread, start, start, woken))
        next_id += 2
    assert len(log) == len(rows)
    assert sorted(log) == sorted(rows)
    pd.testing.assert_frame_equal(ops_frame(log), _reference(rows).reset_index(drop=True), check_exact=True)
    for name in ("op_id", "end_us", "name"):
        assert sorted(list(log.column(name))) == sorted(row[OpRow._fields.index(name)] for row in rows)


def test_values_a_typed_column_cannot_hold_are_kept_as_pandas_would_keep_them() -> None:
    rows = [
        (1, 0, "s", "kernel", "a", 0, "", "main", 0.0, 1.0, 2.0),
        (2, 0, "s", "kernel", None, 0, "", "main", 1.0, 2.0, 3.0),  # a missing name
        (3, 0, "s", "kernel", 5, 0, "", "main", True, 2.0, 3.0),  # a number as name, a bool as time
    ]
    log = _small_chunks(1)
    for row in rows:
        log.append(row)
    pd.testing.assert_frame_equal(ops_frame(log), _reference(rows).reset_index(drop=True), check_exact=True)


def test_an_empty_log_makes_the_empty_table() -> None:
    pd.testing.assert_frame_equal(ops_frame(OpLog()), _reference([]))
    assert len(OpLog()) == 0 and list(OpLog()) == []


def test_a_row_of_the_wrong_width_is_refused() -> None:
    log = OpLog()
    log.append((1, 2, 3))
    with pytest.raises(ValueError, match="11 of OpRow"):
        log.frame()


def test_columns_and_run_id() -> None:
    rows = [(i, 0, "gpu", "kernel", "decode", 0, "", "main", float(i), float(i), i + 0.5) for i in range(10)]
    log = OpLog(rows)
    assert log.column("end_us").tolist() == [row[10] for row in rows]
    assert log.column("stream").tolist() == ["gpu"] * 10
    framed = ops_frame(log, "spec:policy:sim:r0")
    assert list(framed.columns[:2]) == ["run_id", "op_id"] and (framed["run_id"] == "spec:policy:sim:r0").all()


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.one_of(ROW, STEP), max_size=30),
    columns=st.lists(st.sampled_from(OpRow._fields), min_size=1, max_size=5, unique=True),
)
def test_a_subset_of_columns_is_those_columns_of_the_whole_table(records, columns) -> None:
    log = _log_of(records, 4)
    pd.testing.assert_frame_equal(ops_frame(log, columns=columns), ops_frame(log)[columns], check_exact=True)


def _log_of(records: list[tuple], chunk: int) -> OpLog:
    """A log of ``ROW`` and ``STEP`` records in turn (chunks of ``chunk`` rows); the steps' op ids from 10**9 + 1."""
    log = _small_chunks(chunk)
    next_id = 10**9 + 1
    for record in records:
        if len(record) == 11:
            log.append(record)
        else:
            (device, stream, name, thread, sync_thread, sync_name), issue, cost, work, wake = record
            kind = log.step_kind(device, stream, name, thread, sync_thread, sync_name)
            log.append_step(kind, next_id, issue, issue + cost, issue + cost + work, issue + cost + work + wake)
            next_id += 2
    return log


def test_an_unknown_column_is_refused() -> None:
    with pytest.raises(ValueError, match="not ops-table columns"):
        ops_frame([], columns=["op_id", "duration_us"])


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.one_of(ROW, STEP), max_size=30), chunk=st.integers(1, 9))
def test_categorical_strings_hold_the_same_values(records, chunk) -> None:
    """A reader's frame (``categorical_strings``) has the table's values: string columns as categoricals."""
    log = _log_of(records, chunk)
    table, reader = ops_frame(log), ops_frame(log, categorical_strings=True)
    assert list(reader.columns) == list(table.columns) and len(reader) == len(table)
    _assert_same_values(reader, table)
    if len(table):
        assert isinstance(reader["kind"].dtype, pd.CategoricalDtype)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    records=st.lists(st.one_of(ROW, STEP), max_size=30),
    chunk=st.integers(1, 9),
    columns=st.lists(st.sampled_from(OpRow._fields), min_size=1, max_size=5, unique=True),
    categorical=st.booleans(),
)
def test_without_host_rows_the_table_is_its_device_rows(records, chunk, columns, categorical) -> None:
    """``host_rows=False`` gives the table's rows whose device is not HOST_DEVICE (-1), renumbered."""
    log = _log_of(records, chunk)
    table = ops_frame(log)
    expected = table.loc[table["device"] != -1, columns].reset_index(drop=True)
    got = ops_frame(log, columns=columns, categorical_strings=categorical, host_rows=False)
    assert list(got.columns) == list(expected.columns) and len(got) == len(expected)
    _assert_same_values(got, expected)


def _assert_same_values(got: pd.DataFrame, table: pd.DataFrame) -> None:
    """Each column of ``got`` holds ``table``'s values: exactly, or as categories of the same strings."""
    reader = got
    for name in table.columns:
        if isinstance(reader[name].dtype, pd.CategoricalDtype):
            assert reader[name].astype(object).tolist() == table[name].astype(object).tolist()
        else:
            pd.testing.assert_series_equal(reader[name], table[name], check_exact=True)


def test_rows_given_as_columns_join_the_table_in_op_id_order():
    """``append_columns`` (the simulator's program fast path): rows whose other fields are columns of codes
    come out as the same table as the same rows appended one by one, wherever their op ids fall."""
    import numpy as np

    rows = [
        (1, -1, "main", "host_work", "cpu", 0, "", "main", 0.0, 0.0, 2.5),
        (2, 0, "s7", "kernel", "gemm", 0, "", "main", 2.5, 3.0, 9.0),
        (3, 0, "s7", "copy_d2h", "state", 64, "pinned", "main", 4.0, 9.0, 12.0),
        (4, -1, "main", "host_work", "cpu:step", 0, "", "main", 4.0, 4.0, 6.0),
        (5, 0, "s9", "kernel", "add", 0, "", "main", 6.0, 12.0, 12.5),
    ]
    log = OpLog()
    log.append(rows[2])
    host, kernels = [0, 3], [1, 4]
    strings = {"host_memory": (0, ("",)), "thread": (0, ("main",))}
    log.append_columns(
        np.array([rows[i][0] for i in kernels]),
        {**strings, "stream": (np.array([1, 0]), ("s9", "s7")), "kind": (0, ("kernel",)),
         "name": (np.array([0, 1]), ("gemm", "add"))},
        device=0, bytes=0, issue_us=np.array([2.5, 6.0]), start_us=np.array([3.0, 12.0]), end_us=np.array([9.0, 12.5]),
    )
    log.append_columns(
        np.array([rows[i][0] for i in host]),
        {
            **strings,
            "stream": (0, ("main",)),
            "kind": (0, ("host_work",)),
            "name": (np.array([1, 0]), ("cpu:step", "cpu")),
        },
        device=-1, bytes=0, issue_us=np.array([0.0, 4.0]), start_us=np.array([0.0, 4.0]), end_us=np.array([2.5, 6.0]),
    )
    assert len(log) == 5
    pd.testing.assert_frame_equal(log.frame(), _reference(rows))
    devices_only = _reference(rows).query("device >= 0").reset_index(drop=True)
    pd.testing.assert_frame_equal(log.frame(host_rows=False), devices_only)
