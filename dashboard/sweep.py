"""A metric against one or two policy parameters (``params_json``)."""

from __future__ import annotations

import math

import pandas as pd

from dashboard.catalog import Catalog
from dashboard.compare import ok_runs, run_metrics
from dashboard.params import PARAM_PREFIX, expand_params, param_columns


def sweep_frame(catalog: Catalog, runs: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Whole-run values of ``metric`` for ``runs`` with their ``param.*`` columns."""
    values = run_metrics(catalog, ok_runs(runs))
    values = values[values["metric"] == metric][["folder", "run_id", "value"]]
    return expand_params(runs).merge(values, on=["folder", "run_id"], how="inner")


def numeric_params(frame: pd.DataFrame) -> list[str]:
    return param_columns(frame, numeric_only=True)


SERIES = "configuration"


def _present(value) -> bool:
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def configurations(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    """Per run, its policy and every parameter that is not on an axis: ``adaptive (max_wait_us=3000)``.

    Runs that differ only in the swept parameters are one line; runs that differ in anything else (another policy,
    another fixed parameter) are separate lines, never averaged as if they were repetitions.
    """
    others = [c for c in param_columns(frame) if c not in axes]

    def label(row) -> str:
        fixed = [
            f"{c.removeprefix(PARAM_PREFIX)}={row[c]:g}"
            if isinstance(row[c], float)
            else f"{c.removeprefix(PARAM_PREFIX)}={row[c]}"
            for c in others
            if _present(row[c])
        ]
        return f"{row['policy']} ({', '.join(fixed)})" if fixed else str(row["policy"])

    return frame.apply(label, axis=1) if len(frame) else pd.Series([], dtype=str)


def sweep_line(frame: pd.DataFrame, x: str) -> pd.DataFrame:
    """Mean, min, max and count of the metric per (configuration, x) over repetitions; rows without ``x`` dropped."""
    part = frame.dropna(subset=[x])
    part = part.assign(**{SERIES: configurations(part, [x])})
    out = part.groupby([SERIES, x], sort=True)["value"].agg(mean="mean", min="min", max="max", std="std", n="count")
    out = out.reset_index()
    out["std"] = out["std"].fillna(0.0)
    return out


def sweep_grid(frame: pd.DataFrame, x: str, y: str, configuration: str | None = None) -> pd.DataFrame:
    """Mean over repetitions with ``y`` values as rows and ``x`` values as columns, for one configuration of the
    other parameters (the first, when not named; :func:`grid_configurations` lists them)."""
    part = frame.dropna(subset=[x, y])
    labels = configurations(part, [x, y])
    if len(part):
        part = part[labels == (configuration if configuration is not None else labels.iloc[0])]
    return part.pivot_table(index=y, columns=x, values="value", aggfunc="mean").sort_index().sort_index(axis=1)


def grid_configurations(frame: pd.DataFrame, x: str, y: str) -> list[str]:
    """The configurations (policy and fixed parameters) that have both ``x`` and ``y``: one heatmap each."""
    part = frame.dropna(subset=[x, y])
    return list(dict.fromkeys(configurations(part, [x, y])))
