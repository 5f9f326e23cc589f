"""Inputs of the collective sweep: one collective at each message size, on ``gpus`` GPUs.

* ``gpus``: the communicator (all the run's devices); ``sizes_bytes``: nccl-tests'
  sizes (default 1 KiB, 4 KiB, ... 1 GiB); ``iters``: timed calls per size, after
  ``warmup`` untimed ones; every rank syncs its stream between sizes.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from harness.workload import PrepareContext, WorkEstimate, WorkloadParams

DEFAULT_SIZES = [1024 << (2 * i) for i in range(11)]  # 1 KiB .. 1 GiB


class CollectiveSweepParams(WorkloadParams):
    """The ``[workload]`` table of a collective-sweep spec."""

    gpus: int = pydantic.Field(ge=1, le=64)
    sizes_bytes: list[int] = pydantic.Field(default_factory=lambda: list(DEFAULT_SIZES), min_length=1)
    iters: int = pydantic.Field(default=20, ge=1)
    warmup: int = pydantic.Field(default=3, ge=0)

    @pydantic.field_validator("sizes_bytes")
    @classmethod
    def _positive_increasing(cls, sizes: list[int]) -> list[int]:
        if sizes != sorted(set(sizes)) or sizes[0] <= 0:
            raise ValueError("sizes must be positive and strictly increasing")
        return sizes


@dataclass(frozen=True)
class CollectiveSweepInputs:
    gpus: int
    sizes_bytes: tuple[int, ...]
    iters: int
    warmup: int


def estimate(ctx: PrepareContext) -> WorkEstimate:
    p = ctx.params
    ops = len(p.sizes_bytes) * p.gpus * (p.iters + p.warmup + 4) + 16
    return WorkEstimate(ops, 1024 * p.gpus, "sizes_bytes")


def prepare(ctx: PrepareContext) -> CollectiveSweepInputs:
    p = ctx.params
    return CollectiveSweepInputs(p.gpus, tuple(p.sizes_bytes), p.iters, p.warmup)
