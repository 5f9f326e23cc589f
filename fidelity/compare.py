"""Fidelity: how well the simulator predicted what the replay measured (``harness compare``).

Results folders of the same spec, some from ``harness sim`` and some from
``harness replay``, are joined on ``(spec_name, policy_label)``. Repetitions are
aggregated by their median (failed runs are left out). For every run-level
metric both sides report, the fidelity table holds one row::

    spec_name, policy_label, metric, unit, simulated, measured, measured_min,
    measured_max, measured_spread, rel_error, n_sim, n_replay, rank_simulated,
    rank_measured, profile, device_name, workload

``measured_spread`` is the run-to-run spread of the measured repetitions, half
their interquartile range, in the metric's unit (tables stored before it lack
the column). ``rel_error = (simulated - measured) / measured`` (0 when both are 0, NaN when
only the measurement is 0). ``rank_*`` rank the spec's policies by the metric
(1 = smallest; 0 where the metric is NaN, i.e. not defined for that policy), so a
ranking disagreement shows as differing ranks. ``workload`` is the spec's
workload (the runs' ``workload``), so the report (:mod:`fidelity.report`) finds
what that workload declares; tables stored before it was added lack the column
and stay readable (:func:`fidelity.report.workload_of` falls back to the results folders). The
table is written as one Parquet file with the results' metadata
(``harness.table = "fidelity"``), atomically.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import InputError
from harness.results import ResultsError, read_results, to_table

FIDELITY_SCHEMA = pa.schema(
    [
        ("spec_name", pa.string()),
        ("policy_label", pa.string()),
        ("metric", pa.string()),
        ("unit", pa.string()),
        ("simulated", pa.float64()),  # median over the sim runs' repetitions
        ("measured", pa.float64()),  # median over the replay runs' repetitions
        ("measured_min", pa.float64()),
        ("measured_max", pa.float64()),
        ("measured_spread", pa.float64()),  # half the interquartile range of the measured repetitions
        ("rel_error", pa.float64()),  # (simulated - measured) / measured
        ("n_sim", pa.int64()),
        ("n_replay", pa.int64()),
        ("rank_simulated", pa.int64()),  # rank of the policy within its spec by this metric (1 = smallest)
        ("rank_measured", pa.int64()),
        ("profile", pa.string()),  # the sim runs' hardware profile
        ("device_name", pa.string()),  # the GPU the replay ran on
        ("workload", pa.string()),  # the spec's workload (absent from tables stored before it was added)
    ]
)
FIDELITY_COLUMNS = FIDELITY_SCHEMA.names


def load_many(paths: Sequence[Path]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Runs and run-level metrics of several results folders, each run tagged with its folder."""
    seen: set[Path] = set()
    runs, metrics = [], []
    for path in paths:
        path = Path(path)
        if path.resolve() in seen:
            raise InputError(path, "", "results folder given twice")
        seen.add(path.resolve())
        try:
            res = read_results(path)
        except ResultsError as err:
            raise InputError(path, "", str(err).removeprefix(f"{path}: ")) from None
        r = res.runs.copy()
        r["folder"] = str(path)
        runs.append(r)
        metrics.append(res.metrics[res.metrics["item"] == -1])
    all_runs = pd.concat(runs, ignore_index=True)
    dup = all_runs["run_id"].duplicated(keep=False)
    if dup.any():
        first = all_runs[dup].iloc[0]
        folders = sorted(set(all_runs.loc[all_runs["run_id"] == first["run_id"], "folder"]))
        raise InputError(
            first["folder"], f"run {first['run_id']!r}", f"appears in more than one folder ({', '.join(folders)})"
        )
    return all_runs, pd.concat(metrics, ignore_index=True)


def _check_same_spec(runs: pd.DataFrame) -> None:
    for spec, rows in runs.groupby("spec_name"):
        hashes = rows.drop_duplicates("spec_sha256")
        if len(hashes) > 1:
            detail = "; ".join(f"{r.folder}: {r.spec_sha256[:12]}" for r in hashes.itertuples())
            raise InputError(
                hashes.iloc[1]["folder"], f"spec {spec!r}", f"the runs were made from different spec files ({detail})"
            )


MEASURED_BACKENDS = ("replay", "recording")  # what a simulation is compared with, in this order of preference


