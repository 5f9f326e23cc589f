"""Broken recordings: damaged torch.profiler traces and imported op traces are refused, unusual legitimate ones import.

A corpus generated here from one small valid recording (:func:`_recording`): each case of
:data:`PROFILER_CASES` damages one thing in the Kineto JSON and :func:`import_to_parquet` must
refuse it naming the file, the event (its index in ``traceEvents``) and what is wrong, writing
nothing; each case of :data:`OP_TRACE_CASES` damages the op trace that recording imports to, and
reading it (``load_trace``, or the recorded workload's ``prepare`` for what only a simulation needs)
must refuse it naming the file, the row or column and what is wrong. A representative subset of
both goes through the CLI (``harness trace import``, ``harness sim``): exit 2, one ``error:`` line,
the folder unchanged (no output trace, no results folder). The legitimate unusual recordings at the
end (CUDA-only, memsets, array and host-to-host copies, sizes only on the call, a device other than
0, one device of several) must import and simulate.
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import InputError
from harness.kineto_events import MAX_RECORDED_US
from harness.profile import load_profile
from harness.profiler_import import import_profiler_trace, import_to_parquet
from harness.trace import TRACE_SCHEMA, load_trace
from harness.workload import PrepareContext
from workloads.recorded.inputs import RecordedParams, prepare

BASE = 1_700_000_000_000_000  # absolute epoch µs, as older torch writes
HOST = {"pid": 10, "tid": 11}
DAY = MAX_RECORDED_US
runner = CliRunner()


def _x(cat: str, name: str, ts: float, dur: float, where: dict, **args) -> dict:
    return {"ph": "X", "cat": cat, "name": name, **where, "ts": BASE + ts, "dur": dur, "args": args}


def _gpu(cat: str, name: str, ts: float, dur: float, corr: int, **args) -> dict:
    return _x(cat, name, ts, dur, {"pid": 0, "tid": 7}, correlation=corr, device=0, stream=7, **args)


def _recording() -> dict:
    """One profiler step: two kernel launches, an H2D and a D2H copy, a memset and a stream sync.

    The event indices are fixed (the cases name them): 0 step, 1 aten op, 2/3 launch + gemm, 4/5 memcpy +
    H2D copy, 6/7 memset call + memset, 8/9 launch + relu, 10/11 memcpy + D2H copy, 12 sync, 13/14 ac2g flow.
    """
    events = [
        _x("user_annotation", "ProfilerStep#1", 0, 200, HOST),
        _x("cpu_op", "aten::mm", 2, 10, HOST),
        _x("cuda_runtime", "cudaLaunchKernel", 5, 4, HOST, correlation=1),
        _gpu("kernel", "gemm", 12, 30, 1),
        _x("cuda_runtime", "cudaMemcpyAsync", 15, 4, HOST, correlation=2),
        _gpu("gpu_memcpy", "Memcpy HtoD (Pinned -> Device)", 45, 8, 2, bytes=4096),
        _x("cuda_runtime", "cudaMemsetAsync", 20, 3, HOST, correlation=3),
        _gpu("gpu_memset", "Memset (Device)", 55, 2, 3, bytes=1024),
        _x("cuda_runtime", "cudaLaunchKernel", 24, 4, HOST, correlation=4),
        _gpu("kernel", "relu", 58, 10, 4),
        _x("cuda_runtime", "cudaMemcpyAsync", 30, 4, HOST, correlation=5),
        _gpu("gpu_memcpy", "Memcpy DtoH (Device -> Pinned)", 70, 6, 5, bytes=2048),
        _x("cuda_runtime", "cudaStreamSynchronize", 35, 45, HOST, correlation=6),
        {"ph": "s", "cat": "ac2g", "name": "ac2g", "id": 1, **HOST, "ts": BASE + 5},
        {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": 1, "pid": 0, "tid": 7, "ts": BASE + 12, "bp": "e"},
    ]
    return {"schemaVersion": 1, "deviceProperties": [{"id": 0, "name": "NVIDIA H100"}], "traceEvents": events}


def _json(doc: object) -> bytes:
    return json.dumps(doc).encode()  # NaN and Infinity are written as Python's json writes them (and torch can)


# --------------------------------------------------------------------------- damaged profiler traces


@dataclass(frozen=True)
class ProfilerCase:
    id: str
    damage: Callable[[dict], object]  # changes the document in place, or returns the file's bytes / a new document
    where: str  # what the error's location must contain ("" when the whole file is at fault)
    says: str  # ... and its message
    device: int | None = None


def _set(index: int, key: str, value: object, args: bool = False) -> Callable[[dict], None]:
    def damage(doc: dict) -> None:
        event = doc["traceEvents"][index]
        (event["args"] if args else event)[key] = value

    return damage


def _drop(index: int, key: str, args: bool = False) -> Callable[[dict], None]:
    def damage(doc: dict) -> None:
        event = doc["traceEvents"][index]
        del (event["args"] if args else event)[key]

    return damage


def _append(event: Callable[[dict], dict]) -> Callable[[dict], None]:
    def damage(doc: dict) -> None:
        doc["traceEvents"].append(event(doc))

    return damage


def _also(*damages: Callable[[dict], object]) -> Callable[[dict], None]:
    def damage(doc: dict) -> None:
        for d in damages:
            d(doc)

    return damage


def _again(index: int, **changes) -> Callable[[dict], None]:
    """A copy of event ``index`` appended with ``changes`` (ts/args merged)."""

    def event(doc: dict) -> dict:
        twin = copy.deepcopy(doc["traceEvents"][index])
        for key, value in changes.items():
            if key == "args":
                twin["args"].update(value)
            else:
                twin[key] = value
        return twin

    return _append(event)


def _cpu_only(doc: dict) -> None:
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") not in ("kernel", "gpu_memcpy", "gpu_memset")]


PROFILER_CASES = [
    # ---- times: non-finite, negative, absent, mistyped, absurd
    ProfilerCase("kernel dur NaN", _set(3, "dur", math.nan), "event 3, field 'dur'", "finite number"),
    ProfilerCase("kernel dur inf", _set(3, "dur", math.inf), "event 3, field 'dur'", "finite number"),
    ProfilerCase("kernel dur negative", _set(3, "dur", -1), "event 3, field 'dur'", ">= 0"),
    ProfilerCase("kernel dur over a day", _set(3, "dur", 2 * DAY), "event 3, field 'dur'", "at most a day"),
    ProfilerCase("kernel dur absent", _drop(3, "dur"), "event 3, field 'dur'", "absent"),
    ProfilerCase("kernel dur text", _set(3, "dur", "30"), "event 3, field 'dur'", 'expected a number, got "30"'),
    ProfilerCase("kernel dur boolean", _set(3, "dur", True), "event 3, field 'dur'", "expected a number, got true"),
    ProfilerCase("kernel ts negative", _set(3, "ts", -5), "event 3, field 'ts'", ">= 0"),
    ProfilerCase("kernel ts absent", _drop(3, "ts"), "event 3, field 'ts'", "absent"),
    ProfilerCase("kernel ts NaN", _set(3, "ts", math.nan), "event 3, field 'ts'", "finite number"),
    ProfilerCase("kernel ts two days late", _set(3, "ts", BASE + 2 * DAY), "event 3 ('gemm')", "at most a day"),
    ProfilerCase("call ts two days early", _set(8, "ts", BASE - 2 * DAY), "event 8 ('cudaLaunchKernel')", "a day"),
    ProfilerCase("copy ts in another clock", _set(5, "ts", 45.0), "event 5 ('Memcpy HtoD", "mixed-clock"),
    ProfilerCase("call dur NaN", _set(2, "dur", math.nan), "event 2, field 'dur'", "finite number"),
    ProfilerCase("call dur negative", _set(12, "dur", -45), "event 12, field 'dur'", ">= 0"),
    ProfilerCase("call ts list", _set(4, "ts", [1, 2]), "event 4, field 'ts'", "expected a number"),
    ProfilerCase("step dur inf", _set(0, "dur", math.inf), "event 0, field 'dur'", "finite number"),
    ProfilerCase("aten op ts text", _set(1, "ts", "soon"), "event 1, field 'ts'", "expected a number"),
    ProfilerCase("flow ts NaN", _set(14, "ts", math.nan), "event 14, field 'ts'", "finite number"),
    ProfilerCase("copy ts inf", _set(5, "ts", math.inf), "event 5, field 'ts'", "finite number"),
    ProfilerCase("memset dur beyond a day", _set(7, "dur", 1e11), "event 7, field 'dur'", "at most a day"),
    # ---- correlation ids: duplicated, inconsistent, mistyped
    ProfilerCase("kernel recorded twice", _again(3), "event 15", "recorded twice: the same op as event 3"),
    ProfilerCase(
        "launch with two kernels",
        _again(3, name="gemm_again", ts=BASE + 80),
        "event 15",
        "launch call event 2 ('cudaLaunchKernel'), which already launched event 3",
    ),
    ProfilerCase(
        "two calls of one correlation",
        _set(8, "correlation", 1, args=True),
        "event 8",
        "already the correlation of event 2",
    ),
    ProfilerCase(
        "a launch's kernel on another device",
        _also(_set(9, "pid", 1), _set(9, "correlation", 1, args=True)),
        "event 9",
        "shares correlation 1 with event 3 on device 0",
    ),
    ProfilerCase(
        "a copy's call also launched a kernel on another device",
        _again(5, pid=1, ts=BASE + 90),
        "event 15",
        "on device 1 shares correlation 2",
    ),
    ProfilerCase("correlation fractional", _set(3, "correlation", 1.5, args=True), "args.correlation", "whole"),
    ProfilerCase("correlation negative", _set(2, "correlation", -3, args=True), "event 2, field 'args.correl", "whole"),
    ProfilerCase("correlation text", _set(3, "correlation", "1", args=True), "event 3", "expected a number"),
    ProfilerCase(
        "copy linked by nothing",
        _also(_drop(5, "correlation", args=True)),
        "event 5",
        "no args.correlation and no ac2g flow",
    ),
    ProfilerCase("device named in text", _set(9, "pid", "GPU 0"), "event 9, field 'pid'", "expected a number"),
    ProfilerCase("stream absent", _drop(9, "tid"), "event 9", "without a numeric pid (device) and tid"),
    ProfilerCase("stream negative", _set(9, "tid", -7), "event 9, field 'tid'", "whole number >= 0"),
    # ---- copies without a size
    ProfilerCase("H2D copy without bytes", _drop(5, "bytes", args=True), "event 5", "records no bytes"),
    ProfilerCase("D2H copy without bytes", _drop(11, "bytes", args=True), "event 11", "records no bytes"),
    ProfilerCase("copy bytes null", _set(5, "bytes", None, args=True), "event 5", "nor does its call (args.size)"),
    ProfilerCase("copy of 0 bytes", _set(5, "bytes", 0, args=True), "event 5", "records 0 bytes"),
    ProfilerCase("copy bytes negative", _set(11, "bytes", -2048, args=True), "event 11, field 'args.bytes'", "whole"),
    ProfilerCase("copy bytes fractional", _set(5, "bytes", 4096.5, args=True), "event 5, field 'args.bytes'", "whole"),
    ProfilerCase("copy bytes text", _set(5, "bytes", "4096", args=True), "event 5, field 'args.bytes'", "a number"),
    ProfilerCase("memset bytes boolean", _set(7, "bytes", False, args=True), "event 7", "expected a number, got false"),
    # ---- copy names the model cannot read
    ProfilerCase(
        "memcpy kind unknown", _set(5, "name", "Memcpy Sideways (Pinned -> Device)"), "event 5", "unknown memcpy"
    ),
    ProfilerCase("memcpy memory unknown", _set(11, "name", "Memcpy DtoH (Device -> Moon)"), "event 11", "unknown"),
    # ---- devices
    ProfilerCase("two devices without --device", _set(9, "pid", 1), "", "2 devices [0, 1]"),
    ProfilerCase("--device absent from the file", lambda doc: None, "", "device 3 has no GPU events", device=3),
    # ---- the file itself
    ProfilerCase("event not an object", lambda doc: doc["traceEvents"].insert(4, 7), "event 4", "a JSON object"),
    ProfilerCase("kernel args a list", _set(3, "args", [1]), "event 3, field 'args'", "a JSON object, got list"),
    ProfilerCase("call args text", _set(10, "args", "corr=5"), "event 10, field 'args'", "a JSON object, got str"),
    ProfilerCase("traceEvents not a list", lambda doc: {"traceEvents": {"a": 1}}, "", "not a Chrome trace"),
    ProfilerCase("top level a string", lambda doc: "trace", "", "not a Chrome trace"),
    ProfilerCase("truncated", lambda doc: _json(doc)[:700], "byte ", "truncated"),
    ProfilerCase("no GPU events", _cpu_only, "", "CPU-only profile"),
]


def _damaged(tmp_path: Path, case: ProfilerCase, name: str = "p.json") -> Path:
    doc = _recording()
    result = case.damage(doc)
    data = result if isinstance(result, bytes) else _json(result if result is not None else doc)
    path = tmp_path / name
    path.write_bytes(data)
    return path


def test_the_corpus_holds_at_least_fifty_broken_inputs():
    assert len(PROFILER_CASES) + len(OP_TRACE_CASES) >= 50
    ids = [c.id for c in PROFILER_CASES] + [c.id for c in OP_TRACE_CASES]
    assert len(set(ids)) == len(ids)


def test_the_valid_recording_imports_and_each_case_changes_it(tmp_path):
    imported = import_profiler_trace(_damaged(tmp_path, ProfilerCase("valid", lambda doc: None, "", "")))
    assert imported.ops["kind"].value_counts().to_dict() == {
        "call_launch": 2,
        "call_memcpy": 2,
        "kernel": 2,
        "copy_h2d": 1,
        "copy_d2h": 1,
        "call_memset": 1,
        "memset": 1,
        "call_sync_stream": 1,
    }
    assert not imported.warnings or "host-bound" in imported.warnings[0]
    for case in PROFILER_CASES:
        doc = _recording()
        result = case.damage(doc)
        assert result is not None or doc != _recording() or case.device is not None, case.id


@pytest.mark.parametrize("case", PROFILER_CASES, ids=[c.id for c in PROFILER_CASES])
def test_a_damaged_profiler_trace_is_refused_naming_the_event(tmp_path, case):
    path = _damaged(tmp_path, case)
    out = tmp_path / "out" / "t.parquet"
    with pytest.raises(InputError) as info:
        import_to_parquet(path, out, case.device)
    err = info.value
    assert err.source == str(path)
    assert case.where in err.where if case.where else err.where == "", err
    assert case.says in err.message, err
    assert "\n" not in str(err)
    assert not out.parent.exists()


CLI_PROFILER_CASES = [
    "kernel dur NaN",
    "kernel dur over a day",
    "kernel ts two days late",
    "kernel recorded twice",
    "launch with two kernels",
    "a launch's kernel on another device",
    "H2D copy without bytes",
    "copy of 0 bytes",
    "two devices without --device",
    "memcpy kind unknown",
]


def _tree(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def _refused(folder: Path, argv: list[str], *names: str) -> str:
    """Run ``harness argv`` in ``folder``: exit 2, one error line naming ``names``, the folder unchanged."""
    before = _tree(folder)
    result = runner.invoke(app, argv)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.output
    line = " ".join(result.output[result.output.index("error:") :].split())  # rich wraps long lines
    assert all(name in line for name in names), (line, names)
    assert _tree(folder) == before, "the refused command wrote something"
    return line


@pytest.mark.parametrize("case_id", CLI_PROFILER_CASES)
def test_the_cli_refuses_a_damaged_profiler_trace_with_exit_2_and_writes_nothing(tmp_path, monkeypatch, case_id):
    case = next(c for c in PROFILER_CASES if c.id == case_id)
    path = _damaged(tmp_path, case)
    monkeypatch.chdir(tmp_path)
    argv = ["trace", "import", str(path), "--out", str(tmp_path / "t.parquet")]
    _refused(tmp_path, argv, "p.json", *([case.where] if case.where else []), case.says)


# --------------------------------------------------------------------------- damaged op traces


@dataclass(frozen=True)
class OpTraceCase:
    id: str
    damage: Callable[[pd.DataFrame], pd.DataFrame | None]  # changes the ops in place, or returns new ones
    names: tuple[str, ...]  # what the error must name besides the file
    types: dict[str, pa.DataType] | None = None  # columns stored with another type
    at: str = "load"  # "load": load_trace refuses; "prepare": the recorded workload's prepare does


@pytest.fixture(scope="module")
def imported_ops(tmp_path_factory) -> tuple[pd.DataFrame, dict]:
    folder = tmp_path_factory.mktemp("base")
    path = folder / "p.json"
    path.write_bytes(_json(_recording()))
    imported = import_to_parquet(path, folder / "t.parquet")
    return imported.ops, pq.read_schema(folder / "t.parquet").metadata


def _row(ops: pd.DataFrame, kind: str, n: int = 0) -> int:
    return int(np.flatnonzero(ops["kind"].to_numpy() == kind)[n])


def _cell(kind: str, column: str, value: object, n: int = 0) -> Callable[[pd.DataFrame], None]:
    def damage(ops: pd.DataFrame) -> None:
        if isinstance(value, str) and ops[column].dtype != object:
            ops[column] = ops[column].astype(object)
        ops.loc[_row(ops, kind, n), column] = value

    return damage


def _cells(*damages: Callable[[pd.DataFrame], object]) -> Callable[[pd.DataFrame], None]:
    def damage(ops: pd.DataFrame) -> None:
        for d in damages:
            d(ops)

    return damage


def _without(column: str) -> Callable[[pd.DataFrame], pd.DataFrame]:
    return lambda ops: ops.drop(columns=[column])


def _retyped(column: str, convert: Callable[[object], object]) -> Callable[[pd.DataFrame], None]:
    def damage(ops: pd.DataFrame) -> None:
        ops[column] = [None if pd.isna(v) else convert(v) for v in ops[column].tolist()]

    return damage


def _duplicate(kind: str, **changes) -> Callable[[pd.DataFrame], pd.DataFrame]:
    def damage(ops: pd.DataFrame) -> pd.DataFrame:
        twin = ops.iloc[[_row(ops, kind)]].assign(**changes)
        return pd.concat([ops, twin], ignore_index=True)

    return damage


def _row_of(kind: str, n: int = 0) -> Callable[[pd.DataFrame], str]:
    return lambda ops: f"row {_row(ops, kind, n)}"


OP_TRACE_CASES = [
    # ---- times
    OpTraceCase("duration NaN", _cell("kernel", "duration_us", math.nan), ("column 'duration_us'", "(null or NaN)")),
    OpTraceCase("duration inf", _cell("kernel", "duration_us", math.inf), ("column 'duration_us'", "finite")),
    OpTraceCase("duration negative", _cell("copy_h2d", "duration_us", -1.0), ("column 'duration_us'", ">= 0")),
    OpTraceCase("duration two days", _cell("kernel", "duration_us", 2 * DAY), ("column 'duration_us'", "a day")),
    OpTraceCase("duration null", _cell("kernel", "duration_us", None), ("column 'duration_us'", "missing value")),
    OpTraceCase("start NaN", _cell("kernel", "start_us", math.nan), ("column 'start_us'", "start"), at="prepare"),
    OpTraceCase("start negative", _cell("call_launch", "start_us", -3.0), ("column 'start_us'", ">= 0")),
    OpTraceCase("start null", _cell("kernel", "start_us", None), ("column 'start_us'", "its start"), at="prepare"),
    OpTraceCase("launch inf", _cell("kernel", "launch_us", math.inf), ("column 'launch_us'", "finite")),
    OpTraceCase("host gap negative", _cell("call_launch", "host_gap_us", -3.0), ("column 'host_gap_us'", ">= 0")),
    OpTraceCase("host gap beyond a day", _cell("call_memcpy", "host_gap_us", 1e12), ("column 'host_gap_us'", "day")),
    # ---- sizes, kinds, devices and other values
    OpTraceCase("copy row of 0 bytes", _cell("copy_h2d", "bytes", 0), ("column 'bytes'", "copy_h2d of 0 bytes")),
    OpTraceCase("bytes negative", _cell("copy_d2h", "bytes", -1), ("column 'bytes'", ">= 0")),
    OpTraceCase("kind unknown", _cell("kernel", "kind", "dance"), ("column 'kind'", "unknown op kind 'dance'")),
    OpTraceCase("kernel on the host", _cell("kernel", "device", -1), ("column 'device'", "GPU op's device is >= 0")),
    OpTraceCase("call on a GPU", _cell("call_launch", "device", 0), ("column 'device'", "host call's device is -1")),
    OpTraceCase("host memory unknown", _cell("copy_h2d", "host_memory", "sometimes"), ("column 'host_memory'",)),
    OpTraceCase("compute share above 1", _cell("kernel", "compute_share", 1.5), ("column 'compute_share'", "(0, 1]")),
    OpTraceCase("aten count negative", _cell("call_launch", "gap_aten_ops", -1), ("column 'gap_aten_ops'", ">= 0")),
    OpTraceCase("name null", _cell("kernel", "name", None), ("column 'name'", "missing value")),
    OpTraceCase("stream null", _cell("memset", "stream", None), ("column 'stream'", "missing value")),
    OpTraceCase(
        "host gap null on a call",
        _cell("call_sync_stream", "host_gap_us", math.nan),
        ("column 'host_gap_us'", "CPU time before it"),
        at="prepare",
    ),
    OpTraceCase("thread null on a call", _cell("call_memcpy", "thread", None), ("column 'thread'",), at="prepare"),
    # ---- columns missing or mistyped
    OpTraceCase("no duration column", _without("duration_us"), ("column 'duration_us'", "missing")),
    OpTraceCase("no kind column", _without("kind"), ("column 'kind'", "missing")),
    OpTraceCase(
        "durations as text",
        _retyped("duration_us", lambda v: f"{v}"),
        ("row 0, column 'duration_us'", "expected numbers (float64), found string"),
        types={"duration_us": pa.string()},
    ),
    OpTraceCase(
        "device as float",
        _retyped("device", float),
        ("column 'device'", "expected whole numbers (int32), found double"),
        types={"device": pa.float64()},
    ),
    OpTraceCase(
        "bytes as float",
        _retyped("bytes", float),
        ("column 'bytes'", "found double"),
        types={"bytes": pa.float64()},
    ),
    OpTraceCase(
        "correlation as text",
        _retyped("correlation", str),
        ("column 'correlation'", "expected whole numbers (int64), found string"),
        types={"correlation": pa.string()},
    ),
    OpTraceCase(
        "kind as numbers",
        _retyped("kind", len),
        ("column 'kind'", "expected text (string), found int64"),
        types={"kind": pa.int64()},
    ),
    OpTraceCase(
        "start as booleans",
        _retyped("start_us", bool),
        ("column 'start_us'", "found bool"),
        types={"start_us": pa.bool_()},
    ),
    # ---- links
    OpTraceCase(
        "two call rows of one correlation",
        _cell("call_launch", "correlation", 2),
        ("column 'correlation'", "also the correlation of host call row"),
    ),
    OpTraceCase("GPU row twice", _duplicate("kernel"), ("recorded twice",)),
    OpTraceCase(
        "a launch with two kernels",
        _duplicate("kernel", name="gemm_again", start_us=90.0),
        ("column 'correlation'", "a launch issues one kernel"),
    ),
    OpTraceCase(
        "a call's ops on two devices",
        _duplicate("copy_h2d", device=1, start_us=95.0),
        ("column 'correlation'", "run on 2 devices"),
    ),
    OpTraceCase(
        "two devices",
        _cells(_cell("kernel", "device", 1, n=1)),
        ("column 'device'", "2 devices [0, 1]", "--device"),
        at="prepare",
    ),
]


def _write_ops(path: Path, ops: pd.DataFrame, meta: dict, types: dict | None = None) -> None:
    """The ops as a trace file, written around the format's checks (NaN stays NaN, None is null)."""
    arrays, fields = [], []
    for name in ops.columns:
        kind = (types or {}).get(name) or TRACE_SCHEMA.field(name).type
        keep_nan = pa.types.is_floating(kind)  # NaN in a float column stays NaN; elsewhere it is a null
        values = [None if v is None or v is pd.NA or (not keep_nan and v != v) else v for v in ops[name].tolist()]
        arrays.append(pa.array(values, type=kind, from_pandas=False))
        fields.append(pa.field(name, kind))
    pq.write_table(pa.Table.from_arrays(arrays, schema=pa.schema(fields, metadata=meta)), path)


