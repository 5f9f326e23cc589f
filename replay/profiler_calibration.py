"""Calibrate torch.profiler's host overhead on this machine (``harness calibrate --profiler``); needs torch.

**What is timed.** A standard eager program, plain PyTorch, of six *shapes* whose steps
hold different mixes of the profiler events a recording carries (aten ops, CUDA runtime
calls, ``record_function`` ranges, CUDA-graph launches and the kernels inside them), so
that the overhead of each kind is solvable by least squares (:mod:`harness.profiler_fit`):

==============  ====================================================================
shape           one step
==============  ====================================================================
``launch``      64 tiny in-place adds (one aten op and one kernel launch each)
``views``       8 tiny adds and 64 ``view`` calls (aten ops that launch nothing)
``composite``   32 small ``matmul`` (two aten ops, one cuBLAS launch each)
``ranges``      32 tiny adds, each inside its own ``record_function``
``graph16``     one replay of a captured graph of 16 tiny kernels
``graph96``     one replay of a captured graph of 96 tiny kernels
``block``       two layers of a small eager decoder block (RMS norm, fused QKV matmul,
                attention over a 32-token cache, output projection, SwiGLU MLP,
                residuals; batch 1, hidden 256): the mix of distinct, nested ops and
                launches a real eager program has
``graph_block`` the ``block`` step captured as one CUDA graph, replayed (GPU-timed)
==============  ====================================================================

The per-kind overheads are fitted on the first six (tight loops of one op each). The
``block`` shape is not fitted: it checks them on a program shaped like a real one. Its
measured added time over what the fitted overheads predict from its counted events is
the calibration's ``program_scale`` (median over rounds, with its spread), which
compensation applies to the aten-op, runtime-call and range overheads of an eager
recording. On the 2026-12-07 H100 corpus the tight-loop overheads explained only
0.7-0.9 of what the profiler added to a typical step of the eager decoders
(``tools/profiler_inflation.py``; in the CUDA-only recordings about 4.6 µs a runtime
call against 3.3-3.5 µs fitted on the tight loops). The corpus cannot say which kind
costs more (its programs' aten ops and calls come in proportion), so one factor.

``graph16`` and ``graph96`` are also replayed with CUDA events around each replay,
unprofiled and profiled, outside the counted windows: the GPU time the profiler adds
to a replay and to each kernel in it. Their tiny kernels (an add on 256 floats) grew
0.8-1.1 µs each under the profiler in calibrations C and D, while the H100 corpus's
decoder graphs ran only about 0.04-0.2 µs a kernel over their unprofiled replays
(``traces/recorded/corpus/README.md``): so an eighth shape, ``graph_block``, is the
``block`` shape's step captured as one CUDA graph (the distinct kernels of a real
decoder's graph), timed the same way, left out of both fits; its added GPU time per
kernel is the calibration's ``gpu_overhead.graph_kernel`` (what compensation takes
out of a recording's graph kernels with ``graph_gpu_overhead = "subtract"``); the
tight graphs' fit stays in the notes.

Every step ends with a device synchronize, so a step's host time is on its critical
path (the kernels are tiny: the program is host-bound, as eager decode loops are).

**How.** Each *round* is one fresh Python process and one profiler mode: it warms up,
measures a plain eager program's own host costs (``[host_costs.pytorch_eager]``) and
times every shape unprofiled (3 passes, median), all *before* any profiling in the
process (after the profiler has run once, a process stays slower), then times the same
shapes under the profiler in that mode, exports the trace and counts, per shape, the
profiler events one step holds (between two markers: the launches of one-cycle
``_sleep`` kernels, or ``record_function`` ranges on a CPU-only run). Rounds go mode by mode in turn
(A B C, A B C, ...; the order rotates each round), so the host's drift within a run
reaches every mode alike; each mode's figures are the median over rounds of the
per-round fits, and their spread half the interquartile range.

Each round also times, unprofiled and then under the profiler, the side-stream hand-off idiom
(:func:`handoff_us`): its unprofiled time less its two records and two waits is
``[host_costs.pytorch_eager] stream_handoff_us``, what the profiler adds to it
``[profiler.<mode>.overhead.stream_handoff]``.

Optionally ``--script`` times the user's own script the same way (a fresh process per
round: the script run once to warm up, once unprofiled, once profiled) and reports its
measured added time next to what the calibration predicts from its counted events.

Run as ``python -m replay.profiler_calibration --worker ...`` it is one round (what the
parent spawns); :func:`calibrate_profiler` is the parent.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from harness.profile import PROFILER_MODES, ProfilerCalibration
from harness.profiler_fit import ShapeTiming, program_scale_of, scale_figure, spread, summarize

DEFAULT_MODES = ("cpu_cuda", "cpu_cuda_sync", "cuda")
SHAPES = ("launch", "views", "composite", "ranges", "graph16", "graph96", "block", "graph_block")
CPU_SHAPES = ("launch", "views", "composite", "ranges", "block")  # a CPU-only run (tests): no graphs, no runtime calls
STEPS = {"launch": 20, "views": 20, "composite": 20, "ranges": 20, "graph16": 40, "graph96": 30, "block": 10,
         "graph_block": 20}  # fmt: skip
GPU_STEPS = 20  # graph replays timed on the GPU (CUDA events), unprofiled and profiled, per graph shape
HOLD_ELEMENTS = 32 << 20  # hold_gpu's buffer: 32 Mi floats (128 MiB), ~80 µs a pass on an H100
HOLD_PASSES = 24  # ~2 ms of GPU work ahead of a queued replay: longer than its profiled launch (0.1-0.3 ms)
CHECK_SHAPES = ("block",)  # timed and counted like the others, not fitted: they give the program scale
GPU_CHECK_SHAPES = ("graph_block",)  # a real program's graph: its replays' GPU time gives gpu_overhead.graph_kernel
BLOCK = {"layers": 2, "hidden": 256, "heads": 4, "ffn": 688, "context": 32}
PASSES = 3
REPO = Path(__file__).resolve().parents[1]
WORKER_TIMEOUT_S = 180


# --------------------------------------------------------------------------- the standard program (worker side)


class StandardProgram:
    """The shapes, built once on ``device`` (graphs captured before anything is timed)."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch, self.device = torch, device
        self.cuda = device.type == "cuda"
        self.y = torch.zeros(256, device=device)
        self.a = torch.randn(16, 16, device=device)
        self.b = torch.randn(16, 16, device=device)
        self.shapes = SHAPES if self.cuda else CPU_SHAPES
        self.block = _DecoderBlock(torch, device)
        self.graphs = {}
        self._hold = None  # the buffer hold_gpu() works on, made at first use
        self.side = torch.cuda.Stream(device) if self.cuda else None  # the side stream of the hand-off idiom
        if self.cuda:
            for name, kernels in (("graph16", 16), ("graph96", 96)):
                self.graphs[name] = self._capture(kernels)
            try:  # a real program's graph; a capture that fails leaves the shape out, never the round
                self.graphs["graph_block"] = self._capture_block()
            except RuntimeError as err:
                print(f"graph_block: capture failed, shape left out: {err}", file=sys.stderr)
                self.shapes = tuple(s for s in self.shapes if s != "graph_block")

    def _capture(self, kernels: int) -> Any:
        torch = self.torch
        z = torch.zeros(256, device=self.device)
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(kernels):
                z.add_(1.0)
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            for _ in range(kernels):
                z.add_(1.0)
        torch.cuda.synchronize(self.device)
        self._keep = getattr(self, "_keep", []) + [z]
        return graph

    def _capture_block(self) -> Any:
        """The ``block`` shape's step captured as one CUDA graph (warmed up on the capture stream first)."""
        torch = self.torch
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(3):
                self.block.step()
        torch.cuda.synchronize(self.device)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, stream=side):
            self.block.step()
        torch.cuda.synchronize(self.device)
        return graph

    def sync(self) -> None:
        if self.cuda:
            self.torch.cuda.synchronize(self.device)

    def step(self, shape: str) -> None:
        y, torch = self.y, self.torch
        if shape == "launch":
            for _ in range(64):
                y.add_(1.0)
        elif shape == "views":
            for _ in range(8):
                y.add_(1.0)
            for _ in range(64):
                y.view(-1)
        elif shape == "composite":
            for _ in range(32):
                torch.matmul(self.a, self.b)
        elif shape == "ranges":
            for _ in range(32):
                with torch.profiler.record_function("r"):
                    y.add_(1.0)
        elif shape == "block":
            self.block.step()
        else:
            self.graphs[shape].replay()
        self.sync()

    def marker(self, shape: str) -> None:
        """A boundary between shapes that every profiler mode records: a one-cycle ``_sleep`` kernel's launch
        (CUDA; CUPTI records every launch), inside a ``calib:`` range (CPU activities)."""
        with self.torch.profiler.record_function(f"calib:{shape}"):
            if self.cuda:
                self.torch.cuda._sleep(1)

    def time_us(self, shape: str, steps: int) -> float:
        """Host-clock time of one step of ``shape`` (µs), over ``steps`` steps, between two markers."""
        self.sync()
        self.marker(shape)
        start = time.perf_counter()
        for _ in range(steps):
            self.step(shape)
        elapsed = time.perf_counter() - start
        self.marker(shape)
        return elapsed * 1e6 / steps

    def graph_gpu_us(self, steps: int, queued: bool = False) -> dict[str, float]:
        """Per graph shape: the GPU time of one replay (µs; CUDA events around it, median over ``steps``). Taken
        outside the counted windows (no markers): the events' calls are not counted as the shapes' events.

        With the GPU idle (``queued`` False) the begin event runs at once and the replay's kernels reach the GPU
        only when ``cudaGraphLaunch`` has submitted them: under the profiler that call takes 0.7-1 µs a kernel
        (CUPTI; the 2026-12-07 H100 recordings' graph kernels start ~6 µs after the call *returns*), so the
        interval holds the profiled launch's host time too. ``queued``: the GPU is first held busy
        (:meth:`hold_gpu`, ~2 ms), so the begin event, the whole replay and the end event are all queued before
        the GPU reaches them: the interval is the replay's GPU time alone, as in a program whose graphs run
        back to back (``decode_graph``)."""
        torch, out = self.torch, {}
        for shape, graph in self.graphs.items():
            pairs = []
            for _ in range(steps):
                begin, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                if queued:
                    self.hold_gpu()
                begin.record()
                graph.replay()
                end.record()
                pairs.append((begin, end))
                self.sync()
            out[shape] = statistics.median(b.elapsed_time(e) * 1e3 for b, e in pairs)
        return out

    def hold_gpu(self) -> None:
        """Queue ~2 ms of GPU work (``HOLD_PASSES`` in-place passes over a 128 MiB buffer: plain elementwise
        kernels, not the ``_sleep`` spin kernels that mark the counted windows) so that what the host queues next
        waits for it."""
        if self._hold is None:
            self._hold = self.torch.zeros(HOLD_ELEMENTS, device=self.device)
        for _ in range(HOLD_PASSES):
            self._hold.mul_(1.0)

    def launch_host_us(self, steps: int) -> dict[str, float]:
        """Per graph shape: the host time of ``replay()`` alone (µs, median over ``steps``, the GPU idle at each
        call), unprofiled: the launch call's part of a graph step."""
        return {shape: _median_us(graph.replay, steps, self.sync) for shape, graph in self.graphs.items()}


