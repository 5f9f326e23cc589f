"""KV-backup policies, written once against harness.runtime.

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

Op names (the metrics read them): the forward of step ``s`` is ``forward[s]``;
the copy of layers ``l0..l1`` covering steps ``a..b`` is
``kv_backup[a-b:Ll0-l1]`` (``kv_backup[7-7:L0-60]``). The device column is the rank.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pydantic

from harness.runtime import Direction, Event, HostMemory, PolicyGen, Queue, Runtime, Stream
from harness.workload import NoParams, PolicyParams
from workloads.kv_backup.inputs import KvBackupInputs


class DeferredParams(PolicyParams):
    k: int = pydantic.Field(default=4, ge=1)  # decode steps per batched backup


def forward_name(step: int) -> str:
    return f"forward[{step}]"


def backup_name(first_step: int, last_step: int, first_layer: int, last_layer: int) -> str:
    return f"kv_backup[{first_step}-{last_step}:L{first_layer}-{last_layer}]"


FORWARD_RE = re.compile(r"^forward\[(\d+)\]$")
BACKUP_RE = re.compile(r"^kv_backup\[(\d+)-(\d+):L(\d+)-(\d+)\]$")


# --------------------------------------------------------------------------- backups


class Backup:
    """What a rank does about the newest token's KV; the base backs up nothing."""

    def setup(self, rt: Runtime, rank: int) -> PolicyGen:
        return
        yield

    def before_forward(self, rt: Runtime, compute: Stream, step: int) -> PolicyGen:
        return
        yield

    def after_forward(
        self, rt: Runtime, inputs: KvBackupInputs, compute: Stream, step: int, forward_done: Event
    ) -> PolicyGen:
        return
        yield

    def finish(self, rt: Runtime) -> PolicyGen:
        return
        yield


def _copy_layers(rt: Runtime, inputs: KvBackupInputs, stream: Stream, first: int, last: int) -> PolicyGen:
    per_layer = inputs.layer_bytes(last - first + 1)
    for l0, l1 in inputs.layer_groups():
        yield rt.copy(
            stream, (l1 - l0 + 1) * per_layer, Direction.D2H, HostMemory.PINNED, backup_name(first, last, l0, l1)
        )


class InlineBackup(Backup):
    def after_forward(self, rt, inputs, compute, step, forward_done):
        yield rt.host_work(inputs.host_alloc_us, "host_alloc")
        yield from _copy_layers(rt, inputs, compute, step, step)  # behind the forward on the compute stream
        yield rt.sync_stream(compute)  # the host waits for the forward and the copies


@dataclass
class StreamBackup(Backup):
    """Backup on a dedicated stream ordered by events; every ``k`` steps."""

    k: int = 1
    stream: Stream | None = None
    backup_done: Event | None = None
    unsaved: list[int] = field(default_factory=list)

    def setup(self, rt, rank):
        self.stream = yield rt.create_stream(rank, "backup")

    def before_forward(self, rt, compute, step):
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
        yield from _copy_layers(rt, inputs, self.stream, self.unsaved[0], self.unsaved[-1])
        self.backup_done = yield rt.record(self.stream)
        self.unsaved = []

    def finish(self, rt):
        if self.backup_done is not None:
            yield rt.sync_event(self.backup_done)


# --------------------------------------------------------------------------- decode loop


@dataclass(frozen=True)
class StepBarrier:
    """Ranks meet once per step; rank 0 (the scheduler rank) releases the others."""

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


def decode_rank(
    rt: Runtime, inputs: KvBackupInputs, rank: int, backup: Backup, barrier: StepBarrier | None
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
        yield from backup.before_forward(rt, compute, step)
        yield rt.launch(compute, forward_name(step), inputs.forward_us)
        forward_done = yield rt.record(compute)
        if previous_done is not None:
            yield rt.sync_event(previous_done)  # read step-1's sampled tokens
        previous_done = forward_done
    assert previous_done is not None
    yield rt.sync_event(previous_done)
    yield from backup.after_forward(rt, inputs, compute, inputs.steps - 1, previous_done)
    yield from backup.finish(rt)
    return rank


def run_ranks(rt: Runtime, inputs: KvBackupInputs, make_backup: Callable[[int], Backup]) -> PolicyGen:
    """One decode thread per TP rank; returns when every rank has finished."""
    ranks = inputs.tp_ranks
    barrier = None
    if ranks > 1:
        arrivals = yield rt.make_queue(ranks, "step_arrivals")
        releases = []
        for r in range(1, ranks):
            releases.append((yield rt.make_queue(1, f"step_release{r}")))
        barrier = StepBarrier(arrivals, tuple(releases))
    threads = []
    for r in range(ranks):
        threads.append((yield rt.spawn(decode_rank, inputs, r, make_backup(r), barrier, name=f"rank{r}")))
    for thread in threads:
        yield rt.join(thread)


def none(rt: Runtime, inputs: KvBackupInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: Backup()))


def inline(rt: Runtime, inputs: KvBackupInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: InlineBackup()))


def async_stream(rt: Runtime, inputs: KvBackupInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup()))


def deferred(rt: Runtime, inputs: KvBackupInputs, params: DeferredParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup(k=params.k)))


def async_scheduler_rank_only(rt: Runtime, inputs: KvBackupInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup() if rank == 0 else Backup()))