def _damaged_ops(folder: Path, imported_ops, case: OpTraceCase) -> Path:
    ops, meta = imported_ops
    ops = ops.copy()
    changed = case.damage(ops)
    path = folder / "ops.parquet"
    _write_ops(path, changed if changed is not None else ops, meta, case.types)
    return path


def _prepare(path: Path) -> None:
    profile = load_profile("h100-sxm-pcie5")
    prepare(PrepareContext(RecordedParams(trace=path.name), path.parent, profile, 10**10, 0))


@pytest.mark.parametrize("case", OP_TRACE_CASES, ids=[c.id for c in OP_TRACE_CASES])
def test_a_damaged_op_trace_is_refused_at_load_naming_the_row_or_column(tmp_path, imported_ops, case):
    path = _damaged_ops(tmp_path, imported_ops, case)
    with pytest.raises(InputError) as info:
        if case.at == "load":
            load_trace(path)
        else:
            load_trace(path)  # valid as a trace ...
            _prepare(path)  # ... but not as a recording to simulate
    err = info.value
    assert err.source == str(path)
    assert all(name in str(err) for name in case.names), (str(err), case.names)
    assert "\n" not in str(err)


def test_the_undamaged_op_trace_loads_and_prepares(tmp_path, imported_ops):
    path = _damaged_ops(tmp_path, imported_ops, OpTraceCase("valid", lambda ops: None, ()))
    assert len(load_trace(path).ops) == len(imported_ops[0])
    _prepare(path)


