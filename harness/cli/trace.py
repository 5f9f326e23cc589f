"""``harness trace ...``: inspect op traces (workloads add their own trace commands to this group)."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import console, fail
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
    console.print(f"[bold]{path}[/]: {len(ops)} ops, valid (format 1)")
    for key, value in trace.provenance.__dict__.items():
        console.print(f"  {key}: {value}")
    counts = ops.groupby("kind").agg(ops=("name", "size"), bytes=("bytes", "sum"), duration_us=("duration_us", "sum"))
    console.print(counts.to_string())


def register(app: typer.Typer) -> None:
    app.add_typer(trace_app, name="trace")
