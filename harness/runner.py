"""Runs every policy of a spec on a backend and assembles the results tables.

A backend is a :class:`harness.backend.Backend` (the simulator, the replay
engine), made fresh for every run by a :data:`SpecBackendFactory`. Inputs are prepared once per
spec, so every policy sees the same segments/requests. A run that raises is
recorded with ``status = "failed"`` and its error, and the other runs go on.
A workload with ``tables``/``extra_tables`` (see ``workloads.Workload``)
adds tables of its own (e.g. ``requests``), with ``run_id`` in every row.

:func:`run_spec` is the serial loop over three pieces that any process can call:
:func:`prepare_spec` (size, inputs, policy checks), :func:`execute_run` (one run's
rows of every table) and :func:`assemble` (the runs' rows, in the spec's order, as
the results tables); ``harness.sweep`` runs the same pieces in parallel.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd
import pyarrow as pa

from harness import __version__
from harness.backend import Backend, categorical_ops_frame, ops_frame, ops_table
from harness.errors import SPEC_WORKLOAD, InputError
from harness.limits import Limits, beyond
from harness.memory_release import release_freed_memory
from harness.results import CORE_SCHEMAS, METRICS_SCHEMA, table_metadata, to_table
from harness.spec import LoadedSpec, PolicyRun

SpecBackendFactory = Callable[[LoadedSpec, int], Backend]  # (spec, repetition) -> a fresh backend


@dataclass(frozen=True)
class SpecEstimate:
    """How big a spec's runs are, from its workload's ``estimate`` (``harness.workload.WorkEstimate``)."""

    runs: int
    ops_per_run: int
    ops: int  # all runs
    memory_bytes: int  # held until the results are written: every op row plus each run's inputs and tables
    driver: str  # the [workload] field that sets one run's size


@dataclass(frozen=True)
class RunStart:
    """Handed to ``run_spec``'s ``on_start`` as each run begins (progress displays poll ``backend.ops``)."""

    index: int  # 0-based among the spec's runs
    total: int
    run_id: str
    backend: Backend
    estimated_ops: int  # 0 when the workload gives no estimate


def _rehome(loaded: LoadedSpec, err: InputError) -> InputError:
    """A workload's problem in the spec's own [workload] values, named in the spec file."""
    if err.source != SPEC_WORKLOAD:
        return err
    if err.where.startswith("field '"):  # "field 'x'" -> "field 'workload.x'"
        return InputError(loaded.path, "field 'workload." + err.where.removeprefix("field '"), err.message)
    return InputError(loaded.path, f"field 'workload', {err.where}" if err.where else "field 'workload'", err.message)


def estimate_spec(loaded: LoadedSpec) -> SpecEstimate | None:
    """The spec's size from its workload's estimate, before anything is prepared; None without an estimate."""
    runs = len(loaded.policies) * loaded.spec.repetitions
    if loaded.workload.estimate is None:
        return None
    try:
        one = loaded.workload.estimate(loaded.prepare_context())
    except InputError as err:
        raise _rehome(loaded, err) from None
    memory = runs * (one.ops * one.bytes_per_op + one.memory_bytes)
    return SpecEstimate(runs, one.ops, one.ops * runs, memory, one.driver)


def check_limits(loaded: LoadedSpec, limits: Limits | None = None) -> SpecEstimate | None:
    """Refuse a spec whose estimate is beyond ``limits`` (default: from the environment), naming the field at fault."""
    limits = limits or Limits.from_env()
    estimate = estimate_spec(loaded)
    if estimate is None:
        return None
    problem = beyond(estimate.ops, estimate.memory_bytes, limits)
    if problem is None:
        return estimate
    one_run_memory = estimate.memory_bytes // estimate.runs
    if estimate.runs == 1 or beyond(estimate.ops_per_run, one_run_memory, limits):  # one run alone is too big
        where = f"field 'workload.{estimate.driver}'" if estimate.driver else "field 'workload'"
    elif loaded.spec.repetitions > 1 and loaded.spec.repetitions >= len(loaded.policies):
        where = "field 'repetitions'"
    else:
        where = "field 'policies'"
    raise InputError(
        loaded.path,
        where,
        f"{estimate.runs:,} run(s) of about {estimate.ops_per_run:,} ops each need {problem}; or make it smaller",
    )


