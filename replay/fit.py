"""Pure fitting math for calibration and kernel sizing (no torch; tested in CI).

* :func:`fit_line` least squares ``y = intercept + slope * x``;
* :func:`link_latency_us` the fixed latency of a host-link copy curve;
* :func:`link_table` a profile ``LinkTable`` from measured ``(size, time)`` pairs;
* :func:`duplex_factor` the host link's both-directions slowdown;
* :func:`monotone_times` / :func:`size_for_time` the inverse of a measured
  time-versus-size curve, used to size the GPU work standing in for a kernel.
"""

from __future__ import annotations

import bisect
import math
import statistics
from collections.abc import Sequence

MiB = 1 << 20


def fit_line(xs: Sequence[float], ys: Sequence[float]) -> tuple[float, float]:
    """Least-squares ``(intercept, slope)``; needs two distinct x values."""
    if len(xs) != len(ys) or len(set(xs)) < 2:
        raise ValueError("a line needs at least two distinct x values (and as many y values)")
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sxx
    return my - slope * mx, slope


def link_latency_us(samples: Sequence[tuple[int, float]], lo_bytes: int = 1 * MiB, hi_bytes: int = 16 * MiB) -> float:
    """Fixed latency of a copy curve: the intercept of a line through its samples in ``[lo, hi]``.

    Between 1 and 16 MiB a pinned copy is latency plus bytes over a nearly
    constant bandwidth, so the intercept is the per-copy cost. It is clipped to
    ``[0, 0.9 * fastest sample]`` so every sample stays slower than the latency,
    as the profile format requires; with fewer than two samples in range the
    latency is 0 (the whole time counts as transfer).
    """
    picked = [(s, t) for s, t in samples if lo_bytes <= s <= hi_bytes]
    if len(picked) < 2:
        return 0.0
    intercept, _ = fit_line([s for s, _ in picked], [t for _, t in picked])
    ceiling = 0.9 * min(t for _, t in samples)
    return round(min(max(intercept, 0.0), ceiling), 2)


def link_table(samples: Sequence[tuple[int, float]], **window: int) -> dict:
    """``{"latency_us": ..., "samples": [[size, time], ...]}`` for a profile's link section."""
    ordered = sorted((int(s), float(t)) for s, t in samples)
    latency = link_latency_us(ordered, **window)
    return {"latency_us": latency, "samples": [[s, round(t, 2)] for s, t in ordered]}


def duplex_factor(solo_us: float, both_us: float, latency_us: float) -> float:
    """Bandwidth each direction keeps while the other is busy: solo transfer time over duplex transfer time.

    Clipped to (0, 1]: a link never gets faster because the other direction is busy.
    """
    if not both_us > latency_us or not solo_us > latency_us:
        raise ValueError(f"copy times ({solo_us}, {both_us} µs) must exceed the latency ({latency_us} µs)")
    return round(min(1.0, (solo_us - latency_us) / (both_us - latency_us)), 4)


def monotone_times(times: Sequence[float]) -> list[float]:
    """Running maximum: a measured curve forced to never decrease (timing noise aside, bigger work is never faster)."""
    out, best = [], -math.inf
    for t in times:
        best = max(best, t)
        out.append(best)
    return out


def size_for_time(sizes: Sequence[float], times: Sequence[float], target: float) -> float:
    """The size whose time is ``target`` on the piecewise-linear curve through the samples.

    ``times`` must not decrease (see :func:`monotone_times`). Below the first
    sample the size is 0; beyond the last the last segment is extended.
    """
    if len(sizes) != len(times) or len(sizes) < 2:
        raise ValueError("a curve needs at least two samples")
    if target <= times[0]:
        return float(sizes[0]) * max(target, 0.0) / times[0] if times[0] > 0 else 0.0
    k = bisect.bisect_left(times, target)
    k = min(max(k, 1), len(times) - 1)
    t0, t1, s0, s1 = times[k - 1], times[k], sizes[k - 1], sizes[k]
    if t1 == t0:
        return float(s0)
    return s0 + (s1 - s0) * (target - t0) / (t1 - t0)


def time_for_size(sizes: Sequence[float], times: Sequence[float], size: float) -> float:
    """Inverse of :func:`size_for_time`: linear interpolation (extrapolated past the last sample)."""
    if size <= sizes[0]:
        return times[0] * size / sizes[0]
    k = min(max(bisect.bisect_left(sizes, size), 1), len(sizes) - 1)
    s0, s1, t0, t1 = sizes[k - 1], sizes[k], times[k - 1], times[k]
    return t0 + (t1 - t0) * (size - s0) / (s1 - s0)


def split_pieces(total_us: float, max_piece_us: float) -> tuple[int, float]:
    """Fewest equal pieces of at most ``max_piece_us`` that make ``total_us``: ``(count, each_us)``."""
    if total_us <= 0:
        return 0, 0.0
    count = max(1, math.ceil(total_us / max_piece_us - 1e-9))
    return count, total_us / count
