"""Per-request drill-down (continuous batching): the requests of a run, sorted, and the timeline around one.

Pure functions first, then the Requests page through AppTest: choosing a request draws the run's lanes from
its arrival to its last token, and the run, the sort and the request are in the URL.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_support import BATCHING, DEMO, simulate

from dashboard import sources
from dashboard.catalog import build_catalog, load_path, read_run_ops
from dashboard.requests_view import (
    ms_name,
    request_label,
    request_labels,
    request_timeline,
    request_window,
    requests_of,
    run_requests,
    runs_with_requests,
    table_in_ms,
)
from dashboard.timeline import time_unit, timeline_view
from harness.results import read_results

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("dashboard-requests")
    return {name: simulate(name, root / f"{name}-sim") for name in (BATCHING, DEMO)}


@pytest.fixture(scope="module")
def catalog(folders):
    return build_catalog([load_path(p) for p in folders.values()])


def test_only_runs_with_a_requests_table_are_offered(catalog, folders):
    runs = runs_with_requests(catalog)
    expected = read_results(folders[BATCHING]).runs
    assert sorted(runs["run_id"]) == sorted(expected["run_id"]) and len(runs) >= 2
    demo_only = build_catalog([load_path(folders[DEMO])])
    assert requests_of(demo_only) is None and runs_with_requests(demo_only).empty


@pytest.mark.parametrize("column", ["ttft_us", "e2e_us", "queue_us"])
def test_requests_are_sorted_worst_first_or_smallest_first(catalog, folders, column):
    run = runs_with_requests(catalog).iloc[0]
    table = run_requests(catalog, run["folder"], run["run_id"], column)
    raw = read_results(folders[BATCHING]).extra["requests"]
    mine = raw[raw["run_id"] == run["run_id"]]
    assert len(table) == len(mine) and set(table["request"]) == set(mine["request"])
    values = table[column].dropna().to_numpy()
    assert (np.diff(values) <= 0).all() and values[0] == mine[column].max()
    smallest = run_requests(catalog, run["folder"], run["run_id"], column, ascending=True)
    assert smallest[column].iloc[0] == mine[column].min()
    with pytest.raises(ValueError, match="no column"):
        run_requests(catalog, run["folder"], run["run_id"], "nonsense_us")


def test_a_request_window_runs_from_arrival_to_last_token_on_the_runs_lanes(catalog):
    run = runs_with_requests(catalog).iloc[0]
    table = run_requests(catalog, run["folder"], run["run_id"], "e2e_us")
    request = table.iloc[len(table) // 2]
    ops = read_run_ops(Path(run["folder"]), run["run_id"])
    run_end = float(ops["end_us"].max())
    assert request_window(request) == (request["arrival_us"], request["last_token_us"])
    drill = request_timeline(ops, request, run_end, max_bars=1500)
    assert (drill.start_us, drill.end_us) == (request["arrival_us"], request["last_token_us"]) and not drill.note
    view = drill.view
    assert (view.start_us, view.end_us) == (drill.start_us, drill.end_us)
    # The timeline's own level of detail for that window: the same bars the Timeline page draws there.
    same = timeline_view(ops, 1500, drill.start_us, drill.end_us)
    pd.testing.assert_frame_equal(view.bars, same.bars)
    assert len(view.bars) > 0 and (view.bars["end_us"] >= drill.start_us).all()
    assert (view.bars["start_us"] <= drill.end_us).all()
    assert [label for label, _ in drill.marks] == ["arrival", "admitted", "first token", "last token"]
    assert "TTFT" in request_label(request) and f"request {int(request['request'])}" in request_label(request)
    assert request_labels(table.head(3)) == {
        int(r): request_label(row) for r, row in table.head(3).set_index("request", drop=False).iterrows()
    }


def test_the_requests_table_is_in_ms_with_the_unit_in_its_names_and_sorts_as_numbers(catalog):
    """Bug: the table showed µs (e2e 643573.5): unreadable at a glance. Times are in ms, named *_ms, numbers."""
    run = runs_with_requests(catalog).iloc[0]
    table = run_requests(catalog, run["folder"], run["run_id"], "e2e_us")
    shown = table_in_ms(table)
    timed = [c for c in table.columns if c.endswith("_us")]
    assert {"ttft_us", "e2e_us", "queue_us", "arrival_us"} <= set(timed)
    assert list(shown.columns) == [c[:-3] + "_ms" if c in timed else c for c in table.columns]
    for column in timed:
        ms = shown[column[:-3] + "_ms"]
        assert pd.api.types.is_float_dtype(ms)  # numbers: the page's table sorts them as numbers, not text
        np.testing.assert_allclose(ms.to_numpy(), table[column].to_numpy() / 1e3, equal_nan=True)
    assert shown["request"].tolist() == table["request"].tolist()  # the chosen sort is kept
    assert shown.sort_values("e2e_ms")["request"].tolist() == table.sort_values("e2e_us")["request"].tolist()
    assert ms_name("ttft_us") == "ttft_ms" and ms_name("request") == "request"
    assert "e2e_us" in table.columns  # the data itself is untouched


def test_a_request_without_tokens_gets_a_short_window_after_its_arrival():
    rejected = {
        "request": 7,
        "status": "rejected",
        "arrival_us": 500.0,
        "admitted_us": np.nan,
        "first_token_us": np.nan,
        "last_token_us": np.nan,
    }
    lo, hi = request_window(rejected)
    assert lo == 500.0 and hi > lo
    assert "rejected" in request_label(rejected)


# --------------------------------------------------------------------------- the page


def new_app(folders, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv(sources.DIRS_ENV, str(folders[BATCHING].parent))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    return at


def figure_json(at: AppTest) -> dict:
    """The figure drawn: by the zoomable chart (its arguments) or, with it off, by st.plotly_chart."""
    charts = [json.loads(json.loads(e.proto.json_args)["figure"]) for e in at.get("component_instance")]
    return (charts + [json.loads(e.proto.spec) for e in at.get("plotly_chart")])[0]


def x_range(at: AppTest) -> list[float]:
    return figure_json(at)["layout"]["xaxis"]["range"]


def test_choosing_a_request_draws_the_timeline_around_it(folders, monkeypatch):
    at = new_app(folders, monkeypatch).run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, [e.value for e in at.exception]
    run_label = at.selectbox(key="requests-run").value
    at.selectbox(key="requests-sort").set_value("e2e_us").run()
    shown = at.dataframe[0].value
    assert not [c for c in shown.columns if c.endswith("_us")]  # times in ms, the unit in the column names
    assert (np.diff(shown["e2e_ms"].dropna().to_numpy()) <= 0).all()  # worst first
    cat = build_catalog([load_path(p) for p in folders.values()])
    run = runs_with_requests(cat).set_index("run_label").loc[run_label]
    table = run_requests(cat, run["folder"], run["run_id"], "e2e_us")
    assert shown["e2e_ms"].to_numpy() == pytest.approx(table["e2e_us"].to_numpy() / 1e3, nan_ok=True)
    picked = table.iloc[5]
    at.selectbox(key=f"requests-request-{run_label}").set_value(int(picked["request"])).run()
    assert not at.exception, [e.value for e in at.exception]
    scale = time_unit(picked["last_token_us"] - picked["arrival_us"])[1]
    assert x_range(at) == pytest.approx([picked["arrival_us"] / scale, picked["last_token_us"] / scale])
    figure = figure_json(at)
    assert {s["type"] for s in figure["layout"]["shapes"]} == {"line"}  # arrival ... last token marked
    assert any(t["type"] == "bar" and len(t["y"]) for t in figure["data"])  # the run's lanes are drawn
    assert at.query_params["request"] in ([str(int(picked["request"]))], str(int(picked["request"])))
    assert at.query_params["sort"] in (["e2e_us"], "e2e_us")
    links = " ".join(m.value for m in at.markdown)
    assert "./timeline?" in links and "start=" in links


def test_a_shared_url_opens_that_request(folders, monkeypatch):
    cat = build_catalog([load_path(p) for p in folders.values()])
    run = runs_with_requests(cat).iloc[-1]
    table = run_requests(cat, run["folder"], run["run_id"], "queue_us")
    request = table.iloc[len(table) - 1]
    at = new_app(
        folders, monkeypatch, run=run["run_label"], sort="queue_us", request=str(int(request["request"]))
    ).run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="requests-run").value == run["run_label"]
    assert at.selectbox(key=f"requests-request-{run['run_label']}").value == int(request["request"])
    lo, hi = request_window(request)
    scale = time_unit(hi - lo)[1]
    assert x_range(at) == pytest.approx([lo / scale, hi / scale])


def bars_note(at: AppTest, title: str) -> str:
    return next(e.value for e in [*at.caption, *at.warning] if e.value.startswith(f"{title}: "))


def test_a_zoom_in_the_request_chart_requeries_that_window_and_a_double_click_goes_back(folders, monkeypatch):
    """The Requests page draws the Timeline page's zoomable chart: a zoom made in it re-queries the window and
    re-aggregates its bars (before: plotly only stretched the bars drawn); a double click (autorange) or "Back to
    the request" returns to the request's span, not to the whole run."""
    cat = build_catalog([load_path(p) for p in folders.values()])
    run = runs_with_requests(cat).iloc[0]
    table = run_requests(cat, run["folder"], run["run_id"], "e2e_us")
    request = table.iloc[0]  # the longest request: many ops in its window
    at = new_app(folders, monkeypatch, run=run["run_label"], sort="e2e_us", request=str(int(request["request"])))
    at.run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, [e.value for e in at.exception]
    chart = at.get("component_instance")
    assert len(chart) == 1 and not at.get("plotly_chart")  # the zoomable chart, not plotly's own
    args = json.loads(chart[0].proto.json_args)
    assert args["config"]["scrollZoom"] and args["config"]["doubleClick"] == "autosize"
    lo, hi = x_range(at)
    title = f"{run['run_id']} ({run['backend']})"
    span_note = bars_note(at, title)
    ops = read_run_ops(Path(run["folder"]), run["run_id"])
    # What the browser sends after a wheel zoom into the middle tenth of the request's window.
    z_lo, z_hi = lo + 0.45 * (hi - lo), lo + 0.55 * (hi - lo)
    key = f"requests-chart-{run['run_label']}"
    at.session_state[key] = {"id": "s-1", "unit_us": args["unit_us"], "relayout": {"xaxis.range": [z_lo, z_hi]}}
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    lo_us, hi_us = z_lo * args["unit_us"], z_hi * args["unit_us"]
    scale = time_unit(hi_us - lo_us)[1]
    assert x_range(at) == pytest.approx([lo_us / scale, hi_us / scale])
    view = timeline_view(ops, 1500, lo_us, hi_us)
    zoomed_note = bars_note(at, title)
    assert zoomed_note == f"{title}: {view.note()}" and zoomed_note != span_note  # the new window's ops
    assert at.button(key="requests-home")  # offered only while zoomed
    assert _query(at, "start") == f"{lo_us:.3f}" and _query(at, "end") == f"{hi_us:.3f}"  # a zoom is shareable
    assert f"Request {int(request['request'])}:" in " ".join(h.value for h in at.subheader)
    at.session_state[key] = {"id": "s-2", "unit_us": args["unit_us"], "relayout": {"xaxis.autorange": True}}
    at.run()
    scale = time_unit(request["last_token_us"] - request["arrival_us"])[1]
    home = [request["arrival_us"] / scale, request["last_token_us"] / scale]
    assert x_range(at) == pytest.approx(home) and bars_note(at, title) == span_note
    assert not [b for b in at.button if b.key == "requests-home"]
    assert "start" not in at.query_params and "end" not in at.query_params  # the request's own span: no zoom
    at.session_state[key] = {"id": "s-3", "unit_us": args["unit_us"], "relayout": {"xaxis.range": [z_lo, z_hi]}}
    at.run()
    at.button(key="requests-home").click().run()
    assert x_range(at) == pytest.approx(home)


