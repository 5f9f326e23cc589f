"""End to end in a real headless browser: `harness dashboard` serves every page and the charts are drawn.

Drives a headless Chromium with the `playwright` package: ``$HARNESS_CHROMIUM`` if set, else the
distribution's (/usr/bin/chromium, `apt-get install chromium`), else Playwright's own build
(`python -m playwright install chromium`); no browser is downloaded at run time. Skips when none
is found or playwright is missing. Screenshots of every page go to test-artifacts/dashboard/.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from test_dashboard_support import BATCHING, DEMO, DashboardData, build

from dashboard.headless_chromium import CHROMIUM_ARGS

CHROMIUM_ENV = "HARNESS_CHROMIUM"
SYSTEM_CHROMIUM = (Path("/usr/bin/chromium"), Path("/usr/bin/chromium-browser"))
ARTIFACTS = Path(__file__).resolve().parent.parent / "test-artifacts" / "dashboard"
PLOT = ".js-plotly-plot .main-svg"
MARKS = ".js-plotly-plot .barlayer path, .js-plotly-plot .scatterlayer path, .js-plotly-plot .heatmaplayer image"
ZOOM_CHART = 'iframe[title*="timeline_chart"]'  # the Timeline page's zoomable chart (dashboard/zoom_chart.py)
# While a rerun replaces the chart, the old iframe lingers at height 0 beside the new one: aim at the drawn one.
DRAWN_ZOOM_CHART = f'{ZOOM_CHART}:not([height="0"])'

sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[test]')"
)


def _executable(path: Path) -> bool:
    return path.is_file() and os.access(path, os.X_OK)


def find_chromium() -> Path | None:
    """$HARNESS_CHROMIUM, the distribution's Chromium, or the one `playwright install chromium` put in its cache."""
    if os.environ.get(CHROMIUM_ENV):
        return Path(os.environ[CHROMIUM_ENV])  # named on purpose: a wrong path fails loudly below, never skips
    found = next((path for path in SYSTEM_CHROMIUM if _executable(path)), None)
    if found is None:
        with sync_api.sync_playwright() as pw:
            bundled = Path(pw.chromium.executable_path)
        found = bundled if _executable(bundled) else None
    return found


CHROMIUM = find_chromium()
if CHROMIUM is None:
    pytest.skip(
        "no Chromium found: install the distribution's (apt-get install chromium) or Playwright's "
        f"(python -m playwright install chromium), or set {CHROMIUM_ENV}, to run the browser test",
        allow_module_level=True,
    )


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DashboardData:
    return build(tmp_path_factory.mktemp("dashboard-e2e"))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(data, tmp_path_factory):
    port = free_port()
    log_path = tmp_path_factory.mktemp("dashboard-server") / "server.log"
    log = log_path.open("w")
    # `harness dashboard` execs the Streamlit server, so this process is the server itself.
    proc = subprocess.Popen(
        [sys.executable, "-m", "harness", "dashboard", str(data.root), "--port", str(port)],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while True:
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as reply:
                if reply.read() == b"ok":
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"the dashboard did not come up on {url}:\n{log_path.read_text()}")
        time.sleep(0.3)
    yield url
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
    log.close()


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture()
def page(browser):
    context = browser.new_context(viewport={"width": 1500, "height": 2000})
    page = context.new_page()
    yield page
    context.close()


def settle(page) -> None:
    """Wait until Streamlit has finished running the script."""
    page.wait_for_selector('[data-testid="stApp"][data-test-script-state="notRunning"]', timeout=30_000)
    page.wait_for_timeout(600)


def shoot(page, name: str, tmp_path: Path) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for folder in (ARTIFACTS, tmp_path):
        page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def no_exception(page) -> None:
    """No exception on the page, and the app's own navigation (not Streamlit's legacy file-name pages)."""
    assert page.locator('[data-testid="stException"]').count() == 0, page.locator(
        '[data-testid="stException"]'
    ).first.inner_text()
    assert page.locator('[data-testid="stSidebarNav"]').get_by_text("Compare policies").count() == 1


