"""Measure a hardware profile on a CUDA GPU (``harness calibrate``); needs torch and a GPU.

What is measured, and how (every figure is a median of several repetitions):

* **host link**, per direction (H2D, D2H) and host-memory kind (pinned,
  pageable): the time of one copy at sizes from 64 KiB to 1 GiB (pageable to
  256 MiB), timed the way runs issue them, through the replay engine: from its
  pooled host buffers into freshly allocated device buffers, queued behind and
  beside its stand-in kernels, all sizes interleaved in rounds
  (:mod:`replay.copy_calibration`); each sample is the median over rounds, its
  spread half the interquartile range (``spread_us``). ``latency_us`` is the
  intercept of a line through the 1-16 MiB samples (:func:`replay.fit.link_latency_us`);
* **duplex factor**: a 256 MiB pinned H2D and a 256 MiB pinned D2H released
  together on two streams, against each alone (:func:`replay.fit.duplex_factor`);
* **link drift**: a 64 MiB pinned H2D probe at the start, middle and end of the
  calibration (``[link.drift]``);
* **device copies** (``d2d_latency_us``, ``d2d_gbps``): a line through the
  replay's device-copy samples of 64 MiB and more;
* **host costs**: through the replay engine itself, so they are what a replay
  run pays, inside a double-buffered streaming loop like a policy's (wait for
  the buffer's copy, launch a 300 µs kernel, alloc the next 16 MiB buffer, copy
  into it on a side stream, record, sync, free the previous): each command's cost is
  the median gap to the next command's issue, ``sync_wake_us`` the time from
  the stream's last op ending to ``sync_stream`` returning, ``thread_wake_us``
  the time from one host thread's ``put`` to another, blocked in ``get`` on
  that queue, running again (a Python thread's wake-up and GIL hand-over). The same commands
  repeated in tight loops cost less (hot caches); those figures go to the
  provenance notes, not the model;
* **hand-offs** (``kernel_after_copy_us``, ``kernel_after_event_us``): how much later than behind a kernel a
  kernel queued behind a copy on its stream, or behind another stream's event, ends
  (:mod:`replay.handoff_calibration`);
* **kernel tables**: the sized stand-ins' matmul, device-copy and ``_sleep``
  tables (:class:`replay.sized.KernelTables`) and, when the replay uses the
  timer-bounded stand-ins (:mod:`replay.timed`), their measured overheads,
  written to the optional ``[kernels]`` section.

The result is validated as a profile before it is written (atomically).
"""

from __future__ import annotations

import datetime as dt
import os
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import tomli_w

from harness.profile import HardwareProfile
from harness.runtime import Direction, GraphKernel, HostMemory, KernelKind, Runtime
from replay.copy_calibration import ROUNDS, LinkProber, describe_probe, drift_section, plan_for
from replay.copy_calibration import measure_link as measure_copies
from replay.fit import MiB, duplex_factor, fit_line, link_table
from replay.handoff_calibration import measure_handoffs
from replay.sized import SizedKernels
from replay.timing import median_gpu_time_us, timing_events

PINNED_SIZES = (64 << 10, 256 << 10, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB, 512 * MiB, 1024 * MiB)
PAGEABLE_SIZES = (64 << 10, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB)
DUPLEX_BYTES = 256 * MiB
BUSY_CYCLES = 400_000


