"""Tensor-parallel decode policies: the KV-backup policies of ``kv_backup`` on every TP rank.

One host thread per rank (its GPU), each running the overlapped decode loop of
``kv_backup`` (the host prepares step ``i`` while forward ``i-1`` runs). The
forward of a step is, on the rank's compute stream, for every layer ``l``::

    attn[s:l] -> all_reduce ar_attn[s:l] -> mlp[s:l] -> all_reduce ar_mlp[s:l]

over one communicator of all ranks; the all-reduces meet across the ranks, so a
slow rank holds every rank. ``forward_done`` is recorded after the last
all-reduce. The backup of step ``s`` is one D2H copy ``kv_backup[s-s]`` (or
``kv_backup[a-b]`` covering steps a..b) of the rank's KV shard:

* ``none``: no backup; ``inline``: on the compute stream, the host waits;
* ``async_stream``: on a backup stream after ``forward_done``; the next forward
  waits on ``backup_done`` on the GPU;
* ``deferred``: as ``async_stream`` every ``k`` steps;
* ``async_scheduler_rank_only``: the bug: rank 0 only; other ranks' shards are lost.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field

import pydantic

from harness.runtime import Communicator, Direction, Event, HostMemory, PolicyGen, Queue, Runtime, Stream
from harness.workload import NoParams, PolicyParams
from workloads.tensor_parallel.inputs import TensorParallelInputs


class DeferredParams(PolicyParams):
    k: int = pydantic.Field(default=4, ge=1)  # decode steps per batched backup


def layer_name(part: str, step: int, layer: int) -> str:
    """``attn``, ``mlp``, ``ar_attn`` or ``ar_mlp`` of one layer of one step."""
    return f"{part}[{step}:{layer}]"


def backup_name(first_step: int, last_step: int) -> str:
    return f"kv_backup[{first_step}-{last_step}]"


LAYER_RE = re.compile(r"^(attn|mlp|ar_attn|ar_mlp)\[(\d+):(\d+)\]$")
BACKUP_RE = re.compile(r"^kv_backup\[(\d+)-(\d+)\]$")


class Backup:
    """What a rank does about the newest token's KV; the base backs up nothing."""

    def setup(self, rt: Runtime, rank: int) -> PolicyGen:
        return
        yield

    def before_forward(self, rt: Runtime, compute: Stream) -> PolicyGen:
        return
        yield

    def after_forward(
        self, rt: Runtime, inputs: TensorParallelInputs, compute: Stream, step: int, forward_done: Event
    ) -> PolicyGen:
        return
        yield

    def finish(self, rt: Runtime) -> PolicyGen:
        return
        yield


def _copy(rt: Runtime, inputs: TensorParallelInputs, stream: Stream, first: int, last: int) -> PolicyGen:
    nbytes = (last - first + 1) * inputs.backup_bytes
    yield rt.copy(stream, nbytes, Direction.D2H, HostMemory.PINNED, backup_name(first, last))


class InlineBackup(Backup):
    def after_forward(self, rt, inputs, compute, step, forward_done):
        yield rt.host_work(inputs.host_alloc_us, "host_alloc")
        yield from _copy(rt, inputs, compute, step, step)
        yield rt.sync_stream(compute)


@dataclass
class StreamBackup(Backup):
    k: int = 1
    stream: Stream | None = None
    backup_done: Event | None = None
    unsaved: list[int] = field(default_factory=list)

    def setup(self, rt, rank):
        self.stream = yield rt.create_stream(rank, "backup")

    def before_forward(self, rt, compute):
        if self.backup_done is not None:
            yield rt.wait_event(compute, self.backup_done)
            self.backup_done = None

    def after_forward(self, rt, inputs, compute, step, forward_done):
        self.unsaved.append(step)
        if len(self.unsaved) < self.k and step < inputs.steps - 1:
            return
        assert self.stream is not None
        yield rt.wait_event(self.stream, forward_done)
        yield rt.host_work(inputs.host_alloc_us, "host_alloc")
        yield from _copy(rt, inputs, self.stream, self.unsaved[0], self.unsaved[-1])
        self.backup_done = yield rt.record(self.stream)
        self.unsaved = []

    def finish(self, rt):
        if self.backup_done is not None:
            yield rt.sync_event(self.backup_done)


@dataclass(frozen=True)
class StepBarrier:
    """Ranks meet once per step on the host; rank 0 (the scheduler rank) releases the others."""

    arrivals: Queue
    releases: tuple[Queue, ...]

    def wait(self, rt: Runtime, rank: int) -> PolicyGen:
        if rank == 0:
            for _ in self.releases:
                yield rt.get(self.arrivals)
            for queue in self.releases:
                yield rt.put(queue, True)
        else:
            yield rt.put(self.arrivals, rank)
            yield rt.get(self.releases[rank - 1])


def forward(rt: Runtime, inputs: TensorParallelInputs, compute: Stream, comm: Communicator, step: int) -> PolicyGen:
    """One step's layers on this rank's compute stream, each part followed by its all-reduce."""
    size = inputs.all_reduce_bytes
    for layer in range(inputs.layers):
        yield rt.launch(compute, layer_name("attn", step, layer), inputs.attn_us)
        yield rt.all_reduce(compute, comm, size, layer_name("ar_attn", step, layer))
        yield rt.launch(compute, layer_name("mlp", step, layer), inputs.mlp_us)
        yield rt.all_reduce(compute, comm, size, layer_name("ar_mlp", step, layer))


def decode_rank(
    rt: Runtime,
    inputs: TensorParallelInputs,
    rank: int,
    comm: Communicator,
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
        yield from forward(rt, inputs, compute, comm, step)
        forward_done = yield rt.record(compute)
        if previous_done is not None:
            yield rt.sync_event(previous_done)  # read step-1's sampled tokens
        previous_done = forward_done
    assert previous_done is not None
    yield rt.sync_event(previous_done)
    yield from backup.after_forward(rt, inputs, compute, inputs.steps - 1, previous_done)
    yield from backup.finish(rt)
    return rank


def run_ranks(rt: Runtime, inputs: TensorParallelInputs, make_backup: Callable[[int], Backup]) -> PolicyGen:
    """One decode thread per TP rank over one communicator; returns when every rank has finished."""
    ranks = inputs.tp_ranks
    comm = yield rt.create_communicator(range(ranks), "tp")
    barrier = None
    if ranks > 1:
        arrivals = yield rt.make_queue(ranks, "step_arrivals")
        releases = []
        for r in range(1, ranks):
            releases.append((yield rt.make_queue(1, f"step_release{r}")))
        barrier = StepBarrier(arrivals, tuple(releases))
    threads = []
    for r in range(ranks):
        threads.append((yield rt.spawn(decode_rank, inputs, r, comm, make_backup(r), barrier, name=f"rank{r}")))
    for thread in threads:
        yield rt.join(thread)


def none(rt: Runtime, inputs: TensorParallelInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: Backup()))


def inline(rt: Runtime, inputs: TensorParallelInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: InlineBackup()))


def async_stream(rt: Runtime, inputs: TensorParallelInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup()))


def deferred(rt: Runtime, inputs: TensorParallelInputs, params: DeferredParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup(k=params.k)))


def async_scheduler_rank_only(rt: Runtime, inputs: TensorParallelInputs, params: NoParams) -> PolicyGen:
    return (yield from run_ranks(rt, inputs, lambda rank: StreamBackup() if rank == 0 else Backup()))
