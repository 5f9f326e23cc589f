"""``harness trace ...``: inspect op traces (workloads add their own trace commands to this group)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import INTERRUPTED, check_out, console, fail
from harness.errors import InputError

trace_app = typer.Typer(help="Inspect and make op traces (Parquet).", no_args_is_help=True)


@trace_app.command("validate")
def trace_validate(path: Path = typer.Argument(..., help="Op-trace Parquet file.")) -> None:
    """Check a trace against the format and print its provenance and contents."""
    from harness.trace import load_trace

    try:
        trace = load_trace(path)
    except InputError as err:
        fail(str(err))
    ops = trace.ops
    if ops.empty:
        fail(f"{path}: the trace has no ops (a simulation of it would be refused)")
    console.print(f"[bold]{path}[/]: {len(ops)} ops, valid")
    for key, value in trace.provenance.__dict__.items():
        console.print(f"  {key}: {value}")
    counts = ops.groupby("kind").agg(ops=("name", "size"), bytes=("bytes", "sum"), duration_us=("duration_us", "sum"))
    console.print(counts.to_string())


@trace_app.command("import")
def trace_import(
    profile: Path = typer.Argument(
        ..., help="Chrome trace written by torch.profiler (export_chrome_trace), .json or .json.gz."
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Op-trace Parquet file to write (must not exist)."),
    device: int | None = typer.Option(
        None, help="Import this GPU only (required when the recording holds several devices)."
    ),
) -> None:
    """Import a torch.profiler trace: GPU ops, every CUDA runtime call of each host thread, their links and steps."""
    from harness.profiler_import import import_to_parquet

    check_out(out, "trace")
    try:
        imported = import_to_parquet(profile, out, device)
    except InputError as err:
        fail(str(err))
    except OSError as err:
        fail(f"{out}: cannot write the trace: {err.strerror or err}")
    except KeyboardInterrupt:
        fail(f"interrupted (Ctrl-C) while importing {profile}: nothing was written", INTERRUPTED)
    ops = imported.ops
    calls = ops["kind"].str.startswith("call_")
    console.print(
        f"wrote [bold]{out}[/]: {int((~calls).sum())} GPU ops, {int(calls.sum())} host calls", highlight=False
    )
    console.print(f"  {imported.provenance.description}", highlight=False)
    if imported.provenance.sync_events != "recorded":
        console.print(
            "  no CUDA sync events: cross-stream waits are inferred from start times when simulated", highlight=False
        )
    console.print(f"  profiler mode: {imported.provenance.profiler_mode}", highlight=False)
    if imported.provenance.notes:
        console.print(f"  notes: {imported.provenance.notes}", highlight=False)
    for warning in imported.warnings:
        console.print(f"  [yellow]warning:[/] {warning}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
