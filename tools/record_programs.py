"""Record plain PyTorch programs with torch.profiler, and time them unprofiled, on a CUDA GPU.

These are the recordings behind ``traces/recorded/``: ordinary eager PyTorch
programs, written without the harness, whose profiler traces the harness then
imports (``harness trace import``), simulates and replays. Each program runs

1. once untimed (warm-up: allocator, cuBLAS handles, graph capture),
2. ``--reps`` times unprofiled, its wall span timed on the host around a
   device synchronize (the figure a user would time by hand),
3. once under torch.profiler with CUDA sync events (stream waits and event
   records visible) and once without, each exported as a gzipped Chrome trace.

Programs (sizes chosen so each trace stays well under 2 MB gzipped):

* ``layers_sync``: 8 layers; each copies its 128 MiB of bf16 weights from
  pinned host memory into one device buffer, then runs 4 matrix products with
  them, all on the default stream (the synchronous layer-streaming loop).
* ``layers_prefetch``: the same layers, double-buffered: layer i+1's weights
  are copied on a side stream during layer i's compute, ordered by events.
* ``decode_inline``: an eager decode-like loop: 24 steps of 96 small kernels,
  then a D2H copy of the new 8 MiB state into pinned memory and a stream sync.
* ``decode_async``: the same, with the copy on a side stream after an event
  recorded behind the step; the next step's first writer of the state waits on
  the copy's event; one sync at the end.
* ``decode_graph``: the decode step captured once as a CUDA graph and replayed
  24 times, with the D2H copy and sync per step.

Usage: ``python3 tools/record_programs.py OUT [--reps 7]``; writes
``OUT/<program>[-sync].json.gz`` and ``OUT/spans.json`` (per program: the
unprofiled spans, their median, the profiled span, GPU name, torch version).
"""

from __future__ import annotations

import argparse
import datetime as dt
import gzip
import json
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import torch
from torch.profiler import ProfilerActivity, profile, record_function

LAYERS, LAYER_DIM, TOKENS, MATMULS = 8, 8192, 4096, 4
STEPS, KERNELS_PER_STEP, HIDDEN, STATE_ELEMS = 24, 96, 4096, 2 << 20  # 8 MiB of float32 state


def layer_programs(device: torch.device) -> dict[str, Callable[[], None]]:
    host = [torch.randn(LAYER_DIM, LAYER_DIM, dtype=torch.bfloat16).pin_memory() for _ in range(LAYERS)]
    x = torch.randn(TOKENS, LAYER_DIM, dtype=torch.bfloat16, device=device)
    buffers = [torch.empty(LAYER_DIM, LAYER_DIM, dtype=torch.bfloat16, device=device) for _ in range(2)]
    side = torch.cuda.Stream(device)

    def compute(w: torch.Tensor) -> None:
        y = x
        for _ in range(MATMULS):
            y = torch.matmul(y, w)

    def layers_sync() -> None:
        for i in range(LAYERS):
            with record_function(f"layer{i}"):
                buffers[0].copy_(host[i], non_blocking=True)
                compute(buffers[0])

    def layers_prefetch() -> None:
        main = torch.cuda.current_stream(device)
        ready = [torch.cuda.Event() for _ in range(2)]
        free = [torch.cuda.Event() for _ in range(2)]
        with torch.cuda.stream(side):
            buffers[0].copy_(host[0], non_blocking=True)
            ready[0].record(side)
        for i in range(LAYERS):
            with record_function(f"layer{i}"):
                if i + 1 < LAYERS:
                    nxt = (i + 1) % 2
                    with torch.cuda.stream(side):
                        if i >= 1:
                            side.wait_event(free[nxt])  # the buffer's previous layer has finished with it
                        buffers[nxt].copy_(host[i + 1], non_blocking=True)
                        ready[nxt].record(side)
                main.wait_event(ready[i % 2])
                compute(buffers[i % 2])
                free[i % 2].record(main)

    return {"layers_sync": layers_sync, "layers_prefetch": layers_prefetch}


