"""Copies timed as runs issue them (replay.copy_calibration): the policies read a profile back on the simulator,
the fit is robust to a slow round, and the drift probes and per-size spreads round-trip through a profile."""

from __future__ import annotations

import random
import tomllib

import pydantic
import pytest

from harness.backend import run_policy
from harness.profile import HardwareProfile, LinkDrift, Profile, load_profile
from harness.runtime import Direction, HostMemory
from replay.calibrate import write_profile
from replay.copy_calibration import (
    BEHIND,
    BESIDE,
    IDLE,
    REFERENCE,
    copy_durations,
    copy_rounds_policy,
    drift_section,
    duplex_durations,
    idle_adjusted,
    link_section,
    plan_for,
    probe_durations,
    probe_of,
    probe_policy,
)
from replay.fit import MiB
from sim import SimBackend


@pytest.fixture(scope="module")
def read_back(h100):
    """The copy rounds (3 rounds) and a probe, run on the simulator under the quoted H100 profile."""
    plan = plan_for(h100, rounds=3)
    ops = run_policy(SimBackend(h100), copy_rounds_policy, plan).ops
    return plan, ops


def test_copy_rounds_read_back_the_profiles_link_on_the_simulator(h100, read_back):
    plan, ops = read_back
    durations = copy_durations(ops)
    assert len(durations) == len(plan.cases)
    # Each size changes placement from round to round: pinned behind a kernel on the compute stream, beside
    # one, or on an idle stream; pageable (which holds the host) on an idle stream, alone or beside a kernel.
    for (_, memory, _), by_place in durations.items():
        assert set(by_place) == ({BEHIND, BESIDE, IDLE} if memory == "pinned" else {IDLE, BESIDE})
    assert all(sum(map(len, by_place.values())) == 3 for by_place in durations.values())
    link = link_section(durations, duplex_durations(ops), plan.duplex_bytes)
    assert link["duplex_bandwidth_factor"] == pytest.approx(h100.duplex_bandwidth_factor, abs=1e-3)
    profile = Profile(
        HardwareProfile.model_validate({**h100.figures.model_dump(exclude_none=True), "link": link})
    )
    for case in plan.cases:
        expected = h100.copy_time_us(case.nbytes, case.direction, case.memory)
        assert profile.copy_time_us(case.nbytes, case.direction, case.memory) == pytest.approx(expected, rel=1e-3)
    assert all(spread == 0.0 for _, spread in link["h2d"]["pinned"]["spread_us"])  # the simulator does not drift
    # The simulator starts a copy after its host cost, on an idle stream too: idle_us equals the samples there.
    idle, samples = link["d2h"]["pinned"]["idle_us"], link["d2h"]["pinned"]["samples"]
    assert [n for n, _ in idle] == [n for n, _ in samples]
    assert [t for _, t in idle] == pytest.approx([t for _, t in samples], abs=0.01)
    assert "idle_us" not in link["h2d"]["pageable"]


def test_probe_times_the_reference_copy(h100):
    durations = probe_durations(run_policy(SimBackend(h100), probe_policy, 5).ops)
    assert len(durations) == 5
    expected = h100.copy_time_us(REFERENCE.nbytes, REFERENCE.direction, REFERENCE.memory)
    assert durations == pytest.approx([expected] * 5, rel=1e-6)


def _synthetic(latency_us: float, gbps: float, slow_round: int, rounds: int = 9) -> dict:
    """Timings of a latency + bytes / bandwidth link, 0.5% noise, and one round 8% slow for every size."""
    rng = random.Random(3)
    durations = {}
    for direction in ("h2d", "d2h"):
        for memory in ("pinned", "pageable"):
            for n in (64 << 10, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 512 * MiB):
                true = latency_us + n / (gbps * 1e3)
                slow = [1.08 if r == slow_round else 1.0 for r in range(rounds)]
                times = [true * s * (1 + rng.uniform(-0.005, 0.005)) for s in slow]
                durations[(direction, memory, n)] = {BEHIND: times[0::2], BESIDE: times[1::2]}
    return durations


def test_the_fit_recovers_latency_and_bandwidth_and_shrugs_off_one_slow_round():
    durations = _synthetic(latency_us=9.0, gbps=54.0, slow_round=4)
    link = link_section(durations)
    table = link["h2d"]["pinned"]
    assert table["latency_us"] == pytest.approx(9.0, abs=1.5)
    for n, t in table["samples"]:
        assert t == pytest.approx(9.0 + n / 54e3, rel=0.006)  # the slow round moves no median by its 8%
    spreads = dict(table["spread_us"])
    assert set(spreads) == {n for n, _ in table["samples"]}
    assert 0 < spreads[512 * MiB] < 0.01 * (512 * MiB / 54e3)
    assert "duplex_bandwidth_factor" not in link  # no duplex pairs, no factor


