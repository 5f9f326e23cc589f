"""Continuous batching: LLM decode requests through a GPU server's batch scheduler.

Models the batch scheduler of a GPU LLM server (see
``../shared/reference/003-cuda-batch-scheduler.rs.txt``): a host scheduler thread
takes streaming chat requests off a channel, forms a batch (a fixed window, or
the adaptive zero-window policy), and runs it through a batched generate loop
(single-request fast path, batched or staggered prefill, mid-batch joins, slot
recycling) whose GPU steps cost what a step cost model says
(``traces/cost_models/``). Requests come from a trace (Parquet, CSV, the Azure
LLM inference trace layout) or a generator (Poisson, bursty, closed-loop
clients). Per-request rows go to a ``requests`` results table.
"""

from harness.verdict import HeadlineMetric
from harness.workload import PolicyDef, Workload
from workloads.continuous_batching import policies
from workloads.continuous_batching.commands import commands
from workloads.continuous_batching.fidelity import FIDELITY
from workloads.continuous_batching.inputs import BatchingParams, estimate, prepare
from workloads.continuous_batching.metrics import REQUESTS_SCHEMA, metrics, tables

WORKLOAD = Workload(
    name="continuous_batching",
    params=BatchingParams,
    prepare=prepare,
    policies={
        "fixed_window": PolicyDef(
            "fixed_window",
            policies.FixedWindowParams,
            policies.fixed_window,
            "wait window_ms after the first request for up to max_batch (0: immediate start)",
        ),
        "adaptive": PolicyDef(
            "adaptive",
            policies.AdaptiveParams,
            policies.adaptive,
            "zero window: yield, drain, wait 3 ms for stragglers if peers were found, "
            "2 ms if a singleton follows a batch > 1",
        ),
    },
    metrics=metrics,
    summary_metrics=(
        "ttft_p50_us",
        "ttft_p99_us",
        "ttft_p999_us",
        "itl_p50_us",
        "tpot_p50_us",
        "e2e_p99_us",
        "queue_p99_us",
        "agg_tok_s",
        "per_slot_tok_s",
        "batch_size_mean",
        "singleton_batches",
        "gpu_busy_frac",
        "rejected_requests",
    ),
    headline_metrics=(
        HeadlineMetric("ttft_p99_us", "lower"),
        HeadlineMetric("tpot_p50_us", "lower"),
        HeadlineMetric("agg_tok_s", "higher"),
    ),
    tables=tables,
    extra_tables={"requests": REQUESTS_SCHEMA},
    commands=commands,
    fidelity=FIDELITY,
    estimate=estimate,
)
