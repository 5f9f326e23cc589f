"""What a call a what-if adds to a recorded program costs the host: the program's kind of cost, not the replay engine's.

A what-if adds runtime calls to an eager PyTorch program (event records and waits,
graph launches). They cost what such a call costs *that kind of program*, in this order:

1. the profile's ``[host_costs.pytorch_eager]`` (:meth:`harness.profile.Profile.program_call_cost_us`,
   measured by ``harness calibrate --profiler``), when the profile has them;
2. else the recording's own calls of that kind: their median recorded duration (the
   program pays at least that; recorded under the profiler, as the rest of the recording);
3. else, for an event record or wait, the median of the recording's kernel launches (an
   eager runtime call of this very program);
4. else :data:`FALLBACK_US`.

Never the replay engine's own costs (``[host]``: 22-54 µs a launch, 2-5x an eager program's).

**Side-stream hand-off** (``STREAM_HANDOFF``): ``async_d2h`` hands each batch of copies to a side
stream and back the way an eager program does (``done = torch.cuda.Event(); done.record(main)``,
``with torch.cuda.stream(side): side.wait_event(done); ...; copied = torch.cuda.Event();
copied.record(side)``, then ``main.wait_event(copied)``). Beyond its two records and two waits that
costs the host the Python around them, which the recordings show is 10-30x the calls themselves
(traces/recorded/corpus/README.md). Per batch, in this order:

1. the profile's ``stream_handoff_us`` (``[host_costs.pytorch_eager]``, measured unprofiled by
   ``harness calibrate --profiler``), plus, when the prediction keeps the profiler's overhead
   (``profiler_overhead = "keep"``), what the profile's ``[profiler.<mode>]`` calibration of the
   recording's mode measured the profiler adds to it (``overhead.stream_handoff``);
2. else :data:`STREAM_HANDOFF_FALLBACK_US`, measured on a recording (profiled), also where the prediction takes
   the profiler out: scaled by what compensation did to the program's aten ops (~0.55 on the H100 corpus) it
   under-charged the real unprofiled hand-off (p02: +6.5% predicted against +13.9% real, +17.0% unscaled;
   traces/recorded/corpus/README.md), whose Python the profiler inflates less than an aten op's.

**Prefetch hand-off** (``PREFETCH_HANDOFF``): ``prefetch_copies`` hands each group's copies to a copy
stream the way a hand-written prefetcher does each layer (``with torch.cuda.stream(copies):
copies.wait_event(free); buf.copy_(w, non_blocking=True); ready.record(copies)``, then
``main.wait_event(ready)`` and, after the layer, ``free = torch.cuda.Event(); free.record(main)``).
Beyond its records and waits that costs the host the Python around them, which runs at the speed of the
program's own Python: it is charged as :data:`PREFETCH_HANDOFF_ATEN_OPS` times the recording's host time
per aten op (:func:`host_us_per_aten_op`: the median CPU gap before a kernel launch or memset per aten op
begun in it; after compensation when the prediction takes the profiler out), else, for a trace that
does not count aten ops, :data:`PREFETCH_HANDOFF_FALLBACK_US`.

**A graph launch under the profiler** (``GRAPH_KERNEL``): CUPTI records each kernel of a launched graph
inside ``cudaGraphLaunch``, so a recorded graph launch costs the host far more than an unprofiled one
(82-105 µs for the H100 corpus's 114-122-kernel graphs, 192-211 µs for 234 kernels, against 2.8 µs
unprofiled). When the cost of an added graph launch is the profile's unprofiled figure (1. above) and the
prediction keeps the profiler's overhead, it also pays what the profile's ``[profiler.<mode>]`` calibration
of the recording's mode says the profiler adds to a graph launch: what compensation takes out of a recorded
one (``runtime_call + graph_launch``, plus ``graph_kernel`` per kernel in it: ``costs[GRAPH_KERNEL]``,
charged per kernel by :meth:`.steps.HostCosts.of`). A cost from the recording or :data:`FALLBACK_US` is a
profiled figure already.

**A graph's first launch under the profiler** (``GRAPH_FIRST_LAUNCH``): the first ``cudaGraphLaunch`` of a graph
in a profiled recording lasts hundreds of µs longer than the later ones (the profiler's first sight of the graph),
which a recording's median launch, the profile's unprofiled cost and its per-kernel profiler figure all leave out.
When the prediction keeps the profiler's overhead, the first launch of each distinct graph a what-if adds
(``whatif.GRAPH_FIRST_LAUNCH``) also pays :data:`GRAPH_FIRST_LAUNCH_PROFILED_US`. A compensated prediction does
not: it predicts the warmed-up program without the profiler, which has no such launch.
"""