def test_duplex_factor_needs_the_pinned_size_timed_alone():
    durations = _synthetic(latency_us=9.0, gbps=54.0, slow_round=-1)
    solo = 9.0 + 256 * MiB / 54e3
    link = link_section(durations, [9.0 + (solo - 9.0) / 0.85] * 3, duplex_bytes=256 * MiB)
    assert link["duplex_bandwidth_factor"] == pytest.approx(0.85, abs=0.01)
    with pytest.raises(ValueError, match="duplex pairs of 123 B"):
        link_section(durations, [5000.0], duplex_bytes=123)
    with pytest.raises(ValueError, match="no h2d pageable copies"):
        link_section({k: v for k, v in durations.items() if k[:2] != ("h2d", "pageable")})


def test_drift_probes_and_spreads_round_trip_through_a_profile(tmp_path, h100):
    probes = [probe_of("start", 0.0, [1200.0, 1210.0, 1190.0]), probe_of("middle", 31.0, [1260.0] * 3)]
    probes.append(probe_of("end", 75.4, [1230.0, 1229.0, 1231.0]))
    drift = drift_section(probes)
    assert drift["spread_frac"] == pytest.approx((1260 - 1200) / 1230, abs=1e-4)
    link = link_section(_synthetic(9.0, 54.0, slow_round=-1))
    link["duplex_bandwidth_factor"] = 0.88
    link["drift"] = drift
    raw = {**h100.figures.model_dump(mode="json", exclude_none=True), "link": link}
    path = write_profile(raw, tmp_path / "p.toml")
    loaded = load_profile(path)
    assert loaded.figures.link.drift.reference_us == 1230.0
    assert [p.label for p in loaded.figures.link.drift.probes] == ["start", "middle", "end"]
    assert loaded.figures.link.h2d.pinned.spread_us[0][0] == 64 << 10
    assert tomllib.loads(path.read_text())["link"]["drift"]["nbytes"] == 64 * MiB


def test_idle_adjusted_counts_the_idle_issue_beyond_the_host_cost(h100):
    """Each pinned sample becomes max(sample, idle - copy_launch_us); tables without idle_us stay as they are."""
    raw = h100.figures.model_dump(mode="json", exclude_none=True)
    raw["host"]["copy_launch_us"] = 25.0
    pinned = raw["link"]["h2d"]["pinned"]
    n_small, n_big = pinned["samples"][0][0], pinned["samples"][-1][0]
    pinned["idle_us"] = [[n_small, pinned["samples"][0][1] + 10.0], [n_big, pinned["samples"][-1][1] + 90.0]]
    adjusted = idle_adjusted(raw)
    samples = dict(map(tuple, adjusted["link"]["h2d"]["pinned"]["samples"]))
    assert samples[n_small] == pytest.approx(pinned["samples"][0][1])  # idle - 25 below the transfer time: kept
    assert samples[n_big] == pytest.approx(pinned["samples"][-1][1] + 65.0)
    assert adjusted["link"]["d2h"] == raw["link"]["d2h"] and raw["link"]["h2d"]["pinned"]["samples"][-1][0] == n_big
    HardwareProfile.model_validate(adjusted)
    raw["link"]["h2d"]["pinned"]["idle_us"] = [[12345, 1.0]]
    with pytest.raises(pydantic.ValidationError, match="idle_us"):
        HardwareProfile.model_validate(raw)


def test_profile_checks_the_new_fields(h100):
    drift = drift_section([probe_of("start", 0.0, [1000.0]), probe_of("end", 9.0, [1100.0])])
    with pytest.raises(pydantic.ValidationError, match="the probes spread"):
        LinkDrift.model_validate({**drift, "spread_frac": 0.5})
    raw = h100.figures.model_dump(mode="json", exclude_none=True)
    raw["link"]["h2d"]["pinned"]["spread_us"] = [[12345, 1.0]]
    with pytest.raises(pydantic.ValidationError, match="needs a sample of that size"):
        HardwareProfile.model_validate(raw)


@pytest.mark.parametrize("name", ["h100-sxm-pcie5", "h100-sxm-pcie5-measured", "h200-measured"])
def test_profiles_without_the_new_fields_still_load(name):
    profile = load_profile(name)
    assert profile.figures.link.drift is None
    assert profile.copy_time_us(64 * MiB, Direction.H2D, HostMemory.PINNED) > 0