def measure_link_isolated(torch: Any, device: Any, log: Callable[[str], None]) -> dict:
    """The host link as calibrations before the pooled method timed it: each size alone, from one pinned buffer
    into one device buffer behind a queued ``_sleep`` (``tools/calibrate_copies.py --method isolated``)."""
    stream = torch.cuda.Stream(device=device)
    events = timing_events(torch)
    biggest = max(PINNED_SIZES)
    dev = torch.empty(biggest, dtype=torch.uint8, device=device)
    host = {
        HostMemory.PINNED: torch.ones(biggest, dtype=torch.uint8).pin_memory(),
        HostMemory.PAGEABLE: torch.ones(max(PAGEABLE_SIZES), dtype=torch.uint8),
    }
    out: dict = {}
    for direction in (Direction.H2D, Direction.D2H):
        out[direction.value] = {}
        for memory, sizes in ((HostMemory.PINNED, PINNED_SIZES), (HostMemory.PAGEABLE, PAGEABLE_SIZES)):
            h = host[memory]
            samples = []
            for n in sizes:
                if direction is Direction.H2D:

                    def issue(n: int = n, h: Any = h) -> Any:
                        return dev[:n].copy_(h[:n], non_blocking=True)

                else:

                    def issue(n: int = n, h: Any = h) -> Any:
                        return h[:n].copy_(dev[:n], non_blocking=True)

                issue()
                torch.cuda.synchronize(device)
                reps = 5 if n >= 512 * MiB else 7
                busy = BUSY_CYCLES if memory is HostMemory.PINNED else 0  # pageable copies block the host anyway
                t = median_gpu_time_us(torch, stream, events, issue, reps, busy_cycles=busy)
                samples.append((n, t))
                log(f"  {direction.value} {memory.value:8} {n:>11} B  {t:10.1f} µs  {n / t / 1e3:6.2f} GB/s")
            out[direction.value][memory.value] = link_table(samples)
    # Both directions at once: two streams released by one event.
    solo = {d: next(t for s, t in out[d]["pinned"]["samples"] if s == DUPLEX_BYTES) for d in ("h2d", "d2h")}
    latency = statistics.fmean(out[d]["pinned"]["latency_us"] for d in ("h2d", "d2h"))
    s_h2d, s_d2h, gate_stream = (torch.cuda.Stream(device=device) for _ in range(3))
    dev2 = torch.empty(DUPLEX_BYTES, dtype=torch.uint8, device=device)
    both = []
    for _ in range(5):
        gate = torch.cuda.Event()
        with torch.cuda.stream(gate_stream):
            torch.cuda._sleep(BUSY_CYCLES)
            gate.record(gate_stream)
        evs = [torch.cuda.Event(enable_timing=True) for _ in range(4)]
        for s, (a, b), fn in (
            (
                s_h2d,
                evs[0:2],
                lambda: dev[:DUPLEX_BYTES].copy_(host[HostMemory.PINNED][:DUPLEX_BYTES], non_blocking=True),
            ),
            (
                s_d2h,
                evs[2:4],
                lambda: host[HostMemory.PINNED][DUPLEX_BYTES : 2 * DUPLEX_BYTES].copy_(dev2, non_blocking=True),
            ),
        ):
            with torch.cuda.stream(s):
                s.wait_event(gate)
                a.record(s)
                fn()
                b.record(s)
        torch.cuda.synchronize(device)
        both.append(statistics.fmean([evs[0].elapsed_time(evs[1]) * 1e3, evs[2].elapsed_time(evs[3]) * 1e3]))
    both_us = statistics.median(both)
    factor = duplex_factor(statistics.fmean(solo.values()), both_us, latency)
    log(
        f"  duplex: 256 MiB each way {both_us:.1f} µs "
        f"(alone {statistics.fmean(solo.values()):.1f} µs) -> factor {factor}"
    )
    return {"duplex_bandwidth_factor": factor, "h2d": out["h2d"], "d2h": out["d2h"], "_duplex_us": both_us}


# ------------------------------------------------------------------ host costs through the replay engine
N_CALLS = 40


def _cost_policy(rt: Runtime) -> Any:
    """Issues each timed command back to back; returns host-clock marks for alloc/free."""
    s = yield rt.create_stream(0, "cal")
    s2 = yield rt.create_stream(0, "cal2")
    buf = yield rt.alloc(0, 64 << 10, "cal-buffer")
    for _ in range(N_CALLS):
        yield rt.launch(s, "cal-kernel", 500.0, 1.0, KernelKind.COMPUTE)
    yield rt.sync_stream(s)
    for _ in range(N_CALLS):
        yield rt.copy(s, 64 << 10, Direction.H2D, HostMemory.PINNED, "cal-copy", buf)
    yield rt.sync_stream(s)
    events = []
    for _ in range(N_CALLS):
        events.append((yield rt.record(s)))
    for ev in events:
        yield rt.wait_event(s2, ev)
    yield rt.sync_stream(s2)
    marks = {"alloc": [], "free": [], "now": []}
    for _ in range(N_CALLS):
        a = yield rt.now()
        b = yield rt.now()
        marks["now"].append(b - a)
    for _ in range(N_CALLS):
        # As a streaming policy uses memory: allocate, fill on a stream, synchronise, free
        # (free then marks the block with that stream, and the next alloc checks it).
        t0 = yield rt.now()
        x = yield rt.alloc(0, 16 * MiB, "cal-alloc")
        t1 = yield rt.now()
        yield rt.copy(s, 64 << 10, Direction.H2D, HostMemory.PINNED, "cal-fill", x)
        yield rt.sync_stream(s)
        t2 = yield rt.now()
        yield rt.free(x)
        t3 = yield rt.now()
        marks["alloc"].append(t1 - t0)
        marks["free"].append(t3 - t2)
    for _ in range(N_CALLS):
        yield rt.launch(s, "cal-wake", 300.0, 1.0, KernelKind.LATENCY)
        yield rt.sync_stream(s)
    yield rt.free(buf)
    return marks


