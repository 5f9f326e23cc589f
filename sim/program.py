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
from sim.fluid import DONE_TOLERANCE, solo_end_us

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
    names, handles = program.names, command.streams
    natives = [handle.native for handle in handles]
    state = ProgramState()
    events, outstanding = state.events, state.outstanding
    rows = run.rows
    append = rows.append
    log, chunk = run.log, run.log.CHUNK_ROWS
    launch_us = run.host.launch_us
    now, next_id = run.now_us, run.next_id
    for op, kind, pageable, _, stream, name, gap_name, event, first, count, gap_us, host_us, duration, share, n in (
        iter_steps(program.threads[0].steps)
    ):
        if gap_us > 0.0:  # TimelineRun._host_work
            next_id += 1
            start, now = now, now + gap_us
            append((next_id, -1, _MAIN, _HOST_WORK, names[gap_name], 0, "", _MAIN, start, start, now))
        if op == OP_LAUNCH:  # TimelineRun._launch: the host pays the call, then TimelineRun._kernel
            outstanding.add(stream)
            cost = host_us if host_us == host_us else launch_us
            issue = now
            if cost > 0.0:
                now = issue + cost
            target = natives[stream]
            next_id += 1
            tail = target.tail_us
            start = now if now > tail else tail
            if duration > DONE_TOLERANCE:  # TimelineRun._compute (DONE_TOLERANCE >= 0)
                device = target.device
                if device.compute_stream is not target and start <= device.compute_end_us:
                    run.now_us, run.next_id = now, next_id - 1
                    raise NeedsEventModel("compute work of two streams overlaps")
                end = solo_end_us(start, duration, share)
                if end > device.compute_end_us:
                    device.compute_end_us = end
                    device.compute_stream = target
            else:
                end = start
            target.tail_us = end
            label = names[name] if name >= 0 else ""
            append((next_id, target.device.index, target.name, _KERNEL, label, 0, "", _MAIN, issue, start, end))
        elif op != OP_HOST:  # the rarer ops: through the executor's own handlers, on its clock
            run.now_us, run.next_id = now, next_id
            handle = handles[stream] if stream >= 0 else None
            host = None if host_us != host_us else host_us
            if op == OP_COPY:
                outstanding.add(stream)
                memory = HostMemory.PAGEABLE if pageable else HostMemory.PINNED
                label = names[name] if name >= 0 else ""
                run._copy(Copy(handle, n, DIRECTIONS[kind], memory, label, None, host, duration if duration > 0.0 else None))
            elif op == OP_GRAPH:
                outstanding.add(stream)
                graph = program.graph(first, count)
                run._launch_graph(LaunchGraph(handle, names[name] if name >= 0 else "", graph, host))
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
                for index in program.sync_order:
                    if index in outstanding:
                        run._wake_after(natives[index].tail_us, natives[index].sync_name)
                outstanding.clear()
            else:  # ... of one device's streams
                device = handle.device
                for index in program.sync_order:
                    if index in outstanding and handles[index].device == device:
                        run._wake_after(natives[index].tail_us, natives[index].sync_name)
                        outstanding.discard(index)
            now, next_id = run.now_us, run.next_id
        if len(rows) >= chunk:  # as TimelineRun's own loop: rows go to the log a chunk at a time
            log.extend(rows)
            rows.clear()
    run.now_us, run.next_id = now, next_id
    return ProgramOutcome(state.unresolved_waits)


def program_commands(rt: Runtime, command: RunProgram) -> PolicyGen:
    """``harness.program.expand``'s commands, made from the steps directly (they were checked when made)."""
    program = command.program
    state = ProgramState()
    others = []
    for thread in program.threads[1:]:
        others.append((yield rt.spawn(_thread_commands, command, thread, state, name=thread.name)))
    yield from _thread_commands(rt, command, program.threads[0], state)
    for other in others:
        yield rt.join(other)
    return ProgramOutcome(state.unresolved_waits)


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
            yield LaunchGraph(streams[stream], label, program.graph(first, count), host)
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
