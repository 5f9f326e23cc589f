"""Inputs of the recorded workload: a program recorded by torch.profiler, imported as an op trace.

``trace`` is an op-trace Parquet file that ``harness trace import`` wrote from a
profiler recording (relative to the spec file); :func:`prepare` turns it into a
:class:`~workloads.recorded.program.RecordedProgram`. ``devices`` is how many GPUs
the run has: 1 (a trace of one GPU; another GPU's number becomes device 0), or a
multi-rank import's rank count (``harness trace import r0.json r1.json ...``: rank r
on device r, its collectives checked to agree between ranks).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pydantic

from harness.errors import SPEC_WORKLOAD, InputError
from harness.multirank_import import collective_mismatch
from harness.trace import load_trace, require_values
from harness.workload import PrepareContext, WorkloadParams
from workloads.recorded.program import RecordedProgram, build_program


class RecordedParams(WorkloadParams):
    """The ``[workload]`` table of a recorded spec."""

    trace: str  # op trace written by `harness trace import`, relative to the spec file
    devices: int = pydantic.Field(default=1, ge=1, le=64)  # GPUs of the run: a multi-rank recording's rank count


def prepare(ctx: PrepareContext) -> RecordedProgram:
    params: RecordedParams = ctx.params
    path = (ctx.spec_dir / params.trace).resolve()
    trace = load_trace(path, categorical_strings=True)  # strings only compared and factorized here
    profiler_mode = trace.provenance.profiler_mode
    handed = [_checked_ops(path, trace.ops, params)]
    del trace
    # The trace's frame handed over (no name here holds it): build_program frees it once it has read it.
    program = build_program(handed.pop(), str(path), profiler_mode)
    if not program.streams:
        raise InputError(path, "", "no GPU op of the trace is linked to a host call (column 'correlation')")
    return program


def _checked_ops(path, ops: pd.DataFrame, params: RecordedParams) -> pd.DataFrame:
    """The trace's ops, checked for what a recorded program needs, on the run's devices."""
    if "correlation" not in ops.columns or ops["correlation"].isna().all():
        raise InputError(
            path, "column 'correlation'", "not an imported profiler trace: write it with `harness trace import`"
        )
    is_call = ops["kind"].str.startswith("call_").to_numpy(dtype=bool)
    if not is_call.any():
        raise InputError(path, "", "the trace records no host runtime calls: nothing to re-issue")
    require_values(path, ops, "start_us", np.ones(len(ops), dtype=bool), "a recorded op needs its start")
    require_values(path, ops, "thread", is_call, "a host call needs its thread")
    require_values(path, ops, "host_gap_us", is_call, "a host call needs the CPU time before it")
    return _one_device(path, ops) if params.devices == 1 else _ranks(path, ops, params.devices)


def _one_device(path, ops: pd.DataFrame) -> pd.DataFrame:
    """A recorded program runs on one device: the trace's one GPU becomes device 0 (refused with several)."""
    devices = sorted(int(d) for d in ops.loc[ops["device"] >= 0, "device"].unique())
    if len(devices) > 1:
        raise InputError(
            path,
            "column 'device'",
            f"GPU ops of {len(devices)} devices {devices}: set devices = {max(devices) + 1} in [workload] for a"
            " multi-rank recording (harness trace import of one trace per rank), or re-import the recording with"
            f" --device N (e.g. --device {devices[0]})",
        )
    if devices and devices[0] != 0:
        ops = ops.assign(device=ops["device"].where(ops["device"] < 0, 0).astype(ops["device"].dtype))
    return ops


def _ranks(path, ops: pd.DataFrame, devices: int) -> pd.DataFrame:
    """A multi-rank recording of ``devices`` GPUs (the spec's): its devices within them, its collectives agreeing."""
    used = sorted(int(d) for d in ops.loc[ops["device"] >= 0, "device"].unique())
    if used and used[-1] >= devices:
        raise InputError(
            SPEC_WORKLOAD,
            "field 'devices'",
            f"the trace {path.name} has GPU ops on devices {used}: set devices = {used[-1] + 1}",
        )
    mismatch = collective_mismatch(ops)
    if mismatch is not None:
        rank, what = mismatch
        raise InputError(path, f"rank {rank}", what)
    return ops