class _DecoderBlock:
    """``BLOCK["layers"]`` layers of a small Llama-shaped decoder block, eager, one token (the ``block`` shape)."""

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch = torch
        d, f, heads, ctx = BLOCK["hidden"], BLOCK["ffn"], BLOCK["heads"], BLOCK["context"]
        gen = torch.Generator(device="cpu").manual_seed(0)

        def w(*shape: int) -> Any:
            return (torch.randn(*shape, generator=gen) / shape[0] ** 0.5).to(device)

        self.heads, self.hd = heads, d // heads
        self.layers = [
            {"n1": torch.ones(d, device=device), "qkv": w(d, 3 * d), "o": w(d, d), "n2": torch.ones(d, device=device),
             "up": w(d, 2 * f), "down": w(f, d), "k": w(1, heads, ctx, d // heads), "v": w(1, heads, ctx, d // heads)}
            for _ in range(BLOCK["layers"])
        ]  # fmt: skip
        self.x = w(1, d)
        self.new_kv = torch.zeros(BLOCK["layers"], 2, 1, d, device=device)

    def _norm(self, x: Any, weight: Any) -> Any:
        return x * self.torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

    def step(self) -> None:
        torch, x = self.torch, self.x
        for i, p in enumerate(self.layers):
            q, k, v = (self._norm(x, p["n1"]) @ p["qkv"]).split(x.shape[-1], dim=-1)
            self.new_kv[i, 0].copy_(k)
            self.new_kv[i, 1].copy_(v)
            scores = (q.view(1, self.heads, 1, self.hd) @ p["k"].transpose(-1, -2)) * self.hd**-0.5
            x = x + (torch.softmax(scores, dim=-1) @ p["v"]).reshape(1, -1) @ p["o"]
            gate, up = (self._norm(x, p["n2"]) @ p["up"]).chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ p["down"]


def _median_us(fn: Callable[[], Any], n: int, between: Callable[[], Any] | None = None) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append((time.perf_counter() - start) * 1e6)
        if between:
            between()
    return statistics.median(times)


def measure_eager_host_costs(program: StandardProgram) -> dict[str, float]:
    """A plain eager program's host time per call kind (µs), unprofiled: what ``[host_costs.pytorch_eager]`` holds."""
    torch, dev, y = program.torch, program.device, program.y
    out = {}

    def burst() -> None:
        for _ in range(200):
            y.add_(1.0)

    out["launch_us"] = _median_us(burst, 5, program.sync) / 200
    if not program.cuda:
        return out
    out["graph_launch_us"] = _median_us(program.graphs["graph16"].replay, 20, program.sync)
    pinned = torch.ones(64 << 10, dtype=torch.uint8).pin_memory()
    target = torch.empty(64 << 10, dtype=torch.uint8, device=dev)
    out["copy_launch_us"] = _median_us(lambda: target.copy_(pinned, non_blocking=True), 20, program.sync)
    stream = torch.cuda.current_stream(dev)
    event = torch.cuda.Event()
    out["record_us"] = _median_us(lambda: event.record(stream), 50)
    out["wait_us"] = _median_us(lambda: stream.wait_event(event), 50)
    out["stream_handoff_us"] = max(0.0, handoff_us(program) - 2 * out["record_us"] - 2 * out["wait_us"])
    program.sync()
    out["sync_wake_us"] = _median_us(program.sync, 20)  # a synchronize on an idle GPU: the call's own cost
    held = []
    out["alloc_us"] = _median_us(lambda: held.append(torch.empty(16 << 20, dtype=torch.uint8, device=dev)), 20)
    out["free_us"] = _median_us(lambda: held.pop(), 20)
    return out


def handoff_us(program: StandardProgram, n: int = 50) -> float:
    """Host µs of handing work to a side stream and back, as eager programs write it (median of ``n``, no work
    inside): an event behind the main stream, the side stream waiting for it inside ``torch.cuda.stream(side)``,
    an event behind the side stream, the main stream waiting for that (the idiom async_d2h models)."""
    torch = program.torch
    main, side = torch.cuda.current_stream(program.device), program.side

    def once() -> None:
        done = torch.cuda.Event()
        done.record(main)
        with torch.cuda.stream(side):
            side.wait_event(done)
            copied = torch.cuda.Event()
            copied.record(side)
        main.wait_event(copied)

    return _median_us(once, n)


def _activities(torch: Any, mode: str, cuda: bool) -> list:
    activity = torch.profiler.ProfilerActivity
    if not cuda:
        return [activity.CPU]  # a CPU-only run (tests): every mode records CPU ops only
    return [activity.CPU, activity.CUDA] if mode.startswith("cpu") else [activity.CUDA]


def _profile(torch: Any, mode: str, cuda: bool) -> Any:
    config = None
    if mode.endswith("_sync"):
        config = torch._C._profiler._ExperimentalConfig(enable_cuda_sync_events=True)
    return torch.profiler.profile(activities=_activities(torch, mode, cuda), experimental_config=config)


def count_events(
    trace_path: Path, shapes: list[str], steps: dict[str, int], passes: int
) -> dict[str, dict[str, float]]:
    """Per shape: the profiler events one step holds (median over passes), from the exported trace.

    Windows run between consecutive markers: the launches of the marker ``_sleep`` kernels
    (``spin_kernel``) when the trace has them, else the ``calib:`` record_function ranges. The
    trace's shapes come in ``passes`` passes over ``shapes``, two markers around each.
    """
    from harness.kineto_events import load_kineto_events
    from harness.profiler_import import call_kind

    ev = load_kineto_events(trace_path)
    calls = ev.calls.sort_values("ts")
    expected = 2 * len(shapes) * passes
    spins = ev.gpu[ev.gpu["name"].astype(str).str.contains("spin_kernel|sleep", case=False)]["correlation"]
    marks = calls[calls["correlation"].isin(spins.dropna())]
    ann = ev.annotations[ev.annotations["name"].astype(str).str.startswith("calib:")].sort_values("ts")
    candidates = [list(zip(f["ts"], f["ts"] + f["dur"])) for f in (marks, ann)]
    bounds = next((b for b in candidates if len(b) == expected), None)
    if bounds is None:
        found = f"{len(marks)} marker kernel launches and {len(ann)} calib: ranges"
        raise RuntimeError(f"{trace_path}: found {found}; expected {expected} shape markers of one kind")
    annotations = ev.annotations[~ev.annotations["name"].astype(str).str.startswith(("calib:", "ProfilerStep#"))]
    graph_calls = calls[calls["name"].map(call_kind) == "call_graph_launch"]
    per_pass: dict[str, list[dict[str, float]]] = {s: [] for s in shapes}
    for i in range(len(bounds) // 2):
        shape = shapes[i % len(shapes)]
        lo, hi = bounds[2 * i][1], bounds[2 * i + 1][0]

        def inside(frame: Any, lo: float = lo, hi: float = hi) -> Any:
            return frame[(frame["ts"] > lo) & (frame["ts"] < hi)]

        launches = inside(graph_calls)
        kernels = ev.gpu[ev.gpu["correlation"].isin(launches["correlation"].dropna())]
        n = steps[shape]
        per_pass[shape].append(
            {
                "aten_op": len(inside(ev.cpu_ops)) / n,
                "runtime_call": len(inside(calls)) / n,
                "range": len(inside(annotations)) / n,
                "graph_launch": len(launches) / n,
                "graph_kernel": len(kernels) / n,
                LAUNCH_CALL_KEY: float(launches["dur"].median()) if len(launches) else 0.0,
                KERNEL_CALL_KEY: float(kernel_calls["dur"].median()) if len(kernel_calls := inside(
                    calls[calls["name"] == "cudaLaunchKernel"])) else 0.0,  # fmt: skip
            }
        )
    return {s: {k: statistics.median(p[k] for p in rows) for k in rows[0]} for s, rows in per_pass.items()}


LAUNCH_CALL_KEY = "graph_launch_call_us"  # count_events' median recorded cudaGraphLaunch duration (not a count)
# ... and median recorded cudaLaunchKernel duration: a host-speed reference a recording has too (its launches' own
# durations track its simple calls at 0.33-0.36 of them across the 2026-12-07 H100 corpus, the slow phase included)
KERNEL_CALL_KEY = "kernel_launch_call_us"


def run_round(mode: str, device_name: str, workdir: Path) -> dict:
    """One round in this (fresh) process: host costs and unprofiled times first, then profiled times and counts."""
    import torch

    device = torch.device(device_name)
    program = StandardProgram(torch, device)
    for shape in program.shapes:  # warm-up: caches, cuBLAS handles, graph upload
        program.time_us(shape, 3)
    host = measure_eager_host_costs(program)
    unprofiled: dict[str, list[float]] = {s: [] for s in program.shapes}
    for _ in range(PASSES):
        for shape in program.shapes:
            unprofiled[shape].append(program.time_us(shape, STEPS[shape]))
    gpu_unprofiled = program.graph_gpu_us(GPU_STEPS)
    queued_unprofiled = program.graph_gpu_us(GPU_STEPS, queued=True)
    launch_unprofiled = program.launch_host_us(GPU_STEPS)
    profiled: dict[str, list[float]] = {s: [] for s in program.shapes}
    handoff_profiled = None
    with _profile(torch, mode, program.cuda) as prof:
        for _ in range(PASSES):
            for shape in program.shapes:
                profiled[shape].append(program.time_us(shape, STEPS[shape]))
        gpu_profiled = program.graph_gpu_us(GPU_STEPS)
        queued_profiled = program.graph_gpu_us(GPU_STEPS, queued=True)
        if program.cuda:  # after the shapes' last marker: outside every counted window
            handoff_profiled = max(0.0, handoff_us(program) - 2 * host["record_us"] - 2 * host["wait_us"])
    trace = workdir / f"round-{mode}-{os.getpid()}.json"
    prof.export_chrome_trace(str(trace))
    counts = count_events(trace, list(program.shapes), STEPS, PASSES)
    trace.unlink()
    return {
        "mode": mode,
        "device": torch.cuda.get_device_name(device) if program.cuda else "cpu",
        "torch": torch.__version__,
        "host_costs_us": host,
        "stream_handoff_profiled_us": handoff_profiled,  # the hand-off under the profiler (None on a CPU)
        "shapes": [
            {
                "shape": s,
                "unprofiled_us": statistics.median(unprofiled[s]),
                "profiled_us": statistics.median(profiled[s]),
                "counts": {k: v for k, v in counts[s].items() if k not in (LAUNCH_CALL_KEY, KERNEL_CALL_KEY)},
                "kernel_launch_call_profiled_us": counts[s].get(KERNEL_CALL_KEY),
                **({"gpu_unprofiled_us": gpu_unprofiled[s], "gpu_profiled_us": gpu_profiled[s],
                    "gpu_queued_unprofiled_us": queued_unprofiled[s], "gpu_queued_profiled_us": queued_profiled[s],
                    "launch_unprofiled_us": launch_unprofiled[s],
                    "launch_profiled_us": counts[s].get(LAUNCH_CALL_KEY)}
                   if s in gpu_unprofiled else {}),
            }
            for s in program.shapes
        ],
    }


def run_script_round(mode: str, script: Path, workdir: Path) -> dict:
    """The user's script in this (fresh) process: once to warm up, once unprofiled, once profiled (host clock)."""
    import runpy

    import torch

    cuda = torch.cuda.is_available()

    def once() -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        runpy.run_path(str(script), run_name="__main__")
        if cuda:
            torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e6

    once()
    unprofiled = once()
    with _profile(torch, mode, cuda) as prof:
        profiled = once()
    trace = workdir / f"script-{mode}-{os.getpid()}.json"
    prof.export_chrome_trace(str(trace))
    from harness.kineto_events import load_kineto_events
    from harness.profiler_import import call_kind

    ev = load_kineto_events(trace)
    graph_calls = ev.calls[ev.calls["name"].map(call_kind) == "call_graph_launch"]
    annotations = ev.annotations[~ev.annotations["name"].astype(str).str.startswith("ProfilerStep#")]
    counts = {
        "aten_op": len(ev.cpu_ops),
        "runtime_call": len(ev.calls),
        "range": len(annotations),
        "graph_launch": len(graph_calls),
        "graph_kernel": int(ev.gpu["correlation"].isin(graph_calls["correlation"].dropna()).sum()),
    }
    trace.unlink()
    return {"mode": mode, "script": str(script), "unprofiled_us": unprofiled, "profiled_us": profiled, "counts": counts}


# --------------------------------------------------------------------------- the parent


def _spawn(args: list[str], workdir: Path, log: Callable[[str], None]) -> dict:
    out = workdir / f"result-{time.monotonic_ns()}.json"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    cmd = [sys.executable, "-m", "replay.profiler_calibration", "--worker", *args, "--out", str(out)]
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=WORKER_TIMEOUT_S)
    if done.returncode != 0 or not out.exists():
        tail = (done.stderr or done.stdout).strip().splitlines()[-8:]
        raise RuntimeError(f"calibration round {' '.join(args)} failed (exit {done.returncode}): " + " | ".join(tail))
    result = json.loads(out.read_text())
    out.unlink()
    return result


def calibrate_profiler(
    modes: tuple[str, ...] = DEFAULT_MODES,
    rounds: int = 9,
    device: str = "cuda",
    script: Path | None = None,
    log: Callable[[str], None] = print,
    budget_s: float | None = None,
    raw_path: Path | None = None,
    estimator: str = "nnls",
) -> dict:
    """Rounds of fresh processes, modes interleaved; returns the calibrations, host costs and every round's figures.

    ``{"calibrations": {mode: ProfilerCalibration}, "host_costs_us": {...}, "device": str, "torch": str,
    "rounds": [...], "script": [...], "failures": [...]}``. A round that fails is logged and left out
    (a mode none of whose rounds succeeded is not calibrated; none at all raises RuntimeError); no round
    starts once ``budget_s`` seconds have passed; ``raw_path`` gets every round's figures after each round.
    """
    unknown = [m for m in modes if m not in PROFILER_MODES]
    if unknown:
        raise ValueError(f"unknown profiler mode(s) {unknown}; expected some of {list(PROFILER_MODES)}")
    if rounds < 1:
        raise ValueError("rounds must be >= 1")
    results: dict[str, list[dict]] = {m: [] for m in modes}
    scripts: list[dict] = []
    failures: list[str] = []
    begun = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="profiler-calibration-") as tmp:
        workdir = Path(tmp)
        for r in range(rounds):
            elapsed = time.monotonic() - begun
            if r > 0 and budget_s is not None and elapsed + elapsed / r > budget_s:  # the next round would overrun
                log(f"time budget of {budget_s:.0f} s: stopping after {r} rounds ({elapsed:.0f} s, {elapsed / r:.0f} s a round)")
                break
            order = modes[r % len(modes) :] + modes[: r % len(modes)]
            for mode in order:
                try:
                    result = _spawn(["--mode", mode, "--device", device], workdir, log)
                    if script is not None:
                        scripts.append(_spawn(["--mode", mode, "--script", str(script)], workdir, log))
                except (RuntimeError, subprocess.TimeoutExpired, json.JSONDecodeError) as err:
                    failures.append(f"round {r + 1} {mode}: {err}")
                    log(f"round {r + 1}/{rounds} {mode}: FAILED, left out: {err}")
                    continue
                results[mode].append(result)
                launch = next(s for s in result["shapes"] if s["shape"] == "launch")
                log(
                    f"round {r + 1}/{rounds} {mode}: launch shape {launch['unprofiled_us']:.0f} -> "
                    f"{launch['profiled_us']:.0f} µs/step ({time.monotonic() - begun:.0f} s)"
                )
                if raw_path is not None:
                    _write_json(raw_path, {"rounds": [x for m in modes for x in results[m]], "script": scripts,
                                           "failures": failures})  # fmt: skip
    return fit_rounds(results, scripts, failures, log, estimator)


def rounds_by_mode(raw: dict, source: str) -> dict[str, list[dict]]:
    """The rounds of a ``--raw`` JSON file (what ``calibrate_profiler`` writes after each round), by mode."""
    rounds = raw.get("rounds") if isinstance(raw, dict) else None
    if not isinstance(rounds, list) or not rounds:
        raise ValueError(f"{source}: no 'rounds' list: not a `harness calibrate --profiler --raw` file")
    results: dict[str, list[dict]] = {}
    for i, r in enumerate(rounds):
        missing = [k for k in ("mode", "device", "torch", "host_costs_us", "shapes") if k not in r]
        if missing:
            raise ValueError(f"{source}: round {i} has no {', '.join(missing)}")
        if r["mode"] not in PROFILER_MODES:
            raise ValueError(f"{source}: round {i}: unknown profiler mode {r['mode']!r}")
        if not any(s.get("shape") == "launch" for s in r["shapes"]):
            raise ValueError(f"{source}: round {i} ({r['mode']}) has no 'launch' shape")
        results.setdefault(r["mode"], []).append(r)
    return results


def fit_rounds(
    results: dict[str, list[dict]],
    scripts: list[dict],
    failures: list[str],
    log: Callable[[str], None] = print,
    estimator: str = "nnls",
) -> dict:
    """Fit the rounds' figures (per mode) into calibrations: what ``calibrate_profiler`` returns.

    Also refits a ``--raw`` file of rounds taken earlier (``harness calibrate --profiler --from-raw``), e.g.
    when a calibration was stopped before it could write its profile."""
    modes = tuple(m for m in results if results[m])
    if not modes:
        raise RuntimeError("every calibration round failed: " + " | ".join(failures[:3]))
    rounds = max(len(results[m]) for m in modes)
    first = results[modes[0]][0]
    date = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    method = (
        f"harness calibrate --profiler (replay/profiler_calibration.py): {rounds} rounds, one fresh process per "
        f"round and mode, modes interleaved; per round the standard eager program's shapes ({', '.join(SHAPES)}) "
        f"timed on the host clock ({PASSES} passes, median) unprofiled before any profiling in the process, then "
        "profiled; events per step counted from the profiled trace; per-kind overhead "
        + ("by non-negative least squares per round over all but the check shape(s) "
           if estimator.startswith("nnls") else
           "per round from the shapes that isolate each kind (estimator 'isolated': aten op and runtime call from "
           "launch and views, range from ranges, graph kinds from graph16 and graph96; composite not fitted), not "
           "from the check shape(s) ")  # fmt: skip
        + ("(eager kinds as the median of each round's share of its launch shape's profiled simple call, against "
           "the call floor: estimator '" + estimator + "') " if "_share" in estimator else "")  # fmt: skip
        + ("(gemm_launch: the composite shape's added time over its counted events, per GEMM launch) "
           if estimator.endswith("_gemm") else "")  # fmt: skip
        + f"{', '.join(CHECK_SHAPES)}, whose added time over the "
        "fit's prediction is the program scale (the user's --script's instead, when given), and the graph "
        f"shape(s) {', '.join(GPU_CHECK_SHAPES)}, whose replays' added GPU time (CUDA events) per kernel is "
        "gpu_overhead.graph_kernel; median and half-IQR over rounds; floors = unprofiled eager host time per call"
    )
    calibrations: dict[str, ProfilerCalibration] = {}
    host_rounds = [r["host_costs_us"] for m in modes for r in results[m]]
    host = {k: round(statistics.median(h[k] for h in host_rounds), 3) for k in host_rounds[0]}
    floors = {kind: [host[f]] for kind, f in _FLOOR_FIGURES.items() if f in host}
    for mode in modes:
        timings = [
            [
                ShapeTiming(s["shape"], s["unprofiled_us"], s["profiled_us"], s["counts"],
                            s.get("gpu_unprofiled_us"), s.get("gpu_profiled_us"),
                            s.get("gpu_queued_unprofiled_us"), s.get("gpu_queued_profiled_us"))  # fmt: skip
                for s in r["shapes"]
            ]
            for r in results[mode]
        ]
        calibration, summary = summarize(
            timings, floors, first["torch"], date, method, CHECK_SHAPES, GPU_CHECK_SHAPES, estimator
        )
        handoffs = [
            r["stream_handoff_profiled_us"] - r["host_costs_us"]["stream_handoff_us"]
            for r in results[mode]
            if r.get("stream_handoff_profiled_us") is not None and "stream_handoff_us" in r["host_costs_us"]
        ]
        if handoffs:  # what the profiler adds to a side-stream hand-off (the idiom timed whole)
            overhead = {**calibration.overhead, "stream_handoff": spread(handoffs)}
            calibration = calibration.model_copy(update={"overhead": overhead})
        calibrations[mode] = calibration
        figures = ", ".join(f"{k} {v.median_us:.2f} ± {v.spread_us:.2f}" for k, v in calibration.overhead.items())
        log(f"{mode}: µs per event: {figures}\n  " + summary.replace("\n", "\n  "))
    for entry in scripts:
        cal = calibrations[entry["mode"]]
        predicted = sum(n * cal.overhead_us(k) for k, n in entry["counts"].items())
        measured = entry["profiled_us"] - entry["unprofiled_us"]
        entry["predicted_added_us"] = predicted
        entry["program_scale"] = program_scale_of(
            ShapeTiming("script", entry["unprofiled_us"], entry["profiled_us"], entry["counts"]),
            {k: cal.overhead_us(k) for k in cal.overhead},
        )
        log(
            f"script {entry['mode']}: unprofiled {entry['unprofiled_us']:.0f} µs, profiled {entry['profiled_us']:.0f}"
            f" µs; added {measured:.0f} µs, predicted from its events {predicted:.0f} µs"
        )
    for mode in modes:  # the user's own program, where timed, sets the scale its recordings are compensated with
        values = [e["program_scale"] for e in scripts if e["mode"] == mode and e["program_scale"] is not None]
        if values:
            source = f"--script {Path(scripts[0]['script']).name}"
            calibrations[mode] = calibrations[mode].model_copy(update={"program_scale": scale_figure(values, source)})
            log(f"{mode}: program scale {calibrations[mode].program_scale.median:.2f} from {source}")
    return {
        "calibrations": calibrations,
        "host_costs_us": host,
        "device": first["device"],
        "torch": first["torch"],
        "rounds": [r for m in modes for r in results[m]],
        "script": scripts,
        "failures": failures,
    }


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=1))
    partial.replace(path)


