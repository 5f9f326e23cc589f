"""tools/graph_step_compare.py: a recorded CUDA-graph loop step by step against as_recorded's simulation (no GPU)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
_spec = importlib.util.spec_from_file_location("graph_step_compare", ROOT / "tools" / "graph_step_compare.py")
compare = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(compare)

RECORDING = ROOT / "traces" / "recorded" / "corpus" / "recordings" / "decode_graph_gpu_backup-sync.parquet"


def test_the_big_graph_with_a_backup_reaches_the_gpu_where_the_recording_shows_it():
    """The 250-kernel graph starts ~19.6 µs into its ~211 µs launch call in the recording; the simulation issued it
    at the call's end (211 µs in: each step 191 µs long, as_recorded +7.8%) until the launch was split there."""
    recorded, simulated, span, predicted = compare.compare(RECORDING, "h100")
    assert len(recorded) == len(simulated) == 20
    rec, sim = recorded.iloc[1:].median(), simulated.iloc[1:].median()
    assert rec["gpu_had_graph_after_call_start_us"] == pytest.approx(19.6, abs=0.5)
    assert sim["gpu_had_graph_after_call_start_us"] == pytest.approx(rec["gpu_had_graph_after_call_start_us"], abs=3.0)
    assert sim["copy_us"] == pytest.approx(rec["copy_us"], abs=0.1)  # the copy keeps its recorded time
    assert sim["step_period_us"] == pytest.approx(rec["step_period_us"], rel=0.005)
    assert predicted == pytest.approx(span, rel=0.01)
