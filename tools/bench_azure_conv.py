"""Side by side: the Splitwise/Azure conversation trace at 1k / 10k / all 19,366 requests, whole process.

Each size runs ``harness bench-batching --trace AzureLLMInferenceTrace_conv.csv --requests N``
(adaptive policy, ``--max-batch``, the h100-tinyllama1b-graphs step costs) as its own process,
``--runs`` times, and reports the median (and range) of that process's wall time and of its
simulation time (the command's "best wall s"), and its peak memory (max RSS). The package's
bytecode is compiled first, as any first run leaves it (an environment with
``PYTHONDONTWRITEBYTECODE`` set would otherwise compile every module in every run, ~0.04 s).
With ``--vidur CMD`` it runs CMD for each size too (``{requests}`` and
``{trace}`` are filled in), e.g. Vidur's ``python -m vidur.main ...`` with its trace-replay request
generator on the same file; Vidur is an LLM-serving simulator with another model, so the
comparison is of cost per request, not of predictions. Without ``--vidur`` only ours is measured.

The trace is read from ``../shared/data/azure2023/`` (next to the repository), never committed.

Usage: ``python3 tools/bench_azure_conv.py [--sizes 1000 10000 19366] [--max-batch 4] [--runs 5] [--vidur CMD]``
"""

from __future__ import annotations

import argparse
import compileall
import os
import re
import shlex
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness.machine import machine_report

REPO = Path(__file__).resolve().parents[1]
TRACE = REPO.parent / "shared" / "data" / "azure2023" / "AzureLLMInferenceTrace_conv.csv"


def timed(argv: list[str]) -> tuple[float, float, str]:
    """Run ``argv``; its wall seconds, peak RSS in MB and stdout."""
    start = time.perf_counter()
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out}")
    return wall, usage.ru_maxrss / 1024, out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1000, 10000, 19366])
    parser.add_argument("--max-batch", type=int, default=4)
    parser.add_argument("--trace", type=Path, default=TRACE)
    parser.add_argument("--runs", type=int, default=5, help="processes per size (the median is reported)")
    parser.add_argument("--vidur", default=None, help="command line for Vidur, with {requests} and {trace}")
    args = parser.parse_args()
    if not args.trace.exists():
        raise SystemExit(f"{args.trace}: not found (the Azure 2023 traces live in ../shared/data/azure2023/)")
    if args.runs < 1:
        raise SystemExit(f"--runs must be >= 1, got {args.runs}")
    for package in ("harness", "sim", "workloads"):
        compileall.compile_dir(REPO / package, quiet=1)
    print(f"trace: {args.trace}; adaptive, max_batch {args.max_batch}; median (range) of {args.runs} runs")
    print("| requests | ours: process s | ours: simulation s | ours: peak MB | Vidur: process s | Vidur: peak MB |")
    print("|---:|---:|---:|---:|---:|---:|")
    for n in args.sizes:
        argv = [sys.executable, "-m", "harness", "bench-batching", "--trace", str(args.trace), "--requests", str(n)]
        walls, sims, peaks = [], [], []
        for _ in range(args.runs):
            wall, rss, out = timed([*argv, "--max-batch", str(args.max_batch)])
            sim = re.search(r"best wall s\s*│\s*([\d.]+)", out)
            walls.append(wall)
            sims.append(float(sim.group(1)) if sim else float("nan"))
            peaks.append(rss)
        vidur = ("", "")
        if args.vidur:
            v_wall, v_rss, _ = timed(shlex.split(args.vidur.format(requests=n, trace=args.trace)))
            vidur = (f"{v_wall:.2f}", f"{v_rss:,.0f}")
        print(f"| {n:,} | {_median(walls)} | {_median(sims)} | {max(peaks):,.0f} | {vidur[0]} | {vidur[1]} |")
    print("; ".join(f"{k}: {v}" for k, v in machine_report().items()))


def _median(values: list[float]) -> str:
    """``median`` or ``median (min-max)`` in seconds."""
    middle = f"{statistics.median(values):.2f}"
    return middle if len(values) == 1 else f"{middle} ({min(values):.2f}-{max(values):.2f})"


if __name__ == "__main__":
    main()
