"""What-ifs on a recorded program: pure transforms of a :class:`RecordedProgram` into the changed program.

Each returns a new program (so they compose) that ``as_recorded``'s machinery
re-issues, on the simulator or on the GPU, with what it changed appended to the
program's ``what_ifs`` (a :class:`WhatIfSummary`: ``harness sim`` prints it and
saves it as ``what_ifs.parquet``). Calls a transform adds (event records and waits,
graph launches) are ``synthetic``: they cost what an eager PyTorch program pays
for such a call (:mod:`.host_costs`), where recorded calls cost what they took when
recorded. A transform that finds nothing to change raises :class:`NotApplicable`,
naming what it looked for. Each rewrites one host thread (:func:`target_thread`): the
one with the most calls it changes, so that a layer loop whose helper thread happened
to issue first is still the one prefetched.

**Groups** (the units ``prefetch_copies`` prefetches and ``graph_launch`` captures,
and the steps ``async_d2h`` hands its copies over at) come from ``groups =``:

* ``"marks"``: what the recording marks: ``ProfilerStep#N`` (``prof.step()``) or,
  inside or without steps, the innermost ``torch.profiler.record_function`` range;
* ``"copy_runs"``: each run of host-to-device copies, and the GPU work up to the
  next run, is one group (a layer loop that copies each layer's weights in);
* ``"host_syncs"``: each host sync (``cudaStreamSynchronize``, ``cudaDeviceSynchronize``)
  ends a group (a step loop that waits for each step);
* ``"repeats"``: the host syncs' steps, and a step whose GPU work is one sequence of
  launches and copies repeated (the same kinds and kernel names, two or more times
  over, nothing left over) split at each repeat: a loop that never waits for its
  steps (a decode loop without a per-step sync recorded with CUDA activities only);
  where nothing repeats it is ``host_syncs`` (and says so);
* ``"auto"`` (the default): the marks when the recording has any (recordings with
  CUDA activities only have none), else ``copy_runs`` for ``prefetch_copies``,
  ``repeats`` for ``graph_launch`` and ``host_syncs`` for ``async_d2h``.

The transforms:

* :func:`prefetch_copies`: each group's host-to-device copies move to a side
  stream, ``depth`` groups ahead, as a prefetcher issues them: the copies of the
  first ``depth`` groups up front (before the first group's first call), then group
  k + depth's copies at the start of group k, before its compute is issued (as
  hand-written prefetchers do: copy the next layer, then compute this one; for
  pinned memory the order changes nothing on the GPU, but a pageable copy holds the
  host, so the compute it precedes waits for it; the CPU work the group did before its own moved copies, entering
  the layer, stays before the prefetch, where a pageable copy's wait for the GPU hides it). A group's copies wait
  for the group whose buffer they reuse
  (``depth + 1`` buffers: group k - depth - 1's compute) to finish; the group's
  first op on the compute stream waits for its copies. The record behind a group's copies is
  named :data:`PREFETCH_HANDOFF`: besides its calls, each group handed to the copy stream costs
  the host the Python a hand-written prefetcher runs for it (``prefetch_handoff`` in :mod:`.host_costs`).
  ``budget_bytes`` caps the
  buffers: group k is prefetched as far ahead as the copies in flight fit (groups
  k - d .. k, d <= depth, together <= budget_bytes); where not even two groups fit
  (d = 0), it keeps its copies in line.
* :func:`async_d2h`: each run of consecutive device-to-host copies (no other GPU
  work or call between them) moves to a side stream as one batch behind one event:
  an event recorded on the producer's stream, one wait on the side stream, the
  copies, one event recorded after them. A host sync right after the batch is
  dropped (the host no longer waits for the copies); the next op on the producer's
  stream in a later group, or a later sync of that stream, waits for the batch's event
  (a device-wide sync waits for the side stream anyway). The batch's first record is
  named :data:`HANDOFF`: besides the four calls, each hand-off costs the host what an
  eager program's Python for it does (``stream_handoff`` in :mod:`.host_costs`).
* :func:`graph_launch`: within each group, each run of consecutive kernel
  launches (memsets and device-to-device copies too) on one stream becomes one
  CUDA-graph launch: one host call instead of one per kernel, and the CPU work
  between those launches is gone (the graph replays without it). So is the host
  time of the aten ops that began before the run's first launch (in its CPU gap:
  the first captured op's own dispatch and any op before it in the captured code),
  charged as the gap's aten-op count times the program's host µs per aten op
  (:func:`.host_costs.host_us_per_aten_op`, of the program as compensated when the
  prediction takes the profiler out); the rest of that gap (the loop's Python, a
  ``record_function`` range) stays before the graph launch. The program's
  assertion: the aten ops in that gap are the captured code's (a recording
  without aten-op counts, CUDA-only, keeps the gap whole). The first launch of
  each distinct graph (its kernels' names and streams) is named
  :data:`GRAPH_FIRST_LAUNCH`: under the profiler it costs more (``graph_first_launch``
  in :mod:`.host_costs`).
* :func:`scale_kernels`: kernels whose name matches a pattern take longer or
  shorter by a factor (``harness trace kernels T.parquet`` lists the names).
* :func:`overlap_collectives`: a multi-rank recording's collectives (``harness trace
  import`` of one trace per rank) overlap the compute after them, in every rank's thread:
  a collective launched on a stream that also runs kernels moves to a side stream
  ``comm`` of its device, behind an event recorded on that stream (it still follows its
  producer) and followed by one recorded after it; that stream waits for the collective
  only at its first op in a later group, or before the thread syncs it (a device-wide
  sync waits for the side stream anyway). A collective already on a stream of its own
  (torch's process group runs NCCL on one) stays there, and the other streams' waits for
  it within its group move to the same place. The program's assertion, as for gradient
  all-reduces: nothing in the rest of the group reads the collective's result.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
from collections.abc import Iterator
from dataclasses import dataclass, replace

from workloads.recorded.compensation import simple_call_median
from workloads.recorded.host_costs import host_us_per_aten_op
from workloads.recorded.program import Call, DeviceOp, RecordedProgram, StreamKey, ThreadProgram

CAPTURABLE = ("call_launch", "call_memset")
SYNCS = ("call_sync_stream", "call_sync_device")
GROUPINGS = ("auto", "marks", "copy_runs", "host_syncs", "repeats")
GROUPING_TEXT = {
    "marks": "the recording's marks (ProfilerStep / record_function)",
    "copy_runs": "inferred: each run of H2D copies and the GPU work up to the next",
    "host_syncs": "inferred: steps ended by host syncs",
    "repeats": "inferred: steps ended by host syncs, split where a step repeats one sequence of GPU work",
}


HANDOFF = "side-stream hand-off"  # async_d2h: the record that opens a batch (it also costs the hand-off's Python)
PREFETCH_HANDOFF = "prefetch hand-off"  # prefetch_copies: the record behind a group's copies (and the prefetcher's Python)
GRAPH = "graph"  # graph_launch: an added graph launch
GRAPH_FIRST_LAUNCH = "graph (first launch)"  # graph_launch: a distinct graph's first launch (dearer under the profiler)


class NotApplicable(ValueError):
    """A what-if that does not apply to the recording."""


@dataclass(frozen=True, slots=True)
class WhatIfSummary:
    """What one what-if changed in a program (counts of calls and ops of its main thread)."""

    what_if: str
    groups: int = 0  # groups the what-if worked with (0: it does not use groups)
    groups_from: str = ""  # how they were found: a GROUPINGS value other than "auto" ("" when not used)
    copies_moved: int = 0  # copy calls moved to a side stream
    batches: int = 0  # async_d2h: runs of copies moved together behind one event
    launches_captured: int = 0  # graph_launch: launch calls now inside a graph
    graph_launches: int = 0  # graph launches added
    distinct_graphs: int = 0  # graph_launch: graphs of distinct kernels (each pays a first launch)
    aten_ops_removed: int = 0  # graph_launch: aten ops before the captured launches, their host time removed
    host_removed_us: float = 0.0  # graph_launch: that host time, µs
    events_added: int = 0  # event records added
    waits_added: int = 0  # stream waits on an event added
    syncs_dropped: int = 0  # host syncs removed
    kernels_scaled: int = 0  # kernels whose duration changed
    depth: int = 0  # prefetch_copies: the depth asked for
    in_line: int = 0  # prefetch_copies: groups whose copies stay in line (the budget)
    collectives_moved: int = 0  # overlap_collectives: collectives moved to a side stream
    waits_deferred: int = 0  # overlap_collectives: waits for a collective moved to the next group
    threads: int = 0  # what-ifs of every rank's thread: the threads rewritten

    def text(self) -> str:
        """One line a user can check against their program."""
        parts = []
        if self.groups_from:
            parts.append(f"{self.groups} group(s) from {GROUPING_TEXT.get(self.groups_from, self.groups_from)}")
        if self.what_if == "prefetch_copies":
            parts.append(f"depth {self.depth}: {self.copies_moved} H2D copies moved to a side stream")
            if self.in_line:
                parts.append(f"{self.in_line} group(s) kept their copies in line (budget)")
        if self.what_if == "async_d2h":
            parts.append(f"{self.copies_moved} D2H copies moved to a side stream in {self.batches} batch(es)")
        if self.what_if == "graph_launch":
            parts.append(
                f"{self.launches_captured} launches captured into {self.graph_launches} graph launch(es) of"
                f" {self.distinct_graphs} distinct graph(s)"
            )
            if self.aten_ops_removed:
                parts.append(
                    f"host time of {self.aten_ops_removed} aten op(s) before the captured launches removed"
                    f" ({self.host_removed_us:,.0f} µs)"
                )
        if self.what_if == "overlap_collectives":
            parts.append(
                f"{self.collectives_moved} collective(s) moved to a side stream, {self.waits_deferred} wait(s) for"
                f" collectives deferred to the next group, in {self.threads} thread(s)"
            )
        if self.kernels_scaled:
            parts.append(f"{self.kernels_scaled} kernels rescaled")
        if self.events_added or self.waits_added:
            parts.append(f"{self.events_added} event record(s) and {self.waits_added} wait(s) added")
        if self.syncs_dropped:
            parts.append(f"{self.syncs_dropped} host sync(s) dropped")
        return f"{self.what_if}: " + "; ".join(parts)


def _synthetic(
    kind: str,
    stream: StreamKey,
    group: str,
    *,
    event: int | None = None,
    waits_for: int | None = None,
    name: str = "",
) -> Call:
    return Call(kind, name or kind, 0.0, math.nan, stream, (), group, event=event, waits_for=waits_for, synthetic=True)


def _event_ids(program: RecordedProgram) -> Iterator[int]:
    """Fresh event ids for added events: below every id the program uses (recorded ids are >= 0, inferred < 0)."""
    used = [0]
    for thread in program.threads:
        for c in thread.calls:
            used += [e for e in (c.event, c.waits_for) if e is not None]
            used += [e for _, e in c.wait_before + c.record_after]
    return itertools.count(min(used) - 1, -1)


def _changed(program: RecordedProgram, summary: WhatIfSummary, **fields) -> RecordedProgram:
    """``program`` with ``fields`` replaced and ``summary`` appended to its what-ifs; the recording's simple calls
    kept from before the first what-if (a graph launch replaces them: the host speed must stay the recording's)."""
    simple = program.recorded_simple_calls
    if simple is None and not program.what_ifs:
        simple = simple_call_median(program)
    return replace(program, **fields, what_ifs=(*program.what_ifs, summary), recorded_simple_calls=simple)


def target_thread(program: RecordedProgram, changes) -> int:
    """The host thread a what-if rewrites: the one with the most calls it changes (``changes(call)``; the main
    thread, the earliest caller, on a tie): the layer loop of a program whose helper thread issues first."""
    counts = [sum(1 for c in t.calls if changes(c)) for t in program.threads]
    return max(range(len(counts)), key=lambda i: (counts[i], -i))


def _with_thread(
    program: RecordedProgram,
    index: int,
    calls: list[Call],
    summary: WhatIfSummary,
    extra_streams: tuple[StreamKey, ...] = (),
) -> RecordedProgram:
    main = ThreadProgram(program.threads[index].name, tuple(calls))
    streams = tuple(dict.fromkeys(program.streams + extra_streams))

    def synthetic(kind: str, of: tuple[Call, ...] | list[Call]) -> int:
        return sum(1 for c in of if c.synthetic and c.kind == kind)

    before = program.threads[index].calls  # calls an earlier what-if added are not this one's
    summary = replace(
        summary,
        events_added=synthetic("call_record", calls) - synthetic("call_record", before),
        waits_added=synthetic("call_wait", calls) - synthetic("call_wait", before),
    )
    threads = (*program.threads[:index], main, *program.threads[index + 1 :])
    return _changed(program, summary, threads=threads, streams=streams)


def _group_order(calls: tuple[Call, ...]) -> list[str]:
    return list(dict.fromkeys(c.group for c in calls if c.group))


def _is_copy(call: Call, kind: str) -> bool:
    return call.kind == "call_memcpy" and bool(call.ops) and all(op.kind == kind for op in call.ops)


def _carry(pending_us: float, call: Call) -> Call:
    """``call`` with CPU time of calls removed before it added to its own."""
    return replace(call, host_before_us=call.host_before_us + pending_us) if pending_us else call


# --------------------------------------------------------------------------- groups


def grouped(program: RecordedProgram, how: str, inferred: str, index: int = 0) -> tuple[RecordedProgram, str]:
    """``program`` with thread ``index``'s calls grouped ``how`` (a GROUPINGS value; ``"auto"``: the marks when
    there are any, else ``inferred``), and the grouping used. Inferred groups are named ``group<k>`` / ``step<k>``."""
    if how not in GROUPINGS:
        raise NotApplicable(f"groups = {how!r}: expected one of {', '.join(map(repr, GROUPINGS))}")
    calls = program.threads[index].calls
    if how == "auto":
        how = "marks" if any(c.group for c in calls) else inferred
    if how == "marks":
        return program, how
    if how == "copy_runs":
        labels = _copy_run_labels(calls)
    else:
        labels = _sync_labels(calls)
        if how == "repeats":
            split = _repeat_labels(calls, labels)
            how = "repeats" if split != labels else "host_syncs"  # say which inference found the groups
            labels = split
    relabelled = tuple(replace(c, group=g) if c.group != g else c for c, g in zip(calls, labels, strict=True))
    thread = ThreadProgram(program.threads[index].name, relabelled)
    return replace(program, threads=(*program.threads[:index], thread, *program.threads[index + 1 :])), how


def _copy_run_labels(calls: tuple[Call, ...]) -> list[str]:
    """Each run of H2D copies opens a group that lasts to the next run; calls before the first run: none."""
    labels, k, in_run = [], -1, False
    for call in calls:
        copy = _is_copy(call, "copy_h2d")
        if copy and not in_run:
            k += 1
        if call.ops:
            in_run = copy
        labels.append(f"group{k}" if k >= 0 else "")
    return labels


def _sync_labels(calls: tuple[Call, ...]) -> list[str]:
    """Each host sync ends a step (the sync belongs to the step it ends)."""
    labels, k = [], 0
    for call in calls:
        labels.append(f"step{k}")
        if call.kind in SYNCS:
            k += 1
    return labels


def _gpu_signature(call: Call) -> tuple | None:
    """What a call issues on the GPU, for finding a repeated sequence (None: it issues nothing)."""
    return (call.kind, *(op.name for op in call.ops)) if call.ops else None


def _period(signatures: list[tuple]) -> int:
    """The smallest period p >= 2 that repeats ``signatures`` exactly, two or more times, nothing left over (0: none;
    a sequence of one repeated launch has no step to find)."""
    n = len(signatures)
    for p in range(1, n // 2 + 1):
        if n % p == 0 and signatures[p:] == signatures[:-p]:
            return p if p >= 2 else 0
    return 0


def _repeat_labels(calls: tuple[Call, ...], labels: list[str]) -> list[str]:
    """``labels`` (host-sync steps) with each step whose GPU work repeats one sequence split at every repeat: a
    repeat begins at its first GPU call (the CPU work before that call comes with it); calls without GPU work
    belong to the repeat before them (a step's sync to the step it ends). Named ``step<k>.<r>``."""
    out = list(labels)
    steps: dict[str, list[int]] = {}
    for i, step in enumerate(labels):
        steps.setdefault(step, []).append(i)
    for step, members in steps.items():
        gpu = [i for i in members if calls[i].ops]
        period = _period([_gpu_signature(calls[i]) for i in gpu])
        if not period:
            continue
        starts = {gpu[k]: k // period for k in range(0, len(gpu), period)}
        r = 0
        for i in members:
            r = starts.get(i, r)
            out[i] = f"{step}.{r}"
    return out


# --------------------------------------------------------------------------- prefetch


def prefetch_copies(
    program: RecordedProgram, depth: int = 1, budget_bytes: int | None = None, groups: str = "auto"
) -> RecordedProgram:
    index = target_thread(program, lambda c: _is_copy(c, "copy_h2d"))
    program, grouping = grouped(program, groups, "copy_runs", index)
    calls = program.threads[index].calls
    order = _group_order(calls)
    members = {g: [i for i, c in enumerate(calls) if c.group == g] for g in order}
    copies = {g: [i for i in members[g] if _is_copy(calls[i], "copy_h2d")] for g in order}
    order = [g for g in order if copies[g]] if sum(map(bool, copies.values())) >= 2 else order
    if len(order) < 2 or not any(copies[g] for g in order):
        hint = "mark each layer with torch.profiler.record_function" if grouping == "marks" else 'groups = "marks"'
        raise NotApplicable(
            f"prefetch_copies: found {len(order)} group(s) ({GROUPING_TEXT[grouping]}) and "
            f"{sum(len(copies[g]) for g in order)} host-to-device copies inside them; it needs copies in two or "
            f'more groups (try groups = "copy_runs" or {hint})'
        )
    nbytes = [sum(op.nbytes for i in copies[g] for op in calls[i].ops) for g in order]
    stream = calls[copies[order[0]][0]].ops[0].stream  # the compute stream the copies were in line on
    side = (stream[0], "prefetch")

    # How far ahead each group is prefetched (the copies in flight, groups k - lead .. k, fit the budget),
    # and after which group's compute its copies are issued (-1: up front), never earlier than the group before's.
    anchor: dict[int, int] = {}
    last_anchor = -1
    for k in range(len(order)):
        lead = depth
        while budget_bytes is not None and lead > 0 and sum(nbytes[max(0, k - lead) : k + 1]) > budget_bytes:
            lead -= 1
        if lead == 0 or not copies[order[k]]:
            continue
        anchor[k] = last_anchor = max(last_anchor, k - lead)
    if not anchor:
        raise NotApplicable(
            f"prefetch_copies: no group's copies fit the budget of {budget_bytes} bytes with another group's "
            f"(the smallest two adjacent groups need {min(a + b for a, b in itertools.pairwise(nbytes))} bytes)"
        )
    moved = {i for k in anchor for i in copies[order[k]]}
    compute = {
        k: [i for i in members[g] if i not in moved and any(op.stream == stream for op in calls[i].ops)]
        for k, g in enumerate(order)
    }
    ids = _event_ids(program)
    ready = {k: next(ids) for k in anchor}  # group k's copies done (side stream)
    frees = {a - 1 for a in anchor.values() if a - 1 >= 0}
    free = {j: next(ids) for j in sorted(frees) if compute[j]}  # group j's compute done (compute stream)
    issue_before: dict[int, list[int]] = {}  # call index -> the groups whose copies are issued right before it
    upfront = []
    for k, a in anchor.items():
        if a < 0:
            upfront.append(k)
        else:  # at the start of group a: its first call that stays (a prefetcher issues the copies, then the compute)
            at = next((i for i in members[order[a]] if i not in moved), None)
            if at is None:  # every call of group a moved: before the next call that stays
                at = next((i for i in range(members[order[a]][-1] + 1, len(calls)) if i not in moved), len(calls))
            issue_before.setdefault(at, []).append(k)
    first_compute = {compute[k][0]: k for k in anchor if compute[k]}
    last_compute = {compute[j][-1]: j for j in free}
    first_call = members[order[0]][0]

    out: list[Call] = []
    pending = 0.0

    def issue(k: int) -> None:
        nonlocal pending
        group = order[k]
        a = anchor[k]
        inside = order[a] if a >= 0 else group  # issued within group a, as a prefetcher's calls are recorded
        start = len(out)
        if a - 1 in free:
            out.append(_synthetic("call_wait", side, inside, waits_for=free[a - 1]))
        for j in copies[group]:
            restreamed = tuple(replace(op, stream=side) for op in calls[j].ops)
            out.append(replace(calls[j], ops=restreamed, stream=side, host_before_us=0.0, group=inside))
        out.append(_synthetic("call_record", side, inside, event=ready[k], name=PREFETCH_HANDOFF))
        # The CPU work the group did before the calls that moved out of it (entering the layer, the copy's own
        # dispatch) runs before the prefetch it now starts with, as in a hand-written prefetcher: where the copies
        # hold the host (pageable), that work overlaps the GPU work they wait for instead of following them.
        out[start] = _carry(pending, out[start])
        pending = 0.0

    for i, call in enumerate(calls):
        if i == first_call:
            for k in upfront:
                issue(k)
        for k in issue_before.get(i, ()):
            issue(k)
        if i in moved:
            pending += call.host_before_us  # the CPU work before it stays where it was
            continue
        if i in first_compute:
            out.append(_synthetic("call_wait", stream, call.group, waits_for=ready[first_compute[i]]))
        out.append(_carry(pending, call))
        pending = 0.0
        if i in last_compute:
            out.append(_synthetic("call_record", stream, call.group, event=free[last_compute[i]]))
    for k in issue_before.get(len(calls), ()):
        issue(k)
    summary = WhatIfSummary(
        "prefetch_copies",
        groups=len(order),
        groups_from=grouping,
        copies_moved=len(moved),
        depth=depth,
        in_line=sum(1 for k in range(len(order)) if copies[order[k]] and k not in anchor),
    )
    return _with_thread(program, index, out, summary, (side,))


# --------------------------------------------------------------------------- async D2H


def async_d2h(program: RecordedProgram, groups: str = "auto") -> RecordedProgram:
    index = target_thread(program, lambda c: _is_copy(c, "copy_d2h"))
    program, grouping = grouped(program, groups, "host_syncs", index)
    calls = program.threads[index].calls
    if not any(_is_copy(c, "copy_d2h") for c in calls):
        raise NotApplicable("async_d2h: found no device-to-host copy (a cudaMemcpy* call whose GPU op is Memcpy DtoH)")
    ids = _event_ids(program)
    out: list[Call] = []
    pending = 0.0
    batch: tuple[StreamKey, StreamKey, str] | None = None  # the open batch: producer stream, side stream, group
    handed: dict[StreamKey, tuple[int, str]] = {}  # producer stream -> (last batch's event, its group): not waited yet
    drop_sync = False
    moved = batches = dropped = 0

    def close() -> None:
        nonlocal batch, drop_sync
        if batch is not None:
            producer, side, group = batch
            copied = next(ids)
            out.append(_synthetic("call_record", side, group, event=copied))
            handed[producer] = (copied, group)
            batch, drop_sync = None, True

    for call in calls:
        if _is_copy(call, "copy_d2h"):
            producer = call.ops[0].stream
            if batch is None or batch[0] != producer:
                close()
                side = (producer[0], "d2h")
                produced = next(ids)
                out.append(_synthetic("call_record", producer, call.group, event=produced, name=HANDOFF))
                out.append(_synthetic("call_wait", side, call.group, waits_for=produced))
                batch = (producer, side, call.group)
                batches += 1
            restreamed = tuple(replace(op, stream=batch[1]) for op in call.ops)
            out.append(_carry(pending, replace(call, ops=restreamed, stream=batch[1])))
            pending, drop_sync = 0.0, False
            moved += 1
            continue
        close()
        if drop_sync and call.kind in SYNCS:
            pending += call.host_before_us  # the host no longer waits for the copies
            drop_sync = False
            dropped += 1
            continue
        if call.ops:
            drop_sync = False  # other GPU work since the copies: a sync now also waits for that
        if call.kind == "call_sync_device" or (call.kind == "call_sync_stream" and call.stream is None):
            handed.clear()  # the host waits for every stream, the copies' side stream included: no wait needed
        for producer, (event, group) in list(handed.items()):
            # The next consumer: a sync of the producer's stream (it waited for the copies before), or the
            # producer stream's next op in a later group (the step that may overwrite what was copied).
            syncs_it = call.kind == "call_sync_stream" and call.stream == producer
            later_op = call.group != group and any(op.stream == producer for op in call.ops)
            if syncs_it or later_op:
                out.append(_synthetic("call_wait", producer, call.group, waits_for=event))
                del handed[producer]
        out.append(_carry(pending, call))
        pending = 0.0
    close()
    summary = WhatIfSummary(
        "async_d2h",
        groups=len(_group_order(calls)),
        groups_from=grouping,
        copies_moved=moved,
        batches=batches,
        syncs_dropped=dropped,
    )
    sides = tuple(dict.fromkeys((c.stream[0], "d2h") for c in calls if _is_copy(c, "copy_d2h")))
    return _with_thread(program, index, out, summary, sides)


# --------------------------------------------------------------------------- CUDA graphs


def _capturable(call: Call) -> bool:
    return (
        (call.kind in CAPTURABLE or _is_copy(call, "copy_d2d"))
        and bool(call.ops)
        and len({op.stream for op in call.ops}) == 1
    )


def graph_launch(program: RecordedProgram, groups: str = "auto") -> RecordedProgram:
    index = target_thread(program, _capturable)
    program, grouping = grouped(program, groups, "repeats", index)
    calls = program.threads[index].calls
    if not _group_order(calls):
        raise NotApplicable(
            "graph_launch: found no groups to capture (mark each step with prof.step() or record_function, "
            'or set groups = "host_syncs")'
        )
    out: list[Call] = []
    run: list[Call] = []
    captured = graphs = removed_ops = 0
    removed_us = 0.0
    per_aten_op_us = host_us_per_aten_op(program) or 0.0  # None: the trace counts no aten ops
    seen: set[tuple] = set()  # the graphs launched so far, by their kernels

    def flush() -> None:
        nonlocal captured, graphs, removed_ops, removed_us
        if len(run) == 1:
            out.append(run[0])
        elif run:
            ops = tuple(op for c in run for op in c.ops)
            first = run[0]
            signature = tuple((op.kind, op.name, op.stream) for op in ops)
            name = GRAPH if signature in seen else GRAPH_FIRST_LAUNCH
            seen.add(signature)
            cut = min(first.gap_aten_ops * per_aten_op_us, max(first.host_before_us, 0.0))
            removed_ops += first.gap_aten_ops if cut > 0 else 0
            removed_us += cut
            graph = Call(
                "call_graph_launch",
                name,
                first.host_before_us - cut,
                math.nan,
                ops[0].stream,
                ops,
                first.group,
                wait_before=first.wait_before,
                record_after=run[-1].record_after,
                synthetic=True,
            )
            out.append(graph)
            captured += len(run)
            graphs += 1
        run.clear()

    for call in calls:
        joins = run and _capturable(call) and call.group == run[0].group and call.ops[0].stream == run[0].ops[0].stream
        if joins and not call.wait_before and not run[-1].record_after:
            run.append(call)
            continue
        flush()
        if _capturable(call) and call.group:
            run.append(call)
        else:
            out.append(call)
    flush()
    if not graphs:
        raise NotApplicable("graph_launch: found no group with two or more consecutive kernel launches on one stream")
    summary = WhatIfSummary(
        "graph_launch",
        groups=len(_group_order(calls)),
        groups_from=grouping,
        launches_captured=captured,
        graph_launches=graphs,
        distinct_graphs=len(seen),
        aten_ops_removed=removed_ops,
        host_removed_us=removed_us,
    )
    return _with_thread(program, index, out, summary)


# --------------------------------------------------------------------------- kernel durations


def kernel_names(program: RecordedProgram) -> list[str]:
    """The program's kernel names, most GPU time first."""
    total: dict[str, float] = {}
    for thread in program.threads:
        for call in thread.calls:
            for op in call.ops:
                if op.kind == "kernel":
                    total[op.name] = total.get(op.name, 0.0) + op.duration_us
    return sorted(total, key=lambda name: -total[name])


def closest_kernel_names(program: RecordedProgram, pattern: str, n: int = 3) -> list[str]:
    """The kernel names nearest ``pattern`` (difflib), for an error that helps aim it."""
    names = kernel_names(program)
    found = difflib.get_close_matches(pattern, names, n=n, cutoff=0.0)
    # Long templated names score low against a short pattern: also try the names' words.
    words = {w: name for name in names for w in re.findall(r"[A-Za-z_][A-Za-z0-9_]+", name)}
    for word in difflib.get_close_matches(pattern, list(words), n=n, cutoff=0.6):
        if words[word] not in found:
            found.insert(0, words[word])
    return found[:n]


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
        closest = [name for p in factors for name in closest_kernel_names(program, p)]
        shown = "; ".join(repr(_short(n)) for n in dict.fromkeys(closest))
        raise NotApplicable(
            f"scale_kernels: no kernel name matches {', '.join(map(repr, factors))}; closest kernel names: {shown} "
            "(`harness trace kernels TRACE` lists them all)"
        )
    summary = WhatIfSummary("scale_kernels", kernels_scaled=matched)
    return _changed(program, summary, threads=threads)


def _short(name: str, limit: int = 80) -> str:
    return name if len(name) <= limit else name[: limit - 3] + "..."


# --------------------------------------------------------------------------- collectives overlapped


def _is_collective(call: Call) -> bool:
    return call.kind == "call_launch" and bool(call.ops) and all(op.kind == "collective" for op in call.ops)


def _restreamed(pairs: tuple[tuple[StreamKey, int], ...], source: StreamKey, side: StreamKey) -> tuple:
    return tuple((side if key == source else key, event) for key, event in pairs)


def _overlapped(calls: tuple[Call, ...], ids: Iterator[int]) -> tuple[list[Call], set[StreamKey], int, int]:
    """One thread's calls with its collectives overlapped (see :func:`overlap_collectives`): the calls, the side
    streams added, the collectives moved, the waits deferred."""
    kernel_streams = {op.stream for c in calls if not _is_collective(c) for op in c.ops}
    out: list[Call] = []
    sides: set[StreamKey] = set()
    pending: dict[StreamKey, list[tuple[int, str]]] = {}  # stream -> (event, group): waits due at its next group
    done: dict[int, tuple[StreamKey, str]] = {}  # event recorded right behind a collective -> (its stream, group)
    behind: dict[StreamKey, str] = {}  # streams whose last op is a collective (left on them) -> its group
    moved = deferred = 0
    carry = 0.0
    for call in calls:
        streams_used = {op.stream for op in call.ops}
        # 1. waits that fall due before this call: its stream's first op in a later group, or a sync of it
        if call.kind == "call_sync_device" or (call.kind == "call_sync_stream" and call.stream is None):
            pending.clear()  # the host waits for every stream of the (rank's) device, the side stream too
        addressed = streams_used | ({call.stream} if call.stream is not None else set())
        for key, waiting in list(pending.items()):
            syncs_it = call.kind == "call_sync_stream" and call.stream == key
            later = key in addressed and any(group != call.group for _, group in waiting)
            if syncs_it or later:
                due = waiting if syncs_it else [(e, g) for e, g in waiting if g != call.group]
                for event, _ in due:
                    out.append(_synthetic("call_wait", key, call.group, waits_for=event))
                left = [(e, g) for e, g in waiting if (e, g) not in due]
                if left:
                    pending[key] = left
                else:
                    del pending[key]
        # 2. waits of this call for a collective of its group: deferred to the next group
        kept_waits = []
        for key, event in call.wait_before:
            found = done.get(event)
            if found is not None and found[0] != key and found[1] == call.group:
                pending.setdefault(key, []).append((event, call.group))
                deferred += 1
            else:
                kept_waits.append((key, event))
        if len(kept_waits) != len(call.wait_before):
            call = replace(call, wait_before=tuple(kept_waits))
        if call.kind == "call_wait" and call.waits_for in done and call.stream is not None:
            source, group = done[call.waits_for]
            if source != call.stream and group == call.group:
                pending.setdefault(call.stream, []).append((call.waits_for, call.group))
                deferred += 1
                carry += call.host_before_us  # the CPU work before it stays where it was
                continue
        # 3. the call itself
        if _is_collective(call) and call.ops[0].stream in kernel_streams:
            source = call.ops[0].stream
            side = (source[0], "comm")
            sides.add(side)
            produced, reduced = next(ids), next(ids)
            out.append(_carry(carry, _synthetic("call_record", source, call.group, event=produced)))
            out.append(_synthetic("call_wait", side, call.group, waits_for=produced))
            out.append(
                replace(
                    call,
                    ops=tuple(replace(op, stream=side) for op in call.ops),
                    stream=side,
                    wait_before=_restreamed(call.wait_before, source, side),
                    record_after=_restreamed(call.record_after, source, side),
                )
            )
            out.append(_synthetic("call_record", side, call.group, event=reduced))
            pending.setdefault(source, []).append((reduced, call.group))
            for _, event in call.record_after:  # recorded behind it: waits on them are waits for it
                done[event] = (side, call.group)
            moved += 1
            carry = 0.0
            continue
        if _is_collective(call):  # on a stream of its own: left there; what waits for it is deferred
            for key, event in call.record_after:
                done[event] = (key, call.group)
            for key in streams_used:
                behind[key] = call.group
        elif call.kind == "call_record" and call.stream in behind and call.event is not None:
            done[call.event] = (call.stream, behind[call.stream])
        else:
            for key in streams_used:
                behind.pop(key, None)
        out.append(_carry(carry, call))
        carry = 0.0
    return out, sides, moved, deferred


def overlap_collectives(program: RecordedProgram, groups: str = "auto") -> RecordedProgram:
    ids = _event_ids(program)
    threads = list(program.threads)
    sides: set[StreamKey] = set()
    moved = deferred = rewritten = 0
    grouping = ""
    group_count = 0
    events_before = waits_before = events_after = waits_after = 0
    for index, thread in enumerate(program.threads):
        if not any(_is_collective(c) for c in thread.calls):
            continue
        program, grouping = grouped(program, groups, "host_syncs", index)
        calls = program.threads[index].calls
        out, found, n_moved, n_deferred = _overlapped(calls, ids)
        if not (n_moved or n_deferred):
            continue
        events_before += sum(1 for c in calls if c.synthetic and c.kind == "call_record")
        waits_before += sum(1 for c in calls if c.synthetic and c.kind == "call_wait")
        events_after += sum(1 for c in out if c.synthetic and c.kind == "call_record")
        waits_after += sum(1 for c in out if c.synthetic and c.kind == "call_wait")
        threads[index] = ThreadProgram(thread.name, tuple(out))
        sides |= found
        moved, deferred, rewritten = moved + n_moved, deferred + n_deferred, rewritten + 1
        group_count = max(group_count, len(_group_order(calls)))
    if not rewritten:
        raise NotApplicable(
            "overlap_collectives: found no collective to overlap (a multi-rank recording's NCCL kernels, imported"
            " with `harness trace import rank0.json rank1.json ...`, whose stream runs kernels after it in its"
            " group or that other streams wait for within its group)"
        )
    summary = WhatIfSummary(
        "overlap_collectives",
        groups=group_count,
        groups_from=grouping,
        collectives_moved=moved,
        waits_deferred=deferred,
        threads=rewritten,
        events_added=events_after - events_before,
        waits_added=waits_after - waits_before,
    )
    streams = tuple(dict.fromkeys(program.streams + tuple(sorted(sides))))
    return _changed(program, summary, threads=tuple(threads), streams=streams)
