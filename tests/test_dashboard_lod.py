"""Issue 14: the dashboard's timelines never lie, pages answer at a glance, nothing is pooled that must not be.

Each test names the bug it would have caught. Pure functions first; the pages through AppTest.
"""

from __future__ import annotations

import gzip
import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_support import BATCHING, DEMO, DashboardData, build, shown_tables

from dashboard import compare, sources, sweep
from dashboard.catalog import Catalog, build_catalog, load_path, read_run_ops
from dashboard.export import perfetto_bytes
from dashboard.fidelity import derive_fidelity, fidelity_badge, fidelity_headline, number_text, signed_errors
from dashboard.figures import FLOW_NAME, policy_colours, signed_error_figure, timeline_figure
from dashboard.machines import machine_groups
from dashboard.timeline import (
    MAX_FLOW_BARS,
    format_duration,
    format_window,
    pan_window,
    resolve_window,
    search_ops,
    time_unit,
    timeline_view,
    window_from_relayout,
    zoom_window,
)
from harness.results import read_results, to_table, write_results

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> DashboardData:
    return build(tmp_path_factory.mktemp("dashboard-lod"))


def ops_frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["device", "stream", "kind", "name", "bytes", "start_us", "end_us"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame.assign(
        op_id=range(len(frame)), host_memory="", thread="main", issue_us=frame["start_us"] - 5.0
    ).astype({"device": "int32"})


def drawn_widths(fig) -> np.ndarray:
    return np.concatenate([np.asarray(t.x, dtype=float) for t in fig.data if t.type == "bar"])


# --------------------------------------------------------------------------- wrong or misleading today


def test_bars_are_not_drawn_wider_than_the_window_allows():
    """Bug: the minimum width was 0.05 % of the absolute end time: in a 10 ms window at t = 10 s every op was 5 ms."""
    rows = [(0, "compute", "kernel", f"k{i}", 0, 10e6 + 100.0 * i, 10e6 + 100.0 * i + 1.0) for i in range(100)]
    view = timeline_view(ops_frame(rows), start_us=10e6, end_us=10e6 + 10_000)
    fig = timeline_figure([("r", view)])
    assert fig.layout.xaxis.title.text == "time (ms)"
    widths_us = drawn_widths(fig) * 1e3
    assert widths_us.max() <= 10.0 + 1e-9  # 1 µs ops: at most 1/1000 of the 10 ms window, never 5 ms
    busy = widths_us.sum() / 10_000
    assert busy < 0.2  # 100 ops of 1 µs in 10 ms: the lane does not look busy


def test_merged_bars_keep_kernels_visible_among_waits():
    """Bug: merged bars of different kinds were overlaid, so a compute stream showed as one solid 'wait' bar."""
    rows = []
    for i in range(20_000):
        t = 10.0 * i
        rows.append((0, "compute", "kernel", "gemm", 0, t, t + 8.0))
        rows.append((0, "compute", "wait", f"event{i}", 0, t + 8.0, t + 8.0))
    view = timeline_view(ops_frame(rows), max_bars=1000)
    assert view.merged and len(view.bars) <= 1000
    on_lane = view.bars[view.bars["lane"] == "gpu0 stream compute"]
    assert set(on_lane["kind"]) == {"kernel"}  # the kind that keeps the lane busy colours the bar
    assert on_lane["busy_frac"].between(0.75, 0.85).all()  # 8 µs of every 10 µs
    assert on_lane["kinds"].str.contains("wait").all() and on_lane["kinds"].str.startswith("kernel").all()
    assert on_lane["n_ops"].sum() == len(rows)
    ordered = on_lane.sort_values("start_us")
    assert (ordered["start_us"].to_numpy()[1:] >= ordered["end_us"].to_numpy()[:-1] - 10.0).all()  # side by side


def test_aggregation_keeps_detail_and_follows_the_bound():
    """Bug: 1.34 M ops became 5 bars; 3,376 ops (just over the 3,000 cap) became 2; raising the cap changed nothing."""
    rng = np.random.default_rng(1)
    n = 3_376
    start = np.sort(rng.uniform(0, 10e6, n))
    rows = [(0, "gpu", "kernel", "decode", 0, s, s + 2000.0) for s in start]
    small = timeline_view(ops_frame(rows), max_bars=3000)
    assert small.merged and len(small.bars) > 1000
    bigger = timeline_view(ops_frame(rows), max_bars=6000)
    assert not bigger.merged and len(bigger.bars) == n  # raising the cap shows every op
    big = pd.DataFrame(
        {
            "device": np.zeros(400_000, dtype="int32"),
            "stream": pd.Categorical(["gpu"] * 400_000),
            "kind": pd.Categorical(["kernel"] * 400_000),
            "name": pd.Categorical(["decode"] * 400_000),
            "bytes": 0,
            "start_us": np.arange(400_000) * 10.0,
            "end_us": np.arange(400_000) * 10.0 + 7.0,
            "issue_us": np.arange(400_000) * 10.0 - 1.0,
        }
    )
    view = timeline_view(big, max_bars=3000)
    assert 1000 <= len(view.bars) <= 3000 and view.bars["n_ops"].sum() == len(big)
    assert view.bars["busy_us"].sum() == pytest.approx(7.0 * len(big))  # busy time is conserved


def test_zooming_in_reaggregates_down_to_single_ops():
    rows = [(0, "gpu", "kernel", f"k{i}", 0, 10.0 * i, 10.0 * i + 5.0) for i in range(50_000)]
    ops = ops_frame(rows)
    whole = timeline_view(ops, max_bars=2000)
    assert whole.merged
    lo, hi = zoom_window(0.0, 500_000.0, 1 / 64, 500_000.0)
    zoomed = timeline_view(ops, max_bars=2000, start_us=lo, end_us=hi)
    assert not zoomed.merged and set(zoomed.bars["name"]) <= {f"k{i}" for i in range(50_000)}
    assert pan_window(0.0, 100.0, -0.5, 1000.0) == (0.0, 100.0)  # never before the run


def test_a_stale_window_becomes_the_whole_run_with_a_message():
    """Bug: after switching runs the old window stayed: an empty chart with a reversed axis and no message."""
    assert resolve_window(None, None, 500.0) == (0.0, 500.0, "")
    assert resolve_window(100.0, 200.0, 500.0) == (100.0, 200.0, "")
    lo, hi, note = resolve_window(9e6, 9.01e6, 500.0)
    assert (lo, hi) == (0.0, 500.0) and "outside this run" in note
    lo, hi, note = resolve_window(300.0, 100.0, 500.0)  # reversed
    assert (lo, hi) == (0.0, 500.0) and note


def test_a_zoom_or_pan_in_the_browser_gives_the_window_to_requery():
    """Bug: wheel zoom and the toolbar's zoom only stretched the bars drawn; the page never heard of them."""
    ms, run_end, window = 1e3, 10_000.0, (2_000.0, 4_000.0)  # the figure's axis in ms, the window in µs

    def moved(relayout, window=window):
        return window_from_relayout(relayout, ms, window, run_end)

    assert moved({"xaxis.range": [2.5, 3.0]}) == (2_500.0, 3_000.0)  # wheel or toolbar zoom
    assert moved({"xaxis.range[0]": 2.5, "xaxis.range[1]": 3.0}) == (2_500.0, 3_000.0)
    assert moved({"xaxis2.range[0]": 2.5, "xaxis2.range[1]": 3.0}) == (2_500.0, 3_000.0)  # the run drawn below
    assert moved({"xaxis.range[0]": 3.0}) == (3_000.0, 4_000.0)  # one end dragged: the other stays
    assert moved({"xaxis.range[1]": 3.5}) == (2_000.0, 3_500.0)
    assert moved({"xaxis.range": [3.0, 2.5]}) == (2_500.0, 3_000.0)  # reversed: put in order
    assert moved({"xaxis.autorange": True}) == (0.0, run_end)  # double click: the whole run
    home = (2_500.0, 2_600.0)  # a page's own start (the Requests page: the request's span)
    assert window_from_relayout({"xaxis.autorange": True}, ms, window, run_end, home) == home
    assert window_from_relayout({"xaxis.autorange": True}, ms, home, run_end, home) is None  # already there
    assert moved({"xaxis.autorange": True, "xaxis.range": [2.5, 3.0]}) == (2_500.0, 3_000.0)
    assert moved({"xaxis.range": [9.0, 11.0]}) == (8_000.0, run_end)  # panned past the end: stops there, same span
    assert moved({"xaxis.range": [-1.0, 0.5]}) == (0.0, 1_500.0)
    assert moved({"xaxis.range": [-5.0, 50.0]}) == (0.0, run_end)  # wider than the run: the run
    assert moved({"xaxis.range": [20.0, 30.0]}) == (0.0, run_end)  # wholly outside the run, wider than it
    assert moved({"xaxis.range": [12.0, 13.0]}) == (9_000.0, run_end)  # wholly outside: the run's last stretch
    # Nothing to do: no x key, the same window, an empty or unreadable range, no event.
    for relayout in ({"yaxis.range": [0, 1]}, {"autosize": True}, {"xaxis.range": [2.0, 4.0]}, None, {}):
        assert moved(relayout) is None
    assert moved({"xaxis.range": [3.0, 3.0]}) is None and moved({"xaxis.range": ["a", None]}) is None
    assert moved({"xaxis.range[0]": float("nan")}) is None and moved({"xaxis.autorange": True}, (0.0, run_end)) is None
    assert window_from_relayout({"xaxis.range": [1, 2]}, 0.0, window, run_end) is None


def test_a_zoom_in_the_chart_requeries_the_window_on_the_page(data, monkeypatch):
    """The page applies the chart's zoom once, before drawing: the bars drawn are those of the new window."""
    run = f"{DEMO.replace('_', '-')}:sync:sim:r0 @ {data.good[DEMO].name}"
    at = new_app(data, monkeypatch, run=run, vs="(none)").run()
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    chart = at.get("component_instance")[0]
    args = json.loads(chart.proto.json_args)
    lo, hi = figure_json(at)["layout"]["xaxis"]["range"]
    unit_us = args["unit_us"]
    assert args["config"]["scrollZoom"] and figure_json(at)["layout"]["yaxis"]["fixedrange"]
    whole = [c.value for c in at.caption if "ops, every op drawn" in c.value or "exceed the bound" in c.value]
    # What the browser sends after a wheel zoom into the first tenth of the run.
    key = f"timeline-chart-{run}-(none)"  # the chart's widget key: one chart per pair of runs
    zoom = {"id": "s-1", "unit_us": unit_us, "relayout": {"xaxis.range[0]": lo, "xaxis.range[1]": lo + (hi - lo) / 10}}
    at.session_state[key] = zoom
    at.run()
    assert not at.exception, [e.value for e in at.exception]
    new_lo, new_hi = figure_json(at)["layout"]["xaxis"]["range"]
    scale = time_unit((hi - lo) / 10 * unit_us)[1]
    assert new_lo * scale == pytest.approx(lo * unit_us) and new_hi * scale == pytest.approx(
        (lo + (hi - lo) / 10) * unit_us
    )
    end = at.query_params["end"]
    assert float(end[0] if isinstance(end, list) else end) == pytest.approx((lo + (hi - lo) / 10) * unit_us, rel=1e-6)
    tenth = [c.value for c in at.caption if "ops, every op drawn" in c.value or "exceed the bound" in c.value]
    assert tenth != whole
    at.button(key="timeline-out").click().run()  # the chart's last value is not applied again: the button wins
    out_lo, out_hi = figure_json(at)["layout"]["xaxis"]["range"]
    assert (out_hi - out_lo) == pytest.approx(2 * (new_hi - new_lo))


def test_the_zoomable_chart_gets_plotly_from_the_cacheable_static_route(monkeypatch):
    """Slow page loads: Streamlit serves component files without a validator or lifetime, so every Timeline load
    fetched and compiled plotly.js (4.8 MB) again. The chart loads it from the app's static folder first, copied
    with the package file's time (its Last-Modified), and `harness dashboard` serves that folder."""
    import os

    from dashboard import zoom_chart
    from harness.cli import dashboard as cli

    folder, why = zoom_chart.chart_folder()
    assert folder is not None, why
    static = zoom_chart.STATIC / "plotly.min.js"
    assert static.stat().st_size == zoom_chart.PLOTLY_JS.stat().st_size
    assert static.stat().st_mtime == pytest.approx(zoom_chart.PLOTLY_JS.stat().st_mtime, abs=1e-3)
    assert zoom_chart.STATIC.parent == Path(APP).parent  # Streamlit serves <app.py's folder>/static
    page = (zoom_chart.SOURCE / "index.html").read_text()
    assert page.index('src="../../app/static/plotly.min.js"') < page.index('<script src="plotly.min.js">')
    started = {}
    monkeypatch.setattr(os, "execve", lambda exe, command, env: started.update(command=command))
    cli.dashboard([Path("results")], "127.0.0.1", 8501)
    command = started["command"]
    assert command[command.index("--server.enableStaticServing") + 1] == "true"


def test_without_the_zoomable_chart_the_page_draws_plotlys_own_and_says_what_zooms(data, monkeypatch):
    """The fallback: Streamlit's plotly chart (drag-select re-aggregates), named on the page, also when the
    component's files cannot be served."""
    from dashboard import ui

    run = f"{DEMO.replace('_', '-')}:sync:sim:r0 @ {data.good[DEMO].name}"
    at = new_app(data, monkeypatch, run=run, vs="(none)").run()
    at.switch_page("views/timeline.py").run()
    at.toggle(key="timeline-zoomable").set_value(False).run()
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.get("plotly_chart")) == 1 and not at.get("component_instance")
    assert any(c.value.startswith("Plain chart: drag across it") for c in at.caption)
    monkeypatch.setattr(ui, "_zoom_chart", lambda: (None, "no plotly.min.js"))
    at = new_app(data, monkeypatch, run=run, vs="(none)").run()
    at.switch_page("views/timeline.py").run()
    assert not at.exception and len(at.get("plotly_chart")) == 1
    assert any("cannot be served here: no plotly.min.js" in c.value for c in at.caption)


