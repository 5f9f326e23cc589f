"""Take torch.profiler's own host overhead out of a recorded program (``profiler_overhead = "subtract"``).

A recording made under torch.profiler carries the profiler's host cost in every CPU gap
and call cost: each aten op, runtime call and ``record_function`` range it recorded cost
the host extra, and a CUDA-graph launch much more (CUPTI records each kernel). The
import keeps, per call, the profiler events its gap held (trace format 3); the hardware
profile's ``[profiler.<mode>]`` calibration (``harness calibrate --profiler``, for the
mode the recording was taken in) says what each event kind costs. Per call:

* overhead of the gap: ``aten ops x aten_op + ranges x range + (folded calls + the call
  itself) x runtime_call``; overhead of the call: for a graph launch, ``graph_launch +
  kernels x graph_kernel``;
* the host time removed is that overhead, but never more than takes the call's CPU time
  (gap plus its own cost) below the calibrated unprofiled floor of a call of its kind
  (``floor_us``; 0 for kinds without one), and nothing when it is already below;
* the gap's overhead comes out of the gap first and the call's out of its cost first;
  what one cannot hold comes out of the other. Neither goes negative. A sync's recorded
  duration is how long it blocked, not host work: only its gap is reduced.

Calls a what-if adds are untouched (they cost what the profile says); compensation is
applied to the recording before any what-if transforms it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import NamedTuple

from harness.profile import Profile, ProfilerCalibration
from workloads.recorded.program import SYNC_CALLS, Call, RecordedProgram, ThreadProgram


class CannotCompensate(ValueError):
    """The recording or the profile lacks what compensation needs (the message says what, and the way out)."""


class Removal(NamedTuple):
    host_before_us: float
    duration_us: float
    removed_us: float


def overheads_us(call: Call, calibration: ProfilerCalibration) -> tuple[float, float]:
    """(overhead in the call's gap, overhead in the call itself), µs, from the events recorded there."""
    gap = (
        call.gap_aten_ops * calibration.overhead_us("aten_op")
        + call.gap_ranges * calibration.overhead_us("range")
        + (call.gap_calls + 1) * calibration.overhead_us("runtime_call")
    )
    own = 0.0
    if call.kind == "call_graph_launch":
        own = calibration.overhead_us("graph_launch") + len(call.ops) * calibration.overhead_us("graph_kernel")
    return gap, own


def remove_overhead(
    host_before_us: float,
    duration_us: float,
    gap_overhead_us: float,
    call_overhead_us: float,
    floor_us: float,
    duration_is_host_work: bool = True,
) -> Removal:
    """The call's gap and cost with the overhead taken out, never below ``floor_us`` in all, never negative."""
    before = max(host_before_us, 0.0)
    own = max(duration_us, 0.0) if duration_is_host_work else 0.0
    total = before + own
    budget = min(max(gap_overhead_us, 0.0) + max(call_overhead_us, 0.0), max(total - floor_us, 0.0))
    from_call = min(own, max(call_overhead_us, 0.0), budget)
    from_gap = min(before, budget - from_call)
    from_call += min(own - from_call, budget - from_call - from_gap)
    duration = duration_us - from_call if duration_is_host_work else duration_us
    return Removal(before - from_gap, duration, from_gap + from_call)


def calibration_for(program: RecordedProgram, profile: Profile) -> ProfilerCalibration:
    """The profile's calibration for the recording's mode, or :class:`CannotCompensate` saying why not."""
    if profile is None:
        raise CannotCompensate('profiler_overhead = "subtract" needs the run\'s hardware profile (rt.profile)')
    if not program.gap_counts or not program.profiler_mode:
        raise CannotCompensate(
            f"{program.source}: the trace does not say which profiler events its gaps hold (an op trace older than "
            'format 3): re-import the recording with `harness trace import`, or set profiler_overhead = "keep"'
        )
    calibration = profile.profiler_calibration(program.profiler_mode)
    if calibration is None:
        calibrated = ", ".join(sorted(profile.figures.profiler)) or "none"
        raise CannotCompensate(
            f"profile {profile.name!r} has no profiler calibration for mode {program.profiler_mode!r} "
            f"(calibrated: {calibrated}): run `harness calibrate --profiler` on the recording's machine, or set "
            'profiler_overhead = "keep"'
        )
    return calibration


def without_profiler_overhead(
    program: RecordedProgram, calibration: ProfilerCalibration
) -> tuple[RecordedProgram, float]:
    """The program with the calibrated profiler overhead taken out of every recorded call; and the µs removed."""
    removed = 0.0
    threads = []
    for thread in program.threads:
        calls = []
        for call in thread.calls:
            if call.synthetic:
                calls.append(call)
                continue
            gap, own = overheads_us(call, calibration)
            result = remove_overhead(
                call.host_before_us,
                call.duration_us,
                gap,
                own,
                calibration.floor_us.get(call.kind, 0.0),
                duration_is_host_work=call.kind not in SYNC_CALLS,
            )
            removed += result.removed_us
            calls.append(replace(call, host_before_us=result.host_before_us, duration_us=result.duration_us))
        threads.append(ThreadProgram(thread.name, tuple(calls)))
    return replace(program, threads=tuple(threads)), removed
