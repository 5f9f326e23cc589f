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
* a GEMM launch (a call whose name, as imported, is ``cuLaunchKernelEx``: cuBLAS's driver-API launch, one per
  GEMM in the decoders and in the calibration's ``composite`` shape; :func:`is_gemm_launch`) carries, where the
  calibration has it (``gemm_launch``, estimator ``isolated_share_gemm``), that figure too in its own overhead,
  scaled as the other eager figures; calibrations without it change nothing;
* the host time removed is that overhead, but never more than takes the call's CPU time
  (gap plus its own cost) below the calibrated unprofiled floor of a call of its kind
  (``floor_us``; 0 for kinds without one), and nothing when it is already below;
* the gap's overhead comes out of the gap first and the call's out of its cost first;
  what one cannot hold comes out of the other. Neither goes negative. A sync's recorded
  duration is how long it blocked, not host work: only its gap is reduced.

On the GPU, CUPTI's kernel records make a CUDA graph's kernels run longer. Where the
calibration measured it (``gpu_overhead``: the calibration's graph replays timed with
CUDA events, profiled against unprofiled) and the spec asks for it
(``graph_gpu_overhead = "subtract"``), each kernel a recorded graph launch holds loses
``gpu_overhead.graph_kernel`` µs of its duration, never below 0, and so does each kernel of a
graph a what-if adds (``graph_launch``: the unprofiled graph program it predicts has no CUPTI
on its kernels either; :func:`added_graphs_without_gpu_overhead`). Eager kernels are left
as recorded. The default, ``"auto"``, subtracts only a figure timed with the replay
*queued* behind GPU work (``gpu_timing = "queued"``, calibrations from 2026-12-07 evening
on). The older figures were timed with the GPU idle: under CUPTI a ``cudaGraphLaunch``
takes 0.7-1 µs a kernel of host time and the graph's kernels start only after it returns
(the H100 recordings: ~6 µs after), so their 0.9-1.3 µs a kernel held the launch's host
time too, while the recordings' graph replays were only 0.15-0.19 µs a kernel over the
unprofiled programs; subtracting them made the graph programs 20-37% too fast
(`measurements/2026-12-07_cpu_decoder-compensation/`).

**The recording's host against the calibration's** (:func:`host_speed`). The calibration's
overheads are µs measured on one host in one phase; a recording made while the host ran much
slower (a slow phase of the GPU machine's host, which can last a whole recording: on the
2026-12-07 H100 corpus ``decode_eager_host_backup``'s sync recording ran every step 1.47x its
nosync recording's, with the same events) holds more profiler cost than the calibration can
take out, and its prediction is not the program's. The check sets the recording's *simple
calls* (a kernel launch whose gap holds exactly one aten op, in a CUDA-only recording none,
and nothing else: no range, no folded call) against what the calibration measured for the same
call: its ``launch`` shape, one tiny op and its launch, costs ``floor_us.call_launch`` unprofiled
plus ``aten_op`` and ``runtime_call`` overhead profiled. The ratio of the recording's median
simple call (gap plus the call's own time) to that is reported with every compensated run; a
real program's simple calls cost more than a tight loop's (1.24-1.44 over the corpus's ordinary
recordings with calibration A, 1.27-1.43 with D, their steps made typical), and a ratio
above :data:`SLOW_HOST_RATIO` flags the recording as taken on a host much slower than the
calibration's (1.78 for the slow-phase recording; 1.82 as recorded): record again, or calibrate
on that host. The figure is taken of the program compensation starts from (its steps made
typical first, with ``host_stalls = "typical"``).

**Scaled to the recording's host** (``overhead_scale = "recording_host"``, the default of the
recorded workload's policies). The calibration's overheads are what the profiler adds to its
tight loops on its host; a real program's calls cost more than a tight loop's, and so does the
profiler's work around them (the calibration's ``block`` shape: 1.31x the fitted overheads, D),
and another host or phase runs both faster or slower. The ratio above measures both at once on
the recording itself: the same simplest call, in the program as recorded against the tight loop
as calibrated. With ``"recording_host"`` it replaces the calibration's ``program_scale``
(:func:`scaled_to`); with ``"calibration"`` the calibration's own scale applies (the ``block``
shape's, or a ``--script`` calibration's for that program). On the 2026-12-07 H100 corpus the
ratio of the ordinary eager recordings was 1.24-1.44 with calibration A and 1.27-1.43 with D
(D's block scale 1.31-1.53), 0.67-0.95 with calibration C (taken on a host 1.7x slower: its
call floor 10.4 µs against 6.1); the slow-phase recording 1.78 (A) and 1.82 (D), and every
eager recording of the second corpus (made on C's slow host) 1.67-2.63 against D.

The calls' floors stay in the calibration host's µs. Scaling them by the recording's host speed
as well (tried 2026-12-07, ``measurements/2026-12-07_cpu_decoder-compensation/``) is right in
principle (against calibration E, a host 1.75x slower, the clamp withheld 20-29% of the eager
decoders' overhead) but made the default mode worse with both slow-host calibrations (E 4.1 ->
10.8%, F 3.8 -> 9.0% median over the decoder family, sync mode; CUDA-only better): their
aten-op figure is too big for the recording's host (a ``view`` slowed 2.35x on E's host, a
launch 1.75x; one ratio scales both alike), and the clamp was cancelling it. Until the
per-kind drift is modelled, the floors are not scaled.

Calls a what-if adds are untouched (they cost what the profile says); compensation is
applied to the recording before any what-if transforms it.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

from harness.profile import Profile, ProfilerCalibration, ProgramScale
from workloads.recorded.program import SYNC_CALLS, Call, RecordedProgram, ThreadProgram

if TYPE_CHECKING:
    from workloads.recorded.calltable import CallTable


class CannotCompensate(ValueError):
    """The recording or the profile lacks what compensation needs (the message says what, and the way out)."""


SLOW_HOST_RATIO = 1.6  # a recording's simple calls this much slower than the calibration's: flagged (see above)
MIN_SIMPLE_CALLS = 20  # fewer simple calls than this: no host-speed figure


class HostSpeed(NamedTuple):
    """The recording's simple calls against the calibration's (:func:`host_speed`)."""

    ratio: float  # recorded median over calibrated
    recorded_us: float  # median host time of the recording's simple calls (gap + own time)
    calibrated_us: float  # the calibration's: floor_us.call_launch + aten_op (not CUDA-only) + runtime_call
    calls: int  # simple calls in the recording

    @property
    def slow(self) -> bool:
        return self.ratio > SLOW_HOST_RATIO


class Removal(NamedTuple):
    host_before_us: float
    duration_us: float
    removed_us: float


GEMM_LAUNCH_CALL = "cuLaunchKernelEx"  # a recorded call of this name is a GEMM launch (cuBLAS's driver-API launch)


def is_gemm_launch(name) -> bool | np.ndarray:
    """Whether a recorded call is a GEMM launch: its name, as imported, is exactly :data:`GEMM_LAUNCH_CALL`
    (element-wise for an array of names)."""
    return name == GEMM_LAUNCH_CALL


def overheads_us(call: Call, calibration: ProfilerCalibration) -> tuple[float, float]:
    """(overhead in the call's gap, overhead in the call itself), µs, from the events recorded there."""
    gap = (
        call.gap_aten_ops * calibration.compensation_us("aten_op")
        + call.gap_ranges * calibration.compensation_us("range")
        + (call.gap_calls + 1) * calibration.compensation_us("runtime_call")
    )
    own = 0.0
    if call.kind == "call_graph_launch":
        own = calibration.compensation_us("graph_launch") + len(call.ops) * calibration.compensation_us("graph_kernel")
    elif is_gemm_launch(call.name):
        own = calibration.compensation_us("gemm_launch")
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
    duration = max(duration_us - from_call, 0.0) if duration_is_host_work else duration_us  # no -1e-14 from rounding
    return Removal(before - from_gap, duration, from_gap + from_call)


def simple_calls(
    kind: np.ndarray, gap_aten_ops: np.ndarray, gap_ranges: np.ndarray, gap_calls: np.ndarray, cuda_only: bool
) -> np.ndarray:
    """Which calls are *simple*: a kernel launch whose gap holds one aten op (none in a CUDA-only recording, which
    records no aten ops), no range and no folded call: what the calibration's ``launch`` shape times."""
    return (
        (np.asarray(kind, dtype=object) == "call_launch")
        & (np.asarray(gap_aten_ops) == (0 if cuda_only else 1))
        & (np.asarray(gap_ranges) == 0)
        & (np.asarray(gap_calls) == 0)
    )


def host_speed(program: RecordedProgram, calibration: ProfilerCalibration) -> HostSpeed | None:
    """The recording's median simple call (gap plus own time, every thread) over the calibration's simple call
    (``floor_us.call_launch`` + ``aten_op`` + ``runtime_call``, CUDA-only: without ``aten_op``); None with fewer
    than :data:`MIN_SIMPLE_CALLS` simple calls or no ``call_launch`` floor."""
    floor = calibration.floor_us.get("call_launch")
    if floor is None:
        return None
    simple = simple_call_median(program)
    if simple is None:
        return None
    recorded_us, calls = simple
    aten_us = 0.0 if program.profiler_mode.startswith("cuda") else calibration.overhead_us("aten_op")
    calibrated = floor + aten_us + calibration.overhead_us("runtime_call")
    return HostSpeed(recorded_us / calibrated, recorded_us, calibrated, calls)


def simple_call_median(program: RecordedProgram) -> tuple[float, int] | None:
    """The median host time (gap plus own time, every thread) of the recording's simple calls and their count;
    after a what-if, the recording's as it was before (``recorded_simple_calls``); None with fewer than
    :data:`MIN_SIMPLE_CALLS`."""
    if program.recorded_simple_calls is not None:
        return program.recorded_simple_calls
    cuda_only = program.profiler_mode.startswith("cuda")
    times = []
    for thread in program.threads:
        if thread.table is not None:
            t = thread.table
            mask = simple_calls(t.kind, t.gap_aten_ops, t.gap_ranges, t.gap_calls, cuda_only)
            times.append((t.host_before_us + t.duration_us)[mask])
            continue
        recorded = [c for c in thread.calls if not c.synthetic]
        mask = simple_calls(
            np.array([c.kind for c in recorded], dtype=object),
            np.array([c.gap_aten_ops for c in recorded]),
            np.array([c.gap_ranges for c in recorded]),
            np.array([c.gap_calls for c in recorded]),
            cuda_only,
        )
        times.append(np.array([c.host_before_us + c.duration_us for c in recorded], dtype=np.float64)[mask])
    per_call = np.concatenate(times) if times else np.zeros(0)
    if len(per_call) < MIN_SIMPLE_CALLS:
        return None
    return float(np.median(per_call)), len(per_call)


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


def scaled_to(calibration: ProfilerCalibration, speed: HostSpeed | None) -> ProfilerCalibration:
    """``calibration`` with the recording's host ratio (:func:`host_speed`) as its program scale: the aten-op,
    runtime-call and range overheads times ``speed.ratio``; unchanged when there is no ratio."""
    if speed is None:
        return calibration
    source = "the recording's simple calls over the calibration's (host_speed)"
    return calibration.model_copy(update={"program_scale": ProgramScale(median=speed.ratio, spread=0.0, source=source)})


def without_profiler_overhead(
    program: RecordedProgram, calibration: ProfilerCalibration, graph_gpu: bool = False
) -> tuple[RecordedProgram, float]:
    """The program with the calibrated profiler overhead taken out of every recorded call (and, with
    ``graph_gpu``, the calibrated GPU time out of every graph kernel); and the host µs removed. The eager kinds'
    overheads are scaled by the calibration's ``program_scale`` (see :func:`scaled_to`)."""
    if not graph_gpu:
        calibration = calibration.model_copy(update={"gpu_overhead": {}})
    removed = 0.0
    threads = []
    for thread in program.threads:
        if thread.table is not None:  # the same arithmetic, column-wise (its calls are all recorded ones)
            table, removed_us = _table_without_overhead(_table_graph_kernels_shorter(thread.table, calibration),
                                                        calibration)  # fmt: skip
            removed = float(np.cumsum(np.concatenate(([removed], removed_us)))[-1])  # added in order, as below
            threads.append(ThreadProgram(thread.name, table=table))
            continue
        calls = []
        for call in thread.calls:
            if call.synthetic:
                calls.append(call)
                continue
            call = _graph_kernels_shorter(call, calibration)
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


def added_graphs_without_gpu_overhead(program: RecordedProgram, calibration: ProfilerCalibration) -> RecordedProgram:
    """The graphs a what-if added (synthetic ``call_graph_launch`` calls, e.g. ``graph_launch``'s captures of eager
    kernels), their kernels ``gpu_overhead.graph_kernel`` µs shorter, never below 0: as the recording's own graph
    kernels are in a compensated run. The captured kernels keep their recorded eager durations, which under the
    profiler are about what the same kernels take inside a profiled graph (the H100 corpus's host-size decoder:
    182 µs a step eager, 186 in its graph), so the unprofiled graph they predict loses what CUPTI adds to a
    graph's kernels on the GPU (``graph_launch`` on ``decode_eager_host``: each replay 235 µs against the real
    unprofiled graph program's 200). The program as it is where nothing was added or no figure is calibrated."""
    cut = graph_kernel_gpu_us(calibration)
    if cut <= 0:
        return program
    threads = []
    for thread in program.threads:
        if thread.table is not None or not any(c.synthetic and c.kind == "call_graph_launch" for c in thread.calls):
            threads.append(thread)
            continue
        calls = tuple(_graph_kernels_shorter(c, calibration) if c.synthetic else c for c in thread.calls)
        threads.append(ThreadProgram(thread.name, calls))
    return replace(program, threads=tuple(threads))


def subtracts_graph_gpu(choice: str, calibration: ProfilerCalibration) -> bool:
    """Whether a compensated run takes the calibrated GPU time out of graph kernels: ``"subtract"`` always,
    ``"keep"`` never, ``"auto"`` where the calibration timed its graph replays queued behind GPU work
    (``gpu_timing = "queued"``): the GPU's own time, not the profiled launch's host time with it."""
    if choice == "auto":
        return calibration.gpu_timing == "queued" and graph_kernel_gpu_us(calibration) > 0
    return choice == "subtract"


def graph_kernel_gpu_us(calibration: ProfilerCalibration) -> float:
    """GPU time the profiler added to each kernel of a graph (0 where not calibrated), never negative."""
    figure = calibration.gpu_overhead.get("graph_kernel")
    return max(figure.median_us, 0.0) if figure else 0.0


def _graph_kernels_shorter(call: Call, calibration: ProfilerCalibration) -> Call:
    cut = graph_kernel_gpu_us(calibration)
    if cut <= 0 or call.kind != "call_graph_launch":
        return call
    ops = tuple(replace(op, duration_us=max(op.duration_us - cut, 0.0)) if op.kind == "kernel" else op for op in call.ops)
    return replace(call, ops=ops)


def _table_graph_kernels_shorter(table: CallTable, calibration: ProfilerCalibration) -> CallTable:
    """:func:`_graph_kernels_shorter` of every graph launch of ``table``, column-wise (a copy of its op table)."""
    cut = graph_kernel_gpu_us(calibration)
    graph = table.kind == "call_graph_launch"
    if cut <= 0 or not graph.any():
        return table
    first, count = table.op_first[graph], table.op_count[graph]
    idx = np.repeat(first, count) + (np.arange(int(count.sum())) - np.repeat(np.cumsum(count) - count, count))
    idx = idx[table.ops.kind[idx] == "kernel"]
    duration = table.ops.duration_us.copy()
    duration[idx] = np.maximum(duration[idx] - cut, 0.0)
    return replace(table, ops=replace(table.ops, duration_us=duration))


def _max(a, b):
    """Python's ``max(a, b)``, element-wise: ``a`` unless ``b`` is greater (so a -0.0 stays -0.0)."""
    return np.where(b > a, b, a)


def _min(a, b):
    """Python's ``min(a, b)``, element-wise: ``a`` unless ``b`` is less."""
    return np.where(b < a, b, a)


def _table_without_overhead(table: CallTable, calibration: ProfilerCalibration) -> tuple[CallTable, np.ndarray]:
    """:func:`overheads_us` and :func:`remove_overhead` of every call of ``table``, column-wise, to the last bit."""
    kind = table.kind
    gap_oh = (
        table.gap_aten_ops * calibration.compensation_us("aten_op")
        + table.gap_ranges * calibration.compensation_us("range")
        + (table.gap_calls + 1) * calibration.compensation_us("runtime_call")
    )
    graph = calibration.compensation_us("graph_launch") + table.op_count * calibration.compensation_us("graph_kernel")
    gemm = np.where(is_gemm_launch(np.asarray(table.name, dtype=object)), calibration.compensation_us("gemm_launch"), 0.0)
    call_oh = np.where(kind == "call_graph_launch", graph, gemm)
    floors = {k: calibration.floor_us.get(k, 0.0) for k in set(kind.tolist())}
    floor = np.array([floors[k] for k in kind.tolist()], dtype=np.float64)
    host_work = ~np.isin(kind, SYNC_CALLS)
    duration = table.duration_us
    before = _max(table.host_before_us, 0.0)
    own = np.where(host_work, _max(duration, 0.0), 0.0)
    total = before + own
    budget = _min(_max(gap_oh, 0.0) + _max(call_oh, 0.0), _max(total - floor, 0.0))
    from_call = _min(_min(own, _max(call_oh, 0.0)), budget)
    from_gap = _min(before, budget - from_call)
    from_call = from_call + _min(own - from_call, budget - from_call - from_gap)
    lighter = table.with_costs(before - from_gap, np.where(host_work, np.maximum(duration - from_call, 0.0), duration))
    return lighter, from_gap + from_call
