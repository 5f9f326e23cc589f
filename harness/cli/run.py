"""``harness sim``, ``demo`` and ``replay``: run every policy of a spec into a results folder."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.common import (
    INTERRUPTED,
    MAX_MEMORY_OPTION,
    MAX_OPS_OPTION,
    MAX_RUNS_OPTION,
    check_out,
    console,
    default_out,
    err_console,
    fail,
    fmt,
    limit_options,
    print_table,
    run_progress,
    sweep_progress,
)
from harness.errors import InputError
from harness.limits import Limits
from harness.paths import SPECS_DIR
from harness.results import OutputPathError, write_results
from harness.runner import RunStart, SpecBackendFactory, SpecResults, run_spec, summary_frame
from harness.spec import LoadedSpec, load_spec
from harness.sweep import RunDone, SweepOptions, run_sweep
from harness.sweep.on_ray import RayUnavailable
from harness.verdict import VERDICT_FILE, MetricVerdict, results_verdicts, verdict_document

DEMO_SPEC = SPECS_DIR / "layer_streaming_demo.toml"

SUMMARY_COLUMNS = 8  # policy labels shown as columns; more are shown as rows

OUT_OPTION = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist).")
ROOT_OPTION = typer.Option(Path("results"), help="Where the default results folder goes.")


def spec_verdicts(loaded: LoadedSpec, results: SpecResults) -> list[MetricVerdict]:
    """The verdict on each of the workload's headline metrics, against the spec's baseline."""
    return results_verdicts(results.runs, results.metrics, loaded.workload.headlines(), loaded.baseline)


def verdict_file(loaded: LoadedSpec, found: list[MetricVerdict], backend: str) -> bytes:
    """``verdict.json``: the verdicts and what they are about (schema: docs/verdict.md)."""
    about = {
        "spec": loaded.spec.name,
        "workload": loaded.workload.name,
        "backend": backend,
        "profile": loaded.profile.name,
        "baseline": loaded.baseline,
    }
    return (json.dumps(verdict_document(found, **about), indent=2, ensure_ascii=False) + "\n").encode()


def print_verdicts(found: list[MetricVerdict]) -> None:
    """Each verdict's sentence under the table, one per headline metric."""
    for verdict in found:
        console.print(f"[bold]verdict:[/] {escape(verdict.text)}", highlight=False, soft_wrap=True)


def print_summary(loaded: LoadedSpec, results: SpecResults, out: Path, found: list[MetricVerdict] = ()) -> None:
    """Metrics as rows, policies as columns (mean over repetitions); labels are never cut.

    A sweep of more than ``SUMMARY_COLUMNS`` policy labels gets policies as rows instead.
    """
    frame = summary_frame(results, loaded.workload.summary_metrics)
    table = Table(title=f"{loaded.spec.name}: {loaded.workload.name} on {loaded.profile.name}", title_justify="left")
    if len(frame.index) > SUMMARY_COLUMNS:
        table.add_column("policy", style="bold")
        for metric in frame.columns:
            table.add_column(metric, justify="right")
        for label in frame.index:
            table.add_row(escape(str(label)), *(fmt(frame.loc[label, metric]) for metric in frame.columns))
    else:
        table.add_column("metric", style="bold")
        for label in frame.index:
            table.add_column(escape(str(label)), justify="right")
        for metric in frame.columns:
            table.add_row(metric, *(fmt(frame.loc[label, metric]) for label in frame.index))
    print_table(table)
    for line in loaded.workload.notes(results.tables) if loaded.workload.notes else ():
        console.print(escape(line), highlight=False)
    for _, run in results.failed.iterrows():
        err_console.print(f"[red]run {escape(run['run_id'])} failed:[/] {escape(run['error'])}", highlight=False)
    print_verdicts(list(found))
    console.print(f"results: [bold]{escape(str(out))}[/]  ({len(results.runs)} runs)")


ProgressFactory = Callable[[], contextlib.AbstractContextManager[Callable[[RunStart | RunDone], None]]]

DEFAULT_CACHE = Path(".sweep-cache")  # a sweep's cache, beside its results folder unless --cache says where


