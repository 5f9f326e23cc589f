"""The overlapped decode loop of tensor-parallel ranks and its KV-backup policies, written once against harness.runtime.

Models a change to an LLM serving engine's sparse-attention coordinator (see
``../shared/reference/001-decode-kv-async-backup.txt``). Every TP rank runs the
same *overlapped* decode loop on its own GPU, one host thread per rank: the
host runs one step ahead of the GPU, preparing step ``i`` while forward
``i-1`` runs, and reads forward ``i-1``'s output only after launching forward
``i``. Step ``i`` on the host::

    backup of token i-1 (its KV was written by forward i-1)
    -> schedule (host work: batch prep, device-buffer remap)
    -> meet the other ranks (rank 0 broadcasts the batch)
    -> launch forward i, record forward_done[i]
    -> wait for forward_done[i-1] (read the sampled tokens)

After the last step the host waits for the last forward and backs up its
token. The policies differ only in the backup, a :class:`Backup` object:

* ``none``: no backup (the floor).
* ``inline``: the host allocates the host slots, queues the D2H copies on the
  compute stream (behind forward i-1) and waits for them: the host falls
  behind the GPU, so the step's scheduling no longer hides behind a forward.
* ``async_stream``: the backup stream waits on ``forward_done[i-1]``; the host
  allocates the slots, queues the D2H copies on the backup stream and records
  ``backup_done`` without waiting; forward ``i`` waits on ``backup_done`` on
  the GPU (it remaps the device slot the backup reads).
* ``deferred``: as ``async_stream``, but every ``k`` steps, each copy covering
  the last ``k`` tokens (fewer, larger copies; the backup lags).
* ``async_scheduler_rank_only``: the bug the change's review caught: the
  backup is issued only on the scheduler rank (rank 0); with ``tp_ranks > 1``
  the other ranks' shards are never backed up (counted as lost).

A workload that decodes this way gives a :class:`DecodeLoop` what is its own:
the forward of one step on a rank's compute stream, the D2H copies of a backup,
and the name of a communicator of all ranks if its forward has collectives. The
loop's methods are the five policies and :meth:`DecodeLoop.policy_defs` registers
them; :func:`backup_count_rows` and :func:`rank_share_rows` are metric rows both
workloads report, :func:`async_beats_inline` and :data:`RANK_ONLY_LOSES_BACKUPS`
their fidelity checks.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import pandas as pd
import pydantic

from harness.runtime import Communicator, Event, PolicyGen, Queue, Runtime, Stream
from harness.timeline import union_us
from harness.workload import FidelityCheck, MetricRow, NoParams, PolicyDef, PolicyParams, Value


class DecodeInputs(Protocol):
    """What the loop reads of a workload's inputs."""

    @property
    def steps(self) -> int: ...

    @property
    def tp_ranks(self) -> int: ...

    @property
    def schedule_us(self) -> float: ...

    @property
    def host_alloc_us(self) -> float: ...


Forward = Callable[[Runtime, Any, Stream, Communicator | None, int], PolicyGen]
"""``forward(rt, inputs, compute, comm, step)``: one step's forward on the rank's compute stream."""

CopyBackup = Callable[[Runtime, Any, Stream, int, int], PolicyGen]
"""``copy(rt, inputs, stream, first_step, last_step)``: the D2H copies backing up those steps' KV."""


class DeferredParams(PolicyParams):
    k: int = pydantic.Field(default=4, ge=1)  # decode steps per batched backup


# --------------------------------------------------------------------------- backups


class Backup:
    """What a rank does about the newest token's KV; the base backs up nothing."""

    def setup(self, rt: Runtime, rank: int) -> PolicyGen:
        return
        yield

    def before_forward(self, rt: Runtime, compute: Stream) -> PolicyGen:
        return
        yield

    def after_forward(
        self, rt: Runtime, inputs: DecodeInputs, compute: Stream, step: int, forward_done: Event
    ) -> PolicyGen:
        return
        yield

    def finish(self, rt: Runtime) -> PolicyGen:
        return
        yield


@dataclass
class InlineBackup(Backup):
    """The copies behind the forward on the compute stream; the host waits for them."""

    copy: CopyBackup

    def after_forward(self, rt, inputs, compute, step, forward_done):
        yield rt.host_work(inputs.host_alloc_us, "host_alloc")
        yield from self.copy(rt, inputs, compute, step, step)  # behind the forward on the compute stream
        yield rt.sync_stream(compute)  # the host waits for the forward and the copies


