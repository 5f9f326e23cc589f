"""The optional ``[topology]`` and ``[[collectives]]`` sections of a hardware profile (many GPUs).

``[topology]`` says how the GPUs of one host are joined and what NCCL gets out of
it: the closed-form model of ``sim.collectives`` runs on these figures. Every
field has a default (quoted NVLink 4 figures of an 8 x H100 SXM host), so a
profile without the section stays valid and still simulates collectives::

    [topology]
    interconnect = "nvlink"     # or "pcie"
    bus_gbps = 360.0            # ring bus bandwidth (nccl-tests busbw, GB/s) at large sizes
    tree_bus_gbps = 180.0       # the same for NCCL's tree (lower within one host)
    p2p_gbps = 360.0            # one send/recv between two GPUs
    base_latency_us = 7.0       # a collective's fixed cost (kernel start, protocol setup)
    step_latency_us = 0.6       # one hop of a ring or a tree
    compute_share = 0.15        # share of the GPU's SMs NCCL's kernels hold while they run
    algorithm = "auto"          # "ring", "tree", or "auto": the faster of the two (NCCL's tuner)

Each ``[[collectives]]`` entry is one measured curve (``harness calibrate
--collectives``): an operation at a GPU count, ``[size_bytes, time_us]`` samples
as nccl-tests reports them (``size``: the all-reduce buffer, the all-gather
output, the reduce-scatter input). Where a curve exists for an operation and GPU
count the simulator uses it (interpolated log-log); elsewhere the closed form::

    [[collectives]]
    op = "all_reduce"
    gpus = 4
    algorithm = "ring"          # what NCCL ran, as far as the calibration knows (informational)
    samples = [[1024, 14.1], [1048576, 28.0], [1073741824, 4120.0]]
"""

from __future__ import annotations

from typing import Literal

import pydantic

COLLECTIVE_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")
"""Operations a measured curve may describe (``send_recv``: one send and its recv, between two GPUs)."""


class _Strict(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class TopologyFigures(_Strict):
    """``[topology]``: the interconnect and NCCL's figures on it (defaults: 8 x H100 SXM, NVLink 4)."""

    interconnect: Literal["nvlink", "pcie"] = "nvlink"
    gpus: int | None = pydantic.Field(default=None, ge=1)  # GPUs of the host, when known
    bus_gbps: float = pydantic.Field(default=360.0, gt=0)
    tree_bus_gbps: float = pydantic.Field(default=180.0, gt=0)
    p2p_gbps: float = pydantic.Field(default=360.0, gt=0)
    base_latency_us: float = pydantic.Field(default=7.0, ge=0)
    step_latency_us: float = pydantic.Field(default=0.6, ge=0)
    compute_share: float = pydantic.Field(default=0.15, gt=0, le=1)
    algorithm: Literal["auto", "ring", "tree"] = "auto"


PCIE_TOPOLOGY = TopologyFigures(
    interconnect="pcie",
    bus_gbps=22.0,
    tree_bus_gbps=20.0,
    p2p_gbps=24.0,
    base_latency_us=9.0,
    step_latency_us=2.5,
    compute_share=0.1,
)
"""Quoted figures of GPUs joined only by PCIe Gen4/5 through the host (no NVLink): a starting point to copy."""


class CollectiveCurve(_Strict):
    """One ``[[collectives]]`` entry: a measured operation at one GPU count."""

    op: Literal["all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv"]
    gpus: int = pydantic.Field(ge=2)
    algorithm: str = ""
    samples: list[tuple[int, float]] = pydantic.Field(min_length=1)

    @pydantic.field_validator("samples")
    @classmethod
    def _sorted_positive(cls, samples: list[tuple[int, float]]) -> list[tuple[int, float]]:
        sizes = [s for s, _ in samples]
        if sizes != sorted(set(sizes)) or sizes[0] <= 0:
            raise ValueError("sample sizes must be positive and strictly increasing")
        if any(not t > 0 for _, t in samples):
            raise ValueError("sample times must be > 0")
        return samples

    @pydantic.model_validator(mode="after")
    def _send_recv_is_two(self) -> CollectiveCurve:
        if self.op == "send_recv" and self.gpus != 2:
            raise ValueError("a send_recv curve is between 2 GPUs (gpus = 2)")
        return self


def check_curves_unique(curves: list[CollectiveCurve]) -> list[CollectiveCurve]:
    """At most one curve per operation and GPU count (a pydantic validator's body)."""
    seen: set[tuple[str, int]] = set()
    for curve in curves:
        key = (curve.op, curve.gpus)
        if key in seen:
            raise ValueError(f"two curves for {curve.op} at {curve.gpus} GPUs")
        seen.add(key)
    return curves
