"""Offload coordinator: CPU workers compress a stream's blocks, a GPU coordinator
takes blocks off their hands while its pressure counter is under a limit.

Models a merged change to a compression library (see
``../shared/reference/000-compression-gpu-backpressure.txt``): it fixed a
one-way pressure ratchet that locked the GPU out after the first batches, and
removed a design that ran GPU work through one coordinator thread whose
serialised entropy encoding capped throughput. Policies are documented in
:mod:`.policies`, inputs in :mod:`.inputs`, metrics in :mod:`.metrics`.
"""

from harness.verdict import HeadlineMetric
from harness.workload import NoParams, PolicyDef, Workload
from workloads.offload_coordinator import policies
from workloads.offload_coordinator.fidelity import FIDELITY
from workloads.offload_coordinator.inputs import OffloadParams, estimate, prepare
from workloads.offload_coordinator.metrics import metrics

WORKLOAD = Workload(
    name="offload_coordinator",
    params=OffloadParams,
    prepare=prepare,
    policies={
        "cpu_only": PolicyDef("cpu_only", NoParams, policies.cpu_only, "every block compressed by the CPU workers"),
        "serial_gpu_coordinator": PolicyDef(
            "serial_gpu_coordinator",
            NoParams,
            policies.serial_gpu_coordinator,
            "removed design: every block through one coordinator thread that also runs the CPU-only stages",
        ),
        "streaming_backpressure": PolicyDef(
            "streaming_backpressure",
            NoParams,
            policies.streaming_backpressure,
            "the fix: GPU while pressure < limit; completion lowers pressure by the batch length",
        ),
        "streaming_ratchet": PolicyDef(
            "streaming_ratchet",
            NoParams,
            policies.streaming_ratchet,
            "the bug: completion never lowers pressure, so the GPU is locked out after the first batches",
        ),
    },
    metrics=metrics,
    summary_metrics=(
        "throughput_mibps",
        "gpu_share",
        "gpu_share_late",
        "last_gpu_route_us",
        "latency_p50_us",
        "latency_p99_us",
        "gpu_busy_frac",
        "worker_busy_frac",
        "pressure_max",
        "pressure_final",
    ),
    headline_metrics=(HeadlineMetric("throughput_mibps", "higher"), HeadlineMetric("latency_p99_us", "lower")),
    fidelity=FIDELITY,
    estimate=estimate,
)
