"""Layer streaming: offloaded weights copied to the GPU segment by segment.

Models a proposed change to a diffusion inference engine (see
``../shared/reference/002-layer-streaming-prefetch.txt``): with weights offloaded
to host memory, each segment's parameters are copied to the GPU before its
compute; the change prefetches the next segment's parameters on another stream
while the current one computes, and falls back to the synchronous path when
the pending buffer cannot be allocated.
"""

from harness.verdict import HeadlineMetric
from harness.workload import NoParams, PolicyDef, Workload
from workloads.layer_streaming import policies
from workloads.layer_streaming.commands import commands
from workloads.layer_streaming.fidelity import FIDELITY
from workloads.layer_streaming.inputs import LayerStreamingParams, estimate, prepare
from workloads.layer_streaming.metrics import metrics

WORKLOAD = Workload(
    name="layer_streaming",
    params=LayerStreamingParams,
    prepare=prepare,
    policies={
        "sync": PolicyDef("sync", NoParams, policies.sync, "H2D then compute, per segment"),
        "prefetch": PolicyDef(
            "prefetch",
            policies.PrefetchParams,
            policies.prefetch,
            "copy the next `depth` segments on a side stream during compute",
        ),
        "resident": PolicyDef("resident", NoParams, policies.resident, "all parameters already on the GPU"),
    },
    metrics=metrics,
    summary_metrics=(
        "makespan_us",
        "segment_time_mean_us",
        "compute_busy_frac",
        "h2d_busy_frac",
        "overlap_frac",
        "fallbacks",
    ),
    headline_metrics=(HeadlineMetric("makespan_us", "lower"),),
    commands=commands,
    fidelity=FIDELITY,
    estimate=estimate,
)
