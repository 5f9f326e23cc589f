"""Simulator cost per op from 10^4 to 10^7 ops: ``harness bench`` at growing sizes, one process each.

For each policy and each size it runs ``python -m harness bench --set segments=N --policy P``
(the layer-streaming benchmark spec; five ops per segment for ``prefetch``) in its own process
and reports the command's own figures (ops simulated, best wall, ops/s) with that process's
peak memory, so the curve shows whether the cost per op stays flat as runs grow.

Usage: ``python3 tools/bench_curve.py [--policies prefetch sync resident] [--segments 2000 20000 200000 2000000]``
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from harness.machine import machine_report


def bench(policy: str, segments: int, repeat: int) -> dict[str, str]:
    argv = [sys.executable, "-m", "harness", "bench", "--policy", policy, "--set", f"segments={segments}"]
    argv += ["--repeat", str(repeat)]
    child = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    out = child.stdout.read() if child.stdout else ""
    _, status, usage = os.wait4(child.pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{' '.join(argv)} failed:\n{out}")
    figures = dict(re.findall(r"│ (ops simulated|best wall s|ops/s)\s*│\s*([\d,.]+) │", out))
    return {**figures, "peak MB": f"{usage.ru_maxrss / 1024:,.0f}"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--policies", nargs="+", default=["prefetch", "sync", "resident"])
    parser.add_argument("--segments", type=int, nargs="+", default=[2_000, 20_000, 200_000, 2_000_000])
    parser.add_argument("--repeat", type=int, default=3, help="timed repetitions per size; the best is reported")
    args = parser.parse_args()
    print("| policy | segments | ops simulated | best wall s | ops/s | peak MB |")
    print("|---|---:|---:|---:|---:|---:|")
    for policy in args.policies:
        for segments in args.segments:
            repeat = args.repeat if segments < 1_000_000 else 1
            f = bench(policy, segments, repeat)
            print(
                f"| {policy} | {segments:,} | {f.get('ops simulated', '?')} | {f.get('best wall s', '?')} "
                f"| {f.get('ops/s', '?')} | {f['peak MB']} |",
                flush=True,
            )
    print("; ".join(f"{k}: {v}" for k, v in machine_report().items()))


if __name__ == "__main__":
    main()
