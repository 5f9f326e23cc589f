"""Policies of the recorded workload.

``as_recorded`` re-issues the recorded program through the runtime: each host
thread makes its recorded calls in order with its recorded CPU time between
them; kernels take their recorded GPU durations on their recorded streams;
copies move their recorded bytes; syncs and event waits block as recorded.

**Host costs.** Each call's CPU work before it (``host_gap_us``) is host work.
With ``host_costs = "recorded"`` (the default) each call also costs the host its
recorded duration (the command's ``host_us``): the simulator charges exactly
that, a real backend what the call really costs it (the replay engine's Python
loop pays more than eager PyTorch for a small kernel launch). With
``"profile"`` calls cost what the hardware profile says a PyTorch program pays
(``[host_costs.pytorch_eager]``, :meth:`harness.profile.Profile.program_call_cost_us`;
in a profile without those, the replay engine's own costs): a what-if of this
program on another host. Calls a what-if adds cost what an eager PyTorch program
pays for one of their kind (:mod:`.host_costs`: the profile's
``[host_costs.pytorch_eager]``, else the recording's own calls of that kind), never
the replay engine's.

**CUDA graphs** keep the GPU time the recording shows around their kernels
(``graph_timing = "recorded"``: the lead-in after the launch returns, the gaps
between kernels, the tail before the next op; :class:`~.program.GraphTiming`): the
lead-in after an idle launch as the launch's latency (a queued graph hides it), the
rest as spacer kernels (``graph lead-in``, ``graph tail``) that the metrics leave out;
``"profile"``: the kernels back to back with the profile's gap (for the replay,
whose GPU adds its own).

**Profiler overhead.** ``profiler_overhead = "keep"`` (the default) re-issues the
recording as recorded, the profiler's host overhead included: the prediction is
of the program *as it ran under the profiler*, which is what ``as_recorded``
reproduces and what a fidelity check against the recording compares. With
``"subtract"`` every recorded gap and call cost first loses the overhead the
profile's ``[profiler.<mode>]`` calibration gives for the events recorded in it
(:mod:`.compensation`), never below the calibrated floor of a call: the
prediction is of the program *as it runs without the profiler*, and the run's
metrics say so (``unprofiled_makespan_us``). ``"subtract"`` needs a format-3
trace and a profile calibrated for the recording's mode (``harness calibrate
--profiler``); without them the run fails saying which is missing, rather than
quietly predicting the profiled program. Keep is the default because a
prediction's meaning must not depend on which profile happens to be calibrated.
The eager overheads are scaled (``overhead_scale``) by the recording's own simple
calls against the calibration's (``"recording_host"``, the default: how much slower
this program's calls, on this host, ran than the calibration's tight loop) or by the
calibration's ``program_scale`` (``"calibration"``); every compensated run reports
that ratio and flags a recording whose host ran much slower than the calibration's
(``recording_host_slow``).

**Host stalls.** ``host_stalls = "typical"`` first gives every repeated step of the
recording (runs of calls in one step range with the same calls) each call's median
host gap and cost over the repeats (:mod:`.typical`): a recording is one run, and
its host stalls are that run's, not the program's. With ``"subtract"`` it is what
predicts the program's typical unprofiled run (a median over rounds).
"""

from __future__ import annotations

import re
import weakref
from dataclasses import dataclass, replace
from typing import Literal

import pydantic

from harness.program import StepProgram
from harness.runtime import PolicyGen, Runtime
from harness.workload import PolicyParams
from workloads.recorded import compensation, host_costs, steps, typical, whatif
from workloads.recorded.program import RecordedProgram
from workloads.recorded.steps import DEFAULT_GRAPH_TIMING, GRAPH_LEAD_IN, GRAPH_TAIL  # noqa: F401 (metrics read them)