def choose(page, label: str, option_text: str) -> None:
    box = page.get_by_role("combobox", name=label, exact=True)
    box.click()
    page.keyboard.type(option_text)
    page.keyboard.press("Enter")
    settle(page)


# A sub-page is opened first on the fresh server on purpose: with a `pages/` folder beside the entry point,
# Streamlit would serve it as a legacy page (no sidebar, file names as titles) and no_exception() fails.
@pytest.mark.parametrize(
    "path, spec, name",
    [
        ("compare", "layer-streaming-demo", "2-compare"),
        ("fidelity", None, "4-fidelity"),
        ("sweep", "layer-streaming-sweep", "5-sweep"),
    ],
)
def test_chart_pages_draw_their_charts(server, page, tmp_path, path, spec, name):
    page.goto(f"{server}/{path}")
    settle(page)
    if spec:
        choose(page, "Experiment (spec)", spec)
    page.wait_for_selector(PLOT, timeout=30_000)
    no_exception(page)
    assert page.locator(PLOT).count() >= 1
    assert page.locator(MARKS).count() > 0  # bars, points or lines drawn, not an empty frame
    shoot(page, name, tmp_path)


def test_timeline_page_draws_sim_over_replay(server, page, tmp_path):
    page.goto(f"{server}/timeline")
    settle(page)
    choose(page, "Run", f"{DEMO.replace('_', '-')}:prefetch:sim")
    page.frame_locator(DRAWN_ZOOM_CHART).last.locator(PLOT).first.wait_for(timeout=30_000)
    no_exception(page)
    body = page.inner_text("body")
    assert (
        "layer-streaming-demo:prefetch:sim:r0 (sim)" in body
        and "layer-streaming-demo:prefetch:replay:r0 (replay)" in body
    )
    assert page.frame_locator(DRAWN_ZOOM_CHART).last.locator(".js-plotly-plot .barlayer path").count() > 20
    shoot(page, "3-timeline", tmp_path)
    page.get_by_role("button", name="Download", exact=True).click()  # the downloads are in a popover
    with page.expect_download() as html:
        page.get_by_role("button", name="Download figure (HTML)").click()
    figure = Path(html.value.path()).read_text()
    assert (
        html.value.suggested_filename.endswith("timeline.html") and "plotly" in figure and "copy engine h2d" in figure
    )
    with page.expect_download() as csv:
        page.get_by_role("button", name="Download bars of the first run (CSV)").click()
    assert Path(csv.value.path()).read_text().startswith("lane,lane_order,kind,name,start_us,end_us,bytes,n_ops")


def test_runs_page_lists_runs_and_names_broken_folders(server, page, tmp_path):
    page.goto(server)
    settle(page)
    page.wait_for_selector('[data-testid="stDataFrame"] canvas', timeout=30_000)
    no_exception(page)
    body = page.inner_text("body")
    assert "14 of 14 runs" in body
    assert "ops.parquet is missing" in body and "unreadable Parquet file" in body
    shoot(page, "1-runs", tmp_path)


def test_timeline_url_opens_a_zoomed_window_of_a_big_run_with_its_units(server, page, tmp_path):
    """A shared URL (run and window) opens that view; the axis is in ms, bars are drawn, nothing is reversed."""
    from urllib.parse import urlencode

    run = "batching-c1-window:window-10ms:sim:r0 @ batching_c1_window-sim"
    page.goto(f"{server}/timeline?" + urlencode({"run": run, "start": "1000000", "end": "1100000"}))
    settle(page)
    chart = page.frame_locator(ZOOM_CHART)
    chart.locator(PLOT).first.wait_for(timeout=30_000)
    no_exception(page)
    assert chart.locator(".js-plotly-plot .xtitle").first.text_content() == "time (ms)"
    assert chart.locator(".js-plotly-plot .barlayer path").count() > 3
    assert "outside this run" not in page.inner_text("body")
    page.get_by_role("button", name="Download", exact=True).click()  # the downloads are in a popover
    page.get_by_role("button", name="Download Perfetto trace").wait_for(timeout=10_000)
    page.keyboard.press("Escape")
    page.get_by_role("button", name="Whole run").click()
    settle(page)
    assert "exceed the bound" in page.inner_text("body") or "every op drawn" in page.inner_text("body")
    shoot(page, "6-timeline-window", tmp_path)


