"""Does the same Python run slower around an eager decode step than around a captured one, without the profiler?

Issue 24 (graph_launch, p13): in the corpus's recordings the loop's own lines, identical in ``decode_eager`` and
``decode_graph`` (the mid size with its per-step backup), take 2-3x longer in the eager program: from a sync's return
to the next step's range ~30 against ~13 µs, from the backup's ``copy_`` to the sync ~32 against ~13 µs, in every
profiler mode (``traces/recorded/corpus/README.md``, "What a capture takes off the host"). A ``graph_launch`` what-if
of the eager recording keeps them at the eager speed. This probe says whether the unprofiled programs show it too.

It builds both corpus programs (``traces/recorded/corpus/programs/``, ``--size``, ``--backup inline``), warms them
up, and runs each one's measured loop with ``time.perf_counter_ns`` stamps between its lines (the program's own
loop, its sync line split in two: ``stream = torch.cuda.current_stream(device)``, then ``stream.synchronize()``),
in ``--rounds`` interleaved rounds (alternating order) of ``--steps`` steps, unprofiled; with ``--profiled`` one
more round of each under torch.profiler (CPU+CUDA with CUDA sync events, the corpus's default mode) last. Per
program and segment (µs, over the steps after the first of each round): median, quartiles, min and max:

* ``loop``: the sync's return to the top of the next iteration's ``with`` body (the range's exit and entry, the
  loop's Python);
* ``body``: ``self.step()`` or ``graph.replay()``;
* ``copy``: the backup's ``copy_`` line;
* ``sync_line``: ``torch.cuda.current_stream(device)`` (the Python before the sync call);
* ``wait``: ``stream.synchronize()`` (the GPU's remaining work and the wake).

Usage (GPU machine): ``python tools/capture_host_probe.py --out DIR [--size mid] [--steps 30] [--rounds 11]
[--profiled] [--budget-s 120]``; writes ``capture_host.json`` and prints a table. ``--device cpu --tiny`` runs the
same control flow on the CPU (no graph there: both programs eager). Without torch, or ``--device cuda`` without
CUDA: refuses with one line, exit 2.
"""

from __future__ import annotations

import argparse
import json
import runpy
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
PROGRAMS = ROOT / "traces" / "recorded" / "corpus" / "programs"
SEGMENTS = ("loop", "body", "copy", "sync_line", "wait")
STAMPS = len(SEGMENTS) + 1  # a step's stamps: top of the body, after the body, the copy, the stream, the sync; next top


def segments_us(stamps_ns: np.ndarray) -> dict[str, np.ndarray]:
    """Per step (row) of one round's stamps (ns: ``[top, body_end, copy_end, stream_end, sync_end]``, each step's
    ``top`` taken inside the ``with``), each segment in µs; ``loop`` is the sync's return to the next step's top, so
    a round of n steps gives n - 1 of it, and the first step of the others is dropped with it (a round's first
    step follows the round's set-up, not a step)."""
    stamps_ns = np.asarray(stamps_ns, dtype=np.int64)
    if stamps_ns.ndim != 2 or stamps_ns.shape[1] != STAMPS - 1 or len(stamps_ns) < 2:
        raise ValueError(f"expected a round of at least 2 steps x {STAMPS - 1} stamps, got shape {stamps_ns.shape}")
    if (np.diff(stamps_ns.ravel()) < 0).any():
        raise ValueError("stamps must not go backwards")
    top, body, copy, stream, sync = stamps_ns.T
    return {
        "loop": (top[1:] - sync[:-1]) / 1e3,
        "body": (body - top)[1:] / 1e3,
        "copy": (copy - body)[1:] / 1e3,
        "sync_line": (stream - copy)[1:] / 1e3,
        "wait": (sync - stream)[1:] / 1e3,
    }


def summary(values_us: np.ndarray) -> dict[str, float]:
    v = np.asarray(values_us, dtype=np.float64)
    q1, median, q3 = np.percentile(v, [25, 50, 75])
    return {"median_us": float(median), "q1_us": float(q1), "q3_us": float(q3), "min_us": float(v.min()),
            "max_us": float(v.max()), "steps": int(len(v))}  # fmt: skip


