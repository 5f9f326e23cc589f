"""A run's ops as timeline bars: lanes, and a level of detail bounded for the browser.

Lanes: one per device stream (``gpu<d> stream <name>``), one per copy engine
(``gpu<d> copy engine h2d|d2h``: every H2D/D2H copy also appears there) and one
per host thread (``host thread <name>``, the ``device = -1`` rows). Beyond
``max_lanes``, lanes of one family (names equal but for a trailing number:
``host thread deadline17``) share one lane, ``host thread deadline* (212 lanes)``.

Level of detail, as Perfetto and Nsight Systems draw it: every lane gets an equal
share of ``max_bars``. A lane whose ops in the window fit its share draws every
op. A busier lane is cut into equal time buckets (half its share): ops at least
one bucket long are still drawn singly, with their names; shorter ones are
merged into one bar per bucket, coloured by the kind that kept the lane busiest
there (kernels and copies before waits and records), with the busy fraction, the
op count and the mix of kinds. The window, not the run, sets the bucket, so
zooming in re-aggregates down to single ops. Nothing is drawn wider than it is,
except zero-length ops, which get 1/1000 of the window so they can be seen.

Launch arrows: in a window of at most ``MAX_FLOW_BARS`` bars, none merged, each
kernel or copy whose launching thread has a lane in the window gets a flow from
the call (its ``issue_us`` on the thread's lane) to its start on its stream lane.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COPY_ENGINE_KINDS = {"copy_h2d": "h2d", "copy_d2h": "d2h"}
DEFAULT_MAX_BARS = 1500  # per run: ~1,500 SVG bars keep plotly interactive on a 2-core machine
DEFAULT_MAX_LANES = 24
MIN_WIDTH_FRACTION = 1e-3  # of the window's span: about 1.5 px of a 1600 px chart
# Which kind colours a merged bar when kinds keep a lane equally busy: real work before waits and records.
KIND_RANK = {
    k: i
    for i, k in enumerate(
        ["kernel", "copy_h2d", "copy_d2h", "copy_d2d", "host_work", "host_alloc", "host_sync", "wait", "record"]
    )
}
BAR_COLUMNS = [
    "lane",
    "lane_order",
    "kind",  # the op's kind; for a merged bar the kind with the most busy time
    "name",  # the op's name; for a merged bar its one name, else "<n> ops"
    "start_us",
    "end_us",
    "bytes",
    "n_ops",
    "busy_us",  # sum of the ops' durations
    "busy_frac",  # busy_us over the bar's length (1 for a single op)
    "launch_us",  # mean start - issue of device ops (launch latency); NaN for host ops
    "kinds",  # merged bars: "kernel 300, wait 12" (ops per kind, busiest first); "" for single ops
]
TIME_UNITS = (("s", 1e6), ("ms", 1e3), ("µs", 1.0))
# Launch arrows (host thread's call -> the op's start on its stream, as Perfetto and Nsight Systems draw flows):
# only in a window of at most this many bars, none merged; beyond it they are a hatching, not a picture.
MAX_FLOW_BARS = 200
FLOW_KINDS = ("kernel", "copy_h2d", "copy_d2h", "copy_d2d")  # the device work a launch starts (not records, waits)
FLOW_COLUMNS = [
    "name",
    "kind",
    "from_lane",  # the launching host thread's lane
    "issue_us",  # when the thread made the call
    "to_lane",  # the op's stream lane
    "start_us",  # when the op started there
]


# --------------------------------------------------------------------------- time units


def time_unit(span_us: float) -> tuple[str, float]:
    """The unit to show a span in (s, ms or µs) and its size in µs: ``time_unit(10_000) == ("ms", 1e3)``."""
    for unit, scale in TIME_UNITS:
        if span_us >= 2 * scale:
            return unit, scale
    return TIME_UNITS[-1]


def format_duration(us: float) -> str:
    """``1.5 ms``, ``850 µs``, ``12.3 s``: three significant digits in the unit that fits."""
    if not np.isfinite(us):
        return "-"
    unit, scale = next(((u, s) for u, s in TIME_UNITS if abs(us) >= s), TIME_UNITS[-1])
    value = us / scale
    return f"{value:,.3g} {unit}" if abs(value) < 1000 else f"{value:,.0f} {unit}"


def format_window(start_us: float, end_us: float) -> str:
    """``10,000.00 ms to 10,002.00 ms``: both ends in the unit that fits the window's span, with the digits that
    tell them apart (three significant digits of the span), however late in the run the window lies."""
    if not (np.isfinite(start_us) and np.isfinite(end_us)):
        return f"{format_duration(start_us)} to {format_duration(end_us)}"
    span_us = abs(end_us - start_us)
    unit, scale = time_unit(span_us)
    span = span_us / scale
    decimals = max(0, 2 - int(np.floor(np.log10(span)))) if span > 0 else 3
    return f"{start_us / scale:,.{decimals}f} {unit} to {end_us / scale:,.{decimals}f} {unit}"


# --------------------------------------------------------------------------- lanes


@dataclass(frozen=True)
class _Rows:
    """Each op once per lane it occupies: ``row`` indexes the ops, ``lane`` the lane names."""

    row: np.ndarray
    lane: np.ndarray
    names: list[str]
    orders: list[int]
    collapsed: list[str] = field(default_factory=list)


def _natural(name: str) -> list:
    """``stream2`` before ``stream10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def _lane_rows(ops: pd.DataFrame) -> _Rows:
    n = len(ops)
    if n == 0:
        return _Rows(np.zeros(0, int), np.zeros(0, int), [], [])
    device = ops["device"].to_numpy().astype(np.int64)
    stream_codes, stream_names = _codes(ops["stream"])
    lo_dev = min(int(device.min()), -1)
    pair = (device - lo_dev) * (len(stream_names) + 1) + stream_codes
    uniques, keys = _dense_unique(pair)
    names, orders = [], []
    for p in uniques:
        d, s = int(p // (len(stream_names) + 1)) + lo_dev, stream_names[int(p % (len(stream_names) + 1))]
        names.append(f"host thread {s}" if d < 0 else f"gpu{d} stream {s}")
        orders.append(0 if d < 0 else 1 + 3 * d)
    kind_codes, kind_names = _codes(ops["kind"])
    rows, lanes_ = [np.arange(n)], [keys]
    for copy_kind, direction in COPY_ENGINE_KINDS.items():
        if copy_kind not in kind_names:
            continue
        is_kind = kind_codes == kind_names.index(copy_kind)
        for d in np.flatnonzero(np.bincount(device[device >= 0])) if (device >= 0).any() else []:
            on = np.flatnonzero((device == d) & is_kind)
            if on.size:
                rows.append(on)
                lanes_.append(np.full(on.size, len(names)))
                names.append(f"gpu{d} copy engine {direction}")
                orders.append(2 + 3 * int(d))
    return _Rows(np.concatenate(rows), np.concatenate(lanes_), names, orders)


def lane_family(lane: str) -> str:
    return re.sub(r"\d+$", "*", lane)


def _collapse(rows: _Rows, max_lanes: int) -> _Rows:
    """Beyond ``max_lanes`` lanes, share one lane per family, largest family first, until the bound holds."""
    names = pd.Series(rows.names)
    family = names.map(lane_family)
    sizes = family[family.str.endswith("*")].value_counts()
    count, renamed = len(names), {}
    for fam, size in sizes.items():
        if count <= max_lanes or size < 2:
            break
        renamed.update({lane: f"{fam} ({size} lanes)" for lane in names[family == fam]})
        count -= size - 1
    if not renamed:
        return rows
    new_names = [renamed.get(lane, lane) for lane in rows.names]
    unique = list(dict.fromkeys(new_names))
    index = {name: i for i, name in enumerate(unique)}
    mapping = np.array([index[name] for name in new_names])
    orders = {index[name]: order for name, order in zip(new_names, rows.orders)}
    return _Rows(
        rows.row, mapping[rows.lane], unique, [orders[i] for i in range(len(unique))], sorted(set(renamed.values()))
    )


def lanes(bars: pd.DataFrame) -> list[str]:
    """Lanes top to bottom: host threads, then each device's streams and copy engines."""
    pairs = set(zip(bars["lane_order"], bars["lane"]))
    return [lane for _, lane in sorted(pairs, key=lambda p: (p[0], _natural(p[1])))]


def _single_bars(ops: pd.DataFrame, rows: _Rows, pick: np.ndarray) -> pd.DataFrame:
    """One bar per picked (op, lane) row."""
    r, lane = rows.row[pick], rows.lane[pick]
    start = ops["start_us"].to_numpy()[r]
    end = ops["end_us"].to_numpy()[r]
    device = ops["device"].to_numpy()[r]
    launch = np.where(device >= 0, start - ops["issue_us"].to_numpy()[r], np.nan)
    names, orders = np.array(rows.names, dtype=object), np.array(rows.orders)
    kind_codes, kind_names = _codes(ops["kind"])
    name_codes, name_names = _codes(ops["name"])
    return pd.DataFrame(
        {
            "lane": names[lane] if lane.size else np.array([], dtype=object),
            "lane_order": orders[lane] if lane.size else np.array([], dtype=int),
            "kind": np.array(kind_names, dtype=object)[kind_codes[r]] if r.size else np.array([], dtype=object),
            "name": np.array(name_names, dtype=object)[name_codes[r]] if r.size else np.array([], dtype=object),
            "start_us": start,
            "end_us": end,
            "bytes": ops["bytes"].to_numpy()[r],
            "n_ops": 1,
            "busy_us": end - start,
            "busy_frac": 1.0,
            "launch_us": launch,
            "kinds": "",
        },
        columns=BAR_COLUMNS,
    )


def lane_bars(ops: pd.DataFrame) -> pd.DataFrame:
    """One bar per op per lane it occupies (copies occupy their stream and their copy engine)."""
    rows = _lane_rows(ops)
    bars = _single_bars(ops, rows, np.ones(rows.row.size, dtype=bool))
    return _ordered(bars)


def _ordered(bars: pd.DataFrame) -> pd.DataFrame:
    rank = {lane: i for i, lane in enumerate(lanes(bars))}
    key = bars["lane"].map(rank)
    return bars.assign(_k=key).sort_values(["_k", "start_us"], kind="stable").drop(columns="_k").reset_index(drop=True)


def _dense_unique(values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``np.unique(values, return_inverse=True)`` for small non-negative integers, without sorting (a million
    lane and bucket keys in milliseconds)."""
    if values.size == 0:
        return values.astype(np.int64), values.astype(np.int64)
    present = np.flatnonzero(np.bincount(values))
    index = np.zeros(int(present[-1]) + 1, dtype=np.int64)
    index[present] = np.arange(present.size)
    return present, index[values]


def _codes(column: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes and their names, without turning a million categorical values into Python objects."""
    if isinstance(column.dtype, pd.CategoricalDtype):
        return column.cat.codes.to_numpy(), [str(c) for c in column.cat.categories]
    codes, uniques = pd.factorize(column.astype(str), use_na_sentinel=False)
    return codes, [str(u) for u in uniques]


def _bucket_bars(
    ops: pd.DataFrame, rows: _Rows, pick: np.ndarray, lo: float, width: float, n_buckets: int
) -> pd.DataFrame:
    """Picked rows merged per (lane, bucket): extent, op count, busy time, bytes, dominant kind, mix of kinds."""
    if not pick.any():
        return pd.DataFrame(columns=BAR_COLUMNS)
    r, lane = rows.row[pick], rows.lane[pick]
    start = ops["start_us"].to_numpy()[r]
    end = ops["end_us"].to_numpy()[r]
    device = ops["device"].to_numpy()[r]
    kind_codes, kind_names = _codes(ops["kind"])
    name_codes, name_names = _codes(ops["name"])
    kind, name = kind_codes[r].astype(np.int64), name_codes[r].astype(np.int64)
    bucket = np.clip(((start - lo) // width).astype(np.int64), 0, n_buckets - 1)
    keys, inverse = _dense_unique(lane.astype(np.int64) * n_buckets + bucket)
    m, n_kinds = keys.size, len(kind_names)
    dur = end - start
    lo_s, hi_e = np.full(m, np.inf), np.full(m, -np.inf)
    np.minimum.at(lo_s, inverse, start)
    np.maximum.at(hi_e, inverse, end)
    name_lo, name_hi = np.full(m, np.iinfo(np.int64).max), np.full(m, -1)
    np.minimum.at(name_lo, inverse, name)
    np.maximum.at(name_hi, inverse, name)
    n_ops = np.bincount(inverse, minlength=m)
    busy = np.bincount(inverse, weights=dur, minlength=m)
    nbytes = np.bincount(inverse, weights=ops["bytes"].to_numpy()[r], minlength=m)
    launch = np.where(device >= 0, start - ops["issue_us"].to_numpy()[r], np.nan)
    timed = np.isfinite(launch)
    launch_n = np.bincount(inverse[timed], minlength=m)
    launch_sum = np.bincount(inverse[timed], weights=launch[timed], minlength=m)
    cell = inverse * n_kinds + kind
    kind_busy = np.bincount(cell, weights=dur, minlength=m * n_kinds).reshape(m, n_kinds)
    kind_n = np.bincount(cell, minlength=m * n_kinds).reshape(m, n_kinds)
    ranks = [KIND_RANK.get(k, len(KIND_RANK)) for k in kind_names]
    dominant, mix = [], []
    for busy_row, n_row in zip(kind_busy, kind_n):
        present = sorted(np.flatnonzero(n_row), key=lambda k: (-busy_row[k], -n_row[k], ranks[k]))
        dominant.append(kind_names[present[0]])
        mix.append(", ".join(f"{kind_names[k]} {n_row[k]:,}" for k in present))
    extent = hi_e - lo_s
    with np.errstate(divide="ignore", invalid="ignore"):
        busy_frac = np.where(extent > 0, np.clip(busy / extent, 0.0, 1.0), 1.0)
        launch_mean = np.where(launch_n > 0, launch_sum / launch_n, np.nan)
    names = np.array(name_names, dtype=object)
    labels = [names[lo_n] if lo_n == hi_n else f"{n:,} ops" for lo_n, hi_n, n in zip(name_lo, name_hi, n_ops)]
    lane_of = keys // n_buckets
    return pd.DataFrame(
        {
            "lane": np.array(rows.names, dtype=object)[lane_of],
            "lane_order": np.array(rows.orders)[lane_of],
            "kind": dominant,
            "name": labels,
            "start_us": lo_s,
            "end_us": hi_e,
            "bytes": nbytes.astype(np.int64),
            "n_ops": n_ops,
            "busy_us": busy,
            "busy_frac": busy_frac,
            "launch_us": launch_mean,
            "kinds": mix,
        },
        columns=BAR_COLUMNS,
    )


def _launch_flows(ops: pd.DataFrame, rows: _Rows) -> pd.DataFrame:
    """One row per kernel or copy of ``ops`` (FLOW_KINDS) whose launching thread has a lane among ``rows`` (it has
    host ops in the window) and whose issue time is known: from the call on the thread's lane to the op's start on
    its stream lane (never its copy engine lane)."""
    n = len(ops)
    if n == 0 or "thread" not in ops.columns or "issue_us" not in ops.columns:
        return pd.DataFrame(columns=FLOW_COLUMNS)
    # _lane_rows lists every op once on its own lane first (its stream; for host ops their thread), in op order.
    own_lane = rows.lane[:n]
    device = ops["device"].to_numpy()
    host = device < 0
    stream_codes, stream_names = _codes(ops["stream"])  # a host op's stream is its thread
    thread_lane = {stream_names[c]: lane for c, lane in zip(stream_codes[host], own_lane[host])}
    thread_codes, thread_names = _codes(ops["thread"])
    launcher = np.array([thread_lane.get(t, -1) for t in thread_names], dtype=np.int64)[thread_codes]
    issue = ops["issue_us"].to_numpy(dtype=float)
    kind_codes, kind_names = _codes(ops["kind"])
    work = np.isin(kind_codes, [i for i, k in enumerate(kind_names) if k in FLOW_KINDS])
    pick = np.flatnonzero(~host & work & (launcher >= 0) & np.isfinite(issue))
    names = np.array(rows.names, dtype=object)
    name_codes, name_names = _codes(ops["name"])
    return pd.DataFrame(
        {
            "name": np.array(name_names, dtype=object)[name_codes[pick]],
            "kind": np.array(kind_names, dtype=object)[kind_codes[pick]],
            "from_lane": names[launcher[pick]],
            "issue_us": issue[pick],
            "to_lane": names[own_lane[pick]],
            "start_us": ops["start_us"].to_numpy(dtype=float)[pick],
        },
        columns=FLOW_COLUMNS,
    ).reset_index(drop=True)


# --------------------------------------------------------------------------- the view


@dataclass(frozen=True)
class TimelineView:
    bars: pd.DataFrame  # BAR_COLUMNS
    n_ops: int  # ops in the window
    n_bars_full: int  # bars if every op were drawn (copies count twice: stream and copy engine)
    bucket_us: float  # 0.0: every op is its own bar; else the time bucket of the busy lanes
    collapsed: list[str] = field(default_factory=list)  # lanes that stand for a family of lanes
    start_us: float = 0.0  # the window
    end_us: float = 0.0
    max_bars: int = DEFAULT_MAX_BARS
    busy_lanes: list[str] = field(default_factory=list)  # lanes whose short ops are merged
    # FLOW_COLUMNS: launch arrows, only when no bar is merged and at most MAX_FLOW_BARS bars are drawn
    flows: pd.DataFrame = field(default_factory=lambda: pd.DataFrame(columns=FLOW_COLUMNS))

    @property
    def merged(self) -> bool:
        return self.bucket_us > 0

    def note(self) -> str:
        lanes_note = (
            f" Lanes shared by a family of threads or streams: {', '.join(self.collapsed)}." if self.collapsed else ""
        )
        return self._bars_note() + lanes_note

    def _bars_note(self) -> str:
        if not self.merged:
            return f"{self.n_ops:,} ops, every op drawn ({len(self.bars):,} bars)."
        bucket = format_duration(self.bucket_us)
        return (
            f"{self.n_ops:,} ops ({self.n_bars_full:,} bars) exceed the bound of {self.max_bars:,} bars: on "
            f"{len(self.busy_lanes)} busy lane(s) ops shorter than {bucket} are merged into one bar per {bucket} "
            f"(colour: the busiest kind, shade: the busy fraction; hover for the mix), longer ops drawn singly; "
            f"{len(self.bars):,} bars drawn. Zoom in to see single ops."
        )


def in_window(ops: pd.DataFrame, start_us: float | None, end_us: float | None) -> pd.DataFrame:
    """Ops that overlap [start_us, end_us]."""
    keep = np.ones(len(ops), dtype=bool)
    if start_us is not None:
        keep &= ops["end_us"].to_numpy() >= start_us
    if end_us is not None:
        keep &= ops["start_us"].to_numpy() <= end_us
    return ops if keep.all() else ops[keep]


def timeline_view(
    ops: pd.DataFrame,
    max_bars: int = DEFAULT_MAX_BARS,
    start_us: float | None = None,
    end_us: float | None = None,
    max_lanes: int = DEFAULT_MAX_LANES,
) -> TimelineView:
    """The bars to draw for ``ops`` in a window: lanes collapsed past ``max_lanes``, each lane within its share."""
    window = in_window(ops, start_us, end_us)
    rows = _collapse(_lane_rows(window), max_lanes)
    lo = float(start_us) if start_us is not None else float(window["start_us"].min()) if len(window) else 0.0
    hi = float(end_us) if end_us is not None else float(window["end_us"].max()) if len(window) else 0.0
    n_lanes = max(1, len(rows.names))
    budget = max(2, max_bars // n_lanes)
    counts = np.bincount(rows.lane, minlength=len(rows.names))
    dense_lane = counts > budget
    if not dense_lane.any():
        bars = _ordered(_single_bars(window, rows, np.ones(rows.row.size, dtype=bool)))
        flows = _launch_flows(window, rows) if len(bars) <= MAX_FLOW_BARS else pd.DataFrame(columns=FLOW_COLUMNS)
        return TimelineView(bars, len(window), len(bars), 0.0, rows.collapsed, lo, hi, max_bars, flows=flows)
    n_buckets = max(1, budget // 2)
    width = max(hi - lo, 1e-9) / n_buckets
    start = window["start_us"].to_numpy()[rows.row]
    dur = window["end_us"].to_numpy()[rows.row] - start
    dense = dense_lane[rows.lane]
    # On a busy lane, ops at least a bucket long stay single, the longest first, at most one per bucket.
    wide = dense & (dur >= width)
    if wide.any():
        order = np.lexsort((-dur[wide], rows.lane[wide]))
        idx = np.flatnonzero(wide)[order]
        rank = pd.Series(rows.lane[idx]).groupby(rows.lane[idx]).cumcount().to_numpy()
        wide[idx[rank >= n_buckets]] = False
    single = ~dense | wide
    bars = pd.concat(
        [
            _single_bars(window, rows, single),
            _bucket_bars(window, rows, ~single, lo, width, n_buckets),
        ],
        ignore_index=True,
    )
    busy = [rows.names[i] for i in np.flatnonzero(dense_lane)]
    return TimelineView(_ordered(bars), len(window), rows.row.size, width, rows.collapsed, lo, hi, max_bars, busy)


def min_visible_width_us(start_us: float, end_us: float, fraction: float = MIN_WIDTH_FRACTION) -> float:
    """Zero-length ops (records, waits) get this display width, a fraction of the window, never of the run."""
    return max(end_us - start_us, 0.0) * fraction


# --------------------------------------------------------------------------- windows


def resolve_window(start_us: float | None, end_us: float | None, run_end_us: float) -> tuple[float, float, str]:
    """A window inside ``[0, run_end_us]``; a missing, reversed or outside one (say, kept from another run) becomes
    the whole run, with a note saying so."""
    whole = (0.0, float(run_end_us), "")
    if start_us is None or end_us is None:
        return whole
    lo, hi = max(0.0, float(start_us)), min(float(run_end_us), float(end_us))
    if hi > lo:
        return lo, hi, ""
    note = (
        f"The window {format_duration(start_us)} to {format_duration(end_us)} lies outside this run "
        f"(0 to {format_duration(run_end_us)}): showing the whole run."
    )
    return 0.0, float(run_end_us), note


def zoom_window(start_us: float, end_us: float, factor: float, run_end_us: float) -> tuple[float, float]:
    """Zoom about the window's centre (factor < 1 zooms in), kept inside the run."""
    centre, half = (start_us + end_us) / 2, (end_us - start_us) * factor / 2
    half = min(max(half, 1e-3), run_end_us / 2)
    lo = min(max(0.0, centre - half), max(0.0, run_end_us - 2 * half))
    return lo, min(run_end_us, lo + 2 * half)


def pan_window(start_us: float, end_us: float, fraction: float, run_end_us: float) -> tuple[float, float]:
    """Move the window by ``fraction`` of its span, kept inside the run."""
    span = end_us - start_us
    lo = min(max(0.0, start_us + fraction * span), max(0.0, run_end_us - span))
    return lo, lo + span


def window_from_relayout(
    relayout: dict | None,
    unit_us: float,
    window: tuple[float, float],
    run_end_us: float,
    home: tuple[float, float] | None = None,
) -> tuple[float, float] | None:
    """The window (µs) that a zoom or pan in the browser asks for, or None when it leaves the window as it is.

    ``relayout``: the x axes' keys of plotly's ``plotly_relayout`` events (the stacked runs share one x range, so
    ``xaxis2.range[0]`` counts as ``xaxis.range[0]``), in the unit of the figure it was made on (``unit_us`` µs):
    ``xaxis.range`` ([lo, hi]: wheel, modebar zoom, a dragged box), ``xaxis.range[0]`` or ``xaxis.range[1]`` alone
    (one end dragged: the other stays at ``window``'s), ``xaxis.autorange`` (a double click: ``home``, by default
    the whole run; the Requests page's home is the request's window). A
    reversed range is put in order; one reaching out of the run is moved back inside it with its span (a pan past
    the end stops at the end), a span wider than the run becomes the run. Values that are not finite numbers are
    ignored."""
    if not relayout or not (unit_us > 0) or not (run_end_us > 0):
        return None
    lo_us, hi_us = window
    ends: dict[int, float] = {}
    autorange = False
    for key, value in relayout.items():
        match = re.fullmatch(r"xaxis\d*\.(range(?:\[([01])\])?|autorange)", str(key))
        if not match:
            continue
        if match.group(1) == "autorange":
            autorange = autorange or bool(value)
        elif match.group(2) is not None:
            ends[int(match.group(2))] = value
        elif isinstance(value, (list, tuple)) and len(value) == 2:
            ends[0], ends[1] = value
    if autorange and not ends:
        lo, hi = home if home is not None else (0.0, float(run_end_us))
    else:
        numbers = {i: _finite(v) for i, v in ends.items()}
        numbers = {i: v * unit_us for i, v in numbers.items() if v is not None}
        if not numbers:
            return None
        lo, hi = sorted((numbers.get(0, lo_us), numbers.get(1, hi_us)))
        span = min(hi - lo, float(run_end_us))
        if not span > 0:
            return None
        lo = min(max(0.0, lo), float(run_end_us) - span)
        hi = lo + span
    tolerance = 1e-9 * max(float(run_end_us), 1.0)
    if abs(lo - lo_us) <= tolerance and abs(hi - hi_us) <= tolerance:
        return None
    return lo, hi


def _finite(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if np.isfinite(number) else None


def search_ops(ops: pd.DataFrame, text: str, limit: int = 200) -> tuple[pd.DataFrame, int]:
    """Ops whose name contains ``text`` (case-insensitive), earliest first: the first ``limit`` and how many in all."""
    columns = ["name", "kind", "device", "stream", "start_us", "end_us", "bytes"]
    if not text or ops.empty:
        return pd.DataFrame(columns=columns), 0
    names = ops["name"].astype("category")
    hit_names = [c for c in names.cat.categories if text.lower() in str(c).lower()]
    hits = ops[names.isin(hit_names).to_numpy()]
    found = hits.sort_values("start_us", kind="stable").head(limit)[columns]
    return found.astype({"name": str, "kind": str, "stream": str}).reset_index(drop=True), len(hits)
