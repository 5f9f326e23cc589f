"""Inputs of the tensor-parallel decode workload: one decoder's layers split over ``tp_ranks`` GPUs.

Every decode step runs, on every rank, each layer's attention and MLP, each
followed by an all-reduce of the layer's activations over the TP communicator
(Megatron-style tensor parallelism: the row-parallel output projection and the
MLP's down projection each end in an all-reduce). The newest token's KV is then
backed up to host memory as in ``kv_backup`` (its policies, on every rank).

* ``layers``; ``attn_us`` / ``mlp_us``: one layer's attention / MLP kernels on
  *one* GPU at this batch (TP 1); a rank runs ``1 / tp_ranks`` of each (ideal
  split of heads and of the MLP's columns).
* ``batch``, ``hidden_size``, ``dtype_bytes``: each all-reduce moves
  ``batch * hidden_size * dtype_bytes`` bytes (nccl-tests' size).
* ``kv_bytes_per_token_per_layer``: one token's KV of one layer, *all ranks
  together*; each rank backs up ``1 / tp_ranks`` of it (its KV heads).
* ``schedule_us``: scheduler host work per step; ``host_alloc_us``: host-pool
  slots of one backup; ``steps``: decode steps; ``tp_ranks``: 2, 4 or 8 GPUs.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from harness.workload import PrepareContext, WorkEstimate, WorkloadParams


class TensorParallelParams(WorkloadParams):
    """The ``[workload]`` table of a tensor-parallel decode spec."""

    layers: int = pydantic.Field(ge=1)
    attn_us: float = pydantic.Field(gt=0)  # one layer's attention at TP 1
    mlp_us: float = pydantic.Field(gt=0)  # one layer's MLP at TP 1
    batch: int = pydantic.Field(ge=1)
    hidden_size: int = pydantic.Field(ge=1)
    dtype_bytes: int = pydantic.Field(default=2, ge=1)
    kv_bytes_per_token_per_layer: int = pydantic.Field(ge=1)  # all ranks together
    schedule_us: float = pydantic.Field(default=0.0, ge=0)
    host_alloc_us: float = pydantic.Field(default=0.0, ge=0)
    steps: int = pydantic.Field(ge=2)
    tp_ranks: int = pydantic.Field(ge=1, le=64)


@dataclass(frozen=True)
class TensorParallelInputs:
    layers: int
    attn_us: float  # per rank
    mlp_us: float  # per rank
    all_reduce_bytes: int
    backup_bytes: int  # one rank's backup copy of one step (all layers)
    schedule_us: float
    host_alloc_us: float
    steps: int
    tp_ranks: int


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """Per step and rank: four ops a layer (two kernels, two all-reduces) plus a handful for the step."""
    p = ctx.params
    ops = p.steps * p.tp_ranks * (4 * p.layers + 12) + 16
    return WorkEstimate(ops, 64 * p.steps * p.tp_ranks, "steps")


def prepare(ctx: PrepareContext) -> TensorParallelInputs:
    p = ctx.params
    return TensorParallelInputs(
        layers=p.layers,
        attn_us=p.attn_us / p.tp_ranks,
        mlp_us=p.mlp_us / p.tp_ranks,
        all_reduce_bytes=p.batch * p.hidden_size * p.dtype_bytes,
        backup_bytes=p.layers * p.batch * -(-p.kv_bytes_per_token_per_layer // p.tp_ranks),
        schedule_us=p.schedule_us,
        host_alloc_us=p.host_alloc_us,
        steps=p.steps,
        tp_ranks=p.tp_ranks,
    )
