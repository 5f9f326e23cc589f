"""The layer-streaming workload's own ``harness`` command: ``harness trace synth-layers``."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import typer

from harness.backend import BackendFactory
from harness.errors import InputError
from harness.limits import MAX_DURATION_US
from harness.profile import QUOTED_PROFILE
from harness.terminal import console, fail


def trace_synth_layers(
    out: Path = typer.Argument(..., help="Trace file to write."),
    segments: int = typer.Option(9, min=1),
    param_bytes: int = typer.Option(1_370_000_000, min=1, help="Parameters per inner segment."),
    compute_us: float = typer.Option(30_000.0, min=0.0, help="Compute per inner segment, µs."),
    kernels_per_segment: int = typer.Option(4, min=1),
    edge_scale: float = typer.Option(
        0.25, help="Size and compute of the first and last segment relative to inner ones."
    ),
    profile: str = typer.Option(QUOTED_PROFILE, help="Profile used to fill in the copies' durations."),
    force: bool = typer.Option(False, help="Replace an existing trace file."),
) -> None:
    """Write a synthetic layer-streaming trace (provenance says so); an existing file is kept unless --force."""
    from harness.results import OutputPathError, check_output_path
    from workloads.layer_streaming.synth import synth_layer_trace

    if out.is_dir():
        fail(f"{out}: is a folder; give the trace file's path")
    if out.exists() and not force:
        fail(f"{out}: already exists; pass --force to replace it")
    if segments * kernels_per_segment > 10_000_000:
        fail(f"--segments {segments} x --kernels-per-segment {kernels_per_segment}: more than 10,000,000 rows")
    if not edge_scale > 0 or edge_scale > 1e6:
        fail(f"--edge-scale must be > 0 (and at most 1e6), got {edge_scale}")
    if compute_us > MAX_DURATION_US:
        fail(f"--compute-us {compute_us} is beyond {MAX_DURATION_US:.0e} µs (11.6 days)")
    try:
        if not out.exists():
            check_output_path(out, "trace file")
        path = synth_layer_trace(out, segments, param_bytes, compute_us, kernels_per_segment, edge_scale, profile)
    except (InputError, OutputPathError) as err:
        fail(str(err))
    except OSError as err:
        fail(f"{out}: cannot write the trace: {err.strerror or err}")
    console.print(f"wrote {path}")


def commands(simulator: BackendFactory) -> dict[str, Callable[..., None]]:
    """``{command name: typer command}``: the synthetic-trace writer, in the ``trace`` group."""
    return {"trace synth-layers": trace_synth_layers}
