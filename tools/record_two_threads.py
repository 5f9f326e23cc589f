"""Record a plain PyTorch program with two host threads issuing to two streams, and write a spec for it (CUDA GPU).

The program (no harness code in it): thread ``compute`` runs 40 steps of 24
elementwise kernels on a 4 MiB tensor on its own stream, syncing it every 8
steps; thread ``copier`` runs 40 rounds of a 4 MiB pinned H2D copy, a kernel on
the copied data and a 4 MiB D2H copy back to pinned memory on a second stream,
syncing it every 4 rounds. Both threads start inside the profiled region (the
profiler sees the CPU ops of threads started after it).

Like ``tools/record_programs.py``: one warm-up, ``--reps`` unprofiled spans,
then one recording with CUDA sync events, imported with ``harness trace
import``. Writes under OUT: ``two_threads-sync.json.gz``, the imported
``two_threads-sync.parquet``, ``spans.json`` and ``recorded_two_threads.toml``
(the spec ``tools/native_fidelity.py --spec`` replays).

Usage: ``python tools/record_two_threads.py OUT [--reps 5] [--profile h100-sxm-pcie5]``
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import threading
from pathlib import Path

import torch
from torch.profiler import record_function

sys.path.insert(0, str(Path(__file__).resolve().parent))
from record_programs import record, timed_span_us  # noqa: E402

STEPS, KERNELS, ELEMS, ROUNDS = 40, 24, 1 << 20, 40


def two_threads_program(device: torch.device):
    x = torch.randn(ELEMS, device=device)
    host_in = torch.randn(ELEMS).pin_memory()
    host_out = torch.empty(ELEMS).pin_memory()
    staged = torch.empty(ELEMS, device=device)
    streams = (torch.cuda.Stream(device), torch.cuda.Stream(device))

    def compute() -> None:
        torch.cuda.set_device(device)
        stream = streams[0]
        with torch.cuda.stream(stream):
            for s in range(STEPS):
                with record_function(f"compute{s}"):
                    y = x
                    for k in range(KERNELS):
                        y = y * 1.0001 if k % 2 else y + 0.5
                if s % 8 == 7:
                    stream.synchronize()
            stream.synchronize()

    def copier() -> None:
        torch.cuda.set_device(device)
        stream = streams[1]
        with torch.cuda.stream(stream):
            for r in range(ROUNDS):
                with record_function(f"copy{r}"):
                    staged.copy_(host_in, non_blocking=True)
                    doubled = staged * 2.0
                    host_out.copy_(doubled, non_blocking=True)
                if r % 4 == 3:
                    stream.synchronize()
            stream.synchronize()

    def program() -> None:
        workers = [threading.Thread(target=compute, name="compute"), threading.Thread(target=copier, name="copier")]
        for w in workers:
            w.start()
        for w in workers:
            w.join()

    return program


SPEC = """# Two host threads issuing to two streams, recorded by tools/record_two_threads.py on {gpu}.
name = "recorded-two-threads"
description = "two host threads, two streams, as recorded"
profile = "{profile}"
seed = 0
repetitions = 3

[workload]
kind = "recorded"
trace = "two_threads-sync.parquet"

[[policies]]
name = "as_recorded"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("out", type=Path)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument(
        "--profile", default=None, help="the spec's profile (default: h200 on an H200, else h100-sxm-pcie5)"
    )
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    device = torch.device("cuda", 0)
    gpu = torch.cuda.get_device_name(device)
    program = two_threads_program(device)
    program()
    timed = [timed_span_us(program, device) for _ in range(args.reps)]
    trace = args.out / "two_threads-sync.json.gz"
    profiled = record(program, device, trace, sync_events=True)
    parquet = args.out / "two_threads-sync.parquet"
    parquet.unlink(missing_ok=True)
    subprocess.run([sys.executable, "-m", "harness", "trace", "import", str(trace), "--out", str(parquet)], check=True)
    profile = args.profile or ("h200" if "H200" in gpu else "h100-sxm-pcie5")
    (args.out / "recorded_two_threads.toml").write_text(SPEC.format(gpu=gpu, profile=profile))
    spans = {"gpu": gpu, "torch": torch.__version__, "unprofiled_span_us": timed, "profiled_span_us": profiled}
    (args.out / "spans.json").write_text(json.dumps(spans, indent=2))
    print(f"two_threads: unprofiled median {statistics.median(timed):.1f} us, profiled {profiled:.1f} us ({gpu})")


if __name__ == "__main__":
    main()
