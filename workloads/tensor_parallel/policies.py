"""Tensor-parallel decode policies: the KV-backup policies of :mod:`harness.decode_backup` on every TP rank.

One host thread per rank (its GPU), each running the overlapped decode loop of
:mod:`harness.decode_backup` (the host prepares step ``i`` while forward ``i-1`` runs). The
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

from harness.decode_backup import DecodeLoop
from harness.runtime import Communicator, Direction, HostMemory, PolicyGen, Runtime, Stream
from workloads.tensor_parallel.inputs import TensorParallelInputs


def layer_name(part: str, step: int, layer: int) -> str:
    """``attn``, ``mlp``, ``ar_attn`` or ``ar_mlp`` of one layer of one step."""
    return f"{part}[{step}:{layer}]"


def backup_name(first_step: int, last_step: int) -> str:
    return f"kv_backup[{first_step}-{last_step}]"


LAYER_RE = re.compile(r"^(attn|mlp|ar_attn|ar_mlp)\[(\d+):(\d+)\]$")
BACKUP_RE = re.compile(r"^kv_backup\[(\d+)-(\d+)\]$")


def forward(
    rt: Runtime, inputs: TensorParallelInputs, compute: Stream, comm: Communicator | None, step: int
) -> PolicyGen:
    """One step's layers on this rank's compute stream, each part followed by its all-reduce."""
    assert comm is not None
    size = inputs.all_reduce_bytes
    for layer in range(inputs.layers):
        yield rt.launch(compute, layer_name("attn", step, layer), inputs.attn_us)
        yield rt.all_reduce(compute, comm, size, layer_name("ar_attn", step, layer))
        yield rt.launch(compute, layer_name("mlp", step, layer), inputs.mlp_us)
        yield rt.all_reduce(compute, comm, size, layer_name("ar_mlp", step, layer))


def _copy(rt: Runtime, inputs: TensorParallelInputs, stream: Stream, first: int, last: int) -> PolicyGen:
    nbytes = (last - first + 1) * inputs.backup_bytes
    yield rt.copy(stream, nbytes, Direction.D2H, HostMemory.PINNED, backup_name(first, last))


DECODE = DecodeLoop(forward=forward, copy=_copy, communicator="tp")
POLICIES = DECODE.policy_defs("as async_stream, one copy every k steps")
