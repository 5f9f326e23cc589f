"""Per-request drill-down: a run's ``requests`` table, and the timeline window around one request.

A workload that serves requests (continuous batching) writes a ``requests`` table: one row per request with
its arrival, admission, first and last token times and the latencies derived from them (``queue_us``,
``ttft_us``, ``e2e_us``). Any loaded table of that name with ``run_id``, ``request``, ``arrival_us`` and
``last_token_us`` is offered; the dashboard names no workload.

The window around a request runs from its arrival to its last token (a request that never got a token: from
its arrival to its admission or, failing that, a moment after), and is drawn with the timeline's own
level-of-detail functions (:func:`dashboard.timeline.timeline_view`) on the run's lanes.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from dashboard.catalog import RUN_KEY, Catalog
from dashboard.timeline import DEFAULT_MAX_BARS, TimelineView, format_duration, resolve_window, timeline_view

REQUESTS_TABLE = "requests"
REQUIRED = ("run_id", "request", "arrival_us", "last_token_us")
SORT_COLUMNS = ("ttft_us", "e2e_us", "queue_us")  # what the list can be sorted by (worst first by default)
SHOWN_COLUMNS = (
    "request",
    "status",
    "admission",
    "client",
    "prompt_tokens",
    "output_tokens",
    "tokens_emitted",
    "queue_us",
    "ttft_us",
    "e2e_us",
    "tpot_us",
    "arrival_us",
    "admitted_us",
    "first_token_us",
    "last_token_us",
    "batch",
    "slot",
    "reason",
)
# The request's milestones, drawn as vertical lines on its timeline.
MILESTONES = (
    ("arrival_us", "arrival"),
    ("admitted_us", "admitted"),
    ("first_token_us", "first token"),
    ("last_token_us", "last token"),
)
EMPTY_SPAN_US = 1_000.0  # the window of a request without tokens or admission: 1 ms after its arrival


def requests_of(catalog: Catalog) -> pd.DataFrame | None:
    """The loaded ``requests`` tables (with ``folder``), or None when none has the columns the drill-down needs."""
    table = catalog.extra.get(REQUESTS_TABLE)
    if table is None or not set(REQUIRED) <= set(table.columns):
        return None
    return table


def runs_with_requests(catalog: Catalog) -> pd.DataFrame:
    """The runs (catalog rows) that have at least one request row and ops to draw, in catalog order."""
    table = requests_of(catalog)
    if table is None or catalog.runs.empty:
        return catalog.runs.iloc[:0]
    keys = table[RUN_KEY].drop_duplicates()
    runs = catalog.runs.merge(keys, on=RUN_KEY, how="inner")
    return runs[runs["n_ops"] > 0].reset_index(drop=True)


def run_requests(
    catalog: Catalog, folder: str, run_id: str, sort_by: str = "ttft_us", ascending: bool = False
) -> pd.DataFrame:
    """One run's requests, sorted by ``sort_by`` (worst first unless ``ascending``; requests without a value last,
    ties by request number), with the columns people read first."""
    table = requests_of(catalog)
    if table is None:
        return pd.DataFrame(columns=list(SHOWN_COLUMNS))
    mine = table[(table["folder"] == folder) & (table["run_id"] == run_id)]
    columns = [c for c in SHOWN_COLUMNS if c in mine.columns]
    if sort_by not in mine.columns:
        raise ValueError(f"the requests table has no column {sort_by!r}")
    mine = mine.sort_values(["request"], kind="stable").sort_values(
        sort_by, ascending=ascending, kind="stable", na_position="last"
    )
    return mine[columns].reset_index(drop=True)


def ms_name(column: str) -> str:
    """``ttft_us`` -> ``ttft_ms``; other names as they are."""
    return column[: -len("_us")] + "_ms" if column.endswith("_us") else column


def table_in_ms(table: pd.DataFrame) -> pd.DataFrame:
    """The requests table as people read it: every ``*_us`` column in milliseconds, named ``*_ms`` (still numbers,
    so the page's table sorts them numerically), the rest as it is, in the same order."""
    timed = [c for c in table.columns if c.endswith("_us")]
    out = table.astype({c: "float64" for c in timed})
    out[timed] = out[timed] / 1e3
    return out.rename(columns={c: ms_name(c) for c in timed})


def request_window(request: pd.Series | dict) -> tuple[float, float]:
    """From the request's arrival to its last token (to its admission, or 1 ms on, when it got no token)."""
    arrival = float(request["arrival_us"])
    for column in ("last_token_us", "first_token_us", "admitted_us"):
        value = request.get(column, np.nan)
        if value is not None and np.isfinite(value) and float(value) > arrival:
            return arrival, float(value)
    return arrival, arrival + EMPTY_SPAN_US


def milestones(request: pd.Series | dict) -> list[tuple[str, float]]:
    """``[("arrival", t), ("admitted", t), ...]``: the request's times that it has (finite), in time order."""
    marks = []
    for column, label in MILESTONES:
        value = request.get(column, np.nan)
        if value is not None and np.isfinite(value):
            marks.append((label, float(value)))
    return sorted(marks, key=lambda m: m[1])


@dataclass(frozen=True)
class RequestTimeline:
    view: TimelineView  # the run's lanes in the request's window, at the timeline's level of detail
    start_us: float
    end_us: float
    marks: list[tuple[str, float]]  # the request's milestones inside the window
    note: str  # "" or why the window differs from the request's span (clipped to the run)


def request_span(request: pd.Series | dict, run_end_us: float) -> tuple[float, float, list[tuple[str, float]], str]:
    """The request's window kept inside the run, its milestones in that window, and a note when it was clipped."""
    lo, hi = request_window(request)
    start, end, note = resolve_window(lo, hi, run_end_us)
    return start, end, milestones_in(request, start, end), note


def milestones_in(request: pd.Series | dict, start_us: float, end_us: float) -> list[tuple[str, float]]:
    """The request's milestones inside the window ``[start_us, end_us]`` (a zoomed one, say), in time order."""
    return [(label, t) for label, t in milestones(request) if start_us <= t <= end_us]


def request_timeline(
    ops: pd.DataFrame, request: pd.Series | dict, run_end_us: float, max_bars: int = DEFAULT_MAX_BARS
) -> RequestTimeline:
    """The timeline of ``ops`` (one run's) in the window of ``request``: the timeline page's bars for that window."""
    start, end, marks, note = request_span(request, run_end_us)
    return RequestTimeline(timeline_view(ops, max_bars, start, end), start, end, marks, note)


def request_labels(table: pd.DataFrame) -> dict[int, str]:
    """``{request number: request_label(row)}`` for every row of a :func:`run_requests` table."""
    return {int(r["request"]): request_label(r) for r in table.to_dict("records")}


def request_label(request: pd.Series | dict) -> str:
    """``request 17: TTFT 23.3 ms, e2e 4.01 s, queue 1 µs``."""
    parts = [f"request {int(request['request'])}"]
    details = [
        f"{name} {format_duration(float(request[column]))}"
        for column, name in (("ttft_us", "TTFT"), ("e2e_us", "e2e"), ("queue_us", "queue"))
        if column in request and pd.notna(request[column])
    ]
    status = request.get("status", "ok")
    if status and status != "ok":
        details.append(str(status))
    return parts[0] + (": " + ", ".join(details) if details else "")
