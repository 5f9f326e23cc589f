"""Pure functions over an ops timeline (a DataFrame in the results' ops schema)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals as sorted, disjoint intervals."""
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    keep = ends > starts
    starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    reach = np.maximum.accumulate(ends)
    new_block = np.empty(starts.size, dtype=bool)
    new_block[0] = True
    new_block[1:] = starts[1:] > reach[:-1]
    block = np.cumsum(new_block) - 1
    merged_starts = starts[new_block]
    merged_ends = np.zeros(merged_starts.size)
    np.maximum.at(merged_ends, block, reach)
    return merged_starts, merged_ends


def union_us(ops: pd.DataFrame) -> float:
    """Time during which at least one of the ops was running."""
    s, e = merge_intervals(ops["start_us"].to_numpy(), ops["end_us"].to_numpy())
    return float((e - s).sum())


def overlap_us(a: pd.DataFrame, b: pd.DataFrame) -> float:
    """Time during which some op of ``a`` and some op of ``b`` ran together."""
    both = pd.concat([a[["start_us", "end_us"]], b[["start_us", "end_us"]]])
    return union_us(a) + union_us(b) - union_us(both)


def busy_fraction(ops: pd.DataFrame, span_us: float) -> float:
    """Share of ``span_us`` during which at least one of the ops was running."""
    return union_us(ops) / span_us if span_us > 0 else 0.0
