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
* a launch, memset or memcpy: one step per GPU op (host-link copies as copies,
  everything else a kernel of its recorded duration: :func:`kernel_of`), the
  call's host cost on the first; a synchronous memcpy then syncs its stream;
* a graph launch: one graph step of its kernels;
* a record, wait, sync: the step of that name; a sync of a stream or event the
  recording does not name, or a device sync, is ``OP_SYNC_DEVICE``;
* inferred records after its ops (``record_after``): records at no host cost.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from harness.profile import Profile
from harness.program import (
    DIRECTION_CODES,
    GRAPH_KERNEL_DTYPE,
    KIND_CODES,
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
from harness.runtime import Direction, GraphKernel, KernelKind
from workloads.recorded.program import Call, DeviceOp, RecordedProgram, StreamKey, is_gemm

COPIES = {"copy_h2d": Direction.H2D, "copy_d2h": Direction.D2H}
NO_EVENT = -(2**63)  # a symbolic event no step records: a wait on it is unresolved, a sync on it syncs the device
SHORT_KERNEL_US = 10.0
"""Kernels shorter than this stand in as a timer on one warp in the replay (KernelKind.LATENCY): a
memory- or compute-bound stand-in that short is mostly its own launch, and inside a CUDA graph it
does not keep the duration it was tuned to. The simulator does not look at the kind."""


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

    def of(self, call: Call) -> float:
        if self.recorded and not call.synthetic:
            return call.duration_us
        profile = self.profile
        if profile is not None and profile.pytorch_eager_measured:
            return profile.program_call_cost_us(call.kind)
        return math.nan


class _Builder:
    """Steps of one program, appended as rows (tuples in STEP_DTYPE field order)."""

    def __init__(self, program: RecordedProgram, min_kernel_us: float, compute_share: float) -> None:
        self.stream_index: dict[StreamKey, int] = {key: i for i, key in enumerate(program.streams)}
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

    def _call(self, call: Call, host_us: float, rows: list[tuple]) -> None:
        index = self.stream_index
        kind = call.kind
        for key, event in call.wait_before:
            rows.append(_row(OP_WAIT, stream=index[key], event=event, host_us=0.0))
        if kind in ("call_launch", "call_memset", "call_memcpy"):
            for i, op in enumerate(call.ops):
                cost = host_us if i == 0 else 0.0
                if op.kind in COPIES:
                    direction = DIRECTION_CODES[COPIES[op.kind]]
                    pageable = int(op.host_memory == "pageable")
                    name = self.name(op.name)
                    rows.append(_row(OP_COPY, direction, pageable, index[op.stream], name, host_us=cost, n=op.nbytes))
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
            for op in call.ops:
                k = kernel_of(op, self.min_kernel_us, self.compute_share)
                name = self.name(k.name)
                self.graph_rows.append((name, KIND_CODES[k.kind], (0, 0, 0), k.duration_us, k.compute_share))
            name = self.name(f"graph:{call.group or call.name}")
            stream = index[call.ops[0].stream]
            rows.append(_row(OP_GRAPH, stream=stream, name=name, host_us=host_us, first=first, count=len(call.ops)))
        elif kind == "call_record" and call.event is not None and call.stream in index:
            rows.append(_row(OP_RECORD, stream=index[call.stream], event=call.event, host_us=host_us))
        elif kind == "call_wait" and call.stream in index:
            event = NO_EVENT if call.waits_for is None else call.waits_for
            rows.append(_row(OP_WAIT, stream=index[call.stream], event=event, host_us=host_us))
        elif kind == "call_sync_event":
            rows.append(_row(OP_SYNC_EVENT, event=NO_EVENT if call.waits_for is None else call.waits_for))
        elif kind == "call_sync_stream" and call.stream in index:
            rows.append(_row(OP_SYNC_STREAM, stream=index[call.stream]))
        elif kind in ("call_sync_stream", "call_sync_device"):
            rows.append(_row(OP_SYNC_DEVICE))
        for key, event in call.record_after:
            rows.append(_row(OP_RECORD, stream=index[key], event=event, host_us=0.0))


def _row(
    op: int,
    kind: int = 0,
    pageable: int = 0,
    stream: int = -1,
    name: int = -1,
    *,
    event: int = 0,
    first: int = 0,
    count: int = 0,
    host_us: float = math.nan,
    duration: float = 0.0,
    share: float = 1.0,
    n: int = 0,
) -> tuple:
    """A step as a tuple in STEP_DTYPE field order (gap_name -1 and gap 0: the call's first step gets its gap)."""
    return (op, kind, pageable, 0, stream, name, -1, event, first, count, 0.0, host_us, duration, share, n)


def step_program(
    program: RecordedProgram, costs: HostCosts, min_kernel_us: float = 0.0, compute_share: float = 1.0
) -> StepProgram:
    """The step program ``program``'s calls become (see the module docstring)."""
    builder = _Builder(program, min_kernel_us, compute_share)
    threads = []
    for i, thread in enumerate(program.threads):
        steps = builder.thread_steps(thread.calls, costs)
        threads.append(ProgramThread("main" if i == 0 else f"thread{thread.name}", steps))
    graphs = np.zeros(len(builder.graph_rows), GRAPH_KERNEL_DTYPE)
    if builder.graph_rows:
        graphs[:] = builder.graph_rows
    order = sorted(range(len(program.streams)), key=lambda i: program.streams[i])  # StreamKey order
    return StepProgram(tuple(threads), tuple(builder.names), len(program.streams), graphs, tuple(order))
