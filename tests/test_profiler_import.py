"""The torch.profiler (Kineto) importer and the Perfetto exporter.

Real traces recorded by others (tests/data/public/kineto_hta/: HolisticTraceAnalysis' test data,
two of them cut to one window by tools/cut_test_data.py) are imported and checked against counts
made directly on their JSON;
small hand-made traces cover the facts and the bad input the real ones lack.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from harness.errors import InputError
from harness.perfetto_export import export_perfetto
from harness.profiler_import import (
    call_kind,
    import_profiler_trace,
    import_to_parquet,
    memcpy_kind,
)
from harness.results import OPS_COLUMNS
from harness.trace import Provenance, load_trace

DATA = Path(__file__).resolve().parent / "data" / "public" / "kineto_hta"
FILES = sorted(DATA.glob("*.json.gz"))

# Counted on the JSON by name, independently of the importer's rules.
LAUNCHES = {"cudaLaunchKernel", "hipLaunchKernel", "hipExtModuleLaunchKernel", "cuLaunchKernel", "cudaLaunchKernelExC"}
COPIES = {"HtoD": "copy_h2d", "DtoH": "copy_d2h", "DtoD": "copy_d2d"}


def _events(path: Path) -> list[dict]:
    return json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]


def _json_counts(events: list[dict]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for e in events:
        if e.get("ph") != "X":
            continue
        cat, name = e.get("cat"), e.get("name", "")
        kind = {"kernel": "kernel", "gpu_memset": "memset"}.get(cat)
        if cat == "gpu_memcpy":
            kind = COPIES[name.split()[1]]
        elif cat in ("cuda_runtime", "cuda_driver"):
            kind = "call_launch" if name in LAUNCHES else "calls"
        if kind:
            counts[kind] = counts.get(kind, 0) + 1
    return counts


def test_the_vendored_traces_are_all_here():
    # A missing slice must fail here, not shrink the parametrized tests below to nothing.
    assert [p.name for p in FILES] == [
        "alexnet_trace.json.gz",
        "cuda_event_sync_multi_stream_trace.json.gz",
        "cuda_event_sync_trace.json.gz",
        "mi250_minitoy_rocm.json.gz",
        "resnet_v100_ns_resolution_rank0.json.gz",
        "sampled_rank-0.json.gz",
        "simple_add_trace.json.gz",
    ]


@pytest.fixture(scope="module")
def imported():
    return {path.name: import_profiler_trace(path) for path in FILES}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name.split(".")[0])
def test_every_file_imports_with_the_json_counts(path, imported):
    ops = imported[path.name].ops
    expected = _json_counts(_events(path))
    got = ops["kind"].value_counts().to_dict()
    for kind in ("kernel", "memset", "copy_h2d", "copy_d2h", "copy_d2d", "call_launch"):
        assert got.get(kind, 0) == expected.get(kind, 0), kind
    n_calls = int(ops["kind"].str.startswith("call_").sum())
    assert n_calls == expected.get("calls", 0) + expected.get("call_launch", 0)
    assert (ops["duration_us"] >= 0).all() and (ops["host_gap_us"].dropna() >= 0).all()
    assert ops["start_us"].min() == 0.0


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name.split(".")[0])
def test_correlation_links_resolve(path, imported):
    ops = imported[path.name].ops
    gpu, calls = ops[ops["device"] >= 0], ops[ops["kind"].str.startswith("call_")]
    joined = gpu.merge(
        calls[["correlation", "start_us", "thread"]], on="correlation", how="left", suffixes=("", "_call")
    )
    assert len(joined) == len(gpu)  # one call per correlation
    assert joined["start_us_call"].notna().all()  # every GPU op has its launch call in these files
    assert (joined["launch_us"] == np.minimum(joined["start_us_call"], joined["start_us"])).all()
    assert (joined["thread"] == joined["thread_call"]).all()
    launches = calls[calls["kind"] == "call_launch"]
    assert launches["correlation"].isin(gpu["correlation"]).all()


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.name.split(".")[0])
def test_profiler_steps_become_groups(path, imported):
    steps = {
        e["name"] for e in _events(path) if e.get("cat") == "user_annotation" and e["name"].startswith("ProfilerStep#")
    }
    gpu = imported[path.name].ops.query("device >= 0")
    groups = set(gpu["group"].dropna())
    if not steps:
        assert not any(g.startswith("ProfilerStep#") for g in groups)
        return
    assert groups and groups <= steps
    assert gpu["group"].notna().mean() > 0.9


def test_sync_events_and_their_absence_are_in_the_provenance(imported):
    synced = imported["cuda_event_sync_multi_stream_trace.json.gz"]
    assert synced.provenance.sync_events == "recorded"
    wait = synced.ops[synced.ops["kind"] == "call_wait"].iloc[0]
    assert (wait["stream"], wait["wait_stream"], wait["wait_correlation"]) == ("24", "20", 1385)
    record = synced.ops[synced.ops["correlation"] == 1385].iloc[0]
    assert record["kind"] == "call_record" and record["stream"] == "20"
    plain = imported["resnet_v100_ns_resolution_rank0.json.gz"].provenance
    assert plain.sync_events == "absent" and "cross-stream dependencies are not recorded" in plain.notes


def test_amd_trace_imports_with_hip_calls_and_unrecorded_host_memory(imported):
    rocm = imported["mi250_minitoy_rocm.json.gz"]
    assert rocm.devices == (2,) and "AMD" in rocm.provenance.hardware
    assert rocm.provenance.date.startswith("2025")  # ts relative to baseTimeNanoseconds
    copies = rocm.ops[rocm.ops["kind"] == "copy_h2d"]
    assert (copies["bytes"] == 2560).all() and (copies["host_memory"] == "").all()


def test_ns_timestamps_keep_sub_microsecond_digits(imported):
    ops = imported["resnet_v100_ns_resolution_rank0.json.gz"].ops
    assert (ops["duration_us"] % 1 != 0).any()


def test_written_trace_reads_back(tmp_path, imported):
    path = FILES[0]
    import_to_parquet(path, tmp_path / "t.parquet")
    back = load_trace(tmp_path / "t.parquet")
    assert len(back.ops) == len(imported[path.name].ops)
    assert back.provenance == imported[path.name].provenance


# --- hand-made traces --------------------------------------------------------------

BASE = 1_700_000_000_000_000  # absolute epoch µs, as older torch writes


def _trace(extra: list[dict] | None = None) -> dict:
    """One ProfilerStep with a kernel launch, a pinned H2D copy and a stream sync."""
    host = {"pid": 10, "tid": 11}
    ev = [
        {"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#3", **host, "ts": BASE, "dur": 100},
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            **host,
            "ts": BASE + 10,
            "dur": 5,
            "args": {"correlation": 1},
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "gemm",
            "pid": 0,
            "tid": 7,
            "ts": BASE + 20,
            "dur": 30,
            "args": {"correlation": 1, "stream": 7},
        },
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaMemcpyAsync",
            **host,
            "ts": BASE + 18,
            "dur": 4,
            "args": {"correlation": 2},
        },
        {
            "ph": "X",
            "cat": "gpu_memcpy",
            "name": "Memcpy HtoD (Pinned -> Device)",
            "pid": 0,
            "tid": 7,
            "ts": BASE + 50,
            "dur": 8,
            "args": {"correlation": 2, "bytes": 4096},
        },
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaStreamSynchronize",
            **host,
            "ts": BASE + 21,
            "dur": 38,
            "args": {"correlation": 3},
        },
    ]
    return {"schemaVersion": 1, "traceEvents": ev + (extra or [])}


def _write(tmp_path: Path, doc: dict | bytes, name: str = "t.json") -> Path:
    path = tmp_path / name
    path.write_bytes(doc if isinstance(doc, bytes) else json.dumps(doc).encode())
    return path


def test_hand_made_trace_imports(tmp_path):
    imported = import_profiler_trace(_write(tmp_path, _trace()))
    ops = imported.ops.set_index("name")
    assert ops.loc["gemm", ["start_us", "launch_us", "thread", "group", "stream"]].tolist() == [
        10.0,
        0.0,
        "11",
        "ProfilerStep#3",
        "7",
    ]
    copy_op = ops.loc["Memcpy HtoD (Pinned -> Device)"]
    assert (copy_op["kind"], copy_op["host_memory"], copy_op["bytes"]) == ("copy_h2d", "pinned", 4096)
    sync = ops.loc["cudaStreamSynchronize"]
    assert sync["kind"] == "call_sync_stream" and sync["host_gap_us"] == 0.0  # started before the memcpy call ended
    assert ops.loc["cudaMemcpyAsync", "host_gap_us"] == 3.0 and ops.loc["cudaMemcpyAsync", "bytes"] == 4096
    assert "1 host call(s) started before the previous call" in imported.provenance.notes


def test_gpu_clock_ahead_of_host_is_clamped(tmp_path):
    doc = _trace()
    doc["traceEvents"][2]["ts"] = BASE + 9  # kernel "starts" 1 µs before its launch call
    imported = import_profiler_trace(_write(tmp_path, doc))
    kernel = imported.ops[imported.ops["kind"] == "kernel"].iloc[0]
    assert kernel["launch_us"] == kernel["start_us"]
    assert "clock skew" in imported.provenance.notes


def test_flow_events_link_ops_without_correlation(tmp_path):
    doc = _trace(
        [
            {"ph": "s", "cat": "ac2g", "name": "ac2g", "id": 1, "pid": 10, "tid": 11, "ts": BASE + 10},
            {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": 1, "pid": 0, "tid": 7, "ts": BASE + 20, "bp": "e"},
        ]
    )
    del doc["traceEvents"][2]["args"]["correlation"]
    kernel = import_profiler_trace(_write(tmp_path, doc)).ops.query("kind == 'kernel'").iloc[0]
    assert kernel["correlation"] == 1 and kernel["launch_us"] == 0.0


def test_graph_launch_is_one_call_for_all_its_kernels(tmp_path):
    graph = [
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaGraphLaunch",
            "pid": 10,
            "tid": 11,
            "ts": BASE + 60,
            "dur": 9,
            "args": {"correlation": 9},
        }
    ]
    graph += [
        {
            "ph": "X",
            "cat": "kernel",
            "name": f"g{i}",
            "pid": 0,
            "tid": 7,
            "ts": BASE + 70 + 5 * i,
            "dur": 4,
            "args": {"correlation": 9},
        }
        for i in range(3)
    ]
    ops = import_profiler_trace(_write(tmp_path, _trace(graph))).ops
    assert (ops["kind"] == "call_graph_launch").sum() == 1
    kernels = ops[ops["correlation"] == 9].query("kind == 'kernel'")
    assert len(kernels) == 3 and (kernels["launch_us"] == 50.0).all()  # times from the first call (BASE + 10)


def test_relative_ts_with_base_time_nanoseconds(tmp_path):
    doc = _trace()
    for e in doc["traceEvents"]:
        e["ts"] = (e["ts"] - BASE) + 0.125
    doc["baseTimeNanoseconds"] = BASE * 1000
    imported = import_profiler_trace(_write(tmp_path, doc))
    assert imported.provenance.date == "2023-11-14"
    assert imported.ops.set_index("name").loc["gemm", "start_us"] == 10.0


def test_device_picks_one_gpu_of_a_multi_gpu_file(tmp_path):
    other = [
        {
            "ph": "X",
            "cat": "cuda_runtime",
            "name": "cudaLaunchKernel",
            "pid": 10,
            "tid": 11,
            "ts": BASE + 30,
            "dur": 5,
            "args": {"correlation": 5},
        },
        {
            "ph": "X",
            "cat": "kernel",
            "name": "on1",
            "pid": 1,
            "tid": 9,
            "ts": BASE + 40,
            "dur": 3,
            "args": {"correlation": 5},
        },
    ]
    path = _write(tmp_path, _trace(other))
    with pytest.raises(InputError, match=r"2 devices \[0, 1\].*--device N"):
        import_profiler_trace(path)  # a one-device simulation would fail on it
    picked = import_profiler_trace(path, device=1)
    assert picked.devices == (0, 1)
    one = picked.ops
    assert set(one.query("device >= 0")["name"]) == {"on1"}
    assert 5 in set(one["correlation"]) and 1 not in set(one["correlation"])  # device 0's launch dropped
    with pytest.raises(InputError, match=r"device 4 has no GPU events.*\[0, 1\]"):
        import_profiler_trace(path, device=4)


def test_name_rules():
    assert memcpy_kind("Memcpy DtoH (Device -> Pageable)") == ("copy_d2h", "pageable")
    assert memcpy_kind("Memcpy PtoP (Device -> Device)") == ("copy_d2d", "")
    assert memcpy_kind("Memcpy HtoH (Pinned -> Pageable)") is None
    assert [
        call_kind(n)
        for n in ("cudaStreamWaitEvent", "cuLaunchKernelEx", "hipMemcpyWithStream", "cudaFreeAsync", "cudaGetDevice")
    ] == ["call_wait", "call_launch", "call_memcpy", "call_free", "call_other"]


# --- bad input -----------------------------------------------------------------------


def _bad(tmp_path: Path, case: str) -> Path:
    doc = _trace()
    ev = doc["traceEvents"]
    if case == "truncated":
        return _write(tmp_path, json.dumps(doc).encode()[:400])
    if case == "not_json":
        return _write(tmp_path, b"<html>not a trace</html>")
    if case == "corrupt_gzip":
        return _write(tmp_path, gzip.compress(json.dumps(doc).encode())[:-30], "t.json.gz")
    if case == "cpu_only":
        doc["traceEvents"] = [e for e in ev if e["cat"] not in ("kernel", "gpu_memcpy")]
    elif case == "no_correlation":
        del ev[4]["args"]["correlation"]
    elif case == "negative_duration":
        ev[2]["dur"] = -3
    elif case == "unknown_memcpy":
        ev[4]["name"] = "Memcpy Sideways (Pinned -> Device)"
    elif case == "not_an_object":
        ev[3] = ["X"]
    return _write(tmp_path, doc)


@pytest.mark.parametrize(
    "case, where, message",
    [
        ("truncated", r"byte \d+ \(around event \d\)", "truncated"),
        ("not_json", r"byte 0 \(around event 0\)", "not valid JSON"),
        ("corrupt_gzip", r"around event \d", "corrupt or truncated gzip"),
        ("cpu_only", None, "CPU-only profile"),
        ("no_correlation", "event 4", "no args.correlation and no ac2g flow"),
        ("negative_duration", "event 2, field 'dur'", ">= 0"),
        ("unknown_memcpy", "event 4", "unknown memcpy name"),
        ("not_an_object", "event 3", "expected a JSON object"),
    ],
)
def test_bad_input_names_file_and_event_and_writes_nothing(tmp_path, case, where, message):
    path = _bad(tmp_path, case)
    out = tmp_path / "out" / "t.parquet"
    with pytest.raises(InputError) as info:
        import_to_parquet(path, out)
    err = info.value
    assert err.source == str(path) and message in err.message
    assert (where is None and err.where == "") or (where and pd.Series([err.where]).str.contains(where).all()), (
        err.where
    )
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))


def test_files_above_the_limit_are_refused(tmp_path):
    path = _write(tmp_path, _trace())
    with pytest.raises(InputError, match="above the 0 MiB import limit"):
        import_profiler_trace(path, limit=100)


def test_version_1_traces_still_read(tmp_path):
    frame = pd.DataFrame([{"device": 0, "stream": "s", "kind": "kernel", "name": "k", "bytes": 0, "duration_us": 5.0}])
    meta = {**Provenance("unit test", "synthetic", "2026-11-23").to_metadata(), b"harness.trace.format_version": b"1"}
    pq.write_table(
        pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(meta), tmp_path / "v1.parquet"
    )
    trace = load_trace(tmp_path / "v1.parquet")
    assert trace.ops["correlation"].isna().all() and trace.provenance.source == "unit test"


# --- Perfetto export -------------------------------------------------------------------


def _run_ops() -> pd.DataFrame:
    """A small results ops table: pinned copy on a side stream, event, wait, kernel, sync, host work."""
    rows = [
        (0, 0, "prefetch", "copy_h2d", "params[1]", 1 << 20, "pinned", "main", 1.0, 2.5, 30.25),
        (1, 0, "prefetch", "record", "event0", 0, "", "main", 2.0, 30.25, 30.25),
        (2, 0, "compute", "kernel", "segment[0]", 0, "", "main", 3.0, 4.125, 24.0),
        (3, 0, "compute", "wait", "event0", 0, "", "main", 4.0, 30.25, 30.25),
        (4, 0, "compute", "kernel", "segment[1]", 0, "", "main", 5.0, 30.25, 50.0),
        (5, 0, "compute", "copy_d2h", "out", 4096, "pageable", "main", 6.0, 50.0, 52.0),
        (6, -1, "main", "host_work", "python", 0, "", "main", 7.0, 7.0, 9.0),
        (7, -1, "main", "host_sync", "sync:compute", 0, "", "main", 9.5, 9.5, 52.5),
    ]
    return pd.DataFrame(rows, columns=OPS_COLUMNS[1:]).assign(run_id="spec:prefetch:sim:r0")


def test_export_then_import_gives_the_same_ops(tmp_path):
    ops = _run_ops()
    exported = export_perfetto(ops, tmp_path / "run.json")
    back = import_profiler_trace(exported.path).ops
    origin = ops["issue_us"].min()  # the importer's time 0 is the first call
    gpu = back[back["device"] >= 0].sort_values("correlation")
    device_ops = ops[ops["kind"].isin(["kernel", "copy_h2d", "copy_d2h"])].sort_values("op_id")
    assert gpu["kind"].tolist() == device_ops["kind"].tolist()
    assert gpu["bytes"].tolist() == device_ops["bytes"].tolist()
    assert gpu["host_memory"].fillna("").tolist() == ["pinned", "", "", "pageable"]
    assert np.allclose(gpu["start_us"] + origin, device_ops["start_us"], atol=1e-3)
    assert np.allclose(gpu["start_us"] + gpu["duration_us"] + origin, device_ops["end_us"], atol=1e-3)
    assert np.allclose(gpu["launch_us"] + origin, device_ops["issue_us"], atol=1e-3)
    ids = {name: str(tid) for (_, name), tid in exported.streams.items()}
    assert gpu["stream"].tolist() == device_ops["stream"].map(ids).tolist()
    wait = back[back["kind"] == "call_wait"].iloc[0]
    assert (wait["stream"], wait["wait_stream"], wait["wait_correlation"]) == (ids["compute"], ids["prefetch"], 2)
    assert back.query("kind == 'call_sync_stream'")["stream"].tolist() == [ids["compute"]]
    assert back.query("kind == 'call_record'")["stream"].tolist() == [ids["prefetch"]]


def test_export_refuses_several_runs_and_writes_atomically(tmp_path):
    ops = pd.concat([_run_ops(), _run_ops().assign(run_id="other")])
    with pytest.raises(ValueError, match="2 runs"):
        export_perfetto(ops, tmp_path / "x.json")
    path = export_perfetto(_run_ops(), tmp_path / "x.json.gz").path
    assert json.loads(gzip.decompress(path.read_bytes()))["traceEvents"]
    assert [p.name for p in tmp_path.iterdir()] == ["x.json.gz"]


@pytest.mark.hta
def test_holistic_trace_analysis_loads_the_export(tmp_path):
    import hta.common.trace as trace_mod
    path = export_perfetto(_run_ops(), tmp_path / "run.json.gz").path
    trace = trace_mod.Trace(trace_files={0: str(path)}, trace_dir=str(tmp_path))
    trace.load_traces(include_last_profiler_step=True, use_multiprocessing=False, use_memory_profiling=False)
    df = trace.get_trace(0)
    names = df["cat"].map(lambda i: trace.symbol_table.sym_table[i])
    assert (names == "kernel").sum() == 2 and (names == "gpu_memcpy").sum() == 2
    assert set(df.loc[names == "kernel", "correlation"]) == {3, 5}