def test_compare_page_leads_with_the_winner(server, page, tmp_path):
    page.goto(f"{server}/compare?spec=layer-streaming-demo&backend=sim")
    settle(page)
    page.wait_for_selector(PLOT, timeout=30_000)
    no_exception(page)
    body = page.inner_text("body")
    assert "resident cuts makespan 55.4% against sync" in body and "lower is better" in body and "sim vs replay" in body


def plot_layout(page) -> dict:
    """The zoomable chart's layout as plotly holds it in the browser (the x range, the shapes, the bars)."""
    return page.evaluate(
        "(sel) => { const gd = document.querySelector(sel).contentDocument.querySelector('.js-plotly-plot');"
        " return {range: gd._fullLayout.xaxis.range, shapes: gd._fullLayout.shapes.length,"
        " bars: gd.querySelectorAll('.barlayer path').length}; }",
        ZOOM_CHART,
    )


def wait_for_chart(page) -> None:
    page.frame_locator(ZOOM_CHART).locator(".js-plotly-plot .barlayer path").first.wait_for(timeout=30_000)


def wait_for_range(page, expected: list[float], rel: float = 1e-6) -> None:
    """Wait until the zoomable chart has drawn the x range ``expected`` (it redraws after the script has run)."""
    page.wait_for_function(
        "([sel, want, rel]) => { const f = document.querySelector(sel);"
        " const gd = f && f.contentDocument && f.contentDocument.querySelector('.js-plotly-plot');"
        " const r = gd && gd._fullLayout && gd._fullLayout.xaxis && gd._fullLayout.xaxis.range;"
        " return !!r && r.every((v, i) => Math.abs(v - want[i]) <= rel * Math.abs(want[1] - want[0])); }",
        arg=[ZOOM_CHART, expected, rel],
        timeout=30_000,
        polling=200,
    )


def test_clicking_a_request_row_shows_the_timeline_around_that_request(server, data, page, tmp_path):
    """The per-request drill-down: a click on a row of the requests table draws the run from that request's arrival
    to its last token, with its milestones, and puts the request in the URL."""
    from urllib.parse import parse_qs, urlencode, urlparse

    from dashboard.catalog import build_catalog, load_path
    from dashboard.requests_view import request_window, run_requests, runs_with_requests
    from dashboard.timeline import time_unit

    cat = build_catalog([load_path(data.good[BATCHING])])
    run = runs_with_requests(cat).iloc[0]
    label = f"{run['run_id']} @ {data.good[BATCHING].name}"
    table = run_requests(cat, run["folder"], run["run_id"], "e2e_us")
    page.goto(f"{server}/requests?" + urlencode({"run": label, "sort": "e2e_us"}))
    settle(page)
    wait_for_chart(page)
    no_exception(page)
    first = int(table["request"].iloc[0])
    assert f"Request {first}:" in page.inner_text("body")  # before a click: the worst request by e2e

    row = 3  # the fourth row (worst first): a request other than the one shown
    wanted = table.iloc[row]
    assert int(wanted["request"]) != first
    grid = page.locator('[data-testid="stDataFrame"]').first
    box = grid.bounding_box()
    row_height = 35  # Streamlit's default row (and header) height
    # The row marker column (the selection checkbox) at the left of the row.
    page.mouse.click(box["x"] + 14, box["y"] + row_height * (row + 1) + row_height / 2)
    settle(page)
    wait_for_chart(page)
    no_exception(page)
    body = page.inner_text("body")
    assert f"Request {int(wanted['request'])}:" in body
    query = parse_qs(urlparse(page.url).query)
    assert query["request"] == [str(int(wanted["request"]))] and query["run"] == [label]
    lo, hi = request_window(wanted)
    scale = time_unit(hi - lo)[1]
    wait_for_range(page, [lo / scale, hi / scale])
    layout = plot_layout(page)
    assert layout["range"] == pytest.approx([lo / scale, hi / scale], rel=1e-6)
    assert layout["shapes"] >= 2 and layout["bars"] > 0  # arrival ... last token marked over the run's lanes
    shoot(page, "7-requests-click", tmp_path)


