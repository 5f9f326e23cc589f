"""Policies side by side: metric bars with their spread, change against a baseline, latency CDFs."""

import streamlit as st

from dashboard import ui
from dashboard.compare import (
    cdf_frame,
    change_table,
    default_metrics,
    distribution_sources,
    distribution_values,
    headline,
    headline_inputs,
    headline_metrics,
    metric_summary,
    metric_units,
    ok_runs,
    percentile_cells,
    percentiles,
    relative_change,
    run_metrics,
    spec_baseline,
    summary_cells,
)
from dashboard.fidelity import fidelity_badge
from dashboard.figures import cdf_figure, metric_bars, policy_colours, relative_bars

st.title("Compare policies")
cat = ui.catalog()
ui.require_runs(cat)
spec, backend, runs = ui.pick_spec_backend(ok_runs(cat.runs), key="compare")
values = run_metrics(cat, runs)
available = list(dict.fromkeys(values["metric"]))
workload = runs["workload"].iloc[0] if len(runs) else ""
metrics = st.multiselect(
    "Metrics", available, default=default_metrics(workload, available), key=f"compare-metrics-{spec}-{backend}"
)
if not metrics:
    st.info("Choose at least one metric.")
    st.stop()

summary = metric_summary(values[values["metric"].isin(metrics)], metric_order=metrics)
units = metric_units(values)
reps = summary["n"].max()
ranked = headline_metrics(workload, metrics, units) or metrics
labels = list(dict.fromkeys(summary["policy_label"]))
ui.from_query("metric", f"compare-headline-{spec}", ranked)
lead_column, baseline_column = st.columns(2)
lead = lead_column.selectbox("Headline metric", ranked, key=f"compare-headline-{spec}")
named = spec_baseline(runs)  # the spec's `baseline`, as its verdict.json records it; else the first policy
baseline = baseline_column.selectbox(
    "Baseline policy", labels, index=labels.index(named) if named in labels else 0, key=f"compare-baseline-{spec}"
)
answer = headline(metric_summary(values[values["metric"].isin(headline_inputs(workload, lead))]), lead, units.get(lead, ""), baseline=baseline, workload=workload)
st.markdown(answer.text)
badge = fidelity_badge(ui.fidelity_pairs().table, spec, lead)
if badge:
    st.success(badge, icon=":material/target:")
elif (
    backend == "sim" and not ((cat.runs["spec_name"] == spec) & cat.runs["backend"].isin(["replay", "recording"])).any()
):
    st.caption("No replay or recording of this spec is loaded: the figures are the simulator's alone.")
ui.to_query(metric=lead)
st.subheader("Metrics per policy")
st.caption(
    f"{spec} on {backend}: bars are the mean over repetitions, whiskers the min and max ({reps} repetition(s) at most)."
)
colours = policy_colours(
    summary["policy_label"], universe=cat.runs["policy_label"]
)  # one colour per policy, every page
fig = ui.cached_figure(metric_bars, summary, colours=colours)
ui.show_figure(fig, key="compare-bars")
ui.show_table(summary_cells(summary, units), key="compare-summary")  # Markdown: no data grid to load
# Downloads in popovers: drawn only when opened, so a page load mounts fewer elements (as on the other pages).
with st.popover("Download"):
    ui.download_table(summary, spec, backend, "metrics", key="compare-summary-csv")
    ui.download_figure(fig, spec, backend, "metrics", key="compare-bars-html")

st.subheader(f"Change against {baseline}")
change = relative_change(summary, baseline)
change_fig = ui.cached_figure(relative_bars, change, baseline, colours=colours)
ui.show_figure(change_fig, key="compare-change")
ui.show_table(change_table(change, baseline, units=units), key="compare-change-table", index=True)
with st.popover("Download"):
    ui.download_table(change, spec, backend, "vs", baseline, key="compare-change-csv")
    ui.download_figure(change_fig, spec, backend, "vs", baseline, key="compare-change-html")

st.subheader("Latency distributions")
sources = distribution_sources(cat, runs)
if not sources:
    st.info("This workload records no per-item latencies (`*_us` metrics with item ≥ 0, or a `requests` table).")
    st.stop()
source = st.selectbox("Distribution", sources, format_func=lambda s: s.label, key=f"compare-dist-{spec}")
samples = distribution_values(cat, runs, source)
cdf = cdf_frame(samples)
cdf_fig = ui.cached_figure(cdf_figure, cdf, source.label, colours=colours)
ui.show_figure(cdf_fig, key="compare-cdf")
ui.show_table(percentile_cells(percentiles(samples)), key="compare-percentiles")
with st.popover("Download"):
    ui.download_table(cdf, spec, backend, source.column, "cdf", key="compare-cdf-csv")
    ui.download_figure(cdf_fig, spec, backend, source.column, "cdf", key="compare-cdf-html")
