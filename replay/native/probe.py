"""The launch probe: 10,000 paced kernel launches at 5, 10 and 15 µs gaps on the GPU (needs CUDA and nvcc).

For each gap, one host thread launches ``--launches`` stand-in kernels of the
GPU's floor (a one-warp timer of 0 ns) on one stream, each due ``gap`` after
the previous launch returned, with no recorded cost (nothing holds a call).
Kernels go out through the driver's ``cuLaunchKernel`` with the stand-ins
looked up once (``HARNESS_NATIVE_LAUNCH=runtime``: the runtime's ``<<<>>>``,
which looks the function up on every call). It reports, per gap, over the
second of two runs (the first warms up):

* ``launch_us``: host time of the launch call, issue to return (``ret - api``);
* ``late_us``: pacing lateness, when the step began less when it was due
  (``begin - target``);

median and p99 each, against the targets of issue 23 (launch median <= 3 µs;
lateness median <= 1 µs, p99 <= 3 µs). Writes ``probe.csv`` (one row per
launch), ``probe.json`` (the summary) under ``--out`` and prints the table.

Usage: ``python -m replay.native.probe --out DIR [--launches 10000] [--budget-s 120]``
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

TARGETS = {"launch_median_us": 3.0, "late_median_us": 1.0, "late_p99_us": 3.0}


def probe_program(launches: int, gap_ns: int):
    from replay.native.steps import Kind, NativeProgram, Op, empty_steps

    steps = empty_steps(launches + 1)
    steps["op"][:launches] = Op.KERNEL
    steps["kind"][:launches] = Kind.LATENCY
    steps["grid"][:launches] = 1
    steps["gap_ns"][:launches] = gap_ns
    steps["op"][launches] = Op.SYNC_STREAM
    return NativeProgram([steps], streams=1, events=1)


def summarize(out: np.ndarray, launches: int) -> dict[str, float]:
    launch = (out["ret_ns"][:launches] - out["api_ns"][:launches]) / 1e3
    late = (out["begin_ns"][:launches] - out["target_ns"][:launches]) / 1e3
    return {
        "launch_median_us": float(np.median(launch)),
        "launch_p99_us": float(np.percentile(launch, 99)),
        "late_median_us": float(np.median(late)),
        "late_p99_us": float(np.percentile(late, 99)),
        "late_max_us": float(late.max()),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--launches", type=int, default=10_000)
    ap.add_argument("--gaps-us", type=float, nargs="*", default=[5.0, 10.0, 15.0])
    ap.add_argument("--budget-s", type=float, default=120.0)
    args = ap.parse_args()
    from replay.native.library import CudaLibrary

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    lib = CudaLibrary(0)
    rows, summary = [], {}
    for gap_us in args.gaps_us:
        if time.perf_counter() - started > args.budget_s:
            print(f"probe: budget of {args.budget_s:.0f} s spent; gap {gap_us} µs not run")
            break
        program = probe_program(args.launches, int(round(gap_us * 1e3)))
        lib.run(program)  # warm-up
        out = lib.run(program)[0]
        summary[f"{gap_us:g}"] = summarize(out, args.launches)
        n = args.launches
        rows.append(
            np.rec.fromarrays(
                [
                    np.full(n, gap_us),
                    (out["ret_ns"][:n] - out["api_ns"][:n]) / 1e3,
                    (out["begin_ns"][:n] - out["target_ns"][:n]) / 1e3,
                    (out["gpu_end_ns"][:n] - out["gpu_start_ns"][:n]) / 1e3,
                ],
                names="gap_us,launch_us,late_us,kernel_us",
            )
        )
    lib.close()
    if rows:
        table = np.concatenate(rows)
        header = ",".join(table.dtype.names)
        np.savetxt(args.out / "probe.csv", table.view(np.float64).reshape(len(table), -1), delimiter=",",
                   header=header, comments="", fmt="%.3f")  # fmt: skip
    result = {"targets": TARGETS, "launch_api": lib.launch_api, "gaps": summary}
    (args.out / "probe.json").write_text(json.dumps(result, indent=2))
    print(f"launches through the {lib.launch_api} API (HARNESS_NATIVE_LAUNCH=runtime: <<<>>>)")
    print(f"{'gap µs':>7} {'launch med':>11} {'launch p99':>11} {'late med':>9} {'late p99':>9} {'late max':>9}  pass")
    for gap, s in summary.items():
        ok = (
            s["launch_median_us"] <= TARGETS["launch_median_us"]
            and s["late_median_us"] <= TARGETS["late_median_us"]
            and s["late_p99_us"] <= TARGETS["late_p99_us"]
        )
        print(
            f"{gap:>7} {s['launch_median_us']:>11.2f} {s['launch_p99_us']:>11.2f} {s['late_median_us']:>9.2f} "
            f"{s['late_p99_us']:>9.2f} {s['late_max_us']:>9.2f}  {'yes' if ok else 'NO'}"
        )


if __name__ == "__main__":
    main()
