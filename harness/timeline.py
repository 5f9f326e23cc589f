"""Pure functions over an ops timeline (a DataFrame in the results' ops schema)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def merge_intervals(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Union of [start, end) intervals as sorted, disjoint intervals."""
    starts = np.asarray(starts, dtype=float)
    ends = np.asarray(ends, dtype=float)
    keep = ends > starts
    if not keep.all():  # (a timeline of a million kernels is already kept and sorted: no copies of it)
        starts, ends = starts[keep], ends[keep]
    if starts.size == 0:
        return starts, ends
    if not (starts[1:] >= starts[:-1]).all():  # a stable sort leaves a sorted array as it is
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
    """Time during which some op of ``a`` and some op of ``b`` ran together.

    Summed over the stretches between consecutive interval ends where both
    unions cover, so ops that never overlap give exactly 0 (inclusion-exclusion
    of the unions left float noise such as 6e-11 µs, which log axes then show).
    """
    sa, ea = merge_intervals(a["start_us"].to_numpy(), a["end_us"].to_numpy())
    sb, eb = merge_intervals(b["start_us"].to_numpy(), b["end_us"].to_numpy())
    if sa.size == 0 or sb.size == 0:
        return 0.0
    points = np.concatenate([sa, ea, sb, eb])
    zeros_a, zeros_b = np.zeros(2 * sa.size), np.zeros(2 * sb.size)
    step_a = np.concatenate([np.ones(sa.size), -np.ones(ea.size), zeros_b])
    step_b = np.concatenate([zeros_a, np.ones(sb.size), -np.ones(eb.size)])
    order = np.argsort(points, kind="stable")
    points = points[order]
    covered = (np.cumsum(step_a[order]) > 0) & (np.cumsum(step_b[order]) > 0)
    return float(np.diff(points)[covered[:-1]].sum())


def busy_fraction(ops: pd.DataFrame, span_us: float) -> float:
    """Share of ``span_us`` during which at least one of the ops was running."""
    return union_us(ops) / span_us if span_us > 0 else 0.0
