"""Simulate a large imported recording: ``as_recorded`` over an op trace of about N ops.

The trace is a committed recording (``traces/recorded/decode_inline-sync.parquet``
by default: 2,379 host calls and 2,328 GPU ops of an eager decode loop) tiled
end to end until it holds ``--ops`` rows: each copy is shifted in time past the
previous one and gets its own correlation ids, so the program is that loop run
many times over, one recording of ~1M ops. Reports, with the machine: building
the program from the trace (``prepare``), simulating it (wall time, simulated
ops per second) and the process's peak memory.

Usage: ``python3 tools/bench_recorded.py [--ops 1000000] [--trace PATH] [--profile h200]``
"""

from __future__ import annotations

import argparse
import resource
import time
from pathlib import Path

import numpy as np
import pandas as pd

from harness.backend import run_policy
from harness.machine import machine_report
from harness.paths import TRACES_DIR
from harness.profile import load_profile
from harness.trace import load_trace
from sim import SimBackend
from workloads.recorded.policies import AsRecordedParams, as_recorded
from workloads.recorded.program import build_program


def tiled(ops: pd.DataFrame, target_rows: int) -> pd.DataFrame:
    """``ops`` repeated end to end until about ``target_rows`` rows, times and correlations shifted per copy."""
    copies = max(1, round(target_rows / len(ops)))
    span = float((ops["start_us"] + ops["duration_us"]).max()) + 1.0
    corr_span = int(ops["correlation"].max()) + 1
    parts = []
    for i in range(copies):
        part = ops.copy()
        for column in ("start_us", "launch_us"):
            part[column] = part[column] + i * span
        part["correlation"] = part["correlation"] + i * corr_span
        part["group"] = part["group"].where(part["group"].isna(), part["group"] + f"#{i}")
        parts.append(part)
    return pd.concat(parts, ignore_index=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--ops", type=int, default=1_000_000, help="rows of the tiled trace")
    ap.add_argument("--trace", type=Path, default=TRACES_DIR / "recorded" / "decode_inline-sync.parquet")
    ap.add_argument("--profile", default="h200")
    args = ap.parse_args()
    ops = tiled(load_trace(args.trace).ops, args.ops)
    start = time.perf_counter()
    program = build_program(ops, str(args.trace))
    prepare_s = time.perf_counter() - start
    start = time.perf_counter()
    run = run_policy(SimBackend(load_profile(args.profile)), as_recorded, program, AsRecordedParams())
    simulate_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    report = {
        "trace rows": f"{len(ops):,} ({np.count_nonzero(ops['kind'].str.startswith('call_')):,} host calls)",
        "program calls": f"{sum(t.call_count for t in program.threads):,}",
        "prepare s": f"{prepare_s:.2f}",
        "simulated ops": f"{len(run.ops):,}",
        "simulate s (incl. ops table)": f"{simulate_s:.2f}",
        "simulated ops/s": f"{len(run.ops) / simulate_s:,.0f}",
        "simulated span s": f"{run.ops['end_us'].max() / 1e6:.2f} (recorded {program.recorded_span_us / 1e6:.2f})",
        "peak memory MB": f"{peak_mb:,.0f}",
        **machine_report(),
    }
    for key, value in report.items():
        print(f"{key:30s} {value}")


if __name__ == "__main__":
    main()
