"""The multi-GPU replay: one process per GPU through torch.distributed + NCCL, the same policy on every rank.

``harness replay --distributed SPEC`` (or :func:`distributed_factory`) spawns one
process per device the spec's workload uses; process ``r`` sees only GPU ``r``
(``CUDA_VISIBLE_DEVICES``) and joins one NCCL process group. Every process runs
*the whole policy*, every run of the spec in the same order (warm-ups included,
as :class:`replay.engine.ReplayBackend` does them), but replays only the commands
of its own device (:class:`RankRun`):

* commands on another device's streams are *phantoms*: a launch, copy or wait
  does nothing, a record returns an event that has already completed, a sync on
  them returns at once, an allocation on another device reserves nothing;
* a collective on its own device runs through ``torch.distributed`` on that
  stream (c10d's NCCL stream waits for it and it waits for the collective), on the
  process group made for its communicator (``new_group``: every process makes every
  communicator, in the same order, so a policy must create its communicators from
  one thread, before it spawns the ranks' threads);
* each run starts behind a barrier of every rank;
* a program command of collectives (a multi-rank recording re-issued as recorded:
  ``OP_COLLECTIVE`` steps, one host thread per rank) runs through its expansion, as
  the native executor does not issue NCCL calls (it says so on stderr), with only
  the threads of this rank's device (:func:`own_rank_program`): the others keep
  their names and spawn/join order but issue nothing, so that a process spins no
  other rank's host work, as each rank's own process did when it was recorded.

**Results.** Each rank keeps the device rows of its own GPU and the host rows of
the threads that issued work to it (rank 0 also those of ``main``); the rows of
every rank are put on one clock (each run's start on the host's wall clock,
which the ranks share) and merged (:func:`merge_rank_runs`) into one run per run
of the spec, which the ordinary runner tabulates into one results folder, the
device of each op its rank. The policy's own result is rank 0's.

What it cannot reproduce: host-side orderings between ranks' threads (a queue
shared by two ranks' threads, a join) hold within a process only, and a phantom
thread never waits for the GPU; ranks are coupled through their collectives.
Only the pure parts (:func:`merge_rank_runs`, :func:`visible_devices`) are tested
without GPUs; the rest needs a machine of 2 or more GPUs (``docs/collectives.md``).
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from harness.backend import HOST_DEVICE, Backend, RunResult
from harness.oplog import OpRow
from harness.program import STREAM_OPS, ProgramThread, new_steps
from harness.runtime import Buffer, Collective, CollectiveOp, Communicator, Event, OpKind, RunProgram, Stream
from replay.engine import ReplayBackend, ReplayContext, _Run
from replay.gpu import CudaUnavailable


class NotEnoughGpusForRanks(CudaUnavailable):
    """The spec needs more GPUs than the machine has (or fewer than two)."""


class _Phantom:
    """Another rank's stream or event in this rank's process: always complete."""

    def query(self) -> bool:
        return True

    def synchronize(self) -> None:
        return None


PHANTOM = _Phantom()


@dataclass
class RankRecord:
    """One run of the spec as one rank replayed it (what a rank process sends back)."""

    rank: int
    index: int  # the run's index in the spec (harness.runner.PreparedSpec.run_at)
    rows: list[tuple] = field(default_factory=list)  # OpRow fields
    result: Any = None
    main_end_us: float = 0.0
    wall_origin_s: float = 0.0  # the run's time 0 on the host's wall clock (time.time)
    own_threads: tuple[str, ...] = ()
    error: str = ""


def visible_devices(world: int, available: int) -> list[int]:
    """The GPU each rank's process sees (``CUDA_VISIBLE_DEVICES``): rank r on GPU r; refuses too few GPUs."""
    if world < 2:
        raise NotEnoughGpusForRanks(f"the multi-GPU replay is for specs of 2 or more devices; this one uses {world}")
    if available < world:
        raise NotEnoughGpusForRanks(
            f"the spec's workload uses {world} GPUs (one process each); this machine has {available}"
        )
    return list(range(world))


