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


@trace_app.command("kernels")
def trace_kernels(
    path: Path = typer.Argument(..., help="Op-trace Parquet file (from `harness trace import`, or any op trace)."),
    top: int = typer.Option(20, "--top", min=1, help="Show the N kernel names with the most GPU time."),
    csv: bool = typer.Option(False, "--csv", help="Print CSV (full names, machine-readable) instead of a table."),
) -> None:
    """Kernel breakdown: each kernel name's count, total and mean GPU time, and share of the trace's GPU time."""
    from rich.table import Table

    from harness.cli.common import print_table
    from harness.kernel_breakdown import kernel_breakdown
    from harness.trace import load_trace

    try:
        trace = load_trace(path)
    except InputError as err:
        fail(str(err))
    table = kernel_breakdown(trace.ops)
    if table.empty:
        fail(f"{path}: the trace has no kernels (column 'kind' has no 'kernel' row on a GPU device)")
    shown = table.head(top)
    if csv:
        typer.echo(shown.to_csv(index=False), nl=False)
        return
    title = f"{path.name}: {len(table)} kernel names, {int(table['count'].sum())} kernels"
    out = Table(title=title, title_justify="left")
    for column, justify in (("name", "left"), ("count", "right"), ("total_us", "right"), ("mean_us", "right")):
        out.add_column(column, justify=justify)
    out.add_column("share of GPU time", justify="right")
    for row in shown.itertuples():
        out.add_row(row.name, f"{row.count:,}", f"{row.total_us:,.1f}", f"{row.mean_us:,.2f}", f"{row.share:.1%}")
    print_table(out)
    if len(table) > top:
        console.print(f"... and {len(table) - top} more (--top {len(table)} shows them all)", highlight=False)


@trace_app.command("import")
def trace_import(
    profiles: list[Path] = typer.Argument(
        ...,
        help="Chrome trace written by torch.profiler (export_chrome_trace), .json or .json.gz; several: one per "
        "rank, in rank order (merged into one multi-device trace, NCCL kernels as collectives).",
    ),
    out: Path = typer.Option(..., "--out", "-o", help="Op-trace Parquet file to write (must not exist)."),
    device: int | None = typer.Option(
        None, help="Import this GPU only (required when the recording holds several devices)."
    ),
) -> None:
    """Import a torch.profiler trace: GPU ops, every CUDA runtime call of each host thread, their links and steps.

    Given one trace per rank, merge them into one program on as many devices (rank r on device r)."""
    from harness.multirank_import import import_ranks_to_parquet
    from harness.profiler_import import import_to_parquet

    if len(profiles) > 1 and device is not None:
        fail("--device picks a GPU of one trace; it cannot be given with one trace per rank")
    check_out(out, "trace")
    profile = profiles[0]
    try:
        if len(profiles) > 1:
            imported = import_ranks_to_parquet(profiles, out)
        else:
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
