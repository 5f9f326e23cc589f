"""Inputs of the offload-coordinator workload: a stream of blocks and the machine's rates.

A block is a slice of the input stream that is compressed on its own. Blocks
come either from a block-size trace (a CSV file with one ``block_bytes`` column,
one row per block, in stream order) or from a generated corpus
(``corpus_bytes`` cut into ``block_bytes`` pieces, the last one shorter).

Compressing a block runs a fixed list of **stages** in order (say LZ match
finding, then entropy encoding). Each stage has a CPU throughput per thread
(``cpu_mibps``) and, when the GPU can run it, a GPU throughput
(``gpu_mibps``); the GPU-capable stages must come first. A block routed to the
GPU runs those leading stages there, as part of a batch, and the rest on a
CPU thread. ``cost_jitter`` scales each block's work (every stage alike) by a
seeded uniform factor in ``1 +- cost_jitter``: blocks of a real corpus differ
in how hard they are to compress.

Rates are MiB/s (2**20 bytes per second); a stage's time for a block is
``block_bytes * cost_scale / rate``.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pydantic

from harness.errors import SPEC_WORKLOAD, InputError
from harness.limits import MAX_DURATION_US, file_rows
from harness.runtime import HostMemory
from harness.workload import PrepareContext, WorkEstimate, WorkloadParams

MIB = 1 << 20
BYTES_PER_US_PER_MIBPS = MIB / 1e6  # 1 MiB/s moves this many bytes per µs


class StageParams(pydantic.BaseModel):
    """One ``[[workload.stages]]`` table."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)

    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9_.-]+$")
    cpu_mibps: float = pydantic.Field(gt=0, allow_inf_nan=False)  # one CPU thread
    gpu_mibps: float | None = pydantic.Field(default=None, gt=0, allow_inf_nan=False)  # None: CPU only