SPEC = 'name = "r"\nprofile = "h100"\n[workload]\nkind = "recorded"\ntrace = "ops.parquet"\n[[policies]]\n'

CLI_OP_TRACE_CASES = [
    "duration NaN",
    "start null",
    "host gap beyond a day",
    "copy row of 0 bytes",
    "no duration column",
    "durations as text",
    "a launch with two kernels",
    "two devices",
]


@pytest.mark.parametrize("case_id", CLI_OP_TRACE_CASES)
def test_the_cli_refuses_a_damaged_op_trace_with_exit_2_and_no_results(tmp_path, monkeypatch, imported_ops, case_id):
    case = next(c for c in OP_TRACE_CASES if c.id == case_id)
    _damaged_ops(tmp_path, imported_ops, case)
    (tmp_path / "spec.toml").write_text(SPEC + 'name = "as_recorded"\n')
    monkeypatch.chdir(tmp_path)
    _refused(tmp_path, ["sim", "spec.toml", "--out", "res"], "ops.parquet", *case.names)
    if case.at == "load":
        _refused(tmp_path, ["trace", "validate", "ops.parquet"], "ops.parquet", *case.names)


def test_an_invalid_scale_kernels_pattern_is_refused_at_spec_load(tmp_path, monkeypatch, imported_ops):
    _damaged_ops(tmp_path, imported_ops, OpTraceCase("valid", lambda ops: None, ()))
    (tmp_path / "spec.toml").write_text(SPEC + 'name = "scale_kernels"\nfactors = { "gemm(" = 2.0, "relu" = 0.5 }\n')
    monkeypatch.chdir(tmp_path)
    line = _refused(tmp_path, ["sim", "spec.toml", "--out", "res"], "spec.toml", "factors", "'gemm('")
    assert "not a valid regular expression" in line


