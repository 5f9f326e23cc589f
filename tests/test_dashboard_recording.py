"""A recording as a run (``harness trace as-run``, backend ``recording``) on the Runs, Timeline and Compare pages.

The recording is labelled ``recording`` (never pooled with sim or replay runs), drawn below its simulation on
the timeline, and is the measured side of the sim-vs-measured badge and pairs when the spec has no replay.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_support import simulate, write_synthetic_replay

from dashboard import sources
from dashboard.catalog import build_catalog, load_path
from dashboard.fidelity import derive_fidelity, fidelity_badge, machines, measured_side
from dashboard.machines import machine_groups, partner_run
from harness.paths import SPECS_DIR

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"
SPEC = "recorded_layers_sync"
SPEC_NAME = "recorded-layers-sync"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dashboard-recording") / "results"
    root.mkdir()
    sim = simulate(SPEC, root / f"{SPEC}-sim")
    recording = root / f"{SPEC}-recording"
    subprocess.run(
        [sys.executable, "-m", "harness", "trace", "as-run", str(SPECS_DIR / f"{SPEC}.toml"), "--out", str(recording)],
        check=True,
        capture_output=True,
    )
    return {"sim": sim, "recording": recording, "root": root}


def catalog(*paths: Path):
    return build_catalog([load_path(p) for p in paths])


def test_a_recording_is_its_own_backend_and_the_timeline_partner_of_its_simulation(folders):
    cat = catalog(folders["sim"], folders["recording"])
    groups = machine_groups(cat.runs)
    assert sorted(groups) == ["recording", "sim"] and len(groups["recording"]) == 1
    recorded = groups["recording"].iloc[0]
    sim = cat.runs[(cat.runs["backend"] == "sim") & (cat.runs["policy_label"] == recorded["policy_label"])].iloc[0]
    assert partner_run(cat.runs, sim) == recorded["run_label"]
    assert partner_run(cat.runs, recorded) == sim["run_label"]


def test_the_recording_is_the_measured_side_when_the_spec_has_no_replay(folders, tmp_path):
    cat = catalog(folders["sim"], folders["recording"])
    derived = derive_fidelity(cat)
    pairs = derived.table
    assert not pairs.empty and set(pairs["measured_by"]) == {"recording"}
    assert set(pairs["policy_label"]) == {"as_recorded"}  # the recording is the as_recorded policy's run
    assert measured_side(pairs) == "recording" and machines(pairs) == ["recording · NVIDIA H200"]
    badge = fidelity_badge(pairs, SPEC_NAME, "makespan_us")
    assert "sim vs recording" in badge and "NVIDIA H200" in badge
    # With a replay of the same spec loaded, the replay is the measured side, as `harness compare` chooses.
    replay = write_synthetic_replay(folders["sim"], tmp_path / "replay")
    with_replay = derive_fidelity(catalog(folders["sim"], folders["recording"], replay)).table
    assert set(with_replay["measured_by"]) == {"replay"}


def new_app(folders, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv(sources.DIRS_ENV, str(folders["root"]))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    return at.run()


def test_runs_page_lists_the_recording_under_its_backend(folders, monkeypatch):
    at = new_app(folders, monkeypatch)
    assert not at.exception, [e.value for e in at.exception]
    backend = at.multiselect(key="runs-filter-backend")
    assert "recording" in backend.options
    backend.set_value(["recording"]).run()
    shown = at.dataframe[0].value
    assert list(shown["backend"]) == ["recording"] and shown["timeline"].iloc[0].startswith("./timeline?run=")
    assert "backend=recording" in shown["compare"].iloc[0]


def test_compare_page_offers_the_recording_and_badges_the_sim_against_it(folders, monkeypatch):
    at = new_app(folders, monkeypatch, spec=SPEC_NAME, backend="sim")
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="compare-backend").options == ["recording", "sim"]
    assert any("sim vs recording" in s.value for s in at.success)
    at.selectbox(key="compare-backend").set_value("recording").run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any("simulator's alone" in c.value for c in at.caption)
    assert any("recording" in c.value for c in at.caption)  # "... on recording: bars are the mean ..."


def test_timeline_draws_the_recording_below_its_simulation(folders, monkeypatch):
    at = new_app(folders, monkeypatch)
    at.switch_page("views/timeline.py").run()
    sim = next(o for o in at.selectbox(key="timeline-run").options if o.startswith(f"{SPEC_NAME}:as_recorded:sim"))
    at.selectbox(key="timeline-run").set_value(sim).run()
    assert not at.exception, [e.value for e in at.exception]
    below = at.selectbox(key=f"timeline-second-{sim}").value
    assert below.startswith(f"{SPEC_NAME}:as_recorded:recording:r0")
    captions = " ".join(c.value for c in at.caption) + " ".join(w.value for w in at.warning)
    assert "(sim)" in captions and "(recording)" in captions
