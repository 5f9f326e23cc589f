"""The timeline of a run, and optionally a second run below it on the same time axis.

The window (zoom) is the page's state: zoom with the mouse wheel or the chart's toolbar, pan, drag a box over the
chart, or use the buttons; each new window is re-queried and its bars re-aggregated (the zoomable chart reports the
x range back: dashboard/zoom_chart.py). The run, the second run and the window are kept in the URL.
"""

import streamlit as st

from dashboard import ui
from dashboard.catalog import read_run_ops
from dashboard.export import PERFETTO_MAX_OPS, perfetto_bytes
from dashboard.figures import add_highlight
from dashboard.machines import partner_run
from dashboard.timeline import (
    DEFAULT_MAX_BARS,
    MAX_FLOW_BARS,
    format_duration,
    format_window,
    in_window,
    pan_window,
    resolve_window,
    search_ops,
    time_unit,
    zoom_window,
)

NONE = "(none)"

st.title("Timeline")
cat = ui.catalog()
ui.require_runs(cat)
runs = cat.runs[cat.runs["n_ops"] > 0].reset_index(drop=True)
if runs.empty:
    st.info("No run has ops to show.")
    st.stop()
labels = list(runs["run_label"])
from_url = st.query_params.get("run")
ui.from_query("run", "timeline-run", labels)
first = st.selectbox("Run", labels, key="timeline-run")
row = runs[runs["run_label"] == first].iloc[0]
# Suggest the same policy on the side it is checked against (sim over replay, else over the recording).
partner = partner_run(runs, row)
options = [NONE] + [label for label in labels if label != first]
suggested = options.index(partner) if partner in options else 0
second_key = f"timeline-second-{first}"
if from_url == first:
    ui.from_query("vs", second_key, options)
if second_key not in st.session_state:
    st.session_state[second_key] = options[suggested]
second = st.selectbox("Below it, on the same time axis", options, key=second_key)

chosen = [row] + ([runs[runs["run_label"] == second].iloc[0]] if second != NONE else [])
ops = ui.runs_ops([(r["folder"], r["run_id"]) for r in chosen])
run_end = max(float(o["end_us"].max()) for o in ops)

# The window belongs to this pair of runs: another run starts from its whole extent (or the URL's window).
window_key = f"timeline-window-{first}-{second}"
if window_key not in st.session_state:
    from_link = from_url == first
    st.session_state[window_key] = (
        ui.query_float("start") if from_link else None,
        ui.query_float("end") if from_link else None,
    )
chart_key = f"timeline-chart-{first}-{second}"  # one chart per pair of runs: it stays mounted while zooming
zoomable = ui.zoomable_on("timeline-zoomable")
if zoomable:  # before anything is drawn: one script run per zoom
    ui.take_zoom(st.session_state.get(chart_key), chart_key, window_key, run_end)
start, stop, stale = resolve_window(*st.session_state[window_key], run_end)
if stale:
    st.warning(stale)
st.session_state[window_key] = (start, stop)


def set_window(lo: float, hi: float) -> None:
    st.session_state[window_key] = (lo, hi)


c = st.columns([1, 1, 1, 1, 1, 2])
c[0].button("Zoom in", on_click=lambda: set_window(*zoom_window(start, stop, 0.5, run_end)), key="timeline-in")
c[1].button("Zoom out", on_click=lambda: set_window(*zoom_window(start, stop, 2.0, run_end)), key="timeline-out")
c[2].button("◀ Earlier", on_click=lambda: set_window(*pan_window(start, stop, -0.5, run_end)), key="timeline-left")
c[3].button("Later ▶", on_click=lambda: set_window(*pan_window(start, stop, 0.5, run_end)), key="timeline-right")
c[4].button("Whole run", on_click=lambda: set_window(0.0, run_end), key="timeline-all")
# The rarely used controls in a popover: its content is drawn only when it is opened, so a page load mounts fewer
# elements (the browser's work before the chart's frame is created, issue 14).
with c[5].popover(f"Window: {format_window(start, stop)} of {format_duration(run_end)}"):
    with st.form(f"timeline-window-form-{start}-{stop}"):
        w1, w2 = st.columns(2)
        typed_start = w1.number_input("window start (µs)", min_value=0.0, value=start, step=1000.0)
        typed_end = w2.number_input("window end (µs)", min_value=0.0, value=stop, step=1000.0)
        if st.form_submit_button("Show this window"):
            set_window(typed_start, typed_end)
            st.rerun()
    max_bars = st.number_input(
        "most bars per run", min_value=200, max_value=50_000, value=DEFAULT_MAX_BARS, step=500, key="timeline-max-bars"
    )
    ui.zoomable_toggle("timeline-zoomable")

