"""The Compare page's two upper sections, each built whole from its inputs, so that the page caches each once.

A warm visit then hashes a few strings (the folders, the runs, the metrics, the headline metric, the baseline)
instead of the data frames every cached step took as its key, and runs no pandas (issue 25, the page's speed).
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd
import plotly.graph_objects as go

from dashboard.compare import (
    Headline,
    change_table,
    headline,
    headline_inputs,
    headline_metrics,
    metric_summary,
    metric_units,
    relative_change,
    summary_cells,
)
from dashboard.figures import metric_bars, policy_colours, relative_bars


@dataclass(frozen=True)
class SummarySection:
    """Metrics per policy: the summary (raw, for the CSV), its cells as shown, its bar chart, and what the
    controls below it offer (the metrics the headline may lead with, the policies a baseline may be)."""

    summary: pd.DataFrame
    cells: pd.DataFrame
    figure: go.Figure
    units: dict[str, str]
    colours: dict[str, str]
    ranked: list[str]
    labels: list[str]
    reps: int


@dataclass(frozen=True)
class ChangeSection:
    """The headline on one metric against a baseline, and every chosen metric's change against that baseline."""

    answer: Headline
    change: pd.DataFrame
    cells: pd.DataFrame
    figure: go.Figure


def summary_section(values: pd.DataFrame, metrics: list[str], workload: str, universe: pd.Series) -> SummarySection:
    """``values``: run-level metric rows of the runs compared; ``universe``: every loaded run's policy label (one
    colour per policy on every page)."""
    summary = metric_summary(values[values["metric"].isin(metrics)], metric_order=list(metrics))
    units = metric_units(values)
    colours = policy_colours(summary["policy_label"], universe=universe)
    return SummarySection(
        summary=summary,
        cells=summary_cells(summary, units),
        figure=metric_bars(summary, colours=colours),
        units=units,
        colours=colours,
        ranked=headline_metrics(workload, list(metrics), units) or list(metrics),
        labels=list(dict.fromkeys(summary["policy_label"])),
        reps=int(summary["n"].max()) if len(summary) else 0,
    )


def change_section(
    values: pd.DataFrame, section: SummarySection, lead: str, baseline: str, workload: str
) -> ChangeSection:
    """The verdict on ``lead`` (its declared reference included) and the change of every metric of ``section``."""
    inputs = metric_summary(values[values["metric"].isin(headline_inputs(workload, lead))])
    answer = headline(inputs, lead, section.units.get(lead, ""), baseline=baseline, workload=workload)
    change = relative_change(section.summary, baseline)
    return ChangeSection(
        answer=answer,
        change=change,
        cells=change_table(change, baseline, units=section.units),
        figure=relative_bars(change, baseline, colours=section.colours),
    )
