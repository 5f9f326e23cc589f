"""Offload coordinator: the example's quoted directions and sizes, and invariants on random inputs."""

from __future__ import annotations

import math
from collections import Counter
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backend import run_policy
from harness.errors import InputError
from harness.paths import SPECS_DIR
from harness.runner import run_spec
from harness.spec import load_spec
from harness.workload import PrepareContext
from sim import SimBackend
from workloads.offload_coordinator import WORKLOAD
from workloads.offload_coordinator.inputs import MIB, OffloadParams, prepare
from workloads.offload_coordinator.metrics import metrics as offload_metrics
from workloads.offload_coordinator.policies import GPU, RunLog, batch_label

SPEC = SPECS_DIR / "offload_mozilla.toml"
POLICIES = ("cpu_only", "serial_gpu_coordinator", "streaming_backpressure", "streaming_ratchet")


def _sim(h100, inputs, policy: str, seed: int = 0) -> tuple[pd.DataFrame, RunLog]:
    backend = SimBackend(h100, 1, seed=seed)
    definition = WORKLOAD.policies[policy]
    outcome = run_policy(backend, definition.main, inputs, definition.params())
    ops = outcome.ops
    return ops, outcome.result


def _run_level(ops, log, inputs) -> dict[str, float]:
    return {r.metric: r.value for r in offload_metrics(inputs, ops, log) if r.item == -1}


# --------------------------------------------------------------------------- the example spec


@pytest.fixture(scope="module")
def example():
    loaded = load_spec(SPEC)
    results = run_spec(
        loaded, lambda spec, rep: SimBackend(spec.profile, 1, spec.device_memory_bytes, seed=spec.spec.seed)
    )
    assert results.failed.empty, results.failed["error"].tolist()
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]], on="run_id")
    run_level = m[m["item"] == -1].pivot_table(index="policy_label", columns="metric", values="value")
    buckets = m[m["metric"] == "gpu_share_bucket"].pivot_table(
        index="item", columns="policy_label", values="value", dropna=False
    )
    return loaded, run_level, buckets


def test_example_gpu_share_goes_from_about_16_to_about_62_percent(example):
    _, r, _ = example
    ratchet = r.loc["streaming_ratchet", "gpu_share"]
    fixed = r.loc["streaming_backpressure", "gpu_share"]
    assert 0.13 <= ratchet <= 0.20  # quoted: ~16%
    assert 0.55 <= fixed <= 0.70  # quoted: ~62%
    assert fixed / ratchet > 3.0


