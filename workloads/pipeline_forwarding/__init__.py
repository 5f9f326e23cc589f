"""Pipeline-parallel decode: activation forwarding between stages, with buffer reuse.

Models a merged change to a distributed LLM server's split decode (see
``../shared/reference/004-pipeline-forwarding-buffer-reuse.txt``): each decode
token's activation is encoded and forwarded from stage to stage; the change
reuses the message envelope and a caller-owned encode buffer instead of
allocating them per token (a modest, fixed CPU saving per token), and names
overlapping stage-0 setup with downstream work as the larger lever.
"""

from harness.verdict import HeadlineMetric
from harness.workload import NoParams, PolicyDef, Workload
from workloads.pipeline_forwarding import policies
from workloads.pipeline_forwarding.fidelity import FIDELITY
from workloads.pipeline_forwarding.inputs import PipelineParams, estimate, prepare
from workloads.pipeline_forwarding.metrics import metrics

WORKLOAD = Workload(
    name="pipeline_forwarding",
    params=PipelineParams,
    prepare=prepare,
    policies={
        "alloc_per_token": PolicyDef(
            "alloc_per_token", NoParams, policies.alloc_per_token, "new encode buffer and message envelope per token"
        ),
        "reuse_buffers": PolicyDef(
            "reuse_buffers", NoParams, policies.reuse_buffers, "one reusable frame and encode buffer per stage"
        ),
        "overlapped": PolicyDef(
            "overlapped",
            NoParams,
            policies.overlapped,
            "reuse_buffers + stage-0 setup of the next token during downstream work",
        ),
    },
    metrics=metrics,
    summary_metrics=(
        "tpot_us",
        "tokens_per_s",
        "stage_compute_us",
        "stage_transfer_us",
        "stage_encode_us",
        "stage_allocate_us",
        "stage_setup_us",
    ),
    headline_metrics=(HeadlineMetric("tpot_us", "lower"),),
    devices=lambda params: params.gpus or params.stages,
    fidelity=FIDELITY,
    estimate=estimate,
)
