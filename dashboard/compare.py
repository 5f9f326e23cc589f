"""Policies side by side: run-level metric summaries, change against a baseline, distributions."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from dashboard.catalog import RUN_KEY, Catalog
from harness.verdict import VERDICT_FILE, HeadlineMetric, format_value, guess_better, metric_verdict

RUN_LEVEL = -1  # metrics.item of a whole-run metric
LATENCY_SUFFIX = "_us"
# Offered first among the distributions (other *_us columns may be time stamps such as arrival_us).
LATENCY_WORDS = ("latency", "ttft", "tpot", "e2e", "segment_time", "queue", "wait", "time_us")


def ok_runs(runs: pd.DataFrame) -> pd.DataFrame:
    return runs[runs["status"] == "ok"]


def run_metrics(catalog: Catalog, runs: pd.DataFrame, run_level: bool = True) -> pd.DataFrame:
    """Metric rows of ``runs`` (whole-run rows, or per-item rows) with the run's columns joined on."""
    metrics = catalog.metrics
    metrics = metrics[metrics["item"] == RUN_LEVEL] if run_level else metrics[metrics["item"] >= 0]
    keep = [*RUN_KEY, "spec_name", "workload", "policy", "policy_label", "params_json", "backend", "repetition"]
    return metrics.merge(runs[keep], on=RUN_KEY, how="inner")


def metric_summary(
    frame: pd.DataFrame, group: str = "policy_label", metric_order: list[str] | None = None
) -> pd.DataFrame:
    """Per (group, metric): mean, std, min, max over repetitions, and the number of runs.

    Policies keep the order in which they first appear; metrics follow ``metric_order`` when given.
    """
    summary = (
        frame.groupby([group, "metric"], sort=False)["value"]
        .agg(mean="mean", std="std", min="min", max="max", n="count")
        .reset_index()
    )
    summary["std"] = summary["std"].fillna(0.0)
    orders = {
        group: list(dict.fromkeys(frame[group])),
        "metric": list(dict.fromkeys([*(metric_order or []), *frame["metric"]])),
    }
    for column, order in orders.items():
        summary[column] = pd.Categorical(summary[column], categories=order, ordered=True)
    return (
        summary.sort_values([group, "metric"], kind="stable").reset_index(drop=True).astype({group: str, "metric": str})
    )


def relative_change(summary: pd.DataFrame, baseline: str, group: str = "policy_label") -> pd.DataFrame:
    """``mean / baseline mean - 1`` per metric (NaN where the baseline is 0 or absent)."""
    base = summary[summary[group] == baseline].set_index("metric")["mean"]
    out = summary[[group, "metric", "mean"]].copy()
    base_mean = out["metric"].map(base)
    out["baseline_mean"] = base_mean
    with np.errstate(divide="ignore", invalid="ignore"):
        out["relative_change"] = np.where(base_mean.abs() > 0, out["mean"] / base_mean - 1.0, np.nan)
    return out


@dataclass(frozen=True)
class DistributionSource:
    """Where a latency distribution comes from: per-item metric rows, or a column of a workload table."""

    table: str  # "metrics" or the extra table's name
    column: str  # the metric name, or the table's column

    @property
    def label(self) -> str:
        return f"{self.column} (per item)" if self.table == "metrics" else f"{self.table}.{self.column}"


def distribution_sources(catalog: Catalog, runs: pd.DataFrame) -> list[DistributionSource]:
    """Per-item ``*_us`` metrics and ``*_us`` columns of extra tables that have rows for ``runs``."""
    items = run_metrics(catalog, runs, run_level=False)
    sources = [DistributionSource("metrics", m) for m in sorted(items["metric"].unique()) if m.endswith(LATENCY_SUFFIX)]
    for name, frame in sorted(catalog.extra.items()):
        if "run_id" not in frame.columns:
            continue
        mine = frame.merge(runs[RUN_KEY], on=RUN_KEY, how="inner")
        if mine.empty:
            continue
        for column in frame.columns:
            if column.endswith(LATENCY_SUFFIX) and pd.api.types.is_numeric_dtype(frame[column]):
                sources.append(DistributionSource(name, column))
    return sorted(sources, key=_latency_rank)


def _latency_rank(source: DistributionSource) -> int:
    return next((i for i, word in enumerate(LATENCY_WORDS) if word in source.column), len(LATENCY_WORDS))


