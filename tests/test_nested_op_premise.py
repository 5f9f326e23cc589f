"""tools/nested_op_premise.py: nested aten ops and GEMMs per step of a recording; composite's premium per matmul."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

TOOLS = Path(__file__).resolve().parents[1] / "tools"
sys.path.insert(0, str(TOOLS))  # the tool imports its neighbours (profiler_inflation, calibration_transfer)
spec = importlib.util.spec_from_file_location("nested_op_premise", TOOLS / "nested_op_premise.py")
premise = importlib.util.module_from_spec(spec)
spec.loader.exec_module(premise)


def _x(cat: str, name: str, ts: float, dur: float, tid: int = 1) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "pid": 1, "tid": tid, "ts": ts, "dur": dur}


def _trace(tmp_path: Path) -> Path:
    events = []
    for s in range(3):
        t0 = 1000.0 * s
        events.append(_x("user_annotation", f"step{s}", t0, 900.0))
        events.append(_x("cpu_op", "aten::matmul", t0 + 10, 50.0))  # top level
        events.append(_x("cpu_op", "aten::reshape", t0 + 11, 3.0))  # nested, depth 1: not a GEMM
        events.append(_x("cpu_op", "aten::view", t0 + 12, 1.0))  # nested, depth 2
        events.append(_x("cpu_op", "aten::mm", t0 + 20, 30.0))  # the composite's GEMM
        events.append(_x("cuda_driver", "cuLaunchKernelEx", t0 + 25, 5.0))  # its cuBLAS launch
        events.append(_x("cpu_op", "aten::mm", t0 + 100, 30.0))  # a top-level mm: not nested, not counted
        events.append(_x("cuda_driver", "cuLaunchKernelEx", t0 + 110, 5.0))
        events.append(_x("cpu_op", "aten::add", t0 + 200, 20.0))
        events.append(_x("cuda_runtime", "cudaLaunchKernel", t0 + 205, 5.0))
        events.append(_x("cpu_op", "aten::mm", t0 + 300, 5.0, tid=2))  # another thread: top level there
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps({"traceEvents": events}).encode()))
    return path


def test_counts_top_level_nested_and_composite_gemms_per_step(tmp_path):
    counts = premise.nested_counts(_trace(tmp_path), 3)
    assert counts == {"top_per_step": 4.0, "nested_per_step": 3.0, "gemm_per_step": 1.0, "gemm_launch_per_step": 2.0}


def test_composite_premium_is_its_residual_over_the_isolated_fit_per_matmul(tmp_path):
    aten, call, premium = 1.0, 3.0, 1.5  # µs the profiler adds per aten op, per runtime call, per composite matmul

    def shape(name, aten_ops, calls, extra=0.0):
        added = aten_ops * aten + calls * call + extra
        return {"shape": name, "unprofiled_us": 100.0, "profiled_us": 100.0 + added,
                "counts": {"aten_op": aten_ops, "runtime_call": calls}}  # fmt: skip

    rounds = [
        {"mode": "cpu_cuda", "shapes": [shape("launch", 64, 65), shape("views", 72, 9),
                                        shape("composite", 64, 33, premium * 32)]}  # fmt: skip
        for _ in range(3)
    ]
    raw = tmp_path / "raw.json"
    raw.write_text(json.dumps({"rounds": rounds}))
    table = premise.composite_premium(raw)
    assert table["mode"].tolist() == ["cpu_cuda"] and table["rounds"].tolist() == [3]
    assert table["premium_us"].iloc[0] == pytest.approx(premium)
    assert table["premium_share"].iloc[0] == pytest.approx(premium / ((100.0 + 64 * aten + 65 * call) / 64))
