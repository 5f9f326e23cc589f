"""A recording's repeated steps at their typical host cost (``host_stalls = "typical"``).

A recording is one run of the program, and one run holds host stalls: on the
2026-12-07 H100 corpus a single decode step of a recording took up to 8x the
recording's median step, and the stall and the slow steps after it made 1-30% of
some recordings' spans (``tools/profiler_inflation.py``), with or without the
profiler's CPU activities. The unprofiled truth a prediction is held against is a
median over rounds, which leaves such stalls out. A loop's steps run the same code:
their calls are the same calls, so the typical host cost of each is the median over
the steps.

*Steps* are the thread's maximal runs of consecutive calls with the same non-empty
``group`` (a ``ProfilerStep#N`` or the innermost ``record_function`` range). Runs
whose calls are the same (the same kinds and names in the same order) form a
*family*. In each family of at least :data:`MIN_REPEATS` runs, a run's host time is
the sum of its calls' gaps (``host_before_us``) and of the durations of those that
are host work (not syncs: a sync's duration is how long it blocked). A run whose host
time exceeds the family's median by more than :data:`STALL_MADS` scaled median
absolute deviations (1.4826 MAD) is *stalled*: its gaps and costs are drawn toward
the per-call medians over the family, in proportion, until the run takes the median
host time. Runs within the band keep their recorded times (the ordinary step-to-step
noise, which the truth's rounds have too); everything else (GPU ops, calls outside
repeated runs) is unchanged. A thread that marks no steps (a CUDA-only recording has no
ranges) is cut into steps by the period of its call sequence (:func:`call_period`),
where it has one.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd

from workloads.recorded.program import SYNC_CALLS, RecordedProgram, ThreadProgram

MIN_REPEATS = 3
PERIOD_MATCH = 0.95  # an unmarked thread's calls repeat with a period where this share matches one period on
MAX_CODES = 8  # call kinds (rarest first) whose spacing proposes a period
MAX_PER_PERIOD = 64  # at most this many calls of one kind in a period
STALL_MADS = 3.0  # a run is stalled when its host time exceeds its family's median by this many (scaled) MADs


def typical_costs(
    kind: np.ndarray, name: np.ndarray, group: np.ndarray, host_before_us: np.ndarray, duration_us: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The gaps and durations of one thread's calls (in order) with every stalled repeated step made typical."""
    before, duration = host_before_us.astype(np.float64).copy(), duration_us.astype(np.float64).copy()
    n = len(kind)
    if n == 0:
        return before, duration
    groups = np.asarray(group, dtype=object)
    if all(g in ("", None) for g in groups.tolist()):
        groups = inferred_steps(kind, name)
    starts = np.flatnonzero(np.concatenate(([True], groups[1:] != groups[:-1])))
    ends = np.append(starts[1:], n)
    families: dict[tuple, list[int]] = {}
    pairs = list(zip(kind.tolist(), name.tolist()))
    for s, e in zip(starts.tolist(), ends.tolist()):
        if groups[s] in ("", None):
            continue
        families.setdefault(tuple(pairs[s:e]), []).append(s)
    host_work = ~np.isin(kind, SYNC_CALLS)
    for signature, first in families.items():
        if len(first) < MIN_REPEATS:
            continue
        idx = np.asarray(first)[:, None] + np.arange(len(signature))[None, :]  # runs x positions
        work = host_work[idx[0]]
        gaps, costs = before[idx], np.where(work[None, :], duration[idx], 0.0)
        total = gaps.sum(axis=1) + costs.sum(axis=1)  # each run's host time
        typical = float(np.median(total))
        mad = 1.4826 * float(np.median(np.abs(total - typical)))
        stalled = np.flatnonzero(total > typical + STALL_MADS * mad)
        if not len(stalled):
            continue
        gap_med, cost_med = np.median(gaps, axis=0), np.median(costs, axis=0)
        at_median = float(gap_med.sum() + cost_med.sum())
        for r in stalled.tolist():  # shrink the run toward the per-call medians until it takes the typical time
            if at_median >= typical:
                new_gaps, new_costs = gap_med * (typical / at_median), cost_med * (typical / at_median)
            else:
                alpha = (typical - at_median) / (total[r] - at_median)
                new_gaps = gap_med + alpha * (gaps[r] - gap_med)
                new_costs = cost_med + alpha * (costs[r] - cost_med)
            before[idx[r]] = new_gaps
            duration[idx[r][work]] = new_costs[work]
    return before, duration