def distribution_values(
    catalog: Catalog, runs: pd.DataFrame, source: DistributionSource, group: str = "policy_label"
) -> pd.DataFrame:
    """Columns ``group``, ``value``: every sample of the distribution over ``runs``."""
    if source.table == "metrics":
        items = run_metrics(catalog, runs, run_level=False)
        values = items[items["metric"] == source.column][[group, "value"]]
    else:
        frame = catalog.extra[source.table].merge(runs[[*RUN_KEY, group]], on=RUN_KEY, how="inner")
        values = frame[[group, source.column]].rename(columns={source.column: "value"})
    return values.dropna().reset_index(drop=True)


def cdf_frame(values: pd.DataFrame, group: str = "policy_label") -> pd.DataFrame:
    """Empirical CDF per group: sorted ``value`` and ``fraction`` (k/n for the k-th smallest)."""
    parts = []
    for name, part in values.groupby(group, sort=False):
        v = np.sort(part["value"].to_numpy(dtype=float))
        parts.append(pd.DataFrame({group: name, "value": v, "fraction": np.arange(1, v.size + 1) / v.size}))
    return pd.concat(parts, ignore_index=True) if parts else pd.DataFrame(columns=[group, "value", "fraction"])


def percentiles(
    values: pd.DataFrame, group: str = "policy_label", qs: tuple[float, ...] = (0.5, 0.9, 0.99)
) -> pd.DataFrame:
    """p50/p90/p99 (and the mean and count) per group."""
    grouped = values.groupby(group, sort=False)["value"]
    table = grouped.quantile(list(qs)).unstack()
    table.columns = [f"p{round(q * 100):g}" for q in qs]
    table.insert(0, "mean", grouped.mean())
    table.insert(0, "n", grouped.size())
    return table.reset_index()


def default_metrics(workload: str, available: list[str], limit: int = 6) -> list[str]:
    """The workload's summary metrics (as the CLI shows them) that are present, else the first few."""
    try:
        from harness.workload import registry

        preferred = registry()[workload].summary_metrics
    except Exception:  # an unknown or broken workload must not take the page down
        preferred = ()
    chosen = [m for m in preferred if m in available]
    return chosen or available[:limit]


# --------------------------------------------------------------------------- the headline: who wins, by how much
# The same verdict as `harness sim` prints (harness.verdict): one function for both.


def metric_units(values: pd.DataFrame) -> dict[str, str]:
    """metric -> unit, from the metrics rows (``unit`` column)."""
    if "unit" not in values.columns:
        return {}
    return dict(zip(values["metric"], values["unit"].fillna("")))


def better_direction(metric: str, unit: str = "", workload: str = "") -> str | None:
    """``"lower"``, ``"higher"`` or None: the side the workload declares for a headline metric, else the name's."""
    declared = {h.metric: h.better for h in _headlines(workload)}
    return declared.get(metric) or guess_better(metric, unit)


def _headlines(workload: str) -> tuple[HeadlineMetric, ...]:
    try:
        from harness.workload import registry

        return registry()[workload].headlines() if workload else ()
    except Exception:  # an unknown or broken workload must not take the page down
        return ()


def headline_metrics(workload: str, metrics: list[str], units: dict[str, str]) -> list[str]:
    """The metrics the headline may lead with: the workload's headline metrics first, then any with a better side."""
    declared = [h.metric for h in _headlines(workload) if h.metric in metrics]
    return declared + [m for m in metrics if m not in declared and better_direction(m, units.get(m, ""), workload)]


def spec_baseline(runs: pd.DataFrame) -> str | None:
    """The baseline the spec named, as its results folders' ``verdict.json`` records it (None without one)."""
    for folder in dict.fromkeys(runs["folder"]) if "folder" in runs.columns else ():
        path = Path(folder) / VERDICT_FILE
        try:
            baseline = _verdict_baseline(str(path), path.stat().st_mtime_ns)
        except OSError:
            continue
        if baseline in set(runs["policy_label"]):
            return baseline
    return None


@functools.lru_cache(maxsize=64)
def _verdict_baseline(path: str, mtime_ns: int) -> str | None:
    del mtime_ns  # only a cache key: an edited file is read again
    try:
        return json.loads(Path(path).read_text()).get("baseline")
    except (OSError, ValueError, AttributeError):
        return None  # an unreadable verdict: the page falls back to the first policy