N_LOOP = 40


def _loop_policy(rt: Runtime) -> Any:
    """A double-buffered streaming loop, as policies issue commands: each command's host time is read
    from the next command's issue (``now`` marks around alloc and free, which leave no op row)."""
    s = yield rt.create_stream(0, "loop")
    side = yield rt.create_stream(0, "loop-side")
    marks: dict[str, list[float]] = {"now": [], "launch_end": [], "alloc": [], "free": []}
    for _ in range(N_LOOP):
        a = yield rt.now()
        b = yield rt.now()
        marks["now"].append(b - a)
    buf = yield rt.alloc(0, 16 * MiB, "loop-buffer")
    yield rt.copy(side, 16 * MiB, Direction.H2D, HostMemory.PINNED, "loop-first", buf)
    ready = yield rt.record(side)
    for _ in range(N_LOOP):
        yield rt.wait_event(s, ready)
        yield rt.launch(s, "loop-kernel", 300.0, 1.0, KernelKind.COMPUTE)
        t0 = yield rt.now()
        nxt = yield rt.alloc(0, 16 * MiB, "loop-buffer")
        t1 = yield rt.now()
        yield rt.copy(side, 16 * MiB, Direction.H2D, HostMemory.PINNED, "loop-copy", nxt)
        ready_next = yield rt.record(side)
        yield rt.sync_stream(s)
        t2 = yield rt.now()
        yield rt.free(buf)
        t3 = yield rt.now()
        marks["launch_end"].append(t0)
        marks["alloc"].append(t1 - t0)
        marks["free"].append(t3 - t2)
        buf, ready = nxt, ready_next
    yield rt.sync_stream(side)
    yield rt.free(buf)
    return marks


N_HANDOFF = 40


def _handoff_worker(rt: Runtime, q: Any) -> Any:
    lags = []
    while (sent := (yield rt.get(q))) is not None:
        lags.append((yield rt.now()) - sent)
    return lags


def _handoff_policy(rt: Runtime) -> Any:
    """A worker thread blocked on an empty queue; the main thread puts its clock reading, then
    idles as a producer would. Each lag is a put-to-woken-get hand-off: ``thread_wake_us``."""
    q = yield rt.make_queue(1, "cal-handoff")
    worker = yield rt.spawn(_handoff_worker, q, name="cal-worker")
    for _ in range(N_HANDOFF):
        yield rt.host_work(500.0, "cal-idle")  # long enough for the worker to block in get again
        yield rt.put(q, (yield rt.now()))
    yield rt.put(q, None)
    return (yield rt.join(worker))


def handoff_wake_us(backend: Any, now_us: float) -> float:
    """``thread_wake_us`` on ``backend``: the median put-to-get lag less the cost of reading the clock."""
    return statistics.median(backend.run(_handoff_policy).result) - now_us


def _loop_costs(ops: Any, marks: dict) -> dict:
    """Per-command host time inside the streaming loop: the gap to the next command's issue."""
    ops = ops.sort_values("op_id")
    waits = ops[ops["kind"] == "wait"]["issue_us"].to_numpy()
    kernels = ops[ops["kind"] == "kernel"]
    copies = ops[(ops["kind"] == "copy_h2d") & (ops["name"] == "loop-copy")]["issue_us"].to_numpy()
    records = ops[ops["kind"] == "record"]["issue_us"].to_numpy()[1:]  # the first belongs to the first copy
    syncs = ops[(ops["kind"] == "host_sync") & (ops["name"] == "sync:loop")]
    n = min(len(waits), len(kernels), len(copies), len(records), len(syncs), len(marks["launch_end"]))
    k_issue, k_end = kernels["issue_us"].to_numpy()[:n], kernels["end_us"].to_numpy()[:n]
    sync_start, sync_end = syncs["start_us"].to_numpy()[:n], syncs["end_us"].to_numpy()[:n]
    now_us = statistics.median(marks["now"])
    med = lambda values: float(statistics.median(values))  # noqa: E731
    return {
        "launch_us": med(marks["launch_end"][:n] - k_issue),
        "copy_launch_us": med(records[:n] - copies[:n]),
        "record_us": med(sync_start - records[:n]),
        "wait_us": med(k_issue - waits[:n]),
        "sync_wake_us": med(sync_end - k_end),
        "alloc_us": max(0.0, med(marks["alloc"]) - now_us),
        "free_us": max(0.0, med(marks["free"]) - now_us),
    }


