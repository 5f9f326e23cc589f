"""The replay's kernel stand-ins: real GPU work for a described kernel, picked per device (needs torch).

:func:`make_kernels` is what the replay engine builds for each device:

* :class:`replay.timed.TimedKernels` (the default): kernels that do the work of
  their kind until the GPU's nanosecond timer says their duration has passed;
  needs CuPy;
* :class:`replay.sized.SizedKernels`, when CuPy is missing or
  ``HARNESS_REPLAY_KERNELS=sized``: real work sized from measured tables (it
  drifts with the SM clock: see measurements/2026-11-23_h100_layer-streaming/README.md).

Both give the interface of :class:`replay.plan.StandIn`. The modules import one
way: ``timing``, ``plan`` <- ``sized``, ``timed`` <- ``kernels``.
"""

from __future__ import annotations

import os
from typing import Any

from replay.plan import StandIn
from replay.sized import SizedKernels
from replay.timed import TimedKernels


def make_kernels(torch: Any, device: Any) -> StandIn:
    """The replay's kernel stand-ins.

    Timer-bounded kernels (CuPy) unless ``HARNESS_REPLAY_KERNELS=sized`` or CuPy is missing.
    """
    choice = os.environ.get("HARNESS_REPLAY_KERNELS", "timed")
    if choice not in ("timed", "sized"):
        raise ValueError(f"HARNESS_REPLAY_KERNELS must be 'timed' or 'sized', got {choice!r}")
    if choice == "timed":
        try:
            import cupy  # noqa: F401
        except ImportError:
            choice = "sized"
    if choice == "timed":
        return TimedKernels(torch, device)
    return SizedKernels(torch, device)
