"""Inputs of the recorded workload: a program recorded by torch.profiler, imported as an op trace.

``trace`` is an op-trace Parquet file that ``harness trace import`` wrote from a
profiler recording (relative to the spec file); :func:`prepare` turns it into a
:class:`~workloads.recorded.program.RecordedProgram`.
"""

from __future__ import annotations

import pydantic

from harness.errors import SPEC_WORKLOAD, InputError
from harness.trace import load_trace
from harness.workload import PrepareContext, WorkloadParams
from workloads.recorded.program import RecordedProgram, build_program


class RecordedParams(WorkloadParams):
    """The ``[workload]`` table of a recorded spec."""

    trace: str  # op trace written by `harness trace import`, relative to the spec file
    devices: int = pydantic.Field(default=1, ge=1, le=64)  # GPUs the run has: a multi-rank recording's rank count


def prepare(ctx: PrepareContext) -> RecordedProgram:
    params: RecordedParams = ctx.params
    path = (ctx.spec_dir / params.trace).resolve()
    trace = load_trace(path)
    ops = trace.ops
    if "correlation" not in ops.columns or ops["correlation"].isna().all():
        raise InputError(
            path, "column 'correlation'", "not an imported profiler trace: write it with `harness trace import`"
        )
    calls = ops[ops["kind"].str.startswith("call_")]
    if calls.empty:
        raise InputError(path, "", "the trace records no host runtime calls: nothing to re-issue")
    program = build_program(ops, str(path), trace.provenance.profiler_mode)
    if not program.streams:
        raise InputError(path, "", "no GPU op of the trace is linked to a host call (column 'correlation')")
    if program.devices > params.devices:
        raise InputError(
            SPEC_WORKLOAD,
            "field 'devices'",
            f"the trace {path.name} uses {program.devices} GPUs; set devices = {program.devices} in [workload]",
        )
    return program
