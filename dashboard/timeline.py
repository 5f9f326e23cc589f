"""A run's ops as timeline bars: lanes, and a bounded number of bars for the browser.

Lanes: one per device stream (``gpu<d> stream <name>``), one per copy engine
(``gpu<d> copy engine h2d|d2h``: every H2D/D2H copy also appears there) and one
per host thread (``host thread <name>``, the ``device = -1`` rows).

A browser cannot draw tens of thousands of bars; beyond ``max_bars`` the ops of
one lane and kind that lie closer together than a resolution are merged into one
bar (the resolution doubles until the bound holds), and the view says so. Nor
can a person read hundreds of lanes: beyond ``max_lanes``, lanes of one family
(names equal but for a trailing number: ``host thread deadline17``) share one
lane, ``host thread deadline* (212 lanes)``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

COPY_ENGINE_KINDS = {"copy_h2d": "h2d", "copy_d2h": "d2h"}
DEFAULT_MAX_BARS = 3000
DEFAULT_MAX_LANES = 24
BAR_COLUMNS = ["lane", "lane_order", "kind", "name", "start_us", "end_us", "bytes", "n_ops"]


def lane_bars(ops: pd.DataFrame) -> pd.DataFrame:
    """One bar per op per lane it occupies (copies occupy their stream and their copy engine)."""
    host = ops["device"] < 0
    base = ops.assign(
        lane=np.where(host, "host thread " + ops["stream"], "gpu" + ops["device"].astype(str) + " stream " + ops["stream"]),
        lane_order=np.where(host, 0, 1 + 3 * ops["device"].clip(lower=0)),
    )
    copies = ops[(~host) & ops["kind"].isin(list(COPY_ENGINE_KINDS))]
    engine = copies.assign(
        lane="gpu" + copies["device"].astype(str) + " copy engine " + copies["kind"].map(COPY_ENGINE_KINDS),
        lane_order=2 + 3 * copies["device"],
    )
    bars = pd.concat([base, engine], ignore_index=True)
    bars["n_ops"] = 1
    bars = bars.sort_values(["lane_order", "lane", "start_us"], kind="stable")
    return bars[BAR_COLUMNS].reset_index(drop=True)


def lanes(bars: pd.DataFrame) -> list[str]:
    """Lanes top to bottom: host threads, then each device's streams and copy engines."""
    pairs = set(zip(bars["lane_order"], bars["lane"]))
    return [lane for _, lane in sorted(pairs, key=lambda p: (p[0], _natural(p[1])))]


def _natural(name: str) -> list:
    """``stream2`` before ``stream10``."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def merge_close(bars: pd.DataFrame, gap_us: float) -> pd.DataFrame:
    """Merge bars of the same lane and kind separated by at most ``gap_us`` into one bar."""
    if bars.empty:
        return bars
    b = bars.sort_values(["lane", "kind", "start_us"], kind="stable").reset_index(drop=True)
    group = b["lane"] + "\x00" + b["kind"]
    reach = b.groupby(group, sort=False)["end_us"].cummax()
    prev_reach = reach.groupby(group, sort=False).shift(1)
    new_block = prev_reach.isna() | (b["start_us"] > prev_reach + gap_us)
    block = new_block.cumsum()
    merged = b.groupby(block, sort=False).agg(
        lane=("lane", "first"),
        lane_order=("lane_order", "first"),
        kind=("kind", "first"),
        name=("name", "first"),
        start_us=("start_us", "min"),
        end_us=("end_us", "max"),
        bytes=("bytes", "sum"),
        n_ops=("n_ops", "sum"),
    )
    many = merged["n_ops"] > 1
    merged.loc[many, "name"] = merged.loc[many, "n_ops"].astype(str) + " ops from " + merged.loc[many, "name"]
    return merged.sort_values(["lane_order", "lane", "start_us"], kind="stable").reset_index(drop=True)


def lane_family(lane: str) -> str:
    return re.sub(r"\d+$", "*", lane)


def collapse_lanes(bars: pd.DataFrame, max_lanes: int) -> tuple[pd.DataFrame, list[str]]:
    """Beyond ``max_lanes`` lanes, share one lane per family, largest family first, until the bound holds.

    Returns the bars and the names of the shared lanes.
    """
    names = pd.Series(lanes(bars))
    family = names.map(lane_family)
    sizes = family[family.str.endswith("*")].value_counts()
    count, renamed = len(names), {}
    for fam, size in sizes.items():
        if count <= max_lanes or size < 2:
            break
        renamed.update({lane: f"{fam} ({size} lanes)" for lane in names[family == fam]})
        count -= size - 1
    if not renamed:
        return bars, []
    return bars.assign(lane=bars["lane"].map(lambda lane: renamed.get(lane, lane))), sorted(set(renamed.values()))


@dataclass(frozen=True)
class TimelineView:
    bars: pd.DataFrame  # BAR_COLUMNS
    n_ops: int  # ops in the window
    n_bars_full: int  # bars before merging
    merge_gap_us: float  # 0.0: every op is its own bar
    collapsed: list[str] = field(default_factory=list)  # lanes that stand for a family of lanes

    @property
    def merged(self) -> bool:
        return self.merge_gap_us > 0

    def note(self) -> str:
        lanes_note = f" Lanes shared by a family of threads or streams: {', '.join(self.collapsed)}." if self.collapsed else ""
        return self._bars_note() + lanes_note

    def _bars_note(self) -> str:
        if not self.merged:
            return f"{self.n_ops:,} ops, every op drawn ({len(self.bars):,} bars)."
        return (
            f"{self.n_ops:,} ops ({self.n_bars_full:,} bars) exceed the bound: ops of one lane and kind closer than "
            f"{self.merge_gap_us:,.1f} µs are merged, {len(self.bars):,} bars drawn. Narrow the time window to see single ops."
        )


def in_window(ops: pd.DataFrame, start_us: float | None, end_us: float | None) -> pd.DataFrame:
    """Ops that overlap [start_us, end_us]."""
    keep = pd.Series(True, index=ops.index)
    if start_us is not None:
        keep &= ops["end_us"] >= start_us
    if end_us is not None:
        keep &= ops["start_us"] <= end_us
    return ops[keep]


def timeline_view(
    ops: pd.DataFrame,
    max_bars: int = DEFAULT_MAX_BARS,
    start_us: float | None = None,
    end_us: float | None = None,
    max_lanes: int = DEFAULT_MAX_LANES,
) -> TimelineView:
    """The bars to draw for ``ops`` in a window: lanes collapsed past ``max_lanes``, bars merged past ``max_bars``."""
    window = in_window(ops, start_us, end_us)
    bars, collapsed = collapse_lanes(lane_bars(window), max_lanes)
    full = len(bars)
    if full <= max_bars:
        return TimelineView(bars, len(window), full, 0.0, collapsed)
    span = float(bars["end_us"].max() - bars["start_us"].min()) or 1.0
    gap = span / 4000
    merged = merge_close(bars, gap)
    while len(merged) > max_bars:
        gap *= 2
        merged = merge_close(merged, gap)
    return TimelineView(merged, len(window), full, gap, collapsed)


def min_visible_width_us(views: list[TimelineView], fraction: float = 5e-4) -> float:
    """Zero-length ops (records, waits) get this display width so they can be seen and hovered."""
    spans = [float(v.bars["end_us"].max()) for v in views if not v.bars.empty]
    return (max(spans) if spans else 0.0) * fraction