class AsRecordedParams(PolicyParams):
    host_costs: Literal["recorded", "profile"] = "recorded"
    # "subtract": take the calibrated torch.profiler overhead out of the recording first (see the module docstring)
    profiler_overhead: Literal["keep", "subtract"] = "keep"
    # "typical": repeated steps at their per-call median host cost first (typical.py): a recording's host stalls
    # are one run's, not the program's
    host_stalls: Literal["keep", "typical"] = "keep"
    # "recording_host": the eager overheads scaled by the recording's simple calls over the calibration's
    # (compensation.host_speed: the program's and the host's speed against the calibration's tight loop);
    # "calibration": by the calibration's program_scale (its block shape, or a --script calibration's program)
    overhead_scale: Literal["recording_host", "calibration"] = "recording_host"
    # "subtract": graph kernels lose the calibrated GPU time the profiler adds; "auto": only where the calibration
    # timed it with the replay queued behind GPU work (gpu_timing = "queued": the GPU's time alone), not the older
    # idle-GPU timing that holds the profiled launch's host time and over-corrected the H100 corpus (compensation.py)
    graph_gpu_overhead: Literal["keep", "subtract", "auto"] = "auto"
    # Kernels shorter than this run this long (on both backends): the replay's stand-in kernels cannot
    # be shorter than the GPU's shortest back-to-back kernel (about 2 µs); 0 keeps recorded durations.
    min_kernel_us: float = pydantic.Field(default=0.0, ge=0.0)
    compute_share: float = pydantic.Field(default=1.0, gt=0.0, le=1.0)  # share of the GPU each kernel occupies
    # "recorded": a graph's kernels start, run apart and end as the recording's graphs show (GraphTiming; a
    # recording without graphs: its profile's [device] graph figures, else DEFAULT_GRAPH_TIMING; steps.graph_timing_for)
    # "profile": back to back with the profile's gap only, no launch latency.
    graph_timing: Literal["recorded", "profile"] = "recorded"
    # "recorded": host-link copies take their recorded durations (as kernels do; their bytes share the link at that
    # rate); "profile": the profile's link model times them (pinned or pageable, by size).
    copy_timing: Literal["recorded", "profile"] = "recorded"


@dataclass(frozen=True, slots=True)
class RecordedResult:
    """What ``as_recorded`` returns."""

    calls: int  # runtime calls re-issued
    unresolved_waits: int  # waits on an event the program never recorded (left out)
    profiler_overhead: str = "keep"  # what the run did with the recording's profiler overhead
    overhead_removed_us: float = 0.0  # host time taken out of the recorded calls ("subtract")
    what_ifs: tuple = ()  # what the what-if changed (whatif.WhatIfSummary per transform; () for as_recorded)
    host_speed: compensation.HostSpeed | None = None  # "subtract": the recording's host against the calibration's