def fidelity_table(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    """Join sim runs with measured runs of the same spec and policy; one row per (spec, policy, metric).

    The measured side is the replay, or, among results without a replay, a recording
    (``harness trace as-run``: what the profiler recorded of the real program).
    """
    backends = set(runs["backend"])
    measured = next((b for b in MEASURED_BACKENDS if b in backends), "replay")
    for needed in ("sim", measured):
        if needed not in backends:
            raise InputError(
                ", ".join(sorted(set(runs["folder"]))),
                "",
                f"no {needed} runs among these results; compare needs sim and replay (or recording) runs of a spec",
            )
    _check_same_spec(runs)
    ok = runs[runs["status"] == "ok"]
    m = metrics.merge(ok[["run_id", "spec_name", "policy_label", "backend", "profile", "device_name"]], on="run_id")
    keys = ["spec_name", "policy_label", "metric", "unit"]
    agg = (
        m.groupby(keys + ["backend"], sort=False)["value"]
        .agg(["median", "min", "max", "count", half_iqr])
        .reset_index()
    )
    sim = agg[agg["backend"] == "sim"].drop(columns="backend")
    rep = agg[agg["backend"] == measured].drop(columns="backend")
    joined = sim.merge(rep, on=keys, suffixes=("_sim", "_replay"))
    if joined.empty:
        pairs_sim = sorted(
            set(zip(ok.loc[ok["backend"] == "sim", "spec_name"], ok.loc[ok["backend"] == "sim", "policy_label"]))
        )
        pairs_rep = sorted(
            set(zip(ok.loc[ok["backend"] == measured, "spec_name"], ok.loc[ok["backend"] == measured, "policy_label"]))
        )
        raise InputError(
            ", ".join(sorted(set(runs["folder"]))),
            "",
            f"no (spec, policy) has successful runs on both backends; sim has {pairs_sim}, replay has {pairs_rep}",
        )
    out = pd.DataFrame(
        {
            "spec_name": joined["spec_name"],
            "policy_label": joined["policy_label"],
            "metric": joined["metric"],
            "unit": joined["unit"],
            "simulated": joined["median_sim"].astype(float),
            "measured": joined["median_replay"].astype(float),
            "measured_min": joined["min_replay"].astype(float),
            "measured_max": joined["max_replay"].astype(float),
            "measured_spread": joined["half_iqr_replay"].astype(float),
            "n_sim": joined["count_sim"].astype("int64"),
            "n_replay": joined["count_replay"].astype("int64"),
        }
    )
    out["rel_error"] = relative_error(out["simulated"].to_numpy(), out["measured"].to_numpy())
    group = out.groupby(["spec_name", "metric"], sort=False)
    # A metric a policy has no value for (NaN: no GPU-routed block has no GPU latency, say) is not ranked: 0.
    out["rank_simulated"] = group["simulated"].rank(method="min").fillna(0).astype("int64")
    out["rank_measured"] = group["measured"].rank(method="min").fillna(0).astype("int64")
    names = ok.groupby(["spec_name", "backend"])
    profile = names["profile"].first().xs("sim", level="backend")
    device = names["device_name"].first().xs(measured, level="backend")
    out["profile"] = out["spec_name"].map(profile).fillna("")
    out["device_name"] = out["spec_name"].map(device).fillna("")
    out["workload"] = out["spec_name"].map(ok.groupby("spec_name")["workload"].first()).fillna("")
    return out[FIDELITY_COLUMNS].reset_index(drop=True)


def half_iqr(values: pd.Series) -> float:
    """Half the interquartile range (linear quantiles): the run-to-run spread of repetitions, 0 for one."""
    return float(values.quantile(0.75) - values.quantile(0.25)) / 2


def relative_error(simulated: np.ndarray, measured: np.ndarray) -> np.ndarray:
    simulated = np.asarray(simulated, dtype=float)
    measured = np.asarray(measured, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        err = (simulated - measured) / measured
    err = np.where((measured == 0) & (simulated == 0), 0.0, err)
    return np.where((measured == 0) & (simulated != 0), np.nan, err)


def write_fidelity(path: Path, table: pd.DataFrame) -> Path:
    """Write the fidelity table as Parquet, atomically; refuse to overwrite."""
    path = Path(path)
    if path.exists():
        raise FileExistsError(f"{path} already exists; results are never overwritten")
    path.parent.mkdir(parents=True, exist_ok=True)
    arrow = to_table("fidelity", table, FIDELITY_SCHEMA)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    try:
        pq.write_table(arrow, tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path


def makespan_summary(table: pd.DataFrame, metric: str = "makespan_us") -> dict:
    """Fidelity criteria on one metric: median and worst |error|, and whether every spec ranks its policies alike."""
    rows = table[table["metric"] == metric]
    errors = rows["rel_error"].abs()
    ranks_agree = {
        spec: bool((g["rank_simulated"] == g["rank_measured"]).all())
        for spec, g in rows.groupby("spec_name", sort=False)
    }
    return {
        "rows": len(rows),
        "median_abs_error": float(errors.median()) if len(rows) else float("nan"),
        "max_abs_error": float(errors.max()) if len(rows) else float("nan"),
        "ranks_agree": ranks_agree,
    }
