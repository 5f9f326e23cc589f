"""The workload contract: what a workload folder under ``workloads/`` provides.

A workload is one package ``workloads/<name>/`` whose ``__init__`` defines a
module-level ``WORKLOAD = Workload(...)``; :func:`registry` discovers it (and
any installed under the ``gpu_policy_harness.workloads`` entry-point group), so
nothing outside the folder names it. A workload provides:

* ``params``: its ``[workload]`` table, a :class:`WorkloadParams` subclass. The
  spec's ``kind`` key picks the workload and is not part of the parameters.
* ``prepare(ctx: PrepareContext) -> inputs``: the run's inputs, built once per
  spec from the parameters, the spec's folder, the hardware profile, the device
  budget and the seed. It raises :class:`harness.errors.InputError` naming the
  file it read, or ``harness.errors.SPEC_WORKLOAD`` for a problem in the spec's
  ``[workload]`` values.
* ``policies``: name -> :class:`PolicyDef`. A policy's ``main(rt, inputs,
  params)`` is a host-thread generator (``harness.runtime``) and returns a typed
  result (a frozen dataclass) that ``metrics`` reads.
* ``metrics(inputs, ops, result) -> list[MetricRow]`` over one run's ops table.
* optionally ``estimate(ctx: PrepareContext) -> WorkEstimate``: how big one run
  of these parameters is (ops, memory), worked out *without* preparing the
  inputs (at most reading a file's row count), so that the runner can refuse a
  spec beyond the limits (``harness.limits``) before it allocates anything.
* ``headline_metrics``: the metrics the verdict speaks about (:class:`harness.verdict.HeadlineMetric`: which
  side is better, and a measured reference where a run carries one); without them, the first summary metric
  whose name says which side is better.
* optionally its own results tables (``tables`` + ``extra_tables``), its own CLI
  commands (``commands``) and its own fidelity checks (``fidelity``).

Copy ``workloads/layer_streaming/`` to start a new one.
"""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import pandas as pd
import pydantic

from harness.backend import BackendFactory
from harness.limits import OP_ROW_BYTES
from harness.profile import Profile
from harness.runtime import PolicyGen, Runtime
from harness.verdict import HeadlineMetric, guess_better

ENTRY_POINT_GROUP = "gpu_policy_harness.workloads"


class WorkloadParams(pydantic.BaseModel):
    """Base of every workload's ``[workload]`` parameters: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class PolicyParams(pydantic.BaseModel):
    """Base of every policy's parameters: unknown keys are errors."""

    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)


class NoParams(PolicyParams):
    """The parameters of a policy that takes none."""


@dataclass(frozen=True)
class PrepareContext:
    """Everything ``prepare`` may use to build a spec's inputs."""

    params: Any  # the workload's WorkloadParams subclass
    spec_dir: Path  # relative paths in the parameters resolve against it
    profile: Profile
    device_memory_bytes: int  # the spec's device budget, capped by the profile's memory
    seed: int


@dataclass(frozen=True)
class PolicyDef:
    """A policy: its parameters and its main host-thread function ``main(rt, inputs, params)``."""

    name: str
    params: type[PolicyParams]
    main: Callable[[Runtime, Any, Any], PolicyGen]
    summary: str
    # check(inputs, params) raises ValueError when the policy does not apply to these inputs (a what-if
    # that finds nothing to change): the runner calls it before any run, and the spec is refused.
    check: Callable[[Any, Any], None] | None = None


@dataclass(frozen=True)
class WorkEstimate:
    """How big one policy run is, estimated from the parameters before anything is prepared.

    Upper bounds of the right order (within a factor of about two) are what is asked for.
    """

    ops: int  # rows the run adds to the ops table (its largest policy)
    memory_bytes: int  # memory the prepared inputs and the run's own tables hold, beyond the op rows
    driver: str = ""  # the [workload] field that sets the size ("requests", "segments"), named in a refusal
    bytes_per_op: int = OP_ROW_BYTES  # memory one of its op rows costs until the results are written


@dataclass(frozen=True)
class MetricRow:
    metric: str
    value: float
    unit: str
    item: int = -1  # -1: the whole run


# --------------------------------------------------------------------------- fidelity checks

Value = Callable[..., float]
"""``value(policy_label, metric, stat="median") -> float``: one side's figure of a run-level metric.

``stat`` is ``"median"`` (over the repetitions), ``"min"`` or ``"max"`` (the smallest and largest
repetition). The measured side answers each from the replay's repetitions; the simulated side holds
its median only and answers that for every ``stat``. A policy or metric the side lacks raises
``KeyError``.
"""


@dataclass(frozen=True)
class FidelityCheck:
    """A claim of the change a workload models, checked on the simulated and on the measured side.

    It applies to a spec that runs every policy (label) in ``needs``; ``holds(value)`` returns the
    verdict and the figures behind it, reading one side through ``value`` (:data:`Value`).
    """

    claim: str
    needs: tuple[str, ...]
    holds: Callable[[Value], tuple[bool, str]]


