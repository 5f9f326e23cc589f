"""Streamlit pieces shared by the pages: cached loading, the folder sidebar, downloads.

Only this module and the page scripts import Streamlit.
"""

from __future__ import annotations

import functools
import math
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import streamlit.components.v1 as components
from streamlit.runtime.scriptrunner import add_script_run_ctx, get_script_run_ctx

from dashboard.catalog import RUN_KEY, TIMELINE_COLUMNS, Catalog, FolderLoad, build_catalog, load_path, read_run_ops
from dashboard.compare import DistributionSource, distribution_sources, distribution_values, run_metrics
from dashboard.compare_sections import ChangeSection, SummarySection, change_section, summary_section
from dashboard.export import PLOTLY_CONFIG, PLOTLY_THEME, csv_bytes, figure_html, file_stem
from dashboard.fidelity import Derived, derive_fidelity
from dashboard.figures import timeline_figure
from dashboard.machines import machine_groups
from dashboard.markdown_table import MAX_MARKDOWN_ROWS, markdown_table
from dashboard.requests_view import request_labels, run_requests
from dashboard.sources import dirs_from_env, expand, signature
from dashboard.timeline import TimelineView, resolve_window, timeline_view, window_from_relayout
from dashboard.zoom_chart import chart_args, chart_folder

FOLDERS_KEY = "results_folders"


@st.cache_data(show_spinner=False, max_entries=64)
def _load(path: str, key: tuple) -> FolderLoad:
    """Cached per path; ``key`` (file names, sizes, mtimes) is part of the cache key, so edits reload."""
    del key  # only a cache key
    return load_path(Path(path))


@st.cache_resource(show_spinner=False, max_entries=4)
def _catalog(keys: tuple[tuple[str, tuple], ...]) -> Catalog:
    return build_catalog([_load(path, key) for path, key in keys])


@st.cache_resource(show_spinner=False, max_entries=4)
def _run_ops(folder: str, key: tuple, run_id: str) -> pd.DataFrame:
    """A few runs' ops held at once (the timeline's columns, categorical text: ~45 bytes an op), read lazily,
    never all of them."""
    del key  # only a cache key
    return read_run_ops(Path(folder), run_id, columns=TIMELINE_COLUMNS)


def run_ops(folder: str, run_id: str) -> pd.DataFrame:
    """One run's ops (TIMELINE_COLUMNS), read from its folder on first use (cached by the folder's file
    signature). Do not mutate."""
    return _run_ops(folder, signature(Path(folder)), run_id)


def runs_ops(runs: list[tuple[str, str]]) -> list[pd.DataFrame]:
    """:func:`run_ops` of several runs (folder, run id), read side by side: a sim run and its replay of a million
    ops each are read in the time of one on two cores (pyarrow reads without the GIL)."""
    if len(runs) < 2:
        return [run_ops(folder, run_id) for folder, run_id in runs]
    ctx = get_script_run_ctx()

    def read(item: tuple[str, str]) -> pd.DataFrame:
        add_script_run_ctx(threading.current_thread(), ctx)  # the cache belongs to this session's script run
        return run_ops(*item)

    with ThreadPoolExecutor(max_workers=len(runs)) as pool:
        return list(pool.map(read, runs))


@st.cache_data(show_spinner=False, max_entries=32)
def _timeline(
    runs: tuple[tuple[str, tuple, str, str], ...],
    start_us: float,
    end_us: float,
    max_bars: int,
    marks: tuple[tuple[str, float], ...],
    flows: bool,
) -> tuple[list[tuple[str, TimelineView]], go.Figure]:
    views = [
        (title, timeline_view(_run_ops(folder, key, run_id), max_bars, start_us, end_us))
        for folder, key, run_id, title in runs
    ]
    return views, timeline_figure(views, marks=list(marks), flows=flows)


