"""Simulator throughput benchmark: simulated ops per second on one core."""

from __future__ import annotations

import os
import platform
import time

from harness.profile import load_profile
from harness.workloads.layer_streaming import WORKLOAD
from harness.workloads.layer_streaming.inputs import LayerStreamingInputs, Segment
from harness.runtime import HostMemory
from sim import SimBackend


def cpu_name() -> str:
    """The CPU model, for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def run_bench(segments: int, policy: str, repeat: int) -> dict[str, str]:
    """Simulate ``segments`` layer-streaming segments ``repeat`` times; report the best."""
    profile = load_profile("h100-sxm-pcie5")
    # Alternate transfer- and compute-bound segments so both paths of the model are exercised.
    segs = tuple(Segment(i, (64 << 20) if i % 2 else (16 << 20), 900.0 if i % 3 else 200.0) for i in range(segments))
    inputs = LayerStreamingInputs(segs, HostMemory.PINNED, 1.0, "bench")
    definition = WORKLOAD.policies[policy]
    params = definition.params()
    best = float("inf")
    ops = 0
    for _ in range(repeat):
        backend = SimBackend(profile)
        start = time.perf_counter()
        result = backend.run(definition.main, inputs, params)
        best = min(best, time.perf_counter() - start)
        ops = len(result.ops)
        simulated_us = max(row[10] for row in result.ops)
    return {
        "policy": policy,
        "segments": str(segments),
        "ops simulated": f"{ops:,}",
        "best wall s": f"{best:.3f}",
        "ops/s": f"{ops / best:,.0f}",
        "simulated GPU time s": f"{simulated_us / 1e6:.2f}",
        "speed-up over real time": f"{simulated_us / 1e6 / best:,.0f}x",
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cores visible": str(os.cpu_count()),
    }