from __future__ import annotations

import statistics

from harness.profile import Profile, ProfilerCalibration
from workloads.recorded.compensation import host_speed
from workloads.recorded.program import RecordedProgram

ADDED_KINDS = ("call_record", "call_wait", "call_graph_launch", "call_launch", "call_memcpy", "call_sync_event")
FALLBACK_US = {
    "call_record": 1.2,  # cudaEventRecord / cudaStreamWaitEvent in the bundled decode_async-sync recording (H200)
    "call_wait": 1.2,
    "call_sync_event": 25.0,  # cudaDeviceSynchronize on an idle GPU, bundled decode recordings (H200)
    "call_graph_launch": 140.0,  # cudaGraphLaunch of a 96-kernel graph, bundled decode_graph-sync (H200, profiled)
    "call_launch": 6.0,  # cudaLaunchKernel, bundled decode_inline-sync (H200)
    "call_memcpy": 9.0,  # cudaMemcpyAsync, bundled decode recordings (H200)
}
"""Recorded runtime-call durations of the bundled H200 recordings (``traces/recorded/``, medians)."""
STREAM_HANDOFF = "stream_handoff"  # the key of the hand-off's cost in added_call_costs_us
PREFETCH_HANDOFF = "prefetch_handoff"  # the key of the prefetcher's hand-off cost in added_call_costs_us
PREFETCH_HANDOFF_ATEN_OPS = 5.3
"""The prefetcher's hand-off per group, beyond its records' and waits' own durations, in aten ops' worth of the
program's own host time: the bundled H200 recordings (``traces/recorded/``) ``layers_prefetch`` against
``layers_sync``, per layer (layers 1-5), the host time outside kernel launches, memsets and copies (the gaps before
launches and memsets left out, the gap before the copy kept) less the records' and waits' durations: 60.0 µs more
at 11.42 µs per aten op with sync events (5.26), 58.7 µs at 11.07 without (5.30)."""
PREFETCH_HANDOFF_FALLBACK_US = 60.0  # the same, in µs, with sync events (a trace without aten-op counts)
GRAPH_KERNEL = "graph_kernel"  # the key of the profiler's host cost per kernel of an added graph launch
GRAPH_FIRST_LAUNCH = "graph_first_launch"  # the key of the extra a distinct graph's first launch pays under the profiler
GRAPH_FIRST_LAUNCH_PROFILED_US = 448.0
"""What a graph's first ``cudaGraphLaunch`` under torch.profiler takes beyond its later launches (host µs): the
bundled H200 recordings' ``decode_graph`` (96 kernels a graph; ``traces/recorded/``), its first launch against
the median of its others, 436 µs with CUDA sync events (576 against 140) and 459 without (591 against 133): 448,
their mean. The H100 corpus's graph recordings (the graph pairs' changed programs, so not used for the figure)
show 378-613 µs (114-250 kernels, all three modes; 410 their median): not a figure per kernel."""
STREAM_HANDOFF_FALLBACK_US = 63.0
"""The hand-off's host time beyond its two records and two waits in the bundled H200 recordings, profiled (CPU+CUDA
with sync events): per step, the host time outside kernel launches (the head before the first launch included) of
``decode_async-sync`` (the idiom above), less its records' and waits' own durations, against that of
``decode_inline-sync`` (the same step, its copy in line, its stream sync left out): the median over steps 2-22 of
the difference is 63.3 µs (medians 175.3 against 106.5 µs a step)."""
_LIKE_A_LAUNCH = ("call_record", "call_wait")


