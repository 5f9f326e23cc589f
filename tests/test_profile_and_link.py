"""The hardware profile's copy model and the host-link figures it must reproduce."""

from __future__ import annotations

import pytest

from harness.backend import ops_frame
from harness.errors import InputError
from harness.profile import load_profile
from harness.runtime import Direction, HostMemory
from sim import SimBackend

MiB = 1 << 20

QUOTED_PINNED_H2D_US = {
    64 << 10: 17.7,
    1 * MiB: 28.0,
    4 * MiB: 89.0,
    16 * MiB: 324.0,
    64 * MiB: 1227.0,
    256 * MiB: 4875.0,
    1 << 30: 19440.0,
}


@pytest.mark.parametrize("nbytes, time_us", sorted(QUOTED_PINNED_H2D_US.items()))
def test_pinned_copy_model_reproduces_every_measured_sample(h100, nbytes, time_us):
    assert h100.copy_time_us(nbytes, Direction.H2D, HostMemory.PINNED) == pytest.approx(time_us, rel=1e-9)


def test_copy_time_grows_with_size_and_bandwidth_saturates(h100):
    sizes = [1 << k for k in range(12, 31)]
    times = [h100.copy_time_us(n, Direction.H2D, HostMemory.PINNED) for n in sizes]
    assert all(b > a for a, b in zip(times, times[1:]))
    assert (1 << 30) / times[-1] / 1e3 == pytest.approx(55.2, rel=0.01)


def test_pageable_is_slower_than_pinned_at_every_size(h100):
    for k in range(16, 31):
        n = 1 << k
        for direction in (Direction.H2D, Direction.D2H):
            assert h100.copy_time_us(n, direction, HostMemory.PAGEABLE) > h100.copy_time_us(
                n, direction, HostMemory.PINNED
            )


def run_ops(profile, main):
    result = SimBackend(profile).run(main)
    return ops_frame(result.ops)


def test_duplex_pair_of_256_mib_copies_takes_the_measured_5_75_ms(h100):
    def main(rt):
        up = yield rt.create_stream(0, "up")
        down = yield rt.create_stream(0, "down")
        t0 = yield rt.now()
        yield rt.copy(up, 256 * MiB, Direction.H2D)
        yield rt.copy(down, 256 * MiB, Direction.D2H)
        yield rt.sync_stream(up)
        yield rt.sync_stream(down)
        return t0

    ops = run_ops(h100, main)
    copies = ops[ops["kind"].str.startswith("copy")]
    together = copies["end_us"].max() - copies["start_us"].min()
    assert together == pytest.approx(5750.0, rel=0.01)
    alone = h100.copy_time_us(256 * MiB, Direction.H2D, HostMemory.PINNED)
    assert alone == pytest.approx(4875.0)


def test_same_direction_copies_serialise_on_one_engine(h100):
    def main(rt):
        a = yield rt.create_stream(0, "a")
        b = yield rt.create_stream(0, "b")
        yield rt.copy(a, 64 * MiB, Direction.H2D)
        yield rt.copy(b, 64 * MiB, Direction.H2D)
        yield rt.sync_stream(b)

    ops = run_ops(h100, main)
    first, second = ops[ops["kind"] == "copy_h2d"].itertuples()
    assert second.start_us == pytest.approx(first.end_us)
    assert second.end_us - second.start_us == pytest.approx(1227.0)


def test_pageable_copy_holds_the_host_and_pinned_does_not(h100):
    def main(rt, memory):
        s = yield rt.create_stream(0, "s")
        yield rt.launch(s, "busy", 20_000.0)  # work already queued ahead of the copy
        yield rt.copy(s, 64 * MiB, Direction.H2D, memory)
        return (yield rt.now())

    pinned = SimBackend(h100).run(main, HostMemory.PINNED)
    pageable = SimBackend(h100).run(main, HostMemory.PAGEABLE)
    host = h100.host
    assert pinned.result == pytest.approx(host.launch_us + host.copy_launch_us)
    # Held until the queued kernel and the copy itself are done (GPU-FACTS: ~46 ms for a 64 MB copy behind ~20 ms).
    copy = h100.copy_time_us(64 * MiB, Direction.H2D, HostMemory.PAGEABLE)
    assert pageable.result == pytest.approx(host.launch_us + 20_000.0 + copy + host.sync_wake_us, rel=1e-6)


def test_unknown_profile_names_the_bundled_ones():
    with pytest.raises(InputError, match="unknown hardware profile.*h100-sxm-pcie5"):
        load_profile("a100-nonexistent")


def test_malformed_profile_names_file_and_field(tmp_path):
    bad = tmp_path / "bad.toml"
    text = (load_profile("h100-sxm-pcie5").path).read_text().replace("launch_us = 9.3", "launch_us = -1.0", 1)
    bad.write_text(text)
    with pytest.raises(InputError, match=r"bad\.toml: field 'host\.launch_us'"):
        load_profile(bad)
    bad.write_text("format_version = [")
    with pytest.raises(InputError, match="malformed TOML"):
        load_profile(bad)


def test_gpu_alias_resolves_to_the_measured_default_and_runs_record_the_profile(tmp_path):
    # The simulator uses the profile measured on the H100 by default for that GPU.
    from harness.cli.run import simulate_spec
    from harness.profile import gpu_defaults
    from harness.results import read_results

    profile = load_profile("h100")
    assert profile.name == "h100-sxm-pcie5-measured"
    assert profile.figures.provenance.source.startswith("measured by `harness calibrate`")
    for alias, default in gpu_defaults().items():
        assert load_profile(alias).device.gpu_name == default.gpu_name, alias
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "s"\nprofile = "h100"\n[workload]\nkind = "layer_streaming"\nsegments = 2\n'
        'param_bytes = 1048576\ncompute_us = 100.0\n[[policies]]\nname = "sync"\n'
    )
    out = simulate_spec(spec, tmp_path / "out", tmp_path)
    assert set(read_results(out).runs["profile"]) == {"h100-sxm-pcie5-measured"}


def test_broken_gpu_defaults_file_is_named(tmp_path, monkeypatch):
    import harness.profile as profile_module

    bad = tmp_path / "gpu-defaults.toml"
    monkeypatch.setattr(profile_module, "GPU_DEFAULTS_FILE", bad)
    bad.write_text('[gpus.x100]\ngpu_name = "X100"\nprofile = "x100-missing"\n')
    with pytest.raises(InputError, match="GPU alias 'x100' in gpu-defaults.toml: unknown hardware profile"):
        load_profile("x100")
    bad.write_text('[gpus.x100]\nprofile = "h100-sxm-pcie5"\n')
    with pytest.raises(InputError, match=r"gpu-defaults\.toml: field 'gpus\.x100\.gpu_name'"):
        load_profile("x100")