def settle_url(page) -> None:
    """Wait until the page's window (its URL) has stopped moving: a burst of wheel ticks may come as two zooms."""
    while True:
        url = page.url
        settle(page)
        page.wait_for_timeout(1000)
        if page.url == url:
            return


def bars_caption(page) -> str:
    """The line above the chart that says how many ops of the window are drawn, and how (a caption or a warning)."""
    return next(line for line in page.inner_text("body").splitlines() if "r0 (sim): " in line)


def test_wheel_zoom_over_the_timeline_requeries_the_bars_of_the_new_window(server, data, page, tmp_path):
    """Bug: the mouse wheel (and the toolbar's zoom) only stretched the bars drawn, merged bars stayed merged. Now
    the chart reports the x range, the page re-queries that window and draws its ops at its level of detail."""
    from urllib.parse import parse_qs, urlencode, urlparse

    from dashboard.timeline import in_window

    label = "batching-c1-window:window-10ms:sim:r0"
    run = f"{label} @ batching_c1_window-sim"
    ops = read_ops(data.good[BATCHING], label)
    page.goto(f"{server}/timeline?" + urlencode({"run": run}))
    settle(page)
    chart = page.frame_locator(ZOOM_CHART)
    chart.locator(".js-plotly-plot .barlayer path").first.wait_for(timeout=30_000)
    no_exception(page)
    before = bars_caption(page)
    assert f"{len(ops):,} ops" in before and "exceed the bound" in before  # the whole run: short ops merged
    frame = page.locator(ZOOM_CHART).bounding_box()
    plot = chart.locator(".js-plotly-plot .nsewdrag").first.bounding_box()  # the plot area, in page coordinates
    assert plot is not None and frame is not None
    page.mouse.move(plot["x"] + plot["width"] * 0.3, plot["y"] + plot["height"] / 2)
    for _ in range(12):  # many wheel ticks: one re-query after the chart's 250 ms debounce
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(30)
    page.wait_for_function(
        "() => new URL(location.href).searchParams.get('start') !== '0.000'", timeout=30_000, polling=200
    )
    settle_url(page)
    no_exception(page)
    query = parse_qs(urlparse(page.url).query)
    lo, hi = float(query["start"][0]), float(query["end"][0])
    assert 0 < lo < hi < float(ops["end_us"].max()) and hi - lo < 0.9 * float(ops["end_us"].max())
    after = bars_caption(page)
    n_inside = len(in_window(ops, lo, hi))
    assert after != before and after.split(" ops")[0].endswith(f"{n_inside:,}")  # the window's ops, re-queried
    drawn = page.evaluate(
        "(sel) => { const gd = document.querySelector(sel).contentDocument.querySelector('.js-plotly-plot');"
        " return gd._fullLayout.xaxis.range; }",
        ZOOM_CHART,
    )
    scale = 1e3 if "time (ms)" in chart.locator(".xtitle").first.text_content() else 1e6
    assert drawn == pytest.approx([lo / scale, hi / scale], rel=1e-3)  # the redrawn figure is that window
    shoot(page, "8-timeline-wheel-zoom", tmp_path)
    # A box dragged across the chart: that stretch, re-queried.
    y = plot["y"] + plot["height"] / 2
    page.mouse.move(plot["x"] + plot["width"] * 0.4, y)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] * 0.5, y, steps=5)
    page.mouse.move(plot["x"] + plot["width"] * 0.6, y, steps=5)
    page.mouse.up()
    page.wait_for_function(
        "(lo) => Number(new URL(location.href).searchParams.get('start')) > lo", arg=lo, timeout=30_000, polling=200
    )
    settle_url(page)
    query = parse_qs(urlparse(page.url).query)
    box_lo, box_hi = float(query["start"][0]), float(query["end"][0])
    assert lo < box_lo < box_hi < hi and box_hi - box_lo == pytest.approx(0.2 * (hi - lo), rel=0.15)
    assert bars_caption(page).split(" ops")[0].endswith(f"{len(in_window(ops, box_lo, box_hi)):,}")


