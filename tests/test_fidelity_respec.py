"""The benchmark's spec copies (fidelity.respec): another profile, inputs still found from another folder."""

from __future__ import annotations

from pathlib import Path

from fidelity.respec import respec
from harness.paths import SPECS_DIR
from harness.spec import load_spec


def test_a_copy_elsewhere_finds_the_spec_inputs_and_uses_the_given_profile(tmp_path: Path) -> None:
    original = load_spec(SPECS_DIR / "layer_streaming_demo.toml")
    profile = tmp_path / "profile.toml"
    profile.write_text((SPECS_DIR.parent / "profiles" / "h200-measured.toml").read_text())
    copy = tmp_path / "specs" / "demo.toml"
    copy.parent.mkdir()
    respec(SPECS_DIR / "layer_streaming_demo.toml", str(profile), copy)
    loaded = load_spec(copy)
    assert loaded.profile.device.gpu_name == "NVIDIA H200"
    assert Path(loaded.workload_params.trace).is_absolute()
    assert Path(loaded.workload_params.trace).resolve() == (SPECS_DIR / original.workload_params.trace).resolve()
    assert [p.label for p in loaded.policies] == [p.label for p in original.policies]
    inputs = loaded.workload.prepare(loaded.prepare_context())
    assert len(inputs.segments) == len(original.workload.prepare(original.prepare_context()).segments)
