"""A run's requests (continuous batching, times in ms), sortable by TTFT, e2e or queue time; one request's timeline.

Select a row (or pick the request below the table) to draw the run's lanes from the request's arrival to its
last token, with its milestones marked. Zoom and pan in the chart as on the Timeline page (the same zoomable chart,
dashboard/zoom_chart.py: each new window is re-queried and re-aggregated); a double click, or "Back to the
request", returns to the request's span. The run, the sort, the request and a zoomed window are kept in the URL.
"""

from urllib.parse import urlencode

import streamlit as st

from dashboard import ui
from dashboard.requests_view import (
    SORT_COLUMNS,
    milestones_in,
    ms_name,
    request_span,
    runs_with_requests,
    table_in_ms,
)
from dashboard.timeline import DEFAULT_MAX_BARS, format_window, resolve_window, time_unit

st.title("Requests")
cat = ui.catalog()
ui.require_runs(cat)
runs = runs_with_requests(cat)
if runs.empty:
    st.info("No loaded run has a `requests` table (continuous-batching results write one per run).")
    st.stop()
labels = list(runs["run_label"])
from_url = st.query_params.get("run")
ui.from_query("run", "requests-run", labels)
c1, c2, c3 = st.columns([3, 1, 1])
label = c1.selectbox("Run", labels, key="requests-run")
row = runs[runs["run_label"] == label].iloc[0]
ui.from_query("sort", "requests-sort", SORT_COLUMNS)
sort_by = c2.selectbox("Sort by", SORT_COLUMNS, key="requests-sort", format_func=ms_name)
ascending = c3.toggle("smallest first", key="requests-ascending")
table, names = ui.requests_table(row["folder"], row["run_id"], sort_by, ascending)

shown = table_in_ms(table)
st.caption(
    f"{len(table):,} requests of {row['run_id']} ({row['backend']}), sorted by {ms_name(sort_by)}, "
    f"{'smallest' if ascending else 'largest'} first; times in ms. Select a row to see the timeline around that "
    "request."
)
time_columns = [c for c in shown.columns if c.endswith("_ms")]
picked = st.dataframe(
    shown,
    hide_index=True,
    height=320,
    on_select="rerun",
    selection_mode="single-row",
    key=f"requests-table-{label}-{sort_by}-{ascending}",
    column_config={c: st.column_config.NumberColumn(c, format="%.3f") for c in time_columns},
)
ids = [int(r) for r in table["request"]]
request_key = f"requests-request-{label}"
if from_url == label:
    wanted = st.query_params.get("request")
    if request_key not in st.session_state and wanted is not None and wanted.lstrip("-").isdigit():
        if int(wanted) in ids:
            st.session_state[request_key] = int(wanted)
rows = picked.selection.get("rows", []) if picked else []
seen_key = f"{request_key}-seen"
if rows and st.session_state.get(seen_key) != (sort_by, ascending, rows[0]):
    st.session_state[seen_key] = (sort_by, ascending, rows[0])  # a new click in the table picks its request
    st.session_state[request_key] = ids[rows[0]]
if st.session_state.get(request_key) not in ids:
    st.session_state[request_key] = ids[0]  # the worst request by the chosen sort
chosen = st.selectbox("Request", ids, key=request_key, format_func=names.get)
request = table.iloc[ids.index(chosen)]

ops = ui.run_ops(row["folder"], row["run_id"])
run_end = float(ops["end_us"].max()) if len(ops) else 0.0
span_start, span_end, _, note = request_span(request, run_end)
if note:
    st.warning(note)
# The window starts as the request's span; a zoom or pan in the chart moves it, a double click brings it back.
home = (span_start, span_end)
window_key = f"requests-window-{label}-{int(chosen)}"
if window_key not in st.session_state:  # a shared link's zoom, for the request it names; else the request's span
    linked = from_url == label and st.query_params.get("request") == str(int(chosen))
    zoom = (ui.query_float("start"), ui.query_float("end")) if linked else (None, None)
    st.session_state[window_key] = zoom if None not in zoom else home
chart_key = f"requests-chart-{label}"  # one chart per run: it stays mounted while zooming and picking requests
zoomable = ui.zoomable_on("requests-zoomable")
if zoomable:  # before anything is drawn: one script run per zoom
    ui.take_zoom(st.session_state.get(chart_key), chart_key, window_key, run_end, home)
start, end, _ = resolve_window(*st.session_state[window_key], run_end)
st.session_state[window_key] = (start, end)
zoomed = (start, end) != home
ui.to_query(
    run=label,
    sort=sort_by,
    request=int(chosen),
    start=f"{start:.3f}" if zoomed else None,
    end=f"{end:.3f}" if zoomed else None,
)

st.subheader(f"Request {int(chosen)}: {format_window(span_start, span_end)}")
if zoomed:

    def back_to_request() -> None:
        st.session_state[window_key] = home

    left, right = st.columns([3, 1])
    left.caption(f"Zoomed to {format_window(start, end)}.")
    right.button("Back to the request", on_click=back_to_request, key="requests-home")
# The rarely used controls in a popover: its content is drawn only when it is opened, so a page load mounts fewer
# elements (the browser's work before the chart's frame is created, issue 14).
with st.popover("Chart options"):
    max_bars = st.number_input(
        "most bars", min_value=200, max_value=50_000, value=DEFAULT_MAX_BARS, step=500, key="requests-max-bars"
    )
    ui.zoomable_toggle("requests-zoomable")
title = f"{row['run_id']} ({row['backend']})"
marks = milestones_in(request, start, end)
[(_, view)], fig = ui.timeline([(row["folder"], row["run_id"], title)], start, end, int(max_bars), marks)
(st.warning if view.merged else st.caption)(f"{title}: {view.note()}")
how = ui.zoomable_timeline(
    fig,
    time_unit(end - start)[1],
    chart_key=chart_key,
    window_key=window_key,
    run_end_us=run_end,
    zoomable=zoomable,
    plain_key=f"requests-figure-{label}-{chosen}-{start}-{end}-{max_bars}",
    home=home,
    home_name="back to the request",
)
st.caption(how)
link = "./timeline?" + urlencode({"run": label, "start": f"{start:.3f}", "end": f"{end:.3f}"})
st.markdown(f"[Open this window on the Timeline page]({link}) (zoom, pan, search, a second run below it).")
with st.popover("Download"):
    ui.download_table(shown, row["run_id"], "requests", key="requests-csv", label="Download the requests (CSV)")
    ui.download_figure(fig, row["run_id"], f"request-{int(chosen)}", key="requests-html")