def run_to_folder(
    spec_path: Path,
    out: Path | None,
    results_root: Path,
    backend: str,
    factory_for: Callable[[LoadedSpec], SpecBackendFactory],
    progress: ProgressFactory,
    limits: Limits | None = None,
    sweep: SweepOptions | None = None,
) -> Path:
    """Validate a spec, run every policy on ``backend``, write the results folder, print the summary.

    ``factory_for(loaded)`` makes the per-run backend factory; ``progress()`` is a context manager
    yielding a callback for ``run_spec``'s ``on_start`` and ``run_sweep``'s ``on_done``. With ``sweep`` the runs go
    through :func:`harness.sweep.run_sweep` (workers, Ray, the resumable cache: ``DEFAULT_CACHE`` is placed beside
    the results folder, and removed once it is written). Bad input (the spec, its size beyond ``limits``, an output
    path that cannot be created) exits 2 before anything runs; Ctrl-C exits 130 saying what it interrupted;
    a failed run exits 1 (the others' results are still written). Nothing is written unless every run ended.
    """
    limits = limits or Limits.from_env()
    doing = "validating the spec"
    report = None
    try:
        loaded = load_spec(spec_path, limits=limits)
        out = out or default_out(results_root, loaded.spec.name, backend)
        check_out(out)
        if sweep is not None and sweep.cache_root == DEFAULT_CACHE:
            sweep = dataclasses.replace(sweep, cache_root=out.parent / DEFAULT_CACHE)
        started: list[RunStart] = []
        finished: list[RunDone] = []
        doing = "preparing the inputs"
        with progress() as on_event:

            def start(run: RunStart) -> None:
                started.append(run)
                on_event(run)

            def done(run: RunDone) -> None:
                finished.append(run)
                on_event(run)

            if sweep is None:
                results = run_spec(loaded, factory_for(loaded), limits=limits, on_start=start)
            else:
                report = run_sweep(loaded, factory_for, sweep, limits=limits, on_start=start, on_done=done)
                results = report.results
        doing = "writing the results"
        found = spec_verdicts(loaded, results)
        write_results(out, results.tables, {VERDICT_FILE: verdict_file(loaded, found, backend)})
    except InputError as err:
        fail(str(err))
    except OutputPathError as err:
        fail(str(err))
    except RayUnavailable as err:
        fail(str(err))
    except KeyboardInterrupt:
        if doing == "preparing the inputs" and sweep is not None and finished:
            kept = sum(1 for run in finished if run.status == "ok")
            where = f"; the {kept} finished run(s) are kept in {sweep.cache_root}: the same command resumes"
            doing = f"running the sweep ({len(finished)} of {finished[-1].total} runs done)"
            fail(f"interrupted (Ctrl-C) while {doing}: no results folder was written{where}", INTERRUPTED)
        if doing == "preparing the inputs" and started:
            doing = f"running {started[-1].run_id} (run {started[-1].index + 1} of {started[-1].total})"
        fail(f"interrupted (Ctrl-C) while {doing}: nothing was written", INTERRUPTED)
    if report is not None and report.cache is not None:
        report.cache.clear()
    print_summary(loaded, results, out, found)
    if report is not None and (report.cached or report.restarts):
        console.print(
            f"{report.computed} run(s) computed, {report.cached} taken from the cache"
            + (f", {report.restarts} task(s) restarted after their worker died" if report.restarts else ""),
            highlight=False,
        )
    if len(results.failed):
        raise typer.Exit(1)
    return out


def sim_backend_factory(loaded: LoadedSpec) -> SpecBackendFactory:
    from sim import SimBackend

    devices = loaded.workload.devices(loaded.workload_params)

    def make(spec: LoadedSpec, repetition: int) -> SimBackend:
        return SimBackend(spec.profile, devices, spec.device_memory_bytes, seed=spec.spec.seed + repetition)

    return make


def _sim_progress() -> contextlib.AbstractContextManager[Callable[[RunStart | RunDone], None]]:
    return run_progress("simulating")


def _sweep_progress() -> contextlib.AbstractContextManager[Callable[[RunStart | RunDone], None]]:
    return sweep_progress("simulating")


@contextlib.contextmanager
def _replay_progress() -> Iterator[Callable[[RunStart], None]]:
    # No live bar or polling thread here: they take the GIL from the timed host thread.
    yield lambda run: console.print(
        f"replaying {run.index + 1}/{run.total} {run.run_id}", highlight=False, markup=False, soft_wrap=True
    )


def simulate_spec(
    spec_path: Path,
    out: Path | None,
    results_root: Path,
    limits: Limits | None = None,
    sweep: SweepOptions | None = None,
) -> Path:
    """Validate a spec, simulate every policy, write results; exits non-zero on bad input."""
    parallel = sweep is not None and (sweep.workers > 1 or sweep.ray is not None)
    progress = _sweep_progress if parallel else _sim_progress
    return run_to_folder(spec_path, out, results_root, "sim", sim_backend_factory, progress, limits, sweep)


