"""tools/graph_step_terms.py: a recorded graph program's steps term by term (no GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("graph_step_terms", ROOT / "tools" / "graph_step_terms.py")
terms = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(terms)


def _ops() -> pd.DataFrame:
    """Two graph launches of 3 kernels (1 µs each, 0.5 µs apart), the second queued behind the first."""
    rows = []
    for i, (launch_us, first_us) in enumerate(((0.0, 25.0), (10.0, 32.0))):
        rows.append({"kind": "call_graph_launch", "start_us": launch_us, "duration_us": 20.0, "host_gap_us": 1.0 + i,
                     "correlation": i})  # fmt: skip
        rows += [{"kind": "kernel", "start_us": first_us + 1.5 * k, "duration_us": 1.0, "host_gap_us": float("nan"),
                  "correlation": i} for k in range(3)]  # fmt: skip
    return pd.DataFrame(rows)


def test_each_launch_is_split_into_its_host_call_and_its_kernels_gaps_and_idle_time(tmp_path):
    path = tmp_path / "g.parquet"
    _ops().to_parquet(path)
    steps = terms.graph_steps(path)
    assert steps["launch_call_us"].tolist() == [20.0, 20.0] and steps["host_gap_us"].tolist() == [1.0, 2.0]
    assert steps["kernel_sum_us"].tolist() == [3.0, 3.0] and steps["gap_sum_us"].tolist() == [1.0, 1.0]
    assert steps["span_us"].tolist() == [4.0, 4.0]
    assert steps["lead_after_return_us"].tolist() == [5.0, 2.0]  # kernels after the call returned (at 20 / 30 µs)
    assert steps["gpu_idle_before_us"].iloc[1] == pytest.approx(3.0)  # 29 -> 32
    assert steps["gpu_period_us"].iloc[1] == pytest.approx(7.0)


def test_a_missing_recording_is_one_line_and_exit_2(tmp_path, capsys):
    assert terms.main([str(tmp_path / "none.parquet")]) == 2
    assert "no such recording" in capsys.readouterr().err
