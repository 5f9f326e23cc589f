"""What the CLI's command modules share.

The consoles and error exit (``harness.terminal``), number formatting, output paths.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.measure import Measurement
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

from harness.limits import ENV_MEMORY, ENV_OPS, ENV_RUNS, Limits
from harness.results import OutputPathError, check_output_path
from harness.runner import RunStart
from harness.sweep import RunDone
from harness.terminal import console, err_console, fail

__all__ = [
    "INTERRUPTED",
    "check_out",
    "console",
    "default_out",
    "err_console",
    "fail",
    "fmt",
    "limit_options",
    "print_table",
    "run_progress",
    "sweep_progress",
    "utc_stamp",
]

INTERRUPTED = 130  # exit status after Ctrl-C, as a shell reports SIGINT
PROGRESS_ENV = "HARNESS_PROGRESS_S"  # seconds between progress lines when output is piped (default 10)

MAX_RUNS_OPTION = typer.Option(None, "--max-runs", min=1, help=f"Refuse specs of more runs [env {ENV_RUNS}; 10,000].")
MAX_OPS_OPTION = typer.Option(
    None, "--max-ops", min=1, help=f"Refuse specs estimated beyond this many ops [env {ENV_OPS}; 50,000,000]."
)
MAX_MEMORY_OPTION = typer.Option(
    None, "--max-memory-gb", min=0.001, help=f"Refuse specs estimated to need more memory, GB [env {ENV_MEMORY}; 4]."
)


def limit_options(max_runs: int | None, max_ops: int | None, max_memory_gb: float | None) -> Limits:
    """The limits from the environment with the command line's options applied; a bad variable is bad input."""
    from harness.errors import InputError

    try:
        return Limits.from_env().with_options(max_runs, max_ops, max_memory_gb)
    except InputError as err:
        fail(str(err))


def check_out(out: Path, what: str = "results folder") -> None:
    """Refuse an output path that cannot be created, before any work (nothing is written)."""
    try:
        check_output_path(out, what)
    except OutputPathError as err:
        fail(str(err))


def print_table(table: Table) -> None:
    """Print a table with every label whole: on a terminal long cells wrap; piped, the table takes its full width."""
    for column in table.columns:
        column.overflow = "fold"
    if console.is_terminal:
        console.print(table)
        return
    width = Measurement.get(console, console.options.update_width(1_000_000), table).maximum
    Console(file=console.file, width=max(width, console.width), color_system=None).print(table)


def fmt(value: float) -> str:
    """A metric value for a table: thousands separators for big values, '-' for NaN."""
    if value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def utc_stamp() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y%m%dT%H%M%SZ")


def default_out(results_root: Path, spec_name: str, backend: str) -> Path:
    """A new results folder ``<root>/<spec>-<backend>-<UTC stamp>[-n]`` that does not exist yet."""
    stamp = utc_stamp()
    out = results_root / f"{spec_name}-{backend}-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = results_root / f"{spec_name}-{backend}-{stamp}-{n}"
    return out


@contextlib.contextmanager
def run_progress(verb: str) -> Iterator[Callable[[RunStart | RunDone], None]]:
    """Progress of a spec's runs, fed by ``run_spec``'s ``on_start``: a rich bar on a terminal, lines when piped.

    The bar counts the ops of the current run (its backend's ``ops``) against the workload's estimate; piped
    output gets a line every ``HARNESS_PROGRESS_S`` seconds (default 10) once a spec has run that long.
    """
    current: list[RunStart] = []
    stop = threading.Event()
    started = time.monotonic()

    def done_ops() -> int:
        return len(getattr(current[-1].backend, "ops", ())) if current else 0

    def starts(event: RunStart | RunDone) -> None:
        if isinstance(event, RunStart):
            current.append(event)

    def describe() -> str:
        run = current[-1]
        label = run.run_id.split(":", 1)[-1]
        return f"{verb} {run.index + 1}/{run.total} {label}"

    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), console=console
        )
        task = bar.add_task(verb, total=None)

        def poll() -> None:
            while not stop.wait(0.25):
                if current:
                    run = current[-1]
                    total = max(run.estimated_ops, done_ops()) or None
                    bar.update(task, description=escape(describe()), completed=done_ops(), total=total)

        with bar, _in_background(poll, stop):
            yield starts
        return

    interval = _piped_interval()

    def report() -> None:
        while not stop.wait(interval):
            if current:
                run = current[-1]
                of = f" of ~{run.estimated_ops:,}" if run.estimated_ops else ""
                line = f"{describe()}: {done_ops():,}{of} ops, {time.monotonic() - started:.0f} s"
                console.print(line, highlight=False, markup=False, soft_wrap=True)

    with _in_background(report, stop):
        yield starts


@contextlib.contextmanager
def _in_background(work: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    """Run ``work`` (a loop that ends once ``stop`` is set) on a daemon thread for the ``with`` block."""
    thread = threading.Thread(target=work, daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()


def _piped_interval() -> float:
    try:
        return float(os.environ.get(PROGRESS_ENV, "10"))
    except ValueError:
        return 10.0


@contextlib.contextmanager
def sweep_progress(verb: str) -> Iterator[Callable[[RunStart | RunDone], None]]:
    """Progress of a parallel sweep, fed by ``run_sweep``'s ``on_done``: runs done, rate and ETA.

    A rich bar on a terminal; piped, a line every ``HARNESS_PROGRESS_S`` seconds (default 10), as
    :func:`run_progress`. The rate and ETA count the runs computed now (not those taken from the cache).
    """
    done: list[RunDone] = []
    stop = threading.Event()
    started = time.monotonic()

    def figures() -> tuple[int, int, int, float]:
        run = done[-1]
        computed = sum(1 for d in done if not d.cached)
        rate = computed / max(time.monotonic() - started, 1e-9)
        return run.done, run.total, run.done - computed, rate

    def on_event(event: RunStart | RunDone) -> None:
        if isinstance(event, RunDone):
            done.append(event)

    if console.is_terminal:
        bar = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
        )
        task = bar.add_task(f"{verb} runs", total=None, rate="")

        def poll() -> None:
            while not stop.wait(0.25):
                if done:
                    count, total, cached, rate = figures()
                    bar.update(task, completed=count, total=total, rate=f"{rate:.1f} runs/s")

        with bar, _in_background(poll, stop):
            yield on_event
        return

    interval = _piped_interval()

    def report() -> None:
        while not stop.wait(interval):
            if done:
                count, total, cached, rate = figures()
                eta = f", ETA {(total - count) / rate:.0f} s" if rate > 0 else ""
                from_cache = f" ({cached} from the cache)" if cached else ""
                line = f"{verb}: {count}/{total} runs{from_cache}, {rate:.1f} runs/s{eta}"
                console.print(line, highlight=False, markup=False, soft_wrap=True)

    with _in_background(report, stop):
        yield on_event