def test_sweep_lines_are_configurations_not_policies():
    """Bug: the sweep grouped by policy, so four adaptive configurations were averaged as 'n = 4' repetitions."""
    frame = pd.DataFrame(
        {
            "policy": ["adaptive"] * 4 + ["fixed"] * 2,
            "param.max_wait_us": [1000.0, 1000.0, 3000.0, 3000.0, np.nan, np.nan],
            "param.batch": [8.0, 16.0, 8.0, 16.0, 8.0, 16.0],
            "value": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        }
    )
    line = sweep.sweep_line(frame, "param.batch")
    assert (line["n"] == 1).all() and len(line) == 6
    assert set(line["configuration"]) == {"adaptive (max_wait_us=1000)", "adaptive (max_wait_us=3000)", "fixed"}
    assert (line["min"] <= line["mean"]).all() and (line["min"] >= 0).all()  # whiskers stay within the data
    grid = sweep.sweep_grid(frame, "param.batch", "param.max_wait_us", "adaptive")
    assert grid.loc[3000.0, 16.0] == 40.0


def _retag(folder: Path, out: Path, device: str) -> Path:
    res = read_results(folder)
    runs = res.runs.assign(device_name=device)
    return write_results(
        out,
        {"runs": to_table("runs", runs), "ops": to_table("ops", res.ops), "metrics": to_table("metrics", res.metrics)},
    )


