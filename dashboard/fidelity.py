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
from fidelity.compare import FIDELITY_COLUMNS, MEASURED_BACKENDS, fidelity_table
from harness.errors import InputError

SIM, MEASURED = "simulated", "measured"
STORED_TABLE = "fidelity"  # harness.table of the file `harness compare` writes
_SEP = " @ "
DERIVED_COLUMNS = [*FIDELITY_COLUMNS, "measured_by"]  # measured_by: "replay" or "recording"


@dataclass(frozen=True)
class Derived:
    table: pd.DataFrame  # FIDELITY_COLUMNS; empty when no pair exists
    message: str = ""  # why there are no pairs, or why some machines' pairs are missing


def derive_fidelity(catalog: Catalog) -> Derived:
    """The fidelity table of every loaded run (run ids made unique per folder before the join).

    The measured side of a spec is its replay or, where the spec has no replay, its recording
    (``harness trace as-run``), as ``harness compare`` chooses it; ``measured_by`` says which.
    """
    runs = catalog.runs
    if runs.empty or "sim" not in set(runs["backend"]) or not set(MEASURED_BACKENDS) & set(runs["backend"]):
        return Derived(
            pd.DataFrame(columns=DERIVED_COLUMNS),
            "no metric has both a simulated and a measured value: load `sim` and `replay` (or `recording`) "
            "results of the same spec",
        )
    runs = runs.assign(run_id=runs["run_id"] + _SEP + runs["folder"])
    metrics = catalog.metrics[catalog.metrics["item"] == -1]
    metrics = metrics.assign(run_id=metrics["run_id"] + _SEP + metrics["folder"])
    sims = runs[runs["backend"] == "sim"]
    tables, problems = [], []
    measured = runs[runs["backend"].isin(MEASURED_BACKENDS)].fillna({"device_name": ""})
    for spec, of_spec in measured.groupby("spec_name", sort=True):
        backend = next(b for b in MEASURED_BACKENDS if b in set(of_spec["backend"]))  # a replay before a recording
        for _device, real in of_spec[of_spec["backend"] == backend].groupby("device_name", sort=True):
            mine = sims[sims["spec_name"] == spec]
            same_file = mine[mine["spec_sha256"].isin(real["spec_sha256"])]
            mine = same_file if len(same_file) else mine
            for _profile, sim in mine.groupby("profile", sort=True):
                try:
                    table = fidelity_table(pd.concat([sim, real], ignore_index=True), metrics)
                except InputError as err:
                    problems.append(str(err))
                    continue
                tables.append(table.assign(measured_by=backend))
    if not tables:
        return Derived(
            pd.DataFrame(columns=DERIVED_COLUMNS),
            "; ".join(problems) or "no spec has sim and replay (or recording) runs",
        )
    return Derived(pd.concat(tables, ignore_index=True), "; ".join(problems))


def machines(pairs: pd.DataFrame) -> list[str]:
    """What measured the pairs, each a set of pairs of its own: the GPU a replay ran on (``NVIDIA H200``), or
    a recording on a GPU (``recording · NVIDIA H200``)."""
    return sorted(measurement_labels(pairs).unique()) if "device_name" in pairs.columns else []


def measurement_labels(pairs: pd.DataFrame) -> pd.Series:
    """Per pair, what measured it: the replay's GPU, or ``recording · <GPU>`` for a recording as the measured side."""
    device = pairs["device_name"].fillna("") if "device_name" in pairs.columns else pd.Series("", pairs.index)
    if "measured_by" not in pairs.columns:
        return device
    recorded = pairs["measured_by"].fillna("replay") == "recording"
    return device.where(~recorded, "recording · " + device)


def measured_side(pairs: pd.DataFrame) -> str:
    """``replay``, ``recording`` or ``replay or recording``: what the pairs' measured values come from."""
    sides = set(pairs["measured_by"].fillna("replay")) if "measured_by" in pairs.columns else set()
    return " or ".join(s for s in MEASURED_BACKENDS if s in sides) or "replay"


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
    by = mine["measured_by"].fillna("replay") if "measured_by" in mine.columns else pd.Series("replay", mine.index)
    parts, sides = [], []
    for (side, device), rows in mine.groupby([by, mine["device_name"].fillna("")], sort=True):
        err = rows["rel_error"].abs().dropna()
        if len(err):
            sides.append(side)
            parts.append(
                f"{device or side}: within {err.median():.1%} median, {err.max():.1%} worst ({len(err)} policies)"
            )
    against = " and ".join(dict.fromkeys(sides))
    return f"Fidelity of `{metric}`, sim vs {against}: " + "; ".join(parts) if parts else ""
