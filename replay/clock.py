"""One clock for a replay run: microseconds since the run started, for host and device ops.

Host ops are timed with ``time.perf_counter``. Device ops are timed with CUDA
events; an event's time is its elapsed time since a reference event ``t0`` of
its own device (CUDA times events against events of the same device only),
recorded on that idle GPU just before the run starts, plus ``t0``'s place on the
host clock. ``t0`` is taken to execute when its ``record`` call returns (the GPU
is idle, so it runs within a microsecond or two of being submitted); that is
the only approximation in the mapping, and it is the same in calibration and
in the runs it calibrates.
"""

from __future__ import annotations

import os
import time
from typing import Any


class RunClock:
    """``streams``: one stream per device the run uses, in device order (index = device)."""

    def __init__(self, torch: Any, streams: list[Any]) -> None:
        self._t0 = [torch.cuda.Event(enable_timing=True) for _ in streams]
        for stream in streams:
            torch.cuda.synchronize(stream.device)
        recorded = []
        for t0, stream in zip(self._t0, streams):
            t0.record(stream)
            recorded.append(time.perf_counter())
        for t0 in self._t0:
            t0.synchronize()
        self.origin = time.perf_counter()  # the run starts now: host time 0
        self.t0_us = [(r - self.origin) * 1e6 for r in recorded]  # negative: each t0 ran just before the origin

    def host_us(self) -> float:
        return (time.perf_counter() - self.origin) * 1e6

    def device_us(self, event: Any, device: int = 0) -> float:
        """The time of ``event``, recorded on ``device``, on the run's clock; the event must have completed."""
        return self.t0_us[device] + self._t0[device].elapsed_time(event) * 1e3


SPIN_TAIL_US = 200.0  # a sleep overshoots by tens of microseconds (the timer slack): the last stretch is polled
yield_gil = getattr(os, "sched_yield", lambda: time.sleep(0))
"""Let other Python threads take the GIL now, without sleeping.

(``time.sleep(0)`` sleeps the timer slack, ~50 µs on Linux.)
"""


def precise_wait_us(duration_us: float) -> None:
    """Hold the calling thread for ``duration_us``: sleep most of it, poll the rest.

    The sleep releases the GIL so other host threads run; the last
    ``SPIN_TAIL_US`` are polled on ``perf_counter`` because a sleep overshoots by
    tens of microseconds. Each poll yields the GIL (``os.sched_yield`` releases
    it; ``time.sleep(0)`` would, but oversleeps by the timer slack, ~50 µs), so
    host threads that wait at the same time (8 CPU workers, say) do not queue
    behind one another's polls: measured on a 2-core VM, 8 threads waiting
    150 µs together took ~1.1 ms a round with a plain spin, ~0.3 ms yielding;
    8 waiting 10 ms together finish in ~10.1 ms either way.
    """
    end = time.perf_counter() + duration_us * 1e-6
    if duration_us > SPIN_TAIL_US + 100.0:
        time.sleep((duration_us - SPIN_TAIL_US) * 1e-6)
    while time.perf_counter() < end:
        yield_gil()