def test_example_ratchet_locks_the_gpu_out_after_the_first_batches(example):
    loaded, r, buckets = example
    params = loaded.workload_params
    first_batches = math.ceil(params.pressure_limit / params.batch_blocks) * params.batch_blocks
    assert r.loc["streaming_ratchet", "gpu_blocks"] == first_batches
    assert r.loc["streaming_ratchet", "gpu_share_late"] == 0.0
    assert r.loc["streaming_ratchet", "last_gpu_route_us"] < 0.01 * r.loc["streaming_ratchet", "makespan_us"]
    assert r.loc["streaming_ratchet", "pressure_final"] >= params.pressure_limit
    later = buckets["streaming_ratchet"].iloc[1:].dropna()
    assert len(later) >= 5 and (later == 0.0).all()
    # The fix keeps routing to the GPU through the whole stream and returns pressure to zero.
    fixed = buckets["streaming_backpressure"].dropna()
    assert (fixed.iloc[: len(fixed) // 2] > 0).sum() >= 3 and fixed.iloc[-1] > 0
    assert r.loc["streaming_backpressure", "gpu_share_late"] > 0.45
    assert r.loc["streaming_backpressure", "pressure_final"] == 0.0


def test_example_serial_coordinator_is_capped_near_28_mibps(example):
    _, r, _ = example
    serial = r.loc["serial_gpu_coordinator", "throughput_mibps"]
    assert 25.0 <= serial <= 28.0  # quoted cap: 28 MiB/s
    assert serial < r.loc["cpu_only", "throughput_mibps"]
    assert r.loc["serial_gpu_coordinator", "gpu_busy_frac"] < 0.6  # the GPU waits on the coordinator


def test_example_throughput_order_and_gpu_use(example):
    _, r, _ = example
    tput = r["throughput_mibps"]
    assert tput["streaming_backpressure"] > 1.3 * tput["cpu_only"]
    assert (
        tput["streaming_backpressure"] > tput["streaming_ratchet"] > tput["cpu_only"] > tput["serial_gpu_coordinator"]
    )
    assert r.loc["streaming_backpressure", "gpu_busy_frac"] > 0.9
    assert r.loc["streaming_ratchet", "gpu_busy_frac"] < 0.3
    assert r.loc["cpu_only", "gpu_busy_frac"] == 0.0
    # The price of 4 batches in flight: a GPU block waits behind them, a CPU block does not.
    assert (
        r.loc["streaming_backpressure", "latency_p50_gpu_us"]
        > 2 * r.loc["streaming_backpressure", "latency_p50_cpu_us"]
    )


def test_serial_cap_holds_with_more_workers_and_a_faster_gpu(h100, tmp_path):
    def inputs(workers: int, gpu_mibps: float):
        params = OffloadParams(
            corpus_bytes=96 << 20,
            block_bytes=1 << 20,
            cpu_workers=workers,
            batch_blocks=8,
            pressure_limit=32,
            stages=[dict(name="match", cpu_mibps=12.0, gpu_mibps=gpu_mibps), dict(name="entropy", cpu_mibps=28.0)],
        )
        return prepare(PrepareContext(params, tmp_path, h100, h100.device.memory_bytes, 0))

    small, big = inputs(4, 60.0), inputs(32, 2000.0)
    serial = [_run_level(*_sim(h100, i, "serial_gpu_coordinator"), i)["throughput_mibps"] for i in (small, big)]
    fixed = [_run_level(*_sim(h100, i, "streaming_backpressure"), i)["throughput_mibps"] for i in (small, big)]
    assert all(s <= 28.0 for s in serial) and serial[1] > 25.0
    assert fixed[1] > 4 * serial[1] and fixed[1] > fixed[0]


# --------------------------------------------------------------------------- invariants on random inputs


@st.composite
def offload_inputs(draw):
    n_stages = draw(st.integers(1, 3))
    n_gpu = draw(st.integers(1, n_stages))
    stages = [
        dict(
            name=f"s{k}",
            cpu_mibps=draw(st.floats(5.0, 200.0)),
            **({"gpu_mibps": draw(st.floats(5.0, 500.0))} if k < n_gpu else {}),
        )
        for k in range(n_stages)
    ]
    if draw(st.booleans()):
        source = dict(corpus_bytes=draw(st.integers(1, 6 << 20)), block_bytes=draw(st.integers(16 << 10, 1 << 20)))
    else:
        source = dict(block_sizes="sizes.csv")
        source["_sizes"] = draw(st.lists(st.integers(1, 1 << 20), min_size=1, max_size=40))
    return (
        dict(
            **source,
            stages=stages,
            cpu_workers=draw(st.integers(1, 6)),
            cpu_queue_blocks=draw(st.one_of(st.none(), st.integers(1, 8))),
            batch_blocks=draw(st.integers(1, 8)),
            pressure_limit=draw(st.integers(1, 32)),
            gpu_streams=draw(st.integers(1, 3)),
            cost_jitter=draw(st.sampled_from([0.0, 0.5])),
            d2h_ratio=draw(st.sampled_from([0.0, 0.5, 2.0])),
        ),
        draw(st.sampled_from(POLICIES)),
        draw(st.integers(0, 3)),
    )


def _prepare(h100, raw: dict, folder: Path, seed: int):
    raw = dict(raw)
    sizes = raw.pop("_sizes", None)
    if sizes is not None:
        pd.DataFrame({"block_bytes": sizes}).to_csv(folder / "sizes.csv", index=False)
    return prepare(PrepareContext(OffloadParams(**raw), folder, h100, h100.device.memory_bytes, seed))


@settings(max_examples=60, deadline=None)
@given(offload_inputs())
def test_invariants_on_random_inputs(h100, tmp_path_factory, case):
    raw, policy, seed = case
    inputs = _prepare(h100, raw, tmp_path_factory.mktemp("offload"), seed)
    ops, log = _sim(h100, inputs, policy, seed)
    n_gpu_stages = len(inputs.gpu_stages)
    cpu_stage_names = [s.name for s in inputs.stages]

    # Every block is routed once and compressed exactly once: each stage runs once, on CPU or GPU.
    batches_of = Counter(i for batch in log.batches for i in batch.blocks)
    host = ops[ops["kind"] == "host_work"]
    host_counts = Counter(host["name"])
    kernels = Counter(ops.loc[ops["kind"] == "kernel", "name"])
    for rec, block in zip(log.blocks, inputs.blocks):
        assert rec.route in ("cpu", "gpu") and not math.isnan(rec.done_us)
        on_gpu = rec.route == GPU
        assert batches_of[rec.index] == (1 if on_gpu else 0)
        expected_cpu = cpu_stage_names[n_gpu_stages:] if on_gpu else cpu_stage_names
        assert rec.cpu_stages_run == expected_cpu
        for name in cpu_stage_names:
            assert host_counts[f"{name}[{rec.index}]"] == (name in expected_cpu)
        # Latency covers at least the block's own CPU work.
        cpu_us = sum(s.cpu_us(block.work_bytes) for s in inputs.stages if s.name in expected_cpu)
        assert rec.done_us - rec.taken_us >= cpu_us - 1e-6
    for batch in log.batches:
        for stage in inputs.gpu_stages:
            assert kernels[f"{stage.name}[{batch_label(batch.index)}]"] == 1
    assert sum(len(b.blocks) for b in log.batches) == sum(r.route == GPU for r in log.blocks)

    # Pressure: never negative; with decrement-on-completion it equals the blocks in flight,
    # so it is zero whenever the GPU is idle and at the end; the ratchet only ever goes up.
    pressures = [p for _, p, _ in log.pressure]
    assert all(p >= 0 for p in pressures)
    if policy == "streaming_ratchet":
        assert pressures == sorted(pressures)
        first = min(len(inputs.blocks), math.ceil(inputs.pressure_limit / inputs.batch_blocks) * inputs.batch_blocks)
        assert [r.index for r in log.blocks if r.route == GPU] == list(range(first))
    else:
        assert all(p == in_flight for _, p, in_flight in log.pressure)
        assert not pressures or pressures[-1] == 0
    if policy == "cpu_only":
        assert not log.batches and all(r.route == "cpu" for r in log.blocks)
    # A block is sent only while pressure < limit: in flight never exceeds limit + batch - 1.
    assert all(in_flight <= inputs.pressure_limit + inputs.batch_blocks - 1 for _, _, in_flight in log.pressure)

    # Throughput bounds: the run cannot beat its CPU work spread over its threads, nor the GPU's kernels.
    m = _run_level(ops, log, inputs)
    makespan = m["makespan_us"]
    cpu_work = host["end_us"].sub(host["start_us"]).sum()
    threads = 1 if policy == "serial_gpu_coordinator" else inputs.cpu_workers
    assert makespan >= cpu_work / threads - 1e-6
    kernel_ops = ops[ops["kind"] == "kernel"]
    assert makespan >= kernel_ops["end_us"].sub(kernel_ops["start_us"]).sum() / inputs.gpu_streams - 1e-6
    assert m["throughput_mibps"] == pytest.approx(inputs.total_bytes / MIB / (makespan / 1e6))
    assert 0.0 <= m["gpu_busy_frac"] <= 1.0 + 1e-9 and 0.0 <= m["worker_busy_frac"] <= 1.0 + 1e-9
    assert m["latency_p50_us"] <= m["latency_p99_us"] <= m["latency_max_us"] <= makespan + 1e-6


# --------------------------------------------------------------------------- bad input


def _write_spec(tmp_path: Path, workload: str) -> Path:
    path = tmp_path / "offload.toml"
    path.write_text(
        f'name = "t"\nprofile = "h100-sxm-pcie5"\n\n[workload]\nkind = "offload_coordinator"\n{workload}\n'
        '[[policies]]\nname = "streaming_backpressure"\n'
    )
    return path


STAGES = '[[workload.stages]]\nname = "match"\ncpu_mibps = 12.0\ngpu_mibps = 65.0\n'
COMMON = "cpu_workers = 2\nbatch_blocks = 4\npressure_limit = 8\n"


def test_gpu_stage_after_a_cpu_only_stage_is_rejected(tmp_path):
    stages = '[[workload.stages]]\nname = "entropy"\ncpu_mibps = 28.0\n' + STAGES
    path = _write_spec(tmp_path, f"corpus_bytes = 1000000\nblock_bytes = 65536\n{COMMON}{stages}")
    with pytest.raises(InputError, match=r"offload\.toml: field 'workload.*GPU-capable stages must come first"):
        load_spec(path)


def test_block_size_file_errors_name_file_and_row(tmp_path, h100):
    (tmp_path / "sizes.csv").write_text("block_bytes\n65536\n-3\n")
    path = _write_spec(tmp_path, f'block_sizes = "sizes.csv"\n{COMMON}{STAGES}')
    loaded = load_spec(path)
    with pytest.raises(InputError, match=r"sizes\.csv: row 1, column 'block_bytes': must be a positive whole number"):
        loaded.workload.prepare(PrepareContext(loaded.workload_params, tmp_path, h100, h100.device.memory_bytes, 0))
    (tmp_path / "sizes.csv").write_text("size\n65536\n")
    with pytest.raises(InputError, match=r"sizes\.csv: column 'block_bytes': missing"):
        loaded.workload.prepare(PrepareContext(loaded.workload_params, tmp_path, h100, h100.device.memory_bytes, 0))


def test_both_block_sources_are_rejected(tmp_path):
    path = _write_spec(tmp_path, f'block_sizes = "x.csv"\ncorpus_bytes = 10\nblock_bytes = 5\n{COMMON}{STAGES}')
    with pytest.raises(InputError, match="not both"):
        load_spec(path)


def test_gpu_policy_without_gpu_stage_fails_clearly(h100, tmp_path):
    params = OffloadParams(
        corpus_bytes=1 << 20,
        block_bytes=1 << 18,
        cpu_workers=2,
        batch_blocks=2,
        pressure_limit=4,
        stages=[dict(name="entropy", cpu_mibps=28.0)],
    )
    inputs = prepare(PrepareContext(params, tmp_path, h100, h100.device.memory_bytes, 0))
    with pytest.raises(ValueError, match="needs a stage with gpu_mibps"):
        _sim(h100, inputs, "streaming_backpressure")
    ops, log = _sim(h100, inputs, "cpu_only")
    assert all(r.route == "cpu" for r in log.blocks)