# --------------------------------------------------------------------------- legitimate unusual recordings


def _simulates(folder: Path, doc: dict, *import_options: str) -> pd.DataFrame:
    """Import ``doc`` through the CLI and simulate it as recorded; returns the imported ops."""
    (folder / "p.json").write_bytes(_json(doc))
    result = runner.invoke(app, ["trace", "import", "p.json", "--out", "ops.parquet", *import_options])
    assert result.exit_code == 0, result.output
    (folder / "spec.toml").write_text(SPEC + 'name = "as_recorded"\n')
    result = runner.invoke(app, ["sim", "spec.toml", "--out", "res"])
    assert result.exit_code == 0, result.output
    runs = pd.read_parquet(folder / "res" / "runs.parquet")
    assert (runs["status"] == "ok").all(), runs
    ops = pd.read_parquet(folder / "res" / "ops.parquet")
    assert ops["kind"].eq("kernel").sum() >= 1
    return load_trace(folder / "ops.parquet").ops


def test_a_cuda_only_recording_imports_and_simulates(tmp_path, monkeypatch):
    doc = _recording()
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e.get("cat") not in ("cpu_op", "user_annotation")]
    monkeypatch.chdir(tmp_path)
    ops = _simulates(tmp_path, doc)
    assert load_trace(tmp_path / "ops.parquet").provenance.profiler_mode == "cuda"
    assert ops["gap_aten_ops"].dropna().eq(0).all() and ops["group"].isna().all()


