"""A metric against one or two policy parameters."""

import streamlit as st

from dashboard import ui
from dashboard.compare import default_metrics, run_metrics
from dashboard.figures import sweep_heatmap_figure, sweep_line_figure
from dashboard.sweep import grid_configurations, numeric_params, sweep_frame, sweep_grid, sweep_line

NONE = "(none)"

st.title("Sweep")
cat = ui.catalog()
ui.require_runs(cat)
spec, backend, runs = ui.pick_spec_backend(ui.ok_runs(), key="sweep")
available = list(dict.fromkeys(run_metrics(cat, runs)["metric"]))
if not available:
    st.info("These runs have no whole-run metrics.")
    st.stop()
workload = runs["workload"].iloc[0]
metric_key = f"sweep-metric-{spec}-{backend}"
ui.from_query("metric", metric_key, available)
if metric_key not in st.session_state:
    st.session_state[metric_key] = default_metrics(workload, available)[0]
metric = st.selectbox("Metric", available, key=metric_key)
frame = sweep_frame(cat, runs, metric)
params = numeric_params(frame)
if not params:
    st.info(f"The policies of {spec} have no numeric parameters to sweep.")
    st.stop()
c1, c2 = st.columns(2)
ui.from_query("x", f"sweep-x-{spec}", params)
x = c1.selectbox("x: parameter", params, key=f"sweep-x-{spec}")
y = c2.selectbox("y: second parameter (heatmap)", [NONE] + [p for p in params if p != x], key=f"sweep-y-{spec}")
if y == NONE:
    table = sweep_line(frame, x)
    fig = sweep_line_figure(table, x, metric)
    st.caption(
        "One line per configuration (policy and its other parameters): the mean over its repetitions, whiskers "
        "from the smallest to the largest repetition. Runs without the parameter are left out."
    )
else:
    configs = grid_configurations(frame, x, y)
    config = st.selectbox("Configuration (the other parameters)", configs, key=f"sweep-config-{spec}-{x}-{y}")
    grid = sweep_grid(frame, x, y, config)
    table = grid.reset_index()
    fig = sweep_heatmap_figure(grid, x, y, metric)
    st.caption("Mean over the repetitions of one configuration that has both parameters.")
ui.to_query(metric=metric, x=x)
ui.show_figure(fig, key="sweep-figure")
st.dataframe(table, hide_index=True)
left, right = st.columns(2)
with left:
    ui.download_table(table, spec, backend, metric, "sweep", key="sweep-csv")
with right:
    ui.download_figure(fig, spec, backend, metric, "sweep", key="sweep-html")