s1, s2 = st.columns([5, 1])
query = s1.text_input("Search ops by name", key="timeline-search", placeholder="decode, Memcpy, segment[3] ...")
hits, n_hits = search_ops(ops[0], query)
flows = s2.toggle(
    "Launch arrows",
    value=True,
    key="timeline-flows",
    help=f"From a host thread's call to the op's start on its stream, in a window of at most {MAX_FLOW_BARS} "
    "bars with none merged (zoom in to see them).",
)

views, fig = ui.timeline(
    [(r["folder"], r["run_id"], f"{r['run_id']} ({r['backend']})") for r in chosen],
    start,
    stop,
    int(max_bars),
    flows=flows,
)
for title, view in views:
    (st.warning if view.merged else st.caption)(f"{title}: {view.note()}")
if n_hits:
    add_highlight(fig, views, in_window(hits, start, stop))
unit_us = time_unit(stop - start)[1]
how = ui.zoomable_timeline(
    fig,
    unit_us,
    chart_key=chart_key,
    window_key=window_key,
    run_end_us=run_end,
    zoomable=zoomable,
    plain_key=f"timeline-figure-{first}-{second}-{start}-{stop}-{max_bars}",
)
st.caption(
    how + " Hover a bar for its times, launch latency and GB/s, or a merged bar's busy fraction and kinds. "
    "The camera icon saves a PNG."
)
ui.to_query(run=first, vs=None if second == NONE else second, start=f"{start:.3f}", end=f"{stop:.3f}")

if query:
    st.caption(f"{n_hits:,} ops of {chosen[0]['run_id']} have a name containing {query!r}; the first are listed.")
    picked = st.dataframe(hits, hide_index=True, on_select="rerun", selection_mode="single-row", key="timeline-hits")
    chosen_rows = picked.selection.get("rows", []) if picked else []
    if chosen_rows:
        hit = hits.iloc[chosen_rows[0]]
        pad = max(float(hit["end_us"] - hit["start_us"]) * 10, 10.0)
        if st.button(f"Show {hit['name']} at {format_duration(hit['start_us'])}", key="timeline-goto"):
            set_window(*resolve_window(hit["start_us"] - pad, hit["end_us"] + pad, run_end)[:2])
            st.rerun()

bars = views[0][1].bars
with st.popover("Download"):
    ui.download_table(bars, row["run_id"], "timeline", key="timeline-csv", label="Download bars of the first run (CSV)")
    ui.download_figure(fig, row["run_id"], "timeline", key="timeline-html")
    n_shown = views[0][1].n_ops  # the first run's ops in the window
    if n_shown <= PERFETTO_MAX_OPS:
        st.download_button(
            "Download Perfetto trace",
            # Every column of those ops (the timeline holds only what it draws), read when the button is pressed.
            lambda: perfetto_bytes(read_run_ops(row["folder"], row["run_id"], start, stop), row["run_id"]),
            file_name=ui.file_stem(row["run_id"], "window") + ".perfetto.json.gz",
            mime="application/gzip",
            key="timeline-perfetto",
            on_click="ignore",
            help="The first run's ops in this window as a Chrome/Kineto trace: open it in ui.perfetto.dev.",
        )
    else:
        st.caption(f"Perfetto trace: {n_shown:,} ops in the window; narrow it to {PERFETTO_MAX_OPS:,} or fewer.")
