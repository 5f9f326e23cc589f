"""``harness sim``, ``demo`` and ``replay``: run every policy of a spec into a results folder."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from harness.cli.common import console, default_out, err_console, fail, fmt
from harness.errors import InputError
from harness.paths import SPECS_DIR
from harness.results import write_results
from harness.runner import SpecBackendFactory, SpecResults, run_spec, summary_frame
from harness.spec import LoadedSpec, load_spec

DEMO_SPEC = SPECS_DIR / "layer_streaming_demo.toml"

OUT_OPTION = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist).")
ROOT_OPTION = typer.Option(Path("results"), help="Where the default results folder goes.")


def print_summary(loaded: LoadedSpec, results: SpecResults, out: Path) -> None:
    """Metrics as rows, policies as columns (mean over repetitions)."""
    frame = summary_frame(results, loaded.workload.summary_metrics)
    table = Table(title=f"{loaded.spec.name}: {loaded.workload.name} on {loaded.profile.name}", title_justify="left")
    table.add_column("metric", style="bold")
    for label in frame.index:
        table.add_column(escape(str(label)), justify="right")
    for metric in frame.columns:
        table.add_row(metric, *(fmt(frame.loc[label, metric]) for label in frame.index))
    console.print(table)
    for _, run in results.failed.iterrows():
        err_console.print(f"[red]run {escape(run['run_id'])} failed:[/] {escape(run['error'])}", highlight=False)
    console.print(f"results: [bold]{out}[/]  ({len(results.runs)} runs)")


def run_to_folder(
    spec_path: Path,
    out: Path | None,
    results_root: Path,
    backend: str,
    factory_for: Callable[[LoadedSpec], SpecBackendFactory],
    progress: Callable[[], contextlib.AbstractContextManager[Callable[[str], None]]],
) -> Path:
    """Validate a spec, run every policy on ``backend``, write the results folder, print the summary.

    ``factory_for(loaded)`` makes the per-run backend factory; ``progress()`` is a
    context manager yielding the per-run callback. Exits non-zero on bad input and
    with status 1 when a run failed (the others' results are still written).
    """
    try:
        loaded = load_spec(spec_path)
        out = out or default_out(results_root, loaded.spec.name, backend)
        if out.exists():
            fail(f"{out}: already exists; results are never overwritten")
        factory = factory_for(loaded)
        with progress() as on_run:
            results = run_spec(loaded, factory, on_run=on_run)
    except InputError as err:
        fail(str(err))
    write_results(out, results.tables)
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


@contextlib.contextmanager
def _sim_progress() -> Iterator[Callable[[str], None]]:
    with console.status("simulating…") as status:
        yield lambda rid: status.update(f"simulating {escape(rid)}")


@contextlib.contextmanager
def _replay_progress() -> Iterator[Callable[[str], None]]:
    # No live spinner here: its refresh thread takes the GIL from the timed host thread.
    yield lambda rid: console.print(f"replaying {escape(rid)}", highlight=False)


def simulate_spec(spec_path: Path, out: Path | None, results_root: Path) -> Path:
    """Validate a spec, simulate every policy, write results; exits non-zero on bad input."""
    return run_to_folder(spec_path, out, results_root, "sim", sim_backend_factory, _sim_progress)


def sim(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = OUT_OPTION,
    results_root: Path = ROOT_OPTION,
) -> None:
    """Simulate every policy of SPEC and write a results folder of Parquet tables."""
    simulate_spec(spec, out, results_root)


def demo(out: Path | None = OUT_OPTION, results_root: Path = ROOT_OPTION) -> None:
    """Run the bundled layer-streaming example end to end (sync vs prefetch vs resident)."""
    console.print(f"spec: {DEMO_SPEC}")
    simulate_spec(DEMO_SPEC, out, results_root)


def _replay_backend_factory(loaded: LoadedSpec) -> SpecBackendFactory:
    """One replay context (GPU state, tuned kernels) shared by every run of the spec; raises CudaUnavailable without a GPU."""
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
) -> None:
    """Run every policy of SPEC on the real CUDA GPU and write the same results tables (backend `replay`)."""
    from replay.gpu import CudaUnavailable

    try:
        run_to_folder(spec, out, results_root, "replay", _replay_backend_factory, _replay_progress)
    except CudaUnavailable as err:
        fail(f"harness replay: {err}")


def register(app: typer.Typer) -> None:
    app.command()(sim)
    app.command()(demo)
    app.command()(replay)
