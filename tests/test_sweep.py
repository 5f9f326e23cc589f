"""Parallel, resumable sweeps (harness.sweep) on the local pool and on a local Ray cluster (2 CPUs, no dashboard;
marked ``ray``: without Ray they skip naming the command that runs them, ``pip install -e '.[test,ray]' &&
python -m pytest -m ray``): the serial results, faults, resume, CLI.

"Identical" here: every table's Parquet bytes equal the serial run's, except runs.parquet's ``started_at`` and
``wall_s`` (when and how long each run took), whose other columns are equal row for row.
"""

from __future__ import annotations

import functools
import os
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.run import sim_backend_factory
from harness.results import write_results
from harness.runner import run_spec
from harness.spec import load_spec
from harness.sweep import SweepOptions, plan_chunks, run_sweep
from sim import SimBackend

DEPTHS = ", ".join(str(d) for d in range(1, 50))
SPEC_50 = f"""
name = "sweep50"
profile = "h100-sxm-pcie5"
seed = 2

[workload]
kind = "layer_streaming"
segments = 30
param_bytes = 67108864
compute_us = 700.0
jitter = 0.25

[[policies]]
name = "sync"

[[policies]]
name = "prefetch"
sweep = {{ depth = [{DEPTHS}] }}
"""


def write_spec(folder: Path, text: str = SPEC_50) -> Path:
    path = folder / "spec.toml"
    path.write_text(text)
    return path


class PickyBackend(SimBackend):
    """A simulator that refuses depth 7, as a run that fails on its input would."""

    def run(self, main, *args):
        if getattr(args[1], "depth", None) == 7:
            raise ValueError("depth 7: this input has no such prefetch depth")
        return super().run(main, *args)


def picky_factory(loaded):
    devices = loaded.workload.devices(loaded.workload_params)
    return lambda spec, rep: PickyBackend(spec.profile, devices, spec.device_memory_bytes, seed=spec.spec.seed + rep)


def faulty_factory(loaded, marks: Path):
    """The simulator, counting every backend it makes (one line per run, in ``made``) and killing the first worker
    process that reaches its third run (SIGKILL, once per sweep: ``killed`` marks it), as a crash or OOM would.

    ``kill`` holds the driver's pid: the driver, which also makes backends, is never killed."""
    inner = sim_backend_factory(loaded)
    made_here = []

    def make(spec, rep):
        made_here.append(rep)
        with open(marks / "made", "a") as f:
            f.write(f"{os.getpid()}\n")
        driver = (marks / "kill").exists() and int((marks / "kill").read_text()) == os.getpid()
        if len(made_here) == 3 and (marks / "kill").exists() and not driver:
            try:
                fd = os.open(marks / "killed", os.O_CREAT | os.O_EXCL | os.O_WRONLY)
            except FileExistsError:
                pass
            else:
                os.close(fd)
                os.kill(os.getpid(), signal.SIGKILL)
        return inner(spec, rep)

    return make


def sweep_to_folder(spec: Path, out: Path, factory_for=sim_backend_factory, **options) -> object:
    report = run_sweep(load_spec(spec), factory_for, SweepOptions(**options))
    write_results(out, report.results.tables)
    return report


def assert_identical(a: Path, b: Path) -> None:
    """Results folders equal: every file's bytes, but runs.parquet's started_at and wall_s."""
    names = sorted(p.name for p in a.glob("*.parquet"))
    assert names == sorted(p.name for p in b.glob("*.parquet"))
    for name in names:
        if name == "runs.parquet":
            left, right = (pq.read_table(f / name).drop_columns(["started_at", "wall_s"]) for f in (a, b))
            assert left.equals(right, check_metadata=True)
        else:
            assert (a / name).read_bytes() == (b / name).read_bytes(), name


@pytest.fixture(scope="module")
def serial(tmp_path_factory):
    """The 50-point sweep run serially by the plain runner: the reference."""
    folder = tmp_path_factory.mktemp("serial")
    spec = write_spec(folder)
    loaded = load_spec(spec)
    write_results(folder / "out", run_spec(loaded, sim_backend_factory(loaded)).tables)
    return spec, folder / "out"


@pytest.fixture
def marks(tmp_path):
    """Where faulty_factory keeps its marks."""
    folder = tmp_path / "marks"
    folder.mkdir()
    return folder