def inferred_steps(kind: np.ndarray, name: np.ndarray) -> np.ndarray:
    """Step labels for a thread whose recording marks no steps (a CUDA-only recording): its calls cut every
    ``P`` calls, ``P`` the period of its call sequence where it has one (:func:`call_period`), else all ""."""
    period = call_period(kind, name)
    out = np.full(len(kind), "", dtype=object)
    if period:
        out[:] = [f"~{i // period}" for i in range(len(kind))]
    return out


def call_period(kind: np.ndarray, name: np.ndarray, min_match: float = PERIOD_MATCH) -> int | None:
    """The period of a thread's sequence of calls (kind and name), or None: the smallest ``P`` at which the
    sequence matches itself shifted by ``P`` in at least ``min_match`` of places, over at least
    :data:`MIN_REPEATS` periods. Candidates come from the spacing of the rarest repeated call."""
    n = len(kind)
    if n < MIN_REPEATS:
        return None
    codes, _ = pd.factorize(pd.Series([f"{k}|{m}" for k, m in zip(kind.tolist(), name.tolist())]))
    counts = np.bincount(codes)
    candidates: set[int] = set()
    for code in np.argsort(counts, kind="stable")[:MAX_CODES].tolist():
        if counts[code] < MIN_REPEATS:
            continue
        pos = np.flatnonzero(codes == code)
        for k in range(1, min(len(pos) // MIN_REPEATS, MAX_PER_PERIOD) + 1):
            spacing = pos[k:] - pos[:-k]
            values, freq = np.unique(spacing, return_counts=True)
            if freq.max() >= min_match * len(spacing):
                candidates.add(int(values[np.argmax(freq)]))
                break
    for period in sorted(candidates):
        if 0 < period and period * MIN_REPEATS <= n and np.mean(codes[period:] == codes[:-period]) >= min_match:
            return period
    return None


def with_typical_steps(program: RecordedProgram) -> tuple[RecordedProgram, float]:
    """``program`` with each thread's repeated steps at their typical host cost; and the host µs this removed."""
    removed = 0.0
    threads = []
    for thread in program.threads:
        if thread.table is not None:
            t = thread.table
            before, duration = typical_costs(t.kind, t.name, t.group, t.host_before_us, t.duration_us)
            removed += _host_us(t.kind, t.host_before_us, t.duration_us) - _host_us(t.kind, before, duration)
            threads.append(ThreadProgram(thread.name, table=t.with_costs(before, duration)))
            continue
        calls = thread.calls
        recorded = [c for c in calls if not c.synthetic]
        if len(recorded) != len(calls):  # a what-if's calls: steps are typical before what-ifs, never after
            threads.append(thread)
            continue
        kind = np.array([c.kind for c in calls], dtype=object)
        name = np.array([c.name for c in calls], dtype=object)
        group = np.array([c.group for c in calls], dtype=object)
        old_before = np.array([c.host_before_us for c in calls], dtype=np.float64)
        old_duration = np.array([c.duration_us for c in calls], dtype=np.float64)
        before, duration = typical_costs(kind, name, group, old_before, old_duration)
        removed += _host_us(kind, old_before, old_duration) - _host_us(kind, before, duration)
        new = tuple(
            c if (b == c.host_before_us and d == c.duration_us) else replace(c, host_before_us=float(b), duration_us=float(d))
            for c, b, d in zip(calls, before.tolist(), duration.tolist())
        )
        threads.append(ThreadProgram(thread.name, new))
    return replace(program, threads=tuple(threads)), removed


def _host_us(kind: np.ndarray, before: np.ndarray, duration: np.ndarray) -> float:
    return float(before.sum() + np.where(np.isin(kind, SYNC_CALLS), 0.0, duration).sum())
