"""``harness sim``, ``demo`` and ``replay``: run every policy of a spec into a results folder."""

from __future__ import annotations

import contextlib
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
)
from harness.errors import InputError
from harness.limits import Limits
from harness.paths import SPECS_DIR
from harness.results import OutputPathError, write_results
from harness.runner import RunStart, SpecBackendFactory, SpecResults, run_spec, summary_frame
from harness.spec import LoadedSpec, load_spec

DEMO_SPEC = SPECS_DIR / "layer_streaming_demo.toml"

OUT_OPTION = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist).")
ROOT_OPTION = typer.Option(Path("results"), help="Where the default results folder goes.")


def print_summary(loaded: LoadedSpec, results: SpecResults, out: Path) -> None:
    """Metrics as rows, policies as columns (mean over repetitions); labels are never cut."""
    frame = summary_frame(results, loaded.workload.summary_metrics)
    table = Table(title=f"{loaded.spec.name}: {loaded.workload.name} on {loaded.profile.name}", title_justify="left")
    table.add_column("metric", style="bold")
    for label in frame.index:
        table.add_column(escape(str(label)), justify="right")
    for metric in frame.columns:
        table.add_row(metric, *(fmt(frame.loc[label, metric]) for label in frame.index))
    print_table(table)
    for _, run in results.failed.iterrows():
        err_console.print(f"[red]run {escape(run['run_id'])} failed:[/] {escape(run['error'])}", highlight=False)
    console.print(f"results: [bold]{escape(str(out))}[/]  ({len(results.runs)} runs)")


ProgressFactory = Callable[[], contextlib.AbstractContextManager[Callable[[RunStart], None]]]


def run_to_folder(
    spec_path: Path,
    out: Path | None,
    results_root: Path,
    backend: str,
    factory_for: Callable[[LoadedSpec], SpecBackendFactory],
    progress: ProgressFactory,
    limits: Limits | None = None,
) -> Path:
    """Validate a spec, run every policy on ``backend``, write the results folder, print the summary.

    ``factory_for(loaded)`` makes the per-run backend factory; ``progress()`` is a context manager
    yielding ``run_spec``'s ``on_start`` callback. Bad input (the spec, its size beyond ``limits``, an output
    path that cannot be created) exits 2 before anything runs; Ctrl-C exits 130 saying what it interrupted;
    a failed run exits 1 (the others' results are still written). Nothing is written unless every run ended.
    """
    limits = limits or Limits.from_env()
    doing = "validating the spec"
    try:
        loaded = load_spec(spec_path, limits=limits)
        out = out or default_out(results_root, loaded.spec.name, backend)
        check_out(out)
        factory = factory_for(loaded)
        started: list[RunStart] = []
        doing = "preparing the inputs"
        with progress() as on_start:

            def start(run: RunStart) -> None:
                started.append(run)
                on_start(run)

            results = run_spec(loaded, factory, limits=limits, on_start=start)
        doing = "writing the results"
        write_results(out, results.tables)
    except InputError as err:
        fail(str(err))
    except OutputPathError as err:
        fail(str(err))
    except KeyboardInterrupt:
        if doing == "preparing the inputs" and started:
            doing = f"running {started[-1].run_id} (run {started[-1].index + 1} of {started[-1].total})"
        fail(f"interrupted (Ctrl-C) while {doing}: nothing was written", INTERRUPTED)
    print_summary(loaded, results, out)
    if len(results.failed):
        raise typer.Exit(1)
    return out


def sim_backend_factory(loaded: LoadedSpec) -> SpecBackendFactory:
    from sim import SimBackend

    devices = loaded.workload.devices(loaded.workload_params)

    def make(spec: LoadedSpec, repetition: int) -> SimBackend:
        return SimBackend(spec.profile, devices, spec.device_memory_bytes, seed=spec.spec.seed + repetition)

    return make


def _sim_progress() -> contextlib.AbstractContextManager[Callable[[RunStart], None]]:
    return run_progress("simulating")


@contextlib.contextmanager
def _replay_progress() -> Iterator[Callable[[RunStart], None]]:
    # No live bar or polling thread here: they take the GIL from the timed host thread.
    yield lambda run: console.print(
        f"replaying {run.index + 1}/{run.total} {run.run_id}", highlight=False, markup=False, soft_wrap=True
    )


def simulate_spec(spec_path: Path, out: Path | None, results_root: Path, limits: Limits | None = None) -> Path:
    """Validate a spec, simulate every policy, write results; exits non-zero on bad input."""
    return run_to_folder(spec_path, out, results_root, "sim", sim_backend_factory, _sim_progress, limits)


def sim(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = OUT_OPTION,
    results_root: Path = ROOT_OPTION,
    max_runs: int | None = MAX_RUNS_OPTION,
    max_ops: int | None = MAX_OPS_OPTION,
    max_memory_gb: float | None = MAX_MEMORY_OPTION,
) -> None:
    """Simulate every policy of SPEC and write a results folder of Parquet tables."""
    simulate_spec(spec, out, results_root, limit_options(max_runs, max_ops, max_memory_gb))


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
) -> None:
    """Run every policy of SPEC on the real CUDA GPU and write the same results tables (backend `replay`)."""
    from replay.gpu import CudaUnavailable

    try:
        limits = limit_options(max_runs, max_ops, max_memory_gb)
        run_to_folder(spec, out, results_root, "replay", _replay_backend_factory, _replay_progress, limits)
    except CudaUnavailable as err:
        fail(f"harness replay: {err}")


def register(app: typer.Typer) -> None:
    app.command()(sim)
    app.command()(demo)
    app.command()(replay)