@dataclass(frozen=True)
class SpecResults:
    tables: dict[str, pa.Table]
    runs: pd.DataFrame
    metrics: pd.DataFrame

    @property
    def failed(self) -> pd.DataFrame:
        return self.runs[self.runs["status"] != "ok"]


RunTables = dict[str, pa.Table]
"""One run's rows of every results table (``runs``: one row; ``ops``, ``metrics`` and the workload's own)."""


@dataclass(frozen=True)
class PreparedSpec:
    """A spec sized, its inputs prepared and its policies checked: ready for its runs, in any process.

    Run ``index`` (0-based, in results order) is policy ``index // repetitions``, repetition
    ``index % repetitions``.
    """

    loaded: LoadedSpec
    inputs: Any
    estimate: SpecEstimate | None

    @property
    def total(self) -> int:
        return len(self.loaded.policies) * self.loaded.spec.repetitions

    def run_at(self, index: int) -> tuple[PolicyRun, int]:
        """The policy and repetition of run ``index``."""
        policy, repetition = divmod(index, self.loaded.spec.repetitions)
        return self.loaded.policies[policy], repetition


def prepare_spec(loaded: LoadedSpec, limits: Limits | None = None) -> PreparedSpec:
    """Size the spec (refused beyond ``limits``: :func:`check_limits`), prepare its inputs, check its policies."""
    estimate = check_limits(loaded, limits)
    try:
        inputs = loaded.workload.prepare(loaded.prepare_context())
    except InputError as err:
        raise _rehome(loaded, err) from None
    for policy in loaded.policies:
        if policy.policy.check is not None:
            try:
                policy.policy.check(inputs, policy.params)
            except ValueError as err:
                raise InputError(loaded.path, f"field 'policies' ({policy.label!r})", str(err)) from None
    release_freed_memory()  # the inputs' build is over: what it freed goes back before the runs
    return PreparedSpec(loaded, inputs, estimate)


def execute_run(
    prepared: PreparedSpec,
    index: int,
    make_backend: SpecBackendFactory,
    on_run: Callable[[str], None] | None = None,
    on_start: Callable[[RunStart], None] | None = None,
) -> RunTables:
    """Run ``index`` of the spec on a fresh backend; a run that raises comes back with ``status = "failed"``."""
    loaded = prepared.loaded
    policy, repetition = prepared.run_at(index)
    backend = make_backend(loaded, repetition)
    run_id = f"{loaded.spec.name}:{policy.label}:{backend.name}:r{repetition}"
    if on_run:
        on_run(run_id)
    if on_start:
        ops_per_run = prepared.estimate.ops_per_run if prepared.estimate else 0
        on_start(RunStart(index, prepared.total, run_id, backend, ops_per_run))
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    clock = time.perf_counter()
    status, error, n_ops = "ok", "", 0
    tables: RunTables = {}
    outcome = ops = ops_arrow = None
    try:
        outcome = backend.run(policy.policy.main, prepared.inputs, policy.params)
        wall_s = time.perf_counter() - clock
        categorical = loaded.workload.ops_categorical_strings
        ops = None if categorical else ops_frame(outcome.ops, run_id)
        # strings dictionary-encoded, as the op log keeps them; the log emptied column by column as it is made
        ops_arrow = ops_table(outcome.ops, run_id, consume=True)
        result, backend_metrics = outcome.result, outcome.metrics
        outcome = None  # its op log, now that the tables are made (a long run's: ~100 MB)
        release_freed_memory()
        if categorical:  # made from the table once the log is freed
            ops = categorical_ops_frame(ops_arrow)
        n_ops = ops_arrow.num_rows
        run_metrics = loaded.workload.metrics(prepared.inputs, ops, result)
        extra = loaded.workload.tables(prepared.inputs, ops, result) if loaded.workload.tables else {}
        unknown = sorted(set(extra) - set(loaded.workload.extra_tables))
        if unknown:
            raise ValueError(
                f"workload {loaded.workload.name!r} returned tables {unknown} without a schema in extra_tables"
            )
        rows = [(run_id, row.metric, row.item, row.value, row.unit) for row in run_metrics]
        rows += [(run_id, name, -1, float(value), unit) for name, (value, unit) in backend_metrics.items()]
        tables["ops"] = ops_arrow
        tables["metrics"] = to_table("metrics", pd.DataFrame(rows, columns=METRICS_SCHEMA.names))
        for name, frame in extra.items():
            tables[name] = to_table(name, frame.assign(run_id=run_id), loaded.workload.extra_tables[name])
    except Exception as err:  # one failed run must not take the others down
        wall_s = time.perf_counter() - clock
        status = "failed"
        error = f"{type(err).__name__}: {err}"
        if not isinstance(err, (MemoryError, ValueError, RuntimeError)):
            error += "\n" + traceback.format_exc(limit=8)
        tables = {}
    tables["runs"] = _run_row(prepared, index, backend, status, error, started, wall_s, n_ops)
    outcome = ops = ops_arrow = None  # the run's op log and frame: its tables are made
    release_freed_memory()
    return tables


