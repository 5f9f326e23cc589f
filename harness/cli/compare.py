"""``harness compare``: how well the simulator predicted what the replay measured."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from harness.cli.common import INTERRUPTED, check_out, console, fail, fmt, print_table, utc_stamp
from harness.errors import InputError
from harness.results import remove_stale_staging


def compare(
    results: list[Path] = typer.Argument(..., help="Results folders: sim and replay runs of the same specs."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Fidelity Parquet file to create (must not exist)."),
    results_root: Path = typer.Option(Path("results"), help="Where the default fidelity file goes."),
    show: list[str] = typer.Option(["makespan_us"], help="Metrics to print ('all' for every one); the file holds all."),
) -> None:
    """Join sim and replay runs of the same spec and policy: simulated, measured and relative error per metric."""
    from fidelity.compare import fidelity_table, load_many, write_fidelity

    out = out or results_root / f"fidelity-{utc_stamp()}.parquet"
    check_out(out, "fidelity file")
    try:
        runs, metrics = load_many(results)
        table = fidelity_table(runs, metrics)
    except InputError as err:
        fail(str(err))
    try:
        write_fidelity(out, table)
    except OSError as err:
        fail(f"{out}: cannot write the fidelity file: {err.strerror or err}")
    except KeyboardInterrupt:
        fail("interrupted (Ctrl-C) while writing the fidelity file: nothing was written", INTERRUPTED)
    remove_stale_staging(out.parent)
    shown = table if "all" in show else table[table["metric"].isin(show)]
    view = Table(title="fidelity: simulated vs measured (median over repetitions)", title_justify="left")
    for column in ("spec", "policy", "metric", "simulated", "measured", "range measured", "error", "rank sim/real"):
        view.add_column(column, justify="left" if column in ("spec", "policy", "metric") else "right")
    for r in shown.itertuples():
        error = "-" if r.rel_error != r.rel_error else f"{r.rel_error:+.2%}"
        style = "red" if r.rank_simulated != r.rank_measured else None
        view.add_row(
            r.spec_name,
            r.policy_label,
            r.metric,
            fmt(r.simulated),
            fmt(r.measured),
            f"{fmt(r.measured_min)}-{fmt(r.measured_max)}",
            error,
            f"{r.rank_simulated}/{r.rank_measured}",
            style=style,
        )
    print_table(view)
    console.print(f"fidelity table: [bold]{out}[/]  ({len(table)} rows)")


def register(app: typer.Typer) -> None:
    app.command()(compare)
