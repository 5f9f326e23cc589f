"""What of the replay can be checked without a GPU: imports without torch, and the no-GPU messages."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner

from harness.cli import app

SPEC = """
name = "r"
profile = "h100-sxm-pcie5"
[workload]
kind = "layer_streaming"
segments = 2
param_bytes = 16777216
compute_us = 500.0
[[policies]]
name = "sync"
"""


def test_replay_and_harness_import_without_torch():
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import harness.cli, harness.compare, replay, replay.engine, replay.kernels, replay.calibrate, replay.report, replay.fit\n"
        "assert sys.modules['torch'] is None\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr


@pytest.fixture
def no_torch(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError


def test_replay_without_a_gpu_exits_with_a_clear_message(tmp_path, no_torch):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC)
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["replay", str(spec), "--out", str(out)])
    assert result.exit_code == 2
    assert "harness replay: this command needs a CUDA GPU" in result.output
    assert not out.exists()


def test_replay_reports_a_bad_spec_before_looking_for_a_gpu(tmp_path, no_torch):
    spec = tmp_path / "s.toml"
    spec.write_text(SPEC.replace("segments = 2", "segments = 0"))
    result = CliRunner().invoke(app, ["replay", str(spec)])
    assert result.exit_code == 2
    assert "workload.segments" in result.output


def test_calibrate_without_a_gpu_exits_with_a_clear_message(tmp_path, no_torch):
    out = tmp_path / "p.toml"
    result = CliRunner().invoke(app, ["calibrate", "--name", "x", "--out", str(out)])
    assert result.exit_code == 2
    assert "harness calibrate: this command needs a CUDA GPU" in result.output
    assert not out.exists()


def test_replay_context_names_the_missing_gpu(no_torch):
    from replay.engine import ReplayContext
    from replay.gpu import CudaUnavailable

    with pytest.raises(CudaUnavailable, match="torch is not installed"):
        ReplayContext(1)