def failed_run(prepared: PreparedSpec, index: int, make_backend: SpecBackendFactory, error: str) -> RunTables:
    """The tables of run ``index`` when it never finished (its worker died every time it was tried)."""
    _, repetition = prepared.run_at(index)
    backend = make_backend(prepared.loaded, repetition)
    started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    return {"runs": _run_row(prepared, index, backend, "failed", error, started, 0.0, 0)}


def _run_row(
    prepared: PreparedSpec,
    index: int,
    backend: Backend,
    status: str,
    error: str,
    started: str,
    wall_s: float,
    n_ops: int,
) -> pa.Table:
    loaded, (policy, repetition) = prepared.loaded, prepared.run_at(index)
    row = {
        "run_id": f"{loaded.spec.name}:{policy.label}:{backend.name}:r{repetition}",
        "spec_name": loaded.spec.name,
        "spec_path": str(loaded.path),
        "spec_sha256": loaded.sha256,
        "workload": loaded.workload.name,
        "policy": policy.policy.name,
        "policy_label": policy.label,
        "params_json": policy.params_json,
        "backend": backend.name,
        "profile": loaded.profile.name,
        "device_name": backend.device_name,
        "seed": loaded.spec.seed,
        "repetition": repetition,
        "package_version": __version__,
        "status": status,
        "error": error,
        "started_at": started,
        "wall_s": wall_s,
        "n_ops": n_ops,
    }
    return to_table("runs", pd.DataFrame([row]))


def assemble(loaded: LoadedSpec, runs: list[RunTables]) -> SpecResults:
    """The results tables of every run, in the order given (the spec's run order): one Arrow chunk per table."""
    schemas = {**CORE_SCHEMAS, **loaded.workload.extra_tables}
    tables = {}
    for name, schema in schemas.items():
        parts = [run[name] for run in runs if name in run and run[name].num_rows]
        table = pa.concat_tables(parts).combine_chunks() if parts else schema.empty_table()
        tables[name] = table.replace_schema_metadata(table_metadata(name))
    return SpecResults(tables, tables["runs"].to_pandas(), tables["metrics"].to_pandas())


def run_spec(
    loaded: LoadedSpec,
    make_backend: SpecBackendFactory,
    on_run: Callable[[str], None] | None = None,
    limits: Limits | None = None,
    on_start: Callable[[RunStart], None] | None = None,
) -> SpecResults:
    """Run every policy and repetition, serially; refuses first a spec beyond ``limits`` (:func:`check_limits`).

    ``harness.sweep.run_sweep`` runs the same runs in parallel (processes or Ray) with a resumable cache.
    """
    prepared = prepare_spec(loaded, limits)
    runs = [execute_run(prepared, i, make_backend, on_run, on_start) for i in range(prepared.total)]
    return assemble(loaded, runs)


def summary_frame(results: SpecResults, metric_names: tuple[str, ...]) -> pd.DataFrame:
    """Run-level metrics per policy label: mean over repetitions (and the spread when there are several)."""
    runs = results.runs[results.runs["status"] == "ok"][["run_id", "policy_label"]]
    m = results.metrics[(results.metrics["item"] == -1) & results.metrics["metric"].isin(metric_names)]
    m = m.merge(runs, on="run_id")
    table = m.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="mean", sort=False)
    return table.reindex(columns=[c for c in metric_names if c in table.columns])