def test_replays_of_different_machines_are_never_pooled(data, tmp_path):
    """Bug: Compare pooled H100 and H200 replays as 21 repetitions; Fidelity refused several machines together."""
    h100 = _retag(data.good["replay"], tmp_path / "replay-h100", "NVIDIA H100")
    h200 = _retag(data.good["replay"], tmp_path / "replay-h200", "NVIDIA H200")
    cat = build_catalog([load_path(p) for p in (data.good[DEMO], h100, h200)])
    groups = machine_groups(cat.runs[cat.runs["spec_name"] == "layer-streaming-demo"])
    assert sorted(groups) == ["replay · NVIDIA H100", "replay · NVIDIA H200", "sim"]
    assert all(g["device_name"].nunique() == 1 for g in groups.values())
    derived = derive_fidelity(cat)
    assert not derived.message
    pairs = derived.table
    assert sorted(pairs["device_name"].unique()) == ["NVIDIA H100", "NVIDIA H200"]
    assert (pairs["n_replay"] == 1).all()  # one repetition per machine, not two pooled
    assert "NVIDIA H100" in fidelity_badge(pairs, "layer-streaming-demo", "makespan_us")


def test_fidelity_values_keep_every_digit():
    """Bug: the fidelity table showed 1,281,151.68 as `281151.680000`."""
    assert number_text(1_281_151.68) == "1,281,151.68"
    assert number_text(0.01234) == "0.01234" and number_text(float("nan")) == "-"