def timeline(
    runs: list[tuple[str, str, str]],
    start_us: float,
    end_us: float,
    max_bars: int,
    marks: list[tuple[str, float]] | None = None,
    flows: bool = True,
) -> tuple[list[tuple[str, TimelineView]], go.Figure]:
    """Each run's bars in a window (``runs``: folder, run id, title) and their figure, stacked on one time axis
    (``flows``: with launch arrows where the window has few enough single ops).

    Cached by the folders' signatures, the window and the bound: a window seen before (a shared link, the way
    back) costs no re-aggregation of a million ops and no figure building. The figure is the caller's to change.
    """
    keyed = tuple((folder, signature(Path(folder)), run_id, title) for folder, run_id, title in runs)
    return _timeline(keyed, float(start_us), float(end_us), int(max_bars), tuple(marks or ()), bool(flows))


@st.cache_data(show_spinner=False, max_entries=64)
def _figure(name: str, _build, args: tuple, kwargs: dict) -> go.Figure:
    del name  # only a cache key (_build is not hashed)
    return _build(*args, **kwargs)


def cached_figure(build, *args, **kwargs) -> go.Figure:
    """``build(*args, **kwargs)``, a figure function of ``dashboard.figures``, cached by its name and arguments:
    a warm visit builds no plotly express figure again (~50 ms of the Compare page's server time on the 2-core
    dev box). The figure returned is a copy, the caller's to change (unpickled, so plotly validates it again:
    50-100 ms a figure on that box; the Compare page's upper sections hold theirs in
    :func:`compare_summary` and :func:`compare_change` instead)."""
    return _figure(f"{build.__module__}.{build.__qualname__}", build, args, kwargs)


@functools.cache
def _zoom_chart() -> tuple[object | None, str]:
    folder, why = chart_folder()
    if folder is None:
        return None, why
    return components.declare_component("timeline_chart", path=str(folder)), ""


def zoom_chart_problem() -> str:
    """Why the zoomable chart cannot be served here ("" when it can)."""
    return _zoom_chart()[1]


def zoom_chart(fig: go.Figure, unit_us: float, key: str) -> dict | None:
    """Draw ``fig`` in the zoomable chart (``dashboard.zoom_chart``); its value: the last zoom or pan made in it,
    ``{id, unit_us, relayout}``, or None. Changes the figure's y axes (lanes fixed). Needs
    :func:`zoom_chart_problem` to be empty."""
    component, why = _zoom_chart()
    if component is None:
        raise RuntimeError(why)
    return component(**chart_args(fig, unit_us), key=key, default=None)


def take_zoom(
    value: dict | None, chart_key: str, window_key: str, run_end_us: float, home: tuple[float, float] | None = None
) -> bool:
    """Apply a zoom or pan made in the zoomable chart ``chart_key`` (its value, ``{id, unit_us, relayout}``) to the
    window kept in ``st.session_state[window_key]`` (start, end in µs; None ends: the whole run), once: the chart
    keeps its last value. A double click goes to ``home`` (default: the whole run). True if the window moved."""
    seen = f"{chart_key}-seen"
    if not value or value.get("id") == st.session_state.get(seen):
        return False
    st.session_state[seen] = value.get("id")
    current = st.session_state[window_key]
    if None in current:
        current = resolve_window(*current, run_end_us)[:2]
    moved = window_from_relayout(value.get("relayout"), float(value.get("unit_us") or 0), current, run_end_us, home)
    if moved:
        st.session_state[window_key] = moved
    return moved is not None


