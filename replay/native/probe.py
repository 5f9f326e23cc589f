"""The launch probe: 10,000 paced kernel launches at 5, 10 and 15 µs gaps on the GPU (needs CUDA and nvcc).

For each gap, one host thread launches ``--launches`` stand-in kernels of the
GPU's floor (a one-warp timer of 0 ns) on one stream, each due ``gap`` after
the previous launch returned, with no recorded cost (nothing holds a call).
It reports, per gap, over the second of two runs (the first warms up):

* ``launch_us``: host time of the launch call, issue to return (``ret - api``);
* ``late_us``: pacing lateness, when the step began less when it was due
  (``begin - target``);

median and p99 each, against the targets of issue 23 (launch median <= 3 µs;
lateness median <= 1 µs, p99 <= 3 µs). A gap of 0 launches back to back: the
call's cost without pacing. First, once per launch API, the driver's own
launch call (``floor``: an empty kernel with no parameters, back to back,
each call timed alone, ``CudaLibrary.launch_floor_ns``): the host's floor under
any launch command, the replay's or a PyTorch program's. ``n > 3`` counts the launches later than 3 µs and
``apart`` is the median µs between them (1000: the scheduler's tick).

Each combination of ``--launch-apis`` (``HARNESS_NATIVE_LAUNCH``: ``packed``,
the default, cuLaunchKernel with the stand-ins looked up once and their
parameters in one buffer; ``driver``, the same with an argument array;
``runtime``, ``<<<>>>``) and ``--placements`` (``auto``: the executor's
default, its thread pinned to a CPU of its own, ``HARNESS_NATIVE_CPUS=auto``;
``off``: placed by the scheduler; ``fifo``: pinned and SCHED_FIFO where
permitted, ``HARNESS_NATIVE_FIFO=1``; ``busy``: pinned, spinning without a
pause between clock reads, ``HARNESS_NATIVE_SPIN=busy``) runs (every
placement with the first API, the first placement with the others), the defaults first, while
``--budget-s`` lasts. Writes ``probe.parquet`` (one row per launch), ``probe.json``
(the summaries) under ``--out`` and prints the table, one row per combination
and gap.

Usage: ``python -m replay.native.probe --out DIR [--launches 10000] [--gaps-us 0 5 10 15]
[--launch-apis packed driver runtime] [--placements auto off fifo] [--budget-s 120]``
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

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
    at_us = out["begin_ns"][:launches][late > TARGETS["late_p99_us"]] / 1e3
    return {
        "late_over_p99_target": int(len(at_us)),  # launches later than the p99 target, and how far apart (1000 µs:
        "late_spacing_median_us": float(np.median(np.diff(at_us))) if len(at_us) > 1 else float("nan"),  # the tick)
        "launch_median_us": float(np.median(launch)),
        "launch_p99_us": float(np.percentile(launch, 99)),
        "late_median_us": float(np.median(late)),
        "late_p99_us": float(np.percentile(late, 99)),
        "late_max_us": float(late.max()),
    }


PLACEMENTS = {  # -> HARNESS_NATIVE_CPUS, _FIFO, _SPIN
    "auto": ("auto", "0", "busy"),  # the executor's defaults
    "off": ("off", "0", "busy"),
    "fifo": ("auto", "1", "busy"),
    "pause": ("auto", "0", "pause"),  # a pause instruction between clock reads (the default before 2026-12-07)
    "busy": ("auto", "0", "busy"),  # the same as auto, named (probes before 2026-12-07 compared it with pause)
}


def passes(s: dict[str, float]) -> bool:
    return (
        s["launch_median_us"] <= TARGETS["launch_median_us"]
        and s["late_median_us"] <= TARGETS["late_median_us"]
        and s["late_p99_us"] <= TARGETS["late_p99_us"]
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--launches", type=int, default=10_000)
    ap.add_argument("--gaps-us", type=float, nargs="*", default=[0.0, 5.0, 10.0, 15.0])
    ap.add_argument("--launch-apis", nargs="*", default=["packed"], choices=["packed", "driver", "runtime"])
    ap.add_argument("--placements", nargs="*", default=["auto"], choices=sorted(PLACEMENTS))
    ap.add_argument("--budget-s", type=float, default=120.0)
    args = ap.parse_args()
    from replay.native.library import CudaLibrary

    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    frames, summaries = [], []
    floor: dict[str, float] = {}
    n = args.launches
    for api in args.launch_apis:
        if time.perf_counter() - started > args.budget_s:
            print(f"probe: budget of {args.budget_s:.0f} s spent; launch API {api} not run")
            break
        os.environ["HARNESS_NATIVE_LAUNCH"] = api  # read when the library opens
        lib = CudaLibrary(0)
        if lib.launch_note:
            print(f"probe: asked for {api} launches: {lib.launch_note}")
        if api == args.launch_apis[0]:
            floor_us = lib.launch_floor_ns(n) / 1e3
            floor = {"median_us": float(np.median(floor_us)), "p99_us": float(np.percentile(floor_us, 99)),
                     "p25_us": float(np.percentile(floor_us, 25)), "p75_us": float(np.percentile(floor_us, 75))}
            print(f"probe: the driver's own launch call (an empty kernel, no parameters, back to back, {n} calls): "
                  f"median {floor['median_us']:.2f} µs (quartiles {floor['p25_us']:.2f}-{floor['p75_us']:.2f}), "
                  f"p99 {floor['p99_us']:.2f} µs")  # fmt: skip
        # every placement with the first API; the others with the first placement only
        for placement in args.placements if api == args.launch_apis[0] else args.placements[:1]:
            cpus, fifo, spin = PLACEMENTS[placement]
            os.environ["HARNESS_NATIVE_CPUS"], os.environ["HARNESS_NATIVE_FIFO"], os.environ["HARNESS_NATIVE_SPIN"] = (
                cpus, fifo, spin
            )
            for gap_us in args.gaps_us:
                if time.perf_counter() - started > args.budget_s:
                    print(f"probe: budget of {args.budget_s:.0f} s spent; {api}/{placement} at {gap_us:g} µs not run")
                    break
                program = probe_program(n, int(round(gap_us * 1e3)))
                lib.run(program)  # warm-up
                out = lib.run(program)[0]
                summary = {"api": lib.launch_api, "placement": placement, "granted": lib.placement, "gap_us": gap_us}
                summary.update(summarize(out, n))
                summaries.append(summary)
                frames.append(
                    pd.DataFrame({
                        "api": lib.launch_api, "placement": placement, "gap_us": gap_us,
                        "launch_us": (out["ret_ns"][:n] - out["api_ns"][:n]) / 1e3,
                        "late_us": (out["begin_ns"][:n] - out["target_ns"][:n]) / 1e3,
                        "kernel_us": (out["gpu_end_ns"][:n] - out["gpu_start_ns"][:n]) / 1e3,
                        "begin_us": (out["begin_ns"][:n] - out["begin_ns"][0]) / 1e3,
                    })
                )  # fmt: skip
        lib.close()
    if frames:
        pd.concat(frames).to_parquet(args.out / "probe.parquet", index=False)
    (args.out / "probe.json").write_text(json.dumps({"targets": TARGETS, "launch_floor": floor, "runs": summaries}, indent=2))
    print(f"{'api':>8} {'placement':>9} {'granted':>12} {'gap µs':>7} {'launch med':>11} {'launch p99':>11} "
          f"{'late med':>9} {'late p99':>9} {'late max':>9} {'n > 3':>6} {'apart':>7}  pass")  # fmt: skip
    for s in summaries:
        paced = s["gap_us"] > 0  # back to back: the call's cost alone, lateness does not apply
        ok = passes(s) if paced else s["launch_median_us"] <= TARGETS["launch_median_us"]
        print(
            f"{s['api']:>8} {s['placement']:>9} {s['granted']:>12} {s['gap_us']:>7g} {s['launch_median_us']:>11.2f} "
            f"{s['launch_p99_us']:>11.2f} {s['late_median_us']:>9.2f} {s['late_p99_us']:>9.2f} "
            f"{s['late_max_us']:>9.2f} {s['late_over_p99_target']:>6} {s['late_spacing_median_us']:>7.0f}  "
            f"{'yes' if ok else 'NO'}"
        )


if __name__ == "__main__":
    main()