@dataclass(frozen=True)
class ErrorBound:
    """Limits on ``|simulated - measured| / measured`` of one metric over a workload's specs and policies."""

    metric: str
    median_limit: float
    worst_limit: float


@dataclass(frozen=True)
class Fidelity:
    """What the fidelity report (``fidelity/report.py``) shows for a workload and what it checks.

    ``shown_metrics``: the metrics of the report's table, in order. ``error_bounds``: limits on the
    relative error. ``ranked_metrics``: metrics by which every spec's policies must rank the same in
    sim and replay. ``checks``: the modelled change's claims, each checked on both sides.
    """

    shown_metrics: tuple[str, ...] = ("makespan_us",)
    error_bounds: tuple[ErrorBound, ...] = ()
    ranked_metrics: tuple[str, ...] = ()
    checks: tuple[FidelityCheck, ...] = ()


# --------------------------------------------------------------------------- the workload


CommandsFactory = Callable[[BackendFactory], Mapping[str, Callable[..., None]]]
"""``commands(simulator) -> {command name: typer command function}``; ``simulator`` builds sim backends."""


@dataclass(frozen=True)
class Workload:
    name: str
    params: type[WorkloadParams]
    prepare: Callable[[PrepareContext], Any]
    policies: dict[str, PolicyDef]
    metrics: Callable[[Any, pd.DataFrame, Any], list[MetricRow]]  # (inputs, ops of one run, the policy's result)
    summary_metrics: tuple[str, ...] = field(default=())  # shown in the CLI's table
    headline_metrics: tuple[HeadlineMetric, ...] = field(default=())  # what the verdict answers (harness.verdict)
    devices: Callable[[Any], int] = lambda params: 1  # how many GPUs a run of these parameters uses
    # Optional tables of the workload's own next to runs/ops/metrics (a per-request table, say):
    # tables(inputs, ops of one run, the policy's result) -> {table name: frame without run_id}.
    # Each name needs its Arrow schema in extra_tables, with "run_id" as first column; the runner adds
    # run_id to every row and writes <name>.parquet (an empty table when no run succeeded).
    tables: Callable[[Any, pd.DataFrame, Any], dict[str, pd.DataFrame]] | None = None
    # The metrics and tables read the ops' string columns only by value (compare, isin, .str tests, group-by): they
    # may take them as pandas categoricals (harness.backend.categorical_ops_frame), no string per row made.
    ops_categorical_strings: bool = False
    extra_tables: dict[str, Any] = field(default_factory=dict)  # name -> pyarrow.Schema
    commands: CommandsFactory | None = None  # extra `harness` commands of this workload
    # Optional lines `harness sim` / `replay` print below the summary table: notes(results tables by name) -> lines
    # (what a run changed, say: the recorded workload's what-ifs).
    notes: Callable[[dict[str, Any]], list[str]] | None = None
    fidelity: Fidelity = field(default_factory=Fidelity)
    estimate: Callable[[PrepareContext], WorkEstimate] | None = None  # size of one run, before prepare

    def headlines(self) -> tuple[HeadlineMetric, ...]:
        """The declared headline metrics, else the first summary metric whose better side its name tells."""
        if self.headline_metrics:
            return self.headline_metrics
        guessed = ((m, guess_better(m)) for m in self.summary_metrics)
        return tuple(HeadlineMetric(m, better) for m, better in guessed if better is not None)[:1]


@cache
def registry() -> dict[str, Workload]:
    """Every workload: the packages under ``workloads/`` and those installed under the entry-point group."""
    import workloads as package

    found: dict[str, Workload] = {}
    modules = [f"{package.__name__}.{m.name}" for m in pkgutil.iter_modules(package.__path__) if m.ispkg]
    for module in sorted(modules):
        workload = getattr(importlib.import_module(module), "WORKLOAD", None)
        if isinstance(workload, Workload):
            found[workload.name] = workload
    from importlib.metadata import entry_points  # here: ~50 ms of imports a command of one workload does without

    for entry in entry_points(group=ENTRY_POINT_GROUP):
        workload = entry.load()
        if isinstance(workload, Workload):
            found.setdefault(workload.name, workload)
    return found


def workload_named(name: object) -> Workload | None:
    """The workload ``name`` (None where there is none), as :func:`registry` finds it. A workload whose package
    under ``workloads/`` bears its name (as every bundled one does; the package of a name is its workload) is
    found by importing that package alone, without the others or the entry points: a ``harness sim`` of one
    spec imports ~0.15 s less."""
    import workloads as package

    if isinstance(name, str) and name.isidentifier() and registry.cache_info().currsize == 0:
        if any(m.ispkg and m.name == name for m in pkgutil.iter_modules(package.__path__)):
            workload = getattr(importlib.import_module(f"{package.__name__}.{name}"), "WORKLOAD", None)
            if isinstance(workload, Workload) and workload.name == name:
                return workload
    return registry().get(name) if isinstance(name, str) else None