WORKERS_OPTION = typer.Option(
    None, "--workers", "-j", min=1, help="Run the spec's runs on N processes of this machine (resumable: see --cache)."
)
RAY_OPTION = typer.Option(
    None,
    "--ray",
    metavar="ADDRESS",
    help="Run the runs as Ray tasks: 'auto' (the running cluster), host:port, ray://..., or 'local' (start one "
    "here, --workers CPUs). Needs pip install -e '.\\[ray]'.",
)
CACHE_OPTION = typer.Option(
    None,
    "--cache",
    help="Keep each finished run here, so that an interrupted sweep resumes where it stopped (default with "
    "--workers/--ray: .sweep-cache beside the results folder; removed once the results are written).",
)
NO_CACHE_OPTION = typer.Option(False, "--no-cache", help="Keep no finished runs: an interrupted sweep starts over.")


def sweep_options(workers: int | None, ray: str | None, cache: Path | None, no_cache: bool) -> SweepOptions | None:
    """The sweep the options ask for; None (the plain serial run) when none of them is given."""
    if workers is None and ray is None and cache is None:
        return None
    cache_root = None if no_cache else (cache or DEFAULT_CACHE)
    return SweepOptions(workers=workers or 1, ray=ray, cache_root=cache_root)


def sim(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = OUT_OPTION,
    results_root: Path = ROOT_OPTION,
    max_runs: int | None = MAX_RUNS_OPTION,
    max_ops: int | None = MAX_OPS_OPTION,
    max_memory_gb: float | None = MAX_MEMORY_OPTION,
    workers: int | None = WORKERS_OPTION,
    ray: str | None = RAY_OPTION,
    cache: Path | None = CACHE_OPTION,
    no_cache: bool = NO_CACHE_OPTION,
) -> None:
    """Simulate every policy of SPEC and write a results folder of Parquet tables."""
    limits = limit_options(max_runs, max_ops, max_memory_gb)
    simulate_spec(spec, out, results_root, limits, sweep_options(workers, ray, cache, no_cache))


def demo(out: Path | None = OUT_OPTION, results_root: Path = ROOT_OPTION) -> None:
    """Run the bundled layer-streaming example end to end (sync vs prefetch vs resident)."""
    console.print(f"spec: {DEMO_SPEC}", highlight=False, markup=False)
    simulate_spec(DEMO_SPEC, out, results_root, limit_options(None, None, None))


def _replay_backend_factory(loaded: LoadedSpec) -> SpecBackendFactory:
    """One replay context (GPU state, tuned kernels) shared by every run of the spec.

    Raises CudaUnavailable without a GPU.
    """
    from replay.engine import ReplayBackend, ReplayContext

    devices = loaded.workload.devices(loaded.workload_params)
    context = ReplayContext(devices)
    free = min(context.free_bytes(d.index) for d in context.devices)
    asked = loaded.spec.device_memory_bytes
    if asked is not None and asked > free:
        raise InputError(
            loaded.path,
            "field 'device_memory_bytes'",
            f"the spec budgets {asked} bytes of device memory but {context.devices[0].name} has only {free} bytes free "
            "for a policy (after the replay's own scratch)",
        )

    def make(spec: LoadedSpec, repetition: int) -> ReplayBackend:
        return ReplayBackend(context, spec.profile, spec.device_memory_bytes, seed=spec.spec.seed + repetition)

    return make


def replay(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = OUT_OPTION,
    results_root: Path = ROOT_OPTION,
    max_runs: int | None = MAX_RUNS_OPTION,
    max_ops: int | None = MAX_OPS_OPTION,
    max_memory_gb: float | None = MAX_MEMORY_OPTION,
    distributed: bool = typer.Option(
        False,
        "--distributed",
        help="One process per GPU (torch.distributed + NCCL), the policy on every rank: for specs of several GPUs "
        "whose policies run collectives (replay/distributed.py).",
    ),
    budget_s: float = typer.Option(1800.0, help="--distributed: start no run after this many seconds."),
) -> None:
    """Run every policy of SPEC on the real CUDA GPU and write the same results tables (backend `replay`)."""
    from replay.gpu import CudaUnavailable

    try:
        limits = limit_options(max_runs, max_ops, max_memory_gb)
        factory = _replay_backend_factory
        if distributed:
            from replay.distributed import distributed_factory

            factory = distributed_factory(budget_s, log=lambda line: console.print(line, highlight=False))
        run_to_folder(spec, out, results_root, "replay", factory, _replay_progress, limits)
    except CudaUnavailable as err:
        fail(f"harness replay: {err}")


def register(app: typer.Typer) -> None:
    app.command()(sim)
    app.command()(demo)
    app.command()(replay)