def test_the_change_table_leaves_out_the_baseline_and_explains_a_zero_baseline():
    """Bug: `None` where the baseline is 0, and a column for the baseline against itself."""
    values = pd.DataFrame(
        {
            "policy_label": ["sync", "prefetch", "sync", "prefetch", "sync", "prefetch"],
            "metric": ["makespan_us", "makespan_us", "fallbacks", "fallbacks", "zero", "zero"],
            "value": [300.0, 200.0, 0.0, 3.0, 0.0, 0.0],
        }
    )
    summary = compare.metric_summary(values)
    table = compare.change_table(compare.relative_change(summary, "sync"), "sync", units={"fallbacks": "count"})
    assert list(table.columns) == ["prefetch"]
    assert table.loc["makespan_us", "prefetch"] == "-33.3 %"
    assert table.loc["fallbacks", "prefetch"] == "baseline 0, +3"
    assert table.loc["zero", "prefetch"] == "0 (both 0)"
    assert not table.isin(["None"]).any().any() and not table.isna().any().any()


# --------------------------------------------------------------------------- headlines, units, hover


def test_the_compare_headline_names_the_winner_the_margin_and_the_better_side():
    values = pd.DataFrame(
        {
            "policy_label": ["sync", "prefetch", "resident", "sync", "prefetch", "resident"],
            "metric": ["makespan_us"] * 3 + ["h2d_busy_frac"] * 3,
            "value": [338_000.0, 206_000.0, 151_000.0, 0.5, 0.9, 0.0],
        }
    )
    summary = compare.metric_summary(values)
    line = compare.headline(summary, "makespan_us", "us")
    assert line.winner == "resident" and line.direction == "lower"
    # the CLI's verdict (harness.verdict), against the first policy unless the page's baseline says otherwise
    assert line.text.startswith("**resident** cuts makespan 55.3% against sync (338 ms -> 151 ms; lower is better).")
    assert "Others against sync: prefetch -39.1% (206 ms)." in line.text
    other = compare.headline(summary, "makespan_us", "us", baseline="prefetch")
    assert other.text.startswith("**resident** cuts makespan 26.7% against prefetch (206 ms -> 151 ms")
    recorded = pd.DataFrame(
        {
            "policy_label": ["as_recorded", "prefetch_copies"] * 2,
            "metric": ["makespan_us"] * 2 + ["recorded_makespan_us"] * 2,
            "value": [41_211.0, 26_313.0, 41_266.0, 41_266.0],
        }
    )
    whatif = compare.headline(compare.metric_summary(recorded), "makespan_us", "us", workload="recorded")
    assert whatif.text.endswith("Predicted against the recording (41.3 ms): prefetch_copies -36.2%, as_recorded -0.1%.")
    neutral = compare.headline(summary, "h2d_busy_frac", "fraction")
    assert neutral.winner == "" and "90.0%" in neutral.text
    assert compare.better_direction("tokens_per_s") == "higher" and compare.better_direction("h2d_bytes") is None
    assert compare.format_value(2.5e9, "bytes") == "2.5 GB" and compare.format_value(0.25, "fraction") == "25.0%"


def test_time_units_follow_the_window():
    assert time_unit(500.0) == ("µs", 1.0) and time_unit(10_000.0) == ("ms", 1e3) and time_unit(5e6) == ("s", 1e6)
    assert format_duration(1500.0) == "1.5 ms" and format_duration(850.0) == "850 µs"
    assert format_duration(12.3e6) == "12.3 s"


def test_a_window_late_in_a_run_is_labelled_with_ends_that_differ():
    """Bug: a 2 ms window at t = 10 s was labelled "10 s to 10 s" (each end rounded to three digits on its own)."""
    assert format_window(10e6, 10.002e6) == "10,000.00 ms to 10,002.00 ms"
    assert format_window(0.0, 18.3e6) == "0.0 s to 18.3 s"
    assert format_window(1_000.0, 1_000.5) == "1,000.000 µs to 1,000.500 µs"
    assert format_window(5.0, 5.0) == "5.000 µs to 5.000 µs"