def test_memsets_of_every_memory_import_as_memsets_and_simulate(tmp_path, monkeypatch):
    doc = _recording()
    doc["traceEvents"] += [
        _x("cuda_runtime", "cudaMemsetAsync", 82, 3, HOST, correlation=7),
        _gpu("gpu_memset", "Memset (Managed)", 90, 2, 7, bytes=512),
        _x("cuda_runtime", "cudaMemsetAsync", 86, 3, HOST, correlation=8),
        _gpu("gpu_memset", "Memset (Pinned)", 93, 1, 8, bytes=64),
    ]
    monkeypatch.chdir(tmp_path)
    ops = _simulates(tmp_path, doc)
    memsets = ops[ops["kind"] == "memset"]
    assert memsets["bytes"].tolist() == [1024, 512, 64]


@pytest.mark.parametrize(
    "name, kind, memory",
    [
        ("Memcpy HtoA (Pinned -> Array)", "copy_h2d", "pinned"),
        ("Memcpy AtoH (Array -> Pageable)", "copy_d2h", "pageable"),
        ("Memcpy DtoD (Device -> Device)", "copy_d2d", ""),
        ("Memcpy PtoP (Device -> Device)", "copy_d2d", ""),
        ("Memcpy AtoD (Array -> Device)", "copy_d2d", ""),
        ("Memcpy HtoD (Host -> Device)", "copy_h2d", ""),  # ROCm: host memory not recorded
    ],
)
def test_copy_kinds_cupti_records_map_to_the_models_copies(tmp_path, name, kind, memory):
    doc = _recording()
    doc["traceEvents"][5]["name"] = name
    path = tmp_path / "p.json"
    path.write_bytes(_json(doc))
    copy_op = import_profiler_trace(path).ops.query("source_index == 5").iloc[0]
    assert (copy_op["kind"], copy_op["bytes"]) == (kind, 4096)
    assert copy_op["host_memory"] == memory


