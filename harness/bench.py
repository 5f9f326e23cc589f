"""Simulator throughput: simulated ops per second on one core, for any spec's policy.

The benchmark goes through a spec like every run does: the spec's workload
prepares the inputs once, then one policy is simulated ``repeat`` times and the
best wall time is reported. The policy is picked by label among the spec's
policies, or by name among its workload's policies with default parameters.
"""

from __future__ import annotations

import dataclasses
import time

from harness.backend import BackendFactory
from harness.errors import InputError
from harness.limits import Limits
from harness.machine import machine_report
from harness.runner import check_limits
from harness.spec import LoadedSpec, PolicyRun


def pick_policy(loaded: LoadedSpec, label: str) -> PolicyRun:
    """The spec's policy run labelled ``label``, else the workload's policy ``label`` with default parameters."""
    for run in loaded.policies:
        if run.label == label:
            return run
    definition = loaded.workload.policies.get(label)
    if definition is None:
        known = sorted({r.label for r in loaded.policies} | set(loaded.workload.policies))
        raise InputError(loaded.path, "policies", f"no policy labelled or named {label!r}; known: {', '.join(known)}")
    try:
        params = definition.params()
    except Exception as err:  # pydantic: a required parameter without a default
        raise InputError(
            loaded.path, "policies", f"policy {label!r} needs parameters; add it to the spec: {err}"
        ) from None
    return PolicyRun(label, definition, params)


def run_bench(
    loaded: LoadedSpec, label: str, repeat: int, simulator: BackendFactory, limits: Limits | None = None
) -> dict[str, str]:
    """Simulate policy ``label`` of the spec ``repeat`` times; report the best run's throughput.

    One run is checked against ``limits`` (``harness.runner.check_limits``) before the inputs are prepared.
    """
    if repeat < 1:
        raise InputError(loaded.path, "", f"repeat must be >= 1, got {repeat}")
    run = pick_policy(loaded, label)
    one_run = dataclasses.replace(loaded, policies=[run], spec=loaded.spec.model_copy(update={"repetitions": 1}))
    check_limits(one_run, limits)
    inputs = loaded.workload.prepare(loaded.prepare_context())
    devices = loaded.workload.devices(loaded.workload_params)
    best = float("inf")
    ops = 0
    simulated_us = 0.0
    for _ in range(repeat):
        backend = simulator(loaded.profile, devices, loaded.device_memory_bytes, loaded.spec.seed)
        start = time.perf_counter()
        outcome = backend.run(run.policy.main, inputs, run.params)
        best = min(best, time.perf_counter() - start)
        ops = len(outcome.ops)
        simulated_us = max((row.end_us for row in outcome.ops), default=0.0)
    return {
        "spec": str(loaded.path),
        "policy": run.label,
        "ops simulated": f"{ops:,}",
        "best wall s": f"{best:.3f}",
        "ops/s": f"{ops / best:,.0f}",
        "simulated GPU time s": f"{simulated_us / 1e6:.2f}",
        "speed-up over real time": f"{simulated_us / 1e6 / best:,.0f}x",
        **machine_report(),
    }
