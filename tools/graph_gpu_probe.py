"""What CUPTI adds to a CUDA graph's GPU time, on the corpus's own decoder graphs (issue 22; a check, not a figure).

For each size of ``traces/recorded/corpus/programs/decode_graph.py`` (host, mid, gpu; no backup) in this one
fresh process, unprofiled first and then under torch.profiler (CPU+CUDA with CUDA sync events, the corpus's
default mode), times with CUDA events:

* ``queued_us``: one replay queued behind ~2 ms of held GPU work (the replay's GPU time alone: its launch's
  host time, 0.7-1 µs a kernel under CUPTI, is hidden behind the hold), median of ``--replays``;
* ``idle_us``: one replay on an idle GPU (what the calibration's older ``gpu_overhead`` timed: the profiled
  launch's host time included);
* ``period_us``: ``--steps`` replays issued back to back as the program's loop issues them, the first
  event to the last over the steps (the GPU period of the unprofiled program, which is GPU-bound);

and, from the profiled run's trace, each graph's kernel count and the median ``cudaGraphLaunch`` duration.
Per kernel, ``(queued profiled - queued unprofiled) / kernels`` is what the calibration's ``graph_block``
shape now measures as ``gpu_overhead.graph_kernel`` (``harness calibrate --profiler``, queued timing); this
probe says whether the real decoder graphs gain the same. It times the corpus's own programs, so it is for
checking the calibration's figure, never a figure compensation uses.

Usage (GPU machine): ``python tools/graph_gpu_probe.py --out $OUT/graph_probe [--budget-s 60]``; writes
``graph_probe.json`` (and prints it). CPU: refuses (no CUDA), exit 2.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PROGRAM = ROOT / "traces" / "recorded" / "corpus" / "programs" / "decode_graph.py"
SIZES = ("host", "mid", "gpu")
HOLD_PASSES = 24  # over a 128 MiB buffer: ~2 ms on an H100, as the calibration's hold_gpu


def _load_program_module():
    spec = importlib.util.spec_from_file_location("corpus_decode_graph", PROGRAM)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _timings(torch, program, hold, replays: int, steps: int) -> dict[str, float]:
    def timed(before, count: int) -> float:
        begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        before()
        begin.record()
        for _ in range(count):
            program.graph.replay()
        end.record()
        torch.cuda.synchronize()
        return begin.elapsed_time(end) * 1e3

    def held() -> None:
        for _ in range(HOLD_PASSES):
            hold.mul_(1.0)

    queued = [timed(held, 1) for _ in range(replays)]
    idle = [timed(lambda: None, 1) for _ in range(replays)]
    period = [timed(held, steps) / steps for _ in range(5)]
    return {
        "queued_us": statistics.median(queued),
        "queued_min_max_us": [min(queued), max(queued)],
        "idle_us": statistics.median(idle),
        "period_us": statistics.median(period),
    }


def _trace_figures(path: Path) -> dict[str, float]:
    """Per graph launch in the profiled trace: its kernel count and the launch call's duration (medians)."""
    events = json.loads(gzip.open(path).read() if path.suffix == ".gz" else path.read_text())["traceEvents"]
    launches = [e for e in events if e.get("ph") == "X" and e.get("name") == "cudaGraphLaunch"]
    by_corr: dict[int, int] = {}
    for e in events:
        if e.get("ph") == "X" and e.get("cat") == "kernel":
            corr = (e.get("args") or {}).get("correlation")
            by_corr[corr] = by_corr.get(corr, 0) + 1
    kernels = [by_corr.get((e.get("args") or {}).get("correlation"), 0) for e in launches]
    return {
        "graph_kernels": statistics.median(kernels) if kernels else 0,
        "launch_call_profiled_us": statistics.median(e["dur"] for e in launches) if launches else 0.0,
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--replays", type=int, default=30)
    ap.add_argument("--steps", type=int, default=30)
    ap.add_argument("--budget-s", type=float, default=60.0)
    args = ap.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is None or not torch.cuda.is_available():
        print("graph_gpu_probe: no CUDA device: this probe times CUDA graphs on a GPU", file=sys.stderr)
        return 2
    begun = time.monotonic()
    module = _load_program_module()
    hold = torch.zeros(32 << 20, device="cuda")
    programs = {size: module.Program("cuda", False, size=size, backup="none") for size in SIZES}
    for program in programs.values():
        program.run(3)
    torch.cuda.synchronize()
    result: dict = {"gpu": torch.cuda.get_device_name(), "torch": torch.__version__, "sizes": {}}
    for size, program in programs.items():  # unprofiled, before any profiling in this process
        result["sizes"][size] = {"unprofiled": _timings(torch, program, hold, args.replays, args.steps)}
    args.out.mkdir(parents=True, exist_ok=True)
    config = torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True)
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    for size, program in programs.items():
        if time.monotonic() - begun > args.budget_s:
            result["sizes"][size]["profiled"] = "skipped: --budget-s reached"
            continue
        with torch.profiler.profile(activities=activities, experimental_config=config) as prof:
            figures = _timings(torch, program, hold, args.replays, args.steps)
        trace = args.out / f"profiled_{size}.json"
        prof.export_chrome_trace(str(trace))
        figures.update(_trace_figures(trace))
        trace.unlink()
        entry = result["sizes"][size]
        entry["profiled"] = figures
        n = figures["graph_kernels"] or float("nan")
        entry["queued_added_us_a_kernel"] = (figures["queued_us"] - entry["unprofiled"]["queued_us"]) / n
        entry["idle_added_us_a_kernel"] = (figures["idle_us"] - entry["unprofiled"]["idle_us"]) / n
        entry["period_added_us_a_kernel"] = (figures["period_us"] - entry["unprofiled"]["period_us"]) / n
    (args.out / "graph_probe.json").write_text(json.dumps(result, indent=1))
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