def test_host_to_host_copies_are_left_out_with_a_warning_naming_the_count(tmp_path, monkeypatch):
    doc = _recording()
    doc["traceEvents"][11]["name"] = "Memcpy HtoH (Pinned -> Pageable)"
    doc["traceEvents"] += [
        _x("cuda_runtime", "cudaMemcpyAsync", 82, 3, HOST, correlation=7),
        _gpu("gpu_memcpy", "Memcpy HtoH (Pinned -> Pageable)", 90, 2, 7, bytes=512),
    ]
    path = tmp_path / "p.json"
    path.write_bytes(_json(doc))
    imported = import_profiler_trace(path)
    assert "copy_d2h" not in set(imported.ops["kind"]) and imported.ops["kind"].eq("call_memcpy").sum() == 3
    assert any("2 GPU copie(s) of a kind the model lacks left out" in w for w in imported.warnings)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["trace", "import", "p.json", "--out", "t.parquet"])
    assert result.exit_code == 0 and "2 x 'Memcpy HtoH (Pinned -> Pageable)'" in " ".join(result.output.split())


def test_copy_sizes_recorded_only_on_the_call_are_taken_from_it(tmp_path):
    doc = _recording()
    del doc["traceEvents"][5]["args"]["bytes"]
    doc["traceEvents"][4]["args"]["size"] = "4096"  # ROCm writes a hipMemcpy's size on the call, as text
    path = tmp_path / "p.json"
    path.write_bytes(_json(doc))
    ops = import_profiler_trace(path).ops
    assert ops.query("source_index in (4, 5)")["bytes"].tolist() == [4096, 4096]


