"""The ``harness`` command line."""

from __future__ import annotations

import contextlib

import datetime as dt
import sys
from pathlib import Path

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from harness.errors import InputError
from harness.paths import SPECS_DIR
from harness.results import write_results
from harness.runner import SpecResults, run_spec, summary_frame
from harness.spec import LoadedSpec, load_spec

app = typer.Typer(
    help="Simulate and replay GPU scheduling policies: will this policy pay off on real hardware, and by how much?",
    no_args_is_help=True,
    add_completion=False,
)
trace_app = typer.Typer(help="Inspect and make op traces (Parquet).", no_args_is_help=True)
app.add_typer(trace_app, name="trace")

console = Console()
err_console = Console(stderr=True)

DEMO_SPEC = SPECS_DIR / "layer_streaming_demo.toml"


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {escape(message)}", highlight=False)
    raise typer.Exit(code)


def _default_out(results_root: Path, spec_name: str, backend: str) -> Path:
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    out = results_root / f"{spec_name}-{backend}-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = results_root / f"{spec_name}-{backend}-{stamp}-{n}"
    return out


def _sim_backend_factory(loaded: LoadedSpec, repetition: int):
    from sim import SimBackend

    devices = loaded.workload.devices(loaded.workload_params)
    return SimBackend(loaded.profile, devices, loaded.device_memory_bytes, seed=loaded.spec.seed + repetition)


def print_summary(loaded: LoadedSpec, results: SpecResults, out: Path) -> None:
    """Metrics as rows, policies as columns (mean over repetitions)."""
    frame = summary_frame(results, loaded.workload.summary_metrics)
    table = Table(title=f"{loaded.spec.name}: {loaded.workload.name} on {loaded.profile.name}", title_justify="left")
    table.add_column("metric", style="bold")
    for label in frame.index:
        table.add_column(escape(str(label)), justify="right")
    for metric in frame.columns:
        table.add_row(metric, *(_fmt(frame.loc[label, metric]) for label in frame.index))
    console.print(table)
    for _, run in results.failed.iterrows():
        err_console.print(f"[red]run {escape(run['run_id'])} failed:[/] {escape(run['error'])}", highlight=False)
    console.print(f"results: [bold]{out}[/]  ({len(results.runs)} runs)")


def _fmt(value: float) -> str:
    if value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def _run_to_folder(spec_path: Path, out: Path | None, results_root: Path, backend: str, factory_for, progress) -> Path:
    """Validate a spec, run every policy on ``backend``, write the results folder, print the summary.

    ``factory_for(loaded)`` makes the per-run backend factory; ``progress()`` is a
    context manager yielding the per-run callback. Exits non-zero on bad input and
    with status 1 when a run failed (the others' results are still written).
    """
    try:
        loaded = load_spec(spec_path)
        out = out or _default_out(results_root, loaded.spec.name, backend)
        if out.exists():
            _fail(f"{out}: already exists; results are never overwritten")
        factory = factory_for(loaded)
        with progress() as on_run:
            results = run_spec(loaded, factory, on_run=on_run)
    except InputError as err:
        _fail(str(err))
    write_results(out, results.tables)
    print_summary(loaded, results, out)
    if len(results.failed):
        raise typer.Exit(1)
    return out


@contextlib.contextmanager
def _sim_progress():
    with console.status("simulating…") as status:
        yield lambda rid: status.update(f"simulating {rid}")


@contextlib.contextmanager
def _replay_progress():
    # No live spinner here: its refresh thread takes the GIL from the timed host thread.
    yield lambda rid: console.print(f"replaying {rid}", highlight=False)


def simulate_spec(spec_path: Path, out: Path | None, results_root: Path) -> Path:
    """Validate a spec, simulate every policy, write results; exits non-zero on bad input."""
    return _run_to_folder(spec_path, out, results_root, "sim", lambda loaded: _sim_backend_factory, _sim_progress)


@app.command()
def sim(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist)."),
    results_root: Path = typer.Option(Path("results"), help="Where the default results folder goes."),
) -> None:
    """Simulate every policy of SPEC and write a results folder of Parquet tables."""
    simulate_spec(spec, out, results_root)


@app.command()
def demo(
    out: Path | None = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist)."),
    results_root: Path = typer.Option(Path("results"), help="Where the default results folder goes."),
) -> None:
    """Run the bundled layer-streaming example end to end (sync vs prefetch vs resident)."""
    console.print(f"spec: {DEMO_SPEC}")
    simulate_spec(DEMO_SPEC, out, results_root)