def test_hover_gives_launch_latency_and_bandwidth():
    rows = [(0, "copy", "copy_h2d", "params[0]", 1_000_000_000, 100.0, 100_100.0)]
    fig = timeline_figure([("r", timeline_view(ops_frame(rows)))])
    hover = " ".join(h for t in fig.data for h in t.hovertext)
    assert "launch latency 5 µs" in hover and "10.00 GB/s" in hover and "1.000 GB" in hover
    assert "params[0]" in list(fig.data[0].text)  # a wide op carries its name


def test_merged_bars_show_their_busy_fraction_as_shade():
    rows = [(0, "gpu", "kernel", "k", 0, 10.0 * i, 10.0 * i + 2.0) for i in range(10_000)]
    view = timeline_view(ops_frame(rows), max_bars=200)
    fig = timeline_figure([("r", view)])
    opacity = np.asarray(fig.data[0].marker.opacity, dtype=float)
    assert np.allclose(opacity, 0.3 + 0.7 * 0.2, atol=0.02)  # 20 % busy: a light bar, not a solid one


def flow_points(fig) -> list[tuple[tuple[float, str], tuple[float, str]]]:
    """The launch arrows drawn: ((x, lane) of the call, (x, lane) of the start) per arrow."""
    traces = [t for t in fig.data if t.name == FLOW_NAME]
    assert len(traces) <= 1
    if not traces:
        return []
    x, y = list(traces[0].x), list(traces[0].y)
    return [((x[i], y[i]), (x[i + 1], y[i + 1])) for i in range(0, len(x), 3)]


def launched_ops(n_kernels: int, *, copies: bool = True, period_us: float = 100.0) -> pd.DataFrame:
    """A host thread that launches kernels (and copies) on one GPU stream; its host ops give it a lane."""
    rows = []
    for i in range(n_kernels):
        t = period_us * i
        rows.append((0, "compute", "kernel", f"k{i}", 0, t + 10.0, t + 60.0))
        rows.append((-1, "main", "host_work", f"prep{i}", 0, t, t + 4.0))
        rows.append((0, "compute", "record", f"done{i}", 0, t + 60.0, t + 60.0))  # no arrow: no work launched
        if copies:
            rows.append((0, "compute", "copy_h2d", f"c{i}", 1 << 20, t + 60.0, t + 80.0))
    return ops_frame(rows).assign(issue_us=lambda f: f["start_us"] - 7.0)


def test_launch_arrows_join_the_call_on_the_thread_lane_to_the_start_on_the_stream_lane():
    """What Perfetto and Nsight Systems draw: a flow from the launch to the kernel (or copy). The call is the op's
    issue time on its launching thread's lane, the end is the op's start on its stream lane, never its copy engine
    lane, in the figure's unit."""
    ops = launched_ops(10)
    view = timeline_view(ops, start_us=0.0, end_us=1_000.0)
    assert not view.merged and len(view.bars) <= MAX_FLOW_BARS
    fig = timeline_figure([("r", view)])
    scale = time_unit(1_000.0)[1]
    device = ops[ops["kind"].isin(["kernel", "copy_h2d"])]
    expected = sorted(
        ((issue / scale, "host thread main"), (start / scale, "gpu0 stream compute"))
        for issue, start in zip(device["issue_us"], device["start_us"])
    )
    drawn = sorted(flow_points(fig))  # 20 arrows: 10 kernels, 10 copies
    assert [(a[1], b[1]) for a, b in drawn] == [(a[1], b[1]) for a, b in expected]  # lanes
    times = [x for a, b in drawn for x in (a[0], b[0])]
    assert times == pytest.approx([x for a, b in expected for x in (a[0], b[0])])  # call, start of each arrow
    assert not [f for f in view.flows.itertuples() if "copy engine" in f.to_lane]
    hover = " ".join(h for t in fig.data if t.name == FLOW_NAME for h in t.hovertext)
    assert "launch latency 7 µs" in hover
    assert not flow_points(timeline_figure([("r", view)], flows=False))  # the page's switch: off
    # A device op whose thread has no lane in the window (no host op of its own there) gets no arrow.
    other = ops.assign(thread=np.where(ops["name"] == "k3", "loader", "main"))
    assert len(timeline_view(other, start_us=0.0, end_us=1_000.0).flows) == len(view.flows) - 1
    # The lower run of a pair gets its own arrows on its own axes.
    pair = timeline_figure([("a", view), ("b", view)])
    assert [t.yaxis for t in pair.data if t.name == FLOW_NAME] == ["y", "y2"]


def test_launch_arrows_vanish_when_bars_are_merged_or_too_many_to_read():
    """Arrows over merged bars would point at ops that are not drawn; past MAX_FLOW_BARS single bars they are a
    hatching. Zooming in (a window of few ops) brings them back."""
    ops = launched_ops(2_000, copies=False)
    merged = timeline_view(ops, max_bars=1500)
    assert merged.merged and merged.flows.empty and not flow_points(timeline_figure([("r", merged)]))
    many = timeline_view(ops, max_bars=50_000)  # every op single, but 4,000 bars
    assert not many.merged and len(many.bars) > MAX_FLOW_BARS and not flow_points(timeline_figure([("r", many)]))
    few = timeline_view(ops, max_bars=1500, start_us=0.0, end_us=3_000.0)  # zoomed in: 30 launches, 91 bars
    assert not few.merged and len(flow_points(timeline_figure([("r", few)]))) == 30


