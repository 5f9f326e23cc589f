"""tools/profiler_inflation.py: per-step event counts of a recording (nested aten ops, calls by kind, graph kernels)."""

from __future__ import annotations

import gzip
import importlib.util
import json
from pathlib import Path

import pytest

TOOL = Path(__file__).resolve().parents[1] / "tools" / "profiler_inflation.py"
spec = importlib.util.spec_from_file_location("profiler_inflation", TOOL)
inflation = importlib.util.module_from_spec(spec)
spec.loader.exec_module(inflation)


def _x(cat: str, name: str, ts: float, dur: float, tid: int = 1, corr: int | None = None) -> dict:
    event = {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}
    if corr is not None:
        event["args"] = {"correlation": corr}
    return event


def _trace(tmp_path: Path) -> Path:
    events, corr = [], 0
    for s in range(3):
        t0 = 1000.0 * s
        events.append(_x("user_annotation", f"step{s}", t0, 900.0))
        events.append(_x("cpu_op", "aten::matmul", t0 + 10, 50.0))
        events.append(_x("cpu_op", "aten::mm", t0 + 12, 40.0))  # nested in matmul
        corr += 1
        events.append(_x("cuda_runtime", "cudaLaunchKernel", t0 + 20, 5.0, corr=corr))
        events.append(_x("kernel", "gemm", t0 + 30, 10.0, tid=7, corr=corr))
        events.append(_x("cpu_op", "aten::add", t0 + 100, 20.0))
        corr += 1
        events.append(_x("cuda_runtime", "cudaGraphLaunch", t0 + 200, 80.0, corr=corr))
        events += [_x("kernel", f"k{i}", t0 + 300 + 5 * i, 2.0, tid=7, corr=corr) for i in range(4)]
        events.append(_x("cuda_runtime", "cudaStreamSynchronize", t0 + 400, 300.0))
        events.append(_x("cuda_sync", "Stream Sync", t0 + 400, 300.0))
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"traceEvents": events}).encode()))
    return path


def test_each_step_counts_its_top_level_and_nested_ops_calls_graph_kernels_and_syncs(tmp_path):
    steps = inflation.per_step(inflation.load(_trace(tmp_path)), 3)
    assert len(steps) == 3
    row = steps.iloc[1]
    assert (row["aten_top"], row["aten_nested"]) == (2, 1)
    assert (row["calls"], row["launch"], row["sync"], row["graph_launch"], row["graph_kernel"]) == (3, 1, 1, 1, 4)
    assert row["sync_blocked_us"] == pytest.approx(300.0) and row["sync_events"] == 1 and row["ranges"] == 0
    assert steps["step_us"].iloc[:2].tolist() == [1000.0, 1000.0]  # a step: its start to the next step's


def test_a_recording_without_step_ranges_is_cut_into_equal_runs_of_calls(tmp_path):
    doc = json.loads(gzip.decompress(_trace(tmp_path).read_bytes()))
    doc["traceEvents"] = [e for e in doc["traceEvents"] if e["cat"] not in ("user_annotation", "cpu_op")]
    path = tmp_path / "cuda.json.gz"
    path.write_bytes(gzip.compress(json.dumps(doc).encode()))
    steps = inflation.per_step(inflation.load(path), 3)
    assert steps["calls"].tolist() == [3, 3, 3] and steps["aten_top"].sum() == 0