@app.command()
def bench(
    segments: int = typer.Option(20_000, help="Segments in the layer-streaming run."),
    policy: str = typer.Option("prefetch", help="sync, prefetch or resident."),
    repeat: int = typer.Option(3, help="Timed repetitions; the best is reported."),
) -> None:
    """Measure simulated ops per second on one core (a large layer-streaming run)."""
    from harness.bench import run_bench

    report = run_bench(segments, policy, repeat)
    table = Table(title="simulator throughput (one core)", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, value)
    console.print(table)


@app.command()
def profiles() -> None:
    """List the bundled hardware profiles and which one is each GPU's default."""
    from harness.profile import available_profiles, gpu_defaults, load_profile
    from harness.runtime import Direction, HostMemory

    table = Table(title="hardware profiles (traces/profiles/)", title_justify="left")
    for column in ("name", "gpu", "memory GiB", "H2D 1 GiB GB/s", "launch µs", "source"):
        table.add_column(column)
    for name in available_profiles():
        p = load_profile(name)
        gbps = (1 << 30) / p.copy_time_us(1 << 30, Direction.H2D, HostMemory.PINNED) / 1e3
        table.add_row(name, p.device.gpu_name, f"{p.device.memory_bytes / 2**30:.1f}", f"{gbps:.1f}", f"{p.host.launch_us}", p.figures.provenance.source)
    console.print(table)
    defaults = Table(title="GPU defaults (traces/profiles/gpu-defaults.toml): a spec may name the alias", title_justify="left")
    for column in ("alias", "gpu", "profile"):
        defaults.add_column(column)
    for alias, default in sorted(gpu_defaults().items()):
        defaults.add_row(alias, default.gpu_name, default.profile)
    console.print(defaults)


@trace_app.command("validate")
def trace_validate(path: Path = typer.Argument(..., help="Op-trace Parquet file.")) -> None:
    """Check a trace against the format and print its provenance and contents."""
    from harness.trace import load_trace

    try:
        trace = load_trace(path)
    except InputError as err:
        _fail(str(err))
    ops = trace.ops
    console.print(f"[bold]{path}[/]: {len(ops)} ops, valid (format 1)")
    for key, value in trace.provenance.__dict__.items():
        console.print(f"  {key}: {value}")
    counts = ops.groupby("kind").agg(ops=("name", "size"), bytes=("bytes", "sum"), duration_us=("duration_us", "sum"))
    console.print(counts.to_string())


@trace_app.command("synth-layers")
def trace_synth_layers(
    out: Path = typer.Argument(..., help="Trace file to write."),
    segments: int = typer.Option(9, min=1),
    param_bytes: int = typer.Option(1_370_000_000, min=1, help="Parameters per inner segment."),
    compute_us: float = typer.Option(30_000.0, min=0.0, help="Compute per inner segment, µs."),
    kernels_per_segment: int = typer.Option(4, min=1),
    edge_scale: float = typer.Option(0.25, help="Size and compute of the first and last segment relative to inner ones."),
    profile: str = typer.Option("h100-sxm-pcie5", help="Profile used to fill in the copies' durations."),
) -> None:
    """Write a synthetic layer-streaming trace (provenance says so)."""
    from harness.workloads.layer_streaming.synth import synth_layer_trace

    try:
        path = synth_layer_trace(out, segments, param_bytes, compute_us, kernels_per_segment, edge_scale, profile)
    except InputError as err:
        _fail(str(err))
    console.print(f"wrote {path}")


# --------------------------------------------------------------------------- replay, calibrate, compare (issue 3)


def _replay_backend_factory(loaded: LoadedSpec):
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

    def make(spec: LoadedSpec, repetition: int):
        return ReplayBackend(context, spec.profile, spec.device_memory_bytes, seed=spec.spec.seed + repetition)

    return make


@app.command()
def replay(
    spec: Path = typer.Argument(..., help="Experiment spec (TOML)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Results folder to create (must not exist)."),
    results_root: Path = typer.Option(Path("results"), help="Where the default results folder goes."),
) -> None:
    """Run every policy of SPEC on the real CUDA GPU and write the same results tables (backend `replay`)."""
    from replay.gpu import CudaUnavailable

    try:
        _run_to_folder(spec, out, results_root, "replay", _replay_backend_factory, _replay_progress)
    except CudaUnavailable as err:
        _fail(f"harness replay: {err}")


