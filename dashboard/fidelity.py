"""Simulated against measured: every whole-run metric that both a sim and a replay run report.

The pairs are derived from the loaded runs with the same join ``harness
compare`` uses (:func:`fidelity.compare.fidelity_table`: runs of one
``spec_name`` and ``policy_label``, sim against replay, median over
repetitions), so they do not depend on a stored table; a ``fidelity`` table
that ``harness compare`` stored is shown as well.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from fidelity.compare import FIDELITY_COLUMNS, fidelity_table
from harness.errors import InputError

from dashboard.catalog import Catalog

SIM, MEASURED = "simulated", "measured"
STORED_TABLE = "fidelity"  # harness.table of the file `harness compare` writes
_SEP = " @ "


@dataclass(frozen=True)
class Derived:
    table: pd.DataFrame  # FIDELITY_COLUMNS; empty when no pair exists
    message: str = ""  # why there are no pairs


def derive_fidelity(catalog: Catalog) -> Derived:
    """The fidelity table of every loaded run (run ids made unique per folder before the join)."""
    runs = catalog.runs
    if runs.empty or not {"sim", "replay"} <= set(runs["backend"]):
        return Derived(pd.DataFrame(columns=FIDELITY_COLUMNS), "no metric has both a simulated and a measured value: load `sim` and `replay` results of the same spec")
    runs = runs.assign(run_id=runs["run_id"] + _SEP + runs["folder"])
    metrics = catalog.metrics[catalog.metrics["item"] == -1]
    metrics = metrics.assign(run_id=metrics["run_id"] + _SEP + metrics["folder"])
    try:
        return Derived(fidelity_table(runs, metrics))
    except InputError as err:
        return Derived(pd.DataFrame(columns=FIDELITY_COLUMNS), str(err))


def error_summary(pairs: pd.DataFrame) -> pd.DataFrame:
    """Per metric: how many pairs, median and worst absolute relative error, ranking disagreements."""
    columns = ["metric", "unit", "pairs", "median_abs_rel_error", "max_abs_rel_error", "rank_disagreements"]
    if pairs.empty:
        return pd.DataFrame(columns=columns)
    frame = pairs.assign(abs_rel=pairs["rel_error"].abs(), rank_differs=pairs["rank_simulated"] != pairs["rank_measured"])
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
