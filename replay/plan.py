"""What the replay's two kernel stand-ins share: a plan per described kernel, their interface.

A policy describes a kernel by its kind and solo duration; a stand-in
(:class:`replay.sized.SizedKernels` or :class:`replay.timed.TimedKernels`, picked
by :func:`replay.kernels.make_kernels`) turns each distinct description into a
:class:`Plan` of real GPU work, tunes it back to back until it takes that
duration, and issues it on a stream. No torch needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Protocol

from harness.runtime import KernelKind


@dataclass
class Plan:
    """The work issued for one (kind, duration): ``pieces`` x work of ``size`` then a filler sleep.

    Timed stand-ins reuse the fields: ``pieces`` is the grid size, ``size`` 0 and
    ``sleep_cycles`` the timer duration in ns.
    """

    kind: KernelKind
    duration_us: float
    pieces: int
    size: int  # matmul rows, or d2d bytes; 0 for a sleep-only plan
    sleep_cycles: int
    tuned: bool = False
    measured_us: float = math.nan  # back-to-back GPU time at the last tuning step
    history: list[float] = field(default_factory=list)
    launch: Any = field(default=None, repr=False)  # timed stand-ins: (function, grid, block, args) ready to launch


class StandIn(Protocol):
    """The interface the replay engine and calibration use, whichever stand-in runs."""

    stand_in: str  # "sized" or "timed", recorded in a calibrated profile

    @property
    def min_kernel_us(self) -> float: ...  # the shortest kernel the GPU runs back to back; shorter ones are lifted to it

    @property
    def scratch_bytes(self) -> int: ...

    def plan(self, kind: KernelKind, duration_us: float, name: str = "", share: float = 1.0) -> Plan: ...

    def issue(self, plan: Plan, stream: Any) -> None: ...

    def tune(self, plan: Plan) -> Plan: ...

    def tune_untuned(self) -> list[Plan]: ...

    def untuned(self) -> list[Plan]: ...

    def plans(self) -> list[Plan]: ...

    def gpu_time_us(self, issue: Any, reps: int = 5) -> float: ...

    def lengthened(self, plan: Plan, by_us: float) -> Plan: ...  # a copy of plan running by_us longer (< 0: shorter)

    def as_profile_section(self) -> dict: ...
