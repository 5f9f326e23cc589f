"""Sweeps: a spec's runs (policy x sweep point x repetition) in parallel, resumable, with the serial results.

:func:`run_sweep` prepares the spec in this process (so bad input is refused before anything runs),
takes from the cache the runs an earlier, interrupted attempt finished, and runs the rest:

* serially in this process (``workers=1``), as :func:`harness.runner.run_spec` does;
* on a pool of ``workers`` local processes (:mod:`harness.sweep.pool`, standard library only); or
* as Ray tasks on the cluster at ``ray`` (:mod:`harness.sweep.on_ray`; ``local`` starts one here).

Small runs are batched into chunks of about :data:`TASK_OPS` estimated ops, one task each, so the per-task
overhead stays small against the work; chunks are never so big that a worker gets fewer than
:data:`TASKS_PER_WORKER` of them. Every run's tables are placed by the run's index and assembled in the
spec's order (:func:`harness.runner.assemble`), so the results are those of the serial run whatever the
number of workers or the order in which runs finish: every table's bytes are the same, except the
``started_at`` and ``wall_s`` columns of ``runs`` (when and how long each run took).

Faults: a worker that dies is replaced and its unfinished runs tried again (``attempts`` in all); a run
that fails on its input is tabulated ``failed`` with its error and the others go on.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from harness.limits import Limits
from harness.runner import (
    RunStart,
    RunTables,
    SpecResults,
    assemble,
    execute_run,
    failed_run,
    prepare_spec,
)
from harness.spec import LoadedSpec
from harness.sweep.cache import RunCache
from harness.sweep.worker import FactoryFor, SpecRef, remember, spec_key

TASK_OPS = 20_000
"""Estimated ops per task (about 0.2 s of simulation): a task costs ~1 ms (local pool) to ~5 ms (Ray) beyond its
runs, under 10% of that. Without an estimate, runs are chunked by count alone."""
TASKS_PER_WORKER = 4
"""At least this many tasks per worker (when there are enough runs): the slowest chunk bounds the wall time."""
ATTEMPTS = 3
"""Times a run is tried when its worker dies (the first time included)."""


@dataclass(frozen=True)
class SweepOptions:
    workers: int = 1  # processes on this machine; with ray, the CPUs of a local cluster it starts
    ray: str | None = None  # a Ray address (``auto``, ``host:port``, ``ray://...``) or ``local``
    cache_root: Path | None = None  # where finished runs are kept for a resume; None: no cache
    task_runs: int | None = None  # runs per task; None: from the estimate (plan_chunks)


@dataclass(frozen=True)
class RunDone:
    """Handed to ``run_sweep``'s ``on_done`` as each run's tables arrive (cached runs come first)."""

    index: int
    done: int  # runs done so far, this one included
    total: int
    run_id: str
    status: str  # "ok" or "failed"
    cached: bool  # taken from the cache, not computed now


@dataclass(frozen=True)
class SweepReport:
    results: SpecResults
    computed: int  # runs computed by this call
    cached: int  # runs taken from the cache
    restarts: int  # chunks started again after their worker died (local pool)
    tasks: int  # chunks the computed runs were sent in (1 per run when serial)
    cache: RunCache | None


def plan_chunks(indices: list[int], workers: int, ops_per_run: int, task_runs: int | None = None) -> list[list[int]]:
    """Consecutive runs grouped into tasks: about TASK_OPS ops each, at least TASKS_PER_WORKER tasks per worker."""
    if not indices:
        return []
    if task_runs is None:
        balance = max(1, math.ceil(len(indices) / (max(1, workers) * TASKS_PER_WORKER)))
        task_runs = min(balance, max(1, math.ceil(TASK_OPS / ops_per_run))) if ops_per_run > 0 else balance
    return [indices[i : i + task_runs] for i in range(0, len(indices), task_runs)]


def run_sweep(
    loaded: LoadedSpec,
    factory_for: FactoryFor,
    options: SweepOptions = SweepOptions(),
    limits: Limits | None = None,
    on_start: Callable[[RunStart], None] | None = None,
    on_done: Callable[[RunDone], None] | None = None,
) -> SweepReport:
    """Run every run of the spec per ``options``; ``on_start`` is called for runs in this process (serial only).

    ``factory_for`` must be a module-level function (workers find it by name). Bad input raises
    ``InputError`` before any run; ``KeyboardInterrupt`` stops the workers and leaves the cache for a resume.
    """
    limits = limits or Limits.from_env()
    prepared = prepare_spec(loaded, limits)
    make_backend = factory_for(loaded)
    key = spec_key(loaded, make_backend(loaded, 0).name)
    ref = SpecRef(str(Path(loaded.path).resolve()), loaded.sha256, key, limits, factory_for)
    cache = RunCache(options.cache_root, loaded.spec.name, key) if options.cache_root is not None else None
    total = prepared.total
    runs: list[RunTables | None] = [None] * total
    counts = {"done": 0, "computed": 0}

    def arrived(index: int, tables: RunTables, cached: bool) -> None:
        runs[index] = tables
        counts["done"] += 1
        row = tables["runs"].slice(0, 1).to_pylist()[0]
        if not cached:
            counts["computed"] += 1
            if cache is not None and row["status"] == "ok":
                _, repetition = prepared.run_at(index)
                cache.put(row["policy_label"], repetition, tables)
        if on_done:
            on_done(RunDone(index, counts["done"], total, row["run_id"], row["status"], cached))

    if cache is not None:
        for index in range(total):
            policy, repetition = prepared.run_at(index)
            if (tables := cache.get(policy.label, repetition)) is not None:
                arrived(index, tables, cached=True)
    cached = counts["done"]
    todo = [i for i in range(total) if runs[i] is None]

    def finish(index: int, tables: RunTables) -> None:
        arrived(index, tables, cached=False)

    def give_up(index: int, error: str) -> None:
        arrived(index, failed_run(prepared, index, make_backend, error), cached=False)

    restarts, tasks = 0, len(todo)
    ops_per_run = prepared.estimate.ops_per_run if prepared.estimate else 0
    if options.ray is not None:
        from harness.sweep import on_ray

        owned = on_ray.connect(options.ray, options.workers if options.workers > 1 else None)
        try:
            chunks = plan_chunks(todo, on_ray.cluster_cpus(), ops_per_run, options.task_runs)
            tasks = len(chunks)
            on_ray.run_ray(ref, chunks, finish, give_up, ATTEMPTS)
        finally:
            on_ray.disconnect(owned)
    elif options.workers > 1:
        from harness.sweep.pool import run_local

        chunks = plan_chunks(todo, options.workers, ops_per_run, options.task_runs)
        tasks = len(chunks)
        remember(ref, prepared, make_backend)  # forked workers inherit the prepared spec
        restarts = run_local(ref, chunks, options.workers, finish, give_up, ATTEMPTS)
    else:
        for index in todo:
            finish(index, execute_run(prepared, index, make_backend, on_start=on_start))
    missing = [i for i, r in enumerate(runs) if r is None]
    if missing:  # cannot happen unless a backend lost runs: say so rather than write a short table
        raise RuntimeError(f"{len(missing)} run(s) never came back, e.g. run {missing[0]}")
    results = assemble(loaded, runs)  # type: ignore[arg-type]
    return SweepReport(results, counts["computed"], cached, restarts, tasks, cache)
