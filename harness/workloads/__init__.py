"""Workloads: their inputs, their policies and their metrics, in one registry.

A workload is a folder here with a module-level :class:`Workload`. Adding a
policy means adding one entry to its workload's ``policies`` mapping.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic

from harness.profile import Profile
from harness.runtime import PolicyGen, Runtime


class PolicyParams(pydantic.BaseModel):
    """Base of every policy's parameters: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


@dataclass(frozen=True)
class PolicyDef:
    """A policy: its parameters and its main host-thread function."""

    name: str
    params: type[PolicyParams]
    main: Callable[[Runtime, Any, Any], PolicyGen]  # main(rt, inputs, params)
    summary: str


@dataclass(frozen=True)
class MetricRow:
    metric: str
    value: float
    unit: str
    item: int = -1  # -1: the whole run


@dataclass(frozen=True)
class Workload:
    name: str
    params: type[pydantic.BaseModel]
    # prepare(params, spec_dir, profile, device_memory_bytes, seed) -> inputs. Raises InputError naming
    # the file it read, or harness.errors.SPEC_WORKLOAD for a problem in the spec's [workload] values.
    prepare: Callable[[Any, Path, Profile, int, int], Any]
    policies: dict[str, PolicyDef]
    # metrics(inputs, ops of one run, the policy's return value) -> rows
    metrics: Callable[[Any, pd.DataFrame, Any], list[MetricRow]]
    summary_metrics: tuple[str, ...] = field(default=())  # shown in the CLI's table
    devices: Callable[[Any], int] = lambda params: 1
    # Optional tables of the workload's own next to runs/ops/metrics (a per-request table, say):
    # tables(inputs, ops of one run, the policy's return value) -> {table name: frame without run_id}.
    # Each name needs its Arrow schema in extra_tables, with "run_id" as first column; the runner adds
    # run_id to every row and writes <name>.parquet (an empty table when no run succeeded).
    tables: Callable[[Any, pd.DataFrame, Any], dict[str, pd.DataFrame]] | None = None
    extra_tables: dict[str, Any] = field(default_factory=dict)  # name -> pyarrow.Schema


def registry() -> dict[str, Workload]:
    from harness.workloads.layer_streaming import WORKLOAD as layer_streaming
    from harness.workloads.offload_coordinator import WORKLOAD as offload_coordinator
    from harness.workloads.kv_backup import WORKLOAD as kv_backup
    from harness.workloads.pipeline_forwarding import WORKLOAD as pipeline_forwarding
    from harness.workloads.continuous_batching import WORKLOAD as continuous_batching

    return {w.name: w for w in (layer_streaming, kv_backup, offload_coordinator, pipeline_forwarding, continuous_batching)}
