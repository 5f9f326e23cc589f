"""Where the executor's threads run (HARNESS_NATIVE_CPUS / HARNESS_NATIVE_FIFO) and the host jitter probe, on this
machine's CPUs: the code is src/host_thread.hpp, built into the fake library (no GPU needed; skips without g++)."""

from __future__ import annotations

import os
import shutil

import pytest

from replay.native.library import PLACED_PINNED, check_placement_env, place_check, placement_cpus

pytestmark = pytest.mark.skipif(shutil.which("g++") is None and not os.environ.get("CXX"), reason="needs g++")

ALLOWED = sorted(os.sched_getaffinity(0))


@pytest.mark.parametrize(
    "value, cpus", [("off", []), ("0", []), ("none", []), ("3", [3]), ("2-4,7", [2, 3, 4, 7]), ("1,1", [1, 1])]
)
def test_an_explicit_cpu_list_is_the_threads_cpus_in_order(monkeypatch, value, cpus):
    monkeypatch.setenv("HARNESS_NATIVE_CPUS", value)
    check_placement_env()
    assert placement_cpus() == cpus


@pytest.mark.parametrize("value", ["fast", "3-1", "1,,2", "-1"])
def test_a_bad_cpu_list_is_refused_naming_the_variable(monkeypatch, value):
    monkeypatch.setenv("HARNESS_NATIVE_CPUS", value)
    with pytest.raises(ValueError, match="HARNESS_NATIVE_CPUS"):
        check_placement_env()


@pytest.mark.parametrize(
    "name, value, message",
    [("HARNESS_NATIVE_FIFO", "yes please", "must be 0 or 1"), ("HARNESS_NATIVE_SPIN", "hard", "must be busy or pause")],
)
def test_a_bad_fifo_or_spin_switch_is_refused(monkeypatch, name, value, message):
    monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=f"{name} {message}; got '{value}'"):
        check_placement_env()


def _core(cpu: int) -> tuple[str, str] | int:
    base = f"/sys/devices/system/cpu/cpu{cpu}/topology/"
    try:
        return (open(base + "physical_package_id").read().strip(), open(base + "core_id").read().strip())
    except OSError:
        return cpu


def test_auto_takes_one_allowed_cpu_per_core_highest_first_and_the_first_cpus_core_last(monkeypatch):
    monkeypatch.delenv("HARNESS_NATIVE_CPUS", raising=False)
    auto = placement_cpus()
    if len(ALLOWED) < 2:
        assert auto == []  # one CPU: nothing to choose, the scheduler places the threads
        return
    assert set(auto) <= set(ALLOWED) and len({_core(c) for c in auto}) == len(auto) == len({_core(c) for c in ALLOWED})
    assert auto[-1] in [c for c in ALLOWED if _core(c) == _core(ALLOWED[0])]
    rest = auto[:-1] if _core(auto[-1]) == _core(ALLOWED[0]) else auto
    assert rest == sorted(rest, reverse=True)


def test_a_thread_placed_as_a_runs_thread_runs_on_its_cpu(monkeypatch):
    monkeypatch.setenv("HARNESS_NATIVE_CPUS", ",".join(str(c) for c in reversed(ALLOWED)))
    monkeypatch.delenv("HARNESS_NATIVE_FIFO", raising=False)
    for index, cpu in enumerate(reversed(ALLOWED)):
        assert place_check(index) == (PLACED_PINNED, cpu)
    placed, _ = place_check(len(ALLOWED))  # beyond the list: not pinned
    assert placed == 0


def test_the_jitter_probe_spins_on_the_cpu_it_names_and_counts_the_clocks_jumps():
    from replay.native.jitter import spin

    cpu = ALLOWED[-1]
    figures, gaps = spin(cpu, 0.05, threshold_ns=1000)
    assert figures["pinned"] and figures["ran_on"] == cpu and figures["spin"] == "pause"
    assert spin(cpu, 0.01, pauses=False)[0]["spin"] == "busy"
    assert 5 < figures["read_ns"] < 5000  # a clock read, not a system call per read
    assert len(gaps) == round(figures["gaps_per_s"] * 0.05)
    assert (gaps[:, 1] > 1000).all() and (gaps[:, 0] >= 0).all() and (gaps[:, 0] < 0.05e9 + 1e6).all()
    if len(gaps):
        assert figures["gap_max_us"] == pytest.approx(gaps[:, 1].max() / 1e3)
        assert figures["lost_frac"] == pytest.approx(gaps[:, 1].sum() / 0.05e9)


