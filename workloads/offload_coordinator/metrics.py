"""Metrics of one offload-coordinator run, from its ops timeline and its RunLog.

Run-level rows (item -1):

* ``throughput_mibps``: the stream's bytes / makespan, MiB/s;
* ``gpu_share``: fraction of blocks routed to the GPU; ``gpu_blocks``;
  ``gpu_share_late``: the same over the second half of the stream (by block
  index) — 0 once the ratchet has locked the GPU out;
* ``last_gpu_route_us``: when the last block was routed to the GPU (NaN if none);
* ``latency_{mean,p50,p95,p99,max}_us``: per block, from when the dispatcher
  took it up to when its last stage finished; ``latency_p50_{gpu,cpu}_us``: the
  median over GPU-routed and CPU-routed blocks alone (NaN when there are none);
* ``gpu_busy_frac``: share of the makespan with any GPU op (copy or kernel)
  running; ``gpu_kernel_busy_frac``: kernels only;
* ``worker_busy_frac``: host work on the CPU workers / (workers x makespan);
* ``pressure_max``, ``pressure_min``, ``pressure_final``: the pressure counter;
  with the fix it is back to 0 at the end, with the ratchet it is not.

GPU share over time (item k = time bucket k of ``timeline_buckets`` equal
buckets over the makespan, by the time each block was routed):
``gpu_share_bucket`` (fraction; NaN where no block was routed in the bucket),
``routed_blocks_bucket`` (count); ``bucket_width_us`` (item -1) gives the width.

Per block (item = block index): ``block_taken_us`` (when it was routed),
``block_latency_us`` and ``block_on_gpu`` (1/0), from which the share over time
can be recomputed at any resolution.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.timeline import busy_fraction
from harness.workload import MetricRow
from workloads.offload_coordinator.inputs import MIB, OffloadInputs
from workloads.offload_coordinator.policies import GPU, RunLog


def gpu_share_by_bucket(
    taken_us: np.ndarray, on_gpu: np.ndarray, span_us: float, buckets: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per equal time bucket over ``[0, span_us]``: blocks routed in it and the GPU's share of them."""
    width = span_us / buckets if span_us > 0 else 1.0
    which = np.minimum((taken_us / width).astype(int), buckets - 1)
    routed = np.bincount(which, minlength=buckets).astype(float)
    to_gpu = np.bincount(which, weights=on_gpu.astype(float), minlength=buckets)
    with np.errstate(invalid="ignore", divide="ignore"):
        share = np.where(routed > 0, to_gpu / np.maximum(routed, 1), np.nan)
    return routed, share


def _median(values: np.ndarray) -> float:
    return float(np.median(values)) if values.size else float("nan")


def metrics(inputs: OffloadInputs, ops: pd.DataFrame, log: RunLog) -> list[MetricRow]:
    makespan = float(ops["end_us"].max()) if len(ops) else 0.0
    blocks = log.blocks
    taken = np.array([b.taken_us for b in blocks])
    done = np.array([b.done_us for b in blocks])
    on_gpu = np.array([b.route == GPU for b in blocks])
    latency = done - taken
    n = len(blocks)
    late = on_gpu[n // 2 :]

    rows = [
        MetricRow("makespan_us", makespan, "us"),
        MetricRow("throughput_mibps", inputs.total_bytes / MIB / (makespan / 1e6) if makespan > 0 else 0.0, "MiB/s"),
        MetricRow("gpu_share", float(on_gpu.mean()), "fraction"),
        MetricRow("gpu_blocks", float(on_gpu.sum()), "count"),
        MetricRow("gpu_share_late", float(late.mean()) if late.size else 0.0, "fraction"),
        MetricRow("last_gpu_route_us", float(taken[on_gpu].max()) if on_gpu.any() else float("nan"), "us"),
        MetricRow("gpu_batches", float(len(log.batches)), "count"),
        MetricRow("latency_mean_us", float(latency.mean()), "us"),
        MetricRow("latency_p50_us", float(np.percentile(latency, 50)), "us"),
        MetricRow("latency_p95_us", float(np.percentile(latency, 95)), "us"),
        MetricRow("latency_p99_us", float(np.percentile(latency, 99)), "us"),
        MetricRow("latency_max_us", float(latency.max()), "us"),
        MetricRow("latency_p50_gpu_us", _median(latency[on_gpu]), "us"),
        MetricRow("latency_p50_cpu_us", _median(latency[~on_gpu]), "us"),
    ]

    device_ops = ops[ops["device"] >= 0]
    kernels = device_ops[device_ops["kind"] == "kernel"]
    host_work = ops[(ops["kind"] == "host_work") & ops["thread"].str.startswith("worker")]
    worker_us = float((host_work["end_us"] - host_work["start_us"]).sum())
    pressures = [p for _, p, _ in log.pressure] or [0]
    rows += [
        MetricRow("gpu_busy_frac", busy_fraction(device_ops[device_ops["kind"] != "record"], makespan), "fraction"),
        MetricRow("gpu_kernel_busy_frac", busy_fraction(kernels, makespan), "fraction"),
        MetricRow(
            "worker_busy_frac",
            worker_us / (log.workers * makespan) if log.workers and makespan > 0 else 0.0,
            "fraction",
        ),
        MetricRow("pressure_max", float(max(pressures)), "count"),
        MetricRow("pressure_min", float(min(pressures)), "count"),
        MetricRow("pressure_final", float(pressures[-1]), "count"),
    ]

    buckets = inputs.timeline_buckets
    routed, share = gpu_share_by_bucket(taken, on_gpu, makespan, buckets)
    rows.append(MetricRow("bucket_width_us", makespan / buckets, "us"))
    for k in range(buckets):
        rows.append(MetricRow("gpu_share_bucket", float(share[k]), "fraction", k))
        rows.append(MetricRow("routed_blocks_bucket", float(routed[k]), "count", k))
    for b, lat, g in zip(blocks, latency, on_gpu):
        rows.append(MetricRow("block_taken_us", float(b.taken_us), "us", b.index))
        rows.append(MetricRow("block_latency_us", float(lat), "us", b.index))
        rows.append(MetricRow("block_on_gpu", float(g), "count", b.index))
    return rows
