"""How much host time torch.profiler adds: per eager elementwise op, and per replay of a 96-kernel CUDA graph.

Times 2,000 small eager ops (host-bound) and 50 graph replays (each followed by a
synchronize) unprofiled, under torch.profiler (CPU + CUDA activities) and with CUDA
sync events too; prints each per-op median and the difference. On a CUDA GPU:
``python3 tools/probe_profiler_overhead.py`` (imports nothing from the harness).
Its output on the lent H200: ``measurements/2026-11-29_h200_recorded-programs/profiler_overhead_probe.log``.
"""

import statistics
import time

import torch
from torch.profiler import ProfilerActivity, profile

dev = torch.device("cuda", 0)
x = torch.randn(4096, device=dev)
s = torch.randn(4096, device=dev)


def eager(n=2000):
    y = x
    for k in range(n):
        y = y * s if k % 2 else y + s
    torch.cuda.synchronize(dev)


g = torch.cuda.CUDAGraph()
st = torch.cuda.Stream(dev)
st.wait_stream(torch.cuda.current_stream(dev))
with torch.cuda.stream(st):
    z = x.clone()
    for _ in range(96):
        z.add_(1.0)
torch.cuda.synchronize(dev)
with torch.cuda.graph(g, stream=st):
    for _ in range(96):
        z.add_(1.0)


def graphs(n=50):
    for _ in range(n):
        g.replay()
        torch.cuda.synchronize(dev)


def timed(fn):
    torch.cuda.synchronize(dev)
    t = time.perf_counter()
    fn()
    return (time.perf_counter() - t) * 1e6


for fn, n, name in ((eager, 2000, "eager op"), (graphs, 50, "graph replay+sync")):
    fn()
    u = [timed(fn) / n for _ in range(5)]
    p = []
    for _ in range(5):
        with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]):
            p.append(timed(fn) / n)
    ps = []
    for _ in range(3):
        with profile(
            activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
            experimental_config=torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True),
        ):
            ps.append(timed(fn) / n)
    mu, mp, mps = statistics.median(u), statistics.median(p), statistics.median(ps)
    print(
        f"{name}: unprofiled {mu:.2f} us  profiled {mp:.2f} us  +sync events {mps:.2f} us  overhead {mp - mu:.2f} us  "
        f"(u {[round(v, 1) for v in u]}, p {[round(v, 1) for v in p]})"
    )
