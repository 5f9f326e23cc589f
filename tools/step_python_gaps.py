"""A recorded step loop's own Python, from the raw profiler trace: the loop, the step's head, the line before its sync.

Issue 24 (graph_launch, p13): which host time of an eager decode step a CUDA-graph capture removes, and which it
leaves. For each ``record_function("step<N>")`` range of a torch.profiler Chrome trace (the corpus's device run
writes them as ``recordings/*.json.gz``; the repository keeps only their imported ``.parquet``, which holds each
call's gap but not where its aten ops began), medians over the steps after the first (min-max), µs:

* ``loop``: the previous step's ``cudaStreamSynchronize`` return to this step's range (the range's exit and
  entry, the loop's Python);
* ``head``: the step's range to its first runtime launch (``cudaLaunchKernel``, ``cuLaunchKernel*``,
  ``cudaGraphLaunch``, ``cudaMemcpyAsync``; ``cudaStreamIsCapturing`` left out): an eager step's prelude and first
  op, a graph step's ``graph.replay()``;
* ``copy_to_sync``: the last ``aten::copy_`` before the step's sync to the sync (the Python of the sync line; CPU
  recordings only: a CUDA-only trace has no aten ops, and then it is the last ``cudaMemcpyAsync``'s end instead).

A CUDA-only trace has no ranges either: its steps are then the spans between two syncs' returns, ``loop`` is not
measured and ``head`` runs from the previous sync's return (the loop's Python included).

The corpus (2026-12-07 H100 run): eager ``decode_*_backup`` 30-35 / 30-35 / 32-35 µs against the graph programs'
11-19 / 7-9 / 11-16 (``traces/recorded/corpus/README.md``, "What a capture takes off the host").

Usage: ``python tools/step_python_gaps.py REC.json.gz [...]`` (no GPU); prints one line per trace.
"""

from __future__ import annotations

import argparse
import gzip
import json
import statistics
from pathlib import Path

LAUNCHES = ("cudaLaunchKernel", "cudaLaunchKernelExC", "cuLaunchKernel", "cuLaunchKernelEx", "cudaGraphLaunch",
            "cudaMemcpyAsync")  # fmt: skip
TERMS = ("loop", "head", "copy_to_sync")


def step_gaps(events: list[dict]) -> dict[str, list[float]]:
    """Per step after the first (see the module docstring), each term's µs; a term a step lacks is left out."""
    spans = [e for e in events if e.get("ph") == "X"]
    ranges = (e for e in spans if e.get("cat") == "user_annotation" and str(e.get("name", "")).startswith("step"))
    steps = sorted(ranges, key=lambda e: e["ts"])
    runtime = sorted((e for e in spans if e.get("cat") in ("cuda_runtime", "cuda_driver")), key=lambda e: e["ts"])
    syncs = [e for e in runtime if e["name"] == "cudaStreamSynchronize"]
    launches = [e for e in runtime if e["name"] in LAUNCHES]
    copies = sorted((e for e in spans if e.get("cat") == "cpu_op" and e.get("name") == "aten::copy_"),
                    key=lambda e: e["ts"])  # fmt: skip
    out: dict[str, list[float]] = {term: [] for term in TERMS}
    ranged = bool(steps)
    if not ranged:  # CUDA-only: a step from one sync's return to the next one's
        ends = [s["ts"] + s["dur"] for s in syncs]
        steps = [{"ts": a, "dur": b - a} for a, b in zip(ends, ends[1:])]
        steps = [{"ts": syncs[0]["ts"], "dur": 0.0}, *steps] if steps else []  # the first step is left out below
    for step in steps[1:]:
        start, end = float(step["ts"]), float(step["ts"]) + float(step["dur"])
        before = [s for s in syncs if s["ts"] < start]
        if before and ranged:
            out["loop"].append(start - (before[-1]["ts"] + before[-1]["dur"]))
        first = next((c for c in launches if start <= c["ts"] <= end), None)
        if first is not None:
            out["head"].append(first["ts"] - start)
        sync = next((s for s in syncs if start <= s["ts"] <= end), None)
        if sync is None:
            continue
        ends = [c["ts"] + c["dur"] for c in copies if start <= c["ts"] < sync["ts"]]
        if not ends:  # no aten ops recorded (CUDA-only): the last copy call's end
            memcpys = (c for c in launches if c["name"] == "cudaMemcpyAsync")
            ends = [c["ts"] + c["dur"] for c in memcpys if start <= c["ts"] < sync["ts"]]
        if ends:
            out["copy_to_sync"].append(sync["ts"] - max(ends))
    return out


def describe(values: list[float]) -> str:
    if not values:
        return "-"
    return f"{statistics.median(values):6.1f} ({min(values):5.1f}-{max(values):5.1f})"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("traces", type=Path, nargs="+")
    args = ap.parse_args(argv)
    for path in args.traces:
        opener = gzip.open if path.suffix == ".gz" else open
        with opener(path, "rt") as f:
            gaps = step_gaps(json.load(f)["traceEvents"])
        print(f"{path.name:48s} " + " | ".join(f"{t} {describe(gaps[t])}" for t in TERMS))


if __name__ == "__main__":
    main()
