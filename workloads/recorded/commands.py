"""The recorded workload's own ``harness`` command: ``harness trace as-run SPEC --out DIR``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import typer

from harness.backend import BackendFactory
from harness.errors import InputError
from harness.results import OutputPathError, check_output_path, write_results
from harness.runner import run_spec
from harness.spec import load_spec
from harness.terminal import console, fail
from harness.trace import load_trace
from workloads.recorded.recording import RecordingBackend


def trace_as_run(
    spec: Path = typer.Argument(..., help='A spec of the recorded workload (kind = "recorded").'),
    out: Path = typer.Option(..., "--out", "-o", help="Results folder to create (must not exist)."),
) -> None:
    """Write the recording of a recorded spec as a results folder (backend `recording`), on the simulation's clock."""
    try:
        loaded = load_spec(spec)
        if loaded.workload.name != "recorded":
            raise InputError(
                spec, "field 'workload.kind'", f"as-run takes a recorded spec, not {loaded.workload.name!r}"
            )
        check_output_path(out)
        trace = load_trace((loaded.path.parent / loaded.workload_params.trace).resolve())
        recorded = [p for p in loaded.policies if p.policy.name == "as_recorded"][:1]
        if not recorded:
            raise InputError(spec, "field 'policies'", "the spec runs no as_recorded policy to label the recording")
        one = dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"repetitions": 1}), policies=recorded)
        results = run_spec(one, lambda s, rep: RecordingBackend(trace.ops, trace.provenance.hardware))
        if len(results.failed):
            fail(f"{spec}: the recording could not be tabulated: {results.failed['error'].iloc[0]}", 1)
        write_results(out, results.tables)
    except (InputError, OutputPathError) as err:
        fail(str(err))
    console.print(f"wrote [bold]{out}[/]: the recording of {loaded.spec.name} as run {results.runs['run_id'].iloc[0]}")


def commands(simulator: BackendFactory) -> dict[str, Callable[..., None]]:
    """``{command name: typer command}``: the recording as a results folder, in the ``trace`` group."""
    return {"trace as-run": trace_as_run}
