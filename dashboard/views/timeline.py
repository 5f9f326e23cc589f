"""The timeline of a run, and optionally a second run below it on the same time axis."""

import streamlit as st

from dashboard import ui
from dashboard.figures import timeline_figure
from dashboard.timeline import DEFAULT_MAX_BARS, timeline_view

NONE = "(none)"

st.title("Timeline")
cat = ui.catalog()
ui.require_runs(cat)
runs = cat.runs[cat.runs["n_ops"] > 0].reset_index(drop=True)
if runs.empty:
    st.info("No run has ops to show.")
    st.stop()
labels = list(runs["run_label"])
first = st.selectbox("Run", labels, key="timeline-run")
row = runs[runs["run_label"] == first].iloc[0]
# Suggest the same policy on the other backend (sim over replay), else nothing.
partner = runs[(runs["spec_name"] == row["spec_name"]) & (runs["policy_label"] == row["policy_label"]) & (runs["backend"] != row["backend"])]
options = [NONE] + [label for label in labels if label != first]
suggested = options.index(partner["run_label"].iloc[0]) if len(partner) else 0
second = st.selectbox("Below it, on the same time axis", options, index=suggested, key=f"timeline-second-{first}")

chosen = [row] + ([runs[runs["run_label"] == second].iloc[0]] if second != NONE else [])
ops = [cat.run_ops(r["folder"], r["run_id"]) for r in chosen]
end_us = max(float(o["end_us"].max()) for o in ops)
c1, c2, c3 = st.columns(3)
start = c1.number_input("window start (µs)", min_value=0.0, value=0.0, step=1000.0, key="timeline-start")
stop = c2.number_input("window end (µs)", min_value=0.0, value=end_us, step=1000.0, key=f"timeline-end-{first}-{second}")
max_bars = c3.number_input("most bars per run", min_value=200, max_value=50_000, value=DEFAULT_MAX_BARS, step=500, key="timeline-max-bars")

views = [(f"{r['run_id']} ({r['backend']})", timeline_view(o, int(max_bars), start, stop)) for r, o in zip(chosen, ops)]
for title, view in views:
    (st.warning if view.merged else st.caption)(f"{title}: {view.note()}")
fig = timeline_figure(views)
fig.update_xaxes(range=[start, stop])
ui.show_figure(fig, key="timeline-figure")
st.caption("Drag to zoom, double-click to reset; the camera icon saves a PNG.")
bars = views[0][1].bars
left, right = st.columns(2)
with left:
    ui.download_table(bars, row["run_id"], "timeline", key="timeline-csv", label="Download bars of the first run (CSV)")
with right:
    ui.download_figure(fig, row["run_id"], "timeline", key="timeline-html")
