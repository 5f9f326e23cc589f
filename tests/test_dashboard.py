"""The dashboard: its pure computations, and every page rendered by Streamlit's AppTest."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from streamlit.testing.v1 import AppTest
from test_dashboard_support import (
    BATCHING,
    DEMO,
    REPLAY_SCALE,
    SWEEP,
    DashboardData,
    build,
    read_markdown_table,
    shown_tables,
)

from dashboard import compare, sources, sweep, ui
from dashboard.catalog import build_catalog, load_path
from dashboard.export import csv_bytes, figure_html, file_stem
from dashboard.fidelity import derive_fidelity, error_summary, stored_fidelity
from dashboard.figures import timeline_figure
from dashboard.timeline import lane_bars, lanes, timeline_view
from dashboard.markdown_table import markdown_table
from harness.results import read_results, to_table
from harness.verdict import format_value

APP = Path(__file__).resolve().parent.parent / "dashboard" / "app.py"


@pytest.fixture(scope="session")
def data(tmp_path_factory) -> DashboardData:
    return build(tmp_path_factory.mktemp("dashboard-results"))


def run_level(folder: Path, metric: str) -> dict[str, float]:
    """policy_label -> value, read straight from the Parquet files (independent of the dashboard)."""
    res = read_results(folder)
    m = res.metrics[(res.metrics["metric"] == metric) & (res.metrics["item"] == -1)].merge(res.runs, on="run_id")
    return dict(zip(m["policy_label"], m["value"]))


# --------------------------------------------------------------------------- sources and loading


def test_a_parent_folder_stands_for_its_results_folders_and_tables(data):
    (data.root / ".partial-123").mkdir(exist_ok=True)
    found = {p.name for p in sources.expand([data.root])}
    assert found == {p.name for p in data.good.values()} | {
        "broken-missing-ops",
        "broken-corrupt",
        "fidelity-test.parquet",
    }
    assert sources.expand([data.root / "nowhere"]) == [data.root / "nowhere"]


def test_the_cache_key_changes_when_a_table_is_rewritten(data, tmp_path):
    folder = tmp_path / "copy"
    folder.mkdir()
    (folder / "runs.parquet").write_bytes((data.good[DEMO] / "runs.parquet").read_bytes())
    before = sources.signature(folder)
    time.sleep(0.01)
    os.utime(folder / "runs.parquet", ns=(time.time_ns(), time.time_ns()))
    assert sources.signature(folder) != before


def test_bad_folders_become_messages_naming_the_file(data):
    assert "ops.parquet is missing" in load_path(data.missing_ops).error
    corrupt = load_path(data.corrupt)
    assert str(data.corrupt / "metrics.parquet") in corrupt.error and "unreadable Parquet file" in corrupt.error
    assert "no such folder or file" in load_path(data.root / "nowhere").error


def test_the_catalog_keeps_runs_apart_by_folder(data, tmp_path):
    copy = shutil.copytree(data.good[DEMO], tmp_path / "again")
    cat = build_catalog([load_path(data.good[DEMO]), load_path(copy), load_path(data.missing_ops)])
    assert len(cat.runs) == 2 * len(read_results(data.good[DEMO]).runs)  # the same run ids in two folders
    assert cat.runs["run_label"].is_unique
    assert [f.path for f in cat.errors] == [data.missing_ops]


# --------------------------------------------------------------------------- pure computations


def ops_frame(rows: list[tuple]) -> pd.DataFrame:
    cols = ["device", "stream", "kind", "name", "bytes", "start_us", "end_us"]
    frame = pd.DataFrame(rows, columns=cols)
    return frame.assign(run_id="r", op_id=range(len(frame)), host_memory="", thread="main", issue_us=frame["start_us"])


def test_copies_occupy_their_stream_and_their_copy_engine():
    ops = ops_frame(
        [
            (0, "compute", "kernel", "k0", 0, 10.0, 20.0),
            (0, "prefetch", "copy_h2d", "c0", 100, 0.0, 10.0),
            (0, "prefetch", "copy_d2h", "c1", 100, 20.0, 30.0),
            (-1, "main", "host_sync", "s", 0, 0.0, 30.0),
        ]
    )
    bars = lane_bars(ops)
    assert lanes(bars) == [
        "host thread main",
        "gpu0 stream compute",
        "gpu0 stream prefetch",
        "gpu0 copy engine d2h",
        "gpu0 copy engine h2d",
    ]
    assert set(bars.loc[bars["lane"] == "gpu0 copy engine h2d", "name"]) == {"c0"}
    assert len(bars) == 6


def test_a_large_timeline_is_merged_under_the_bound_without_losing_ops():
    rng = np.random.default_rng(0)
    n = 40_000
    start = np.sort(rng.uniform(0, 1e6, n))
    ops = ops_frame([(0, f"s{i % 4}", "kernel", f"k{i}", 0, s, s + rng.uniform(1, 50)) for i, s in enumerate(start)])
    view = timeline_view(ops, max_bars=2000)
    assert view.merged and len(view.bars) <= 2000 and view.bars["n_ops"].sum() == n
    assert "merged" in view.note() and "40,000 ops" in view.note()
    for lane, part in ops.assign(lane="gpu0 stream " + ops["stream"]).groupby(
        "lane"
    ):  # every op lies inside a drawn bar
        drawn = view.bars[view.bars["lane"] == lane].sort_values("start_us")
        idx = np.searchsorted(drawn["start_us"].to_numpy(), part["start_us"].to_numpy(), side="right") - 1
        assert (part["end_us"].to_numpy() <= drawn["end_us"].to_numpy()[idx]).all()
    window = timeline_view(ops, max_bars=2000, start_us=0.0, end_us=20_000.0)
    assert not window.merged and window.n_ops == int((ops["start_us"] <= 20_000).sum())
    assert len(timeline_figure([("a", view), ("b", window)]).data) == 2


def test_summary_relative_change_and_cdf():
    frame = pd.DataFrame(
        {"policy_label": ["a", "a", "b", "b"], "metric": ["m_us"] * 4, "value": [10.0, 14.0, 6.0, 6.0]}
    )
    summary = compare.metric_summary(frame)
    a = summary.set_index("policy_label").loc["a"]
    assert (a["mean"], a["min"], a["max"], a["n"]) == (12.0, 10.0, 14.0, 2)
    change = compare.relative_change(summary, "a").set_index("policy_label")["relative_change"]
    assert change["a"] == 0.0 and change["b"] == pytest.approx(-0.5)
    cdf = compare.cdf_frame(frame)
    assert list(cdf[cdf["policy_label"] == "a"]["fraction"]) == [0.5, 1.0]


def test_derived_fidelity_matches_harness_compare_and_survives_duplicate_folders(data, tmp_path):
    loads = [load_path(p) for p in (data.good[DEMO], data.good["replay"], data.fidelity_file)]
    cat = build_catalog(loads)
    derived = derive_fidelity(cat).table
    stored = stored_fidelity(cat).drop(columns="folder")
    assert set(derived["measured_by"]) == {"replay"}  # the dashboard's one column beyond harness compare's
    pd.testing.assert_frame_equal(
        derived.drop(columns="measured_by").reset_index(drop=True), stored.reset_index(drop=True)
    )
    makespan = derived[derived["metric"] == "makespan_us"]
    assert len(makespan) == 3 and np.allclose(makespan["rel_error"], 1 / REPLAY_SCALE - 1)
    # a copy of the sim folder (the same run ids): harness compare refuses; the dashboard joins both
    copy = shutil.copytree(data.good[DEMO], tmp_path / "sim-again")
    twice = derive_fidelity(build_catalog([*loads[:2], load_path(copy)])).table
    assert (twice["n_sim"] == 2).all() and np.allclose(twice[twice["metric"] == "makespan_us"]["rel_error"], -0.2)
    summary = error_summary(derived).set_index("metric")
    assert summary.loc["makespan_us", "max_abs_rel_error"] == pytest.approx(0.2)
    sim_only = derive_fidelity(build_catalog([loads[0]]))
    assert sim_only.table.empty and "replay" in sim_only.message


def test_sweep_means_per_parameter_value(data):
    cat = build_catalog([load_path(data.good[SWEEP])])
    frame = sweep.sweep_frame(cat, cat.runs, "makespan_us")
    assert sweep.numeric_params(frame) == ["param.depth"]
    line = sweep.sweep_line(frame, "param.depth")
    expected = run_level(data.good[SWEEP], "makespan_us")
    got = {f"prefetch[depth={int(d)}]": v for d, v in zip(line["param.depth"], line["mean"])}
    assert got == pytest.approx({k: v for k, v in expected.items() if k.startswith("prefetch")})


def test_exports():
    frame = pd.DataFrame({"a": [1, 2]})
    assert csv_bytes(frame) == b"a\n1\n2\n"
    assert file_stem("layer streaming", "makespan/us") == "layer-streaming_makespan-us"
    html = figure_html(timeline_figure([("r", timeline_view(ops_frame([(0, "s", "kernel", "k", 0, 0.0, 1.0)])))]))
    assert b"<html>" in html and b"plotly" in html


# --------------------------------------------------------------------------- the app, page by page


@pytest.fixture()
def app(data, monkeypatch):
    monkeypatch.setenv(sources.DIRS_ENV, str(data.root))
    at = AppTest.from_file(str(APP), default_timeout=60)
    at.run()
    return at


def no_exception(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


def test_runs_page_lists_every_readable_run_and_names_the_broken_folders(app, data):
    no_exception(app)
    total = sum(len(read_results(p).runs) for p in data.good.values())
    assert f"**{total} of {total} runs** shown" in [m.value for m in app.markdown]
    assert len(app.dataframe[0].value) == total
    errors = [e.value for e in app.sidebar.error]
    assert any("broken-missing-ops" in e and "ops.parquet is missing" in e for e in errors)
    assert any("broken-corrupt/metrics.parquet" in e and "unreadable Parquet file" in e for e in errors)
    app.multiselect(key="runs-filter-backend").set_value(["replay"]).run()
    assert "**3 of 14 runs** shown" in [m.value for m in app.markdown] and total == 14  # demo: 3 policies


def test_compare_page_shows_the_metrics_and_the_change_against_the_baseline(app, data):
    app.switch_page("views/compare.py").run()
    app.selectbox(key="compare-spec").set_value("layer-streaming-demo").run()
    app.selectbox(key="compare-backend").set_value("sim").run()
    no_exception(app)
    makespan = run_level(data.good[DEMO], "makespan_us")
    summary = shown_tables(app)[0]
    shown = summary[summary["metric"] == "makespan_us"].set_index("policy_label")["mean"].to_dict()
    assert shown == {policy: format_value(value, "us") for policy, value in makespan.items()}
    app.selectbox(key="compare-baseline-layer-streaming-demo").set_value("sync").run()
    change = shown_tables(app)[1].set_index("metric")
    expected = 100 * (makespan["prefetch"] / makespan["sync"] - 1)
    assert change.loc["makespan_us", "prefetch"] == f"{expected:+.1f} %"
    assert "sync" not in change.columns  # the baseline against itself is no information
    assert not change.isin(["None", "nan"]).any().any()
    assert len(app.get("plotly_chart")) == 3  # bars, change, segment-time CDF
    assert app.selectbox(key="compare-dist-layer-streaming-demo").value.column == "segment_time_us"
    # Issue 25 (page speed): the small tables are Markdown, so the browser loads no data grid for this page.
    assert len(shown_tables(app)) == 3 and not app.dataframe


def test_compare_page_draws_request_latency_cdfs(app, data):
    app.switch_page("views/compare.py").run()
    app.selectbox(key="compare-spec").set_value("batching-c1-window").run()
    no_exception(app)
    dist = app.selectbox(key="compare-dist-batching-c1-window")
    assert dist.value.table == "requests" and dist.value.column == "ttft_us"
    requests = (
        read_results(data.good[BATCHING]).extra["requests"].merge(read_results(data.good[BATCHING]).runs, on="run_id")
    )
    p50 = requests.groupby("policy_label")["ttft_us"].quantile(0.5)
    table = shown_tables(app)[-1].set_index("policy_label")
    assert table["p50"].to_dict() == {policy: format_value(value, "us") for policy, value in p50.items()}
    assert table["n"].astype(int).to_dict() == requests.groupby("policy_label").size().to_dict()


def test_compare_tables_longer_than_the_markdown_bound_go_to_the_data_grid(app, monkeypatch):
    monkeypatch.setattr(ui, "MAX_MARKDOWN_ROWS", 2)  # the demo's summary has 3 policies x its metrics
    app.switch_page("views/compare.py").run()
    app.selectbox(key="compare-spec").set_value("layer-streaming-demo").run()
    no_exception(app)
    summary = app.dataframe[0].value
    assert {"policy_label", "metric", "mean", "std", "min", "max", "n"} <= set(summary.columns)
    assert set(summary["policy_label"]) == {"sync", "prefetch", "resident"}


def test_a_markdown_table_keeps_cells_that_look_like_markdown():
    frame = pd.DataFrame({"policy": ["a|b", "x_y*", "line\nbreak", "[link](x)"], "n": [1, 2, 3, 4]})
    text = markdown_table(frame)
    assert text.splitlines()[1] == "| :--- | ---: |"  # text left, numbers right
    assert len(text.splitlines()) == 2 + len(frame)
    back = read_markdown_table(text)
    assert list(back["policy"]) == ["a|b", "x_y*", "line break", "[link](x)"]
    assert list(back["n"]) == ["1", "2", "3", "4"]
    indexed = markdown_table(pd.DataFrame({"p": ["+1.0 %"]}, index=pd.Index(["makespan_us"], name="metric")), True)
    assert read_markdown_table(indexed).to_dict("records") == [{"metric": "makespan_us", "p": "+1.0 %"}]


def test_timeline_page_stacks_sim_over_replay_and_bounds_large_runs(app, data):
    app.switch_page("views/timeline.py").run()
    no_exception(app)
    runs = read_results(data.good[DEMO]).runs.set_index("policy_label")
    label = next(
        o for o in app.selectbox(key="timeline-run").options if o.startswith("layer-streaming-demo:prefetch:sim")
    )
    app.selectbox(key="timeline-run").set_value(label).run()
    no_exception(app)
    second = app.selectbox(key=f"timeline-second-{label}").value
    assert second.startswith("layer-streaming-demo:prefetch:replay")  # the same policy on the other backend
    n = runs.loc["prefetch", "n_ops"]
    captions = [c.value for c in app.caption]
    assert sum(f"{n:,} ops, every op drawn" in c for c in captions) == 2
    big = next(o for o in app.selectbox(key="timeline-run").options if o.startswith("batching-c1-window"))
    app.selectbox(key="timeline-run").set_value(big).run()
    no_exception(app)
    assert any("exceed the bound" in w.value and "merged" in w.value for w in app.warning)


def test_fidelity_page_shows_pairs_and_errors(app, data):
    app.switch_page("views/fidelity.py").run()
    no_exception(app)
    assert app.selectbox(key="fidelity-source").options == [
        "derived from the loaded runs",
        f"stored: {data.fidelity_file}",
    ]
    # shown by default: the *_us metrics; the replay fixture is 25 % slower,
    # so only pairs that are 0 on both sides are in ±10 %
    sim = read_results(data.good[DEMO]).metrics
    timed = sim[(sim["item"] == -1) & sim["metric"].str.endswith("_us")]
    zero = int((timed["value"] == 0).sum())
    assert f"**{zero} of {len(timed)} pairs** within ±10%" in [m.value for m in app.markdown]
    app.slider(key="fidelity-band").set_value(25).run()
    n_pairs = len(app.dataframe[1].value)
    assert f"**{n_pairs} of {n_pairs} pairs** within ±25%" in [m.value for m in app.markdown]
    per_metric = app.dataframe[0].value.set_index("metric")
    assert per_metric.loc["makespan_us", "median_abs_rel_error"] == pytest.approx(0.2)
    assert len(app.get("plotly_chart")) == 2  # the scatter and the signed errors


def test_sweep_page_plots_the_metric_against_the_parameter(app, data):
    app.switch_page("views/sweep.py").run()
    app.selectbox(key="sweep-spec").set_value("layer-streaming-sweep").run()
    app.selectbox(key="sweep-metric-layer-streaming-sweep-sim").set_value("makespan_us").run()
    no_exception(app)
    line = app.dataframe[0].value
    expected = run_level(data.good[SWEEP], "makespan_us")
    assert dict(zip(line["param.depth"].astype(int), line["mean"])) == pytest.approx(
        {d: expected[f"prefetch[depth={d}]"] for d in (1, 2, 3, 4)}
    )
    assert len(app.get("plotly_chart")) == 1


def test_pages_keep_working_when_only_broken_folders_are_loaded(data, monkeypatch):
    monkeypatch.setenv(sources.DIRS_ENV, os.pathsep.join([str(data.missing_ops), str(data.corrupt)]))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    no_exception(at)
    assert len(at.sidebar.error) == 2 and "No runs loaded" in at.info[0].value
    for page in ("compare", "timeline", "fidelity", "sweep"):
        at.switch_page(f"views/{page}.py").run()
        no_exception(at)


def test_a_two_parameter_sweep_is_a_grid_of_means():
    frame = pd.DataFrame(
        {"policy": "p", "param.a": [1, 1, 2, 2, 2], "param.b": [10, 20, 10, 20, 20], "value": [1.0, 2.0, 3.0, 4.0, 6.0]}
    )
    grid = sweep.sweep_grid(frame, "param.a", "param.b")
    assert grid.loc[20, 2] == 5.0 and grid.loc[10, 1] == 1.0 and list(grid.columns) == [1, 2]
    assert sweep.numeric_params(frame.assign(**{"param.flag": True})) == ["param.a", "param.b"]  # booleans are no axis


def test_hundreds_of_thread_lanes_share_one_lane_per_family():
    rows = [(-1, f"deadline{i}", "host_work", f"d{i}", 0, float(i), i + 0.5) for i in range(200)]
    rows += [(-1, "client0", "host_work", "c", 0, 0.0, 300.0), (0, "compute", "kernel", "k", 0, 0.0, 10.0)]
    view = timeline_view(ops_frame(rows), max_lanes=24)
    assert lanes(view.bars) == ["host thread client0", "host thread deadline* (200 lanes)", "gpu0 stream compute"]
    four = ops_frame(rows + [(-1, f"client{i}", "host_work", "c", 0, 0.0, 1.0) for i in (1, 2, 3)])
    assert "host thread client3" in lanes(timeline_view(four, max_lanes=24).bars)  # the big family alone suffices
    assert "deadline* (200 lanes)" in view.note() and len(view.bars) == 202
    assert len(lanes(timeline_view(ops_frame(rows[:10]), max_lanes=24).bars)) == 10  # few lanes: each its own


def test_lanes_are_in_natural_order():
    rows = [(0, f"s{i}", "kernel", "k", 0, 0.0, 1.0) for i in (10, 2, 1)]
    assert lanes(lane_bars(ops_frame(rows))) == ["gpu0 stream s1", "gpu0 stream s2", "gpu0 stream s10"]


def test_summary_follows_the_chosen_metric_order():
    frame = pd.DataFrame({"policy_label": ["a", "a"], "metric": ["x_us", "y_us"], "value": [1.0, 2.0]})
    assert list(compare.metric_summary(frame, metric_order=["y_us", "x_us"])["metric"]) == ["y_us", "x_us"]


def test_the_app_rereads_a_folder_whose_tables_changed_on_disk(data, tmp_path, monkeypatch):
    folder = shutil.copytree(data.good[DEMO], tmp_path / "live")
    monkeypatch.setenv(sources.DIRS_ENV, str(folder))
    at = AppTest.from_file(str(APP), default_timeout=60).run()
    assert "**3 of 3 runs** shown" in [m.value for m in at.markdown]
    runs = read_results(folder).runs
    time.sleep(0.01)  # a later modification time
    pq.write_table(to_table("runs", runs[runs["policy"] != "prefetch"]), folder / "runs.parquet")
    at.run()
    no_exception(at)
    assert "**2 of 2 runs** shown" in [m.value for m in at.markdown]


def test_a_policy_keeps_its_colour_across_the_compare_charts():
    from dashboard.figures import metric_bars, policy_colours, relative_bars

    values = pd.DataFrame(
        {
            "policy_label": ["sync", "prefetch", "resident"] * 2,
            "metric": ["makespan_us"] * 3 + ["h2d_busy_frac"] * 3,
            "value": [300.0, 200.0, 150.0, 0.5, 0.9, 0.0],
        }
    )
    summary = compare.metric_summary(values)
    colours = policy_colours(summary["policy_label"])
    assert len(set(colours.values())) == 3

    def colour_of(fig):
        return {trace.name: trace.marker.color for trace in fig.data}

    bars = colour_of(metric_bars(summary, colours=colours))
    change = colour_of(relative_bars(compare.relative_change(summary, "sync"), "sync", colours=colours))
    assert change == {"prefetch": colours["prefetch"], "resident": colours["resident"]}  # the baseline is not drawn
    assert bars == colours


def test_a_warm_compare_visit_builds_no_section_again_and_a_new_choice_builds_one(app, monkeypatch):
    """Issue 25 (page speed): the summary and the change against the baseline (their tables and figures) are built
    once per input; a rerun with the same choices hashes a few strings and rebuilds nothing."""
    built = []
    for name in ("summary_section", "change_section"):
        real = getattr(ui, name)
        monkeypatch.setattr(ui, name, lambda *a, _real=real, _name=name, **k: built.append(_name) or _real(*a, **k))
    ui._summary_section.clear()
    ui._change_section.clear()
    app.switch_page("views/compare.py").run()
    app.selectbox(key="compare-spec").set_value("layer-streaming-demo").run()
    app.selectbox(key="compare-backend").set_value("sim").run()
    no_exception(app)
    assert sorted(set(built)) == ["change_section", "summary_section"]
    built.clear()
    app.run()
    assert built == []  # warm: nothing built
    first_tables = [t.to_dict() for t in shown_tables(app)[:2]]
    app.selectbox(key="compare-baseline-layer-streaming-demo").set_value("resident").run()
    assert built == ["change_section"]  # a new baseline: the summary stays, the change is built for it
    assert shown_tables(app)[0].to_dict() == first_tables[0] and shown_tables(app)[1].to_dict() != first_tables[1]
    assert "resident" not in shown_tables(app)[1].columns
