"""Collective sweep: one NCCL collective at every message size (1 KiB..1 GiB) on 2-8 GPUs, as nccl-tests
measures it (time per call, algbw, busbw), so that the simulator's collective model (``sim.collectives``)
can be checked against the multi-GPU replay size by size (issue 26: within 5% at 2, 4 and 8 GPUs).
"""

from harness.workload import ErrorBound, Fidelity, NoParams, PolicyDef, Workload
from workloads.collective_sweep.inputs import CollectiveSweepParams, estimate, prepare
from workloads.collective_sweep.metrics import metrics
from workloads.collective_sweep.policies import OPS, POLICIES

WORKLOAD = Workload(
    name="collective_sweep",
    params=CollectiveSweepParams,
    prepare=prepare,
    policies={op: PolicyDef(op, NoParams, POLICIES[op], f"{op} at every size, every rank") for op in OPS},
    metrics=metrics,
    summary_metrics=("time_us", "busbw_gbps"),
    devices=lambda params: params.gpus,
    fidelity=Fidelity(
        shown_metrics=("time_us", "busbw_gbps"), error_bounds=(ErrorBound("time_us", 0.05, 0.05),)
    ),
    estimate=estimate,
)