def faulty(marks: Path):
    return functools.partial(faulty_factory, marks=marks)


def test_chunks_batch_small_runs_and_keep_every_worker_busy():
    runs = list(range(500))
    chunks = plan_chunks(runs, 2, ops_per_run=150)
    assert [i for c in chunks for i in c] == runs  # consecutive, in order, each once
    assert len(chunks) == 8  # 20,000 ops would be 134 runs: capped so each worker gets 4 chunks
    assert len(plan_chunks(runs, 2, ops_per_run=100_000)) == 500  # big runs: one per task
    assert len(plan_chunks(runs, 2, ops_per_run=0)) == 8
    assert plan_chunks(runs[:3], 2, ops_per_run=10, task_runs=2) == [[0, 1], [2]]
    assert plan_chunks([], 4, 10) == []


@pytest.mark.parametrize("workers", [2, 3])
def test_parallel_sweep_equals_the_serial_run_byte_for_byte(serial, tmp_path, workers):
    spec, reference = serial
    report = sweep_to_folder(spec, tmp_path / "out", workers=workers)
    assert report.computed == 50 and report.cached == 0 and report.tasks > workers
    assert_identical(reference, tmp_path / "out")


def test_a_killed_worker_is_replaced_and_the_sweep_completes(serial, tmp_path, marks):
    spec, reference = serial
    (marks / "kill").write_text(str(os.getpid()))
    report = sweep_to_folder(spec, tmp_path / "out", faulty(marks), workers=2)
    assert (marks / "killed").exists()
    assert report.restarts == 1 and report.computed == 50
    assert (report.results.runs["status"] == "ok").all()
    assert_identical(reference, tmp_path / "out")


def test_an_interrupted_sweep_resumes_without_recomputing_finished_runs(serial, tmp_path, marks):
    spec, reference = serial
    cache = tmp_path / "cache"

    def stop_after_20(done):
        if done.done == 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_spec(spec), faulty(marks), SweepOptions(workers=2, cache_root=cache), on_done=stop_after_20)
    kept = [p for p in next(cache.iterdir()).iterdir() if not p.name.startswith(".")]
    assert len(kept) == 20
    (marks / "made").unlink()
    report = sweep_to_folder(spec, tmp_path / "out", faulty(marks), workers=2, cache_root=cache)
    assert (report.cached, report.computed) == (20, 30)
    made = (marks / "made").read_text().splitlines()
    assert len(made) == 30 + 1  # the 30 missing runs, and the driver's one backend that names the backend
    assert_identical(reference, tmp_path / "out")


def test_serial_sweep_with_a_cache_resumes_too(serial, tmp_path):
    spec, reference = serial
    cache = tmp_path / "cache"
    first = sweep_to_folder(spec, tmp_path / "a", cache_root=cache)
    again = sweep_to_folder(spec, tmp_path / "b", cache_root=cache)
    assert (first.computed, again.cached, again.computed) == (50, 50, 0)
    assert_identical(reference, tmp_path / "a")
    assert_identical(reference, tmp_path / "b")


def test_a_run_failing_on_its_input_is_reported_and_the_others_complete(tmp_path):
    spec = write_spec(tmp_path)
    report = run_sweep(load_spec(spec), picky_factory, SweepOptions(workers=2, cache_root=tmp_path / "cache"))
    failed = report.results.failed
    assert list(failed["policy_label"]) == ["prefetch[depth=7]"]
    assert "ValueError: depth 7" in failed["error"].iloc[0]
    assert (report.results.runs["status"] == "ok").sum() == 49
    cached = [p for p in report.cache.folder.iterdir() if not p.name.startswith(".")]
    assert len(cached) == 49  # a failed run is not kept: the next attempt tries it again


def test_cli_workers_writes_the_serial_results_and_removes_its_cache(serial, tmp_path):
    spec, reference = serial
    result = CliRunner().invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 0, result.output
    assert_identical(reference, tmp_path / "out")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]  # .sweep-cache removed once written


def test_cli_a_failed_run_exits_1_naming_its_label(tmp_path, monkeypatch):
    import harness.cli.run as run_module

    monkeypatch.setattr(run_module, "sim_backend_factory", picky_factory)
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out"), "--workers", "2"])
    assert result.exit_code == 1, result.output
    flat = " ".join(result.output.split())
    assert "run sweep50:prefetch[depth=7]:sim:r0 failed: ValueError: depth 7" in flat
    assert len(pq.read_table(tmp_path / "out" / "runs.parquet")) == 50