@app.command()
def calibrate(
    name: str = typer.Option(..., help="Profile name (the file is traces/profiles/NAME.toml unless --out is given)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Profile file to write."),
    base_profile: str = typer.Option("h100-sxm-pcie5", help="Profile whose memory figure caps the calibration runs."),
    notes: str = typer.Option("", help="Free text for the profile's provenance notes."),
    force: bool = typer.Option(False, help="Replace an existing profile file."),
) -> None:
    """Measure this GPU's hardware profile (host link, duplex, host costs, kernel tables) and write it."""
    from harness.paths import PROFILES_DIR
    from harness.profile import load_profile
    from replay.calibrate import calibrate as run_calibration
    from replay.calibrate import write_profile
    from replay.gpu import CudaUnavailable

    path = out or PROFILES_DIR / f"{name}.toml"
    if path.exists() and not force:
        _fail(f"{path}: already exists; pass --force to replace it")
    try:
        base = load_profile(base_profile)
        raw = run_calibration(name, base, notes, log=lambda line: console.print(line, highlight=False))
    except CudaUnavailable as err:
        _fail(f"harness calibrate: {err}")
    except InputError as err:
        _fail(str(err))
    header = f"# Hardware profile, format version 1 (see traces/README.md). Written by `harness calibrate --name {name}`.\n"
    write_profile(raw, path, header)
    console.print(f"wrote [bold]{path}[/]")
    console.print(
        "to make it the simulator's default for this GPU, point the GPU's alias at it in traces/profiles/gpu-defaults.toml",
        highlight=False,
    )


@app.command()
def compare(
    results: list[Path] = typer.Argument(..., help="Results folders: sim and replay runs of the same specs."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Fidelity Parquet file to create (must not exist)."),
    results_root: Path = typer.Option(Path("results"), help="Where the default fidelity file goes."),
    show: list[str] = typer.Option(["makespan_us"], help="Metrics to print ('all' for every one); the file holds all."),
) -> None:
    """Join sim and replay runs of the same spec and policy: simulated, measured and relative error per metric."""
    from harness.compare import fidelity_table, load_many, write_fidelity

    try:
        runs, metrics = load_many(results)
        table = fidelity_table(runs, metrics)
    except InputError as err:
        _fail(str(err))
    if out is None:
        stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out = results_root / f"fidelity-{stamp}.parquet"
    if out.exists():
        _fail(f"{out}: already exists; results are never overwritten")
    write_fidelity(out, table)
    shown = table if "all" in show else table[table["metric"].isin(show)]
    view = Table(title="fidelity: simulated vs measured (median over repetitions)", title_justify="left")
    for column in ("spec", "policy", "metric", "simulated", "measured", "range measured", "error", "rank sim/real"):
        view.add_column(column, justify="left" if column in ("spec", "policy", "metric") else "right")
    for r in shown.itertuples():
        error = "-" if r.rel_error != r.rel_error else f"{r.rel_error:+.2%}"
        style = "red" if r.rank_simulated != r.rank_measured else None
        view.add_row(
            r.spec_name, r.policy_label, r.metric, _fmt(r.simulated), _fmt(r.measured),
            f"{_fmt(r.measured_min)}-{_fmt(r.measured_max)}", error, f"{r.rank_simulated}/{r.rank_measured}", style=style,
        )
    console.print(view)
    console.print(f"fidelity table: [bold]{out}[/]  ({len(table)} rows)")


@app.command()
def dashboard(
    results: list[Path] = typer.Argument(None, help="Results folders, folders of them, or fidelity tables (default: results/)."),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps the dashboard on this machine."),
    port: int = typer.Option(8501, help="Port to serve on."),
) -> None:
    """Browse and compare results in a Streamlit app (runs, policy comparison, timelines, fidelity, sweeps)."""
    import os

    import dashboard
    from dashboard.sources import DIRS_ENV

    app_path = Path(dashboard.__file__).parent / "app.py"
    paths = [str(p.resolve()) for p in (results or [Path("results")])]
    env = dict(os.environ, **{DIRS_ENV: os.pathsep.join(paths)})
    command = [
        sys.executable, "-m", "streamlit", "run", str(app_path),
        "--server.address", host, "--server.port", str(port), "--server.headless", "true",
        "--browser.gatherUsageStats", "false", "--theme.base", "light", "--client.toolbarMode", "viewer",
    ]
    console.print(f"dashboard on [bold]http://{host}:{port}[/] over {len(paths)} path(s); Ctrl-C stops it")
    sys.stdout.flush()
    # Become the server (no child left behind when this process is stopped).
    os.execve(sys.executable, command, env)


# --------------------------------------------------------------------------- continuous batching (issue 5)
from harness.workloads.continuous_batching.commands import batching_crossover, bench_batching  # noqa: E402

app.command("bench-batching")(bench_batching)
app.command("batching-crossover")(batching_crossover)


def main() -> None:  # pragma: no cover - console entry point
    app()


if __name__ == "__main__":  # pragma: no cover
    sys.exit(app())
