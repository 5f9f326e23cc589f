"""The column-wise row checks of an op trace (harness/trace_rows.py): the same verdict on a frame and on the
Arrow table read from its file (strings dictionary-encoded, several row groups), and pandas' rules where they
stand in for pandas (duplicated rows, NaN equal to NaN)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import InputError
from harness.paths import TRACES_DIR
from harness.trace import TRACE_SCHEMA, load_trace
from harness.trace_rows import ArrowColumns, FrameColumns, _duplicated, check_rows

RECORDING = TRACES_DIR / "recorded" / "decode_inline-sync.parquet"


@pytest.fixture(scope="module")
def ops() -> pd.DataFrame:
    return load_trace(RECORDING).ops.iloc[:400].reset_index(drop=True)


def _kernel_row(ops: pd.DataFrame) -> int:
    return int(np.flatnonzero(ops["kind"].to_numpy() == "kernel")[3])


def _damaged(ops: pd.DataFrame, how: str) -> pd.DataFrame:
    frame = ops.copy()
    k = _kernel_row(frame)
    if how == "kernel twice":  # an identical GPU row later on (in another row group of the file)
        frame = pd.concat([frame, frame.iloc[[k]]], ignore_index=True)
    elif how == "second op of a launch":
        extra = frame.iloc[[k]].assign(start_us=frame["start_us"].iloc[k] + 1.0)
        frame = pd.concat([frame, extra], ignore_index=True)
    elif how == "two calls of one correlation":
        calls = np.flatnonzero(frame["kind"].to_numpy() == "call_launch")
        frame.loc[calls[5], "correlation"] = frame["correlation"].iloc[calls[2]]
    elif how == "ops of a call on two devices":
        frame = pd.concat([frame, frame.iloc[[k]].assign(device=1, start_us=1.0)], ignore_index=True)
    elif how == "negative time":
        frame.loc[7, "host_gap_us"] = -2.0
    elif how == "unknown kind":
        frame.loc[9, "kind"] = "kernal"
    elif how == "bad host memory":
        frame.loc[11, "host_memory"] = "pinnd"
    elif how == "missing stream":
        frame.loc[13, "stream"] = None
    return frame


CASES = [
    "kernel twice",
    "second op of a launch",
    "two calls of one correlation",
    "ops of a call on two devices",
    "negative time",
    "unknown kind",
    "bad host memory",
    "missing stream",
]


def _message(columns) -> str:
    with pytest.raises(InputError) as info:
        check_rows(RECORDING, columns)
    return str(info.value)


@pytest.mark.parametrize("how", CASES)
def test_a_frame_and_its_file_are_refused_alike(tmp_path, ops, how):
    frame = _damaged(ops, how)
    path = tmp_path / "ops.parquet"
    nullable = pa.schema([f.with_nullable(True) for f in TRACE_SCHEMA])  # a damaged file may hold nulls anywhere
    table = pa.Table.from_pandas(frame[TRACE_SCHEMA.names], schema=nullable, preserve_index=False)
    pq.write_table(table, path, row_group_size=128)  # several row groups: dictionaries to unify
    strings = [f.name for f in TRACE_SCHEMA if pa.types.is_string(f.type)]
    read = pq.read_table(path, read_dictionary=strings)
    assert read.column("name").num_chunks > 1
    from_frame, from_file = _message(FrameColumns(frame)), _message(ArrowColumns(read))
    assert from_frame == from_file
    assert "row " in from_file


def test_the_valid_slice_passes_both_ways(ops):
    check_rows(RECORDING, FrameColumns(ops))
    table = pa.Table.from_pandas(ops[TRACE_SCHEMA.names], schema=TRACE_SCHEMA, preserve_index=False)
    check_rows(RECORDING, ArrowColumns(table))


def test_duplicated_rows_are_pandas_duplicated_nan_equal_to_nan():
    rng = np.random.default_rng(7)
    values = rng.integers(0, 4, size=(500, 3)).astype(float)
    values[rng.random((500, 3)) < 0.2] = np.nan
    frame = pd.DataFrame(values, columns=["a", "b", "c"])
    expected = frame.duplicated(keep="first").to_numpy()
    found = _duplicated([frame[c].to_numpy() for c in frame.columns])
    assert found.any() and (found == expected).all()


@pytest.mark.parametrize("ids", ["shuffled", "increasing", "few"])
def test_duplicated_by_an_integer_id_is_pandas_duplicated(ids):
    """The last key an id: rows compared only where the id repeats (or none where ids increase), same answer."""
    rng = np.random.default_rng(11)
    count = 2000
    values = rng.integers(0, 3, size=(count, 2)).astype(float)
    values[rng.random((count, 2)) < 0.2] = np.nan
    id_column = {
        "shuffled": rng.permutation(np.repeat(np.arange(count // 2), 2)),
        "increasing": np.arange(count) * 3,
        "few": rng.integers(0, 5, size=count),
    }[ids].astype(np.int64)
    frame = pd.DataFrame({"a": values[:, 0], "b": values[:, 1], "id": id_column})
    expected = frame.duplicated(keep="first").to_numpy()
    found = _duplicated([frame[c].to_numpy() for c in frame.columns])
    assert (found == expected).all()
    assert found.any() == (ids != "increasing")
