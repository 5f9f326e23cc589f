"""One-off probe (not part of the harness): how steady is a bf16 matmul's duration on the lent GPU?

Times 60 back-to-back 8192^3 bf16 products (events around each) for several operand
patterns, sustained, with idle gaps (a queued _sleep), and with gaps plus a 16 MiB H2D
copy, sampling SM clock and power with nvidia-smi; then the host cost of the torch calls
the replay makes. Its output on the lent H100 is probe_clock_drift.log (with the fidelity
benchmark's run outputs, measurements/2026-11-23_h100_layer-streaming/README.md); it is why the replay's default kernel
stand-ins are timed by %globaltimer (replay/timed.py). Needs torch and a CUDA GPU; writes nothing.
Run: python3 tools/probe_clock_drift.py
"""

import statistics as st
import subprocess
import threading
import time

import torch

dev = torch.device("cuda")
s = torch.cuda.Stream()
K = N = 8192
M = 8192


def mk(kind):
    g = torch.Generator(device=dev).manual_seed(0)
    if kind == "random":
        a = torch.randn(M, K, device=dev, dtype=torch.bfloat16, generator=g)
        b = torch.randn(K, N, device=dev, dtype=torch.bfloat16, generator=g)
    elif kind == "ones":
        a = torch.ones(M, K, device=dev, dtype=torch.bfloat16)
        b = torch.ones(K, N, device=dev, dtype=torch.bfloat16)
    elif kind == "zeros":
        a = torch.zeros(M, K, device=dev, dtype=torch.bfloat16)
        b = torch.zeros(K, N, device=dev, dtype=torch.bfloat16)
    elif kind == "small":
        a = torch.randint(0, 2, (M, K), device=dev, generator=g).to(torch.bfloat16)
        b = torch.randint(0, 2, (K, N), device=dev, generator=g).to(torch.bfloat16)
    elif kind == "sparse1":
        a = (torch.rand(M, K, device=dev, generator=g) < 0.05).to(torch.bfloat16)
        b = torch.randn(K, N, device=dev, dtype=torch.bfloat16, generator=g)
    return a, b, torch.empty(M, N, device=dev, dtype=torch.bfloat16)


power = []


def poll(stop):
    while not stop.is_set():
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=clocks.sm,power.draw", "--format=csv,noheader,nounits"],
            capture_output=True,
            text=True,
        ).stdout.strip()
        power.append(out)
        time.sleep(0.05)


host = torch.empty(16 << 20, dtype=torch.uint8).pin_memory()
dbuf = torch.empty(16 << 20, dtype=torch.uint8, device=dev)
for kind in ["random", "ones", "small", "sparse1", "zeros"]:
    a, b, c = mk(kind)
    for mode in ["sustained", "duty", "duty+copy"]:
        evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(60)]
        torch.cuda.synchronize()
        power.clear()
        stop = threading.Event()
        th = threading.Thread(target=poll, args=(stop,))
        th.start()
        with torch.cuda.stream(s):
            for e0, e1 in evs:
                if mode != "sustained":
                    torch.cuda._sleep(400000)
                if mode == "duty+copy":
                    dbuf.copy_(host, non_blocking=True)
                e0.record(s)
                torch.mm(a, b, out=c)
                e1.record(s)
        torch.cuda.synchronize()
        stop.set()
        th.join()
        d = [e0.elapsed_time(e1) * 1000 for e0, e1 in evs]
        print(
            f"{kind:8} {mode:10} first {d[0]:7.1f} med {st.median(d):7.1f} min {min(d):7.1f} max {max(d):7.1f} "
            f"last10 {st.median(d[-10:]):7.1f}  smi {power[len(power) // 2] if power else ''} | "
            f"{power[-1] if power else ''}",
            flush=True,
        )
# fp32 SIMT (no tf32)
torch.backends.cuda.matmul.allow_tf32 = False
a = torch.randn(4096, 4096, device=dev)
b = torch.randn(4096, 4096, device=dev)
c = torch.empty(4096, 4096, device=dev)
evs = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(30)]
with torch.cuda.stream(s):
    for e0, e1 in evs:
        e0.record(s)
        torch.mm(a, b, out=c)
        e1.record(s)
torch.cuda.synchronize()
d = [e0.elapsed_time(e1) * 1000 for e0, e1 in evs]
print("fp32 4096 sustained", st.median(d), min(d), max(d))
# host costs of pieces
a, b, c = mk("ones")
av = a[:4096]
cv = c[:4096]
for name, fn in [
    ("mm_out_view", lambda: torch.mm(av, b, out=cv)),
    ("mm_slice", lambda: torch.mm(a[:4096], b, out=c[:4096])),
    ("sleep", lambda: torch.cuda._sleep(10)),
    ("ctx_stream", None),
    ("set_stream", None),
]:
    torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(50):
        if name == "ctx_stream":
            with torch.cuda.stream(s):
                pass
        elif name == "set_stream":
            torch.cuda.set_stream(s)
        else:
            with torch.cuda.stream(s):
                fn()
    print("host us", name, (time.perf_counter() - t) / 50 * 1e6)
    torch.cuda.synchronize()
# graph of mm+sleep
g = torch.cuda.CUDAGraph()
torch.cuda.synchronize()
with torch.cuda.graph(g):
    torch.mm(av, b, out=cv)
    torch.cuda._sleep(1000)
torch.cuda.synchronize()
t = time.perf_counter()
with torch.cuda.stream(s):
    for _ in range(50):
        g.replay()
print("host us graph replay", (time.perf_counter() - t) / 50 * 1e6)
torch.cuda.synchronize()
