"""How often, and for how long, each CPU is taken from a thread that spins on it (no GPU needed).

The executor paces each call by spinning on ``CLOCK_MONOTONIC``; whatever takes
the CPU from it (the scheduler's tick, an interrupt, another thread, the
hypervisor) shows as pacing lateness. This probe pins one thread to each CPU in
turn (``src/host_thread.hpp``: ``nx_host_jitter``), spins for ``--seconds``
and notes every stretch in which the clock jumped by more than
``--threshold-us`` between two reads. Per CPU it reports how many such gaps a
second, their median, p99 and longest length, the share of time lost, the
median time between gaps (1000 µs: the scheduler's tick at HZ=1000), and which
lines of ``/proc/interrupts`` counted on that CPU meanwhile, with its steal
time from ``/proc/stat`` (the hypervisor's).

Usage: ``python -m replay.native.jitter --out DIR [--seconds 0.2] [--cpus 3 5] [--fifo] [--budget-s 30]``
(writes ``jitter.csv``, ``jitter.json`` and prints the table; the executor's
threads go on ``HARNESS_NATIVE_CPUS``, default ``auto``: the CPUs listed
first in the table's ``auto`` column).
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

GAP_CAP = 200_000


def spin(
    cpu: int, seconds: float, threshold_ns: int = 1000, fifo: bool = False, pauses: bool = True
) -> tuple[dict, np.ndarray]:
    """Spin on ``cpu`` for ``seconds``; (its figures, the gaps as rows of (at ns since start, length ns))."""
    from replay.native.library import PLACED_FIFO, PLACED_PINNED, fake_library

    gaps = np.zeros((GAP_CAP, 2), np.int64)
    stats = np.zeros(6, np.int64)
    fake_library().nx_host_jitter(cpu, int(fifo), int(pauses), int(seconds * 1e9), threshold_ns, gaps.ctypes.data,
                                  GAP_CAP, stats.ctypes.data)  # fmt: skip
    reads, count, lost, longest, placed, ended_on = (int(v) for v in stats)
    kept = gaps[: min(count, GAP_CAP)]
    lengths_us = kept[:, 1] / 1e3
    spacing_us = np.diff(kept[:, 0]) / 1e3
    figures = {
        "cpu": cpu,
        "pinned": bool(placed & PLACED_PINNED),
        "fifo": bool(placed & PLACED_FIFO),
        "spin": "pause" if pauses else "busy",
        "ran_on": ended_on,
        "read_ns": seconds * 1e9 / max(reads, 1),
        "gaps_per_s": count / seconds,
        "gap_median_us": float(np.median(lengths_us)) if len(kept) else 0.0,
        "gap_p99_us": float(np.percentile(lengths_us, 99)) if len(kept) else 0.0,
        "gap_max_us": longest / 1e3,
        "lost_frac": lost / (seconds * 1e9),
        "spacing_median_us": float(np.median(spacing_us)) if len(spacing_us) else float("nan"),
    }
    return figures, kept


def _interrupts() -> dict[str, list[int]]:
    """/proc/interrupts: line name -> count per CPU column ({} where unreadable)."""
    try:
        lines = Path("/proc/interrupts").read_text().splitlines()
    except OSError:
        return {}
    ncpu = len(lines[0].split())
    table = {}
    for line in lines[1:]:
        name, _, rest = line.partition(":")
        fields = rest.split()
        counts = []
        for f in fields[:ncpu]:
            if not f.isdigit():
                break
            counts.append(int(f))
        if len(counts) == ncpu:
            label = " ".join(fields[ncpu:])[:24]
            table[name.strip() + (f" {label}" if label else "")] = counts
    return table


def _cpu_column(cpu: int) -> int | None:
    try:
        header = Path("/proc/interrupts").read_text().splitlines()[0].split()
    except OSError:
        return None
    return header.index(f"CPU{cpu}") if f"CPU{cpu}" in header else None


def _steal_ticks(cpu: int) -> int | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            fields = line.split()
            if fields and fields[0] == f"cpu{cpu}" and len(fields) > 8:
                return int(fields[8])
    except OSError:
        pass
    return None


def survey(
    cpus: list[int], seconds: float, threshold_ns: int, fifo: bool, budget_s: float, pauses: bool = True
) -> pd.DataFrame:
    """:func:`spin` on each CPU in turn, with what ``/proc/interrupts`` and ``/proc/stat`` counted meanwhile."""
    started = time.perf_counter()
    rows = []
    for cpu in cpus:
        if time.perf_counter() - started + seconds > budget_s:
            print(f"jitter: budget of {budget_s:.0f} s spent; CPUs from {cpu} on not probed")
            break
        column = _cpu_column(cpu)
        before, steal0 = _interrupts(), _steal_ticks(cpu)
        figures, _ = spin(cpu, seconds, threshold_ns, fifo, pauses)
        after, steal1 = _interrupts(), _steal_ticks(cpu)
        counted = []
        if column is not None:
            for name, counts in after.items():
                delta = counts[column] - before.get(name, counts)[column]
                if delta > 0:
                    counted.append((delta, name))
        counted.sort(reverse=True)
        figures["interrupts_per_s"] = ", ".join(f"{name.split()[0]} {d / seconds:.0f}" for d, name in counted[:4])
        ticks = os.sysconf("SC_CLK_TCK")
        figures["steal_frac"] = (
            (steal1 - steal0) / ticks / seconds if steal0 is not None and steal1 is not None else float("nan")
        )
        rows.append(figures)
    return pd.DataFrame(rows)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--seconds", type=float, default=0.2, help="spin this long on each CPU")
    ap.add_argument("--threshold-us", type=float, default=1.0, help="a clock jump longer than this is a gap")
    ap.add_argument("--cpus", type=int, nargs="*", help="CPUs to probe (default: every one allowed)")
    ap.add_argument("--fifo", action="store_true", help="ask for SCHED_FIFO while spinning")
    ap.add_argument("--spin", choices=["pause", "busy"], default="pause", help="a pause between clock reads, or none")
    ap.add_argument("--budget-s", type=float, default=30.0)
    ap.add_argument("--with-cuda", action="store_true", help="spin with a CUDA context open (its driver threads live)")
    args = ap.parse_args()
    from replay.native.library import placement_cpus

    if args.with_cuda:
        from replay.native.library import CudaLibrary

        cuda = CudaLibrary(0)  # noqa: F841 - kept open while the CPUs are probed

    args.out.mkdir(parents=True, exist_ok=True)
    cpus = args.cpus if args.cpus else sorted(os.sched_getaffinity(0))
    table = survey(cpus, args.seconds, int(args.threshold_us * 1e3), args.fifo, args.budget_s, args.spin == "pause")
    auto = placement_cpus()
    table["auto_rank"] = [auto.index(c) if c in auto else -1 for c in table["cpu"]]
    table.to_csv(args.out / "jitter.csv", index=False)
    (args.out / "jitter.json").write_text(json.dumps({"auto_cpus": auto, "rows": table.to_dict("records")}, indent=2))
    shown = table[
        ["cpu", "auto_rank", "pinned", "fifo", "spin", "read_ns", "gaps_per_s", "gap_median_us", "gap_p99_us", "gap_max_us",
         "lost_frac", "spacing_median_us", "steal_frac", "interrupts_per_s"]
    ]  # fmt: skip
    print(f"gaps > {args.threshold_us:g} µs spinning {args.seconds:g} s per CPU; HARNESS_NATIVE_CPUS=auto: {auto}")
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, float_format=lambda v: f"{v:.3g}"))


if __name__ == "__main__":
    main()