def added_call_costs_us(program: RecordedProgram, profile: Profile | None, profiled: bool = True) -> dict[str, float]:
    """``{call kind: host µs}`` for calls a what-if adds to ``program``, and ``{STREAM_HANDOFF: µs}`` per side-stream
    hand-off (see the module docstring); ``profiled``: the prediction keeps the profiler's overhead."""
    recorded: dict[str, list[float]] = {}
    for thread in program.threads:
        for call in thread.calls:
            if not call.synthetic and call.duration_us == call.duration_us:
                recorded.setdefault(call.kind, []).append(call.duration_us)
    eager = profile is not None and profile.pytorch_eager_measured
    costs = {}
    for kind in ADDED_KINDS:
        if eager:
            costs[kind] = profile.program_call_cost_us(kind)
        elif recorded.get(kind):
            costs[kind] = statistics.median(recorded[kind])
        elif kind in _LIKE_A_LAUNCH and recorded.get("call_launch"):
            costs[kind] = statistics.median(recorded["call_launch"])
        else:
            costs[kind] = FALLBACK_US[kind]
    costs[STREAM_HANDOFF] = stream_handoff_us(program, profile, profiled)
    costs[PREFETCH_HANDOFF] = prefetch_handoff_us(program)
    calibration = profile.profiler_calibration(program.profiler_mode) if eager and program.profiler_mode else None
    if profiled and calibration is not None:  # a graph launch under the profiler, as compensation sees it
        scale = profiler_cost_scale(program, calibration)
        costs["call_graph_launch"] += scale * (
            calibration.compensation_us("runtime_call") + calibration.compensation_us("graph_launch")
        )
        costs[GRAPH_KERNEL] = scale * calibration.compensation_us("graph_kernel")
    if profiled:  # a graph's first launch under the profiler (none in the warmed-up unprofiled program)
        costs[GRAPH_FIRST_LAUNCH] = GRAPH_FIRST_LAUNCH_PROFILED_US
    return costs


def profiler_cost_scale(program: RecordedProgram, calibration: ProfilerCalibration) -> float:
    """How much faster or slower the recording's host ran than the calibration's: what the profiler's calibrated
    per-event costs are multiplied by for a call a what-if adds. The recording's simple calls over the
    calibration's (``compensation.host_speed``) hold two factors, the host's speed and a real program's higher
    cost per event, which the calibration measures as its ``program_scale`` (a real decoder block): the speed is
    the ratio over that scale. 1 where the calibration has no program scale to tell them apart, or the recording
    too few simple calls. (A calibration on a host 1.7x slower than the recording's charged an added graph launch
    1.7x what the recording's own launches paid.)"""
    speed = host_speed(program, calibration)
    if speed is None or calibration.program_scale is None:
        return 1.0
    return speed.ratio / calibration.program_scale.median


def stream_handoff_us(program: RecordedProgram, profile: Profile | None, profiled: bool = True) -> float:
    """Host µs of one side-stream hand-off beyond its records and waits (see the module docstring)."""
    eager = profile.figures.pytorch_eager_host if profile is not None else None
    if eager is None or eager.stream_handoff_us is None:
        return STREAM_HANDOFF_FALLBACK_US
    calibration = profile.profiler_calibration(program.profiler_mode) if program.profiler_mode else None
    added = calibration.overhead_us(STREAM_HANDOFF) if profiled and calibration is not None else 0.0
    return eager.stream_handoff_us + added


def host_us_per_aten_op(program: RecordedProgram) -> float | None:
    """The program's host time per aten op: the median, over its recorded kernel launches and memsets whose CPU gap
    began aten ops, of the gap over those ops (None when the trace does not count them)."""
    per_op = [
        call.host_before_us / call.gap_aten_ops
        for thread in program.threads
        for call in thread.calls
        if not call.synthetic and call.kind in ("call_launch", "call_memset") and call.gap_aten_ops > 0
    ]
    return statistics.median(per_op) if per_op else None


def prefetch_handoff_us(program: RecordedProgram) -> float:
    """Host µs of one prefetch hand-off beyond its records and waits (see the module docstring)."""
    unit = host_us_per_aten_op(program)
    return PREFETCH_HANDOFF_FALLBACK_US if unit is None else PREFETCH_HANDOFF_ATEN_OPS * unit
