"""The simulator against the KV-backup, offload and pipeline replays committed in measurements/ (lent H100s).

Re-simulates each fidelity spec with the profile calibrated in the same call as its
replay and joins the result with the committed replay runs: the simulated medians must
be what the committed fidelity table holds (a change to the model or to how a profile is
read shows here), the headline metrics within the errors measured, and every claim the
workloads declare (``workloads/<name>/fidelity.py``) must hold on both sides.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from fidelity.compare import fidelity_table
from fidelity.report import check_rows
from harness.paths import REPO_ROOT, SPECS_DIR
from harness.results import read_results
from harness.runner import run_spec
from harness.spec import load_spec
from harness.workload import registry
from sim import SimBackend

MEASUREMENTS = REPO_ROOT / "measurements"
ONE_GPU, TWO_GPUS = "2026-11-26_h100_workloads-one-gpu", "2026-11-26_h100x2_workloads-two-gpus"
CASES = [
    (ONE_GPU, "kv_backup_fidelity"),
    (ONE_GPU, "offload_fidelity"),
    (ONE_GPU, "pipeline_fidelity"),
    (TWO_GPUS, "kv_backup_tp2_fidelity"),
    (TWO_GPUS, "pipeline_2gpu_fidelity"),
]
HEADLINE = {"tpot_us": 0.05, "throughput_mibps": 0.02, "gpu_share": 0.01}  # largest |error| measured: 3.6%, 1.1%, 0.4%
CHECKS = {
    ONE_GPU: 4,
    TWO_GPUS: 3,
}  # claims that apply: kv 1 (no rank-only policy on one GPU), offload 2, pipeline 1; kv 2, pipeline 1


def simulate(folder: str, stem: str, tmp_path: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The committed spec pointed at the call's profile (the only line the benchmark changes), simulated."""
    profile = (MEASUREMENTS / folder / "profile.toml").resolve()
    text = (SPECS_DIR / f"{stem}.toml").read_text()
    lines = [f'profile = "{profile}"' if line.startswith("profile = ") else line for line in text.splitlines()]
    spec = tmp_path / f"{stem}.toml"
    spec.write_text("\n".join(lines) + "\n")
    loaded = load_spec(spec)
    devices = loaded.workload.devices(loaded.workload_params)
    results = run_spec(
        loaded, lambda s, rep: SimBackend(s.profile, devices, s.device_memory_bytes, seed=s.spec.seed + rep)
    )
    return results.runs, results.metrics[results.metrics["item"] == -1]


@pytest.fixture(scope="module")
def tables(tmp_path_factory) -> dict[str, pd.DataFrame]:
    out: dict[str, list] = {}
    for folder, stem in CASES:
        sim_runs, sim_metrics = simulate(folder, stem, tmp_path_factory.mktemp(stem))
        replay = read_results(MEASUREMENTS / folder / "results" / f"{stem}-replay")
        # The replay ran from the same spec with the profile line naming the call's path: the same spec.
        sim_runs = sim_runs.assign(spec_sha256=replay.runs["spec_sha256"].iloc[0], folder="sim")
        table = fidelity_table(
            pd.concat([sim_runs, replay.runs.assign(folder=str(replay.path))], ignore_index=True),
            pd.concat([sim_metrics, replay.metrics[replay.metrics["item"] == -1]], ignore_index=True),
        )
        out.setdefault(folder, []).append(table)
    return {folder: pd.concat(parts, ignore_index=True) for folder, parts in out.items()}


@pytest.mark.parametrize("folder", [ONE_GPU, TWO_GPUS])
def test_committed_table_is_what_compare_makes_of_the_committed_runs(tables, folder):
    committed = pd.read_parquet(MEASUREMENTS / folder / "fidelity.parquet").set_index(
        ["spec_name", "policy_label", "metric"]
    )
    now = tables[folder].set_index(["spec_name", "policy_label", "metric"])
    assert set(now.index) == set(committed.index)
    both = now.merge(committed, left_index=True, right_index=True, suffixes=("", "_committed"))
    pd.testing.assert_series_equal(both["measured"], both["measured_committed"], check_names=False)
    pd.testing.assert_series_equal(both["simulated"], both["simulated_committed"], check_names=False, rtol=1e-9)


@pytest.mark.parametrize("folder", [ONE_GPU, TWO_GPUS])
def test_headline_metrics_within_the_measured_errors(tables, folder):
    table = tables[folder]
    for metric, limit in HEADLINE.items():
        rows = table[table["metric"] == metric]
        assert (rows["n_replay"] >= 5).all()
        assert (rows["rel_error"].abs() <= limit).all(), rows[["spec_name", "policy_label", "rel_error"]]


@pytest.mark.parametrize("folder", [ONE_GPU, TWO_GPUS])
def test_every_declared_claim_holds_in_sim_and_on_the_gpu(tables, folder):
    table = tables[folder]
    rows = []
    for name, workload in registry().items():
        rows += check_rows(table[table["workload"] == name], workload.fidelity)[2:]
    assert len(rows) == CHECKS[folder] and all(row.count("| holds:") == 2 for row in rows), rows
