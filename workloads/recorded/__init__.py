"""Recorded programs: what torch.profiler recorded of a real PyTorch program, re-issued through the runtime.

A spec names an op trace written by ``harness trace import`` from a profiler
recording (``kind = "recorded"``, ``trace = "...parquet"``); the policy
``as_recorded`` re-issues the program as recorded, on the simulator or, unchanged,
on the GPU. See :mod:`.program` for what each recorded call becomes, and
:mod:`.metrics` for the metrics.
"""

from harness.verdict import HeadlineMetric
from harness.workload import Fidelity, PolicyDef, Workload
from workloads.recorded import policies
from workloads.recorded.commands import commands
from workloads.recorded.inputs import RecordedParams, prepare
from workloads.recorded.metrics import WHAT_IFS_SCHEMA, metrics, notes, tables

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
        "prefetch_copies": PolicyDef(
            "prefetch_copies",
            policies.PrefetchCopiesParams,
            policies.prefetch_copies,
            "what-if: each group's H2D copies on a side stream, depth groups ahead (depth + 1 buffers)",
            policies.check_prefetch_copies,
        ),
        "async_d2h": PolicyDef(
            "async_d2h",
            policies.GroupedParams,
            policies.async_d2h,
            "what-if: each run of D2H copies on a side stream behind one event; the host sync after it is dropped",
            policies.check_async_d2h,
        ),
        "graph_launch": PolicyDef(
            "graph_launch",
            policies.GroupedParams,
            policies.graph_launch,
            "what-if: each group's consecutive kernel launches as one CUDA-graph launch",
            policies.check_graph_launch,
        ),
        "scale_kernels": PolicyDef(
            "scale_kernels",
            policies.ScaleKernelsParams,
            policies.scale_kernels,
            "what-if: kernels whose name matches a pattern take factor x their recorded time",
            policies.check_scale_kernels,
        ),
        "overlap_collectives": PolicyDef(
            "overlap_collectives",
            policies.GroupedParams,
            policies.overlap_collectives,
            "what-if: every rank's collectives overlap the compute after them; waited for at the next group",
            policies.check_overlap_collectives,
        ),
    },
    metrics=metrics,
    summary_metrics=(
        "makespan_us",
        "recorded_makespan_us",
        "unprofiled_makespan_us",
        "profiler_overhead_removed_us",
        "recording_host_vs_calibration",
        "recording_host_slow",
        "makespan_vs_recorded",
        "gpu_busy_frac",
        "gpu_wait_for_host_us",
        "h2d_busy_frac",
        "d2h_busy_frac",
        "group_time_us",
        "inferred_waits",
    ),
    headline_metrics=(HeadlineMetric("makespan_us", "lower", "recorded_makespan_us", "the recording"),),
    devices=lambda params: params.devices,  # a multi-rank recording: one per rank (harness.multirank_import)
    tables=tables,
    ops_categorical_strings=True,  # the metrics compare, test and group the ops' strings
    extra_tables={"what_ifs": WHAT_IFS_SCHEMA},
    notes=notes,
    commands=commands,
    fidelity=Fidelity(shown_metrics=("makespan_us", "recorded_makespan_us", "gpu_busy_frac", "group_time_us")),
)