def test_search_finds_ops_by_name():
    rows = [(0, "gpu", "kernel", name, 0, float(i), i + 0.5) for i, name in enumerate(["gemm", "decode", "Decode2"])]
    found, total = search_ops(ops_frame(rows).astype({"name": "category"}), "decode")
    assert total == 2 and list(found["name"]) == ["decode", "Decode2"]


def test_policy_colours_are_the_same_on_every_page():
    universe = ["sync", "prefetch", "resident"]
    assert policy_colours(["resident"], universe)["resident"] == policy_colours(universe, universe)["resident"]


def test_signed_errors_and_the_fidelity_headline(data):
    cat = build_catalog([load_path(p) for p in (data.good[DEMO], data.good["replay"])])
    pairs = derive_fidelity(cat).table
    timed = pairs[pairs["metric"] == "makespan_us"]
    line = fidelity_headline(timed)
    assert "20.0% median, 20.0% worst" in line and "under-predicts in 100%" in line and "4 of 1" not in line
    errors = signed_errors(timed)
    assert np.allclose(errors["error_pct"], -20.0)
    assert len(signed_error_figure(errors, 0.1).data) == 1


# --------------------------------------------------------------------------- lazy loading


def test_ops_are_read_per_run_and_window_never_up_front(data):
    cat = build_catalog([load_path(data.good[BATCHING])])
    assert not hasattr(cat, "ops") and "ops" not in Catalog.__dataclass_fields__
    assert cat.folders[0].results.n_ops == len(read_results(data.good[BATCHING]).ops)
    run = cat.runs["run_id"].iloc[0]
    ops = cat.run_ops(str(data.good[BATCHING]), run)
    assert len(ops) == int(cat.runs["n_ops"].iloc[0]) and "run_id" not in ops.columns
    assert isinstance(ops["name"].dtype, pd.CategoricalDtype)
    window = read_run_ops(data.good[BATCHING], run, 1e6, 2e6)
    assert 0 < len(window) < len(ops) and (window["end_us"] >= 1e6).all() and (window["start_us"] <= 2e6).all()


def test_a_corrupt_ops_file_is_still_reported(data, tmp_path):
    folder = shutil.copytree(data.good[DEMO], tmp_path / "bad-ops")
    (folder / "ops.parquet").write_bytes(b"garbage")
    assert "ops.parquet: unreadable Parquet file" in load_path(folder).error


def test_the_perfetto_download_is_a_trace(data):
    run = read_results(data.good[DEMO]).runs["run_id"].iloc[0]
    trace = json.loads(gzip.decompress(perfetto_bytes(read_run_ops(data.good[DEMO], run), run)))
    assert trace["traceName"] == run and any(e.get("cat") == "kernel" for e in trace["traceEvents"])


# --------------------------------------------------------------------------- the pages


def new_app(data, monkeypatch, **query) -> AppTest:
    monkeypatch.setenv(sources.DIRS_ENV, str(data.root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(query)
    return at


def figure_json(at: AppTest, index: int = 0) -> dict:
    """The figure drawn: by the Timeline page's zoomable chart (its arguments) or by st.plotly_chart."""
    charts = [json.loads(json.loads(e.proto.json_args)["figure"]) for e in at.get("component_instance")]
    return (charts + [json.loads(e.proto.spec) for e in at.get("plotly_chart")])[index]


def test_timeline_window_comes_from_the_url_and_never_outlives_its_run(data, monkeypatch):
    at = new_app(data, monkeypatch).run()
    at.switch_page("views/timeline.py").run()
    big = next(o for o in at.selectbox(key="timeline-run").options if o.startswith("batching-c1-window"))
    at = new_app(data, monkeypatch, run=big, start="1000000", end="1010000").run()
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="timeline-run").value == big
    layout = figure_json(at)["layout"]
    assert layout["xaxis"]["title"]["text"] == "time (ms)" and layout["xaxis"]["range"] == [1000.0, 1010.0]
    at.button(key="timeline-out").click().run()
    lo, hi = figure_json(at)["layout"]["xaxis"]["range"]
    assert lo < 1000.0 and hi > 1010.0
    demo = next(o for o in at.selectbox(key="timeline-run").options if o.startswith("layer-streaming-demo:sync:sim"))
    at.selectbox(key="timeline-run").set_value(demo).run()
    assert not at.exception
    lo, hi = figure_json(at)["layout"]["xaxis"]["range"]
    assert 0 <= lo < hi  # a fresh window for the new run: never reversed, never empty
    assert at.query_params["run"] == [demo] or at.query_params["run"] == demo


def test_compare_page_answers_first_and_keeps_its_state_in_the_url(data, monkeypatch):
    at = new_app(data, monkeypatch, spec="layer-streaming-demo", backend="sim").run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="compare-spec").value == "layer-streaming-demo"
    text = " ".join(m.value for m in at.markdown)
    assert "**resident** cuts makespan 55.4% against sync (338 ms -> 151 ms; lower is better)." in text
    assert any("sim vs replay" in s.value for s in at.success)  # the fidelity badge: a replay is loaded
    assert at.selectbox(key="compare-backend").options == ["replay", "sim"]


