"""The collective sweep's policies: one per operation, each rank a host thread issuing it at every size.

For each size, each rank issues ``warmup`` calls, then ``iters`` calls named
``<op>[<size index>]`` (the metrics time those), then syncs its stream; the ranks
meet on a host barrier between sizes so that every size starts from idle GPUs.
Broadcast is from device 0; ``send_recv`` sends from device 0 to device 1 (the
other ranks idle).
"""

from __future__ import annotations

from collections.abc import Callable

from harness.runtime import Collective, Communicator, PolicyGen, Queue, Runtime, Stream
from harness.workload import NoParams
from workloads.collective_sweep.inputs import CollectiveSweepInputs


def timed_name(op: str, size_index: int) -> str:
    return f"{op}[{size_index}]"


def _call(rt: Runtime, op: str, stream: Stream, comm: Communicator, nbytes: int, name: str) -> Collective | None:
    """The command rank ``stream.device`` issues for one call of ``op`` (None: it takes no part)."""
    device = stream.device
    if op == "send_recv":
        if device == 0:
            return rt.send(stream, comm, nbytes, peer=1, name=name)
        return rt.recv(stream, comm, nbytes, peer=0, name=name) if device == 1 else None
    if op == "broadcast":
        return rt.broadcast(stream, comm, nbytes, root=0, name=name)
    return getattr(rt, op)(stream, comm, nbytes, name=name)


def _rank(rt: Runtime, inputs: CollectiveSweepInputs, op: str, rank: int, comm: Communicator, barrier: list[Queue]):
    stream = yield rt.create_stream(rank, "comm")
    for index, size in enumerate(inputs.sizes_bytes):
        for i in range(inputs.warmup + inputs.iters):
            name = timed_name(op, index) if i >= inputs.warmup else f"warmup:{op}"
            command = _call(rt, op, stream, comm, size, name)
            if command is None:
                break
            yield command
        yield rt.sync_stream(stream)
        yield rt.put(barrier[0], rank)  # every rank done with this size ...
        yield rt.get(barrier[1 + rank])  # ... before any starts the next
    return rank


def _sweep(op: str) -> Callable[[Runtime, CollectiveSweepInputs, NoParams], PolicyGen]:
    def main(rt: Runtime, inputs: CollectiveSweepInputs, params: NoParams) -> PolicyGen:
        comm = yield rt.create_communicator(range(inputs.gpus), "all")
        barrier = [(yield rt.make_queue(inputs.gpus, "done"))]
        for r in range(inputs.gpus):
            barrier.append((yield rt.make_queue(1, f"go{r}")))
        threads = []
        for r in range(inputs.gpus):
            threads.append((yield rt.spawn(_rank, inputs, op, r, comm, barrier, name=f"rank{r}")))
        for _ in inputs.sizes_bytes:
            for _ in range(inputs.gpus):
                yield rt.get(barrier[0])
            for r in range(inputs.gpus):
                yield rt.put(barrier[1 + r], True)
        for thread in threads:
            yield rt.join(thread)

    main.__name__ = op
    return main


OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")
POLICIES = {op: _sweep(op) for op in OPS}