def test_a_recording_of_device_2_alone_simulates(tmp_path, monkeypatch):
    doc = _recording()
    for event in doc["traceEvents"]:
        if event.get("cat") in ("kernel", "gpu_memcpy", "gpu_memset") or event.get("ph") == "f":
            event["pid"] = 2
    monkeypatch.chdir(tmp_path)
    ops = _simulates(tmp_path, doc)
    assert set(ops.loc[ops["device"] >= 0, "device"]) == {2}  # the trace says what was recorded


def test_one_device_of_several_is_picked_with_device_and_simulates(tmp_path, monkeypatch):
    doc = _recording()
    doc["traceEvents"] += [
        _x("cuda_runtime", "cudaLaunchKernel", 82, 4, HOST, correlation=9),
        _x("kernel", "on1", 90, 5, {"pid": 1, "tid": 9}, correlation=9),
        _x("cuda_runtime", "cudaStreamSynchronize", 88, 12, HOST, correlation=10),
    ]
    monkeypatch.chdir(tmp_path)
    (tmp_path / "p.json").write_bytes(_json(doc))
    _refused(tmp_path, ["trace", "import", "p.json", "--out", "ops.parquet"], "p.json", "--device N")
    ops = _simulates(tmp_path, doc, "--device", "1")
    assert ops.loc[ops["device"] >= 0, "name"].tolist() == ["on1"]
