"""Kernel breakdown of an op trace: per kernel name, how often it ran and how much GPU time it took.

What ``harness trace kernels T.parquet`` prints (as HTA's kernel breakdown does), and
what a user reads to aim ``scale_kernels``' ``factors`` at real kernel names.
"""

from __future__ import annotations

import pandas as pd

GPU_OP_KINDS = ("kernel", "memset", "copy_h2d", "copy_d2h", "copy_d2d")
COLUMNS = ("name", "count", "total_us", "mean_us", "share")


def kernel_breakdown(ops: pd.DataFrame) -> pd.DataFrame:
    """One row per kernel name, most total time first: ``count``, ``total_us``, ``mean_us`` and ``share``, the
    name's share of the trace's GPU time (every GPU op's duration summed: kernels, memsets and copies)."""
    gpu = ops[(ops["device"] >= 0) & ops["kind"].isin(GPU_OP_KINDS)]
    kernels = gpu[gpu["kind"] == "kernel"]
    table = (
        kernels.groupby(kernels["name"].astype(str), sort=False)["duration_us"]
        .agg(count="size", total_us="sum", mean_us="mean")
        .reset_index()
    )
    gpu_us = float(gpu["duration_us"].sum())
    table["share"] = table["total_us"] / gpu_us if gpu_us > 0 else 0.0
    table["count"] = table["count"].astype(int)
    return table.sort_values(["total_us", "name"], ascending=[False, True], kind="stable").reset_index(drop=True)[
        list(COLUMNS)
    ]
