"""What-ifs on a recorded program: pure transforms of a :class:`RecordedProgram` into the changed program.

Each returns a new program that ``as_recorded``'s machinery re-issues, on the
simulator or on the GPU. Calls a transform adds (event records and waits, graph
launches) are ``synthetic``: they cost the host what the hardware profile says,
where recorded calls cost what they took when recorded. A transform that finds
nothing to change raises :class:`NotApplicable`, naming what it looked for.

**Groups** are what the recording marks: ``ProfilerStep#N`` (``prof.step()``)
or, inside or without steps, the innermost ``torch.profiler.record_function``
range around a call (``with record_function("layer3"): ...``). A user marks
the units of their own program that way: one range per layer for
``prefetch_copies``, one per step for ``graph_launch``.

* :func:`prefetch_copies`: the host-to-device copies of group k move to a side
  stream and are issued at the start of group k - depth, double-buffered: the
  copy waits for group k - depth - 1 (whose buffer it reuses) to finish, and
  group k's first GPU op waits for the copy. A group whose ``depth + 1``
  buffers do not fit the budget keeps its copies in line.
* :func:`async_d2h`: each device-to-host copy moves to a side stream after an
  event recorded behind its producer; a host sync right after it that waited
  only for it is dropped; the next GPU op on the producer's stream waits for
  the copy (conservatively: the next op, as the state's next writer is unknown).
* :func:`graph_launch`: within each group, each run of consecutive kernel
  launches (memsets and device-to-device copies too) on one stream becomes one
  CUDA-graph launch: one host call instead of one per kernel, and the CPU work
  between those launches is gone (the graph replays without it).
* :func:`scale_kernels`: kernels whose name matches a pattern take longer or
  shorter by a factor.
* :func:`overlap_collectives`: each collective (a multi-rank recording's NCCL
  kernels, ``harness.multirank_import``) launched on a stream that also runs
  kernels moves to a side stream ``comm`` of its device, after an event recorded
  behind its producer; the stream waits for it only at the start of the next
  group (or before the thread's next sync): the program's assertion, as for
  gradient all-reduces, that nothing in the rest of the group reads its result.
"""

from __future__ import annotations

import math
import re
from dataclasses import replace

from workloads.recorded.program import Call, DeviceOp, RecordedProgram, StreamKey, ThreadProgram

CAPTURABLE = ("call_launch", "call_memset")
SYNCS = ("call_sync_stream", "call_sync_device")


class NotApplicable(ValueError):
    """A what-if that does not apply to the recording."""


def _synthetic(
    kind: str, stream: StreamKey, group: str, *, event: int | None = None, waits_for: int | None = None
) -> Call:
    return Call(kind, kind, 0.0, math.nan, stream, (), group, event=event, waits_for=waits_for, synthetic=True)


def _with_main(
    program: RecordedProgram, calls: list[Call], extra_streams: tuple[StreamKey, ...] = ()
) -> RecordedProgram:
    main = ThreadProgram(program.threads[0].name, tuple(calls))
    streams = tuple(dict.fromkeys(program.streams + extra_streams))
    return replace(program, threads=(main, *program.threads[1:]), streams=streams)


def _group_order(calls: tuple[Call, ...]) -> list[str]:
    return list(dict.fromkeys(c.group for c in calls if c.group))


def _is_copy(call: Call, kind: str) -> bool:
    return call.kind == "call_memcpy" and bool(call.ops) and all(op.kind == kind for op in call.ops)


def _carry(pending_us: float, call: Call) -> Call:
    """``call`` with CPU time of calls removed before it added to its own."""
    return replace(call, host_before_us=call.host_before_us + pending_us) if pending_us else call


# --------------------------------------------------------------------------- prefetch


