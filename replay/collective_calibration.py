"""``harness calibrate --collectives``: NCCL collectives measured by size and GPU count, as nccl-tests does.

For each GPU count (2 .. the machine's, by default 2, 4 and 8 where there are
that many) one process per GPU is spawned; they join one ``torch.distributed``
NCCL group and time each operation at each size (1 KiB .. 1 GiB): a barrier,
``warmup`` untimed calls, then ``iters`` calls between two CUDA events on the
rank's current stream; a rank's time is the mean per call, and the figure
reported is the mean over ranks (nccl-tests' default). Sizes are nccl-tests'
(``float32`` elements): the all-reduce and broadcast buffer, the all-gather
output, the reduce-scatter input; ``send_recv`` (ranks 0 -> 1 only) runs at 2 GPUs.

The result is a profile's ``[[collectives]]`` curves (what ``sim.collectives``
reads first) and a ``[topology]`` whose ring figures are fitted to the
all-reduce curves (:func:`fit_ring_topology`), so GPU counts that were not
measured get the closed form through the measured ones. torch is imported only
inside the functions that need it; the fit runs without it.
"""

from __future__ import annotations

import json
import os
import socket
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from replay.gpu import CudaUnavailable, require_cuda

KiB, GiB = 1 << 10, 1 << 30
DEFAULT_SIZES = tuple(KiB << (2 * i) for i in range(11))  # 1 KiB, 4 KiB, ... 1 GiB
DEFAULT_OPS = ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv")
ELEMENT_BYTES = 4  # float32, as nccl-tests' default


class NotEnoughGpus(CudaUnavailable):
    """Collectives need at least two GPUs."""


def gpu_counts_to_measure(available: int, asked: tuple[int, ...] | None = None) -> tuple[int, ...]:
    """The GPU counts a calibration runs: ``asked`` (each checked), or 2, 4, 8 up to ``available``."""
    if available < 2:
        raise NotEnoughGpus(
            f"harness calibrate --collectives needs a machine with at least 2 GPUs; this one has {available}"
        )
    if asked:
        too_many = [n for n in asked if not 2 <= n <= available]
        if too_many:
            raise NotEnoughGpus(f"GPU counts {too_many} cannot be measured here: this machine has {available} GPUs")
        return tuple(sorted(set(asked)))
    counts = tuple(n for n in (2, 4, 8) if n <= available)
    return counts if available in counts else (*counts, available)


def iterations_for(size_bytes: int) -> tuple[int, int]:
    """``(warmup, iters)``: many calls for small sizes (latency-bound, noisy), few for large ones."""
    if size_bytes <= 1 << 20:
        return 5, 50
    if size_bytes <= 64 << 20:
        return 3, 20
    return 2, 5


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _rank_main(
    rank: int, world: int, port: int, ops: list[str], sizes: list[int], out_dir: str, deadline: float
) -> None:
    """One rank of a measurement (a spawned process): every op at every size, times written as JSON."""
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cuda", rank)
    times: dict[str, dict[int, float]] = {}
    try:
        for op in ops:
            if op == "send_recv" and world != 2:
                continue
            for size in sizes:
                stop = torch.tensor([1 if time.time() > deadline else 0], device=device)
                dist.all_reduce(stop)  # every rank stops at the same size
                if stop.item():
                    break
                times.setdefault(op, {})[size] = _time_op(torch, dist, op, size, rank, world, device)
    finally:
        Path(out_dir, f"rank{rank}.json").write_text(json.dumps(times))
        dist.destroy_process_group()