def test_fidelity_page_leads_with_a_headline_and_a_signed_error_chart(data, monkeypatch):
    at = new_app(data, monkeypatch).run()
    at.switch_page("views/fidelity.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("the simulator is within" in m.value for m in at.markdown)
    assert len(at.get("plotly_chart")) == 2


# --------------------------------------------------------------------------- each bug, as drawn or shown
# The tests above check the tables behind the pictures; these check the pictures (the figure handed to the
# browser, or the page) for each bug of the issue's "wrong or misleading" list.


def bars_per_trace(fig) -> dict[str, int]:
    return {t.name: len(t.y) for t in fig.data if t.type == "bar"}


def test_drawn_merged_bars_of_a_compute_stream_are_kernels_not_one_wait_bar():
    """Bug: a compute stream showed as one solid 'wait' bar; kernels and copies vanished from the chart."""
    rows = []
    for i in range(20_000):
        t = 10.0 * i
        rows.append((0, "compute", "kernel", "gemm", 0, t, t + 8.0))
        rows.append((0, "compute", "wait", f"event{i}", 0, t + 8.0, t + 8.0))
        rows.append((0, "side", "copy_h2d", "params", 1 << 20, t, t + 6.0))
    fig = timeline_figure([("r", timeline_view(ops_frame(rows), max_bars=1000))])
    drawn = {t.name: list(t.y) for t in fig.data if t.type == "bar"}
    assert "gpu0 stream compute" in drawn["kernel"] and "gpu0 stream compute" not in drawn.get("wait", [])
    assert {"gpu0 stream side", "gpu0 copy engine h2d"} <= set(drawn["copy_h2d"])  # copies drawn on both lanes
    assert len(drawn["kernel"]) > 100  # many bars side by side, not one


def test_drawn_bars_follow_the_bound_and_raising_it_shows_every_op():
    """Bug: 1.34 M ops were drawn as 5 bars, 3,376 ops as 2, and raising the cap changed nothing."""
    rng = np.random.default_rng(1)
    start = np.sort(rng.uniform(0, 10e6, 3_376))
    ops = ops_frame([(0, "gpu", "kernel", "decode", 0, s, s + 2000.0) for s in start])
    capped = sum(bars_per_trace(timeline_figure([("r", timeline_view(ops, max_bars=3000))])).values())
    raised = sum(bars_per_trace(timeline_figure([("r", timeline_view(ops, max_bars=6000))])).values())
    assert 1000 < capped <= 3000 and raised == len(ops)
    n = 1_340_000
    big = pd.DataFrame(
        {
            "device": np.zeros(n, dtype="int32"),
            "stream": pd.Categorical(["gpu"] * n),
            "kind": pd.Categorical(["kernel"] * n),
            "name": pd.Categorical(["decode"] * n),
            "bytes": 0,
            "start_us": np.arange(n) * 10.0,
            "end_us": np.arange(n) * 10.0 + 7.0,
            "issue_us": np.arange(n) * 10.0 - 1.0,
        }
    )
    drawn = sum(bars_per_trace(timeline_figure([("r", timeline_view(big, max_bars=1500))])).values())
    assert 500 <= drawn <= 1500


def test_a_stale_window_from_the_url_is_named_on_the_page_and_the_axis_is_the_run(data, monkeypatch):
    """Bug: a window kept from another run drew an empty chart with a reversed axis and no message."""
    run = f"{DEMO.replace('_', '-')}:sync:sim:r0 @ {data.good[DEMO].name}"
    at = new_app(data, monkeypatch, run=run, vs="(none)", start="9000000000", end="9000010000").run()
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert any("outside this run" in w.value for w in at.warning)
    lo, hi = figure_json(at)["layout"]["xaxis"]["range"]
    makespan = read_run_ops(data.good[DEMO], run.split(" @ ")[0])["end_us"].max()
    assert lo == 0.0 and hi == pytest.approx(makespan / time_unit(makespan)[1])
    assert any(t["type"] == "bar" and len(t["y"]) for t in figure_json(at)["data"])


def test_a_window_in_the_url_that_is_not_a_number_opens_the_whole_run(data, monkeypatch):
    """Bug: a hand-edited link (``start=soon``) stopped the Timeline page with a ValueError traceback."""
    run = f"{DEMO.replace('_', '-')}:sync:sim:r0 @ {data.good[DEMO].name}"
    at = new_app(data, monkeypatch, run=run, vs="(none)", start="soon", end="inf").run()
    at.switch_page("views/timeline.py").run()
    assert not at.exception, [e.value for e in at.exception]
    lo, hi = figure_json(at)["layout"]["xaxis"]["range"]
    makespan = read_run_ops(data.good[DEMO], run.split(" @ ")[0])["end_us"].max()
    assert lo == 0.0 and hi == pytest.approx(makespan / time_unit(makespan)[1])


def test_drawn_sweep_lines_are_one_per_configuration_with_whiskers_inside_the_data():
    """Bug: four adaptive configurations were drawn as one line of 'n = 4' means, error bars below zero."""
    from dashboard.figures import sweep_line_figure

    frame = pd.DataFrame(
        {
            "policy": ["adaptive"] * 4 + ["fixed"] * 2,
            "param.max_wait_us": [1000.0, 1000.0, 3000.0, 3000.0, np.nan, np.nan],
            "param.batch": [8.0, 16.0, 8.0, 16.0, 8.0, 16.0],
            "value": [10.0, 20.0, 30.0, 40.0, 50.0, 60.0],
        }
    )
    fig = sweep_line_figure(sweep.sweep_line(frame, "param.batch"), "param.batch", "ttft_us")
    assert sorted(t.name for t in fig.data) == ["adaptive (max_wait_us=1000)", "adaptive (max_wait_us=3000)", "fixed"]
    for trace in fig.data:
        low = np.asarray(trace.y, dtype=float) - np.asarray(trace.error_y.arrayminus, dtype=float)
        assert (low >= 0).all()


def test_compare_and_fidelity_pages_keep_each_machines_replays_apart(data, tmp_path, monkeypatch):
    """Bug: Compare showed H100 and H200 replays as 21 repetitions; Fidelity refused several machines' tables."""
    root = tmp_path / "machines"
    root.mkdir()
    shutil.copytree(data.good[DEMO], root / "sim")
    _retag(data.good["replay"], root / "replay-h100", "NVIDIA H100")
    _retag(data.good["replay"], root / "replay-h200", "NVIDIA H200")
    monkeypatch.setenv(sources.DIRS_ENV, str(root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.query_params.update(spec="layer-streaming-demo", backend="replay · NVIDIA H200")
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="compare-backend").options == ["replay · NVIDIA H100", "replay · NVIDIA H200", "sim"]
    assert at.selectbox(key="compare-backend").value == "replay · NVIDIA H200"
    assert set(shown_tables(at)[0]["n"]) == {"1"}  # one repetition on that machine, not both pooled
    at.switch_page("views/fidelity.py").run()
    assert not at.exception, [e.value for e in at.exception]
    assert at.selectbox(key="fidelity-machine").options == ["NVIDIA H100", "NVIDIA H200"]
    shown = at.dataframe[-1].value
    assert set(shown["device_name"]) == {at.selectbox(key="fidelity-machine").value}


def test_the_fidelity_table_shows_every_digit_on_the_page(data, monkeypatch):
    """Bug: the page showed 1,281,151.68 as `281151.680000` (the formatted text, not only the number, is checked)."""
    import pyarrow as pa

    at = new_app(data, monkeypatch).run()
    at.switch_page("views/fidelity.py").run()
    assert not at.exception, [e.value for e in at.exception]
    proto = at.dataframe[-1].proto
    shown = pa.ipc.open_stream(proto.arrow_data.styler.display_values).read_all().to_pandas()
    values = at.dataframe[-1].value
    big = values["simulated"].abs().idxmax()
    assert values.loc[big, "simulated"] > 100_000
    assert shown.loc[big, "simulated"] == number_text(values.loc[big, "simulated"])
    assert "," in shown.loc[big, "simulated"] and shown.loc[big, "simulated"].endswith(
        f"{values.loc[big, 'simulated']:.2f}"[-3:]
    )


def test_a_requests_milestones_are_labelled_apart_inside_the_chart():
    """Found trying the Requests page: arrival, admission and first token a few µs apart printed their labels on
    top of each other, and the last token's label ran into the legend."""
    rows = [(0, "gpu", "kernel", "decode", 0, 1000.0 * i, 1000.0 * i + 800.0) for i in range(1000)]
    view = timeline_view(ops_frame(rows), start_us=0.0, end_us=1e6)
    marks = [("arrival", 10.0), ("admitted", 12.0), ("first token", 15.0), ("last token", 1e6)]
    fig = timeline_figure([("r", view)], marks=marks)
    labels = {a.text: a for a in fig.layout.annotations if a.text in dict(marks)}
    assert len(labels) == 4 and len({labels[m].y for m, _ in marks[:3]}) == 3  # one row each
    assert all(0 <= a.y <= 1 and a.yref == "paper" for a in labels.values())  # inside the chart
    assert labels["arrival"].xanchor == "left" and labels["last token"].xanchor == "right"  # towards the middle
    assert len([s for s in fig.layout.shapes if s.type == "line"]) == 4


def test_page_figures_are_built_once_per_input_and_handed_out_as_copies():
    """Compare's figures are cached by their inputs (a warm visit builds none); a new input builds a new one, and
    a page changing its copy never changes the next visit's."""
    import plotly.graph_objects as go

    from dashboard import ui

    built = []

    def bars(frame: pd.DataFrame, colour: str = "red") -> go.Figure:
        built.append(len(frame))
        return go.Figure(go.Bar(x=frame["x"], y=frame["y"], marker_color=colour))

    frame = pd.DataFrame({"x": ["a", "b"], "y": [1.0, 2.0]})
    expected = json.loads(bars(frame, "blue").to_json())["data"]
    built.clear()
    first = ui.cached_figure(bars, frame, colour="blue")
    first.update_layout(title="changed by the page")
    again = ui.cached_figure(bars, frame.copy(), colour="blue")
    assert built == [2] and again.layout.title.text is None and json.loads(again.to_json())["data"] == expected
    ui.cached_figure(bars, frame.assign(y=[1.0, 3.0]), colour="blue")
    ui.cached_figure(bars, frame, colour="green")
    assert built == [2, 2, 2]