_FLOOR_FIGURES = {
    "call_launch": "launch_us",
    "call_memset": "launch_us",
    "call_graph_launch": "graph_launch_us",
    "call_memcpy": "copy_launch_us",
    "call_record": "record_us",
    "call_wait": "wait_us",
}


def profile_with_calibration(base_raw: dict, result: dict, thread_wake_us: float) -> dict:
    """``base_raw`` (a profile's TOML as a dict) with ``[host_costs.pytorch_eager]`` and ``[profiler.<mode>]`` set."""
    raw = dict(base_raw)
    host = result["host_costs_us"]
    if "graph_launch_us" in host:  # a CUDA run measured every figure
        costs = dict(host)
        costs["thread_wake_us"] = thread_wake_us
        host_costs = dict(raw.get("host_costs", {}))
        host_costs["pytorch_eager"] = costs
        raw["host_costs"] = host_costs
    profiler = dict(raw.get("profiler", {}))
    for mode, calibration in result["calibrations"].items():
        profiler[mode] = calibration.model_dump(exclude_none=True, exclude_defaults=True)
    raw["profiler"] = profiler
    return raw


def _main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="One round of the profiler calibration (spawned by the parent).")
    parser.add_argument("--worker", action="store_true", required=True)
    parser.add_argument("--mode", required=True, choices=PROFILER_MODES)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--script", type=Path)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    workdir = args.out.parent
    if args.script:
        result = run_script_round(args.mode, args.script, workdir)
    else:
        result = run_round(args.mode, args.device, workdir)
    partial = args.out.with_name(args.out.name + ".partial")
    partial.write_text(json.dumps(result))
    partial.replace(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(_main())
