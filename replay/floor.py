"""Kernels shorter than the GPU's floor run at the floor, and a run says how many and how much time that added.

A GPU cannot run a kernel shorter than its back-to-back floor (the stand-in's
``min_kernel_us``: measured 3.1-3.3 µs on the lent H100, 2.9 µs on the H200).
A recording of a real program has kernels below it (a 1.5 µs elementwise op), so
the replay lifts each one to the floor rather than refusing the recording, and
reports what it did: ``replay_kernels_lifted`` (launched kernels lifted, each
kernel of a graph counted once per graph launch) and ``replay_kernel_lift_us``
(the GPU time that added in total). A zero-duration kernel issues no work and
is not lifted. No torch needed.
"""

from __future__ import annotations

import threading

KERNELS_LIFTED = "replay_kernels_lifted"
KERNEL_LIFT_US = "replay_kernel_lift_us"


def lifted_us(duration_us: float, floor_us: float) -> float:
    """The duration a kernel of ``duration_us`` runs on a GPU whose floor is ``floor_us`` (0 stays 0)."""
    return floor_us if 0.0 < duration_us < floor_us else duration_us


class FloorLifts:
    """Counts the lifts of one run; host threads of the run share it."""

    def __init__(self) -> None:
        self.count = 0
        self.added_us = 0.0
        self._lock = threading.Lock()

    def lift(self, duration_us: float, floor_us: float) -> float:
        """``duration_us`` lifted to ``floor_us`` when below it (and not 0), counted."""
        if not 0.0 < duration_us < floor_us:
            return duration_us
        with self._lock:
            self.count += 1
            self.added_us += floor_us - duration_us
        return floor_us

    def add(self, count: int, added_us: float) -> None:
        """Count ``count`` lifts adding ``added_us`` at once (a graph's kernels, worked out once per graph)."""
        if count:
            with self._lock:
                self.count += count
                self.added_us += added_us

    def metrics(self) -> dict[str, tuple[float, str]]:
        """The run's metrics (``harness.backend.RunResult.metrics``)."""
        return {KERNELS_LIFTED: (float(self.count), "count"), KERNEL_LIFT_US: (self.added_us, "us")}


def graph_lifts(durations_us: list[float], floor_us: float) -> tuple[int, float]:
    """(kernels lifted, time added) when a graph of kernels of ``durations_us`` launches once."""
    below = [d for d in durations_us if 0.0 < d < floor_us]
    return len(below), sum(floor_us - d for d in below)
