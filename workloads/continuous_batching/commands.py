"""The continuous-batching workload's own ``harness`` commands: ``bench-batching`` and ``batching-crossover``.

:func:`commands` is the workload's ``commands`` field: the CLI calls it with the
simulator's backend factory and registers what it returns.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer
from rich.table import Table

from harness.backend import BackendFactory
from harness.errors import InputError
from harness.terminal import console, fail


def commands(simulator: BackendFactory) -> dict[str, Callable[..., None]]:
    """``{command name: typer command}``, each simulating with backends from ``simulator``."""

    def bench_batching(
        trace: Path | None = typer.Option(
            None, help="Request trace (.parquet, or .csv incl. the Azure layout); default: Poisson-generated."
        ),
        requests: int = typer.Option(10_000, min=1, help="Requests to simulate (the trace's first rows)."),
        cost_model: str = typer.Option(
            "h100-tinyllama1b-graphs", help="Step cost model (traces/cost_models/NAME.toml)."
        ),
        max_batch: int = typer.Option(4, min=1, help="KV slots (M) of the adaptive policy."),
        rate_per_s: float | None = typer.Option(
            None, help="Poisson arrival rate (replaces the trace's times when given with --trace)."
        ),
        repeat: int = typer.Option(1, min=1, help="Timed repetitions; the best is reported."),
    ) -> None:
        """Time the simulation of a large request trace on one core (continuous batching, adaptive policy).

        "best wall s" is the simulation and the ops-table columns its metrics read (no results folder is written).
        """
        from workloads.continuous_batching.experiments import bench_requests

        try:
            report = bench_requests(simulator, trace, requests, cost_model, max_batch, rate_per_s, repeat)
        except InputError as err:
            fail(str(err))
        table = Table(title="continuous batching: simulation time", title_justify="left")
        table.add_column("what")
        table.add_column("value", justify="right")
        for key, value in report.items():
            table.add_row(key, value)
        console.print(table)

    def batching_crossover(
        cost_model: list[str] = typer.Option(
            ["engine-pmat-quoted", "h100-tinyllama1b-graphs", "h100-tinyllama1b-eager"], help="Cost models to evaluate."
        ),
        clients: int = typer.Option(4, min=2, help="Closed-loop clients (and max batch)."),
        lo: int = typer.Option(16, min=1, help="Shortest prompt length tried."),
        hi: int = typer.Option(4096, min=2, help="Longest prompt length tried."),
    ) -> None:
        """Find the prompt length where staggered prefill's mean TTFT stops losing to batched prefill.

        With c closed-loop clients, 256-token outputs.
        """
        from workloads.continuous_batching.experiments import prefill_crossover

        if lo >= hi:
            fail(f"--lo {lo} must be below --hi {hi}: there are no prompt lengths to search between them")
        for name in cost_model:
            try:
                result = prefill_crossover(simulator, name, lo=lo, hi=hi, clients=clients)
            except InputError as err:
                fail(str(err))
            table = Table(title=f"{name}: batched vs staggered prefill, c={clients}", title_justify="left")
            for column in (
                "prompt tokens",
                "TTFT mean batched ms",
                "TTFT mean staggered ms",
                "tok/s batched",
                "tok/s staggered",
            ):
                table.add_column(column, justify="right")
            for length, tb, ts, rb, rs in result.evaluated:
                table.add_row(str(length), f"{tb / 1e3:.1f}", f"{ts / 1e3:.1f}", f"{rb:.1f}", f"{rs:.1f}")
            console.print(table)
            where = (
                f"{result.prompt_tokens} tokens"
                if result.prompt_tokens is not None
                else f"not within {lo}..{hi} tokens"
            )
            console.print(
                f"staggered prefill's mean TTFT wins from: [bold]{where}[/]; "
                f"on aggregate tok/s it {'wins somewhere' if result.throughput_ever_wins else 'never wins'} "
                "in the lengths evaluated"
            )

    return {"bench-batching": bench_batching, "batching-crossover": batching_crossover}
