"""The results' ops table made straight from the op log (``harness.backend.ops_table``: strings dictionary-encoded),
its file, and the categorical frame the recorded metrics read: the same table, file and metrics as the ops frame's."""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import categorical_ops_frame, ops_frame, ops_table
from harness.oplog import OpLog
from harness.paths import SPECS_DIR
from harness.results import OPS_SCHEMA, OPS_TABLE_SCHEMA, declared, to_table, write_results
from harness.spec import load_spec
from sim import SimBackend
from tests.test_oplog import ROW, STEP, _log_of

RUN_ID = "spec:policy:sim:r0"


def _plain(table: pa.Table) -> pa.Table:
    """A dictionary-encoded table with its strings as strings."""
    return table.cast(declared(table.schema))


def _expected(log: OpLog) -> pa.Table:
    """The ops table as the runner made it before: the ops frame, converted."""
    return to_table("ops", ops_frame(log, RUN_ID))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.one_of(ROW, STEP), max_size=40), chunk=st.integers(1, 9))
def test_the_log_table_is_the_frame_table(records, chunk) -> None:
    log = _log_of(records, chunk)
    table = ops_table(log, RUN_ID)
    assert table.schema.equals(OPS_TABLE_SCHEMA, check_metadata=True)
    assert _plain(table).equals(_expected(log), check_metadata=True)
    consumed = ops_table(log, RUN_ID, consume=True)  # the runner's: the log emptied as the table is made
    assert consumed.equals(table, check_metadata=True)
    assert len(log) == 0 or log.table(RUN_ID) is None


def test_values_a_typed_column_cannot_hold_come_through_the_frame() -> None:
    rows = [
        (1, 0, "s", "kernel", "a", 0, "", "main", 0.0, 1.0, 2.0),
        (2, 0, "s", "kernel", None, 0, "", "main", 1.0, 2.0, 3.0),  # a missing name
        (3, 0, "s", "kernel", "b", 0, "", "main", 2, 2.0, 3.0),  # an int time beside floats
    ]
    log = OpLog(rows)
    assert log.table(RUN_ID) is None  # the log cannot: the frame's table, dictionary-encoded
    table = ops_table(log, RUN_ID)
    assert table.schema.equals(OPS_TABLE_SCHEMA, check_metadata=True)
    assert _plain(table).equals(_expected(log), check_metadata=True)
    assert table["name"].to_pylist() == ["a", None, "b"]


def test_rows_given_as_columns_and_out_of_order_ids() -> None:
    log = OpLog()
    log.append((9, 0, "s7", "copy_d2h", "state", 64, "pinned", "main", 4.0, 9.0, 12.0))
    log.append_columns(
        np.array([5, 2]),
        {
            "stream": (np.array([1, 0]), ("s9", "s7")),
            "kind": (0, ("kernel",)),
            "name": (np.array([0, 1]), ("gemm", "add")),
            "host_memory": (0, ("",)),
            "thread": (0, ("main",)),
        },
        device=0,
        bytes=0,
        issue_us=np.array([2.5, 6.0]),
        start_us=np.array([3.0, 12.0]),
        end_us=np.array([9.0, 12.5]),
    )
    table = ops_table(log, RUN_ID)
    assert table["op_id"].to_pylist() == [2, 5, 9]
    assert _plain(table).equals(_expected(log), check_metadata=True)


def test_an_empty_log_makes_the_empty_table() -> None:
    table = ops_table(OpLog(), RUN_ID)
    assert table.num_rows == 0 and table.schema.equals(OPS_TABLE_SCHEMA)
    assert _plain(table).equals(_expected(OpLog()), check_metadata=True)


