"""``harness export ...``: a run of a results folder in another tool's format."""

from __future__ import annotations

from pathlib import Path

import typer

from harness.cli.common import INTERRUPTED, check_out, console, fail
from harness.errors import InputError

export_app = typer.Typer(help="Write a run of a results folder in another tool's format.", no_args_is_help=True)


@export_app.command("perfetto")
def export_perfetto_command(
    results: Path = typer.Argument(..., help="Results folder."),
    run: str | None = typer.Option(
        None, help="Run id, or a policy label (its first repetition); default: the only run."
    ),
    out: Path = typer.Option(
        ..., "--out", "-o", help="Chrome-trace JSON to write (.json, or .json.gz); opens in ui.perfetto.dev."
    ),
) -> None:
    """A run's timeline as a Chrome trace in Kineto's conventions (pid = device, tid = stream, launch flows)."""
    from harness.perfetto_export import export_perfetto
    from harness.results import ResultsError, read_results

    check_out(out, "export")
    try:
        res = read_results(results)
    except ResultsError as err:
        fail(str(err))
    runs = res.runs[res.runs["status"] == "ok"]
    if run is not None:
        chosen = runs[(runs["run_id"] == run) | (runs["policy_label"] == run)]
    else:
        chosen = runs
    if chosen.empty or (run is None and len(chosen) > 1):
        known = ", ".join(runs["run_id"])
        fail(f"{results}: name one run with --run (run id or policy label); runs: {known}")
    run_id = chosen.sort_values("repetition")["run_id"].iloc[0]
    ops = res.ops[res.ops["run_id"] == run_id]
    try:
        export_perfetto(ops, out, title=run_id)
    except (InputError, ValueError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"{out}: cannot write the export: {err.strerror or err}")
    except KeyboardInterrupt:
        fail(f"interrupted (Ctrl-C) while exporting {run_id}: nothing was written", INTERRUPTED)
    console.print(f"wrote [bold]{out}[/]: {len(ops)} ops of {run_id}", highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(export_app, name="export")