def read_ops(folder: Path, run_id: str):
    from dashboard.catalog import read_run_ops

    return read_run_ops(folder, run_id)


def drag_across(page, plot: dict, lo_frac: float, hi_frac: float) -> None:
    """Drag a box across the chart's plot area from ``lo_frac`` to ``hi_frac`` of its width (select mode)."""
    y = plot["y"] + plot["height"] / 2
    page.mouse.move(plot["x"] + plot["width"] * lo_frac, y)
    page.mouse.down()
    page.mouse.move(plot["x"] + plot["width"] * (lo_frac + hi_frac) / 2, y, steps=5)
    page.mouse.move(plot["x"] + plot["width"] * hi_frac, y, steps=5)
    page.mouse.up()


def test_double_click_after_a_zoom_shows_the_whole_run_again(server, data, page, tmp_path):
    """Bug: in the chart's select mode (its default) a double click only cleared the selection: plotly runs no
    double-click reset there and emits no plotly_doubleclick or relayout, only plotly_deselect. Now a double click
    after a zoom re-queries the whole run, in select mode and in the toolbar's zoom mode."""
    from urllib.parse import parse_qs, urlencode, urlparse

    label = "batching-c1-window:window-10ms:sim:r0"
    ops = read_ops(data.good[BATCHING], label)
    run_end = float(ops["end_us"].max())
    page.goto(f"{server}/timeline?" + urlencode({"run": f"{label} @ batching_c1_window-sim"}))
    settle(page)
    chart = page.frame_locator(ZOOM_CHART)
    chart.locator(".js-plotly-plot .barlayer path").first.wait_for(timeout=30_000)
    whole = bars_caption(page)
    assert f"{len(ops):,} ops" in whole
    loaded = page.evaluate(
        "(sel) => document.querySelector(sel).contentWindow.performance.getEntriesByType('resource')"
        ".map((r) => new URL(r.name).pathname).filter((p) => p.endsWith('plotly.min.js'))",
        ZOOM_CHART,
    )
    assert loaded == ["/app/static/plotly.min.js"]  # the cacheable route, not the component's copy
    plot = chart.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    assert plot is not None

    def window() -> tuple[float, float]:
        query = parse_qs(urlparse(page.url).query)
        return float(query["start"][0]), float(query["end"][0])

    def double_click_resets() -> None:
        page.mouse.dblclick(plot["x"] + plot["width"] * 0.5, plot["y"] + plot["height"] / 2)
        page.wait_for_function(
            "() => new URL(location.href).searchParams.get('start') === '0.000'", timeout=30_000, polling=200
        )
        settle_url(page)
        no_exception(page)
        lo, hi = window()
        assert lo == 0.0 and hi == pytest.approx(run_end, abs=1e-3)
        assert bars_caption(page) == whole  # the whole run's ops, re-queried and drawn as before the zoom

    drag_across(page, plot, 0.4, 0.6)  # select mode: a dragged box zooms
    page.wait_for_function(
        "() => new URL(location.href).searchParams.get('start') !== '0.000'", timeout=30_000, polling=200
    )
    settle_url(page)
    lo, hi = window()
    assert 0 < lo < hi < run_end and bars_caption(page) != whole
    double_click_resets()
    shoot(page, "9-timeline-double-click", tmp_path)

    chart.locator('.modebar-btn[data-val="zoom"][data-attr="dragmode"]').first.click()  # the toolbar's zoom mode
    page.mouse.move(plot["x"] + plot["width"] * 0.3, plot["y"] + plot["height"] / 2)
    for _ in range(6):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(30)
    page.wait_for_function(
        "() => new URL(location.href).searchParams.get('start') !== '0.000'", timeout=30_000, polling=200
    )
    settle_url(page)
    assert window()[1] < run_end
    mode = page.evaluate(
        "(sel) => document.querySelector(sel).contentDocument.querySelector('.js-plotly-plot')._fullLayout.dragmode",
        ZOOM_CHART,
    )
    assert mode == "zoom"  # the redrawn window kept the toolbar's mode
    double_click_resets()


