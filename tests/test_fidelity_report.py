"""The fidelity report: what each workload declares, shown and checked, and nothing named by the report itself."""

from __future__ import annotations

import dataclasses
import math
import os
import shutil
import tomllib
from pathlib import Path

import pandas as pd
import pytest
import tomli_w

from fidelity.compare import fidelity_table, half_iqr, write_fidelity
from fidelity.report import link_drift_by_spec, main, render, side_value, workload_of, write_report
from harness.paths import REPO_ROOT, SPECS_DIR
from harness.runner import run_spec
from harness.spec import load_spec
from harness.workload import ErrorBound, Fidelity, FidelityCheck, registry
from sim import SimBackend

MEASUREMENTS = REPO_ROOT / "measurements"
GOLDEN = Path(__file__).parent / "data" / "fidelity_report"
PROVENANCE = {
    "name": "p",
    "provenance": {"gpu": "G", "driver": "D", "torch": "T", "date": "X"},
    "host": {"launch_us": 9.0},
}
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


def simulate(spec: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    loaded = load_spec(spec)
    devices = loaded.workload.devices(loaded.workload_params)
    results = run_spec(
        loaded, lambda s, rep: SimBackend(s.profile, devices, s.device_memory_bytes, seed=s.spec.seed + rep)
    )
    return results.runs, results.metrics[results.metrics["item"] == -1]


def with_replay(runs: pd.DataFrame, metrics: pd.DataFrame, scale: dict[str, float] | None = None) -> pd.DataFrame:
    """The fidelity table of the sim runs against a 'replay' that measured each policy's ``*_us`` times ``scale``."""
    rename = {rid: rid.replace(":sim:", ":replay:") for rid in runs["run_id"]}
    replay_runs = runs.assign(run_id=runs["run_id"].map(rename), backend="replay", device_name="NVIDIA H100 80GB HBM3")
    replay_metrics = metrics.assign(run_id=metrics["run_id"].map(rename))
    policy = replay_metrics["run_id"].map(replay_runs.set_index("run_id")["policy_label"])
    factor = policy.map(scale or {}).fillna(1.0)
    timed = replay_metrics["metric"].str.endswith("_us")
    replay_metrics.loc[timed, "value"] = replay_metrics.loc[timed, "value"] * factor[timed]
    both = pd.concat([runs, replay_runs], ignore_index=True).assign(folder="x")
    return fidelity_table(both, pd.concat([metrics, replay_metrics], ignore_index=True))


@pytest.fixture(scope="module")
def layer_table(tmp_path_factory) -> pd.DataFrame:
    spec = tmp_path_factory.mktemp("cmp") / "spec.toml"
    spec.write_text(SPEC)
    return with_replay(*simulate(spec), scale={"sync": 1 / 1.01, "prefetch": 1 / 0.93})


def test_the_table_names_each_specs_workload(layer_table):
    assert set(layer_table["workload"]) == {"layer_streaming"}
    assert workload_of(layer_table) == {"cmp": "layer_streaming"}


def test_report_shows_and_checks_what_layer_streaming_declares(layer_table):
    text = render(layer_table, PROVENANCE, "cmd")
    assert "## layer_streaming" in text and "G; driver D; torch T" in text and "launch_us=9.0" in text
    assert "| cmp | sync | makespan_us |" in text and "| cmp | prefetch | makespan_over_overlap_bound |" in text
    assert "makespan_us, worst |error| 7.00% (limit 5%): FAIL" in text
    assert "cmp: policies ranked the same by makespan_us in sim and replay: PASS" in text
    assert "| cmp | prefetch lowers the makespan against sync | holds:" in text
    assert "makespan / overlap bound" in text and "worst repetition" in text


def test_report_takes_the_checks_from_the_workload_not_from_itself(layer_table):
    declared = Fidelity(
        shown_metrics=("h2d_bytes",),
        error_bounds=(ErrorBound("h2d_bytes", 0.0, 0.0),),
        checks=(
            FidelityCheck(
                "sync is slower",
                ("sync", "prefetch"),
                lambda v: (v("sync", "makespan_us") > v("prefetch", "makespan_us"), "ok"),
            ),
            FidelityCheck("needs a policy the spec lacks", ("resident",), lambda v: (True, "never shown")),
        ),
    )
    workloads = {"layer_streaming": dataclasses.replace(registry()["layer_streaming"], fidelity=declared)}
    text = render(layer_table, None, "", workloads=workloads)
    assert "| cmp | sync | h2d_bytes |" in text and "makespan_us |" not in text
    assert "h2d_bytes, median |error| 0.00% (limit 0%): PASS" in text
    assert "| cmp | sync is slower | holds: ok | holds: ok |" in text and "never shown" not in text
    unknown = render(layer_table.assign(workload="not_a_workload"), None, "", workloads=workloads)
    assert "No registered workload 'not_a_workload'" in unknown and "| cmp | sync | makespan_us |" in unknown


def test_a_check_reads_the_median_and_the_measured_range(layer_table):
    rows = layer_table.assign(measured_max=layer_table["measured"] * 2)
    measured, simulated = side_value(rows, "measured"), side_value(rows, "simulated")
    assert measured("sync", "makespan_us", "max") == 2 * measured("sync", "makespan_us")
    assert simulated("sync", "makespan_us", "max") == simulated("sync", "makespan_us")
    with pytest.raises(KeyError):
        measured("resident", "makespan_us")


def test_a_check_on_a_missing_metric_says_so(layer_table):
    check = FidelityCheck("uses a metric nobody reports", ("sync",), lambda v: (True, f"{v('sync', 'no_such_us')}"))
    workloads = {
        "layer_streaming": dataclasses.replace(registry()["layer_streaming"], fidelity=Fidelity(checks=(check,)))
    }
    assert "| cmp | uses a metric nobody reports | missing ('sync', 'no_such_us') | missing" in render(
        layer_table, workloads=workloads
    )


@pytest.mark.parametrize("stem", ["batching_replay_c1", "batching_replay_c4"])
def test_continuous_batching_claims_hold_in_the_simulator(stem):
    table = with_replay(*simulate(SPECS_DIR / f"{stem}.toml"))  # the 'replay' side is the simulation itself
    text = render(table)
    rows = [line for line in text.splitlines() if line.startswith("| batching-replay") and "holds" in line]
    assert len(rows) == 2 and all(row.count("| holds:") == 2 for row in rows), text


def test_tables_stored_before_the_workload_column_stay_readable():
    old = pd.read_parquet(MEASUREMENTS / "2026-11-26_h100_workloads-one-gpu-thread-wake" / "fidelity.parquet")
    assert "workload" not in old.columns
    assert workload_of(old) == {
        "kv-backup-fidelity": "kv_backup",
        "offload-fidelity": "offload_coordinator",
        "pipeline-fidelity": "pipeline_forwarding",
    }
    text = render(old)
    assert "## kv_backup" in text and "## offload_coordinator" in text and "DOES NOT HOLD" not in text
    layer = MEASUREMENTS / "2026-11-23_h100_layer-streaming"
    table = pd.read_parquet(layer / "fidelity.parquet")
    assert set(workload_of(table, layer / "results", spec_dirs=()).values()) == {
        "layer_streaming"
    }  # from the results' runs


def test_report_of_a_folder_never_overwrites_and_fails_cleanly(tmp_path, capsys):
    assert main([str(tmp_path)]) == 2 and "no fidelity table here" in capsys.readouterr().err
    source = MEASUREMENTS / "2026-11-26_h100x2_workloads-two-gpus"
    shutil.copy(source / "fidelity.parquet", tmp_path / "fidelity.parquet")
    shutil.copy(source / "profile.toml", tmp_path / "profile.toml")
    out = write_report(tmp_path, command="cmd")
    assert out == tmp_path / "fidelity.md" and "## pipeline_forwarding" in out.read_text()
    assert main([str(tmp_path)]) == 2 and "already exists" in capsys.readouterr().err
    assert main([str(tmp_path), "--force", "--command", "again"]) == 0 and "`again`" in out.read_text()


def test_report_of_the_committed_two_gpu_measurement_is_the_golden_file():
    """tests/data/fidelity_report/workloads-two-gpus.md; UPDATE_GOLDEN=1 rewrites it (review the diff)."""
    folder = MEASUREMENTS / "2026-11-26_h100x2_workloads-two-gpus"
    profile = tomllib.loads((folder / "profile.toml").read_text())
    text = render(
        pd.read_parquet(folder / "fidelity.parquet"),
        profile,
        "fidelity/run_benchmark.sh OUT SPEC...",
        folder / "results",
    )
    golden = GOLDEN / "workloads-two-gpus.md"
    if os.environ.get("UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()


DRIFT_PROFILE = {
    **PROVENANCE,
    "link": {
        "drift": {
            "direction": "h2d",
            "host_memory": "pinned",
            "nbytes": 64 << 20,
            "spread_frac": 0.02,
            "probes": [
                {"label": "start", "elapsed_s": 0.0, "median_us": 1000.0, "spread_us": 1.0},
                {"label": "middle", "elapsed_s": 30.0, "median_us": 1010.0, "spread_us": 1.0},
                {"label": "end", "elapsed_s": 60.0, "median_us": 1020.0, "spread_us": 1.0},
            ],
        }
    },
}


def _probes(before_us: float, after_us: float, spec: str = "cmp") -> pd.DataFrame:
    return pd.DataFrame(
        [
            {"when": w, "spec_name": spec, "nbytes": 64 << 20, "median_us": us}
            for w, us in (("before", before_us), ("after", after_us))
        ]
    )


def test_each_error_sits_next_to_its_run_spread_and_link_drift(layer_table):
    # sync: error +1%, spread 1.5%: in noise; prefetch: error -7%, spread 0.5%, link +2% then +5%: not.
    spread = layer_table["measured"] * layer_table["policy_label"].map({"sync": 0.015, "prefetch": 0.005})
    table = layer_table.assign(measured_spread=spread)
    text = render(table, DRIFT_PROFILE, "cmd", probes=_probes(1030.2, 1060.5))
    sync = next(line for line in text.splitlines() if line.startswith("| cmp | sync | makespan_us |"))
    prefetch = next(line for line in text.splitlines() if line.startswith("| cmp | prefetch | makespan_us |"))
    assert sync.endswith("| +1.00% | ±1.50% | +2.00% → +5.00% | yes |"), sync
    assert prefetch.endswith("| -7.00% | ±0.50% | +2.00% → +5.00% | no |"), prefetch
    assert "- makespan_us: 1 of 2 errors inside their noise" in text
    assert "host link drift during calibration: 2.00% (h2d pinned 64 MiB, µs: start 1000.0" in text
    assert "link probes around the runs (link_probes.csv): 2, the same copy in 1030.2-1060.5 µs" in text
    # Without probes, the calibration's own drift is the link's noise.
    alone = render(table, DRIFT_PROFILE, "cmd")
    assert "| ±0.50% | 2.00% (calibration) | no |" in alone and "| ±1.50% | 2.00% (calibration) | yes |" in alone


def test_link_drift_is_against_the_calibrations_reference_copy():
    drifts = link_drift_by_spec(["cmp", "other"], DRIFT_PROFILE, _probes(1010.0, 909.0))
    assert drifts["cmp"].changes == pytest.approx((0.0, -0.1))
    assert drifts["cmp"].size == pytest.approx(0.1) and drifts["cmp"].cell() == "+0.00% → -10.00%"
    assert drifts["other"].changes == () and drifts["other"].size == 0.02
    assert math.isnan(link_drift_by_spec(["cmp"], PROVENANCE, None)["cmp"].size)


def test_report_of_a_folder_reads_its_link_probes(tmp_path, layer_table, capsys):
    write_fidelity(tmp_path / "fidelity.parquet", layer_table)
    (tmp_path / "profile.toml").write_text(tomli_w.dumps(DRIFT_PROFILE))
    _probes(1015.0, 1030.0).to_csv(tmp_path / "link_probes.csv", index=False)
    assert "+0.50% → +1.98%" in write_report(tmp_path).read_text()
    (tmp_path / "link_probes.csv").write_text("when,median_us\nbefore,1.0\n")
    assert main([str(tmp_path), "--force"]) == 2
    assert "link_probes.csv: header: needs the columns spec_name, nbytes, median_us" in capsys.readouterr().err


def test_the_table_holds_the_run_to_run_spread(layer_table):
    assert "measured_spread" in layer_table.columns
    assert (layer_table["measured_spread"] == 0).all()  # the 'replay' repeats the simulation: no spread
    assert half_iqr(pd.Series([1.0, 2.0, 3.0, 4.0, 100.0])) == pytest.approx(1.0)  # an outlier moves it little