def as_recorded(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
    speed = host_speed_of(rt, program, params)
    program, removed_us = _compensated(rt, program, params)
    result = yield from _run_program(rt, program, params)
    return replace(result, profiler_overhead=params.profiler_overhead, overhead_removed_us=removed_us, host_speed=speed)


def host_speed_of(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> compensation.HostSpeed | None:
    """With ``profiler_overhead = "subtract"``: the simple calls of the program compensation starts from (its steps
    typical first where ``host_stalls = "typical"``) against the calibration's (:func:`.compensation.host_speed`;
    flagged when the recording's host ran much slower); else None."""
    if params.profiler_overhead != "subtract":
        return None
    return _compensation_of(rt, program, params)[2]


def _compensated(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> tuple[RecordedProgram, float]:
    """``program`` with its steps typical (``host_stalls = "typical"``) and as it would run without the profiler
    (``"subtract"``); made once per program, profile and choice; the host µs the profiler's overhead removed."""
    lighter, removed_us, _ = _compensation_of(rt, program, params)
    return lighter, removed_us


_compensations: dict[tuple, tuple] = {}


def _compensation_of(
    rt: Runtime, program: RecordedProgram, params: AsRecordedParams
) -> tuple[RecordedProgram, float, compensation.HostSpeed | None]:
    """:func:`_compensated`'s program and removed µs, and the host speed of the program it compensated (None
    without ``"subtract"``); made once per program, profile and choice."""
    if params.profiler_overhead == "keep" and params.host_stalls == "keep":
        return program, 0.0, None
    calibration = None
    if params.profiler_overhead == "subtract":
        calibration = compensation.calibration_for(program, rt.profile)
    key = (
        id(program),
        rt.profile.name,
        params.profiler_overhead,
        params.host_stalls,
        params.graph_gpu_overhead,
        params.overhead_scale,
    )
    entry = _compensations.get(key)
    if entry is None or entry[0] is not program or entry[1] is not calibration:
        lighter, removed_us, speed = program, 0.0, None
        if params.host_stalls == "typical":
            lighter, _ = typical.with_typical_steps(lighter)
        if calibration is not None:
            graph_gpu = compensation.subtracts_graph_gpu(params.graph_gpu_overhead, calibration)
            speed = compensation.host_speed(lighter, calibration)  # of the steps compensated (typical, if asked)
            scaled = calibration
            if params.overhead_scale == "recording_host":
                scaled = compensation.scaled_to(calibration, speed)
            lighter, removed_us = compensation.without_profiler_overhead(lighter, scaled, graph_gpu)
        entry = _compensations[key] = (program, calibration, lighter, removed_us, speed)
    return entry[2], entry[3], entry[4]


# Each entry holds its step program weakly: made once for the runs that use it at once (and found again while it
# lives), freed with its run: a long recording's steps (130 MB for a million ops) are not kept while the run's ops
# table is made.
_steps: dict[tuple, tuple[RecordedProgram, weakref.ref[StepProgram]]] = {}


def step_program_for(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> StepProgram:
    """The steps ``program`` becomes for this run's profile and ``params``, made once (runs re-issue the same)."""
    profile = rt.profile
    key = (
        id(program),
        params.host_costs,
        params.min_kernel_us,
        params.compute_share,
        params.graph_timing,
        params.copy_timing,
        params.profiler_overhead,
        getattr(profile, "name", None),
    )
    entry = _steps.get(key)
    made = entry[1]() if entry is not None and entry[0] is program else None
    if made is None:
        added = added_call_costs_us(program, profile, params.profiler_overhead == "keep")
        costs = steps.HostCosts(params.host_costs == "recorded", profile, added)
        timing = steps.graph_timing_for(program, profile) if params.graph_timing == "recorded" else None
        recorded_copies = params.copy_timing == "recorded"
        made = steps.step_program(program, costs, params.min_kernel_us, params.compute_share, timing, recorded_copies)
        _steps[key] = (program, weakref.ref(made))
    return made


def added_call_costs_us(program: RecordedProgram, profile, profiled: bool = True) -> dict[str, float]:
    """What calls a what-if added cost (:func:`host_costs.added_call_costs_us`); {} for a program with none (a
    recording as imported: its threads are call tables, and reading their calls would build every Call)."""
    if all(thread.table is not None for thread in program.threads):
        return {}
    return host_costs.added_call_costs_us(program, profile, profiled)


def _run_program(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
    """Re-issue ``program``: its streams and communicators (a multi-rank recording's), then every host thread's
    steps as one program command."""
    streams = []
    for device, name in program.streams:
        streams.append((yield rt.create_stream(device, f"s{name}" if device == 0 else f"d{device}s{name}")))
    made = step_program_for(rt, program, params)
    communicators = []
    for devices in made.communicators:
        communicators.append((yield rt.create_communicator(devices, communicator_name(devices))))
    outcome = yield rt.run_program(made, streams, communicators)
    return RecordedResult(sum(t.call_count for t in program.threads), outcome.unresolved_waits)


def communicator_name(devices: tuple[int, ...]) -> str:
    """A recorded communicator's name: its devices (``ranks0-1-2-3``)."""
    return "ranks" + "-".join(map(str, devices))


# --------------------------------------------------------------------------- what-ifs (whatif.py)


Groups = Literal["auto", "marks", "copy_runs", "host_syncs", "repeats"]  # how a what-if finds groups (whatif.py)


class GroupedParams(AsRecordedParams):
    groups: Groups = "auto"  # the recording's marks when it has any, else inferred (whatif.grouped)


class PrefetchCopiesParams(GroupedParams):
    depth: int = pydantic.Field(default=1, ge=1)  # groups whose copies are in flight ahead of the compute
    budget_bytes: int | None = pydantic.Field(default=None, gt=0)  # device memory for the copies in flight


class ScaleKernelsParams(AsRecordedParams):
    factors: dict[str, float] = pydantic.Field(min_length=1)  # kernel-name regex -> duration factor

    @pydantic.field_validator("factors")
    @classmethod
    def _valid(cls, factors: dict[str, float]) -> dict[str, float]:
        for pattern, factor in factors.items():
            try:
                re.compile(pattern)
            except re.error as err:
                raise ValueError(f"{pattern!r} is not a valid regular expression ({err})") from None
            if not factor > 0:
                raise ValueError(f"factor of {pattern!r} must be > 0, got {factor}")
        return factors


_TRANSFORMS = {
    "prefetch_copies": lambda program, p: whatif.prefetch_copies(program, p.depth, p.budget_bytes, p.groups),
    "async_d2h": lambda program, p: whatif.async_d2h(program, p.groups),
    "graph_launch": lambda program, p: whatif.graph_launch(program, p.groups),
    "scale_kernels": lambda program, p: whatif.scale_kernels(program, p.factors),
    "overlap_collectives": lambda program, p: whatif.overlap_collectives(program, p.groups),
}
_transformed: dict[tuple[int, str, str], tuple[RecordedProgram, RecordedProgram]] = {}


def transformed(name: str, program: RecordedProgram, params: AsRecordedParams) -> RecordedProgram:
    """The program the what-if ``name`` makes of ``program``, made once (every run re-issues the same one)."""
    key = (id(program), name, params.model_dump_json())
    entry = _transformed.get(key)
    if entry is None or entry[0] is not program:
        entry = _transformed[key] = (program, _TRANSFORMS[name](program, params))
    return entry[1]


_added_graphs: dict[tuple[int, float], tuple[RecordedProgram, RecordedProgram]] = {}


def _added_graphs_compensated(rt: Runtime, changed: RecordedProgram, params: AsRecordedParams) -> RecordedProgram:
    """``changed`` with the graphs its what-if added compensated as the recording's own graphs are
    (:func:`compensation.added_graphs_without_gpu_overhead`), where the run subtracts the profiler's GPU time from
    graph kernels (``profiler_overhead = "subtract"`` and ``graph_gpu_overhead``); made once per program."""
    if params.profiler_overhead != "subtract":
        return changed
    calibration = compensation.calibration_for(changed, rt.profile)
    if not compensation.subtracts_graph_gpu(params.graph_gpu_overhead, calibration):
        return changed
    key = (id(changed), compensation.graph_kernel_gpu_us(calibration))
    entry = _added_graphs.get(key)
    if entry is None or entry[0] is not changed:
        entry = _added_graphs[key] = (changed, compensation.added_graphs_without_gpu_overhead(changed, calibration))
    return entry[1]


def what_if_program(
    rt: Runtime, name: str, program: RecordedProgram, params: AsRecordedParams
) -> tuple[RecordedProgram, float]:
    """The program the what-if ``name`` re-issues, and the host µs compensation removed: the recording compensated
    as the params ask (before the what-if: it moves compensated gaps), then transformed, the graphs it added
    compensated as recorded ones are. The step program and the call-by-call re-issue (``reissue.py``) both run it."""
    compensated, removed_us = _compensated(rt, program, params)
    return _added_graphs_compensated(rt, transformed(name, compensated, params), params), removed_us


def _what_if(name: str):
    def main(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
        speed = host_speed_of(rt, program, params)
        changed, removed_us = what_if_program(rt, name, program, params)
        result = yield from _run_program(rt, changed, params)
        return replace(
            result,
            profiler_overhead=params.profiler_overhead,
            overhead_removed_us=removed_us,
            what_ifs=changed.what_ifs,
            host_speed=speed,
        )

    def check(program: RecordedProgram, params: AsRecordedParams) -> None:
        transformed(name, program, params)  # raises NotApplicable (a ValueError) naming what it looked for

    main.__name__ = name
    return main, check


prefetch_copies, check_prefetch_copies = _what_if("prefetch_copies")
async_d2h, check_async_d2h = _what_if("async_d2h")
graph_launch, check_graph_launch = _what_if("graph_launch")
scale_kernels, check_scale_kernels = _what_if("scale_kernels")
overlap_collectives, check_overlap_collectives = _what_if("overlap_collectives")