def test_wheel_zoom_over_a_requests_timeline_requeries_the_window(server, data, page, tmp_path):
    """Bug: the Requests page drew plotly's own chart, whose wheel and toolbar zoom only stretched the bars drawn.
    It now draws the Timeline page's zoomable chart: a zoom re-queries the new window and re-aggregates its bars,
    and a double click goes back to the request's span."""
    from urllib.parse import parse_qs, urlencode, urlparse

    from dashboard.catalog import build_catalog, load_path
    from dashboard.requests_view import request_window, run_requests, runs_with_requests
    from dashboard.timeline import in_window, time_unit

    cat = build_catalog([load_path(data.good[BATCHING])])
    run = runs_with_requests(cat).iloc[0]
    label = f"{run['run_id']} @ {data.good[BATCHING].name}"
    request = run_requests(cat, run["folder"], run["run_id"], "e2e_us").iloc[0]  # the longest: many ops
    ops = read_ops(data.good[BATCHING], run["run_id"])
    lo, hi = request_window(request)
    home = [lo / time_unit(hi - lo)[1], hi / time_unit(hi - lo)[1]]
    page.goto(f"{server}/requests?" + urlencode({"run": label, "sort": "e2e_us"}))
    settle(page)
    wait_for_chart(page)
    no_exception(page)
    wait_for_range(page, home)
    before = bars_caption(page)
    assert before.split(" ops")[0].endswith(f"{len(in_window(ops, lo, hi)):,}")
    chart = page.frame_locator(ZOOM_CHART)
    plot = chart.locator(".js-plotly-plot .nsewdrag").first.bounding_box()
    page.mouse.move(plot["x"] + plot["width"] * 0.5, plot["y"] + plot["height"] / 2)
    for _ in range(8):
        page.mouse.wheel(0, -300)
        page.wait_for_timeout(30)
    page.wait_for_function(
        "(before) => !document.body.innerText.includes(before)", arg=before, timeout=30_000, polling=200
    )
    settle_url(page)
    no_exception(page)
    link = page.get_by_role("link", name="Open this window on the Timeline page").get_attribute("href")
    query = parse_qs(urlparse(link).query)
    z_lo, z_hi = float(query["start"][0]), float(query["end"][0])
    assert lo < z_lo < z_hi < hi and z_hi - z_lo < 0.8 * (hi - lo)
    assert bars_caption(page).split(" ops")[0].endswith(f"{len(in_window(ops, z_lo, z_hi)):,}")  # re-queried
    scale = time_unit(z_hi - z_lo)[1]
    wait_for_range(page, [z_lo / scale, z_hi / scale], rel=1e-3)
    assert f"Request {int(request['request'])}:" in page.inner_text("body")
    shoot(page, "10-requests-wheel-zoom", tmp_path)
    page.mouse.dblclick(plot["x"] + plot["width"] * 0.5, plot["y"] + plot["height"] / 2)
    wait_for_range(page, home)
    settle(page)
    assert bars_caption(page) == before
