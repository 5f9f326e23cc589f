"""Tensor-parallel decode: an all-reduce after attention and after the MLP of every layer, on 2-8 GPUs,
with the async KV backup of ``kv_backup`` on every rank (issue 26).

The seed behind ``kv_backup`` (``../shared/reference/001-decode-kv-async-backup.txt``) is about every
tensor-parallel rank; this workload puts its policies on a TP program whose ranks meet in NCCL
all-reduces (``harness.runtime`` contract point 14, ``sim.collectives``), so a rank that falls behind
(its backup, its host) holds every rank at the next all-reduce.
"""

from harness.workload import Workload
from workloads.tensor_parallel import policies
from workloads.tensor_parallel.fidelity import FIDELITY
from workloads.tensor_parallel.inputs import TensorParallelParams, estimate, prepare
from workloads.tensor_parallel.metrics import metrics

WORKLOAD = Workload(
    name="tensor_parallel",
    params=TensorParallelParams,
    prepare=prepare,
    policies=policies.POLICIES,
    metrics=metrics,
    summary_metrics=("tpot_us", "collective_fraction", "backup_lag_mean_us", "backups_lost"),
    devices=lambda params: params.tp_ranks,
    fidelity=FIDELITY,
    estimate=estimate,
)
