"""GPU time of issued work, measured with CUDA events (needs torch when called, not when imported).

The kernel stand-ins (:mod:`replay.sized`, :mod:`replay.timed`) and calibration
(:mod:`replay.calibrate`) time work the same way: CUDA events recorded around
it on one stream, the median over several repetitions. A ``torch.cuda._sleep``
queued first keeps the stream busy while the host issues, so only GPU time
counts.
"""

from __future__ import annotations

import statistics
from typing import Any

BUSY_CYCLES = 300_000  # ~200 µs of _sleep queued ahead of a timed region keeps the stream busy while the host issues


def timing_events(torch: Any, pairs: int = 16) -> list[tuple[Any, Any]]:
    """``pairs`` (start, end) CUDA events with timing enabled, reused round robin by :func:`median_gpu_time_us`."""
    return [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(pairs)]


def median_gpu_time_us(
    torch: Any, stream: Any, events: list[tuple[Any, Any]], issue: Any, reps: int, busy_cycles: int = BUSY_CYCLES
) -> float:
    """Median time between CUDA events around ``issue()``'s work on ``stream``.

    With ``busy_cycles`` > 0 a ``_sleep`` of that many cycles is queued first, so
    the stream is still busy while the host issues and only GPU time counts; with 0
    the stream is idle and the host's issue time counts too.
    """
    times = []
    for i in range(reps):
        start, end = events[i % len(events)]
        with torch.cuda.stream(stream):
            if busy_cycles:
                torch.cuda._sleep(busy_cycles)
            start.record(stream)
            issue()
            end.record(stream)
        end.synchronize()
        times.append(start.elapsed_time(end) * 1e3)
    return statistics.median(times)
