"""The recorded program re-issued one runtime command at a time: the reference for :mod:`.steps`.

Before the program command (:mod:`harness.program`), ``as_recorded`` issued each call
this way; the policies now yield one step program (:mod:`.steps`), and
``tests/test_program_equivalence.py`` checks that it gives the ops tables of this
generator, to the last bit, for every bundled recording and what-if.
:func:`reissue` is a policy with ``as_recorded``'s signature.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

from harness.multirank_import import CollectiveCall, parse_collective_name, recorded_algorithm
from harness.runtime import Communicator, Event, GraphKernel, HostMemory, PolicyGen, Runtime, Stream
from workloads.recorded.policies import (
    AsRecordedParams,
    RecordedResult,
    _compensated,
    added_call_costs_us,
    communicator_name,
    host_speed_of,
    what_if_program,
)
from workloads.recorded.program import Call, DeviceOp, GraphTiming, RecordedProgram, StreamKey, ThreadProgram
from workloads.recorded.steps import (
    COPIES,
    GRAPH_LAUNCH_REST,
    HostCosts,
    graph_kernels_of,
    graph_latency_us,
    graph_launch_split_us,
    graph_timing_for,
    kernel_of,
)


def reissue(rt: Runtime, program: RecordedProgram, params: AsRecordedParams, what_if: str = "") -> PolicyGen:
    """``as_recorded`` (or the what-if ``what_if``) with one command per call."""
    speed = host_speed_of(rt, program, params)
    if what_if:
        program, removed_us = what_if_program(rt, what_if, program, params)
    else:
        program, removed_us = _compensated(rt, program, params)
    result = yield from _run_program(rt, program, params)
    return replace(result, profiler_overhead=params.profiler_overhead, overhead_removed_us=removed_us, host_speed=speed)


@dataclass
class _Shared:
    """State the program's host threads share: streams, events, which streams have work outstanding."""

    streams: dict[StreamKey, Stream]
    costs: HostCosts
    graph_timing: GraphTiming | None = None
    events: dict[int, Event] = field(default_factory=dict)
    outstanding: set[StreamKey] = field(default_factory=set)
    unresolved_waits: int = 0
    communicators: dict[tuple[int, ...], Communicator] = field(default_factory=dict)  # by devices


def _run_program(rt: Runtime, program: RecordedProgram, params: AsRecordedParams) -> PolicyGen:
    """Re-issue ``program``: its streams, then each host thread's calls (the first thread is this one)."""
    streams = {}
    for device, name in program.streams:
        streams[(device, name)] = yield rt.create_stream(device, f"s{name}" if device == 0 else f"d{device}s{name}")
    added = added_call_costs_us(program, rt.profile, params.profiler_overhead == "keep")
    costs = HostCosts(params.host_costs == "recorded", rt.profile, added)
    timing = graph_timing_for(program, rt.profile) if params.graph_timing == "recorded" else None
    shared = _Shared(streams, costs, timing)
    for devices in _communicators(program):  # made up front, in the order the step program meets them
        shared.communicators[devices] = yield rt.create_communicator(devices, communicator_name(devices))
    others = []
    for thread in program.threads[1:]:
        others.append((yield rt.spawn(_run_thread, program, thread, shared, params, name=f"thread{thread.name}")))
    calls = yield from _run_thread(rt, program, program.threads[0], shared, params)
    for other in others:
        calls += yield rt.join(other)
    return RecordedResult(calls, shared.unresolved_waits)


def _communicators(program: RecordedProgram) -> list[tuple[int, ...]]:
    """The devices of each communicator the program's collectives use, in the order its threads' calls meet them."""
    found: dict[tuple[int, ...], None] = {}
    for thread in program.threads:
        for call in thread.calls:
            for op in call.ops:
                described = parse_collective_name(op.name) if op.kind == "collective" else None
                if described is not None:
                    found.setdefault(described.devices)
    return list(found)