@dataclass
class StreamBackup(Backup):
    """Backup on a dedicated stream ordered by events; every ``k`` steps."""

    copy: CopyBackup
    k: int = 1
    stream: Stream | None = None
    backup_done: Event | None = None
    unsaved: list[int] = field(default_factory=list)

    def setup(self, rt, rank):
        self.stream = yield rt.create_stream(rank, "backup")

    def before_forward(self, rt, compute):
        if self.backup_done is not None:
            yield rt.wait_event(compute, self.backup_done)  # the GPU waits, not the host
            self.backup_done = None

    def after_forward(self, rt, inputs, compute, step, forward_done):
        self.unsaved.append(step)
        if len(self.unsaved) < self.k and step < inputs.steps - 1:
            return
        assert self.stream is not None
        yield rt.wait_event(self.stream, forward_done)
        yield rt.host_work(inputs.host_alloc_us, "host_alloc")
        yield from self.copy(rt, inputs, self.stream, self.unsaved[0], self.unsaved[-1])
        self.backup_done = yield rt.record(self.stream)
        self.unsaved = []

    def finish(self, rt):
        if self.backup_done is not None:
            yield rt.sync_event(self.backup_done)


# --------------------------------------------------------------------------- decode loop


@dataclass(frozen=True)
class StepBarrier:
    """Ranks meet once per step on the host; rank 0 (the scheduler rank) releases the others."""

    arrivals: Queue
    releases: tuple[Queue, ...]  # one per rank 1..R-1

    def wait(self, rt: Runtime, rank: int) -> PolicyGen:
        if rank == 0:
            for _ in self.releases:
                yield rt.get(self.arrivals)
            for queue in self.releases:
                yield rt.put(queue, True)
        else:
            yield rt.put(self.arrivals, rank)
            yield rt.get(self.releases[rank - 1])


@dataclass(frozen=True)
class DecodeLoop:
    """One workload's decode: its forward and its backup copies; the methods named after policies are the policies."""

    forward: Forward
    copy: CopyBackup
    communicator: str | None = None  # a communicator of all ranks by this name is created for the forward

    def decode_rank(
        self,
        rt: Runtime,
        inputs: DecodeInputs,
        rank: int,
        comm: Communicator | None,
        backup: Backup,
        barrier: StepBarrier | None,
    ) -> PolicyGen:
        compute = yield rt.create_stream(rank, "compute")
        yield from backup.setup(rt, rank)
        previous_done: Event | None = None
        for step in range(inputs.steps):
            if previous_done is not None:
                yield from backup.after_forward(rt, inputs, compute, step - 1, previous_done)
            yield rt.host_work(inputs.schedule_us, "schedule")
            if barrier is not None:
                yield from barrier.wait(rt, rank)
            yield from backup.before_forward(rt, compute)
            yield from self.forward(rt, inputs, compute, comm, step)
            forward_done = yield rt.record(compute)
            if previous_done is not None:
                yield rt.sync_event(previous_done)  # read step-1's sampled tokens
            previous_done = forward_done
        assert previous_done is not None
        yield rt.sync_event(previous_done)
        yield from backup.after_forward(rt, inputs, compute, inputs.steps - 1, previous_done)
        yield from backup.finish(rt)
        return rank

    def run_ranks(self, rt: Runtime, inputs: DecodeInputs, make_backup: Callable[[int], Backup]) -> PolicyGen:
        """One decode thread per TP rank; returns when every rank has finished."""
        ranks = inputs.tp_ranks
        comm = None
        if self.communicator is not None:
            comm = yield rt.create_communicator(range(ranks), self.communicator)
        barrier = None
        if ranks > 1:
            arrivals = yield rt.make_queue(ranks, "step_arrivals")
            releases = []
            for r in range(1, ranks):
                releases.append((yield rt.make_queue(1, f"step_release{r}")))
            barrier = StepBarrier(arrivals, tuple(releases))
        threads = []
        for r in range(ranks):
            thread = yield rt.spawn(self.decode_rank, inputs, r, comm, make_backup(r), barrier, name=f"rank{r}")
            threads.append(thread)
        for thread in threads:
            yield rt.join(thread)

    # ----------------------------------------------------------------------- the policies
    def none(self, rt: Runtime, inputs: DecodeInputs, params: NoParams) -> PolicyGen:
        return (yield from self.run_ranks(rt, inputs, lambda rank: Backup()))

    def inline(self, rt: Runtime, inputs: DecodeInputs, params: NoParams) -> PolicyGen:
        return (yield from self.run_ranks(rt, inputs, lambda rank: InlineBackup(self.copy)))

    def async_stream(self, rt: Runtime, inputs: DecodeInputs, params: NoParams) -> PolicyGen:
        return (yield from self.run_ranks(rt, inputs, lambda rank: StreamBackup(self.copy)))

    def deferred(self, rt: Runtime, inputs: DecodeInputs, params: DeferredParams) -> PolicyGen:
        return (yield from self.run_ranks(rt, inputs, lambda rank: StreamBackup(self.copy, k=params.k)))

    def async_scheduler_rank_only(self, rt: Runtime, inputs: DecodeInputs, params: NoParams) -> PolicyGen:
        return (yield from self.run_ranks(rt, inputs, lambda rank: StreamBackup(self.copy) if rank == 0 else Backup()))

    def policy_defs(self, deferred_summary: str) -> dict[str, PolicyDef]:
        """The five policies as a workload registers them; ``deferred_summary`` says what one deferred copy is."""
        return {
            "none": PolicyDef("none", NoParams, self.none, "no backup (the floor)"),
            "inline": PolicyDef(
                "inline", NoParams, self.inline, "D2H on the compute stream after the forward; the host waits"
            ),
            "async_stream": PolicyDef(
                "async_stream",
                NoParams,
                self.async_stream,
                "D2H on a backup stream after forward_done; the next forward waits on backup_done",
            ),
            "deferred": PolicyDef("deferred", DeferredParams, self.deferred, deferred_summary),
            "async_scheduler_rank_only": PolicyDef(
                "async_scheduler_rank_only",
                NoParams,
                self.async_scheduler_rank_only,
                "BUG: async backup on rank 0 only; other TP ranks' shards are lost",
            ),
        }


