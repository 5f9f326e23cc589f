"""A recorded program as a step program (:mod:`harness.program`): what ``as_recorded`` and every what-if yield.

:func:`step_program` turns a :class:`~workloads.recorded.program.RecordedProgram`
(after compensation and any what-if transform) into the steps its calls become,
call by call as :mod:`workloads.recorded.reissue` issues them one command at a
time (that module is the reference ``tests/test_program_equivalence.py`` checks
against). What a call becomes:

* its CPU time before it (``host_before_us``): the ``gap_us`` of its first step,
  named ``cpu:<group>`` (``cpu`` outside groups); a call that issues nothing keeps
  it as a step of host work only;
* inferred waits before its ops (``wait_before``): waits at no host cost;
* a launch, memset or memcpy: one step per GPU op (host-link copies as copies of
  their recorded duration, or of the profile's link model with ``copy_timing =
  "profile"``; everything else a kernel of its recorded duration: :func:`kernel_of`),
  the call's host cost on the first; a synchronous memcpy then syncs its stream;
* a graph launch: one graph step of its kernels, with the launch's latency (the lead-in the
  recording shows after a launch onto an idle stream: :func:`graph_latency_us`, the step's
  ``duration_us``) and spacer kernels for the GPU time the recording shows around them when a
  :class:`~workloads.recorded.program.GraphTiming` is given (:func:`timed_graph`); where that
  timing says the recording's graphs start before their launch call returns, the graph is
  issued that far into the call and the rest of the call follows as host work
  (:func:`graph_launch_split_us`);
* a collective (an NCCL kernel a multi-rank import described, :mod:`harness.multirank_import`):
  an ``OP_COLLECTIVE`` step of its operation, size and peer on a communicator of its devices
  (one per distinct set, in the order met), NCCL's algorithm where its kernel's name gives it;
* a record, wait, sync: the step of that name; a sync of a stream or event the
  recording does not name, or a device sync, is ``OP_SYNC_DEVICE`` (in a program of several
  devices, a thread that addresses one device syncs that device's streams only: a rank's
  ``cudaDeviceSynchronize`` does not wait for the other ranks' GPUs);
* inferred records after its ops (``record_after``): records at no host cost.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import numpy as np

from harness.multirank_import import parse_collective_name, recorded_algorithm
from harness.profile import Profile
from harness.program import (
    ALGORITHMS,
    COLLECTIVE_CODES,
    DIRECTION_CODES,
    GRAPH_KERNEL_DTYPE,
    KIND_CODES,
    OP_COLLECTIVE,
    OP_COPY,
    OP_GRAPH,
    OP_HOST,
    OP_LAUNCH,
    OP_RECORD,
    OP_SYNC_DEVICE,
    OP_SYNC_EVENT,
    OP_SYNC_STREAM,
    OP_WAIT,
    ProgramThread,
    StepProgram,
    new_steps,
)
from harness.runtime import CollectiveOp, Direction, GraphKernel, KernelKind
from workloads.recorded.calltable import CallTable, factorize_shared
from workloads.recorded.host_costs import GRAPH_FIRST_LAUNCH, GRAPH_KERNEL, PREFETCH_HANDOFF, STREAM_HANDOFF
from workloads.recorded.program import Call, DeviceOp, GraphTiming, RecordedProgram, StreamKey, is_gemm
from workloads.recorded.whatif import GRAPH_FIRST_LAUNCH as GRAPH_FIRST_LAUNCH_CALL
from workloads.recorded.whatif import HANDOFF
from workloads.recorded.whatif import PREFETCH_HANDOFF as PREFETCH_RECORD

COPIES = {"copy_h2d": Direction.H2D, "copy_d2h": Direction.D2H}
NO_EVENT = -(2**63)  # a symbolic event no step records: a wait on it is unresolved, a sync on it syncs the device
SHORT_KERNEL_US = 10.0
"""Kernels shorter than this stand in as a timer on one warp in the replay (KernelKind.LATENCY): a
memory- or compute-bound stand-in that short is mostly its own launch, and inside a CUDA graph it
does not keep the duration it was tuned to. The simulator does not look at the kind."""


GRAPH_LEAD_IN = "graph lead-in"  # spacer kernels' names: GPU time around a graph's kernels (metrics leave them out)
GRAPH_TAIL = "graph tail"
DEFAULT_GRAPH_TIMING = GraphTiming(launches=0, lead_in_us=6.0, kernel_gap_us=0.29, tail_us=4.5, idle_lead_us=6.0)
"""The GPU's time around a graph's kernels in the bundled H200 graph recordings (``decode_graph``, medians:
lead-in 6.0-6.1 µs after an idle launch, gaps 0.288 µs, tail 4.1-5.0 µs): what a recording without graphs
(``graph_launch``) gets where its profile gives no graph figures of its device (:func:`graph_timing_for`)."""
SPACER_SHARE = 0.01  # a spacer takes this share of the GPU (it is time, not work)
GRAPH_LAUNCH_REST = "cudaGraphLaunch after the GPU had the graph"  # host work: a launch call's time after the issue


def profile_graph_timing(profile: Profile | None) -> GraphTiming | None:
    """The graph timing of the profile's device (``[device] graph_lead_in_us`` and ``graph_queued_gap_us``, from
    recordings of CUDA graphs on it): the lead-in after an idle launch, and the gap between graphs queued back to
    back as the tail (the GPU's time after a graph before the next op it holds up); the gaps between a graph's
    kernels the profile's ``graph_kernel_gap_us``, or :data:`DEFAULT_GRAPH_TIMING`'s where it has none. None where
    the profile has neither figure."""
    device = profile.device if profile is not None else None
    if device is None or (device.graph_lead_in_us is None and device.graph_queued_gap_us is None):
        return None
    default = DEFAULT_GRAPH_TIMING
    lead_us = default.lead_in_us if device.graph_lead_in_us is None else device.graph_lead_in_us
    queued_us = default.tail_us if device.graph_queued_gap_us is None else device.graph_queued_gap_us
    gap_us = device.graph_kernel_gap_us if device.graph_kernel_gap_us > 0.0 else default.kernel_gap_us
    return GraphTiming(
        launches=0, lead_in_us=lead_us, kernel_gap_us=gap_us, tail_us=queued_us, idle_lead_us=lead_us,
        queued_gap_us=queued_us,
    )  # fmt: skip


def graph_timing_for(program: RecordedProgram, profile: Profile | None) -> GraphTiming:
    """The GPU's time around the graphs ``program`` launches: its recording's own (:class:`GraphTiming`), else its
    profile's device figures (:func:`profile_graph_timing`), else :data:`DEFAULT_GRAPH_TIMING`."""
    return program.graph_timing or profile_graph_timing(profile) or DEFAULT_GRAPH_TIMING


def queued_lead_us(timing: GraphTiming) -> float:
    """GPU time before a graph's first kernel that a graph queued behind earlier work keeps too: what the
    recording's queued graphs started after the work ahead of them beyond its tail (0 without queued graphs)."""
    if timing.queued_gap_us is None:
        return 0.0
    return max(0.0, timing.queued_gap_us - timing.tail_us)


def graph_latency_us(timing: GraphTiming | None) -> float:
    """A graph launch's latency (runtime contract point 16): its first kernel starts no earlier than this after
    the call returns. The lead-in of the recording's graphs launched onto an idle stream (a timing without that
    figure: its ``lead_in_us``), less what the graph's lead spacer already holds (:func:`queued_lead_us`); 0
    where the graphs start inside their call (``issued_in_call_us``)."""
    if timing is None or timing.issued_in_call_us is not None:
        return 0.0
    idle_us = timing.lead_in_us if timing.idle_lead_us is None else timing.idle_lead_us
    return max(0.0, idle_us - queued_lead_us(timing))


def graph_launch_split_us(host_us: float, timing: GraphTiming | None) -> tuple[float, float]:
    """A graph launch call's host cost split at the point the GPU had its graph: the cost before the graph is issued
    and the host time after it (0 unless the recording's graphs start before their calls return:
    ``GraphTiming.issued_in_call_us`` into the call, or the call's last ``call_after_issue_us`` where that is
    later, and the call lasts longer than that). NaN (the backend's figure) is not split."""
    if timing is None or timing.issued_in_call_us is None:
        return host_us, 0.0
    issued_us = max(timing.issued_in_call_us, host_us - timing.call_after_issue_us)
    if not host_us > issued_us:
        return host_us, 0.0
    return issued_us, host_us - issued_us


@functools.cache
def timed_graph(kernels: tuple[GraphKernel, ...], timing: GraphTiming, profile_gap_us: float) -> tuple[GraphKernel, ...]:
    """A graph's kernels with the GPU time the recording shows around them: a spacer before the first kernel (what
    a queued graph's start keeps beyond the tail ahead of it, :func:`queued_lead_us`, plus what its gaps take
    beyond the profile's ``graph_kernel_gap_us``) and one after the last (the tail before the next op queued
    behind the graph). The lead-in after an idle launch is the launch's latency (:func:`graph_latency_us`), not
    GPU time: a graph queued behind earlier work does not wait it out."""
    # Each spacer is a node of the graph: the profile's gap follows or precedes it as any other node's.
    excess_us = max(0.0, timing.kernel_gap_us - profile_gap_us) * (len(kernels) - 1)
    lead_us = queued_lead_us(timing) + excess_us - profile_gap_us
    tail_us = timing.tail_us - profile_gap_us
    out = list(kernels)
    if lead_us > 0.0:
        out.insert(0, GraphKernel(GRAPH_LEAD_IN, lead_us, SPACER_SHARE, KernelKind.LATENCY))
    if tail_us > 0.0:
        out.append(GraphKernel(GRAPH_TAIL, tail_us, SPACER_SHARE, KernelKind.LATENCY))
    return tuple(out)


def graph_kernels_of(
    call: Call, min_kernel_us: float, compute_share: float, timing: GraphTiming | None, profile: Profile | None
) -> tuple[GraphKernel, ...]:
    """The kernels a graph launch re-issues: its recorded kernels, timed as the recording shows (``timing``)."""
    kernels = tuple(kernel_of(op, min_kernel_us, compute_share) for op in call.ops)
    if timing is None:
        return kernels
    return timed_graph(kernels, timing, profile.device.graph_kernel_gap_us if profile is not None else 0.0)


def kernel_of(op: DeviceOp, min_kernel_us: float, compute_share: float) -> GraphKernel:
    """The kernel a recorded GPU op (kernel, memset, device-to-device copy) re-issues as."""
    duration_us = max(op.duration_us, min_kernel_us)
    if duration_us < SHORT_KERNEL_US:
        kind = KernelKind.LATENCY
    elif op.kind == "kernel" and is_gemm(op.name):
        kind = KernelKind.COMPUTE
    else:
        kind = KernelKind.MEMORY
    return GraphKernel(op.name, duration_us, compute_share, kind)


@dataclass(frozen=True, slots=True)
class HostCosts:
    """What a call costs the host: its recorded duration (``recorded``, calls a what-if added excepted); else
    what a PyTorch program pays for one of its kind when the profile says (``[host_costs.pytorch_eager]``);
    else NaN: the backend's own figure (the replay engine's)."""

    recorded: bool
    profile: Profile | None
    added_us: dict[str, float] = field(default_factory=dict)  # calls a what-if added, by kind (host_costs.py)

    def of(self, call: Call) -> float:
        if self.recorded and not call.synthetic:
            return call.duration_us
        if call.synthetic and call.kind in self.added_us:
            if call.name == HANDOFF:  # async_d2h's hand-off: its record, and the eager program's Python around it
                return self.added_us[call.kind] + self.added_us.get(STREAM_HANDOFF, 0.0)
            if call.name == PREFETCH_RECORD:  # prefetch_copies's hand-off: its record and the prefetcher's Python
                return self.added_us[call.kind] + self.added_us.get(PREFETCH_HANDOFF, 0.0)
            if call.kind == "call_graph_launch":  # profiled: its kernels' records, a first launch (host_costs.py)
                first = self.added_us.get(GRAPH_FIRST_LAUNCH, 0.0) if call.name == GRAPH_FIRST_LAUNCH_CALL else 0.0
                return self.added_us[call.kind] + len(call.ops) * self.added_us.get(GRAPH_KERNEL, 0.0) + first
            return self.added_us[call.kind]
        profile = self.profile
        if profile is not None and profile.pytorch_eager_measured:
            return profile.program_call_cost_us(call.kind)
        return math.nan


class _Builder:
    """Steps of one program, appended as rows (tuples in STEP_DTYPE field order)."""

    def __init__(
        self,
        program: RecordedProgram,
        min_kernel_us: float,
        compute_share: float,
        graph_timing: GraphTiming | None = None,
        profile: Profile | None = None,
        recorded_copies: bool = True,
    ) -> None:
        self.graph_timing = graph_timing
        self.recorded_copies = recorded_copies  # host-link copies keep their recorded durations
        self.profile = profile
        self.stream_index: dict[StreamKey, int] = {key: i for i, key in enumerate(program.streams)}
        self.several_devices = len({key[0] for key in program.streams}) > 1
        self.communicators: dict[tuple[int, ...], int] = {}  # devices -> index, in the order met
        self.sync_stream = -1  # the thread's device-wide syncs: -1 every device, else a stream of its one device
        self.names: dict[str, int] = {}
        self.graph_rows: list[tuple] = []
        self.min_kernel_us = min_kernel_us
        self.compute_share = compute_share

    def name(self, text: str) -> int:
        index = self.names.get(text)
        if index is None:
            index = self.names[text] = len(self.names)
        return index

    def thread_steps(self, calls: tuple[Call, ...], costs: HostCosts) -> np.ndarray:
        self.sync_stream = self._own_device_stream(calls) if self.several_devices else -1
        rows: list[tuple] = []
        for call in calls:
            first = len(rows)
            self._call(call, costs.of(call), rows)
            gap = call.host_before_us
            if gap > 0.0:
                if len(rows) == first:
                    rows.append(_row(OP_HOST))
                gap_name = self.name(f"cpu:{call.group}" if call.group else "cpu")
                rows[first] = rows[first][:6] + (gap_name,) + rows[first][7:10] + (gap,) + rows[first][11:]
        steps = new_steps(len(rows))
        if rows:
            steps[:] = rows
        return steps

    def _own_device_stream(self, calls: tuple[Call, ...]) -> int:
        """The first stream of the one device a thread's calls address (-1: none, or several)."""
        devices = {op.stream[0] for c in calls for op in c.ops} | {c.stream[0] for c in calls if c.stream}
        if len(devices) != 1:
            return -1
        (device,) = devices
        return min((i for key, i in self.stream_index.items() if key[0] == device), default=-1)

    def communicator(self, devices: tuple[int, ...]) -> int:
        index = self.communicators.get(devices)
        if index is None:
            index = self.communicators[devices] = len(self.communicators)
        return index

    def _collective(self, op: DeviceOp, host_us: float) -> tuple | None:
        """The step of a recorded collective; None when its name does not describe one (it stays a kernel)."""
        call = parse_collective_name(op.name)
        if call is None:
            return None
        code = COLLECTIVE_CODES[CollectiveOp(call.op)]
        algorithm = ALGORITHMS.index(recorded_algorithm(call.kernel) or "") if call.op not in ("send", "recv") else 0
        peer = -1 if call.peer is None else call.peer
        stream, comm = self.stream_index[op.stream], self.communicator(call.devices)
        name = self.name(op.name)
        return _row(
            OP_COLLECTIVE, code, 0, stream, name, algorithm=algorithm, first=comm, count=peer, host_us=host_us,
            n=call.nbytes,
        )  # fmt: skip

    def _call(self, call: Call, host_us: float, rows: list[tuple]) -> None:
        index = self.stream_index
        kind = call.kind
        for key, event in call.wait_before:
            rows.append(_row(OP_WAIT, stream=index[key], event=event, host_us=0.0))
        if kind in ("call_launch", "call_memset", "call_memcpy"):
            for i, op in enumerate(call.ops):
                cost = host_us if i == 0 else 0.0
                collective = self._collective(op, cost) if op.kind == "collective" else None
                if collective is not None:
                    rows.append(collective)
                elif op.kind in COPIES:
                    direction = DIRECTION_CODES[COPIES[op.kind]]
                    pageable = int(op.host_memory == "pageable")
                    name = self.name(op.name)
                    recorded = op.duration_us if self.recorded_copies and op.duration_us > 0.0 else 0.0
                    rows.append(
                        _row(OP_COPY, direction, pageable, index[op.stream], name, host_us=cost, duration=recorded, n=op.nbytes)
                    )
                else:
                    k = kernel_of(op, self.min_kernel_us, self.compute_share)
                    rows.append(
                        _row(
                            OP_LAUNCH,
                            KIND_CODES[k.kind],
                            stream=index[op.stream],
                            name=self.name(k.name),
                            host_us=cost,
                            duration=k.duration_us,
                            share=k.compute_share,
                        )
                    )
            if call.synchronous and call.ops:
                rows.append(_row(OP_SYNC_STREAM, stream=index[call.ops[0].stream]))
        elif kind == "call_graph_launch" and call.ops:
            first = len(self.graph_rows)
            kernels = graph_kernels_of(call, self.min_kernel_us, self.compute_share, self.graph_timing, self.profile)
            for k in kernels:
                name = self.name(k.name)
                self.graph_rows.append((name, KIND_CODES[k.kind], (0, 0, 0), k.duration_us, k.compute_share))
            name = self.name(f"graph:{call.group or call.name}")
            stream = index[call.ops[0].stream]
            issue_us, rest_us = graph_launch_split_us(host_us, self.graph_timing)
            latency_us = graph_latency_us(self.graph_timing)  # OP_GRAPH's duration: the launch's latency
            rows.append(
                _row(OP_GRAPH, stream=stream, name=name, host_us=issue_us, first=first, count=len(kernels),
                     duration=latency_us)
            )  # fmt: skip
            if rest_us > 0.0:  # the call goes on on the host while the GPU runs the graph
                rows.append(_row(OP_HOST, gap_name=self.name(GRAPH_LAUNCH_REST), gap_us=rest_us))
        elif kind == "call_record" and call.event is not None and call.stream in index:
            rows.append(_row(OP_RECORD, stream=index[call.stream], event=call.event, host_us=host_us))
        elif kind == "call_wait" and call.stream in index:
            event = NO_EVENT if call.waits_for is None else call.waits_for
            rows.append(_row(OP_WAIT, stream=index[call.stream], event=event, host_us=host_us))
        elif kind == "call_sync_event":
            event = NO_EVENT if call.waits_for is None else call.waits_for
            rows.append(_row(OP_SYNC_EVENT, stream=self.sync_stream, event=event))
        elif kind == "call_sync_stream" and call.stream in index:
            rows.append(_row(OP_SYNC_STREAM, stream=index[call.stream]))
        elif kind in ("call_sync_stream", "call_sync_device"):
            rows.append(_row(OP_SYNC_DEVICE, stream=self.sync_stream))
        for key, event in call.record_after:
            rows.append(_row(OP_RECORD, stream=index[key], event=event, host_us=0.0))


def _row(
    op: int,
    kind: int = 0,
    pageable: int = 0,
    stream: int = -1,
    name: int = -1,
    *,
    algorithm: int = 0,
    event: int = 0,
    first: int = 0,
    count: int = 0,
    host_us: float = math.nan,
    duration: float = 0.0,
    share: float = 1.0,
    n: int = 0,
    gap_name: int = -1,
    gap_us: float = 0.0,
) -> tuple:
    """A step as a tuple in STEP_DTYPE field order (gap_name -1 and gap 0 by default: the call's first step gets
    its gap)."""
    return (op, kind, pageable, algorithm, stream, name, gap_name, event, first, count, gap_us, host_us, duration,
            share, n)  # fmt: skip


_OP_CALLS = ("call_launch", "call_memset", "call_memcpy")
_DIRECTION_OF = {"copy_h2d": DIRECTION_CODES[Direction.H2D], "copy_d2h": DIRECTION_CODES[Direction.D2H]}


def _names_of(builder: _Builder, values: np.ndarray | tuple[np.ndarray, np.ndarray], make=str) -> np.ndarray:
    """The name indices of an object array of strings (each distinct string looked up once), or of its
    ``factorize_shared``; ``make``: the name of a value (registered in the order the values first appear)."""
    return _mapped(values, lambda u: builder.name(make(u)), np.int32)


def _factorized(values: np.ndarray | tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """``factorize_shared(values)`` of an object array; a factorization already made, as it is."""
    return factorize_shared(values) if isinstance(values, np.ndarray) else values


def _mapped(values: np.ndarray | tuple[np.ndarray, np.ndarray], make, dtype) -> np.ndarray:
    """``make(v)`` for each of ``values`` (an object array, or its ``factorize_shared``: factorized once for
    several maps), called once per distinct value, in the order they first appear."""
    codes, uniques = _factorized(values)
    lookup = np.array([make(u) for u in uniques.tolist()], dtype=dtype)
    return lookup[codes] if len(uniques) else np.zeros(len(codes), dtype)


def _member_of(values: np.ndarray | tuple[np.ndarray, np.ndarray]):
    """``is_in(*wanted)``: where an object array's values (or those of its ``factorize_shared``) are one of
    ``wanted`` (each distinct object compared once)."""
    codes, uniques = _factorized(values)

    def is_in(*wanted: object) -> np.ndarray:
        return np.array([u in wanted for u in uniques.tolist()] + [False], dtype=bool)[codes]

    return is_in


def _table_steps(table: CallTable, builder: _Builder, costs: HostCosts) -> np.ndarray | None:
    """The steps of a thread given as columns, column-wise (what :meth:`_Builder.thread_steps` makes of its calls);
    None for a thread with inferred waits or graph launches (then call by call)."""
    kind, count = table.kind, table.op_count
    kind_is = _member_of(kind)
    if table.inferred or bool((kind_is("call_graph_launch") & (count > 0)).any()):
        return None
    ops = table.ops
    index = builder.stream_index
    stream = _mapped(table.stream, lambda key: index.get(key, -1), np.int32)
    if costs.recorded:
        cost = table.duration_us
    elif costs.profile is not None and costs.profile.pytorch_eager_measured:
        per_kind = {k: costs.profile.program_call_cost_us(k) for k in set(kind.tolist())}
        cost = np.array([per_kind[k] for k in kind.tolist()], dtype=np.float64)
    else:
        cost = np.full(len(kind), math.nan)
    op_call = kind_is(*_OP_CALLS)
    synchronous = op_call & kind_is("call_memcpy") & (count > 0)
    synchronous &= _mapped(table.name, lambda n: "Async" not in n, bool)
    record = kind_is("call_record") & (stream >= 0)
    record[record] = np.not_equal(table.correlation[record], None)
    wait = kind_is("call_wait") & (stream >= 0)
    sync = kind_is("call_sync_event", "call_sync_stream", "call_sync_device")
    n_ops = np.where(op_call, count, 0)
    n = n_ops + synchronous + record + wait + sync
    gap = table.host_before_us
    host_only = (n == 0) & (gap > 0.0)
    n = n + host_only
    offset = np.cumsum(n) - n
    steps = new_steps(int(n.sum()))

    # every call's first step carries its CPU time before it
    with_gap = (n > 0) & (gap > 0.0)
    steps["gap_us"][offset[with_gap]] = gap[with_gap]
    gap_names = _names_of(builder, table.group[with_gap], lambda g: "cpu:" + g if g else "cpu")
    steps["gap_name"][offset[with_gap]] = gap_names

    # GPU ops: one step each, the call's cost on its first
    calls_of = np.flatnonzero(n_ops > 0)
    per = n_ops[calls_of]
    total = int(per.sum())
    if total:
        starts = np.cumsum(per) - per
        within = np.arange(total) - np.repeat(starts, per)
        op = np.repeat(table.op_first[calls_of], per) + within
        at = np.repeat(offset[calls_of], per) + within
        op_kind = factorize_shared(ops.kind[op])  # each column of the ops factorized once for its maps
        op_name = factorize_shared(ops.name[op])
        op_kind_is = _member_of(op_kind)
        copy = op_kind_is("copy_h2d", "copy_d2h")
        steps["op"][at] = np.where(copy, OP_COPY, OP_LAUNCH)
        steps["stream"][at] = _mapped(ops.stream[op], index.__getitem__, np.int32)
        steps["name"][at] = _names_of(builder, op_name)
        steps["host_us"][at] = np.where(within == 0, np.repeat(cost[calls_of], per), 0.0)
        duration = ops.duration_us[op]
        duration = np.where(builder.min_kernel_us > duration, builder.min_kernel_us, duration)  # max(d, min)
        is_compute = op_kind_is("kernel") & ~copy & _mapped(op_name, is_gemm, bool)
        kernel_kind = np.where(
            duration < SHORT_KERNEL_US,
            KIND_CODES[KernelKind.LATENCY],
            np.where(is_compute, KIND_CODES[KernelKind.COMPUTE], KIND_CODES[KernelKind.MEMORY]),
        )
        direction = _mapped(op_kind, lambda k: _DIRECTION_OF.get(k, 0), np.uint8)
        steps["kind"][at] = np.where(copy, direction, kernel_kind)
        steps["pageable"][at] = copy & _member_of(ops.host_memory[op])("pageable")
        steps["nbytes"][at] = np.where(copy, ops.nbytes[op], 0)
        recorded_copy = np.clip(ops.duration_us[op], 0.0, None) if builder.recorded_copies else 0.0
        steps["duration_us"][at] = np.where(copy, recorded_copy, duration)
        steps["share"][at] = np.where(copy, 1.0, builder.compute_share)

    # a synchronous memcpy then syncs its first op's stream
    at = offset[synchronous] + count[synchronous]
    steps["op"][at] = OP_SYNC_STREAM
    steps["stream"][at] = [index[key] for key in ops.stream[table.op_first[synchronous]].tolist()]

    at = offset[record]
    steps["op"][at], steps["stream"][at], steps["host_us"][at] = OP_RECORD, stream[record], cost[record]
    steps["event"][at] = table.correlation[record].astype(np.int64)
    at = offset[wait]
    steps["op"][at], steps["stream"][at], steps["host_us"][at] = OP_WAIT, stream[wait], cost[wait]
    steps["event"][at] = [NO_EVENT if w is None else w for w in table.waits_for[wait].tolist()]
    sync_event = kind_is("call_sync_event")
    at = offset[sync_event]
    steps["op"][at] = OP_SYNC_EVENT
    steps["event"][at] = [NO_EVENT if w is None else w for w in table.waits_for[sync_event].tolist()]
    sync_stream = kind_is("call_sync_stream") & (stream >= 0)
    steps["op"][offset[sync_stream]], steps["stream"][offset[sync_stream]] = OP_SYNC_STREAM, stream[sync_stream]
    steps["op"][offset[sync & ~sync_event & ~sync_stream]] = OP_SYNC_DEVICE
    steps["op"][offset[host_only]] = OP_HOST
    return steps


def step_program(
    program: RecordedProgram,
    costs: HostCosts,
    min_kernel_us: float = 0.0,
    compute_share: float = 1.0,
    graph_timing: GraphTiming | None = None,
    recorded_copies: bool = True,
) -> StepProgram:
    """The step program ``program``'s calls become (see the module docstring); ``graph_timing``: the GPU time
    around each graph's kernels (:func:`timed_graph`), None for back to back; ``recorded_copies``: host-link copies
    take their recorded durations (else the backend's link model)."""
    builder = _Builder(program, min_kernel_us, compute_share, graph_timing, costs.profile, recorded_copies)
    threads = []
    tables = [t.table for t in program.threads if t.table is not None]
    # one op table for all threads: the first's
    collectives = any(bool(_member_of(table.ops.kind)("collective").any()) for table in tables[:1])
    for i, thread in enumerate(program.threads):
        # programs of several devices or of collectives (a multi-rank recording's): call by call
        column_wise = thread.table is not None and not builder.several_devices and not collectives
        steps = _table_steps(thread.table, builder, costs) if column_wise else None
        if steps is None:
            steps = builder.thread_steps(thread.calls, costs)
        threads.append(ProgramThread("main" if i == 0 else f"thread{thread.name}", steps))
    graphs = np.zeros(len(builder.graph_rows), GRAPH_KERNEL_DTYPE)
    if builder.graph_rows:
        graphs[:] = builder.graph_rows
    order = sorted(range(len(program.streams)), key=lambda i: program.streams[i])  # StreamKey order
    communicators = tuple(builder.communicators)
    return StepProgram(tuple(threads), tuple(builder.names), len(program.streams), graphs, tuple(order), communicators)