def _gaps(ops: Any, kind: str, name: str | None = None) -> float:
    rows = ops[(ops["kind"] == kind) & ((ops["name"] == name) if name else True)].sort_values("op_id")
    gaps = rows["issue_us"].diff().dropna()
    return float(gaps.median())


def measure_host_costs(context: Any, profile: Any, log: Callable[[str], None]) -> dict:

    from harness.backend import ops_frame, run_policy
    from replay.engine import ReplayBackend

    backend = ReplayBackend(context, profile, warmup_runs=2)
    run = run_policy(backend, _cost_policy)
    ops = run.ops
    marks = run.result
    now_us = statistics.median(marks["now"])
    wake = []
    kernels = ops[(ops["kind"] == "kernel") & (ops["name"] == "cal-wake")].sort_values("op_id")
    syncs = ops[(ops["kind"] == "host_sync") & (ops["name"] == "sync:cal")].sort_values("start_us")
    for _, k in kernels.iterrows():
        after = syncs[syncs["start_us"] >= k["issue_us"]]
        if len(after):
            wake.append(float(after.iloc[0]["end_us"] - k["end_us"]))
    costs = {
        "launch_us": _gaps(ops, "kernel", "cal-kernel"),
        "copy_launch_us": _gaps(ops, "copy_h2d", "cal-copy"),
        "record_us": _gaps(ops, "record"),
        "wait_us": _gaps(ops, "wait"),
        "sync_wake_us": statistics.median(wake),
        "alloc_us": max(0.0, statistics.median(marks["alloc"]) - now_us),
        "free_us": max(0.0, statistics.median(marks["free"]) - now_us),
    }
    tight = {k: round(max(v, 0.0), 2) for k, v in costs.items()}
    log("  tight loops, one command repeated (µs): " + ", ".join(f"{k}={v}" for k, v in tight.items()))
    loop_run = backend.run(_loop_policy)
    loop = _loop_costs(ops_frame(loop_run.ops), loop_run.result)
    loop["thread_wake_us"] = handoff_wake_us(backend, statistics.median(loop_run.result["now"]))
    loop = {k: round(max(v, 0.0), 2) for k, v in loop.items()}
    log(
        "  streaming loop, as policies issue them (µs; written to the profile): "
        + ", ".join(f"{k}={v}" for k, v in loop.items())
    )
    return {"profile": loop, "tight": tight}


# ------------------------------------------------------------------ CUDA graphs
N_GRAPH, GRAPH_KERNELS, GRAPH_KERNEL_US = 20, 32, 5.0


def _graph_policy(rt: Runtime) -> Any:
    """Launch a graph of ``GRAPH_KERNELS`` short kernels ``N_GRAPH`` times; returns each launch's host time."""
    s = yield rt.create_stream(0, "graph")
    kernels = tuple(
        GraphKernel(f"graph-kernel{i}", GRAPH_KERNEL_US, 1.0, KernelKind.LATENCY) for i in range(GRAPH_KERNELS)
    )
    launch_us, now_us = [], []
    for _ in range(N_GRAPH):
        t0 = yield rt.now()
        t1 = yield rt.now()
        yield rt.launch_graph(s, "calibration-graph", kernels)
        t2 = yield rt.now()
        yield rt.sync_stream(s)
        now_us.append(t1 - t0)
        launch_us.append(t2 - t1)
    return {"launch": launch_us, "now": now_us}