def zoomable_timeline(
    fig: go.Figure,
    unit_us: float,
    *,
    chart_key: str,
    window_key: str,
    run_end_us: float,
    zoomable: bool,
    plain_key: str,
    home: tuple[float, float] | None = None,
    home_name: str = "the whole run",
) -> str:
    """Draw a timeline figure whose zooms re-query the window in ``st.session_state[window_key]``; return the
    caption line that says how to zoom it.

    ``zoomable``: the zoomable chart (:func:`zoom_chart` under ``chart_key``, kept mounted while the page zooms:
    pass the same key for every window), where the wheel, the toolbar, a pan and a dragged box move the window
    and a double click goes to ``home`` (default: the whole run; ``home_name`` in the caption). Else Streamlit's
    own plotly chart (``plain_key``: a new one per figure), where only a dragged box does. A new window reruns the
    page. Call :func:`take_zoom` with the chart's session value before the page reads its window, so that a zoom
    costs one script run."""
    if zoomable:
        if take_zoom(zoom_chart(fig, unit_us, key=chart_key), chart_key, window_key, run_end_us, home):
            st.rerun()
        return (
            "Zoom with the mouse wheel or the toolbar, pan, or drag across the chart: the bars are re-queried and "
            f"re-aggregated for the new window (double click: {home_name})."
        )
    event = st.plotly_chart(
        fig, config=PLOTLY_CONFIG, theme=PLOTLY_THEME, key=plain_key, on_select="rerun", selection_mode="box"
    )
    box = (event.selection.get("box") or [None])[0] if event else None
    if box and len(box.get("x", [])) == 2:
        lo, hi = sorted(float(x) * unit_us for x in box["x"])
        st.session_state[window_key] = resolve_window(lo, hi, run_end_us)[:2]
        st.rerun()
    problem = zoom_chart_problem()
    return (
        "Plain chart: drag across it to zoom into that stretch (the bars are recomputed for it); the toolbar's zoom "
        "only stretches the bars drawn." + (f" The zoomable chart cannot be served here: {problem}." if problem else "")
    )


def zoomable_toggle(key: str) -> bool:
    """The "Zoomable chart" switch (on by default; off and disabled where the chart cannot be served): read its
    state with :func:`zoomable_on` before drawing, place it with this after the chart."""
    return st.toggle(
        "Zoomable chart",
        value=True,
        key=key,
        disabled=bool(zoom_chart_problem()),
        help="Off: Streamlit's own plotly chart, where only a dragged box and the buttons re-aggregate the bars "
        "(for a browser where the zoomable chart does not load).",
    )


def zoomable_on(key: str) -> bool:
    """Whether to draw the zoomable chart: it can be served and the switch :func:`zoomable_toggle` ``key`` is on."""
    return not zoom_chart_problem() and st.session_state.get(key, True)


def from_query(param: str, key: str, options) -> None:
    """Before a widget: on first render, take its value from the URL's query parameter ``param`` if valid."""
    value = st.query_params.get(param)
    if key not in st.session_state and value is not None and value in list(options):
        st.session_state[key] = value


def query_float(param: str) -> float | None:
    """The URL's query parameter ``param`` as a finite number, or None (absent, or not a number: a hand-edited
    link opens the page's default instead of failing)."""
    value = st.query_params.get(param)
    try:
        number = float(value) if value is not None else None
    except ValueError:
        return None
    return number if number is not None and math.isfinite(number) else None


def to_query(**values) -> None:
    """Write the page state into the URL, so a view can be shared (None removes a parameter)."""
    for param, value in values.items():
        if value is None:
            st.query_params.pop(param, None)
        elif st.query_params.get(param) != str(value):
            st.query_params[param] = str(value)


def folder_args() -> list[Path]:
    if FOLDERS_KEY not in st.session_state:
        st.session_state[FOLDERS_KEY] = "\n".join(str(p) for p in dirs_from_env())
    return [Path(line.strip()) for line in st.session_state[FOLDERS_KEY].splitlines() if line.strip()]


def _keys() -> tuple[tuple[str, tuple], ...]:
    return tuple((str(p), signature(p)) for p in expand(folder_args()))


def catalog() -> Catalog:
    """Every results folder currently chosen, loaded (cached by path and modification time)."""
    return _catalog(_keys())


@st.cache_resource(show_spinner=False, max_entries=4)
def _derived(keys: tuple[tuple[str, tuple], ...]) -> Derived:
    return derive_fidelity(_catalog(keys))


def fidelity_pairs() -> Derived:
    """The sim-vs-replay pairs of the loaded runs, computed once per set of folders."""
    return _derived(_keys())


@st.cache_data(show_spinner=False, max_entries=16)
def _requests(
    keys: tuple[tuple[str, tuple], ...], folder: str, run_id: str, sort_by: str, ascending: bool
) -> tuple[pd.DataFrame, dict[int, str]]:
    table = run_requests(_catalog(keys), folder, run_id, sort_by, ascending)
    return table, request_labels(table)


