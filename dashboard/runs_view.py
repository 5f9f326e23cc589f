"""The runs table: one row per run with its parameters spread out, and its filters."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from urllib.parse import urlencode

import pandas as pd

from dashboard.params import expand_params, param_columns

FILTER_COLUMNS = ("workload", "spec_name", "policy", "policy_label", "backend", "profile", "status")
SHOWN_COLUMNS = (
    "started_at",
    "workload",
    "spec_name",
    "policy_label",
    "policy",
    "params_json",
    "backend",
    "profile",
    "device_name",
    "repetition",
    "seed",
    "status",
    "n_ops",
    "wall_s",
    "run_id",
    "folder",
    "error",
)


def runs_table(runs: pd.DataFrame) -> pd.DataFrame:
    """Runs with ``param.*`` columns and ``started_at`` as a timestamp, newest first."""
    table = expand_params(runs)
    table["started_at"] = pd.to_datetime(table["started_at"], utc=True, errors="coerce")
    ordered = [c for c in SHOWN_COLUMNS if c in table.columns] + param_columns(table)
    return (
        table[ordered]
        .sort_values(["started_at", "run_id"], ascending=[False, True], kind="stable")
        .reset_index(drop=True)
    )


@dataclass(frozen=True)
class RunFilter:
    """Keep runs whose column values are among the chosen ones (an empty choice keeps all)."""

    choices: dict[str, list[str]] = field(default_factory=dict)
    params_contains: str = ""  # substring of params_json
    since: pd.Timestamp | None = None
    until: pd.Timestamp | None = None  # inclusive


def filter_runs(table: pd.DataFrame, flt: RunFilter) -> pd.DataFrame:
    keep = pd.Series(True, index=table.index)
    for column, values in flt.choices.items():
        if values:
            keep &= table[column].isin(values)
    if flt.params_contains:
        keep &= table["params_json"].str.contains(flt.params_contains, regex=False)
    if flt.since is not None:
        keep &= table["started_at"] >= flt.since
    if flt.until is not None:
        keep &= table["started_at"] <= flt.until
    return table[keep]


def day_range(first: dt.date, last: dt.date) -> tuple[pd.Timestamp, pd.Timestamp]:
    """UTC bounds covering whole days ``first`` .. ``last`` inclusive."""
    since = pd.Timestamp(first, tz="UTC")
    return since, pd.Timestamp(last, tz="UTC") + pd.Timedelta(days=1) - pd.Timedelta(microseconds=1)


METRIC_PREFIX = "metric."


def with_links(table: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``timeline`` and ``compare`` columns: links to the run's timeline and its spec's comparison (URL state)."""
    labels = runs.set_index(["folder", "run_id"])["run_label"]
    label = [labels.get((f, r), r) for f, r in zip(table["folder"], table["run_id"])]
    timeline = ["./timeline?" + urlencode({"run": lab}) for lab in label]
    compare = [
        "./compare?" + urlencode({"spec": s, "backend": b}) for s, b in zip(table["spec_name"], table["backend"])
    ]
    return table.assign(timeline=timeline, compare=compare)


def with_metrics(table: pd.DataFrame, metrics: pd.DataFrame, names: list[str]) -> pd.DataFrame:
    """One ``metric.<name>`` column per whole-run metric in ``names`` (NaN where a run lacks it)."""
    chosen = metrics[(metrics["item"] == -1) & metrics["metric"].isin(names)]
    if chosen.empty:
        return table
    wide = chosen.pivot_table(index=["folder", "run_id"], columns="metric", values="value", aggfunc="first")
    wide = wide.reindex(columns=[n for n in names if n in wide.columns])
    wide.columns = [METRIC_PREFIX + c for c in wide.columns]
    return table.merge(wide.reset_index(), on=["folder", "run_id"], how="left")