def test_link_probe_without_a_gpu_says_so_and_writes_nothing(tmp_path, monkeypatch, capsys):
    import sys

    from replay import link_probe

    monkeypatch.setitem(sys.modules, "torch", None)  # `import torch` now raises ImportError
    out = tmp_path / "probes.csv"
    assert link_probe.main([str(out), "--when", "before"]) == 2
    assert "error: link probe: this command needs a CUDA GPU" in capsys.readouterr().err
    assert not out.exists()
    assert link_probe.main([str(out), "--reps", "0"]) == 2 and "--reps must be >= 1" in capsys.readouterr().err


def test_link_probes_append_rows_the_report_reads(tmp_path):
    import pandas as pd

    from replay.link_probe import PROBE_COLUMNS, append_probe, spec_name

    spec = tmp_path / "s.toml"
    spec.write_text('name = "fidelity-balanced"\n')
    assert spec_name(spec) == "fidelity-balanced" and spec_name(None) == ""
    out = tmp_path / "probes.csv"
    for when, us in (("before", 1220.0), ("after", 1290.5)):
        append_probe(out, {"when": when, "spec_name": "fidelity-balanced", "nbytes": 64 * MiB, "median_us": us})
    frame = pd.read_csv(out)
    assert list(frame.columns) == list(PROBE_COLUMNS)
    assert frame["when"].tolist() == ["before", "after"] and frame["median_us"].tolist() == [1220.0, 1290.5]
    assert [p.name for p in tmp_path.iterdir()] != [] and not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_copy_ab_sets_each_profiles_simulation_against_the_same_replay(tmp_path, capsys, monkeypatch):
    """tools/copy_calibration_ab.py on the 2026-11-26 rerun's short-compute replay: its own profile gives the
    report's errors (-5.00%, -6.86%); another profile gives other errors against the same measured medians."""
    from fidelity.respec import respec
    from harness.paths import REPO_ROOT, SPECS_DIR

    monkeypatch.syspath_prepend(str(REPO_ROOT / "tools"))
    import copy_calibration_ab

    rerun = REPO_ROOT / "measurements" / "2026-11-26_h100-rerun_layer-streaming"
    (tmp_path / "specs").mkdir()
    name = "fidelity_short_compute"
    respec(SPECS_DIR / f"{name}.toml", str(rerun / "profile.toml"), tmp_path / "specs" / f"{name}.toml")
    (tmp_path / "results").mkdir()
    (tmp_path / "results" / f"{name}-replay").symlink_to(rerun / "results" / f"{name}-replay")
    other = REPO_ROOT / "traces" / "profiles" / "h100-sxm-pcie5-measured.toml"
    assert copy_calibration_ab.main([str(tmp_path), str(rerun / "profile.toml"), str(other)]) == 0
    text = (tmp_path / "copy_ab.md").read_text()
    assert "| fidelity_short_compute | sync | 19,125.4 | 18,168.8 (-5.00%) |" in text
    assert "- profile: median |error| 5.93%, worst 6.86%" in text
    assert "- h100-sxm-pcie5-measured: median |error|" in text
    assert copy_calibration_ab.main([str(tmp_path / "nowhere"), str(other)]) == 2
    assert "no specs/ folder" in capsys.readouterr().err


def test_calibrate_copies_derives_the_idle_adjusted_profile_without_a_gpu(tmp_path, h100, monkeypatch, capsys):
    from harness.paths import REPO_ROOT

    monkeypatch.syspath_prepend(str(REPO_ROOT / "tools"))
    import calibrate_copies

    raw = h100.figures.model_dump(mode="json", exclude_none=True)
    write_profile(raw, tmp_path / "old.toml")
    assert calibrate_copies.main(["--method", "idle-adjusted", "--base", str(tmp_path / "old.toml"),
                                  "--out", str(tmp_path / "x.toml")]) == 2
    assert "no pinned idle_us" in capsys.readouterr().err and not (tmp_path / "x.toml").exists()
    n, t = raw["link"]["d2h"]["pinned"]["samples"][-1]
    raw["link"]["d2h"]["pinned"]["idle_us"] = [[n, t + raw["host"]["copy_launch_us"] + 50.0]]
    write_profile(raw, tmp_path / "new.toml")
    out = tmp_path / "profile-idle.toml"
    assert calibrate_copies.main(["--method", "idle-adjusted", "--base", str(tmp_path / "new.toml"),
                                  "--out", str(out)]) == 0
    adjusted = load_profile(out)
    assert adjusted.name == "profile-idle" and "idle_us - copy_launch_us" in adjusted.figures.provenance.notes
    assert adjusted.copy_time_us(n, Direction.D2H, HostMemory.PINNED) == pytest.approx(t + 50.0, abs=0.01)