def graph_costs(ops: Any, marks: dict) -> dict:
    """``graph_launch_us`` (host time of a launch) and ``graph_kernel_gap_us`` (device time between its kernels).

    The replay records a graph as one op, the simulator as one per kernel: either way each
    launch's kernels are a run of ``len(kernel ops) / N_GRAPH`` consecutive kernel ops.
    """
    kernels = ops[ops["kind"] == "kernel"].sort_values("op_id")
    per = len(kernels) // N_GRAPH
    start = kernels["start_us"].to_numpy().reshape(N_GRAPH, per)[:, 0]
    end = kernels["end_us"].to_numpy().reshape(N_GRAPH, per)[:, -1]
    span = float(statistics.median(end - start))
    now_us = statistics.median(marks["now"])
    return {
        "graph_launch_us": round(max(0.0, statistics.median(marks["launch"]) - now_us), 2),
        "graph_kernel_gap_us": round(max(0.0, (span - GRAPH_KERNELS * GRAPH_KERNEL_US) / (GRAPH_KERNELS - 1)), 3),
    }


def measure_graph_costs(context: Any, profile: Any, log: Callable[[str], None]) -> dict:
    """``graph_launch_us`` through the replay engine; ``graph_kernel_gap_us`` from the profiler's kernel timestamps.

    CUDA events cannot time inside a graph, and the stand-in kernels are tuned back to back, so
    their durations already hold the device's gap between kernels: the replay's graph span gives
    the launch cost but not the gap. The gap the simulator adds is the one a profiler recording
    shows between a graph's kernels (what ``as_recorded`` replays), so it is read the same way.
    """
    from harness.backend import run_policy
    from replay.engine import ReplayBackend

    run = run_policy(ReplayBackend(context, profile, warmup_runs=2), _graph_policy)
    costs = graph_costs(run.ops, run.result)
    costs["graph_kernel_gap_us"] = profiled_graph_kernel_gap_us(context.torch, context.devices[0].device)
    log(
        f"  graph of {GRAPH_KERNELS} x {GRAPH_KERNEL_US:g} µs kernels: launch {costs['graph_launch_us']} µs host; "
        f"{costs['graph_kernel_gap_us']} µs between a graph's kernels on the device (profiler)"
    )
    return costs


def profiled_graph_kernel_gap_us(torch: Any, device: Any, kernels: int = 64, replays: int = 10) -> float:
    """Median device time from one kernel's end to the next one's start inside a captured graph, as
    torch.profiler records it (through ``harness.profiler_import``, as a user's recording is read)."""
    import tempfile

    from torch.profiler import ProfilerActivity, profile

    from harness.profiler_import import import_profiler_trace

    x = torch.zeros(1 << 16, device=device)
    capture = torch.cuda.Stream(device)
    capture.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(capture):
        x.add_(1.0)
    torch.cuda.synchronize(device)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph, stream=capture):
        for _ in range(kernels):
            x.add_(1.0)
    graph.replay()
    torch.cuda.synchronize(device)
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        for _ in range(replays):
            graph.replay()
        torch.cuda.synchronize(device)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "graph.json"
        prof.export_chrome_trace(str(path))
        ops = import_profiler_trace(path).ops
    gaps = []
    for _, launch in ops[ops["kind"] == "kernel"].groupby("correlation"):
        launch = launch.sort_values("start_us")
        gaps += list(launch["start_us"].to_numpy()[1:] - (launch["start_us"] + launch["duration_us"]).to_numpy()[:-1])
    return round(float(statistics.median(gaps)), 3) if gaps else 0.0


