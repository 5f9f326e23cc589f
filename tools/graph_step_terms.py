"""A recorded CUDA-graph program's steps, term by term: host (launch call, gaps) and GPU (kernels, gaps) (issue 22).

For each ``cudaGraphLaunch`` of an imported recording (``harness trace import``'s ``.parquet``), from the
recording's own timestamps: the host gap before the launch and the launch call's duration; the graph's
kernels on the GPU (their sum, the gaps between them, first to last), when they started against the launch
call's return (``lead_after_return``; huge where graphs queue behind earlier ones), the GPU's idle time before
the graph (after the previous one) and the GPU period (one graph's first kernel to the next one's). Medians
over the launches after the first two (the profiler's start-up and a graph's first replay under it), and the
program's unprofiled step from the corpus manifest when ``--manifest`` names it.

Usage: ``python tools/graph_step_terms.py traces/recorded/corpus/recordings/decode_graph_host-sync.parquet
[...] [--manifest traces/recorded/corpus/manifest.json] [--per-launch]`` (no GPU).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd


def graph_steps(path: Path) -> pd.DataFrame:
    """One row per graph launch of the recording at ``path``: its host and GPU terms (µs)."""
    ops = pd.read_parquet(path)
    calls = ops[ops["kind"].str.startswith("call_")].sort_values("start_us")
    gpu = ops[~ops["kind"].str.startswith("call_")].sort_values("start_us")
    rows = []
    for _, launch in calls[calls["kind"] == "call_graph_launch"].iterrows():
        nodes = gpu[gpu["correlation"] == launch["correlation"]]
        if nodes.empty:
            continue
        start = nodes["start_us"].to_numpy()
        end = start + nodes["duration_us"].to_numpy()
        kernels = nodes["kind"] == "kernel"
        rows.append(
            {
                "host_gap_us": launch["host_gap_us"],
                "launch_call_us": launch["duration_us"],
                "nodes": len(nodes),
                "kernels": int(kernels.sum()),
                "kernel_sum_us": float(nodes.loc[kernels, "duration_us"].sum()),
                "gap_sum_us": float(np.clip(start[1:] - end[:-1], 0.0, None).sum()),
                "span_us": float(end.max() - start[0]),
                "lead_after_return_us": float(start[0] - (launch["start_us"] + launch["duration_us"])),
                "first_us": float(start[0]),
                "last_us": float(end.max()),
            }
        )
    frame = pd.DataFrame(rows)
    if frame.empty:
        return frame
    frame["gpu_idle_before_us"] = frame["first_us"] - frame["last_us"].shift(1)
    frame["gpu_period_us"] = frame["first_us"].diff()
    return frame.drop(columns=["first_us", "last_us"])


def unprofiled_step_us(manifest: Path, recording: Path) -> float | None:
    """The program's unprofiled median step (µs) from a corpus manifest, matched by the recording's file name."""
    rows = json.loads(manifest.read_text()).get("rows", [])
    stem = recording.name.removesuffix(".parquet")
    program = next((r["program"] for r in rows if Path(r["recording"]).name.removesuffix(".json.gz") == stem), None)
    row = next((r for r in rows if r["program"] == program and r["job"] == r["truth_job"]), None)
    return None if row is None else row["unprofiled_median_us"] / row["steps"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("recordings", nargs="+", type=Path)
    ap.add_argument("--manifest", type=Path, default=None)
    ap.add_argument("--per-launch", action="store_true", help="print every launch, not only the medians")
    args = ap.parse_args(argv)
    for path in args.recordings:
        if not path.exists():
            print(f"{path}: no such recording (an imported .parquet)", file=sys.stderr)
            return 2
        steps = graph_steps(path)
        if steps.empty:
            print(f"{path}: no graph launches")
            continue
        typical = steps.iloc[2:].median() if len(steps) > 3 else steps.median()
        unprofiled = unprofiled_step_us(args.manifest, path) if args.manifest else None
        print(f"{path.name}: {len(steps)} graph launches; medians after the first two:")
        for name, value in typical.items():
            print(f"  {name:22s} {value:10.2f}")
        if unprofiled is not None:
            print(f"  {'unprofiled step_us':22s} {unprofiled:10.2f}  (GPU period over it: "
                  f"{typical['gpu_period_us'] - unprofiled:+.1f} µs, {(typical['gpu_period_us'] - unprofiled) / typical['kernels']:+.3f} a kernel)")
        if args.per_launch:
            print(steps.round(2).to_string())
    return 0


if __name__ == "__main__":
    sys.exit(main())