def headline_inputs(workload: str, metric: str) -> list[str]:
    """The metrics the headline on ``metric`` reads: itself and its declared reference (the recording's span)."""
    reference = next((h.reference for h in _headlines(workload) if h.metric == metric and h.reference), None)
    return [metric] + [reference] * (reference is not None)


@dataclass(frozen=True)
class Headline:
    metric: str
    direction: str | None  # "lower", "higher" or None
    winner: str  # "" when nothing wins (a tie, one policy, or no better side)
    text: str  # the one-line answer (Markdown)


def headline(
    summary: pd.DataFrame,
    metric: str,
    unit: str = "",
    group: str = "policy_label",
    baseline: str | None = None,
    workload: str = "",
) -> Headline:
    """The verdict on ``metric`` (:func:`harness.verdict.metric_verdict`): the best policy, its margin against
    ``baseline`` (default: the first policy), which side is better, with units; a reference (the recording's
    span) where the workload declares one."""
    rows = summary[summary["metric"] == metric].dropna(subset=["mean"])
    direction = better_direction(metric, unit, workload)
    if rows.empty:
        return Headline(metric, direction, "", f"No policy reports `{metric}`.")
    if direction is None:
        spread = ", ".join(f"{g} {format_value(v, unit)}" for g, v in zip(rows[group], rows["mean"]))
        return Headline(metric, None, "", f"`{metric}` (neither higher nor lower is better by itself): {spread}.")
    declared = next((h for h in _headlines(workload) if h.metric == metric), HeadlineMetric(metric, direction))
    picked = summary[summary["metric"].isin(headline_inputs(workload, metric))]
    table = picked.pivot_table(index=group, columns="metric", values="mean", sort=False)
    table = table.reindex(index=list(dict.fromkeys(summary[group])))
    verdict = metric_verdict(table, declared, unit, baseline if baseline in table.index else None)
    winner = verdict.best[0] if verdict.outcome in ("better", "baseline_best") and len(verdict.best) == 1 else ""
    text = verdict.text
    if winner:
        text = text.replace(winner, f"**{winner}**", 1)
    return Headline(metric, direction, winner, text)


def change_table(change: pd.DataFrame, baseline: str, group: str = "policy_label", units=None) -> pd.DataFrame:
    """Metric rows, one column per policy other than the baseline, cells like ``-39.1 %``.

    Where the baseline's mean is 0 a percentage means nothing: the cell says so and gives the absolute difference.
    """
    units = units or {}
    others = [g for g in dict.fromkeys(change[group]) if g != baseline]
    metrics = list(dict.fromkeys(change["metric"]))
    cells = {g: [] for g in others}
    indexed = change.set_index([group, "metric"])
    for metric in metrics:
        for g in others:
            if (g, metric) not in indexed.index:
                cells[g].append("-")
                continue
            row = indexed.loc[(g, metric)]
            base, rel = row["baseline_mean"], row["relative_change"]
            if pd.isna(base):
                cells[g].append("no baseline value")
            elif np.isfinite(rel):
                cells[g].append(f"{100 * rel:+.1f} %")
            elif row["mean"] == base:
                cells[g].append("0 (both 0)")
            else:
                diff = row["mean"] - base
                sign = "+" if diff > 0 else "-"
                cells[g].append(f"baseline 0, {sign}{format_value(abs(diff), units.get(metric, ''))}")
    return pd.DataFrame(cells, index=pd.Index(metrics, name="metric"), columns=others)


# --------------------------------------------------------------------------- the tables as shown: formatted cells
# The page draws its small tables as Markdown (dashboard.markdown_table); the CSV downloads keep the raw numbers.

STAT_COLUMNS = ("mean", "std", "min", "max")


def summary_cells(summary: pd.DataFrame, units: dict[str, str] | None = None) -> pd.DataFrame:
    """:func:`metric_summary` with its statistics in the metric's unit (``338 ms``, ``2.5 GB``, ``25.0%``)."""
    units = units or {}
    cells = summary.copy()
    for column in STAT_COLUMNS:
        cells[column] = [format_value(v, units.get(m, "")) for v, m in zip(summary[column], summary["metric"])]
    return cells


def percentile_cells(table: pd.DataFrame, unit: str = "us", group: str = "policy_label") -> pd.DataFrame:
    """:func:`percentiles` with its statistics in ``unit`` (the distributions are ``*_us`` columns: durations)."""
    cells = table.copy()
    for column in table.columns:
        if column not in (group, "n"):
            cells[column] = [format_value(v, unit) for v in table[column]]
    return cells
