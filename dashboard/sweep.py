"""A metric against one or two policy parameters (``params_json``)."""

from __future__ import annotations

import pandas as pd

from dashboard.catalog import Catalog
from dashboard.compare import ok_runs, run_metrics
from dashboard.params import expand_params, param_columns


def sweep_frame(catalog: Catalog, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Whole-run values of ``metric`` for ``runs`` with their ``param.*`` columns."""
    values = run_metrics(catalog, ok_runs(runs))
    values = values[values["metric"] == metric][["folder", "run_id", "value"]]
    return expand_params(runs).merge(values, on=["folder", "run_id"], how="inner")


def numeric_params(frame: pd.DataFrame) -> list[str]:
    return param_columns(frame, numeric_only=True)


def sweep_line(frame: pd.DataFrame, x: str, series: str = "policy") -> pd.DataFrame:
    """Mean, std and count of the metric per (series, x); rows without the parameter are dropped."""
    part = frame.dropna(subset=[x])
    out = part.groupby([series, x], sort=True)["value"].agg(mean="mean", std="std", n="count").reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def sweep_grid(frame: pd.DataFrame, x: str, y: str) -> pd.DataFrame:
    """Mean of the metric with ``y`` values as rows and ``x`` values as columns."""
    part = frame.dropna(subset=[x, y])
    return part.pivot_table(index=y, columns=x, values="value", aggfunc="mean").sort_index().sort_index(axis=1)
