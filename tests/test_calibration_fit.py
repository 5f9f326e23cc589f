"""Calibration math (replay.fit), the optional [kernels] profile section, and the shipped measured profile."""

from __future__ import annotations

import tomllib

import pytest

from harness.profile import HardwareProfile, load_profile
from harness.runtime import Direction, HostMemory
from replay.calibrate import write_profile
from replay.fit import (
    MiB,
    duplex_factor,
    fit_line,
    link_latency_us,
    link_table,
    monotone_times,
    size_for_time,
    split_pieces,
    time_for_size,
)


def test_fit_line_recovers_an_exact_line():
    assert fit_line([1, 2, 4], [5.0, 7.0, 11.0]) == pytest.approx((3.0, 2.0))
    with pytest.raises(ValueError, match="two distinct x"):
        fit_line([1, 1], [2.0, 3.0])


def test_link_latency_is_the_intercept_of_the_mid_sizes():
    # 7.7 µs + bytes at 50 GB/s between 1 and 16 MiB; slower small copies and faster big ones are ignored.
    samples = [(64 << 10, 20.0)] + [(n, 7.7 + n / 50e3) for n in (1 * MiB, 4 * MiB, 16 * MiB)] + [(1 << 30, 19000.0)]
    assert link_latency_us(samples) == pytest.approx(7.7, abs=0.01)


def test_link_latency_stays_below_every_sample_and_non_negative():
    # A steep line through the mid sizes would put the intercept above the 64 KiB sample.
    samples = [(64 << 10, 10.0), (1 * MiB, 30.0), (16 * MiB, 40.0)]
    assert link_latency_us(samples) == pytest.approx(9.0)
    assert link_latency_us([(1 * MiB, 5.0), (16 * MiB, 400.0)]) == 0.0  # negative intercept clipped
    assert link_latency_us([(1 * MiB, 30.0)]) == 0.0  # one sample: no line


def test_link_table_is_a_valid_profile_table_that_reproduces_its_samples(h100):
    samples = [(1 << 30, 19500.0), (64 << 10, 26.0), (1 * MiB, 35.0), (4 * MiB, 90.0), (16 * MiB, 321.0)]
    table = link_table(samples)
    assert [s for s, _ in table["samples"]] == sorted(s for s, _ in samples)
    raw = h100.figures.model_dump()
    raw["link"]["h2d"]["pinned"] = table
    profile = load_profile_from_dict(raw)
    for size, t in samples:
        assert profile.copy_time_us(size, Direction.H2D, HostMemory.PINNED) == pytest.approx(t, rel=1e-6)


def load_profile_from_dict(raw):
    from harness.profile import Profile

    return Profile(HardwareProfile.model_validate(raw))


def test_duplex_factor_matches_the_quoted_pair():
    assert duplex_factor(4875.0, 5750.0, 7.7) == pytest.approx(0.848, abs=1e-3)
    assert duplex_factor(5000.0, 4000.0, 5.0) == 1.0  # never faster than alone
    with pytest.raises(ValueError, match="must exceed the latency"):
        duplex_factor(5.0, 10.0, 7.0)


def test_size_for_time_inverts_time_for_size():
    sizes, times = [128, 1024, 4096, 12288], monotone_times([20.0, 210.0, 200.0, 2100.0])
    assert times == [20.0, 210.0, 210.0, 2100.0]
    for target in (20.0, 100.0, 500.0, 2000.0):
        assert time_for_size(sizes, times, size_for_time(sizes, times, target)) == pytest.approx(target)
    assert size_for_time(sizes, times, 10.0) == pytest.approx(64.0)  # below the first sample: proportional
    assert size_for_time(sizes, times, 210.0) == 1024.0  # a flat step resolves to its smaller size


def test_split_pieces_uses_the_fewest_equal_pieces():
    assert split_pieces(10_000.0, 2_100.0) == (5, pytest.approx(2000.0))
    assert split_pieces(2_100.0, 2_100.0) == (1, 2100.0)
    assert split_pieces(0.0, 2_100.0) == (0, 0.0)


