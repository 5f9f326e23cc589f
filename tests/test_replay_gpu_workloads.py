"""KV backup, offload coordinator and pipeline forwarding replayed unchanged on a real CUDA GPU.

Skipped without torch and CUDA.

Small inputs, every policy of kv_backup, offload_coordinator and pipeline_forwarding
(one GPU), checked for the workloads' invariants in the replay's own timeline; and
host threads doing host work at the same time do not serialise on the GIL. Output of
the last runs on the device: measurements/2026-11-26_h100*_workloads-*/gpu_tests.log.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from harness.backend import run_policy
from harness.workload import PrepareContext, Workload
from workloads.kv_backup import WORKLOAD as KV
from workloads.offload_coordinator import WORKLOAD as OFFLOAD
from workloads.pipeline_forwarding import WORKLOAD as PIPELINE

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

KV_PARAMS = dict(
    layers=8,
    batch=4,
    kv_bytes_per_token_per_layer=656,
    forward_us=2000.0,
    schedule_us=300.0,
    host_alloc_us=50.0,
    steps=6,
)
OFFLOAD_PARAMS = dict(
    corpus_bytes=48 * 131072,
    block_bytes=131072,
    cpu_workers=8,
    batch_blocks=4,
    pressure_limit=8,
    stages=[dict(name="match", cpu_mibps=120.0, gpu_mibps=650.0), dict(name="entropy", cpu_mibps=280.0)],
)
PIPELINE_PARAMS = dict(
    stages=2,
    gpus=1,
    compute_us=1500.0,
    activation_bytes=20480,
    encode_us=20.0,
    alloc_us=150.0,
    stage0_setup_us=300.0,
    link_latency_us=250.0,
    link_gbit_per_s=1.0,
    tokens=5,
)


def replay_all(context, profile, workload: Workload, raw: dict) -> dict[str, tuple[pd.DataFrame, dict[str, float]]]:
    """Every policy of the workload on the GPU: its ops and run-level metrics."""
    from replay.engine import ReplayBackend

    params = workload.params.model_validate(raw)
    inputs = workload.prepare(PrepareContext(params, Path("."), profile, profile.device.memory_bytes, 0))
    out = {}
    for name, policy in workload.policies.items():
        run = run_policy(ReplayBackend(context, profile, seed=0, warmup_runs=1), policy.main, inputs, policy.params())
        ops = run.ops
        ops.insert(0, "run_id", name)
        rows = workload.metrics(inputs, ops, run.result)
        out[name] = ops, {r.metric: r.value for r in rows if r.item == -1}
    return out


def test_kv_backup_policies_replay_and_back_up_every_step(context, profile):
    runs = replay_all(context, profile, KV, KV_PARAMS)
    for name in (
        "inline",
        "async_stream",
        "deferred",
        "async_scheduler_rank_only",
    ):  # one rank: rank-only loses nothing
        assert runs[name][1]["backups_lost"] == 0, name
    assert runs["none"][1]["backups_lost"] == KV_PARAMS["steps"]
    ops, m = runs["async_stream"]
    backups = ops[ops["kind"] == "copy_d2h"]
    assert set(backups["stream"]) == {"backup"} and len(backups) == KV_PARAMS["steps"]
    assert m["tpot_us"] < runs["inline"][1]["tpot_us"]  # the host's 300 µs of scheduling hides behind the forward


def test_offload_policies_replay_with_the_ratchet_locking_the_gpu_out(context, profile):
    runs = replay_all(context, profile, OFFLOAD, OFFLOAD_PARAMS)
    fix, bug = runs["streaming_backpressure"][1], runs["streaming_ratchet"][1]
    assert fix["pressure_final"] == 0 and fix["pressure_min"] >= 0
    assert bug["pressure_final"] >= OFFLOAD_PARAMS["pressure_limit"]
    assert bug["gpu_blocks"] == OFFLOAD_PARAMS["pressure_limit"]  # the first two batches, then never again
    assert runs["cpu_only"][1]["gpu_share"] == 0 and runs["serial_gpu_coordinator"][1]["gpu_share"] == 1
    workers = runs["cpu_only"][0]
    assert workers[workers["kind"] == "host_work"]["thread"].nunique() == OFFLOAD_PARAMS["cpu_workers"]


def test_pipeline_policies_replay_on_one_gpu_with_tokens_in_order(context, profile):
    runs = replay_all(context, profile, PIPELINE, PIPELINE_PARAMS)
    for name, (ops, m) in runs.items():
        assert m["tokens_emitted"] == PIPELINE_PARAMS["tokens"] and m["tokens_out_of_order"] == 0, name
        assert set(ops.loc[ops["device"] >= 0, "device"]) == {0}
    assert runs["overlapped"][1]["tpot_us"] < runs["alloc_per_token"][1]["tpot_us"]


def test_host_threads_working_at_once_do_not_serialise(context, profile):
    from replay.engine import ReplayBackend

    def worker(rt):
        yield rt.host_work(10_000.0, "work")

    def main(rt):
        t0 = yield rt.now()
        threads = []
        for i in range(8):
            threads.append((yield rt.spawn(worker, name=f"worker{i}")))
        for th in threads:
            yield rt.join(th)
        return (yield rt.now()) - t0

    run = run_policy(ReplayBackend(context, profile, seed=0, warmup_runs=0), main)
    ops = run.ops
    work = ops[ops["kind"] == "host_work"]
    assert len(work) == 8
    assert ((work["end_us"] - work["start_us"]) < 10_500).all()
    # Together, not one after another (80 ms); spawning 8 Python threads took 2.1 ms on the lent H200's host.
    assert work["end_us"].max() - work["start_us"].min() < 20_000


two_gpus = pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs")


@pytest.fixture(scope="module")
def context2():
    from replay.engine import ReplayContext

    return ReplayContext(2)


@two_gpus
def test_kv_backup_on_two_ranks_loses_rank_1_backups_only_with_the_bug(context2, profile):
    runs = replay_all(context2, profile, KV, {**KV_PARAMS, "tp_ranks": 2})
    for name in ("inline", "async_stream", "deferred"):
        assert runs[name][1]["backups_lost"] == 0, name
    assert runs["async_scheduler_rank_only"][1]["backups_lost"] == KV_PARAMS["steps"]  # rank 1's, every step
    ops = runs["async_stream"][0]
    assert set(ops.loc[ops["kind"] == "copy_d2h", "device"]) == {0, 1}


@two_gpus
def test_pipeline_on_two_gpus_one_stage_each(context2, profile):
    runs = replay_all(context2, profile, PIPELINE, {**PIPELINE_PARAMS, "gpus": 2})
    for name, (ops, m) in runs.items():
        assert m["tokens_emitted"] == PIPELINE_PARAMS["tokens"] and m["tokens_out_of_order"] == 0, name
        dev = ops[ops["device"] >= 0]
        assert dict(dev.groupby("stream")["device"].first()) == {"stage0": 0, "stage1": 1}
        assert (dev["end_us"] >= dev["start_us"]).all() and (dev["start_us"] >= dev["issue_us"] - 5.0).all()
