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
between kernels, the tail before the next op; :class:`~.program.GraphTiming`), as
spacer kernels (``graph lead-in``, ``graph tail``) that the metrics leave out;
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
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field, replace
from typing import Literal

import pydantic

from harness.runtime import Direction, Event, GraphKernel, HostMemory, KernelKind, PolicyGen, Runtime, Stream
from harness.workload import PolicyParams
from workloads.recorded import compensation, host_costs, whatif
from workloads.recorded.program import (
    Call,
    DeviceOp,
    GraphTiming,
    RecordedProgram,
    StreamKey,
    ThreadProgram,
    is_gemm,
)

GRAPH_LEAD_IN = "graph lead-in"  # spacer kernels' names: GPU time around a graph's kernels (metrics leave them out)
GRAPH_TAIL = "graph tail"

COPIES = {"copy_h2d": Direction.H2D, "copy_d2h": Direction.D2H}


class AsRecordedParams(PolicyParams):
    host_costs: Literal["recorded", "profile"] = "recorded"
    # "subtract": take the calibrated torch.profiler overhead out of the recording first (see the module docstring)
    profiler_overhead: Literal["keep", "subtract"] = "keep"
    # Kernels shorter than this run this long (on both backends): the replay's stand-in kernels cannot
    # be shorter than the GPU's shortest back-to-back kernel (about 2 µs); 0 keeps recorded durations.
    min_kernel_us: float = pydantic.Field(default=0.0, ge=0.0)
    compute_share: float = pydantic.Field(default=1.0, gt=0.0, le=1.0)  # share of the GPU each kernel occupies
    # "recorded": a graph's kernels start, run apart and end as the recording's graphs show (GraphTiming; a
    # recording without graphs: DEFAULT_GRAPH_TIMING); "profile": back to back with the profile's gap only.
    graph_timing: Literal["recorded", "profile"] = "recorded"


@dataclass(frozen=True, slots=True)
class RecordedResult:
    """What ``as_recorded`` returns."""

    calls: int  # runtime calls re-issued
    unresolved_waits: int  # waits on an event the program never recorded (left out)
    profiler_overhead: str = "keep"  # what the run did with the recording's profiler overhead
    overhead_removed_us: float = 0.0  # host time taken out of the recorded calls ("subtract")
    what_ifs: tuple = ()  # what the what-if changed (whatif.WhatIfSummary per transform; () for as_recorded)


@dataclass
class _Shared:
    """State the program's host threads share: streams, events, which streams have work outstanding."""

    streams: dict[StreamKey, Stream]
    added_us: dict[str, float] = field(default_factory=dict)  # host cost of calls a what-if added (host_costs.py)
    graph_timing: GraphTiming | None = None  # the GPU's time around a graph's kernels (params.graph_timing)
    events: dict[int, Event] = field(default_factory=dict)
    outstanding: set[StreamKey] = field(default_factory=set)
    unresolved_waits: int = 0