def test_profile_with_kernels_section_round_trips(tmp_path, h100):
    raw = h100.figures.model_dump(exclude_none=True)
    raw["name"] = "with-kernels"
    raw["kernels"] = {
        "matmul_k": 8192,
        "matmul_n": 8192,
        "matmul_samples": [[128, 20.0], [256, 30.0]],
        "d2d_samples": [[1048576, 5.0], [2097152, 6.5]],
        "sleep_base_us": 2.0,
        "sleep_cycles_per_us": 1430.0,
        "min_kernel_us": 2.5,
    }
    path = write_profile(raw, tmp_path / "with-kernels.toml", "# header\n")
    loaded = load_profile(path)
    assert loaded.figures.kernels.sleep_cycles_per_us == 1430.0
    assert path.read_text().startswith("# header\n")
    assert not list(tmp_path.glob(".*partial*"))
    raw["kernels"]["sleep_cycles_per_us"] = 0.0
    with pytest.raises(Exception, match="greater than 0"):
        write_profile(raw, tmp_path / "bad.toml")
    assert not (tmp_path / "bad.toml").exists()


def test_shipped_measured_profile_says_where_it_came_from():
    profile = load_profile("h100-sxm-pcie5-measured")
    prov = profile.figures.provenance
    assert "harness calibrate" in prov.source
    assert prov.gpu.startswith("NVIDIA H100") and prov.driver and prov.torch and prov.date
    assert profile.figures.kernels is not None
    raw = tomllib.loads(profile.path.read_text())
    assert raw["name"] == "h100-sxm-pcie5-measured"
    # Measured pinned H2D of 1 GiB on PCIe Gen5 x16: about 50-56 GB/s.
    gbps = (1 << 30) / profile.copy_time_us(1 << 30, Direction.H2D, HostMemory.PINNED) / 1e3
    assert 45.0 < gbps < 60.0


def test_host_cost_loop_recovers_the_costs_it_runs_under(h100):
    """The calibration's streaming loop, run on the simulator, reads back the profile's host costs."""

    from harness.backend import ops_frame
    from harness.profile import Profile
    from replay.calibrate import _loop_costs, _loop_policy, handoff_wake_us
    from sim import SimBackend

    profile = Profile(h100.figures.model_copy(update={"host": h100.host.model_copy(update={"thread_wake_us": 120.0})}))
    run = SimBackend(profile).run(_loop_policy)
    costs = _loop_costs(ops_frame(run.ops), run.result)
    costs["thread_wake_us"] = handoff_wake_us(SimBackend(profile), now_us=0.0)
    # graph_launch_us: measured by the graph policy, below; stream_handoff_us: an eager program's figure only
    # ([host_costs.pytorch_eager], harness calibrate --profiler), not the replay engine's
    expected = profile.host.model_dump(exclude={"graph_launch_us", "stream_handoff_us"})
    assert costs == pytest.approx(expected, abs=1e-6)


def test_graph_calibration_recovers_the_graph_costs_it_runs_under(h100):
    """The calibration's graph loop, run on the simulator, reads back the profile's graph launch cost and kernel gap."""
    from harness.backend import run_policy
    from harness.profile import Profile
    from replay.calibrate import _graph_policy, graph_costs
    from sim import SimBackend

    figures = h100.figures.model_copy(
        update={
            "host": h100.host.model_copy(update={"graph_launch_us": 12.5}),
            "device": h100.figures.device.model_copy(update={"graph_kernel_gap_us": 0.25}),
        }
    )
    run = run_policy(SimBackend(Profile(figures)), _graph_policy)
    assert graph_costs(run.ops, run.result) == pytest.approx(
        {"graph_launch_us": 12.5, "graph_kernel_gap_us": 0.25}, abs=1e-3
    )