def test_a_dictionary_encoded_table_is_written_as_its_strings(tmp_path) -> None:
    """The file of the dictionary-encoded table is the strings' file as read back: same table, same key-value
    metadata (the Arrow schema, ``ARROW:schema``, included), same pandas dtypes."""
    log = _log_of([(0, 0, "gpu", "kernel", "naïve ✓", 0, "", "main", 0.0, 1.0, 2.0)] * 3, 2)
    for i in range(5):
        kind = log.step_kind(0, "gpu", f"k{i % 2}", "main", "main", "sync:gpu")
        log.append_step(kind, 100 + 2 * i, 10.0 * i, 10.0 * i + 1, 10.0 * i + 4, 10.0 * i + 5)
    encoded = ops_table(log, RUN_ID)
    write_results(tmp_path / "encoded", {"ops": encoded})
    write_results(tmp_path / "plain", {"ops": _expected(log)})
    a, b = (pq.read_table(tmp_path / side / "ops.parquet") for side in ("encoded", "plain"))
    assert a.schema.equals(OPS_SCHEMA.with_metadata(b.schema.metadata), check_metadata=True)
    assert a.equals(b, check_metadata=True)
    assert pq.read_metadata(tmp_path / "encoded" / "ops.parquet").metadata == pq.read_metadata(
        tmp_path / "plain" / "ops.parquet"
    ).metadata
    frames = [pq.read_table(tmp_path / side / "ops.parquet").to_pandas() for side in ("encoded", "plain")]
    pd.testing.assert_frame_equal(frames[0], frames[1], check_exact=True)
    assert frames[0]["name"].dtype == pd.Series(["x"]).dtype  # the strings' dtype, not a categorical


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(records=st.lists(st.one_of(ROW, STEP), max_size=30), chunk=st.integers(1, 9))
def test_the_categorical_frame_holds_the_frame_values_and_groups_alike(records, chunk) -> None:
    log = _log_of(records, chunk)
    strings, got = ops_frame(log, RUN_ID), categorical_ops_frame(ops_table(log, RUN_ID))
    assert list(got.columns) == list(strings.columns) and len(got) == len(strings)
    for name in strings.columns:
        if isinstance(got[name].dtype, pd.CategoricalDtype):
            assert got[name].astype(object).tolist() == strings[name].astype(object).tolist()
        else:
            # the table's types: a time column of ints (SimPy's clock starts at the int 0) comes as float64
            pd.testing.assert_series_equal(got[name], strings[name].astype(got[name].dtype), check_exact=True)
            assert not len(got) or got[name].dtype == (np.float64 if name.endswith("_us") else np.int64)
    if len(strings):
        keys = ["device", "stream", "name"]
        by_string = strings.groupby(keys)["end_us"].max()
        by_category = got.groupby(keys, observed=True)["end_us"].max()
        assert by_category.index.tolist() == by_string.index.tolist()
        assert by_category.tolist() == by_string.tolist()


def _recorded_specs() -> list[str]:
    return sorted(p.name for p in SPECS_DIR.glob("*.toml") if 'kind = "recorded"' in p.read_text())


@functools.cache
def _prepared(spec_name: str):
    loaded = load_spec(SPECS_DIR / spec_name)
    return loaded, loaded.workload.prepare(loaded.prepare_context())


@pytest.mark.parametrize("spec_name", _recorded_specs())
def test_recorded_metrics_from_the_categorical_frame_are_the_string_frames(spec_name) -> None:
    """The recorded workload takes its ops as categoricals (``ops_categorical_strings``): each policy's metrics
    and tables from that frame are those from the ops frame of strings, value for value, row for row."""
    loaded, inputs = _prepared(spec_name)
    assert loaded.workload.ops_categorical_strings
    for policy in loaded.policies:
        backend = SimBackend(loaded.profile, 1, loaded.device_memory_bytes, seed=loaded.spec.seed)
        outcome = backend.run(policy.policy.main, inputs, policy.params)
        strings = ops_frame(outcome.ops, RUN_ID)
        categorical = categorical_ops_frame(ops_table(outcome.ops, RUN_ID))
        expected = loaded.workload.metrics(inputs, strings, outcome.result)
        assert loaded.workload.metrics(inputs, categorical, outcome.result) == expected
        tables = loaded.workload.tables(inputs, categorical, outcome.result)
        for name, frame in loaded.workload.tables(inputs, strings, outcome.result).items():
            pd.testing.assert_frame_equal(tables[name], frame, check_exact=True)