def requests_table(folder: str, run_id: str, sort_by: str, ascending: bool) -> tuple[pd.DataFrame, dict[int, str]]:
    """One run's requests, sorted, and a label per request (cached by the loaded folders' signatures)."""
    return _requests(_keys(), folder, run_id, sort_by, ascending)


def _run_keys(runs: pd.DataFrame) -> tuple[tuple[str, str], ...]:
    return tuple(runs[RUN_KEY].itertuples(index=False, name=None))


@st.cache_resource(show_spinner=False, max_entries=16)
def _compare_rows(keys: tuple, run_keys: tuple, what: str, source: DistributionSource | None, _runs: pd.DataFrame):
    cat = _catalog(keys)
    if what == "metrics":
        return run_metrics(cat, _runs)
    if what == "sources":
        return distribution_sources(cat, _runs)
    return distribution_values(cat, _runs, source)


def compare_metrics(runs: pd.DataFrame) -> pd.DataFrame:
    """:func:`dashboard.compare.run_metrics` of ``runs`` (runs of the loaded folders), cached by the folders'
    signatures and the runs: a warm Compare visit merges no tables again. Do not mutate."""
    return _compare_rows(_keys(), _run_keys(runs), "metrics", None, runs)


def compare_sources(runs: pd.DataFrame) -> list[DistributionSource]:
    """:func:`dashboard.compare.distribution_sources` of ``runs``, cached as :func:`compare_metrics`."""
    return _compare_rows(_keys(), _run_keys(runs), "sources", None, runs)


def compare_samples(runs: pd.DataFrame, source: DistributionSource) -> pd.DataFrame:
    """:func:`dashboard.compare.distribution_values` of ``runs``, cached as :func:`compare_metrics`. Do not mutate."""
    return _compare_rows(_keys(), _run_keys(runs), "samples", source, runs)


@st.cache_resource(show_spinner=False, max_entries=32)
def _summary_section(keys: tuple, run_keys: tuple, metrics: tuple, workload: str, _runs) -> SummarySection:
    values = _compare_rows(keys, run_keys, "metrics", None, _runs)
    return summary_section(values, list(metrics), workload, _catalog(keys).runs["policy_label"])


@st.cache_resource(show_spinner=False, max_entries=64)
def _change_section(
    keys: tuple, run_keys: tuple, metrics: tuple, workload: str, lead: str, baseline: str, _runs
) -> ChangeSection:
    values = _compare_rows(keys, run_keys, "metrics", None, _runs)
    section = _summary_section(keys, run_keys, metrics, workload, _runs)
    return change_section(values, section, lead, baseline, workload)


def compare_summary(runs: pd.DataFrame, metrics: list[str], workload: str) -> SummarySection:
    """The Compare page's "Metrics per policy" (:func:`dashboard.compare_sections.summary_section`), cached by
    the folders' signatures, the runs and the metrics: a warm visit hashes these strings, not data frames, and
    builds no figure. Shared, not a copy: do not mutate."""
    return _summary_section(_keys(), _run_keys(runs), tuple(metrics), workload, runs)


def compare_change(runs: pd.DataFrame, metrics: list[str], workload: str, lead: str, baseline: str) -> ChangeSection:
    """The headline and the change against ``baseline`` (:func:`dashboard.compare_sections.change_section`),
    cached as :func:`compare_summary` and by the headline metric and the baseline. Do not mutate."""
    return _change_section(_keys(), _run_keys(runs), tuple(metrics), workload, lead, baseline, runs)


def sidebar(cat: Catalog) -> None:
    """Folder chooser and the load status of every folder (errors name the folder and file).

    The chooser and the folders that loaded are in a popover, drawn only when it is opened: every page load mounts
    a text area and a caption per folder fewer (issue 14, page speed). Errors stay in view."""
    loaded = [load for load in cat.folders if load.ok]
    with st.sidebar:
        with st.popover(f"Results folders: {len(loaded)} loaded", width="stretch"):
            st.text_area(
                "Results folders or table files (one a line; a folder of results folders counts as all of them)",
                key=FOLDERS_KEY,
                height=90,
            )
            for load in loaded:
                if load.results is None:
                    st.caption(f":material/check: {load.path.name}: table {', '.join(load.tables)}")
                else:
                    st.caption(
                        f":material/check: {load.path.name}: {len(load.results.runs)} runs, {load.results.n_ops:,} ops"
                    )
        for load in cat.folders:
            if not load.ok:
                st.error(load.error, icon=":material/error:")