def _own_devices(program: RecordedProgram, thread: ThreadProgram) -> frozenset[int] | None:
    """The one device a thread's calls address in a program of several (what its device-wide syncs wait for: a
    rank's ``cudaDeviceSynchronize``); None: every device."""
    if len({key[0] for key in program.streams}) < 2:
        return None
    calls = thread.calls
    devices = {op.stream[0] for c in calls for op in c.ops} | {c.stream[0] for c in calls if c.stream}
    return frozenset(devices) if len(devices) == 1 else None


def _run_thread(
    rt: Runtime, program: RecordedProgram, thread: ThreadProgram, shared: _Shared, params: AsRecordedParams
) -> PolicyGen:
    own = _own_devices(program, thread)
    for call in thread.calls:
        if call.host_before_us > 0.0:
            yield rt.host_work(call.host_before_us, f"cpu:{call.group}" if call.group else "cpu")
        cost = shared.costs.of(call)  # steps.HostCosts: NaN = the backend's own figure
        yield from _issue(rt, params, call, shared, None if cost != cost else cost, own)
    return len(thread.calls)


def _issue(
    rt: Runtime,
    params: AsRecordedParams,
    call: Call,
    shared: _Shared,
    host_us: float | None,
    own: frozenset[int] | None = None,
) -> PolicyGen:
    """The commands one call becomes; ``host_us`` (the call's recorded cost, or None) goes to its first command;
    ``own``: the devices a device-wide sync waits for (None: all)."""
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
        kernels = graph_kernels_of(call, params.min_kernel_us, params.compute_share, shared.graph_timing, rt.profile)
        key = call.ops[0].stream
        issue_us, rest_us = (None, 0.0) if host_us is None else graph_launch_split_us(host_us, shared.graph_timing)
        latency_us = graph_latency_us(shared.graph_timing)
        yield rt.launch_graph(shared.streams[key], f"graph:{call.group or call.name}", kernels, issue_us, latency_us)
        shared.outstanding.add(key)
        if rest_us > 0.0:
            yield rt.host_work(rest_us, GRAPH_LAUNCH_REST)
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
        # Device-wide, or a stream/event the recording does not name: wait for every stream with work (of the
        # thread's own device, in a program of several).
        for key in sorted(shared.outstanding):
            if own is None or key[0] in own:
                yield rt.sync_stream(shared.streams[key])
                shared.outstanding.discard(key)
    for key, event in call.record_after:
        shared.events[event] = yield rt.record(shared.streams[key], host_us=0.0)


def _device_op(
    rt: Runtime, params: AsRecordedParams, op: DeviceOp, shared: _Shared, host_us: float | None
) -> PolicyGen:
    stream = shared.streams[op.stream]
    shared.outstanding.add(op.stream)
    described = parse_collective_name(op.name) if op.kind == "collective" else None
    if described is not None:
        yield _collective(rt, shared, stream, op.name, described, host_us)
    elif op.kind in COPIES:
        recorded = op.duration_us if params.copy_timing == "recorded" and op.duration_us > 0.0 else None
        memory = HostMemory(op.host_memory)
        yield rt.copy(stream, op.nbytes, COPIES[op.kind], memory, op.name, host_us=host_us, duration_us=recorded)
    else:  # kernel, memset, device-to-device copy: GPU work of the recorded duration
        k = _graph_kernel(params, op)
        yield rt.launch(stream, k.name, k.duration_us, k.compute_share, k.kind, host_us=host_us)


def _collective(rt: Runtime, shared: _Shared, stream: Stream, name: str, call: CollectiveCall, host_us: float | None):
    """A recorded NCCL kernel as the runtime's collective (the simulator makes the ranks meet and times it)."""
    comm = shared.communicators[call.devices]
    if call.op in ("send", "recv"):
        return getattr(rt, call.op)(stream, comm, call.nbytes, call.peer, name, host_us)
    algorithm = recorded_algorithm(call.kernel)
    if call.op == "broadcast":
        return rt.broadcast(stream, comm, call.nbytes, call.peer, name, host_us, algorithm)
    return getattr(rt, call.op)(stream, comm, call.nbytes, name, host_us, algorithm)


def _graph_kernel(params: AsRecordedParams, op: DeviceOp) -> GraphKernel:
    return kernel_of(op, params.min_kernel_us, params.compute_share)