def prefetch_copies(program: RecordedProgram, depth: int = 1, budget_bytes: int | None = None) -> RecordedProgram:
    calls = program.threads[0].calls
    groups = _group_order(calls)
    copies = {g: [i for i, c in enumerate(calls) if c.group == g and _is_copy(c, "copy_h2d")] for g in groups}
    if len(groups) < 2 or not any(copies.values()):
        raise NotApplicable(
            f"prefetch_copies: found {len(groups)} group(s) and "
            f"{sum(len(v) for v in copies.values())} host-to-device copies inside them; it needs copies in two or "
            "more groups (mark each layer with torch.profiler.record_function)"
        )
    nbytes = {g: sum(op.nbytes for i in copies[g] for op in calls[i].ops) for g in groups}
    moved = {
        k: g
        for k, g in enumerate(groups)
        if k >= depth and copies[g] and (budget_bytes is None or (depth + 1) * nbytes[g] <= budget_bytes)
    }
    if not moved:
        raise NotApplicable(
            f"prefetch_copies: no group's {depth + 1} copy buffers fit the budget of {budget_bytes} bytes"
        )
    stream = calls[copies[groups[max(moved)]][0]].ops[0].stream
    side = (stream[0], "prefetch")
    moved_calls = {i for g in moved.values() for i in copies[g]}
    first_call = {g: min(i for i, c in enumerate(calls) if c.group == g) for g in groups}
    on_stream = {
        g: [
            i
            for i, c in enumerate(calls)
            if c.group == g and i not in moved_calls and any(op.stream == stream for op in c.ops)
        ]
        for g in groups
    }
    ready = {k: -(1000 + k) for k in moved}  # copy of group k done (side stream)
    free = {k - depth - 1: -(2000 + k - depth - 1) for k in moved if k - depth - 1 >= 0}  # group's work done (main)

    out: list[Call] = []
    pending = 0.0
    starts = {first_call[groups[k - depth]]: k for k in moved}
    for i, call in enumerate(calls):
        k_here = groups.index(call.group) if call.group in groups else None
        if i in starts:
            k = starts[i]
            if k - depth - 1 >= 0:
                out.append(_synthetic("call_wait", side, call.group, waits_for=free[k - depth - 1]))
            for j in copies[groups[k]]:
                restreamed = tuple(replace(op, stream=side) for op in calls[j].ops)
                out.append(replace(calls[j], ops=restreamed, stream=side, host_before_us=0.0))
            out.append(_synthetic("call_record", side, call.group, event=ready[k]))
        if i in moved_calls:
            pending += call.host_before_us  # the CPU work before it stays where it was
            continue
        if k_here in moved and on_stream[call.group] and i == on_stream[call.group][0]:
            out.append(_synthetic("call_wait", stream, call.group, waits_for=ready[k_here]))
        out.append(_carry(pending, call))
        pending = 0.0
        if k_here in free and on_stream[call.group] and i == on_stream[call.group][-1]:
            out.append(_synthetic("call_record", stream, call.group, event=free[k_here]))
    return _with_main(program, out, (side,))


# --------------------------------------------------------------------------- async D2H


def async_d2h(program: RecordedProgram) -> RecordedProgram:
    calls = program.threads[0].calls
    targets = [i for i, c in enumerate(calls) if _is_copy(c, "copy_d2h")]
    if not targets:
        raise NotApplicable("async_d2h: found no device-to-host copy (a cudaMemcpy* call whose GPU op is Memcpy DtoH)")
    stream = calls[targets[0]].ops[0].stream
    side = (stream[0], "d2h")
    out: list[Call] = []
    pending = 0.0
    waiting_for: int | None = None  # the last moved copy's event, waited on by the next op on its stream
    drop_sync = False
    for i, call in enumerate(calls):
        if i in targets:
            n = len(out)
            produced, copied = -(3000 + n), -(4000 + n)
            out.append(_synthetic("call_record", call.ops[0].stream, call.group, event=produced))
            out.append(_synthetic("call_wait", side, call.group, waits_for=produced))
            out.append(
                _carry(pending, replace(call, ops=tuple(replace(op, stream=side) for op in call.ops), stream=side))
            )
            out.append(_synthetic("call_record", side, call.group, event=copied))
            pending, waiting_for, drop_sync = 0.0, copied, True
            continue
        if drop_sync and call.kind in SYNCS:
            pending += call.host_before_us  # the host no longer waits for the copy
            drop_sync = False
            continue
        if call.ops:
            drop_sync = False  # other GPU work since the copy: a sync now also waits for that
            if waiting_for is not None and any(op.stream == stream for op in call.ops):
                out.append(_synthetic("call_wait", stream, call.group, waits_for=waiting_for))
                waiting_for = None
        out.append(_carry(pending, call))
        pending = 0.0
    return _with_main(program, out, (side,))


# --------------------------------------------------------------------------- CUDA graphs


def _capturable(call: Call) -> bool:
    return (
        (call.kind in CAPTURABLE or _is_copy(call, "copy_d2d"))
        and bool(call.ops)
        and len({op.stream for op in call.ops}) == 1
    )


