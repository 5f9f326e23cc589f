"""Tensor-parallel decode (issue 26): its specs simulate, the all-reduces hold the ranks together,
TPOT is the GPU-bound closed form, and the KV-backup policies keep their verdicts on every rank."""

from __future__ import annotations

import pytest

from harness.backend import run_policy
from harness.paths import SPECS_DIR
from harness.runner import run_spec
from harness.runtime import CollectiveOp
from harness.spec import load_spec
from sim import SimBackend
from sim.collectives import CollectiveModel
from workloads.tensor_parallel import WORKLOAD
from workloads.tensor_parallel.inputs import TensorParallelInputs

SMALL = {"layers": 3, "steps": 5}  # the specs' inputs, fewer layers and steps: seconds in CI


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_each_spec_simulates_and_the_backup_verdicts_hold_on_every_rank(tp):
    loaded = load_spec(SPECS_DIR / f"tensor_parallel_tp{tp}.toml", SMALL)
    assert loaded.workload.devices(loaded.workload_params) == tp
    results = run_spec(loaded, lambda spec, rep: SimBackend(spec.profile, spec.workload.devices(spec.workload_params)))
    assert results.failed.empty, results.failed["error"].tolist()
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]], on="run_id")
    v = m.set_index(["policy_label", "metric", "item"])["value"]
    steps = SMALL["steps"]
    assert v["async_stream", "tpot_us", -1] < v["inline", "tpot_us", -1]
    assert v["none", "tpot_us", -1] <= v["async_stream", "tpot_us", -1]
    assert v["async_stream", "backups_lost", -1] == 0
    assert v["async_scheduler_rank_only", "backups_lost", -1] == (tp - 1) * steps
    assert v["none", "backups_lost", -1] == tp * steps
    assert 0 < v["none", "collective_fraction", -1] < 1


def small_inputs(tp: int, **overrides) -> TensorParallelInputs:
    base = dict(
        layers=4,
        attn_us=400.0 / tp,
        mlp_us=1200.0 / tp,
        all_reduce_bytes=512 << 10,
        backup_bytes=80_000 // tp,
        schedule_us=200.0,
        host_alloc_us=50.0,
        steps=4,
        tp_ranks=tp,
    )
    base.update(overrides)
    return TensorParallelInputs(**base)


def simulate(h100, inputs, policy="none"):
    definition = WORKLOAD.policies[policy]
    run = run_policy(SimBackend(h100, devices=inputs.tp_ranks), definition.main, inputs, definition.params())
    return run.ops


@pytest.mark.parametrize("tp", [2, 4, 8])
def test_gpu_bound_tpot_is_layers_times_kernels_and_two_all_reduces(h100, tp):
    inputs = small_inputs(tp)
    ops = simulate(h100, inputs)
    rows = {m.metric: m.value for m in WORKLOAD.metrics(inputs, ops, None) if m.item == -1}
    _, all_reduce_us = CollectiveModel(h100).time_us(CollectiveOp.ALL_REDUCE, inputs.all_reduce_bytes, tp)
    per_layer = inputs.attn_us + inputs.mlp_us + 2 * all_reduce_us
    assert rows["tpot_us"] == pytest.approx(inputs.layers * per_layer, rel=1e-6)


def test_every_all_reduce_ends_together_after_every_ranks_kernel_before_it(h100):
    inputs = small_inputs(4, attn_us=100.0)
    ops = simulate(h100, inputs, "async_scheduler_rank_only")  # rank 0 does more: the others wait for it
    reduces = ops[ops.kind == "collective"]
    assert len(reduces) == 4 * inputs.steps * inputs.layers * 2
    for _, group in reduces.groupby("name"):
        assert len(group) == 4 and group.end_us.nunique() == 1
        before = ops[(ops.kind == "kernel") & (ops.device >= 0)]
        for row in group.itertuples():
            previous = before[(before.device == row.device) & (before.op_id < row.op_id)]
            assert previous.end_us.max() <= group.start_us.max() + 1e-9
