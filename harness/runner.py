"""Runs every policy of a spec on a backend and assembles the results tables.

A backend is a :class:`harness.backend.Backend` (the simulator, the replay
engine), made fresh for every run by a :data:`SpecBackendFactory`. Inputs are prepared once per
spec, so every policy sees the same segments/requests. A run that raises is
recorded with ``status = "failed"`` and its error, and the other runs go on.
A workload with ``tables``/``extra_tables`` (see ``workloads.Workload``)
adds tables of its own (e.g. ``requests``), with ``run_id`` in every row.
"""

from __future__ import annotations

import datetime as dt
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass

import pandas as pd
import pyarrow as pa

from harness import __version__
from harness.backend import Backend, ops_frame
from harness.errors import SPEC_WORKLOAD, InputError
from harness.limits import OP_ROW_BYTES, Limits, beyond
from harness.results import OPS_COLUMNS, to_table
from harness.spec import LoadedSpec

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
    memory = runs * (one.ops * OP_ROW_BYTES + one.memory_bytes)
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


def run_spec(
    loaded: LoadedSpec,
    make_backend: SpecBackendFactory,
    on_run: Callable[[str], None] | None = None,
    limits: Limits | None = None,
    on_start: Callable[[RunStart], None] | None = None,
) -> SpecResults:
    """Run every policy and repetition; refuses first a spec beyond ``limits`` (:func:`check_limits`)."""
    spec = loaded.spec
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
    total = len(loaded.policies) * spec.repetitions
    run_rows, op_frames, metric_rows = [], [], []
    extra_frames: dict[str, list[pd.DataFrame]] = {name: [] for name in loaded.workload.extra_tables}
    for policy in loaded.policies:
        for repetition in range(spec.repetitions):
            backend = make_backend(loaded, repetition)
            run_id = f"{spec.name}:{policy.label}:{backend.name}:r{repetition}"
            if on_run:
                on_run(run_id)
            if on_start:
                index = len(run_rows)
                on_start(RunStart(index, total, run_id, backend, estimate.ops_per_run if estimate else 0))
            started = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
            clock = time.perf_counter()
            status, error, n_ops = "ok", "", 0
            try:
                outcome = backend.run(policy.policy.main, inputs, policy.params)
                wall_s = time.perf_counter() - clock
                ops = ops_frame(outcome.ops, run_id)
                n_ops = len(ops)
                run_metrics = loaded.workload.metrics(inputs, ops, outcome.result)
                extra = loaded.workload.tables(inputs, ops, outcome.result) if loaded.workload.tables else {}
                unknown = sorted(set(extra) - set(extra_frames))
                if unknown:
                    raise ValueError(
                        f"workload {loaded.workload.name!r} returned tables {unknown} without a schema in extra_tables"
                    )
                for row in run_metrics:
                    metric_rows.append((run_id, row.metric, row.item, row.value, row.unit))
                for name, frame in extra.items():
                    extra_frames[name].append(frame.assign(run_id=run_id))
                op_frames.append(ops)
            except Exception as err:  # one failed run must not take the others down
                wall_s = time.perf_counter() - clock
                status = "failed"
                error = f"{type(err).__name__}: {err}"
                if not isinstance(err, (MemoryError, ValueError, RuntimeError)):
                    error += "\n" + traceback.format_exc(limit=8)
            run_rows.append(
                {
                    "run_id": run_id,
                    "spec_name": spec.name,
                    "spec_path": str(loaded.path),
                    "spec_sha256": loaded.sha256,
                    "workload": loaded.workload.name,
                    "policy": policy.policy.name,
                    "policy_label": policy.label,
                    "params_json": policy.params_json,
                    "backend": backend.name,
                    "profile": loaded.profile.name,
                    "device_name": backend.device_name,
                    "seed": spec.seed,
                    "repetition": repetition,
                    "package_version": __version__,
                    "status": status,
                    "error": error,
                    "started_at": started,
                    "wall_s": wall_s,
                    "n_ops": n_ops,
                }
            )
    runs = pd.DataFrame(run_rows)
    ops_all = pd.concat(op_frames, ignore_index=True) if op_frames else pd.DataFrame(columns=OPS_COLUMNS)
    metrics = pd.DataFrame(metric_rows, columns=["run_id", "metric", "item", "value", "unit"])
    tables = {"runs": to_table("runs", runs), "ops": to_table("ops", ops_all), "metrics": to_table("metrics", metrics)}
    for name, frames in extra_frames.items():
        schema = loaded.workload.extra_tables[name]
        frame = (
            pd.concat(frames, ignore_index=True)
            if frames
            else pd.DataFrame({c: pd.Series(dtype=object) for c in schema.names})
        )
        tables[name] = to_table(name, frame, schema)
    return SpecResults(tables, runs, metrics)


def summary_frame(results: SpecResults, metric_names: tuple[str, ...]) -> pd.DataFrame:
    """Run-level metrics per policy label: mean over repetitions (and the spread when there are several)."""
    runs = results.runs[results.runs["status"] == "ok"][["run_id", "policy_label"]]
    m = results.metrics[(results.metrics["item"] == -1) & results.metrics["metric"].isin(metric_names)]
    m = m.merge(runs, on="run_id")
    table = m.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="mean", sort=False)
    return table.reindex(columns=[c for c in metric_names if c in table.columns])