def _reference_device_rows(ops: pd.DataFrame, per: float) -> list[tuple]:
    """The per-device, per-direction and per-stream rows as the recorded metrics made them from frames."""
    from workloads.recorded.metrics import DEVICE_KINDS, SPACERS, union_us, waiting_for_host_us

    on_device = (ops["device"] >= 0) & ops["kind"].isin(DEVICE_KINDS) & ~ops["name"].isin(SPACERS)
    device_ops = ops.loc[on_device, ["device", "stream", "kind", "issue_us", "start_us", "end_us"]]
    rows = []
    for device, part in device_ops.groupby("device"):
        rows.append(("gpu_busy_frac", int(device), union_us(part["start_us"].to_numpy(), part["end_us"].to_numpy()) / per))
        rows.append(("gpu_wait_for_host_us", int(device), waiting_for_host_us(part)))
    for kind in ("copy_h2d", "copy_d2h"):
        part = device_ops[device_ops["kind"] == kind]
        rows.append((kind, -1, union_us(part["start_us"].to_numpy(), part["end_us"].to_numpy()) / per))
    for (device, stream), part in device_ops.groupby(["device", "stream"]):
        rows.append((f"stream_{device}_{stream}", -1, union_us(part["start_us"].to_numpy(), part["end_us"].to_numpy()) / per))
    return rows


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(seed=st.integers(0, 10**6), rows=st.integers(1, 60))
def test_recorded_metrics_over_devices_and_streams_are_the_frames(seed, rows) -> None:
    """The recorded metrics' device rows (numpy over category codes) are those of the group-bys over frames, for
    several devices and streams, copies, spacers and host rows, from the string frame and the categorical one."""
    from types import SimpleNamespace

    from workloads.recorded.metrics import SPACERS, metrics

    rng = np.random.default_rng(seed)
    log = OpLog()
    kinds = ["kernel", "copy_h2d", "copy_d2h", "memset", "host_sync"]
    for op_id in range(rows):
        device = int(rng.integers(-1, 3))
        stream = ["s7", "s10", "main", "s2"][int(rng.integers(0, 4))]
        kind = kinds[int(rng.integers(0, len(kinds)))]
        name = [SPACERS[0], "gemm", "cpu:step"][int(rng.integers(0, 3))]
        issue = float(rng.integers(0, 50))
        start = issue + float(rng.integers(0, 20))
        log.append((op_id, device, stream, kind, name, 0, "", "main", issue, start, start + float(rng.integers(0, 9))))
    program = SimpleNamespace(recorded_span_us=100.0, inferred_waits=0, recorded_group_us=())
    result = SimpleNamespace(unresolved_waits=0)
    strings = ops_frame(log, RUN_ID)
    per = max(float(strings["end_us"].max()), 1e-9)
    expected = _reference_device_rows(strings, per)
    for frame in (strings, categorical_ops_frame(ops_table(log, RUN_ID))):
        got = metrics(program, frame, result)
        device_rows = [
            (m.metric if m.metric.startswith("gpu_") else m.metric.removesuffix("_busy_frac").replace("h2d", "copy_h2d")
             .replace("d2h", "copy_d2h"), m.item, m.value)
            for m in got
            if (m.metric in ("gpu_busy_frac", "gpu_wait_for_host_us") and m.item >= 0)
            or m.metric in ("h2d_busy_frac", "d2h_busy_frac")
            or m.metric.startswith("stream_")
        ]
        assert device_rows == expected


def test_the_dictionaries_are_the_used_values_sorted() -> None:
    """However its rows were recorded (one by one, as columns with a program's every name), a table's dictionaries
    are the values it uses, sorted: two runs of the same ops give equal frames (categories included)."""
    rows = [(i, 0, "s", "kernel", name, 0, "", "main", float(i), float(i), i + 0.5) for i, name in enumerate("cab")]
    one_by_one = OpLog(rows)
    as_columns = OpLog()
    as_columns.append_columns(
        np.arange(3),
        {
            "stream": (0, ("s",)),
            "kind": (0, ("kernel",)),
            "name": (np.array([2, 0, 3]), ("a", "unused", "c", "b")),
            "host_memory": (0, ("",)),
            "thread": (0, ("main",)),
        },
        device=0,
        bytes=0,
        issue_us=np.arange(3.0),
        start_us=np.arange(3.0),
        end_us=np.arange(3.0) + 0.5,
    )
    tables = [ops_table(log, RUN_ID) for log in (one_by_one, as_columns)]
    assert tables[0]["name"].chunk(0).dictionary.to_pylist() == ["a", "b", "c"]
    assert tables[0].equals(tables[1]) and tables[0].to_pandas().equals(tables[1].to_pandas())
    fallback = ops_table([(*rows[0][:4], None, *rows[0][5:]), *rows[1:]], RUN_ID)  # through the frame
    assert fallback["name"].chunk(0).dictionary.to_pylist() == ["a", "b"]
    assert fallback["name"].to_pylist() == [None, "a", "b"]