def decode_programs(device: torch.device) -> dict[str, Callable[[], None]]:
    h = torch.randn(HIDDEN, device=device)
    scale = torch.randn(HIDDEN, device=device)
    state = torch.zeros(STATE_ELEMS, device=device)
    host_state = torch.empty(STATE_ELEMS).pin_memory()
    side = torch.cuda.Stream(device)

    def step_kernels() -> None:
        y = h
        for k in range(KERNELS_PER_STEP - 1):
            y = y * scale if k % 2 else y + scale
        state[:HIDDEN].copy_(y)  # the step's new state (one more kernel)

    def decode_inline() -> None:
        stream = torch.cuda.current_stream(device)
        for s in range(STEPS):
            with record_function(f"step{s}"):
                step_kernels()
                host_state.copy_(state, non_blocking=True)
                stream.synchronize()

    def decode_async() -> None:
        main = torch.cuda.current_stream(device)
        copied = None
        for s in range(STEPS):
            with record_function(f"step{s}"):
                if copied is not None:
                    main.wait_event(copied)  # the state's next writer waits for its backup
                step_kernels()
                done = torch.cuda.Event()
                done.record(main)
                with torch.cuda.stream(side):
                    side.wait_event(done)
                    host_state.copy_(state, non_blocking=True)
                    copied = torch.cuda.Event()
                    copied.record(side)
        main.synchronize()
        side.synchronize()

    graph = torch.cuda.CUDAGraph()

    def capture() -> None:
        capture_stream = torch.cuda.Stream(device)
        capture_stream.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(capture_stream):
            step_kernels()  # warm-up on the capture stream
        torch.cuda.current_stream(device).wait_stream(capture_stream)
        with torch.cuda.graph(graph):
            step_kernels()

    capture()

    def decode_graph() -> None:
        stream = torch.cuda.current_stream(device)
        for s in range(STEPS):
            with record_function(f"step{s}"):
                graph.replay()
                host_state.copy_(state, non_blocking=True)
                stream.synchronize()

    return {"decode_inline": decode_inline, "decode_async": decode_async, "decode_graph": decode_graph}


def timed_span_us(program: Callable[[], None], device: torch.device) -> float:
    """Host wall time from the first call to the end of the last GPU op (synchronize before and after)."""
    torch.cuda.synchronize(device)
    start = time.perf_counter()
    program()
    torch.cuda.synchronize(device)
    return (time.perf_counter() - start) * 1e6


def record(program: Callable[[], None], device: torch.device, path: Path, sync_events: bool) -> float:
    kwargs = {}
    if sync_events:
        kwargs["experimental_config"] = torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True)
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA], **kwargs) as prof:
        span = timed_span_us(program, device)
    raw = path.with_suffix("")  # .json
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(path, "wb", compresslevel=9) as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    return span


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--only", nargs="*", default=None, help="program names to run (default: all)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda", 0)
    torch.backends.cuda.matmul.allow_tf32 = True
    programs = {**layer_programs(device), **decode_programs(device)}
    spans: dict[str, dict] = {}
    for name, program in programs.items():
        if args.only and name not in args.only:
            continue
        program()  # warm-up
        timed = [timed_span_us(program, device) for _ in range(args.reps)]
        profiled_sync = record(program, device, args.out / f"{name}-sync.json.gz", sync_events=True)
        profiled = record(program, device, args.out / f"{name}.json.gz", sync_events=False)
        spans[name] = {
            "unprofiled_span_us": timed,
            "unprofiled_span_median_us": statistics.median(timed),
            "profiled_span_us": profiled,
            "profiled_sync_events_span_us": profiled_sync,
        }
        print(
            f"{name:16s} unprofiled median {statistics.median(timed):10.1f} us  "
            f"(min {min(timed):.1f}, max {max(timed):.1f})"
            f"  profiled {profiled:10.1f} us  profiled+sync events {profiled_sync:10.1f} us",
            flush=True,
        )
    meta = {
        "gpu": torch.cuda.get_device_name(device),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "date": dt.date.today().isoformat(),
        "host": os.uname().nodename,
        "script": "tools/record_programs.py",
        "reps": args.reps,
        "programs": spans,
    }
    (args.out / "spans.json").write_text(json.dumps(meta, indent=2))


if __name__ == "__main__":
    main()