def test_cli_ray_without_ray_says_how_to_install(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails, as when it is not installed
    spec = write_spec(tmp_path)
    result = CliRunner().invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out"), "--ray", "local"])
    assert result.exit_code == 2, result.output
    assert "pip install" in result.output and not (tmp_path / "out").exists()


def test_ctrl_c_keeps_finished_runs_and_the_same_command_resumes(tmp_path):
    """The CLI end to end: piped progress lines, Ctrl-C (exit 130, the cache named), a resume that computes less."""
    spec = write_spec(tmp_path, SPEC_50.replace("segments = 30", "segments = 400"))
    command = [sys.executable, "-m", "harness", "sim", str(spec), "--results-root", str(tmp_path / "res")]
    command += ["--workers", "2"]
    env = {**os.environ, "HARNESS_PROGRESS_S": "0.2"}
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    line = child.stdout.readline()
    while line and "runs" not in line:
        line = child.stdout.readline()
    assert line.startswith("simulating: ") and "runs/s" in line, line
    while line and int(line.split("/")[0].split()[-1]) < 5:  # a few runs done
        line = child.stdout.readline()
    child.send_signal(signal.SIGINT)
    _, err = child.communicate(timeout=60)
    assert child.returncode == 130, err
    assert "interrupted (Ctrl-C) while running the sweep" in err and "the same command resumes" in err, err
    cache = tmp_path / "res" / ".sweep-cache"
    kept = len([p for p in next(cache.iterdir()).iterdir() if not p.name.startswith(".")])
    assert 5 <= kept < 50
    again = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert again.returncode == 0, again.stderr
    assert f"{50 - kept} run(s) computed, {kept} taken from the cache" in again.stdout
    assert not cache.exists()


# --------------------------------------------------------------------------- on Ray (marker ray: tests/README.md)


@pytest.fixture(scope="module")
def cluster():
    """A local Ray cluster of 2 CPUs for the module's Ray tests (last in the file: the local pool forks before it)."""
    import ray

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray's workers cannot import this test module
    ray.init(num_cpus=2, include_dashboard=False, object_store_memory=256 * 2**20, log_to_driver=False)
    yield ray
    ray.shutdown()


@pytest.mark.ray
def test_ray_sweep_equals_the_serial_run_byte_for_byte(cluster, serial, tmp_path):
    spec, reference = serial
    report = sweep_to_folder(spec, tmp_path / "out", ray="auto")
    assert report.computed == 50 and report.tasks >= 8
    assert_identical(reference, tmp_path / "out")


@pytest.mark.ray
def test_a_killed_ray_worker_is_retried_and_the_sweep_completes(cluster, serial, tmp_path, marks):
    spec, reference = serial
    (marks / "kill").write_text(str(os.getpid()))
    report = sweep_to_folder(spec, tmp_path / "out", faulty(marks), ray="auto")
    assert (marks / "killed").exists()
    assert (report.results.runs["status"] == "ok").all()
    assert_identical(reference, tmp_path / "out")


@pytest.mark.ray
def test_an_interrupted_ray_sweep_resumes_without_recomputing_finished_runs(cluster, serial, tmp_path, marks):
    spec, reference = serial
    cache = tmp_path / "cache"

    def stop_after_20(done):
        if done.done >= 20:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(load_spec(spec), faulty(marks), SweepOptions(ray="auto", cache_root=cache), on_done=stop_after_20)
    kept = len([p for p in next(cache.iterdir()).iterdir() if not p.name.startswith(".")])
    assert 20 <= kept < 50  # a chunk's runs arrive together: the sweep stops at the chunk that reached 20
    (marks / "made").unlink()
    report = sweep_to_folder(spec, tmp_path / "out", faulty(marks), ray="auto", cache_root=cache)
    assert (report.cached, report.computed) == (kept, 50 - kept)
    made = Path(marks / "made").read_text().splitlines()
    assert len(made) == 50 - kept + 1  # the missing runs, and the driver's one backend that names the backend
    assert_identical(reference, tmp_path / "out")
