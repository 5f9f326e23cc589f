"""kill -9 at random moments of a simulation and of a results write: only whole results folders, and no debris
once the next run has written into the same folder.

Each kill runs ``harness sim`` in a subprocess. For the write, the child slows each table's write (so
that the random moment lands inside it) and the test waits for its ``.partial-<pid>`` staging folder
before drawing the moment. The moments come from a seeded generator, printed on failure.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from harness.results import read_results

SPEC = """name = "kill"
profile = "h100-sxm-pcie5"
seed = 1

[workload]
kind = "layer_streaming"
segments = 3000
param_bytes = 4000000
compute_us = 300.0
jitter = 0.3

[[policies]]
name = "sync"

[[policies]]
name = "prefetch"
depth = 2
"""

# The CLI in process, each Parquet table written slowly when SLOW_WRITE is set.
CHILD = """
import os, sys, time
import harness.results as results
if os.environ.get("SLOW_WRITE"):
    original = results.pq.write_table
    def slow(table, where, *args, **kwargs):
        time.sleep(0.08)
        original(table, where, *args, **kwargs)
        time.sleep(0.08)
    results.pq.write_table = slow
from harness.cli import app
app(["sim", *sys.argv[1:]])
"""


def _start(spec: Path, out: Path, slow_write: bool) -> subprocess.Popen:
    env = {**os.environ, "SLOW_WRITE": "1" if slow_write else ""}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(spec), "--out", str(out)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env=env,
    )


def _staging(root: Path) -> list[Path]:
    return [p for p in root.iterdir() if ".partial-" in p.name]


def _check_whole_or_absent(root: Path) -> None:
    for folder in root.iterdir():
        if ".partial-" in folder.name:
            continue  # a killed writer's staging folder: never a results folder, cleaned by the next write
        results = read_results(folder)  # raises on a half-written folder
        assert set(results.runs["policy_label"]) == {"sync", "prefetch"}
        assert set(results.ops["run_id"]) == set(results.runs["run_id"])


@pytest.mark.parametrize("phase", ["simulation", "write"])
def test_kill_nine_leaves_whole_results_or_none_and_the_next_run_cleans_up(tmp_path, phase):
    rng = random.Random(f"kill-nine-{phase}")
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    root = tmp_path / "results"
    root.mkdir()
    moments = []
    for attempt in range(5):
        child = _start(spec, root / f"run{attempt}", slow_write=phase == "write")
        if phase == "write":
            deadline = time.monotonic() + 60
            while not _staging(root) and child.poll() is None and time.monotonic() < deadline:
                time.sleep(0.005)
            moment = rng.uniform(0.0, 0.45)  # three tables, ~0.16 s each
        else:
            moment = rng.uniform(0.5, 1.6)  # spec load and the simulation (the whole run takes ~1.8 s)
        moments.append(round(moment, 3))
        time.sleep(moment)
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
        _check_whole_or_absent(root)
    if phase == "write":
        assert _staging(root), f"no kill landed inside a write (moments {moments})"
    done = subprocess.run(
        [sys.executable, "-m", "harness", "sim", str(spec), "--out", str(root / "after")],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert not _staging(root), (moments, _staging(root))
    _check_whole_or_absent(root)


def test_a_live_writer_staging_folder_is_left_alone(tmp_path):
    """Only staging folders of dead processes are removed: a running writer's is its own."""
    from harness.results import remove_stale_staging

    live = tmp_path / f".x.partial-{os.getppid()}"
    dead_pid = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead = tmp_path / f".y.partial-{int(dead_pid.stdout)}"
    live.mkdir()
    dead.mkdir()
    (dead / "runs.parquet").write_text("half")
    assert remove_stale_staging(tmp_path) == [dead]
    assert live.exists() and not dead.exists()


def test_ctrl_c_says_what_it_interrupted_and_writes_nothing(tmp_path):
    spec = tmp_path / "spec.toml"
    spec.write_text(SPEC)
    child = subprocess.Popen(
        [sys.executable, "-m", "harness", "sim", str(spec), "--out", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "HARNESS_PROGRESS_S": "0.1"},
    )
    progress = child.stdout.readline()  # piped output: a progress line once the simulation runs
    assert progress.startswith("simulating 1/2 sync:sim:r0: "), progress
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert err.startswith("error: interrupted (Ctrl-C) while ") and "nothing was written" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]
