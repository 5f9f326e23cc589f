"""One clock for a replay run: microseconds since the run started, for host and device ops.

Host ops are timed with ``time.perf_counter``. Device ops are timed with CUDA
events; an event's time is its elapsed time since a reference event ``t0``
recorded on an idle GPU just before the run starts, plus ``t0``'s place on the
host clock. ``t0`` is taken to execute when its ``record`` call returns (the GPU
is idle, so it runs within a microsecond or two of being submitted); that is
the only approximation in the mapping, and it is the same in calibration and
in the runs it calibrates.
"""

from __future__ import annotations

import time
from typing import Any


class RunClock:
    def __init__(self, torch: Any, stream: Any) -> None:
        self._t0 = torch.cuda.Event(enable_timing=True)
        torch.cuda.synchronize()
        self._t0.record(stream)
        recorded = time.perf_counter()
        self._t0.synchronize()
        self.origin = time.perf_counter()  # the run starts now: host time 0
        self.t0_us = (recorded - self.origin) * 1e6  # negative: t0 ran just before the origin

    def host_us(self) -> float:
        return (time.perf_counter() - self.origin) * 1e6

    def device_us(self, event: Any) -> float:
        """The event's time on the run's clock; the event must have completed."""
        return self.t0_us + self._t0.elapsed_time(event) * 1e3


def precise_wait_us(duration_us: float) -> None:
    """Hold the calling thread for ``duration_us``: sleep most of it, spin the rest.

    The sleep releases the GIL so other host threads run; the last ~200 µs spin
    on ``perf_counter`` because a sleep overshoots by tens of microseconds.
    """
    end = time.perf_counter() + duration_us * 1e-6
    if duration_us > 300.0:
        time.sleep((duration_us - 200.0) * 1e-6)
    while time.perf_counter() < end:
        pass