# --------------------------------------------------------------------------- metrics


def backup_count_rows(saved_us: np.ndarray) -> list[MetricRow]:
    """``backups_expected``, ``backups_done`` and ``backups_lost`` from when each ``[rank, step]``'s backup ended
    (NaN: it never did): one backup per rank and step is due."""
    expected = saved_us.size
    done = int((~np.isnan(saved_us)).sum())
    return [
        MetricRow("backups_expected", float(expected), "count"),
        MetricRow("backups_done", float(done), "count"),
        MetricRow("backups_lost", float(expected - done), "count"),
    ]


def rank_share_rows(name: str, ops: pd.DataFrame, makespan_us: float, saved_us: np.ndarray) -> list[MetricRow]:
    """Per rank (``item = rank``): ``name``, the share of the run that rank's ``ops`` cover, and its
    ``backups_lost``; then ``name`` of the run, the mean over ranks."""
    rows, shares = [], []
    for rank in range(saved_us.shape[0]):
        share = union_us(ops[ops["device"] == rank]) / makespan_us if makespan_us > 0 else 0.0
        shares.append(share)
        rows.append(MetricRow(name, share, "fraction", rank))
        rows.append(MetricRow("backups_lost", float(np.isnan(saved_us[rank]).sum()), "count", rank))
    rows.append(MetricRow(name, float(np.mean(shares)), "fraction"))
    return rows


# --------------------------------------------------------------------------- fidelity


def async_beats_inline(v: Value) -> tuple[bool, str]:
    change = v("async_stream", "tpot_us") / v("inline", "tpot_us") - 1
    return change < 0, f"async_stream vs inline TPOT {change:+.2%}"


def _rank_only_loses_backups(v: Value) -> tuple[bool, str]:
    lost, ok = v("async_scheduler_rank_only", "backups_lost"), v("async_stream", "backups_lost")
    return lost > 0 and ok == 0, f"backups lost: rank-0-only {lost:.0f}, async_stream {ok:.0f}"


RANK_ONLY_LOSES_BACKUPS = FidelityCheck(
    "backing up on the scheduler rank only loses the other ranks' backups",
    ("async_scheduler_rank_only", "async_stream"),
    _rank_only_loses_backups,
)
"""The bug's check: rank-0-only backups lose the other ranks' shards, async_stream loses none."""
