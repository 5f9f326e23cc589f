"""The layer-streaming workload's own ``harness`` command: ``harness trace synth-layers``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from harness.backend import BackendFactory
from harness.errors import InputError
from harness.profile import QUOTED_PROFILE
from harness.terminal import console, fail


def trace_synth_layers(
    out: Path = typer.Argument(..., help="Trace file to write."),
    segments: int = typer.Option(9, min=1),
    param_bytes: int = typer.Option(1_370_000_000, min=1, help="Parameters per inner segment."),
    compute_us: float = typer.Option(30_000.0, min=0.0, help="Compute per inner segment, µs."),
    kernels_per_segment: int = typer.Option(4, min=1),
    edge_scale: float = typer.Option(0.25, help="Size and compute of the first and last segment relative to inner ones."),
    profile: str = typer.Option(QUOTED_PROFILE, help="Profile used to fill in the copies' durations."),
) -> None:
    """Write a synthetic layer-streaming trace (provenance says so)."""
    from workloads.layer_streaming.synth import synth_layer_trace

    try:
        path = synth_layer_trace(out, segments, param_bytes, compute_us, kernels_per_segment, edge_scale, profile)
    except InputError as err:
        fail(str(err))
    console.print(f"wrote {path}")


def commands(simulator: BackendFactory) -> dict[str, Callable[..., None]]:
    """``{command name: typer command}``: the synthetic-trace writer, in the ``trace`` group."""
    return {"trace synth-layers": trace_synth_layers}
