"""Metrics of a collective sweep: each size's time per call and nccl-tests' bandwidths.

Per size (``item`` = its index in ``sizes_bytes``): ``time_us``, the span of its
timed calls on device 0 (first start to last end, the ranks end together) over
``iters``; ``algbw_gbps`` and ``busbw_gbps`` as nccl-tests defines them. The run
rows are the means over sizes of ``busbw_gbps`` and of ``time_us``.
"""

from __future__ import annotations

import pandas as pd

from harness.workload import MetricRow
from workloads.collective_sweep.inputs import CollectiveSweepInputs

_FACTORS = {"all_reduce": lambda n: 2 * (n - 1) / n, "all_gather": lambda n: (n - 1) / n}
_FACTORS["reduce_scatter"] = _FACTORS["all_gather"]


def bus_factor(op: str, gpus: int) -> float:
    """nccl-tests' busbw / algbw (1 for broadcast and send/recv)."""
    return _FACTORS[op](gpus) if op in _FACTORS and gpus > 1 else 1.0


def metrics(inputs: CollectiveSweepInputs, ops: pd.DataFrame, result: object) -> list[MetricRow]:
    rows: list[MetricRow] = []
    times, busbws = [], []
    op = _op_of(ops)
    device = 1 if op == "send_recv" else 0
    timed = ops[(ops["kind"] == "collective") & (ops["device"] == device)]
    for index, size in enumerate(inputs.sizes_bytes):
        calls = timed[timed["name"] == f"{op}[{index}]"]
        if calls.empty:
            continue
        time_us = float(calls["end_us"].max() - calls["start_us"].min()) / len(calls)
        algbw = size / time_us / 1e3
        busbw = algbw * bus_factor(op, inputs.gpus)
        times.append(time_us)
        busbws.append(busbw)
        rows += [
            MetricRow("time_us", time_us, "us", index),
            MetricRow("algbw_gbps", algbw, "GB/s", index),
            MetricRow("busbw_gbps", busbw, "GB/s", index),
        ]
    if times:
        rows += [
            MetricRow("time_us", sum(times) / len(times), "us"),
            MetricRow("busbw_gbps", sum(busbws) / len(busbws), "GB/s"),
        ]
    return rows


def _op_of(ops: pd.DataFrame) -> str:
    names = ops.loc[ops["kind"] == "collective", "name"]
    timed = names[~names.str.startswith("warmup:")]
    return str(timed.iloc[0]).split("[")[0] if len(timed) else ""
