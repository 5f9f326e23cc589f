"""Probe: why a pageable H2D copy runs at ~10.7 GB/s in a plain PyTorch program but ~7.2 GB/s in the profile (issue 24, p05).

The corpus's ``layers_pageable`` recording (H100) copies 128 MiB bf16 weights from
pageable memory at 10.4-10.9 GB/s (CUPTI's memcpy durations); the H100 profile's
``[link.h2d.pageable]`` (``harness calibrate``: a reused ``torch.ones`` uint8 buffer, GPU
events, behind a queued ``_sleep`` or on an idle stream) says 7.1-7.3 GB/s at 64-256 MiB,
so ``as_recorded`` of that program is 38% long. This times, at the sizes the corpus uses
(2, 16, 64, 128, 256 MiB), a pageable H2D copy each way:

* ``program``: as the corpus program does it: a bf16 tensor made on the GPU and brought
  back with ``.cpu()`` (fresh pages), ``dev.copy_(host, non_blocking=True)``, host clock
  around the call plus a stream synchronize;
* ``calibration``: as ``replay/calibrate.py`` does: one reused uint8 ``torch.ones`` buffer
  (pages touched), the same copy, timed with CUDA events on the stream;
* ``program_events``: the program's tensor timed with CUDA events (separates the buffer
  from the clock);
* ``program_beside``: as ``program``, while matrix products run on another stream (the
  calibration's ``beside`` placement: does compute on the GPU slow the staging?);
* ``program_side_stream``: as ``program``, on a created stream instead of the default one
  (``layers_prefetch.py``'s copy stream: its pageable copies ran 4% slower than
  ``layers.py``'s on the default stream, the p05 pair's whole real change).

Methods interleaved per repetition (order rotating). Writes ``pageable_probe.csv`` (method, bytes, rep, µs,
GB/s) and prints medians. One
command, bounded: ``python tools/pageable_copy_probe.py --out $OUT/pageable --budget-s 120``.
"""

from __future__ import annotations

import argparse
import csv
import statistics
import time
from pathlib import Path

MiB = 1 << 20
SIZES = (2 * MiB, 16 * MiB, 64 * MiB, 128 * MiB, 256 * MiB)
METHODS = ("program", "calibration", "program_events", "program_beside", "program_side_stream")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--reps", type=int, default=7)
    args = ap.parse_args(argv)
    import torch

    device = torch.device("cuda")
    stream = torch.cuda.current_stream(device)
    begun = time.monotonic()
    rows = []
    for n in SIZES:
        if time.monotonic() - begun > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s reached before {n} B")
            break
        elems = n // 2
        dev = torch.empty(elems, dtype=torch.bfloat16, device=device)
        program_host = torch.randn(elems, device=device, dtype=torch.bfloat16).cpu()  # as the corpus program
        calib_host = torch.ones(n, dtype=torch.uint8)  # as replay/calibrate.py
        dev_bytes = dev.view(torch.uint8)
        other, side = torch.cuda.Stream(device), torch.cuda.Stream(device)
        a_mat = torch.randn(8192, 8192, device=device, dtype=torch.bfloat16)
        for rep in range(args.reps + 1):  # the first is a warm-up, not kept; methods interleaved, order rotating
            for method in METHODS[rep % len(METHODS) :] + METHODS[: rep % len(METHODS)]:
                torch.cuda.synchronize(device)
                if method == "program_beside":
                    with torch.cuda.stream(other):
                        for _ in range(max(1, n // (16 * MiB))):  # ~1.5 ms each on an H100: outlasts the copy
                            a_mat @ a_mat
                if method in ("program", "program_beside", "program_side_stream"):
                    on = side if method == "program_side_stream" else stream
                    start = time.perf_counter()
                    with torch.cuda.stream(on):
                        dev.copy_(program_host, non_blocking=True)
                    on.synchronize()
                    us = (time.perf_counter() - start) * 1e6
                else:
                    a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                    a.record(stream)
                    if method == "calibration":
                        dev_bytes.copy_(calib_host, non_blocking=True)
                    else:
                        dev.copy_(program_host, non_blocking=True)
                    b.record(stream)
                    b.synchronize()
                    us = a.elapsed_time(b) * 1e3
                if rep:
                    rows.append((method, n, rep, us, n / us / 1e3))
        torch.cuda.synchronize(device)
        del dev, program_host, calib_host, a_mat
    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "pageable_probe.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("method", "bytes", "rep", "us", "gbps"))
        writer.writerows(rows)
    for method in METHODS:
        for n in SIZES:
            us = [r[3] for r in rows if r[0] == method and r[1] == n]
            if us:
                med = statistics.median(us)
                print(f"{method:15} {n:>11} B  {med:10.1f} µs  {n / med / 1e3:6.2f} GB/s")
    print(f"device: {torch.cuda.get_device_name(device)}, torch {torch.__version__}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
