"""Inputs of the layer-streaming workload: the segments of an offloaded model.

Each segment has parameters that live in host memory (``param_bytes``) and a
compute time on the GPU (``compute_us``). Segments come either from an op trace
(grouped by its ``group`` column: a segment's bytes are the sum of its H2D
copies, its compute the sum of its kernels) or from a few parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pydantic

from harness.errors import SPEC_WORKLOAD, InputError
from harness.limits import MAX_DURATION_US, file_rows
from harness.runtime import HostMemory
from harness.trace import load_trace
from harness.workload import PrepareContext, WorkEstimate, WorkloadParams

OPS_PER_SEGMENT = 5  # prefetch: alloc'd copy, record, wait, kernel, sync (measured: 99,998 ops for 20,000 segments)
BYTES_PER_SEGMENT = 400  # the segment, its metric rows and (from a trace) its rows in the trace frame


class LayerStreamingParams(WorkloadParams):
    """The ``[workload]`` table of a layer-streaming spec."""

    trace: str | None = None  # op-trace file, relative to the spec file
    segments: int | None = pydantic.Field(default=None, ge=1)
    param_bytes: int | list[int] | None = None
    compute_us: float | list[float] | None = None
    jitter: float = pydantic.Field(default=0.0, ge=0.0, lt=1.0)  # relative, uniform +-, seeded
    compute_share: float = pydantic.Field(default=1.0, gt=0.0, le=1.0)
    host_memory: HostMemory = HostMemory.PINNED

    @pydantic.model_validator(mode="after")
    def _one_source(self) -> LayerStreamingParams:
        generated = [self.segments, self.param_bytes, self.compute_us]
        if self.trace is not None:
            if any(v is not None for v in generated):
                raise ValueError("give either 'trace' or 'segments'/'param_bytes'/'compute_us', not both")
            return self
        if any(v is None for v in generated):
            raise ValueError("give 'trace', or all of 'segments', 'param_bytes' and 'compute_us'")
        for name in ("param_bytes", "compute_us"):
            value = getattr(self, name)
            values = value if isinstance(value, list) else [value]
            if isinstance(value, list) and len(value) != self.segments:
                raise ValueError(f"'{name}' lists {len(value)} values for {self.segments} segments")
            for v in values:
                if not v >= 0 or v != v or (name == "param_bytes" and v <= 0):
                    raise ValueError(f"'{name}' values must be {'> 0' if name == 'param_bytes' else '>= 0'}, got {v}")
                if name == "compute_us" and not v <= MAX_DURATION_US:
                    raise ValueError(f"'compute_us' values must be at most {MAX_DURATION_US:.0e} µs, got {v}")
        return self


@dataclass(frozen=True, slots=True)
class Segment:
    index: int
    param_bytes: int
    compute_us: float


@dataclass(frozen=True)
class LayerStreamingInputs:
    segments: tuple[Segment, ...]
    host_memory: HostMemory
    compute_share: float
    source: str  # the trace path, or "generated"


def prepare(ctx: PrepareContext) -> LayerStreamingInputs:
    params, spec_dir, device_memory_bytes, seed = ctx.params, ctx.spec_dir, ctx.device_memory_bytes, ctx.seed
    if params.trace is not None:
        path = (spec_dir / params.trace).resolve()
        segments = segments_from_trace(path)
        source = str(path)
    else:
        segments = generate_segments(params, seed)
        source = "generated"
    for seg in segments:
        if seg.param_bytes > device_memory_bytes:
            raise InputError(
                source if params.trace is not None else SPEC_WORKLOAD,
                f"segment {seg.index}",
                f"param_bytes={seg.param_bytes} exceeds device memory of {device_memory_bytes} bytes",
            )
    return LayerStreamingInputs(tuple(segments), params.host_memory, params.compute_share, source)


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """One run's size: about five ops per segment (the trace's rows bound its segments)."""
    params = ctx.params
    if params.trace is not None:
        segments = file_rows((ctx.spec_dir / params.trace).resolve()) or 0
        return WorkEstimate(OPS_PER_SEGMENT * segments + 8, BYTES_PER_SEGMENT * segments, "trace")
    return WorkEstimate(OPS_PER_SEGMENT * params.segments + 8, BYTES_PER_SEGMENT * params.segments, "segments")


def generate_segments(params: LayerStreamingParams, seed: int) -> list[Segment]:
    n = params.segments
    assert n is not None and params.param_bytes is not None and params.compute_us is not None
    sizes = np.broadcast_to(np.asarray(params.param_bytes, dtype=float), (n,))
    times = np.broadcast_to(np.asarray(params.compute_us, dtype=float), (n,))
    if params.jitter > 0:
        rng = np.random.default_rng(seed)
        sizes = sizes * (1 + params.jitter * rng.uniform(-1, 1, n))
        times = times * (1 + params.jitter * rng.uniform(-1, 1, n))
    return [Segment(i, max(1, int(round(b))), float(t)) for i, (b, t) in enumerate(zip(sizes, times))]


def segments_from_trace(path: Path) -> list[Segment]:
    """One segment per ``group`` of the trace, in order of first appearance."""
    ops = load_trace(path).ops
    if ops["group"].isna().any():
        row = int(ops["group"].isna().to_numpy().argmax())
        raise InputError(path, f"row {row}, column 'group'", "layer streaming needs every op to name its segment")
    segments = []
    for index, (group, rows) in enumerate(ops.groupby("group", sort=False)):
        copies = rows[rows["kind"] == "copy_h2d"]
        kernels = rows[rows["kind"] == "kernel"]
        if copies.empty:
            raise InputError(path, f"group {group!r}", "segment has no copy_h2d op (its parameters)")
        with np.errstate(over="ignore"):  # 1e308 + 1e308: inf, refused below
            compute_us = float(kernels["duration_us"].to_numpy().sum())
        if not compute_us <= MAX_DURATION_US:
            raise InputError(
                path,
                f"group {group!r}",
                f"its kernels last {compute_us} µs, beyond {MAX_DURATION_US:.0e} µs (11.6 days)",
            )
        segments.append(Segment(index, int(copies["bytes"].sum()), compute_us))
    if not segments:
        raise InputError(path, "", "trace has no ops")
    return segments