class OffloadParams(WorkloadParams):
    """The ``[workload]`` table of an offload-coordinator spec."""

    block_sizes: str | None = None  # CSV with a `block_bytes` column, relative to the spec file
    corpus_bytes: int | None = pydantic.Field(default=None, gt=0)
    block_bytes: int | None = pydantic.Field(default=None, gt=0)
    cost_jitter: float = pydantic.Field(default=0.0, ge=0.0, lt=1.0)
    stages: list[StageParams] = pydantic.Field(min_length=1)
    cpu_workers: int = pydantic.Field(ge=1)
    cpu_queue_blocks: int | None = pydantic.Field(default=None, ge=1)  # default: cpu_workers
    batch_blocks: int = pydantic.Field(ge=1)  # blocks per GPU batch
    pressure_limit: int = pydantic.Field(ge=1)  # blocks; a block goes to the GPU only while pressure < limit
    h2d_ratio: float = pydantic.Field(default=1.0, ge=0.0, allow_inf_nan=False)  # H2D bytes per input byte
    d2h_ratio: float = pydantic.Field(default=1.0, ge=0.0, allow_inf_nan=False)  # D2H bytes per input byte
    host_memory: HostMemory = HostMemory.PINNED
    gpu_streams: int = pydantic.Field(default=1, ge=1, le=16)  # batches go to these round-robin
    kernel_share: float = pydantic.Field(default=1.0, gt=0.0, le=1.0)
    timeline_buckets: int = pydantic.Field(default=10, ge=1)  # buckets of the GPU-share-over-time metric

    @pydantic.model_validator(mode="after")
    def _check(self) -> OffloadParams:
        generated = (self.corpus_bytes, self.block_bytes)
        if self.block_sizes is not None:
            if any(v is not None for v in generated):
                raise ValueError("give either 'block_sizes' or 'corpus_bytes' and 'block_bytes', not both")
        elif any(v is None for v in generated):
            raise ValueError("give 'block_sizes' (a CSV file), or both 'corpus_bytes' and 'block_bytes'")
        names = [s.name for s in self.stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        seen_cpu_only = False
        for stage in self.stages:
            if stage.gpu_mibps is None:
                seen_cpu_only = True
            elif seen_cpu_only:
                raise ValueError(
                    f"stage {stage.name!r} has gpu_mibps but follows a CPU-only stage; "
                    "GPU-capable stages must come first"
                )
        return self


@dataclass(frozen=True, slots=True)
class Stage:
    name: str
    cpu_bytes_per_us: float
    gpu_bytes_per_us: float | None

    def cpu_us(self, work_bytes: float) -> float:
        return work_bytes / self.cpu_bytes_per_us

    def gpu_us(self, work_bytes: float) -> float:
        assert self.gpu_bytes_per_us is not None
        return work_bytes / self.gpu_bytes_per_us


@dataclass(frozen=True, slots=True)
class Block:
    index: int  # position in the stream
    nbytes: int
    cost_scale: float = 1.0  # multiplies every stage's time for this block

    @property
    def work_bytes(self) -> float:
        return self.nbytes * self.cost_scale


@dataclass(frozen=True)
class OffloadInputs:
    blocks: tuple[Block, ...]
    stages: tuple[Stage, ...]
    cpu_workers: int
    cpu_queue_blocks: int
    batch_blocks: int
    pressure_limit: int
    h2d_ratio: float
    d2h_ratio: float
    host_memory: HostMemory
    gpu_streams: int
    kernel_share: float
    timeline_buckets: int
    source: str  # the block-size file, or "generated"

    @property
    def gpu_stages(self) -> tuple[Stage, ...]:
        """The leading stages a GPU-routed block runs on the GPU."""
        return tuple(s for s in self.stages if s.gpu_bytes_per_us is not None)

    @property
    def total_bytes(self) -> int:
        return sum(b.nbytes for b in self.blocks)


OPS_PER_BLOCK = 4  # measured: 782 ops for 391 blocks (CPU only); GPU batches add a few per batch
BYTES_PER_BLOCK = 400


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """One run's size: a few ops per block (the block-size file's rows, or the corpus over the block size)."""
    params = ctx.params
    if params.block_sizes is not None:
        blocks = file_rows((ctx.spec_dir / params.block_sizes).resolve()) or 0
        driver = "block_sizes"
    else:
        blocks = -(-params.corpus_bytes // params.block_bytes)
        driver = "corpus_bytes"
    return WorkEstimate(OPS_PER_BLOCK * blocks + 64, BYTES_PER_BLOCK * blocks, driver)


def prepare(ctx: PrepareContext) -> OffloadInputs:
    params, spec_dir, device_memory_bytes, seed = ctx.params, ctx.spec_dir, ctx.device_memory_bytes, ctx.seed
    if params.block_sizes is not None:
        path = (spec_dir / params.block_sizes).resolve()
        sizes = read_block_sizes(path)
        source = str(path)
    else:
        assert params.corpus_bytes is not None and params.block_bytes is not None
        sizes = corpus_block_sizes(params.corpus_bytes, params.block_bytes)
        source = "generated"
    scales = np.ones(len(sizes))
    if params.cost_jitter > 0:
        scales = 1 + params.cost_jitter * np.random.default_rng(seed).uniform(-1, 1, len(sizes))
    blocks = tuple(Block(i, int(n), float(s)) for i, (n, s) in enumerate(zip(sizes, scales)))
    stages = tuple(
        Stage(
            s.name,
            s.cpu_mibps * BYTES_PER_US_PER_MIBPS,
            None if s.gpu_mibps is None else s.gpu_mibps * BYTES_PER_US_PER_MIBPS,
        )
        for s in params.stages
    )
    slowest = max(b.work_bytes for b in blocks) / min(s.cpu_bytes_per_us for s in stages) * len(stages)
    if not slowest <= MAX_DURATION_US:
        raise InputError(
            SPEC_WORKLOAD,
            "field 'stages'",
            f"a block would take {slowest:.3g} µs on a CPU, beyond {MAX_DURATION_US:.0e}",
        )
    largest_batch = sum(sorted((b.nbytes for b in blocks), reverse=True)[: params.batch_blocks])
    staged = int(largest_batch * max(params.h2d_ratio, params.d2h_ratio))
    if staged > device_memory_bytes:
        raise InputError(
            SPEC_WORKLOAD,
            "field 'batch_blocks'",
            f"a batch may stage {staged} bytes, more than the device's {device_memory_bytes}",
        )
    return OffloadInputs(
        blocks=blocks,
        stages=stages,
        cpu_workers=params.cpu_workers,
        cpu_queue_blocks=params.cpu_queue_blocks or params.cpu_workers,
        batch_blocks=params.batch_blocks,
        pressure_limit=params.pressure_limit,
        h2d_ratio=params.h2d_ratio,
        d2h_ratio=params.d2h_ratio,
        host_memory=params.host_memory,
        gpu_streams=params.gpu_streams,
        kernel_share=params.kernel_share,
        timeline_buckets=params.timeline_buckets,
        source=source,
    )


def corpus_block_sizes(corpus_bytes: int, block_bytes: int) -> list[int]:
    """A corpus cut into blocks of ``block_bytes``; the last block holds the remainder."""
    full, rest = divmod(corpus_bytes, block_bytes)
    return [block_bytes] * full + ([rest] if rest else [])


def read_block_sizes(path: Path) -> list[int]:
    """Block sizes from a CSV file with a ``block_bytes`` column, one row per block."""
    try:
        frame = pd.read_csv(path)
    except FileNotFoundError:
        raise InputError(path, "", "block-size file not found") from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(path, "", f"not a readable CSV file ({err})") from None
    if "block_bytes" not in frame.columns:
        raise InputError(
            path, "column 'block_bytes'", f"missing (columns: {', '.join(map(str, frame.columns)) or 'none'})"
        )
    if frame.empty:
        raise InputError(path, "", "no blocks")
    sizes = []
    for row, value in enumerate(frame["block_bytes"]):
        number = pd.to_numeric(value, errors="coerce")
        if not (number == number) or number != int(number) or int(number) <= 0:
            raise InputError(
                path, f"row {row}, column 'block_bytes'", f"must be a positive whole number of bytes, got {value!r}"
            )
        sizes.append(int(number))
    return sizes
