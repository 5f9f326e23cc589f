"""tools/capture_host_probe.py without a GPU: the segments it cuts a round's stamps into, and its refusals."""

from __future__ import annotations

import runpy
import subprocess
import sys

import numpy as np
import pytest

from harness.paths import REPO_ROOT

PROBE = REPO_ROOT / "tools" / "capture_host_probe.py"
probe = runpy.run_path(str(PROBE))


def test_a_rounds_stamps_become_each_steps_segments_the_first_step_left_out():
    # two steps of [top, body end, copy end, stream end, sync end] (ns): the loop is the sync's return to the next
    # top; the first step's own segments follow the round's set-up and are dropped with it
    stamps = np.array([[1_000, 301_000, 311_000, 341_000, 700_000], [713_000, 1_013_000, 1_023_000, 1_036_000,
                       1_400_000]])  # fmt: skip
    seg = probe["segments_us"](stamps)
    assert {k: v.tolist() for k, v in seg.items()} == {
        "loop": [13.0], "body": [300.0], "copy": [10.0], "sync_line": [13.0], "wait": [364.0]
    }  # fmt: skip
    s = probe["summary"](np.array([1.0, 2.0, 3.0, 10.0]))
    assert (s["median_us"], s["min_us"], s["max_us"], s["steps"]) == (2.5, 1.0, 10.0, 4)
    with pytest.raises(ValueError, match="at least 2 steps"):
        probe["segments_us"](stamps[:1])
    with pytest.raises(ValueError, match="backwards"):
        probe["segments_us"](stamps[::-1])


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--steps", "1"], "--steps must be >= 2"), ([], "needs torch")],
)
def test_it_refuses_with_one_line_and_exit_2(tmp_path, args, message):
    pytest.importorskip("numpy")
    if message == "needs torch":
        try:
            import torch  # noqa: F401
        except ImportError:
            pass
        else:
            pytest.skip("torch is installed here: the probe would run")
    run = subprocess.run([sys.executable, str(PROBE), "--out", str(tmp_path / "out"), *args], capture_output=True,
                         text=True)  # fmt: skip
    assert run.returncode == 2
    assert message in run.stderr and len(run.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()  # nothing half-written