def stamped_round(torch, program, steps: int, body) -> np.ndarray:
    """The program's measured loop (``decode_*.py``'s ``run``), stamped between its lines: one row per step."""
    from torch.profiler import record_function

    ns = time.perf_counter_ns
    rows = np.empty((steps, STAMPS - 1), dtype=np.int64)
    for s in range(steps):
        with record_function(f"step{s}"):
            top = ns()
            body()
            body_end = ns()
            program.host_kv.copy_(program.new_kv, non_blocking=True)
            copy_end = ns()
            stream = torch.cuda.current_stream(program.device) if program.cuda else None
            stream_end = ns()
            if stream is not None:
                stream.synchronize()
            rows[s] = (top, body_end, copy_end, stream_end, ns())
    return rows


def build(device: str, tiny: bool, size: str) -> dict:
    """The eager and the graph program of the corpus (``--backup inline``), warmed up, with their step bodies."""
    eager = runpy.run_path(str(PROGRAMS / "decode_eager.py"))["Program"](device, tiny, size=size, backup="inline")
    graph = runpy.run_path(str(PROGRAMS / "decode_graph.py"))["Program"](device, tiny, size=size, backup="inline")
    eager.run(3)
    graph.run(3)
    replay = graph.graph.replay if graph.graph is not None else graph.step
    return {"decode_eager": (eager, eager.step), "decode_graph": (graph, replay)}


def table(results: dict) -> str:
    lines = ["| phase | segment | eager µs (q1-q3) | graph µs (q1-q3) | eager / graph |", "|---|---|---:|---:|---:|"]
    for phase, programs in results.items():
        eager, graph = programs["decode_eager"], programs["decode_graph"]
        for seg in SEGMENTS:
            e, g = eager[seg], graph[seg]
            ratio = e["median_us"] / g["median_us"] if g["median_us"] > 0 else float("nan")
            lines.append(
                f"| {phase} | {seg} | {e['median_us']:.1f} ({e['q1_us']:.1f}-{e['q3_us']:.1f}) | "
                f"{g['median_us']:.1f} ({g['q1_us']:.1f}-{g['q3_us']:.1f}) | {ratio:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--size", choices=("host", "mid", "gpu"), default="mid")
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=11)
    ap.add_argument("--profiled", action="store_true", help="one more round of each under torch.profiler, last")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true")
    ap.add_argument("--budget-s", type=float, default=120.0)
    args = ap.parse_args(argv)
    if args.steps < 2 or args.rounds < 1:
        print(f"capture_host_probe: --steps must be >= 2 and --rounds >= 1 (got {args.steps}, {args.rounds})",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    try:
        import torch
    except ImportError:
        print("capture_host_probe: needs torch (not installed here)", file=sys.stderr)
        sys.exit(2)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("capture_host_probe: --device cuda needs CUDA (none here); --device cpu --tiny for a dry run",
              file=sys.stderr)  # fmt: skip
        sys.exit(2)
    started = time.perf_counter()
    programs = build(args.device, args.tiny, args.size)
    per_round: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in programs}
    rounds_run = 0
    for r in range(args.rounds):
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent after {rounds_run} round(s)")
            break
        order = list(programs) if r % 2 == 0 else list(reversed(programs))
        for name in order:
            program, body = programs[name]
            per_round[name].append(segments_us(stamped_round(torch, program, args.steps, body)))
        rounds_run += 1
    results = {"unprofiled": _summaries(per_round)}
    if args.profiled and time.perf_counter() - started <= args.budget_s:
        sys.path.insert(0, str(ROOT / "tools"))
        from corpus_gpu_run import profiler_kwargs

        profiled: dict[str, list[dict[str, np.ndarray]]] = {name: [] for name in programs}
        for name, (program, body) in programs.items():
            with torch.profiler.profile(**profiler_kwargs(torch, "sync", cuda=program.cuda)):
                profiled[name].append(segments_us(stamped_round(torch, program, args.steps, body)))
        results["profiled (sync)"] = _summaries(profiled)
    args.out.mkdir(parents=True, exist_ok=True)
    environment = {"torch": torch.__version__, "device": args.device,
                   "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else "",
                   "size": args.size, "tiny": args.tiny, "steps": args.steps, "rounds": rounds_run,
                   "wall_s": time.perf_counter() - started}  # fmt: skip
    (args.out / "capture_host.json").write_text(json.dumps({"environment": environment, "results": results}, indent=2))
    print(table(results))


def _summaries(per_round: dict[str, list[dict[str, np.ndarray]]]) -> dict:
    return {
        name: {seg: summary(np.concatenate([r[seg] for r in rounds])) for seg in SEGMENTS}
        for name, rounds in per_round.items()
    }


if __name__ == "__main__":
    main()