# ------------------------------------------------------------------ the profile
def calibrate(name: str, base_profile: Any, notes: str = "", log: Callable[[str], None] = print) -> dict:
    """Measure everything on GPU 0; return the profile as a dict (validated)."""
    from replay.engine import ReplayBackend, ReplayContext
    from replay.gpu import driver_version

    context = ReplayContext(1)
    torch = context.torch
    device = context.devices[0]
    log(f"calibrating {device.name} (torch {torch.__version__})")
    log(f"kernel stand-ins: {device.kernels.stand_in}")
    log("host link, copies issued as runs issue them (pooled buffers, between kernels, sizes in rounds):")
    copy_backend = ReplayBackend(context, base_profile)
    prober = LinkProber(copy_backend, time.monotonic)
    log(describe_probe(prober.probe("start")))
    link, duplex_us = measure_copies(copy_backend, plan_for(base_profile), log)
    log(describe_probe(prober.probe("middle")))
    log("host costs through the replay engine:")
    measured_costs = measure_host_costs(context, base_profile, log)
    host = measured_costs["profile"]
    log("hand-offs to a kernel released by a copy or an event:")
    handoffs = measure_handoffs(ReplayBackend(context, base_profile, warmup_runs=2), log)
    log("CUDA graphs through the replay engine:")
    graph = measure_graph_costs(context, base_profile, log)
    host["graph_launch_us"] = graph["graph_launch_us"]
    tight_note = ", ".join(f"{k}={v}" for k, v in measured_costs["tight"].items())
    log("sized stand-ins (matmul, device copy, _sleep) for the [kernels] section:")
    sized = SizedKernels(torch, device.device)
    kernels = sized.as_profile_section()
    kernels["stand_in"] = device.kernels.stand_in
    if device.kernels.stand_in == "timed":
        kernels.update(device.kernels.as_profile_section())
    log(f"  matmul rows->µs: {kernels['matmul_samples']}")
    d2d = [(b, t) for b, t in zip(sized.tables.d2d_bytes, sized.tables.d2d_us) if b >= 64 * MiB]
    d2d_latency, d2d_slope = fit_line([b for b, _ in d2d], [t for _, t in d2d])
    del sized
    log(describe_probe(prober.probe("end")))
    link["drift"] = drift_section(prober.probes)
    log(f"  link drift over the calibration: {link['drift']['spread_frac']:.2%} (slowest - fastest probe)")
    now = dt.datetime.now(dt.UTC)
    raw = {
        "format_version": 1,
        "name": name,
        "description": f"{device.name}, measured by `harness calibrate` with torch {torch.__version__}",
        "provenance": {
            "source": "measured by `harness calibrate` (replay/calibrate.py)",
            "gpu": device.name,
            "date": now.isoformat(timespec="seconds"),
            "driver": driver_version(),
            "torch": torch.__version__,
            "method": (
                "copies through the replay engine as runs issue them: pooled host buffer, a fresh device buffer "
                "per copy; pinned ones queued behind a kernel on the compute stream or beside one on a side stream, "
                "pageable ones on an idle stream (alone or beside a kernel); "
                f"all sizes interleaved in {ROUNDS} rounds; each sample the median over rounds (spread_us: half "
                "the IQR); latency = intercept of the 1-16 MiB samples; "
                f"duplex from 256 MiB each way together ({duplex_us:.1f} µs); link drift = a 64 MiB pinned H2D "
                "probe at the start, middle and end ([link.drift]); "
                "host costs = median per-call host time of the replay engine's own commands inside a "
                "double-buffered streaming loop (wait, launch 300 µs, alloc, side-stream copy 16 MiB, record, sync, "
                "free), each the gap to the next command's issue; sync_wake_us = stream end to sync_stream return; "
                "thread_wake_us = put to a blocked get's return on another host thread; "
                "d2d from the device-copy table (>= 64 MiB); graph_launch_us = host time of "
                f"launch_graph of {GRAPH_KERNELS} kernels of {GRAPH_KERNEL_US:g} µs, "
                "graph_kernel_gap_us = (its span - their sum) / (kernels - 1); kernel_after_copy_us / "
                "kernel_after_event_us = a 100 µs kernel's end after a 1 MiB copy on its stream / after another "
                "stream's event recorded behind that copy, less its end after a kernel (medians over rounds)"
            ),
            "notes": (notes + " " if notes else "")
            + f"The same commands repeated in tight loops cost (µs): {tight_note}.",
        },
        "device": {
            "gpu_name": device.name,
            "memory_bytes": int(device.total_bytes),
            "d2d_latency_us": round(max(d2d_latency, 0.0), 2),
            "d2d_gbps": round(1.0 / d2d_slope / 1e3, 1),
            "graph_kernel_gap_us": graph["graph_kernel_gap_us"],
            **handoffs,
        },
        "host": host,
        "link": link,
        "kernels": kernels,
    }
    HardwareProfile.model_validate(raw)
    return raw


def write_profile(raw: dict, path: Path, header: str = "") -> Path:
    """Write a profile TOML atomically (a temporary sibling renamed into place)."""
    HardwareProfile.model_validate(raw)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = header + tomli_w.dumps(raw)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    tmp.write_text(text)
    os.replace(tmp, path)
    return path