def merge_rank_runs(records: list[RankRecord]) -> RunResult:
    """One run from every rank's part: rank r's own rows, on one clock, op ids made unique (``id * world + r``).

    Each rank's times move by its run start's distance from the earliest rank's (wall clock); the policy's result
    and the main thread's end are rank 0's. A rank that failed fails the run (``RuntimeError`` naming it).
    """
    records = sorted(records, key=lambda r: r.rank)
    failed = [r for r in records if r.error]
    if failed:
        raise RuntimeError("; ".join(f"rank {r.rank}: {r.error}" for r in failed))
    world = len(records)
    origin = min(r.wall_origin_s for r in records)
    rows: list[OpRow] = []
    for record in records:
        shift = (record.wall_origin_s - origin) * 1e6
        own = set(record.own_threads) | ({"main"} if record.rank == 0 else set())
        for row in record.rows:
            op_id, device, stream, kind, name, nbytes, memory, thread, issue, start, end = row
            if device == record.rank or (device == HOST_DEVICE and thread in own):
                rows.append(
                    OpRow(
                        op_id * world + record.rank,
                        device,
                        stream,
                        kind,
                        name,
                        nbytes,
                        memory,
                        thread,
                        issue + shift,
                        start + shift,
                        end + shift,
                    )
                )
    first = records[0]
    return RunResult(rows, first.result, first.main_end_us + (first.wall_origin_s - origin) * 1e6)


def own_rank_program(cmd: RunProgram, rank: int) -> RunProgram:
    """``cmd`` as rank ``rank``'s process runs it: the threads whose steps address a stream of another device only
    (another rank's threads) keep their place and name but have no steps; threads of no stream stay on rank 0."""
    devices = [s.device for s in cmd.streams]
    threads = []
    for thread in cmd.program.threads:
        steps = thread.steps
        on_stream = steps["stream"][(steps["stream"] >= 0) & np.isin(steps["op"], STREAM_OPS)]
        mine = {devices[i] for i in set(on_stream.tolist())}
        keep = rank in mine if mine else rank == 0
        threads.append(thread if keep else ProgramThread(thread.name, new_steps(0)))
    program = dataclasses.replace(cmd.program, threads=tuple(threads))
    return RunProgram(program, cmd.streams, cmd.communicators)


# --------------------------------------------------------------------------- one rank's process (needs GPUs)


class _NoKernels:
    """Another rank's kernels: never planned here (its launches are phantoms), nothing to tune."""

    def tune_untuned(self) -> None:
        return None


class _RankDevice:
    """Another rank's device as this process sees it: named and sized like its own, no GPU state."""

    def __init__(self, index: int, own: Any) -> None:
        self.index = index
        self.device = own.device  # calls that want "a stream of device d" get this process's one GPU
        self.name = own.name
        self.total_bytes = own.total_bytes
        self.kernels = _NoKernels()


class _OneGpuScratch:
    """Device scratch of a process that sees one GPU: every device index is that GPU (``cuda:0``)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def get(self, device: int, nbytes: int) -> Any:
        return self.inner.get(0, nbytes)

    def bytes(self) -> int:
        return self.inner.bytes()


class RankContext(ReplayContext):
    """The replay context of rank ``rank``'s process, which sees one GPU (``cuda:0``) as device ``rank``."""

    def __init__(self, rank: int, world: int) -> None:
        super().__init__(1)
        own = self.devices[0]
        own.index = rank
        self.rank = rank
        self.devices = [own if i == rank else _RankDevice(i, own) for i in range(world)]
        self._events = [[] for _ in range(world)]
        self._next_event = [0] * world
        self.scratch = _OneGpuScratch(self.scratch)
        self.groups: dict[tuple[int, ...], Any] = {}  # a process group per communicator's devices, made once

    def free_bytes(self, device: int) -> int:
        return super().free_bytes(0)