def graph_launch(program: RecordedProgram) -> RecordedProgram:
    calls = program.threads[0].calls
    if not _group_order(calls):
        raise NotApplicable(
            "graph_launch: found no groups to capture (mark each step with prof.step() or record_function)"
        )
    out: list[Call] = []
    run: list[Call] = []

    def flush() -> None:
        if len(run) == 1:
            out.append(run[0])
        elif run:
            ops = tuple(op for c in run for op in c.ops)
            first = run[0]
            graph = Call(
                "call_graph_launch",
                "graph",
                first.host_before_us,
                math.nan,
                ops[0].stream,
                ops,
                first.group,
                wait_before=first.wait_before,
                record_after=run[-1].record_after,
                synthetic=True,
            )
            out.append(graph)
        run.clear()

    for call in calls:
        joins = run and _capturable(call) and call.group == run[0].group and call.ops[0].stream == run[0].ops[0].stream
        if joins and not call.wait_before:
            run.append(call)
            continue
        flush()
        if _capturable(call) and call.group:
            run.append(call)
        else:
            out.append(call)
    flush()
    if not any(c.kind == "call_graph_launch" and c.synthetic for c in out):
        raise NotApplicable("graph_launch: found no group with two or more consecutive kernel launches on one stream")
    return _with_main(program, out)


# --------------------------------------------------------------------------- kernel durations


def scale_kernels(program: RecordedProgram, factors: dict[str, float]) -> RecordedProgram:
    patterns = [(re.compile(p), f) for p, f in factors.items()]
    matched = 0

    def scaled(op: DeviceOp) -> DeviceOp:
        nonlocal matched
        if op.kind != "kernel":
            return op
        for pattern, factor in patterns:
            if pattern.search(op.name):
                matched += 1
                return replace(op, duration_us=op.duration_us * factor)
        return op

    threads = tuple(
        ThreadProgram(t.name, tuple(replace(c, ops=tuple(scaled(op) for op in c.ops)) if c.ops else c for c in t.calls))
        for t in program.threads
    )
    if not matched:
        raise NotApplicable(f"scale_kernels: no kernel name matches {', '.join(map(repr, factors))}")
    return replace(program, threads=threads)


# --------------------------------------------------------------------------- collectives on a side stream


def _has_collective(call: Call) -> bool:
    return call.kind == "call_launch" and bool(call.ops) and all(op.kind == "collective" for op in call.ops)


def _overlapped(calls: tuple[Call, ...], base: int) -> tuple[list[Call], set[StreamKey]]:
    """One thread's calls with its collectives on side streams (see :func:`overlap_collectives`)."""
    kernel_streams = {op.stream for c in calls for op in c.ops if op.kind == "kernel"}
    out: list[Call] = []
    sides: set[StreamKey] = set()
    pending: dict[StreamKey, list[tuple[str, int]]] = {}  # stream -> (group, event) of moved collectives
    for call in calls:
        stream = call.ops[0].stream if call.ops else call.stream
        waiting = pending.get(stream, []) if stream is not None else []
        due = [e for g, e in waiting if call.kind in SYNCS or (call.ops and call.group != g)]
        for event in due:
            out.append(_synthetic("call_wait", stream, call.group, waits_for=event))
        if due:
            pending[stream] = [(g, e) for g, e in waiting if e not in due]
        if call.kind == "call_sync_device":  # waits for every stream of the device: the moved ones too
            for key in list(pending):
                for _, event in pending.pop(key):
                    out.append(_synthetic("call_wait", key, call.group, waits_for=event))
        if _has_collective(call) and call.ops[0].stream in kernel_streams:
            source = call.ops[0].stream
            side = (source[0], "comm")
            sides.add(side)
            n = base + len(out)
            produced, reduced = -(5000000 + 2 * n), -(5000001 + 2 * n)
            out.append(_synthetic("call_record", source, call.group, event=produced))
            out.append(_synthetic("call_wait", side, call.group, waits_for=produced))
            out.append(replace(call, ops=tuple(replace(op, stream=side) for op in call.ops), stream=side))
            out.append(_synthetic("call_record", side, call.group, event=reduced))
            pending.setdefault(source, []).append((call.group, reduced))
            continue
        out.append(call)
    return out, sides


def overlap_collectives(program: RecordedProgram) -> RecordedProgram:
    threads, sides = [], set()
    for i, thread in enumerate(program.threads):
        calls, found = _overlapped(thread.calls, i * 10_000_000)
        threads.append(ThreadProgram(thread.name, tuple(calls)))
        sides |= found
    if not sides:
        raise NotApplicable(
            "overlap_collectives: found no collective launched on a stream that also runs kernels (import one trace"
            " per rank with harness trace import, so that NCCL kernels become collectives)"
        )
    streams = tuple(dict.fromkeys(program.streams + tuple(sorted(sides))))
    return replace(program, threads=tuple(threads), streams=streams)
