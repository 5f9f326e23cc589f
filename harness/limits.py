"""How big a spec may be before it is refused, and the bounds every input value must keep.

A spec is sized before anything is prepared: each workload's ``estimate``
(``harness.workload.WorkEstimate``) says how many ops one run adds and what
memory its inputs hold, and the runner multiplies by the runs (policies, sweep
points, repetitions). Beyond a limit the spec is refused with a message naming
the field that sets the size and how to raise the limit.

========================  ===========  ==================================  =====================
limit                     default      environment variable                option (sim, replay)
========================  ===========  ==================================  =====================
runs per spec             10,000       ``HARNESS_MAX_RUNS``                ``--max-runs``
ops per spec (all runs)   50,000,000   ``HARNESS_MAX_OPS``                 ``--max-ops``
memory estimate           4 GB         ``HARNESS_MAX_MEMORY_GB``           ``--max-memory-gb``
========================  ===========  ==================================  =====================

The memory estimate counts what the run holds until the results are written:
every op row (:data:`OP_ROW_BYTES` each, measured on the layer-streaming bench,
or the workload's own ``WorkEstimate.bytes_per_op``) plus each run's inputs and
tables; the interpreter's own ~0.2 GB comes on top.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path

from harness.errors import InputError

MAX_DURATION_US = 1e12
"""Longest duration or time any input may give, µs (about 11.6 days): beyond it float µs lose sub-µs resolution
and sums of such values overflow to ``inf``."""

OP_ROW_BYTES = 600
"""Memory one op row costs from the simulation until the results are written (measured: ~525 bytes)."""

ENV_RUNS, ENV_OPS, ENV_MEMORY = "HARNESS_MAX_RUNS", "HARNESS_MAX_OPS", "HARNESS_MAX_MEMORY_GB"


@dataclass(frozen=True)
class Limits:
    max_runs: int = 10_000
    max_ops: int = 50_000_000
    max_memory_bytes: int = 4_000_000_000

    @classmethod
    def from_env(cls) -> Limits:
        """The defaults, each replaced by its environment variable when set."""
        limits = cls()
        if (raw := os.environ.get(ENV_RUNS)) is not None:
            limits = replace(limits, max_runs=int(_positive(ENV_RUNS, raw)))
        if (raw := os.environ.get(ENV_OPS)) is not None:
            limits = replace(limits, max_ops=int(_positive(ENV_OPS, raw)))
        if (raw := os.environ.get(ENV_MEMORY)) is not None:
            limits = replace(limits, max_memory_bytes=int(_positive(ENV_MEMORY, raw) * 1e9))
        return limits

    def with_options(
        self, max_runs: int | None = None, max_ops: int | None = None, max_memory_gb: float | None = None
    ) -> Limits:
        """These limits with the command line's options (None: keep) applied."""
        limits = self
        if max_runs is not None:
            limits = replace(limits, max_runs=max_runs)
        if max_ops is not None:
            limits = replace(limits, max_ops=max_ops)
        if max_memory_gb is not None:
            limits = replace(limits, max_memory_bytes=int(max_memory_gb * 1e9))
        return limits


def beyond(ops: int, memory_bytes: int, limits: Limits) -> str | None:
    """What is beyond ``limits`` and how to raise it, or None when the work fits."""
    if memory_bytes > limits.max_memory_bytes:
        return (
            f"about {human_bytes(memory_bytes)} of memory, beyond the limit of {human_bytes(limits.max_memory_bytes)}; "
            f"raise it with --max-memory-gb or {ENV_MEMORY}"
        )
    if ops > limits.max_ops:
        return f"about {ops:,} ops, beyond the limit of {limits.max_ops:,}; raise it with --max-ops or {ENV_OPS}"
    return None


def _positive(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise InputError(f"environment variable {name}", "", f"must be a number > 0, got {raw!r}")
    return value


def human_bytes(n: float) -> str:
    return f"{n / 1e9:,.1f} GB" if n >= 1e8 else f"{n / 1e6:,.1f} MB"


def file_rows(path: Path) -> int | None:
    """Rows of a Parquet or CSV input file, cheaply (Parquet metadata; CSV line count); None when unreadable.

    For a workload's ``estimate``: an unreadable file is left for ``prepare`` to report.
    """
    try:
        if path.suffix.lower() == ".csv":
            lines, last = 0, b"\n"
            with path.open("rb") as f:
                while chunk := f.read(1 << 20):
                    lines += chunk.count(b"\n")
                    last = chunk[-1:]
            return max(0, lines + (last != b"\n") - 1)  # less the header
        import pyarrow.parquet as pq

        return pq.ParquetFile(path).metadata.num_rows
    except Exception:  # missing, a folder, not Parquet: prepare names the problem
        return None
