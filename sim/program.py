"""The simulator's fast path for a program command (``harness.program.RunProgram``).

The reference is the command's expansion (``harness.program.expand``) into runtime
commands, each driven through the simulator like any policy's. Here the steps are run
without it, to the same op rows, bit for bit (``tests/test_program_equivalence.py``;
``SimBackend(fast_programs=False)`` runs the reference):

* :func:`run_on_timeline`: a program of one host thread on the timeline executor
  (:mod:`sim.timeline`): one loop over the steps, with host work and kernel launches
  (nearly every step of a recording) worked out inline, in the executor's own
  arithmetic, and the rarer ops handed to its handlers; no command objects, no
  generator. Where the executor would give up (contention), it gives up the same way;
* :func:`program_commands`: on the event model (:mod:`sim.engine`), the commands of
  the expansion built straight from the steps (checked when the program was made)
  rather than through the runtime's builders.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from harness.gc_pause import collector_paused
from harness.program import (
    ALGORITHMS,
    COLLECTIVE_OPS,
    DIRECTIONS,
    KINDS,
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
    ProgramOutcome,
    ProgramState,
    ProgramThread,
    collective_step_name,
    iter_steps,
    run_threads,
)
from harness.runtime import (
    Collective,
    Copy,
    HostMemory,
    HostWork,
    Launch,
    LaunchGraph,
    OpKind,
    PolicyGen,
    Record,
    RunProgram,
    Runtime,
    SyncEvent,
    SyncStream,
    WaitEvent,
)
from sim.fluid import DONE_TOLERANCE

if TYPE_CHECKING:
    from sim.timeline import TimelineRun

_KERNEL = OpKind.KERNEL.value
_HOST_WORK = OpKind.HOST_WORK.value
_MAIN = "main"


def run_on_timeline(run: TimelineRun, command: RunProgram) -> ProgramOutcome:
    """Run a one-thread program on the timeline executor ``run`` (its clock, ids and rows); see the module doc."""
    from sim.timeline import NeedsEventModel

    program = command.program
    if len(program.threads) > 1:
        raise NeedsEventModel("a program of several host threads needs the event model")
    if program.communicators:
        raise NeedsEventModel("a program of collectives needs the event model (the ranks' rendezvous)")
    state = ProgramState()
    steps = program.threads[0].steps
    with collector_paused():  # the loop makes no cycles: a collection would walk every object for nothing
        for begin in range(0, len(steps), _STEPS_PER_CHUNK):
            _run_chunk(run, command, steps[begin : begin + _STEPS_PER_CHUNK], state)
    return ProgramOutcome(state.unresolved_waits)


_STEPS_PER_CHUNK = 1 << 16  # steps whose columns are Python lists at once


def _run_chunk(run: TimelineRun, command: RunProgram, steps: np.ndarray, state: ProgramState) -> None:
    """One chunk of a program's steps. Host work and launches (nearly every step of a recording) are worked out in
    one loop that keeps only their times, in the executor's own arithmetic; their op ids (one per host work, one
    per kernel, in step order) and the rows' other fields come from the steps' columns after it, as columns. The
    rarer ops go to the executor's handlers, on its clock and ids."""
    from sim.timeline import NeedsEventModel

    natives = [handle.native for handle in command.streams]
    op, gap = steps["op"], steps["gap_us"]
    launch, has_gap = op == OP_LAUNCH, gap > 0.0
    own_ids = has_gap.astype(np.int64) + launch  # ids a step takes besides its handler's
    ids_before = np.cumsum(own_ids) - own_ids  # ... taken by the chunk's earlier steps
    launch_us = run.host.launch_us
    host_us = steps["host_us"]
    if isinstance(launch_us, float):
        cost_of = np.where(np.isnan(host_us), launch_us, host_us).tolist()  # TimelineRun._launch's cost
    else:  # keep the profile's number as it is (an int adds as an int)
        cost_of = [h if h == h else launch_us for h in host_us.tolist()]
    # host work rows' starts and kernel rows' issue and start times, in step order (their ends, the same sums as
    # here, are made from them and the steps' columns after the loop)
    gap_start, kernel_issue, kernel_start = [], [], []
    handled = []  # (step, ids its handler took)
    rows, log, chunk = run.rows, run.log, run.log.CHUNK_ROWS
    outstanding = state.outstanding
    first_id, taken = run.next_id, 0  # ids before the chunk; taken by handlers so far
    now = run.now_us
    columns = (steps[c].tolist() for c in ("op", "stream", "gap_us", "duration_us"))
    # the lists' appends and the set's add, bound once (a million steps call them)
    gap_began, issued, started, launched = gap_start.append, kernel_issue.append, kernel_start.append, outstanding.add
    for at, (op_, stream, gap_us, duration, cost) in enumerate(zip(*columns, cost_of)):
        if gap_us > 0.0:  # TimelineRun._host_work
            gap_began(now)
            now = now + gap_us
        if op_ == OP_LAUNCH:  # TimelineRun._launch: the host pays the call, then TimelineRun._kernel
            launched(stream)
            issued(now)
            if cost > 0.0:
                now = now + cost
            target = natives[stream]
            tail = target.tail_us
            start = now if now > tail else tail
            if target.handoff_us > start:  # TimelineRun._kernel: released by a copy or an event just now
                start = start + (target.handoff_us - start)
            if duration > DONE_TOLERANCE:  # TimelineRun._compute (DONE_TOLERANCE >= 0); share <= 1: solo_end_us
                device = target.device
                if device.compute_stream is not target and start <= device.compute_end_us:
                    raise NeedsEventModel("compute work of two streams overlaps")
                end = start + duration
                if end > device.compute_end_us:
                    device.compute_end_us = end
                    device.compute_stream = target
            else:
                end = start
            target.tail_us = end
            started(start)
        elif op_ != OP_HOST:  # the rarer ops: through the executor's own handlers, on its clock
            before = first_id + taken + int(ids_before[at]) + (gap_us > 0.0)
            run.now_us, run.next_id = now, before
            _rare_step(run, command, steps[at].tolist(), state)
            now = run.now_us
            taken += run.next_id - before
            handled.append((at, run.next_id - before))
            if len(rows) >= chunk:  # as TimelineRun's own loop: rows go to the log a chunk at a time
                log.extend(rows)
                rows.clear()
    run.now_us, run.next_id = now, first_id + taken + int(own_ids.sum())
    handler_ids = np.zeros(len(steps) + 1, np.int64)
    for at, count in handled:
        handler_ids[at + 1] += count
    base = first_id + ids_before + np.cumsum(handler_ids)[:-1]  # the last id taken before each step
    _log_rows(run, command, steps, base, has_gap, launch, gap_start, (kernel_issue, kernel_start))