def require_runs(cat: Catalog) -> None:
    """Stop the page with a message when nothing readable is loaded."""
    if cat.runs.empty:
        st.info("No runs loaded. Name results folders in the sidebar (or run `harness dashboard RESULTS_DIR`).")
        st.stop()


def show_table(frame: pd.DataFrame, key: str, index: bool = False) -> None:
    """A small table of formatted cells as Markdown (no data grid for the browser to load: issue 25, the Compare
    page's speed); one of more than ``MAX_MARKDOWN_ROWS`` rows in the data grid, which scrolls and sorts."""
    if len(frame) <= MAX_MARKDOWN_ROWS:
        st.markdown(markdown_table(frame, index=index))
    else:
        st.dataframe(frame, hide_index=not index, key=key)


def show_figure(fig: go.Figure, key: str) -> None:
    st.plotly_chart(fig, config=PLOTLY_CONFIG, key=key, theme=PLOTLY_THEME)


def download_table(frame: pd.DataFrame, *stem: str, key: str, label: str = "Download table (CSV)") -> None:
    st.download_button(
        label, csv_bytes(frame), file_name=file_stem(*stem) + ".csv", mime="text/csv", key=key, on_click="ignore"
    )


def download_figure(fig: go.Figure, *stem: str, key: str) -> None:
    """HTML built only when clicked (a standalone page is several MB); PNG: the chart toolbar's camera."""
    st.download_button(
        "Download figure (HTML)",
        lambda: figure_html(fig),
        file_name=file_stem(*stem) + ".html",
        mime="text/html",
        key=key,
        on_click="ignore",
        help="A standalone interactive page. For a PNG use the camera icon in the chart's toolbar.",
    )


@st.cache_resource(show_spinner=False, max_entries=8)
def _spec_machine_groups(keys: tuple, run_keys: tuple, _runs: pd.DataFrame) -> dict[str, dict[str, pd.DataFrame]]:
    """spec -> :func:`machine_groups` of its runs, in spec order: selecting rows of the catalog's Arrow-string
    columns costs ~10 ms a selection on the 2-core dev box, so a warm page load makes none (issue 25)."""
    return {spec: machine_groups(_runs[_runs["spec_name"] == spec]) for spec in sorted(_runs["spec_name"].unique())}


@st.cache_resource(show_spinner=False, max_entries=4)
def _ok_runs(keys: tuple) -> pd.DataFrame:
    runs = _catalog(keys).runs
    return runs[runs["status"] == "ok"]


def ok_runs() -> pd.DataFrame:
    """The loaded runs that finished (``dashboard.compare.ok_runs`` of the catalog), cached by the folders'
    signatures. Do not mutate."""
    return _ok_runs(_keys())


def pick_spec_backend(runs: pd.DataFrame, key: str) -> tuple[str, str, pd.DataFrame]:
    """Choose an experiment (spec) and a backend on one machine; return them and those runs.

    Runs of one backend on different machines (replays on an H100 and an H200) are offered apart, never pooled.
    The choice is kept in the URL (``?spec=...&backend=...``).
    """
    left, right = st.columns(2)
    by_spec = _spec_machine_groups(_keys(), _run_keys(runs), runs)
    specs = list(by_spec)
    from_query("spec", f"{key}-spec", specs)
    spec = left.selectbox("Experiment (spec)", specs, key=f"{key}-spec")
    groups = by_spec.get(spec, {})
    from_query("backend", f"{key}-backend", groups)
    backend = right.selectbox("Backend (and machine)", list(groups), key=f"{key}-backend")
    to_query(spec=spec, backend=backend)
    return spec, backend, groups.get(backend, runs.iloc[:0])
