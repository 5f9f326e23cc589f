"""What the replay's per-command host time depends on: copy size, the GPU wait before it, the process (CUDA GPU).

The layer-streaming replays paid 1.0-5x the host costs ``harness calibrate`` measured, differently per shape and
in the same pattern on three machines (``measurements/2026-12-07_h100_layer-streaming/diagnosis.md``). This probe
separates the candidate causes in one bounded command. Through the replay engine, a ``sync``-shaped loop
(alloc, copy on the compute stream, launch, sync, free; ``SEGMENTS`` segments a run) runs on a grid of copy
sizes and kernel lengths, every cell once per round, rounds interleaved (order reversed every other round),
and ``harness calibrate``'s own streaming loop (``replay.calibrate._loop_policy``) once per round beside them.
Each run's per-command host time is read from its ops as ``tools/paid_host_costs.py`` reads a fidelity run's
(copy, launch, free + alloc, wake: medians over the run's middle segments), and its first segment's apart
(``first_*``: the run's start-up). Then the same in ``--processes`` fresh processes, each pinned to another CPU
when ``--pin`` is given (placement), fewer rounds each; odd ones run the 16 MiB cells only, so their pinned
host pool stays small (the first process's round 0 ran its 16 MiB cells before its pool grew, too).

What each outcome means: costs that grow along a row (copy size) or a column (kernel length, the wait before
the next command) within one process are a model gap (a host cost that depends on what the call follows);
costs flat over the grid but different between processes are the process's placement or the host's drift
(calibrate beside the runs, or pin the replay's thread); the calibration loop's figures against the grid's
say whether ``harness calibrate`` measures what runs pay.

Usage: python3 tools/probe_host_costs.py --out OUT [--budget-s 240] [--processes 3] [--pin] [--rounds 9] [--dry-run]
Writes OUT/host_costs.csv (one row per run) and OUT/summary.md (medians per process and cell); prints the summary.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
from paid_host_costs import paid_gaps  # noqa: E402

from harness.runtime import Direction, HostMemory, KernelKind, PolicyGen, Runtime  # noqa: E402

MiB = 1 << 20
COPY_MIB = (16, 128, 512)
KERNEL_US = (200.0, 2000.0, 10000.0)
SEGMENTS = 8
FIGURES = ("copy_launch_us", "launch_us", "free_alloc_us", "sync_wake_us")


def sync_loop(rt: Runtime, copy_bytes: int, kernel_us: float, segments: int = SEGMENTS) -> PolicyGen:
    """Layer streaming's ``sync`` policy with equal segments: alloc, copy, launch, sync, free."""
    compute = yield rt.create_stream(0, "compute")
    for i in range(segments):
        buf = yield rt.alloc(0, copy_bytes, f"params[{i}]")
        if buf is None:
            raise MemoryError(f"{copy_bytes} bytes do not fit the device budget")
        yield rt.copy(compute, copy_bytes, Direction.H2D, HostMemory.PINNED, f"params[{i}]", buf)
        yield rt.launch(compute, f"segment[{i}]", kernel_us, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(compute)
        yield rt.free(buf)


def run_figures(ops: Any) -> dict[str, float]:
    """Steady-state medians (middle segments) and the first segment's figures of one ``sync_loop`` run."""
    gaps = paid_gaps(ops)
    out = {k: statistics.median(gaps[k]) for k in FIGURES if gaps.get(k)}
    ops = ops.sort_values("op_id")
    copies, kernels = ops[ops["kind"] == "copy_h2d"], ops[ops["kind"] == "kernel"]
    syncs = ops[ops["kind"] == "host_sync"]
    out["first_copy_issue_us"] = float(copies["issue_us"].iloc[0])
    out["first_copy_launch_us"] = float(kernels["issue_us"].iloc[0] - copies["issue_us"].iloc[0])
    out["first_launch_us"] = float(syncs["start_us"].iloc[0] - kernels["issue_us"].iloc[0])
    return out


def one_process(
    rounds: int, deadline: float, label: str, copy_mib: tuple[int, ...] = COPY_MIB, dry_run: bool = False
) -> list[dict]:
    """Every cell of ``copy_mib`` x ``KERNEL_US`` once per round (and the calibration loop), until ``rounds`` or
    ``deadline``. The replay's pinned host pool grows to the largest copy and stays: a process of 16 MiB copies
    only keeps a 64 MiB pinned buffer, one that ran a 512 MiB cell a 512 MiB one. ``dry_run``: on the simulator
    (checks the control flow without a GPU; its figures are the profile's)."""
    from harness.backend import ops_frame
    from harness.profile import load_profile
    from replay.calibrate import _loop_costs, _loop_policy

    profile = load_profile("h100-sxm-pcie5")
    if dry_run:
        from sim import SimBackend

        backend: Any = SimBackend(profile, 1, None, 0)
    else:
        from replay.engine import ReplayBackend, ReplayContext

        backend = ReplayBackend(ReplayContext(1), profile, warmup_runs=2)
    cells = [(c, k) for c in copy_mib for k in KERNEL_US]
    rows = []
    cpus = sorted(os.sched_getaffinity(0))
    for r in range(rounds):
        if time.monotonic() > deadline:
            print(f"[{label}] budget spent after {r} rounds", flush=True)
            break
        for copy_mib, kernel_us in cells if r % 2 == 0 else list(reversed(cells)):
            run = backend.run(sync_loop, copy_mib * MiB, kernel_us)
            figures = run_figures(ops_frame(run.ops))
            rows.append({"process": label, "cpus": str(cpus), "round": r, "cell": f"{copy_mib}MiB/{kernel_us:g}us",
                         "copy_mib": copy_mib, "kernel_us": kernel_us, **figures})  # fmt: skip
        loop = backend.run(_loop_policy)
        costs = _loop_costs(ops_frame(loop.ops), loop.result)
        rows.append({"process": label, "cpus": str(cpus), "round": r, "cell": "calibrate-loop",
                     "copy_launch_us": costs["copy_launch_us"], "launch_us": costs["launch_us"],
                     "free_alloc_us": costs["alloc_us"] + costs["free_us"],
                     "sync_wake_us": costs["sync_wake_us"]})  # fmt: skip
        print(f"[{label}] round {r} done", flush=True)
    return rows


def summary(table: pd.DataFrame) -> str:
    """Per figure, a markdown table: one row per cell, one column per process (median over its rounds)."""
    lines = ["# Replay host cost per command by cell (median over rounds, µs)", ""]
    for figure in (*FIGURES, "first_copy_launch_us", "first_launch_us"):
        if figure not in table or table[figure].isna().all():
            continue
        pivot = table.pivot_table(index="cell", columns="process", values=figure, aggfunc="median", sort=False)
        lines += [f"## {figure}", "", "| cell | " + " | ".join(pivot.columns) + " |"]
        lines.append("|---|" + "---:|" * len(pivot.columns))
        for cell, row in pivot.iterrows():
            lines.append(f"| {cell} | " + " | ".join("" if v != v else f"{v:.1f}" for v in row) + " |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=240.0)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--processes", type=int, default=3, help="fresh processes after the first (0: none)")
    ap.add_argument("--pin", action="store_true", help="pin each fresh process to another CPU")
    ap.add_argument("--dry-run", action="store_true", help="on the simulator: check the control flow (no GPU)")
    ap.add_argument("--child", help=argparse.SUPPRESS)  # JSON: label, rounds, deadline, rows file
    args = ap.parse_args(argv)
    if args.child:
        job = json.loads(args.child)
        if job["cpu"] is not None:
            os.sched_setaffinity(0, {job["cpu"]})
        rows = one_process(job["rounds"], job["deadline"], job["label"], tuple(job["copy_mib"]), job["dry_run"])
        Path(job["rows"]).write_text(json.dumps(rows))
        return 0
    if args.out.exists():
        print(f"error: {args.out} already exists (a probe folder is never overwritten)", file=sys.stderr)
        return 2
    args.out.mkdir(parents=True)
    start = time.monotonic()
    share = args.budget_s / (2 + args.processes)  # the first process gets twice a fresh one's time
    rows = one_process(args.rounds, start + 2 * share - 15, "p0", COPY_MIB, args.dry_run)
    cpus = sorted(os.sched_getaffinity(0))
    for i in range(1, args.processes + 1):
        left = start + args.budget_s - time.monotonic()
        if left < 30:
            print(f"budget spent: {i - 1} fresh processes run", flush=True)
            break
        file = args.out / f".rows-p{i}.json"
        # CLOCK_MONOTONIC is the machine's, so the child reads the same clock
        deadline = time.monotonic() + min(share, left) - 15
        # odd processes copy 16 MiB only (a small pinned pool), even ones the whole grid
        sizes = COPY_MIB[:1] if i % 2 else COPY_MIB
        job = {"label": f"p{i}", "rounds": max(2, args.rounds // 2), "deadline": deadline, "rows": str(file),
               "copy_mib": list(sizes), "dry_run": args.dry_run}  # fmt: skip
        job["cpu"] = cpus[(i * 3) % len(cpus)] if args.pin else None
        cmd = [sys.executable, __file__, "--out", str(args.out), "--child", json.dumps(job)]
        try:
            subprocess.run(cmd, check=True, timeout=min(share, left) + 20)
            rows += json.loads(file.read_text())
            file.unlink()
        except (subprocess.SubprocessError, OSError) as err:
            print(f"process p{i} failed: {err}", flush=True)
    table = pd.DataFrame(rows)
    table.to_csv(args.out / "host_costs.csv", index=False)
    text = summary(table)
    (args.out / "summary.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
