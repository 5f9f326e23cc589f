"""Recorded programs: what torch.profiler recorded of a real PyTorch program, re-issued through the runtime.

A spec names an op trace written by ``harness trace import`` from a profiler
recording (``kind = "recorded"``, ``trace = "...parquet"``); the policy
``as_recorded`` re-issues the program as recorded, on the simulator or, unchanged,
on the GPU. See :mod:`.program` for what each recorded call becomes, and
:mod:`.metrics` for the metrics.
"""

from harness.workload import Fidelity, PolicyDef, Workload
from workloads.recorded import policies
from workloads.recorded.inputs import RecordedParams, prepare
from workloads.recorded.metrics import metrics

WORKLOAD = Workload(
    name="recorded",
    params=RecordedParams,
    prepare=prepare,
    policies={
        "as_recorded": PolicyDef(
            "as_recorded",
            policies.AsRecordedParams,
            policies.as_recorded,
            "re-issue the recorded calls with their recorded CPU time, GPU durations, streams, copies and syncs",
        ),
    },
    metrics=metrics,
    summary_metrics=(
        "makespan_us",
        "recorded_makespan_us",
        "makespan_vs_recorded",
        "gpu_busy_frac",
        "gpu_wait_for_host_us",
        "h2d_busy_frac",
        "d2h_busy_frac",
        "group_time_us",
        "inferred_waits",
    ),
    devices=lambda params: 1,
    fidelity=Fidelity(shown_metrics=("makespan_us", "recorded_makespan_us", "gpu_busy_frac", "group_time_us")),
)
