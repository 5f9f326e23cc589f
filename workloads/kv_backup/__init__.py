"""KV backup: the newest decode token's KV copied to host memory every step.

Models a merged change to an LLM serving engine's sparse-attention coordinator
(see ``../shared/reference/001-decode-kv-async-backup.txt``): the per-step D2H
backup moved from the compute stream, with the host waiting, to a dedicated
backup stream ordered by ``forward_done`` / ``backup_done`` events, which the
change reports as 5% better end-to-end TPOT on an H20. The review also caught
that a backup issued only on the scheduler rank loses every other
tensor-parallel rank's shard; ``async_scheduler_rank_only`` models that bug.
"""

from harness.verdict import HeadlineMetric
from harness.workload import Workload
from workloads.kv_backup import policies
from workloads.kv_backup.fidelity import FIDELITY
from workloads.kv_backup.inputs import KvBackupParams, estimate, prepare
from workloads.kv_backup.metrics import metrics

WORKLOAD = Workload(
    name="kv_backup",
    params=KvBackupParams,
    prepare=prepare,
    policies=policies.POLICIES,
    metrics=metrics,
    summary_metrics=("tpot_us", "backup_lag_mean_us", "bytes_backed_up", "host_link_util", "backups_lost"),
    headline_metrics=(HeadlineMetric("tpot_us", "lower"), HeadlineMetric("backups_lost", "lower")),
    devices=lambda params: params.tp_ranks,
    fidelity=FIDELITY,
    estimate=estimate,
)
