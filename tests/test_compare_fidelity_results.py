"""The simulator against the layer-streaming replays committed in measurements/ (the lent H100, 2026-11-23).

Re-simulates every fidelity spec with the shipped measured profile and joins the
result with the committed replay runs: a change to the simulator's model (or to
the profile) that worsens its prediction of the real GPU fails here. The bounds
are the ones layer streaming declares (``workloads/layer_streaming/fidelity.py``).
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fidelity.compare import fidelity_table, makespan_summary
from harness.paths import REPO_ROOT, SPECS_DIR
from harness.results import read_results
from harness.runner import run_spec
from harness.spec import load_spec
from harness.workload import registry
from sim import SimBackend

FIDELITY = REPO_ROOT / "measurements" / "2026-11-23_h100_layer-streaming"
SPECS = sorted(SPECS_DIR.glob("fidelity_*.toml"))


def simulate(spec_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    loaded = load_spec(spec_path)
    results = run_spec(
        loaded, lambda spec, rep: SimBackend(spec.profile, 1, spec.device_memory_bytes, seed=spec.spec.seed + rep)
    )
    runs = results.runs.assign(folder="sim")
    return runs, results.metrics[results.metrics["item"] == -1]


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    runs, metrics = [], []
    for spec in SPECS:
        sim_runs, sim_metrics = simulate(spec)
        replay = read_results(FIDELITY / "results" / f"{spec.stem}-replay")
        # The replay ran this spec; its comments have changed since, its inputs have not (the
        # simulated medians must still be the committed table's, below).
        sim_runs = sim_runs.assign(spec_sha256=replay.runs["spec_sha256"].iloc[0])
        runs += [sim_runs, replay.runs.assign(folder=str(replay.path))]
        metrics += [sim_metrics, replay.metrics[replay.metrics["item"] == -1]]
    return fidelity_table(pd.concat(runs, ignore_index=True), pd.concat(metrics, ignore_index=True))


def test_there_are_at_least_three_shapes_with_five_repetitions(table):
    mk = table[table["metric"] == "makespan_us"]
    assert mk["spec_name"].nunique() >= 3
    assert set(mk["policy_label"]) == {"sync", "prefetch"}
    assert (mk["n_replay"] >= 5).all()


def test_simulator_predicts_the_measured_makespans_within_the_declared_bounds(table):
    fidelity = registry()["layer_streaming"].fidelity
    (bound,) = fidelity.error_bounds
    summary = makespan_summary(table, bound.metric)
    assert summary["median_abs_error"] <= bound.median_limit, summary
    assert summary["max_abs_error"] <= bound.worst_limit, summary
    assert fidelity.ranked_metrics == (bound.metric,) and all(summary["ranks_agree"].values()), summary


def test_committed_fidelity_table_is_what_compare_makes_of_the_committed_results(table):
    committed = pd.read_parquet(FIDELITY / "fidelity.parquet")
    mk = committed[committed["metric"] == "makespan_us"].set_index(["spec_name", "policy_label"])
    now = table[table["metric"] == "makespan_us"].set_index(["spec_name", "policy_label"])
    assert now["measured"].to_dict() == pytest.approx(mk["measured"].to_dict())
    assert now["simulated"].to_dict() == pytest.approx(mk["simulated"].to_dict(), rel=1e-9)
