"""Inputs of the pipeline-forwarding workload: decode split into stages on several GPUs/hosts.

The model's layers are split into ``stages``; stage ``s`` runs on its own GPU
(device ``s % gpus``) driven by its own host thread. Each decode token's
activation (``activation_bytes``) leaves a stage's GPU (D2H), is encoded on the
host (``encode_us``), crosses the network to the next stage's host
(``link_latency_us + bytes / link_gbit_per_s``) and enters that stage's GPU
(H2D). The last stage samples the token and returns it (``return_bytes``) over
the same kind of link to stage 0, which needs it for the next token; stage 0
also does per-token host setup (``stage0_setup_us``: sampler and direct-return
handling, building the next step's input). ``alloc_us`` is the per-token
allocation a forwarding stage pays when it builds a new encode buffer and
message envelope for every token.

``sequences`` decode streams are in flight at once (1: one token travels the
pipeline at a time, as in single-stream decode); ``tokens`` tokens are decoded
for each.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from harness.workload import PrepareContext, WorkEstimate, WorkloadParams

OPS_PER_TOKEN_STAGE = 8  # measured: 416 ops for 32 tokens through 2 stages (alloc_per_token)


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """One run's size: a handful of ops per token, stage and sequence."""
    p = ctx.params
    ops = OPS_PER_TOKEN_STAGE * p.tokens * p.stages * p.sequences + 16
    return WorkEstimate(ops, 64 * p.tokens * p.sequences, "tokens")


class PipelineParams(WorkloadParams):
    """The ``[workload]`` table of a pipeline-forwarding spec."""

    stages: int = pydantic.Field(ge=2, le=64)
    compute_us: float | list[float]  # per stage per token; one value for every stage or one per stage
    activation_bytes: int = pydantic.Field(ge=1)
    encode_us: float = pydantic.Field(default=0.0, ge=0)
    alloc_us: float = pydantic.Field(default=0.0, ge=0)
    stage0_setup_us: float = pydantic.Field(default=0.0, ge=0)
    link_latency_us: float = pydantic.Field(default=0.0, ge=0)
    link_gbit_per_s: float = pydantic.Field(gt=0)
    return_bytes: int = pydantic.Field(default=64, ge=1)
    tokens: int = pydantic.Field(ge=2)
    sequences: int = pydantic.Field(default=1, ge=1, le=64)
    gpus: int | None = pydantic.Field(default=None, ge=1)  # devices to place stages on; default one per stage

    @pydantic.model_validator(mode="after")
    def _per_stage_lists(self) -> PipelineParams:
        if isinstance(self.compute_us, list):
            if len(self.compute_us) != self.stages:
                raise ValueError(f"'compute_us' lists {len(self.compute_us)} values for {self.stages} stages")
            if any(not v >= 0 for v in self.compute_us):
                raise ValueError("'compute_us' values must be >= 0")
        elif not self.compute_us >= 0:
            raise ValueError("'compute_us' must be >= 0")
        if self.gpus is not None and self.gpus > self.stages:
            raise ValueError(f"gpus={self.gpus} exceeds stages={self.stages}")
        return self


@dataclass(frozen=True)
class PipelineInputs:
    stages: int
    compute_us: tuple[float, ...]  # per stage
    activation_bytes: int
    encode_us: float
    alloc_us: float
    stage0_setup_us: float
    link_latency_us: float
    link_gbit_per_s: float
    return_bytes: int
    tokens: int
    sequences: int
    gpus: int

    def device(self, stage: int) -> int:
        return stage % self.gpus

    def link_us(self, nbytes: int) -> float:
        """Network time of one message: latency plus bytes at the link's rate (Gbit/s = 1e3 bits/µs)."""
        return self.link_latency_us + nbytes * 8 / (self.link_gbit_per_s * 1e3)


def prepare(ctx: PrepareContext) -> PipelineInputs:
    params = ctx.params
    compute = params.compute_us if isinstance(params.compute_us, list) else [params.compute_us] * params.stages
    return PipelineInputs(
        stages=params.stages,
        compute_us=tuple(float(c) for c in compute),
        activation_bytes=params.activation_bytes,
        encode_us=params.encode_us,
        alloc_us=params.alloc_us,
        stage0_setup_us=params.stage0_setup_us,
        link_latency_us=params.link_latency_us,
        link_gbit_per_s=params.link_gbit_per_s,
        return_bytes=params.return_bytes,
        tokens=params.tokens,
        sequences=params.sequences,
        gpus=params.gpus or params.stages,
    )
