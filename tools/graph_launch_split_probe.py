"""When does a CUDA graph's first kernel start, relative to its profiled ``cudaGraphLaunch``, by graph size?

Issue 24 (graph_launch): under torch.profiler the corpus's 250-kernel decoder graph starts on the GPU ~19 µs into
a ~211 µs ``cudaGraphLaunch``, while its 96-122-kernel graphs start ~6 µs after the call returns
(``traces/recorded/corpus/README.md``). ``as_recorded`` takes that split from the recording's own graph launches;
an *added* graph (the ``graph_launch`` what-if on an eager recording) has none to take it from. This probe
measures the split by size on the GPU it runs on, for tiny graphs of N kernels (a chain of in-place adds on a
256-float tensor, captured once), each replayed alone onto an idle stream (a synchronize after each, as a
program with a sync every step does), under torch.profiler in the corpus's default mode (CPU+CUDA with CUDA sync
events) and, with ``--modes``, the others. Per size it reports from the exported trace, over the replays after the
first: the median ``cudaGraphLaunch`` duration, the median time from the call's start to its first kernel's start
(the kernels carry the launch's correlation id), and the share of replays whose first kernel started before the
call returned.

Usage (GPU machine): ``python tools/graph_launch_split_probe.py --out DIR [--sizes 16 64 96 128 ...] [--replays 20]
[--modes sync nosync cudaonly] [--budget-s 90]``; writes ``graph_launch_split.json`` and prints a table. Without
CUDA: refuses, exit 2.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from corpus_gpu_run import profiler_kwargs  # noqa: E402  (the corpus's own modes: sync, nosync, cudaonly)

SIZES = (16, 32, 64, 96, 128, 160, 192, 224, 256, 320, 384, 512)


def capture(torch, kernels: int):
    x = torch.zeros(256, device="cuda")
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):  # warm the kernel up outside the capture
        for _ in range(3):
            x.add_(1.0)
    torch.cuda.current_stream().wait_stream(stream)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(kernels):
            x.add_(1.0)
    graph.replay()  # uploaded once, unprofiled
    torch.cuda.synchronize()
    return graph, x


def split_from_trace(events: list[dict]) -> list[tuple[float, float]]:
    """(call duration, first kernel start - call start) in µs for each cudaGraphLaunch of a Chrome trace."""
    launches = {}
    first_kernel: dict[int, float] = {}
    for e in events:
        if e.get("ph") != "X":
            continue
        corr = (e.get("args") or {}).get("correlation")
        if corr is None:
            continue
        if e.get("cat") in ("cuda_runtime", "cuda_driver") and e.get("name") in ("cudaGraphLaunch", "cuGraphLaunch"):
            launches[corr] = (float(e["ts"]), float(e.get("dur", 0.0)))
        elif e.get("cat") == "kernel":
            ts = float(e["ts"])
            first_kernel[corr] = min(ts, first_kernel.get(corr, ts))
    return [(dur, first_kernel[c] - ts) for c, (ts, dur) in sorted(launches.items()) if c in first_kernel]


def probe_size(torch, kernels: int, replays: int, mode: str) -> dict:
    graph, _ = capture(torch, kernels)
    with tempfile.TemporaryDirectory() as tmp:
        with torch.profiler.profile(**profiler_kwargs(torch, mode, cuda=True)) as prof:
            for _ in range(replays + 1):
                graph.replay()
                torch.cuda.synchronize()
        path = Path(tmp) / "trace.json"
        prof.export_chrome_trace(str(path))
        events = json.loads(path.read_text())["traceEvents"]
    pairs = split_from_trace(events)[1:]  # the first replay under the profiler is its own kind (set-up)
    if not pairs:
        return {"kernels": kernels, "mode": mode, "replays": 0, "note": "no graph launch linked to its kernels"}
    calls = [p[0] for p in pairs]
    starts = [p[1] for p in pairs]
    return {
        "kernels": kernels,
        "mode": mode,
        "replays": len(pairs),
        "call_median_us": statistics.median(calls),
        "first_kernel_after_call_start_median_us": statistics.median(starts),
        "first_kernel_after_call_end_median_us": statistics.median(s - c for c, s in pairs),
        "started_inside_call_share": sum(s < c for c, s in pairs) / len(pairs),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--sizes", type=int, nargs="*", default=list(SIZES))
    ap.add_argument("--replays", type=int, default=20)
    ap.add_argument("--modes", nargs="*", default=["sync"], choices=["sync", "nosync", "cudaonly"])
    ap.add_argument("--budget-s", type=float, default=90.0)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        print("graph_launch_split_probe: needs CUDA (none here)", file=sys.stderr)
        sys.exit(2)
    args.out.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    rows = []
    for mode in args.modes:
        for kernels in args.sizes:
            if time.perf_counter() - started > args.budget_s:
                print(f"budget of {args.budget_s:.0f} s spent: {mode} from {kernels} kernels not run")
                break
            rows.append(probe_size(torch, kernels, args.replays, mode))
    out = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "replays": args.replays, "rows": rows}
    (args.out / "graph_launch_split.json").write_text(json.dumps(out, indent=2))
    print(f"{'mode':>8} {'kernels':>8} {'call µs':>9} {'first kernel from call start µs':>32} "
          f"{'from call end µs':>17} {'inside call':>12}")  # fmt: skip
    for r in rows:
        if not r.get("replays"):
            print(f"{r['mode']:>8} {r['kernels']:>8}  {r.get('note', '')}")
            continue
        print(f"{r['mode']:>8} {r['kernels']:>8} {r['call_median_us']:>9.1f} "
              f"{r['first_kernel_after_call_start_median_us']:>32.1f} "
              f"{r['first_kernel_after_call_end_median_us']:>17.1f} {r['started_inside_call_share']:>12.0%}")  # fmt: skip


if __name__ == "__main__":
    main()
