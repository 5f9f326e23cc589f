"""Simulated against measured: every whole-run metric that both a sim and a replay run report.

The pairs are derived from the loaded runs with the same join ``harness
compare`` uses (:func:`fidelity.compare.fidelity_table`: runs of one
``spec_name`` and ``policy_label``, sim against replay, median over
repetitions), so they do not depend on a stored table; a ``fidelity`` table
that ``harness compare`` stored is shown as well.

Replays from different machines are never pooled: each GPU a spec was replayed
on (``device_name``) is joined with that spec's sim runs on its own, so an H100
and an H200 give two sets of pairs, not one median over both.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.catalog import Catalog
from fidelity.compare import FIDELITY_COLUMNS, fidelity_table
from harness.errors import InputError

SIM, MEASURED = "simulated", "measured"
STORED_TABLE = "fidelity"  # harness.table of the file `harness compare` writes
_SEP = " @ "


@dataclass(frozen=True)
class Derived:
    table: pd.DataFrame  # FIDELITY_COLUMNS; empty when no pair exists
    message: str = ""  # why there are no pairs, or why some machines' pairs are missing


def derive_fidelity(catalog: Catalog) -> Derived:
    """The fidelity table of every loaded run (run ids made unique per folder before the join)."""
    runs = catalog.runs
    if runs.empty or not {"sim", "replay"} <= set(runs["backend"]):
        return Derived(
            pd.DataFrame(columns=FIDELITY_COLUMNS),
            "no metric has both a simulated and a measured value: load `sim` and `replay` results of the same spec",
        )
    runs = runs.assign(run_id=runs["run_id"] + _SEP + runs["folder"])
    metrics = catalog.metrics[catalog.metrics["item"] == -1]
    metrics = metrics.assign(run_id=metrics["run_id"] + _SEP + metrics["folder"])
    sims = runs[runs["backend"] == "sim"]
    tables, problems = [], []
    replays = runs[runs["backend"] == "replay"].fillna({"device_name": ""})
    for (spec, _device), replay in replays.groupby(["spec_name", "device_name"], sort=True):
        mine = sims[sims["spec_name"] == spec]
        same_file = mine[mine["spec_sha256"].isin(replay["spec_sha256"])]
        mine = same_file if len(same_file) else mine
        for _profile, sim in mine.groupby("profile", sort=True):
            try:
                tables.append(fidelity_table(pd.concat([sim, replay], ignore_index=True), metrics))
            except InputError as err:
                problems.append(str(err))
    if not tables:
        return Derived(pd.DataFrame(columns=FIDELITY_COLUMNS), "; ".join(problems) or "no spec has sim and replay runs")
    return Derived(pd.concat(tables, ignore_index=True), "; ".join(problems))


def machines(pairs: pd.DataFrame) -> list[str]:
    """The GPUs the pairs' replays ran on, each a set of pairs of its own."""
    return sorted(pairs["device_name"].fillna("").unique()) if "device_name" in pairs.columns else []


def fidelity_headline(pairs: pd.DataFrame, metric: str = "makespan_us") -> str:
    """One line: how far the simulator is from the measurement on ``metric`` (else every metric), and rankings."""
    if pairs.empty:
        return "No simulated and measured pair to compare."
    chosen = pairs[pairs["metric"] == metric]
    label = f"`{metric}`" if len(chosen) else "the shown metrics"
    chosen = chosen if len(chosen) else pairs
    err = chosen["rel_error"].abs().dropna()
    if err.empty:
        return f"No finite error for {label}."
    ranked = chosen[(chosen["rank_simulated"] > 0) & (chosen["rank_measured"] > 0)]
    agree = ranked.groupby(["spec_name", "metric"]).apply(
        lambda g: bool((g["rank_simulated"] == g["rank_measured"]).all()), include_groups=False
    )
    signed = chosen["rel_error"].dropna()
    over = float((signed > 0).mean())
    lean = f"over-predicts in {over:.0%}" if over > 0.5 else f"under-predicts in {1 - over:.0%}"
    on = ", ".join(m for m in machines(chosen) if m) or "the loaded machines"
    return (
        f"On {on}: the simulator is within **{err.median():.1%} median, {err.max():.1%} worst** of the measurement "
        f"on {label} over {len(err)} (spec, policy) pair(s); it {lean} of them; "
        f"the policy ranking agrees in {int(agree.sum())} of {len(agree)} spec(s)."
    )


def signed_errors(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs with ``error_pct`` (signed: positive = the simulator predicts more than was measured), worst first."""
    out = pairs.assign(error_pct=100 * pairs["rel_error"], pair=pairs["spec_name"] + " · " + pairs["policy_label"])
    order = np.argsort(-out["error_pct"].abs().fillna(0).to_numpy(), kind="stable")
    return out.iloc[order].reset_index(drop=True)


def number_text(value: float) -> str:
    """Every digit of a measured value: ``1,281,151.68``, ``0.0123``."""
    if value is None or not np.isfinite(value):
        return "-"
    return f"{value:,.2f}" if abs(value) >= 1 else f"{value:.4g}"


def error_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per metric: how many pairs, median and worst absolute relative error, ranking disagreements."""
    columns = ["metric", "unit", "pairs", "median_abs_rel_error", "max_abs_rel_error", "rank_disagreements"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    frame = pairs.assign(
        abs_rel=pairs["rel_error"].abs(), rank_differs=pairs["rank_simulated"] != pairs["rank_measured"]
    )
    out = frame.groupby("metric", sort=True).agg(
        unit=("unit", "first"),
        pairs=("abs_rel", "size"),
        median_abs_rel_error=("abs_rel", "median"),
        max_abs_rel_error=("abs_rel", "max"),
        rank_disagreements=("rank_differs", "sum"),
    )
    return out.reset_index()[columns]


def within_band(pairs: pd.DataFrame, band_frac: float) -> pd.Series:
    """Pairs whose simulated value lies within ``band_frac`` of the measured one."""
    return pairs["rel_error"].abs() <= band_frac


def stored_fidelity(catalog: Catalog) -> pd.DataFrame | None:
    """The ``fidelity`` tables that ``harness compare`` stored among the loaded paths, if any."""
    return catalog.extra.get(STORED_TABLE)


def fidelity_badge(pairs: pd.DataFrame, spec: str, metric: str) -> str:
    """For a spec that was also replayed: how close the simulator came on ``metric``, per GPU; "" when not replayed."""
    mine = pairs[(pairs["spec_name"] == spec) & (pairs["metric"] == metric)] if len(pairs) else pairs
    parts = []
    for device, rows in mine.groupby(mine["device_name"].fillna(""), sort=True):
        err = rows["rel_error"].abs().dropna()
        if len(err):
            parts.append(
                f"{device or 'replay'}: within {err.median():.1%} median, {err.max():.1%} worst ({len(err)} policies)"
            )
    return f"Fidelity of `{metric}`, sim vs replay: " + "; ".join(parts) if parts else ""