def _log_rows(
    run: TimelineRun,
    command: RunProgram,
    steps: np.ndarray,
    base: np.ndarray,
    has_gap: np.ndarray,
    launch: np.ndarray,
    gap_start: list,
    kernel_times: tuple[list, list],
) -> None:
    """The chunk's host work and kernel rows, as columns (``OpLog.append_columns``); their ends are the loop's sums
    (``now + gap_us``, ``start + duration`` where the kernel computes), as float64 here."""
    natives = [handle.native for handle in command.streams]
    names = (*command.program.names, "")  # name index -1: ""
    host = {"stream": (0, (_MAIN,)), "host_memory": (0, ("",)), "thread": (0, (_MAIN,))}
    start = _times(gap_start)
    run.log.append_columns(
        base[has_gap] + 1,
        {**host, "kind": (0, (_HOST_WORK,)), "name": (steps["gap_name"][has_gap], names)},
        device=-1,
        bytes=0,
        issue_us=start,
        start_us=start,
        end_us=start + steps["gap_us"][has_gap],
    )
    stream = steps["stream"][launch]
    kernel_start, duration = _times(kernel_times[1]), steps["duration_us"][launch]
    run.log.append_columns(
        base[launch] + has_gap[launch] + 1,
        {**host, "stream": (stream, tuple(n.name for n in natives)), "kind": (0, (_KERNEL,)),
         "name": (steps["name"][launch], names)},
        device=np.array([native.device.index for native in natives], np.int64)[stream],
        bytes=0,
        issue_us=_times(kernel_times[0]),
        start_us=kernel_start,
        end_us=np.where(duration > DONE_TOLERANCE, kernel_start + duration, kernel_start),
    )


def _times(values: list) -> np.ndarray:
    """A column of times as numpy makes it of the same values (``np.array``). Only the first can be an int (the
    clock starts at the int 0, and once a float is added it stays a float): else it is all floats, made faster."""
    if values and type(values[0]) is not float:
        return np.array(values)
    return np.fromiter(values, np.float64, len(values))


