"""Every run in a filterable table."""

import streamlit as st

from dashboard import ui
from dashboard.compare import default_metrics
from dashboard.runs_view import (
    FILTER_COLUMNS,
    METRIC_PREFIX,
    RunFilter,
    day_range,
    filter_runs,
    runs_table,
    with_links,
    with_metrics,
)

st.title("Runs")
cat = ui.catalog()
ui.require_runs(cat)
headline_metrics = []
for workload, rows in (
    cat.metrics[cat.metrics["item"] == -1].merge(cat.runs[["folder", "run_id", "workload"]]).groupby("workload")
):
    headline_metrics += default_metrics(workload, list(dict.fromkeys(rows["metric"])), limit=3)
table = with_metrics(with_links(runs_table(cat.runs), cat.runs), cat.metrics, list(dict.fromkeys(headline_metrics)))

with st.expander("Filters", expanded=True):
    cols = st.columns(4)
    choices = {}
    for i, column in enumerate(FILTER_COLUMNS):
        options = sorted(table[column].dropna().unique())
        choices[column] = cols[i % 4].multiselect(column, options, key=f"runs-filter-{column}")
    params = cols[(len(FILTER_COLUMNS)) % 4].text_input(
        "parameters contain", key="runs-filter-params", placeholder='"depth": 2'
    )
    dates = table["started_at"].dropna()
    since = until = None
    if not dates.empty:
        picked = cols[(len(FILTER_COLUMNS) + 1) % 4].date_input(
            "started between", (dates.min().date(), dates.max().date()), key="runs-filter-dates"
        )
        if isinstance(picked, tuple) and len(picked) == 2:
            since, until = day_range(*picked)

shown = filter_runs(table, RunFilter(choices, params, since, until))
failed = int((shown["status"] != "ok").sum())
st.markdown(f"**{len(shown)} of {len(table)} runs** shown" + (f", {failed} failed" if failed else ""))
st.dataframe(
    shown,
    hide_index=True,
    height=min(36 + 35 * len(shown), 720),
    column_config={
        "started_at": st.column_config.DatetimeColumn("started_at", format="YYYY-MM-DD HH:mm:ss"),
        "timeline": st.column_config.LinkColumn("timeline", display_text="timeline"),
        "compare": st.column_config.LinkColumn("compare", display_text="compare"),
        **{
            c: st.column_config.NumberColumn(c.removeprefix(METRIC_PREFIX), format="%.4g")
            for c in table
            if c.startswith(METRIC_PREFIX)
        },
    },
)
ui.download_table(shown, "runs", key="runs-csv")
