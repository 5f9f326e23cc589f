"""Record a plain tensor-parallel PyTorch program on N GPUs, one torch.profiler trace per rank (issue 26).

One process per GPU (torch.multiprocessing, NCCL through torch.distributed): a
decoder of ``--layers`` layers, each a column-parallel then row-parallel matmul
pair for attention and for the MLP, each followed by an all-reduce of the
activations (Megatron-style TP decode at batch ``--batch``, hidden ``--hidden``,
bf16). Each rank runs ``--warmup`` steps, then ``--steps`` steps unprofiled
(their span: what the program takes without the profiler), then the same steps
under torch.profiler (CPU + CUDA activities, ``record_shapes`` so that the NCCL
kernels carry their collective's size and group), and writes
``OUT/rank<r>.json.gz``; ``OUT/spans.json`` holds every rank's spans.

    python3 tools/record_tp_program.py OUT --gpus 4 [--layers 16 --batch 32 --hidden 8192]

Then ``harness trace import OUT/rank0.json.gz ... OUT/rank3.json.gz -o OUT/tp.parquet`` merges the ranks
into one trace (``fidelity/run_collectives.sh`` does both). Needs torch with CUDA and N GPUs; imports nothing
from the harness.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import socket
import time
from pathlib import Path


def _rank(rank: int, world: int, port: int, args: argparse.Namespace) -> None:
    import torch
    import torch.distributed as dist

    torch.cuda.set_device(rank)
    dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world)
    device = torch.device("cuda", rank)
    h, ff = args.hidden, 4 * args.hidden // world
    x = torch.randn(args.batch, h, device=device, dtype=torch.bfloat16)
    layers = [
        (
            torch.randn(h, 3 * h // world, device=device, dtype=torch.bfloat16) * 0.01,  # QKV, column-parallel
            torch.randn(h // world, h, device=device, dtype=torch.bfloat16) * 0.01,  # O, row-parallel
            torch.randn(h, ff, device=device, dtype=torch.bfloat16) * 0.01,  # up, column-parallel
            torch.randn(ff, h, device=device, dtype=torch.bfloat16) * 0.01,  # down, row-parallel
        )
        for _ in range(args.layers)
    ]

    def step(x):
        for qkv, o, up, down in layers:
            a = (x @ qkv)[:, : h // world]
            y = a @ o
            dist.all_reduce(y)
            x = x + y
            z = torch.relu(x @ up) @ down
            dist.all_reduce(z)
            x = x + z
        return x

    for _ in range(args.warmup):
        x = step(x)
    torch.cuda.synchronize()
    dist.barrier()
    t0 = time.perf_counter()
    for _ in range(args.steps):
        x = step(x)
    torch.cuda.synchronize()
    unprofiled_us = (time.perf_counter() - t0) * 1e6
    dist.barrier()
    activities = [torch.profiler.ProfilerActivity.CPU, torch.profiler.ProfilerActivity.CUDA]
    with torch.profiler.profile(activities=activities, record_shapes=True) as prof:
        t0 = time.perf_counter()
        for _ in range(args.steps):
            with torch.profiler.record_function("step"):
                x = step(x)
        torch.cuda.synchronize()
        profiled_us = (time.perf_counter() - t0) * 1e6
    out = Path(args.out)
    raw = out / f"rank{rank}.json"
    prof.export_chrome_trace(str(raw))
    with open(raw, "rb") as src, gzip.open(out / f"rank{rank}.json.gz", "wb") as dst:
        shutil.copyfileobj(src, dst)
    raw.unlink()
    (out / f"span{rank}.json").write_text(json.dumps({"unprofiled_us": unprofiled_us, "profiled_us": profiled_us}))
    dist.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out")
    parser.add_argument("--gpus", type=int, default=4)
    parser.add_argument("--layers", type=int, default=16)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--hidden", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=5)
    args = parser.parse_args()
    import torch
    import torch.multiprocessing as mp

    if torch.cuda.device_count() < args.gpus:
        raise SystemExit(f"--gpus {args.gpus}: this machine has {torch.cuda.device_count()} GPUs")
    Path(args.out).mkdir(parents=True, exist_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    os.environ.setdefault("NCCL_DEBUG", "WARN")
    mp.start_processes(_rank, args=(args.gpus, port, args), nprocs=args.gpus, join=True, start_method="spawn")
    spans = {r: json.loads((Path(args.out) / f"span{r}.json").read_text()) for r in range(args.gpus)}
    (Path(args.out) / "spans.json").write_text(json.dumps({"gpus": args.gpus, "args": vars(args), "ranks": spans}))
    print(json.dumps(spans))


if __name__ == "__main__":
    main()
