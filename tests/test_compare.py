"""`harness compare`: joining sim and replay runs, the fidelity table, and its errors."""

from __future__ import annotations

from pathlib import Path

import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from fidelity.compare import (
    FIDELITY_COLUMNS,
    fidelity_table,
    load_many,
    makespan_summary,
    relative_error,
)
from harness.cli import app
from harness.errors import InputError
from harness.results import read_results, to_table, write_results

runner = CliRunner()

SPEC = """
name = "cmp"
profile = "h100-sxm-pcie5"
repetitions = 2
[workload]
kind = "layer_streaming"
segments = 4
param_bytes = 33554432
compute_us = 700.0
[[policies]]
name = "sync"
[[policies]]
name = "prefetch"
"""


@pytest.fixture(scope="module")
def sim_folder(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cmp")
    spec = root / "spec.toml"
    spec.write_text(SPEC)
    out = root / "sim"
    result = runner.invoke(app, ["sim", str(spec), "--out", str(out)])
    assert result.exit_code == 0, result.output
    return out


def fake_replay(
    sim_folder: Path, out: Path, scale: dict[str, list[float]], fail: set[str] = frozenset(), sha: str | None = None
) -> Path:
    """A 'replay' folder made from the sim one: each policy's makespan scaled per repetition."""
    res = read_results(sim_folder)
    runs = res.runs.copy()
    rename = {rid: rid.replace(":sim:", ":replay:") for rid in runs["run_id"]}
    runs["run_id"] = runs["run_id"].map(rename)
    runs["backend"] = "replay"
    runs["device_name"] = "NVIDIA H100 80GB HBM3"
    if sha:
        runs["spec_sha256"] = sha
    for i, run in runs.iterrows():
        if run["policy_label"] in fail:
            runs.loc[i, ["status", "error"]] = ["failed", "RuntimeError: boom"]
    metrics = res.metrics.copy()
    metrics["run_id"] = metrics["run_id"].map(rename)
    for label, factors in scale.items():
        for rep, factor in enumerate(factors):
            rid = runs.loc[(runs["policy_label"] == label) & (runs["repetition"] == rep), "run_id"].iloc[0]
            mask = (metrics["run_id"] == rid) & (metrics["metric"] == "makespan_us")
            metrics.loc[mask, "value"] *= factor
    ops = res.ops.copy()
    ops["run_id"] = ops["run_id"].map(rename)
    tables = {"runs": to_table("runs", runs), "ops": to_table("ops", ops), "metrics": to_table("metrics", metrics)}
    return write_results(out, tables)


def test_fidelity_rows_join_sim_and_replay_and_take_medians(sim_folder, tmp_path):
    replay = fake_replay(sim_folder, tmp_path / "replay", {"sync": [1.10, 1.30], "prefetch": [0.9, 0.9]})
    table = fidelity_table(*load_many([sim_folder, replay]))
    assert list(table.columns) == FIDELITY_COLUMNS
    mk = table[table["metric"] == "makespan_us"].set_index("policy_label")
    sim_sync = mk.loc["sync", "simulated"]
    assert mk.loc["sync", "measured"] == pytest.approx(sim_sync * 1.2)  # median of two repetitions
    assert mk.loc["sync", "measured_min"] == pytest.approx(sim_sync * 1.1)
    assert mk.loc["sync", "rel_error"] == pytest.approx(1 / 1.2 - 1)
    assert mk.loc["prefetch", "rel_error"] == pytest.approx(1 / 0.9 - 1)
    assert (mk["n_sim"] == 2).all() and (mk["n_replay"] == 2).all()
    assert mk.loc["sync", "rank_simulated"] == mk.loc["sync", "rank_measured"] == 2
    assert set(mk["device_name"]) == {"NVIDIA H100 80GB HBM3"} and set(mk["profile"]) == {"h100-sxm-pcie5"}
    # Untouched metrics agree exactly.
    other = table[table["metric"] == "h2d_bytes"]
    assert (other["rel_error"] == 0).all()
    summary = makespan_summary(table)
    assert summary["ranks_agree"] == {"cmp": True}
    assert summary["max_abs_error"] == pytest.approx(1 - 1 / 1.2)


def test_ranking_disagreement_is_visible(sim_folder, tmp_path):
    # Replay makes prefetch slower than sync: the ranks flip.
    replay = fake_replay(sim_folder, tmp_path / "replay", {"prefetch": [3.0, 3.0]})
    summary = makespan_summary(fidelity_table(*load_many([sim_folder, replay])))
    assert summary["ranks_agree"] == {"cmp": False}


def test_failed_replay_runs_are_left_out(sim_folder, tmp_path):
    replay = fake_replay(sim_folder, tmp_path / "replay", {}, fail={"prefetch"})
    table = fidelity_table(*load_many([sim_folder, replay]))
    assert set(table["policy_label"]) == {"sync"}


def test_relative_error_edge_cases():
    err = relative_error([0.0, 1.0, 2.0], [0.0, 0.0, 1.0])
    assert err[0] == 0.0 and err[1] != err[1] and err[2] == 1.0


@pytest.mark.parametrize(
    "case, expected",
    [
        ("only sim", "no replay runs among these results"),
        ("twice", "results folder given twice"),
        ("other spec file", "the runs were made from different spec files"),
        ("not results", "not a results folder"),
        ("all failed", "no (spec, policy) has successful runs on both backends"),
    ],
)
def test_compare_errors_name_the_problem(sim_folder, tmp_path, case, expected):
    if case == "only sim":
        paths = [sim_folder]
    elif case == "twice":
        paths = [sim_folder, sim_folder]
    elif case == "other spec file":
        paths = [sim_folder, fake_replay(sim_folder, tmp_path / "r", {}, sha="0" * 64)]
    elif case == "not results":
        paths = [sim_folder, tmp_path / "missing"]
    else:
        paths = [sim_folder, fake_replay(sim_folder, tmp_path / "r", {}, fail={"sync", "prefetch"})]
    with pytest.raises(InputError, match=expected.replace("(", r"\(").replace(")", r"\)")):
        fidelity_table(*load_many(paths))
    out = tmp_path / "f.parquet"
    result = runner.invoke(app, ["compare", *map(str, paths), "--out", str(out)])
    assert result.exit_code == 2 and expected in " ".join(result.output.split())
    assert not out.exists()


def test_cli_compare_writes_the_table_atomically_and_never_overwrites(sim_folder, tmp_path):
    replay = fake_replay(sim_folder, tmp_path / "replay", {"sync": [1.02, 1.02]})
    out = tmp_path / "fid" / "fidelity.parquet"
    result = runner.invoke(app, ["compare", str(sim_folder), str(replay), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "-1.96%" in result.output and "(26 rows)" in result.output
    table = pq.read_table(out)
    assert table.schema.metadata[b"harness.table"] == b"fidelity"
    assert table.schema.metadata[b"harness.schema_version"] == b"1"
    assert list(out.parent.iterdir()) == [out]  # no partial file left behind
    frame = table.to_pandas()
    assert len(frame) == len(frame.drop_duplicates(["spec_name", "policy_label", "metric"]))
    again = runner.invoke(app, ["compare", str(sim_folder), str(replay), "--out", str(out)])
    assert again.exit_code == 2 and "already exists" in again.output


def test_a_metric_undefined_for_a_policy_is_left_unranked(sim_folder, tmp_path):
    # A NaN metric (offload's GPU latency for cpu_only, say) must not break the table: rank 0, error NaN.
    replay = fake_replay(sim_folder, tmp_path / "replay", {})
    runs, metrics = load_many([sim_folder, replay])
    sync_runs = runs.loc[runs["policy_label"] == "sync", "run_id"]
    metrics.loc[metrics["run_id"].isin(sync_runs) & (metrics["metric"] == "makespan_us"), "value"] = float("nan")
    mk = fidelity_table(runs, metrics).query("metric == 'makespan_us'").set_index("policy_label")
    assert mk.loc["sync", "rank_simulated"] == mk.loc["sync", "rank_measured"] == 0
    assert mk.loc["prefetch", "rank_simulated"] == 1
    assert mk.loc["sync", "rel_error"] != mk.loc["sync", "rel_error"]
