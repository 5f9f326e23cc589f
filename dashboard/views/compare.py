"""Policies side by side: metric bars with their spread, change against a baseline, latency CDFs."""

import streamlit as st

from dashboard import ui
from dashboard.compare import cdf_frame, default_metrics, percentile_cells, percentiles, spec_baseline
from dashboard.fidelity import fidelity_badge
from dashboard.figures import cdf_figure

st.title("Compare policies")
cat = ui.catalog()
ui.require_runs(cat)
spec, backend, runs = ui.pick_spec_backend(ui.ok_runs(), key="compare")
values = ui.compare_metrics(runs)  # cached by the folders and the runs
available = list(dict.fromkeys(values["metric"]))
workload = runs["workload"].iloc[0] if len(runs) else ""
metrics = st.multiselect(
    "Metrics", available, default=default_metrics(workload, available), key=f"compare-metrics-{spec}-{backend}"
)
if not metrics:
    st.info("Choose at least one metric.")
    st.stop()

section = ui.compare_summary(runs, metrics, workload)  # cached: the summary, its cells, its chart
summary, units, colours = section.summary, section.units, section.colours  # one colour per policy, every page
ranked, labels = section.ranked, section.labels
ui.from_query("metric", f"compare-headline-{spec}", ranked)
lead_column, baseline_column = st.columns(2)
lead = lead_column.selectbox("Headline metric", ranked, key=f"compare-headline-{spec}")
named = spec_baseline(runs)  # the spec's `baseline`, as its verdict.json records it; else the first policy
baseline = baseline_column.selectbox(
    "Baseline policy", labels, index=labels.index(named) if named in labels else 0, key=f"compare-baseline-{spec}"
)
against = ui.compare_change(runs, metrics, workload, lead, baseline)  # cached: headline, change, its chart
st.markdown(against.answer.text)
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
    f"{spec} on {backend}: bars are the mean over repetitions, whiskers the min and max "
    f"({section.reps} repetition(s) at most)."
)
ui.show_figure(section.figure, key="compare-bars")
ui.show_table(section.cells, key="compare-summary")  # Markdown: no data grid to load
# Downloads in popovers: drawn only when opened, so a page load mounts fewer elements (as on the other pages).
with st.popover("Download"):
    ui.download_table(summary, spec, backend, "metrics", key="compare-summary-csv")
    ui.download_figure(section.figure, spec, backend, "metrics", key="compare-bars-html")

st.subheader(f"Change against {baseline}")
ui.show_figure(against.figure, key="compare-change")
ui.show_table(against.cells, key="compare-change-table", index=True)
with st.popover("Download"):
    ui.download_table(against.change, spec, backend, "vs", baseline, key="compare-change-csv")
    ui.download_figure(against.figure, spec, backend, "vs", baseline, key="compare-change-html")

st.subheader("Latency distributions")
sources = ui.compare_sources(runs)
if not sources:
    st.info("This workload records no per-item latencies (`*_us` metrics with item ≥ 0, or a `requests` table).")
    st.stop()
source = st.selectbox("Distribution", sources, format_func=lambda s: s.label, key=f"compare-dist-{spec}")
samples = ui.compare_samples(runs, source)
cdf = cdf_frame(samples)
cdf_fig = ui.cached_figure(cdf_figure, cdf, source.label, colours=colours)
ui.show_figure(cdf_fig, key="compare-cdf")
ui.show_table(percentile_cells(percentiles(samples)), key="compare-percentiles")
with st.popover("Download"):
    ui.download_table(cdf, spec, backend, source.column, "cdf", key="compare-cdf-csv")
    ui.download_figure(cdf_fig, spec, backend, source.column, "cdf", key="compare-cdf-html")
