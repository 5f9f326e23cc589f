"""The GPU's hand-off to a kernel released by a copy or an event (``[device] kernel_after_copy_us``,
``kernel_after_event_us``), timed through the replay engine as layer streaming issues it.

A layer's kernel is queued behind its parameters' copy: on the same stream (``sync``), or behind a wait for
the event recorded after that copy on a side stream (``prefetch``). Either way the kernel starts only once
the stream is handed from the copy engine (or the other stream) back to compute, a few microseconds the
kernel's own duration does not hold: the stand-in kernels are tuned back to back, behind a kernel.
:func:`handoff_policy` times each case in rounds, every kernel queued before what releases it:

* **behind a kernel** (the reference): a gate kernel, then the kernel;
* **behind a copy**: a gate kernel, a 1 MiB pinned H2D copy, then the kernel, on one stream;
* **behind an event**: on a side stream a gate kernel, the copy and a record; on the compute stream a wait
  for that event, then the kernel.

Each figure is the median over rounds of the kernel's end after what released it (the copy's end) less the
median of the reference kernel's end after its gate's (:func:`handoff_figures`, pure: tests run the policy
on the simulator and read its profile's figures back).
"""

from __future__ import annotations

import statistics
from typing import Any

from harness.runtime import Direction, HostMemory, KernelKind, PolicyGen, Runtime
from replay.fit import MiB

ROUNDS = 15
GATE_US = 300.0  # longer than the host takes to queue what follows it
KERNEL_US = 100.0
COPY_BYTES = 1 * MiB
PREFIX = "cal-handoff"
GATE, REFERENCE, AFTER_COPY, AFTER_EVENT, COPY = (
    f"{PREFIX}:gate",
    f"{PREFIX}:after-kernel",
    f"{PREFIX}:after-copy",
    f"{PREFIX}:after-event",
    f"{PREFIX}:copy",
)


def handoff_policy(rt: Runtime, rounds: int = ROUNDS) -> PolicyGen:
    """Each round: a kernel behind a kernel, behind a copy on its stream, behind another stream's event."""
    compute = yield rt.create_stream(0, "cal-compute")
    side = yield rt.create_stream(0, "cal-side")
    buf = yield rt.alloc(0, COPY_BYTES, "cal-handoff-buffer")
    if buf is None:
        raise MemoryError(f"hand-off calibration: {COPY_BYTES} bytes do not fit the device budget")
    for _ in range(rounds):
        yield rt.launch(compute, GATE, GATE_US, 1.0, KernelKind.COMPUTE)
        yield rt.launch(compute, REFERENCE, KERNEL_US, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(compute)
        yield rt.launch(compute, GATE, GATE_US, 1.0, KernelKind.COMPUTE)
        yield rt.copy(compute, COPY_BYTES, Direction.H2D, HostMemory.PINNED, COPY, buf)
        yield rt.launch(compute, AFTER_COPY, KERNEL_US, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(compute)
        yield rt.launch(side, GATE, GATE_US, 1.0, KernelKind.COMPUTE)
        yield rt.copy(side, COPY_BYTES, Direction.H2D, HostMemory.PINNED, COPY, buf)
        ready = yield rt.record(side)
        yield rt.wait_event(compute, ready)
        yield rt.launch(compute, AFTER_EVENT, KERNEL_US, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(compute)
        yield rt.sync_stream(side)
    yield rt.free(buf)


def handoff_figures(ops: Any) -> dict[str, float]:
    """``kernel_after_copy_us`` and ``kernel_after_event_us`` from a :func:`handoff_policy` run's ops (µs, >= 0)."""
    ops = ops.sort_values("op_id")
    # Per round, in issue order: gate, reference | gate, copy, after-copy | gate, copy, after-event.
    gates = ops[(ops["kind"] == "kernel") & (ops["name"] == GATE)]["end_us"].to_numpy()
    copies = ops[ops["name"] == COPY]["end_us"].to_numpy()
    ends = {name: ops[ops["name"] == name]["end_us"].to_numpy() for name in (REFERENCE, AFTER_COPY, AFTER_EVENT)}
    rounds = len(ends[REFERENCE])
    if not rounds or len(gates) != 3 * rounds or len(copies) != 2 * rounds:
        raise ValueError("hand-off calibration: the run's ops are not the policy's rounds")
    behind_kernel = statistics.median(ends[REFERENCE] - gates[0::3])
    behind_copy = statistics.median(ends[AFTER_COPY] - copies[0::2])
    behind_event = statistics.median(ends[AFTER_EVENT] - copies[1::2])
    return {
        "kernel_after_copy_us": round(max(0.0, float(behind_copy - behind_kernel)), 2),
        "kernel_after_event_us": round(max(0.0, float(behind_event - behind_kernel)), 2),
    }


def measure_handoffs(backend: Any, log: Any) -> dict[str, float]:
    """Both figures through ``backend`` (a replay backend: its warm-up tunes the kernels first)."""
    from harness.backend import run_policy

    figures = handoff_figures(run_policy(backend, handoff_policy).ops)
    log(
        f"  a kernel behind a copy starts {figures['kernel_after_copy_us']} µs after it, behind another stream's "
        f"event {figures['kernel_after_event_us']} µs (beyond its time behind a kernel)"
    )
    return figures