def _rare_step(run: TimelineRun, command: RunProgram, step: tuple, state: ProgramState) -> None:
    """A step other than host work or a launch, through the timeline executor's handlers."""
    program = command.program
    handles = command.streams
    names = program.names
    events, outstanding = state.events, state.outstanding
    op, kind, pageable, _, stream, name, _, event, first, count, _, host_us, duration, _, n = step
    handle = handles[stream] if stream >= 0 else None
    host = None if host_us != host_us else host_us
    if op == OP_COPY:
        outstanding.add(stream)
        memory = HostMemory.PAGEABLE if pageable else HostMemory.PINNED
        label = names[name] if name >= 0 else ""
        recorded = duration if duration > 0.0 else None  # a copy's recorded time, where the steps keep it
        run._copy(Copy(handle, n, DIRECTIONS[kind], memory, label, None, host, recorded))
    elif op == OP_GRAPH:
        outstanding.add(stream)
        graph = program.graph(first, count)
        run._launch_graph(LaunchGraph(handle, names[name] if name >= 0 else "", graph, host, duration))
    elif op == OP_RECORD:
        events[event] = run._record(Record(handle, host))
    elif op == OP_WAIT:
        recorded = events.get(event)
        if recorded is None:
            state.unresolved_waits += 1
        else:
            run._wait_event(WaitEvent(handle, recorded, host))
    elif op == OP_SYNC_STREAM:
        run._wake_after(handle.native.tail_us, handle.native.sync_name)
        outstanding.discard(stream)
    elif op == OP_SYNC_EVENT and event in events:
        run._wake_after(events[event].native, "sync_event")
    elif stream < 0:  # OP_SYNC_DEVICE, or OP_SYNC_EVENT on an event not recorded
        natives = [h.native for h in handles]
        for index in program.sync_order:
            if index in outstanding:
                run._wake_after(natives[index].tail_us, natives[index].sync_name)
        outstanding.clear()
    else:  # ... of one device's streams
        device = handle.device
        for index in program.sync_order:
            if index in outstanding and handles[index].device == device:
                run._wake_after(handles[index].native.tail_us, handles[index].native.sync_name)
                outstanding.discard(index)


def program_commands(rt: Runtime, command: RunProgram) -> PolicyGen:
    """``harness.program.expand``'s commands, made from the steps directly (they were checked when made)."""
    return (yield from run_threads(rt, command, _thread_commands))


def _thread_commands(rt: Runtime, command: RunProgram, thread: ProgramThread, state: ProgramState) -> PolicyGen:
    program = command.program
    names, streams, events, outstanding = program.names, command.streams, state.events, state.outstanding
    comms = command.communicators
    for op, kind, pageable, algo, stream, name, gap_name, event, first, count, gap_us, host_us, duration, share, n in (
        iter_steps(thread.steps)
    ):
        if gap_us > 0.0:
            yield HostWork(gap_us, names[gap_name])
        host = None if host_us != host_us else host_us
        label = names[name] if name >= 0 else ""
        if op == OP_LAUNCH:
            outstanding.add(stream)
            yield Launch(streams[stream], label, duration, share, KINDS[kind], host)
        elif op == OP_COPY:
            outstanding.add(stream)
            memory = HostMemory.PAGEABLE if pageable else HostMemory.PINNED
            yield Copy(streams[stream], n, DIRECTIONS[kind], memory, label, None, host, duration if duration > 0.0 else None)
        elif op == OP_GRAPH:
            outstanding.add(stream)
            yield LaunchGraph(streams[stream], label, program.graph(first, count), host, duration)
        elif op == OP_RECORD:
            events[event] = yield Record(streams[stream], host)
        elif op == OP_WAIT:
            recorded = events.get(event)
            if recorded is None:
                state.unresolved_waits += 1
            else:
                yield WaitEvent(streams[stream], recorded, host)
        elif op == OP_SYNC_STREAM:
            yield SyncStream(streams[stream])
            outstanding.discard(stream)
        elif op == OP_SYNC_EVENT and event in events:
            yield SyncEvent(events[event])
        elif op == OP_SYNC_EVENT or op == OP_SYNC_DEVICE:
            if stream < 0:
                for index in program.sync_order:
                    if index in outstanding:
                        yield SyncStream(streams[index])
                outstanding.clear()
            else:  # one device's streams
                device = streams[stream].device
                for index in program.sync_order:
                    if index in outstanding and streams[index].device == device:
                        yield SyncStream(streams[index])
                        outstanding.discard(index)
        elif op == OP_COLLECTIVE:  # checked by Runtime.run_program as the collective builders check theirs
            outstanding.add(stream)
            label = collective_step_name(names, name, kind)
            peer = count if count >= 0 else None
            yield Collective(
                streams[stream], comms[first], COLLECTIVE_OPS[kind], n, label, peer, host, ALGORITHMS[algo] or None
            )
    return len(thread.steps)