class RankRun(_Run):
    """One run on one rank: the commands of its own device, phantoms for the others' (module docstring)."""

    def __init__(self, backend: ReplayBackend) -> None:
        super().__init__(backend)
        self.rank: int = backend.context.rank
        self.own_threads: set[str] = set()
        self.wall_origin_s = 0.0

    def execute(self, main, args) -> RunResult:
        import torch.distributed as dist

        self.torch.cuda.synchronize()
        dist.barrier()
        outcome = super().execute(main, args)
        self.wall_origin_s = self._clock.origin + (time.time() - time.perf_counter())
        return outcome

    def _mine(self, device: int, thread) -> bool:
        if device != self.rank:
            return False
        self.own_threads.add(thread.name)
        return True

    def _create_stream(self, cmd, thread) -> Stream:
        if self._mine(cmd.device, thread):
            return super()._create_stream(cmd, thread)
        return Stream(self._new_id(), cmd.device, cmd.name, PHANTOM)

    def _launch(self, cmd, thread) -> None:
        if self._mine(cmd.stream.device, thread):
            super()._launch(cmd, thread)

    def _launch_graph(self, cmd, thread) -> None:
        if self._mine(cmd.stream.device, thread):
            super()._launch_graph(cmd, thread)

    def _copy(self, cmd, thread) -> None:
        if self._mine(cmd.stream.device, thread):
            super()._copy(cmd, thread)

    def _record(self, cmd, thread) -> Event:
        if self._mine(cmd.stream.device, thread):
            return super()._record(cmd, thread)
        return Event(self._new_id(), cmd.stream, PHANTOM)

    def _wait_event(self, cmd, thread) -> None:
        if self._mine(cmd.stream.device, thread) and cmd.event.native is not PHANTOM:
            super()._wait_event(cmd, thread)

    def _alloc(self, cmd, thread) -> Buffer | None:
        if self._mine(cmd.device, thread):
            return super()._alloc(cmd, thread)
        return Buffer(self._new_id(), cmd.device, cmd.nbytes, cmd.name, PHANTOM)

    def _free(self, cmd, thread) -> None:
        if cmd.buffer.native is not PHANTOM:
            super()._free(cmd, thread)

    def _run_program(self, cmd: RunProgram, thread) -> Any:
        if cmd.program.communicators:  # one host thread per rank: this process runs its own only
            cmd = own_rank_program(cmd, self.rank)
        return super()._run_program(cmd, thread)

    def _create_communicator(self, cmd, thread) -> Communicator:
        import torch.distributed as dist

        groups = self.ctx.groups
        if cmd.devices not in groups:  # every process makes every group, in the same order (new_group's rule)
            groups[cmd.devices] = dist.new_group(ranks=list(cmd.devices))
        group = groups[cmd.devices]
        return Communicator(self._new_id(), cmd.devices, cmd.name, group if self.rank in cmd.devices else None)

    def _collective(self, cmd: Collective, thread) -> None:
        if not self._mine(cmd.stream.device, thread):
            return
        if len(cmd.comm.devices) == 1:
            super()._collective(cmd, thread)  # a local copy
            return
        import torch.distributed as dist

        issue = self._clock.host_us()
        op_id = self._new_id()
        n, ranks, group = cmd.nbytes, len(cmd.comm.devices), cmd.comm.native
        scratch = self.ctx.scratch.get(0, 2 * max(n, ranks))
        whole, part = scratch[: max(n // ranks * ranks, ranks)], scratch[n : n + max(n // ranks, 1)]
        s = cmd.stream.native
        start, end = self.ctx.take_event(self.rank), self.ctx.take_event(self.rank)
        self._use_stream(s)
        start.record(s)
        op = cmd.op
        if op is CollectiveOp.ALL_REDUCE:
            dist.all_reduce(scratch[:n], group=group)
        elif op is CollectiveOp.ALL_GATHER:
            dist.all_gather_into_tensor(whole, part[: whole.numel() // ranks], group=group)
        elif op is CollectiveOp.REDUCE_SCATTER:
            dist.reduce_scatter_tensor(part[: whole.numel() // ranks], whole, group=group)
        elif op is CollectiveOp.BROADCAST:
            dist.broadcast(scratch[:n], src=cmd.peer, group=group)
        elif op is CollectiveOp.SEND:
            dist.send(scratch[:n], dst=cmd.peer, group=group)
        else:
            dist.recv(scratch[:n], src=cmd.peer, group=group)
        end.record(s)
        self._device_op(OpKind.COLLECTIVE, cmd.stream, cmd.name, n, "", thread, issue, start, end, op_id)


class RankReplayBackend(ReplayBackend):
    """The replay backend of one rank's process (its runs are :class:`RankRun`)."""

    def _new_run(self) -> RankRun:
        self.last_run = RankRun(self)
        return self.last_run


def _rank_main(rank: int, world: int, port: int, spec_path: str, out_dir: str, deadline: float) -> None:
    """One rank's process: every run of the spec, its part of each written to ``out_dir/rank<r>.pkl``."""
    os.environ["CUDA_VISIBLE_DEVICES"] = str(rank)
    import torch
    import torch.distributed as dist

    from harness.runner import prepare_spec
    from harness.spec import load_spec

    torch.cuda.set_device(0)
    dist.init_process_group(
        "nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world, device_id=torch.device("cuda", 0)
    )
    records: list[RankRecord] = []
    try:
        loaded = load_spec(spec_path)
        prepared = prepare_spec(loaded)
        context = RankContext(rank, world)
        for index in range(prepared.total):
            late = torch.tensor([1.0 if time.time() > deadline else 0.0], device="cuda:0")
            dist.all_reduce(late)  # every rank stops at the same run
            if late.item() > 0:
                break
            policy, repetition = prepared.run_at(index)
            seed = loaded.spec.seed + repetition
            backend = RankReplayBackend(context, loaded.profile, loaded.spec.device_memory_bytes, seed=seed)
            record = RankRecord(rank, index)
            try:
                outcome = backend.run(policy.policy.main, prepared.inputs, policy.params)
                record.rows = [tuple(row) for row in outcome.ops]
                record.main_end_us = outcome.main_end_us
                record.wall_origin_s = backend.last_run.wall_origin_s
                record.own_threads = tuple(sorted(backend.last_run.own_threads))
                record.result = outcome.result if rank == 0 and _picklable(outcome.result) else None
            except Exception as err:  # noqa: BLE001 - reported as the run's failure
                record.error = f"{type(err).__name__}: {err}"
            records.append(record)
    finally:
        Path(out_dir, f"rank{rank}.pkl").write_bytes(pickle.dumps(records))
        dist.destroy_process_group()


def _picklable(value: Any) -> bool:
    try:
        pickle.dumps(value)
    except Exception:  # noqa: BLE001
        return False
    return True


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def replay_ranks(
    spec_path: Path, world: int, budget_s: float, log: Callable[[str], None] = print
) -> list[list[RankRecord]]:
    """Spawn one process per rank; return, per run of the spec, every rank's record (runs past the budget: none)."""
    import torch
    import torch.multiprocessing as mp

    visible_devices(world, torch.cuda.device_count())
    deadline = time.time() + budget_s
    with tempfile.TemporaryDirectory(prefix="replay-ranks-") as out_dir:
        log(f"replaying {spec_path} on {world} GPUs, one process each (budget {budget_s:.0f} s)")
        processes = mp.start_processes(
            _rank_main,
            args=(world, _free_port(), str(spec_path), out_dir, deadline),
            nprocs=world,
            join=False,
            start_method="spawn",
        )
        grace_s = 120.0
        while not processes.join(timeout=5.0):
            if time.time() > deadline + grace_s:
                for process in processes.processes:
                    if process.is_alive():
                        process.kill()
                raise RuntimeError(f"the ranks did not finish within the budget + {grace_s:.0f} s (a hang?)")
        per_rank = [pickle.loads(Path(out_dir, f"rank{r}.pkl").read_bytes()) for r in range(world)]
    runs = max((len(records) for records in per_rank), default=0)
    return [[records[i] for records in per_rank if i < len(records)] for i in range(runs)]


class MergedRunsBackend(Backend):
    """Hands the runner the merged runs of :func:`replay_ranks`, one per run, in the spec's order."""

    name = "replay"

    def __init__(self, runs: list[list[RankRecord]], cursor: list[int], world: int, device_name: str) -> None:
        self.runs, self.cursor, self.world, self.device_name = runs, cursor, world, device_name

    def run(self, main, *args) -> RunResult:
        index = self.cursor[0]
        self.cursor[0] += 1
        if index >= len(self.runs):
            raise RuntimeError("not replayed: the budget ran out before this run")
        parts = self.runs[index]
        if len(parts) != self.world:
            raise RuntimeError(f"only {len(parts)} of {self.world} ranks replayed this run")
        return merge_rank_runs(parts)


def distributed_factory(budget_s: float, log: Callable[[str], None] = print):
    """``factory_for(loaded)`` for ``harness.cli.run.run_to_folder``: replays every run first, then hands them out."""

    def factory_for(loaded):
        import torch

        world = loaded.workload.devices(loaded.workload_params)
        runs = replay_ranks(loaded.path, world, budget_s, log)
        cursor = [0]
        name = torch.cuda.get_device_name(0)

        def make(spec, repetition: int) -> MergedRunsBackend:
            return MergedRunsBackend(runs, cursor, world, name)

        return make

    return factory_for