def as_recorded(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
    program, removed_us = _compensated(rt, program, params)
    result = yield from _run_program(rt, program, params)
    return replace(result, profiler_overhead=params.profiler_overhead, overhead_removed_us=removed_us)


_compensations: dict[tuple[int, str], tuple[RecordedProgram, object, RecordedProgram, float]] = {}


def _compensated(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> tuple[RecordedProgram, float]:
    """``program`` as it would run without the profiler (``"subtract"``; made once per program and profile)."""
    if params.profiler_overhead == "keep":
        return program, 0.0
    calibration = compensation.calibration_for(program, rt.profile)
    key = (id(program), rt.profile.name)
    entry = _compensations.get(key)
    if entry is None or entry[0] is not program or entry[1] is not calibration:
        lighter, removed_us = compensation.without_profiler_overhead(program, calibration)
        entry = _compensations[key] = (program, calibration, lighter, removed_us)
    return entry[2], entry[3]


def _run_program(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
    """Re-issue ``program``: its streams, then each host thread's calls (the first thread is this one)."""
    streams = {}
    for device, name in program.streams:
        streams[(device, name)] = yield rt.create_stream(device, f"s{name}" if device == 0 else f"d{device}s{name}")
    timing = (program.graph_timing or DEFAULT_GRAPH_TIMING) if params.graph_timing == "recorded" else None
    shared = _Shared(streams, _added_call_costs_us(program, rt.profile), timing)
    others = []
    for thread in program.threads[1:]:
        others.append((yield rt.spawn(_run_thread, program, thread, shared, params, name=f"thread{thread.name}")))
    calls = yield from _run_thread(rt, program, program.threads[0], shared, params)
    for other in others:
        calls += yield rt.join(other)
    return RecordedResult(calls, shared.unresolved_waits)


_added_costs: dict[tuple[int, int], tuple[RecordedProgram, dict[str, float]]] = {}


def _added_call_costs_us(program: RecordedProgram, profile) -> dict[str, float]:
    """:func:`host_costs.added_call_costs_us`, made once per program and profile."""
    key = (id(program), id(profile))
    entry = _added_costs.get(key)
    if entry is None or entry[0] is not program:
        entry = _added_costs[key] = (program, host_costs.added_call_costs_us(program, profile))
    return entry[1]


def _run_thread(
    rt: Runtime, program: RecordedProgram, thread: ThreadProgram, shared: _Shared, params: AsRecordedParams
) -> PolicyGen:
    recorded = params.host_costs == "recorded"
    for call in thread.calls:
        if call.host_before_us > 0.0:
            yield rt.host_work(call.host_before_us, f"cpu:{call.group}" if call.group else "cpu")
        yield from _issue(rt, params, call, shared, _host_us(rt, call, recorded, shared))
    return len(thread.calls)


def _host_us(rt: Runtime, call: Call, recorded: bool, shared: _Shared) -> float | None:
    """What a call costs the host: its recorded duration; added by a what-if, what an eager PyTorch program pays
    for one of its kind (:mod:`.host_costs`); with host_costs = "profile", what the profile says a PyTorch program
    pays (``[host_costs.pytorch_eager]``), else None: the backend's own figure (the replay engine's)."""
    if recorded and not call.synthetic:
        return call.duration_us
    if call.synthetic and call.kind in shared.added_us:
        return shared.added_us[call.kind]
    profile = rt.profile
    if profile is not None and profile.pytorch_eager_measured:
        return profile.program_call_cost_us(call.kind)
    return None


def _issue(rt: Runtime, params: AsRecordedParams, call: Call, shared: _Shared, host_us: float | None) -> PolicyGen:
    """The commands one call becomes; ``host_us`` (the call's recorded cost, or None) goes to its first command."""
    kind = call.kind
    for key, event in call.wait_before:  # inferred orderings: free on the host, the recording has no call for them
        if event in shared.events:
            yield rt.wait_event(shared.streams[key], shared.events[event], host_us=0.0)
    if kind in ("call_launch", "call_memset", "call_memcpy"):
        for i, op in enumerate(call.ops):
            yield from _device_op(rt, params, op, shared, host_us if i == 0 else 0.0)
        if call.synchronous and call.ops:
            yield rt.sync_stream(shared.streams[call.ops[0].stream])
            shared.outstanding.discard(call.ops[0].stream)
    elif kind == "call_graph_launch" and call.ops:
        kernels = _graph_kernels(call, params.min_kernel_us, params.compute_share)
        if shared.graph_timing is not None:
            kernels = _timed_graph(kernels, shared.graph_timing, rt.profile)
        key = call.ops[0].stream
        yield rt.launch_graph(shared.streams[key], f"graph:{call.group or call.name}", kernels, host_us)
        shared.outstanding.add(key)
    elif kind == "call_record" and call.event is not None and call.stream in shared.streams:
        shared.events[call.event] = yield rt.record(shared.streams[call.stream], host_us)
    elif kind == "call_wait" and call.stream in shared.streams:
        event = shared.events.get(call.waits_for) if call.waits_for is not None else None
        if event is not None:
            yield rt.wait_event(shared.streams[call.stream], event, host_us)
        else:
            shared.unresolved_waits += 1
    elif kind == "call_sync_event" and call.waits_for in shared.events:
        yield rt.sync_event(shared.events[call.waits_for])
    elif kind == "call_sync_stream" and call.stream in shared.streams:
        yield rt.sync_stream(shared.streams[call.stream])
        shared.outstanding.discard(call.stream)
    elif kind in ("call_sync_stream", "call_sync_device", "call_sync_event"):
        # Device-wide, or a stream/event the recording does not name: wait for every stream with work.
        for key in sorted(shared.outstanding):
            yield rt.sync_stream(shared.streams[key])
        shared.outstanding.clear()
    for key, event in call.record_after:
        shared.events[event] = yield rt.record(shared.streams[key], host_us=0.0)


def _device_op(
    rt: Runtime, params: AsRecordedParams, op: DeviceOp, shared: _Shared, host_us: float | None
) -> PolicyGen:
    stream = shared.streams[op.stream]
    shared.outstanding.add(op.stream)
    if op.kind in COPIES:
        yield rt.copy(stream, op.nbytes, COPIES[op.kind], HostMemory(op.host_memory), op.name, host_us=host_us)
    else:  # kernel, memset, device-to-device copy: GPU work of the recorded duration
        k = _graph_kernel(params, op)
        yield rt.launch(stream, k.name, k.duration_us, k.compute_share, k.kind, host_us=host_us)


def _graph_kernel(params: AsRecordedParams, op: DeviceOp) -> GraphKernel:
    return _kernel(op, params.min_kernel_us, params.compute_share)


DEFAULT_GRAPH_TIMING = GraphTiming(launches=0, lead_in_us=6.0, kernel_gap_us=0.29, tail_us=4.5)
"""The GPU's time around a graph's kernels in the bundled H200 graph recordings (``decode_graph``, medians:
lead-in 6.0-6.1 µs, gaps 0.288 µs, tail 4.1-5.0 µs): what a recording without graphs (``graph_launch``) gets."""
SPACER_SHARE = 0.01  # a spacer takes this share of the GPU (it is time, not work)


@functools.cache
def _timed_graph(kernels: tuple[GraphKernel, ...], timing: GraphTiming, profile) -> tuple[GraphKernel, ...]:
    """A graph's kernels with the GPU time the recording shows around them: a spacer before the first kernel (the
    lead-in after the launch returns, plus what its gaps take beyond the profile's ``graph_kernel_gap_us``) and one
    after the last (the tail before the next op queued behind the graph)."""
    profile_gap_us = profile.device.graph_kernel_gap_us if profile is not None else 0.0
    # Each spacer is a node of the graph: the profile's gap follows or precedes it as any other node's.
    lead_us = timing.lead_in_us + max(0.0, timing.kernel_gap_us - profile_gap_us) * (len(kernels) - 1) - profile_gap_us
    tail_us = timing.tail_us - profile_gap_us
    out = list(kernels)
    if lead_us > 0.0:
        out.insert(0, GraphKernel(GRAPH_LEAD_IN, lead_us, SPACER_SHARE, KernelKind.LATENCY))
    if tail_us > 0.0:
        out.append(GraphKernel(GRAPH_TAIL, tail_us, SPACER_SHARE, KernelKind.LATENCY))
    return tuple(out)


SHORT_KERNEL_US = 10.0
"""Kernels shorter than this stand in as a timer on one warp in the replay (KernelKind.LATENCY): a
memory- or compute-bound stand-in that short is mostly its own launch, and inside a CUDA graph it
does not keep the duration it was tuned to. The simulator does not look at the kind."""


def _kernel(op: DeviceOp, min_kernel_us: float, compute_share: float) -> GraphKernel:
    duration_us = max(op.duration_us, min_kernel_us)
    if duration_us < SHORT_KERNEL_US:
        kind = KernelKind.LATENCY
    elif op.kind == "kernel" and is_gemm(op.name):
        kind = KernelKind.COMPUTE
    else:
        kind = KernelKind.MEMORY
    return GraphKernel(op.name, duration_us, compute_share, kind)


@functools.cache
def _graph_kernels(call: Call, min_kernel_us: float, compute_share: float) -> tuple[GraphKernel, ...]:
    """A graph launch's kernels, built once per call (the same tuple on every run: the replay keys its graphs by it)."""
    return tuple(_kernel(op, min_kernel_us, compute_share) for op in call.ops)


# --------------------------------------------------------------------------- what-ifs (whatif.py)


Groups = Literal["auto", "marks", "copy_runs", "host_syncs"]  # how a what-if finds groups (whatif.py)


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
}
_transformed: dict[tuple[int, str, str], tuple[RecordedProgram, RecordedProgram]] = {}


def transformed(name: str, program: RecordedProgram, params: AsRecordedParams) -> RecordedProgram:
    """The program the what-if ``name`` makes of ``program``, made once (every run re-issues the same one)."""
    key = (id(program), name, params.model_dump_json())
    entry = _transformed.get(key)
    if entry is None or entry[0] is not program:
        entry = _transformed[key] = (program, _TRANSFORMS[name](program, params))
    return entry[1]


def _what_if(name: str):
    def main(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
        program, removed_us = _compensated(rt, program, params)  # before the what-if: it moves compensated gaps
        changed = transformed(name, program, params)
        result = yield from _run_program(rt, changed, params)
        return replace(
            result,
            profiler_overhead=params.profiler_overhead,
            overhead_removed_us=removed_us,
            what_ifs=changed.what_ifs,
        )

    def check(program: RecordedProgram, params: AsRecordedParams) -> None:
        transformed(name, program, params)  # raises NotApplicable (a ValueError) naming what it looked for

    main.__name__ = name
    return main, check


prefetch_copies, check_prefetch_copies = _what_if("prefetch_copies")
async_d2h, check_async_d2h = _what_if("async_d2h")
graph_launch, check_graph_launch = _what_if("graph_launch")
scale_kernels, check_scale_kernels = _what_if("scale_kernels")