def test_the_check_table_reads_a_check_folder_and_fails_what_missed_its_target(tmp_path):
    """tools/native_check_table.py on the committed H100 check of 2026-12-07 (its old probe format included)."""
    import runpy
    import shutil as sh
    import sys

    from harness.paths import REPO_ROOT

    folder = tmp_path / "check"
    sh.copytree(REPO_ROOT / "measurements" / "2026-12-07_h100_native-check-2", folder)
    argv = sys.argv
    sys.argv = ["native_check_table.py", str(folder)]
    try:
        runpy.run_path(str(REPO_ROOT / "tools" / "native_check_table.py"), run_name="__main__")
    finally:
        sys.argv = argv
    import pandas as pd

    table = pd.read_csv(folder / "passfail.csv").set_index("check")
    assert table.loc["GPU tests", "figure"] == "3 failed, 24 passed" and not table.loc["GPU tests", "pass"]
    assert table.index.str.contains("test_a_recorded_spec_replays_natively").any()
    assert not table.loc["launch driver/off (unpinned) gap 10 µs", "pass"]  # late p99 8.51
    assert table.loc["stage build", "pass"] and not table.loc["stage gpu_tests", "pass"]
    assert table.loc["recorded recorded_decode_inline as_recorded", "pass"]
    assert not table.loc["recorded recorded_decode_graph as_recorded", "pass"]  # +4.5% of the sim


def test_the_probe_runs_every_placement_with_the_first_api_and_the_first_placement_with_the_others(
    tmp_path, monkeypatch, capsys
):
    """replay.native.probe's matrix on the fake device (the CUDA library stood in for): rows, outputs, table."""
    import json
    import sys

    import numpy as np
    import pandas as pd

    from replay.native import library, probe
    from replay.native.library import run_fake_native

    seen = []

    class FakeCuda:
        def __init__(self, device):
            self.launch_api, self.launch_note, self.placement = os.environ["HARNESS_NATIVE_LAUNCH"], "", "pinned"

        def run(self, program):
            seen.append((self.launch_api, os.environ["HARNESS_NATIVE_CPUS"], os.environ["HARNESS_NATIVE_SPIN"]))
            return run_fake_native(program)

        def launch_floor_ns(self, reps):
            floors.append(self.launch_api)
            return np.full(reps, 1500, np.int64)

        def close(self):
            pass

    floors: list[str] = []
    monkeypatch.setattr(library, "CudaLibrary", FakeCuda)
    for name in ("HARNESS_NATIVE_LAUNCH", "HARNESS_NATIVE_CPUS", "HARNESS_NATIVE_FIFO", "HARNESS_NATIVE_SPIN"):
        monkeypatch.setenv(name, os.environ.get(name, ""))  # the probe sets them: put them back afterwards
    argv = ["probe", "--out", str(tmp_path), "--launches", "50", "--gaps-us", "0", "5",
            "--launch-apis", "packed", "runtime", "--placements", "auto", "pause"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", argv)
    probe.main()
    runs = json.loads((tmp_path / "probe.json").read_text())["runs"]
    assert [(r["api"], r["placement"], r["gap_us"]) for r in runs] == [
        ("packed", "auto", 0.0), ("packed", "auto", 5.0), ("packed", "pause", 0.0), ("packed", "pause", 5.0),
        ("runtime", "auto", 0.0), ("runtime", "auto", 5.0),
    ]  # fmt: skip
    assert seen[0] == ("packed", "auto", "busy") and seen[4] == ("packed", "auto", "pause") and len(seen) == 12  # each run twice: warm-up, then measured
    # the fake clock is never late and its launch costs FakeCosts.launch (2 µs): the targets are met
    assert all(r["late_p99_us"] == 0.0 and r["launch_median_us"] == 2.0 for r in runs)
    rows = pd.read_parquet(tmp_path / "probe.parquet")
    assert len(rows) == 6 * 50 and set(rows["api"]) == {"packed", "runtime"}
    table = capsys.readouterr().out
    assert table.count("  yes") == 6 and "n > 3" in table
    # the driver's own launch call, once, with the first API, printed and kept beside the runs
    assert floors == ["packed"] and "the driver's own launch call" in table and "median 1.50 µs" in table
    assert json.loads((tmp_path / "probe.json").read_text())["launch_floor"]["median_us"] == 1.5
