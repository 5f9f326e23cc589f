"""``harness bench``: simulated ops per second on one core, for any spec's policy."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

import typer
from rich.table import Table

from harness.cli.common import (
    INTERRUPTED,
    MAX_MEMORY_OPTION,
    MAX_OPS_OPTION,
    fail,
    limit_options,
    print_table,
)
from harness.errors import InputError
from harness.paths import SPECS_DIR
from harness.spec import load_spec

BENCH_SPEC = SPECS_DIR / "bench_layer_streaming.toml"


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """``KEY=VALUE`` pairs, each VALUE read as a TOML value (a bare word is a string)."""
    overrides: dict[str, Any] = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key.strip():
            raise typer.BadParameter(f"{pair!r}: expected KEY=VALUE", param_hint="--set")
        try:
            value = tomllib.loads(f"v = {raw}")["v"]
        except tomllib.TOMLDecodeError:
            value = raw
        overrides[key.strip()] = value
    return overrides


def bench(
    spec: Path = typer.Argument(
        BENCH_SPEC, help="Spec whose policy is timed (default: the bundled layer-streaming bench spec)."
    ),
    policy: str = typer.Option(
        "prefetch", help="Label of one of the spec's policies, or the name of one of its workload's policies."
    ),
    set_: list[str] = typer.Option(
        [], "--set", help="Override a [workload] field, KEY=VALUE (TOML value), e.g. --set segments=200000."
    ),
    segments: int | None = typer.Option(None, min=1, help="Shorthand for --set segments=N (layer streaming)."),
    repeat: int = typer.Option(3, min=1, help="Timed repetitions; the best is reported."),
    max_ops: int | None = MAX_OPS_OPTION,
    max_memory_gb: float | None = MAX_MEMORY_OPTION,
) -> None:
    """Measure simulated ops per second on one core (default: a 20,000-segment layer-streaming run)."""
    from harness.bench import run_bench
    from sim import SimBackend

    overrides = parse_overrides(set_)
    if segments is not None:
        overrides["segments"] = segments
    limits = limit_options(None, max_ops, max_memory_gb)
    try:
        loaded = load_spec(spec, overrides, limits)
        report = run_bench(loaded, policy, repeat, SimBackend, limits)
    except InputError as err:
        fail(str(err))
    except KeyboardInterrupt:
        fail("interrupted (Ctrl-C) while benchmarking: nothing was measured", INTERRUPTED)
    table = Table(title="simulator throughput (one core)", title_justify="left", show_header=False)
    table.add_column("what", style="bold")
    table.add_column("value", justify="right")
    for key, value in report.items():
        table.add_row(key, value)
    print_table(table)


def register(app: typer.Typer) -> None:
    app.command()(bench)