def _query(at: AppTest, param: str) -> str | None:
    value = at.query_params.get(param)
    return value[0] if isinstance(value, list) else value


def test_a_shared_url_opens_that_request_zoomed_and_a_bad_window_opens_its_span(folders, monkeypatch):
    """A link carries the zoomed window of the request it names; a window that is not a number (a hand-edited
    link) opens the request's own span, with no error."""
    cat = build_catalog([load_path(p) for p in folders.values()])
    run = runs_with_requests(cat).iloc[0]
    request = run_requests(cat, run["folder"], run["run_id"], "e2e_us").iloc[0]
    lo, hi = request_window(request)
    z_lo, z_hi = lo + 0.25 * (hi - lo), lo + 0.5 * (hi - lo)
    link = {"run": run["run_label"], "sort": "e2e_us", "request": str(int(request["request"]))}
    at = new_app(folders, monkeypatch, **link, start=f"{z_lo:.3f}", end=f"{z_hi:.3f}").run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, [e.value for e in at.exception]
    scale = time_unit(z_hi - z_lo)[1]
    assert x_range(at) == pytest.approx([z_lo / scale, z_hi / scale], rel=1e-6)
    assert at.button(key="requests-home")
    at = new_app(folders, monkeypatch, **link, start="soon", end="nan").run()
    at.switch_page("views/requests.py").run()
    assert not at.exception, [e.value for e in at.exception]
    scale = time_unit(hi - lo)[1]
    assert x_range(at) == pytest.approx([lo / scale, hi / scale])
