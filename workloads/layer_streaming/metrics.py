"""Metrics of one layer-streaming run, computed from its ops timeline."""

from __future__ import annotations

import pandas as pd

from harness.timeline import busy_fraction, overlap_us, union_us
from harness.workload import MetricRow
from workloads.layer_streaming.inputs import LayerStreamingInputs
from workloads.layer_streaming.policies import StreamingResult, copy_name, kernel_name


def overlap_bound_us(copy_us: list[float], compute_us: list[float]) -> float:
    """Best makespan when segment i+1's copy overlaps segment i's compute.

    ``copy[0] + sum(max(copy[i+1], compute[i])) + compute[-1]``; a resident
    run (no copies) is bounded by its total compute.
    """
    if not copy_us:
        return float(sum(compute_us))
    n = len(compute_us)
    return copy_us[0] + sum(max(copy_us[i + 1], compute_us[i]) for i in range(n - 1)) + compute_us[-1]


def metrics(inputs: LayerStreamingInputs, ops: pd.DataFrame, result: StreamingResult) -> list[MetricRow]:
    device_ops = ops[ops["device"] >= 0]
    kernels = device_ops[device_ops["kind"] == "kernel"].set_index("name")
    h2d = device_ops[device_ops["kind"] == "copy_h2d"]
    d2h = device_ops[device_ops["kind"] == "copy_d2h"]
    makespan = float(ops["end_us"].max()) if len(ops) else 0.0

    rows = [MetricRow("makespan_us", makespan, "us")]
    previous_end = 0.0
    segment_times = []
    for seg in inputs.segments:
        end = float(kernels.loc[kernel_name(seg), "end_us"])
        segment_times.append(end - previous_end)
        rows.append(MetricRow("segment_time_us", end - previous_end, "us", seg.index))
        previous_end = end
    rows.append(MetricRow("segment_time_mean_us", sum(segment_times) / len(segment_times), "us"))

    compute_busy = union_us(kernels)
    h2d_busy = union_us(h2d)
    both = overlap_us(h2d, kernels)
    rows += [
        MetricRow("compute_busy_frac", busy_fraction(kernels, makespan), "fraction"),
        MetricRow("h2d_busy_frac", busy_fraction(h2d, makespan), "fraction"),
        MetricRow("d2h_busy_frac", busy_fraction(d2h, makespan), "fraction"),
        MetricRow("copy_compute_overlap_us", both, "us"),
        # 1.0: every microsecond that could have overlapped did.
        MetricRow(
            "overlap_frac", both / min(h2d_busy, compute_busy) if h2d_busy > 0 and compute_busy > 0 else 0.0, "fraction"
        ),
        MetricRow("h2d_bytes", float(h2d["bytes"].sum()), "bytes"),
    ]

    copies = h2d.set_index("name")
    copy_us = (
        [float(copies.loc[copy_name(s), "end_us"] - copies.loc[copy_name(s), "start_us"]) for s in inputs.segments]
        if len(h2d)
        else []
    )
    compute_us = [
        float(kernels.loc[kernel_name(s), "end_us"] - kernels.loc[kernel_name(s), "start_us"]) for s in inputs.segments
    ]
    bound = overlap_bound_us(copy_us, compute_us)
    rows += [
        MetricRow("serial_bound_us", sum(copy_us) + sum(compute_us), "us"),
        MetricRow("overlap_bound_us", bound, "us"),
        MetricRow("makespan_over_overlap_bound", makespan / bound if bound > 0 else 0.0, "ratio"),
        MetricRow("fallbacks", float(result.fallbacks), "count"),
        MetricRow("prefetched", float(result.prefetched), "count"),
    ]
    return rows