def _time_op(torch: Any, dist: Any, op: str, size: int, rank: int, world: int, device: Any) -> float:
    """Mean µs per call of ``op`` moving ``size`` bytes (nccl-tests' size) on this rank."""
    count = max(size // ELEMENT_BYTES // world * world, world)  # divisible among the ranks
    full = torch.ones(count, dtype=torch.float32, device=device)
    part = torch.ones(count // world, dtype=torch.float32, device=device)
    calls: dict[str, Callable[[], Any]] = {
        "all_reduce": lambda: dist.all_reduce(full),
        "all_gather": lambda: dist.all_gather_into_tensor(full, part),
        "reduce_scatter": lambda: dist.reduce_scatter_tensor(part, full),
        "broadcast": lambda: dist.broadcast(full, src=0),
        "send_recv": lambda: dist.send(full, dst=1) if rank == 0 else dist.recv(full, src=0),
    }
    call = calls[op]
    warmup, iters = iterations_for(size)
    for _ in range(warmup):
        call()
    torch.cuda.synchronize(device)
    dist.barrier()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(iters):
        call()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) * 1e3 / iters


def measure_collectives(
    gpu_counts: tuple[int, ...],
    ops: tuple[str, ...] = DEFAULT_OPS,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    budget_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> list[dict]:
    """Each op's curve at each GPU count: ``[{"op", "gpus", "algorithm", "samples"}]`` (profile curves)."""
    import torch.multiprocessing as mp

    start = time.time()
    curves: list[dict] = []
    for n in gpu_counts:
        left = budget_s - (time.time() - start)
        if left <= 0:
            log(f"  budget spent: {n} GPUs not measured")
            break
        with tempfile.TemporaryDirectory(prefix="collectives-") as out_dir:
            log(f"  {n} GPUs: {', '.join(ops)} at {len(sizes)} sizes (budget left {left:.0f} s)")
            deadline = time.time() + left
            mp.start_processes(
                _rank_main,
                args=(n, _free_port(), list(ops), list(sizes), out_dir, deadline),
                nprocs=n,
                join=True,
                start_method="spawn",
            )
            per_rank = [json.loads(Path(out_dir, f"rank{r}.json").read_text()) for r in range(n)]
        for op in ops:
            measured = [rank.get(op, {}) for rank in per_rank]
            shared = sorted(set.intersection(*(set(map(int, m)) for m in measured))) if measured else []
            if op == "send_recv":  # rank 0's send and rank 1's recv: the recv ends the transfer
                measured = measured[1:2]
            samples = [[size, round(float(np.mean([m[str(size)] for m in measured])), 3)] for size in shared]
            if samples:
                curves.append({"op": op, "gpus": n, "algorithm": "nccl", "samples": samples})
                first, last = samples[0], samples[-1]
                log(f"    {op}: {first[1]:.1f} µs at {first[0]} B .. {last[1]:.1f} µs at {last[0]} B")
    return curves


def fit_ring_topology(curves: list[dict], interconnect: str) -> dict:
    """``[topology]`` whose ring closed form (``sim.collectives``) fits the measured all-reduce curves.

    Least squares over every all-reduce sample (all GPU counts) of
    ``t = L + 2(n-1) α + size · 2(n-1)/n · (1/B)`` in ``L``, ``α`` and ``1/B``, each clipped at zero;
    ``p2p_gbps`` from the largest send/recv sample. ``algorithm = "ring"``: the closed form the fit assumed.
    """
    rows, times = [], []
    for curve in curves:
        if curve["op"] != "all_reduce":
            continue
        n = curve["gpus"]
        for size, t in curve["samples"]:
            rows.append([1.0, 2.0 * (n - 1), size * 2.0 * (n - 1) / n])
            times.append(t)
    if len(rows) < 3:
        raise ValueError("fitting [topology] needs at least 3 all-reduce samples")
    a, b = np.array(rows), np.array(times)
    weights = 1.0 / b  # relative error: small messages count as much as large ones
    coef, *_ = np.linalg.lstsq(a * weights[:, None], b * weights, rcond=None)
    base, step, inverse_bw = (max(float(c), 0.0) for c in coef)
    if inverse_bw <= 0:
        raise ValueError("the all-reduce curves do not grow with size: no bandwidth to fit")
    bus = 1.0 / inverse_bw / 1e3
    topology = {
        "interconnect": interconnect,
        "bus_gbps": round(bus, 1),
        "tree_bus_gbps": round(bus, 1),
        "p2p_gbps": round(bus, 1),
        "base_latency_us": round(base, 2),
        "step_latency_us": round(step, 3),
        "algorithm": "ring",
    }
    p2p = [c for c in curves if c["op"] == "send_recv"]
    if p2p:
        size, t = p2p[0]["samples"][-1]
        topology["p2p_gbps"] = round(size / max(t - base - step, 1e-9) / 1e3, 1)
    return topology


def calibrate_collectives(
    base_raw: dict,
    gpu_counts: tuple[int, ...] | None,
    ops: tuple[str, ...] = DEFAULT_OPS,
    sizes: tuple[int, ...] = DEFAULT_SIZES,
    interconnect: str = "nvlink",
    budget_s: float = 600.0,
    log: Callable[[str], None] = print,
) -> dict:
    """The base profile (a raw TOML dict) with measured ``[[collectives]]`` and a fitted ``[topology]``.

    Raises :class:`NotEnoughGpus` (a :class:`CudaUnavailable`) on a machine with fewer than two GPUs.
    """
    torch = require_cuda()
    counts = gpu_counts_to_measure(torch.cuda.device_count(), gpu_counts)
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    log(f"collectives on {torch.cuda.get_device_name(0)} x {torch.cuda.device_count()}, torch {torch.__version__}")
    curves = measure_collectives(counts, ops, sizes, budget_s, log)
    if not curves:
        raise RuntimeError("no collective was measured within the budget")
    raw = dict(base_raw)
    raw["collectives"] = curves
    topology = dict(base_raw.get("topology", {}), interconnect=interconnect, gpus=torch.cuda.device_count())
    if any(c["op"] == "all_reduce" for c in curves):
        topology.update(fit_ring_topology(curves, interconnect))
    raw["topology"] = topology
    return raw
