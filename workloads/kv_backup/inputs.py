"""Inputs of the KV-backup workload: a decode loop whose newest KV goes to host memory.

Every decode step writes one new token's KV for every layer of every sequence in
the batch. The workload backs that KV up to a host pool; the inputs say how
much there is and how long the step around it takes:

* ``layers``, ``batch`` and ``kv_bytes_per_token_per_layer`` size the backup:
  each rank copies ``batch * kv_bytes_per_token_per_layer`` bytes per layer per
  step. The byte count is *per rank*: it is the slice of one token's KV that one
  tensor-parallel rank holds (its shard; for MLA models, where every rank holds
  the whole latent, it is the whole latent).
* ``forward_us``: the decode forward on the GPU (one CUDA-graph launch).
* ``schedule_us``: host work of the scheduler between two forwards (batch
  preparation, output processing). The async backup overlaps it.
* ``host_alloc_us``: host time to allocate the host-pool slots of one backup.
* ``layers_per_copy``: layers one D2H copy moves (1: a copy per layer; unset:
  one copy for all layers, as an all-layer transfer kernel does).
* ``steps``: decode steps; ``tp_ranks``: tensor-parallel ranks, one GPU each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from harness.workload import PrepareContext, WorkEstimate, WorkloadParams


class KvBackupParams(WorkloadParams):
    """The ``[workload]`` table of a KV-backup spec."""

    layers: int = pydantic.Field(ge=1)
    batch: int = pydantic.Field(ge=1)
    kv_bytes_per_token_per_layer: int = pydantic.Field(ge=1)  # per rank (its shard)
    forward_us: float = pydantic.Field(gt=0)
    schedule_us: float = pydantic.Field(default=0.0, ge=0)
    host_alloc_us: float = pydantic.Field(default=0.0, ge=0)
    steps: int = pydantic.Field(ge=2)
    tp_ranks: int = pydantic.Field(default=1, ge=1, le=64)
    layers_per_copy: int | None = pydantic.Field(default=None, ge=1)

    @pydantic.model_validator(mode="after")
    def _copy_fits_layers(self) -> KvBackupParams:
        if self.layers_per_copy is not None and self.layers_per_copy > self.layers:
            raise ValueError(f"layers_per_copy={self.layers_per_copy} exceeds layers={self.layers}")
        return self


@dataclass(frozen=True)
class KvBackupInputs:
    layers: int
    batch: int
    kv_bytes_per_token_per_layer: int
    forward_us: float
    schedule_us: float
    host_alloc_us: float
    steps: int
    tp_ranks: int
    layers_per_copy: int

    def layer_groups(self) -> list[tuple[int, int]]:
        """``(first, last)`` layers of each backup copy."""
        return [
            (first, min(first + self.layers_per_copy, self.layers) - 1)
            for first in range(0, self.layers, self.layers_per_copy)
        ]

    def layer_bytes(self, tokens: int = 1) -> int:
        """Bytes of one layer's backup copy covering ``tokens`` decode steps, on one rank."""
        return tokens * self.batch * self.kv_bytes_per_token_per_layer

    @property
    def step_bytes(self) -> int:
        """Bytes one rank must back up per decode step (all layers)."""
        return self.layers * self.layer_bytes()


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """One run's size: per step and rank, a few ops plus two per backup copy (measured: 69 with 61 copies)."""
    p = ctx.params
    copies = -(-p.layers // (p.layers_per_copy or p.layers))
    ops = p.steps * p.tp_ranks * (8 + 2 * copies) + 16
    return WorkEstimate(ops, 64 * p.steps * p.tp_ranks, "steps")


def prepare(ctx: PrepareContext) -> KvBackupInputs:
    params = ctx.params
    return KvBackupInputs(
        layers=params.layers,
        batch=params.batch,
        kv_bytes_per_token_per_layer=params.kv_bytes_per_token_per_layer,
        forward_us=params.forward_us,
        schedule_us=params.schedule_us,
        host_alloc_us=params.host_alloc_us,
        steps=params.steps,
        tp_ranks=params.tp_ranks,
        layers_per_copy=params.layers_per_copy or params.layers,
    )
