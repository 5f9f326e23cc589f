"""A layer-streaming loop: each layer's weights are copied from host memory right before the layer runs.

Each step is one pass over the layers; layer i copies its weights from host memory
into one device buffer (``copy_(non_blocking=True)``) and then runs ``matmuls``
matrix products with them, all on the default stream: the copy and the compute of a
layer never overlap. Each layer is a ``record_function("s<step>.layer<i>")`` range
unless ``--marks no``.

Options: ``--shape`` ``large`` (8 layers of 8192x8192 bf16 weights, 128 MiB, 4096
tokens, 4 products: copy and compute about even), ``small`` (32 layers of 256x256,
128 KiB, 64 tokens: small copies, small kernels), ``compute`` (8 layers of
1024x1024, 2 MiB, 65536 tokens, 8 products: compute-bound); ``--memory pinned`` or
``pageable`` host weights; ``--backup side`` also copies the first 1024 rows of each
layer's output to pinned host memory on a side stream (one side stream already);
``--helper thread`` runs a second host thread that issues its own small kernels on
its own stream while the layers run (a program with two host threads).
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time

import torch
from torch.profiler import record_function

SHAPES = {"large": (8, 8192, 4096, 4), "small": (32, 256, 64, 4), "compute": (8, 1024, 65536, 8)}  # layers, dim, tokens, products
TINY = (3, 32, 16, 2)
OPTIONS = {
    "shape": ("large", "small", "compute"),
    "memory": ("pinned", "pageable"),
    "marks": ("yes", "no"),
    "backup": ("none", "side"),
    "helper": ("none", "thread"),
}
BACKUP_ROWS, HELPER_KERNELS = 1024, 200  # helper kernels a step


class Program:
    def __init__(
        self,
        device: str = "cuda",
        tiny: bool = False,
        shape: str = "large",
        memory: str = "pinned",
        marks: str = "yes",
        backup: str = "none",
        helper: str = "none",
    ):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        self.marks, self.backup, self.helper = marks == "yes", backup, helper
        n_layers, dim, tokens, self.products = TINY if tiny else SHAPES[shape]
        dt = torch.bfloat16 if self.cuda else torch.float32
        torch.manual_seed(0)
        pin = self.cuda and memory == "pinned"
        self.host = []
        for _ in range(n_layers):
            w = (torch.randn(dim, dim, device=self.device, dtype=dt) / dim**0.5).cpu()
            self.host.append(w.pin_memory() if pin else w)
        self.x = torch.randn(tokens, dim, device=self.device, dtype=dt)
        self.weights = torch.empty(dim, dim, device=self.device, dtype=dt)
        rows = min(BACKUP_ROWS, tokens)
        self.host_out = torch.empty(n_layers, rows, dim, dtype=dt)
        self.side = None
        if self.cuda:
            self.host_out = self.host_out.pin_memory()
            self.side = torch.cuda.Stream(self.device)
        self.helper_x = torch.randn(1024, device=self.device)

    def mark(self, name: str):
        return record_function(name) if self.marks else _NoMark()

    def layer(self, i: int, w: torch.Tensor) -> None:
        y = self.x
        for _ in range(self.products):
            y = torch.matmul(y, w)
        if self.backup == "side":
            rows = self.host_out.shape[1]
            if self.side is None:
                self.host_out[i].copy_(y[:rows])
                return
            done = torch.cuda.Event()
            done.record(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(self.side):
                self.side.wait_event(done)
                self.host_out[i].copy_(y[:rows], non_blocking=True)
                y.record_stream(self.side)

    def helper_loop(self, steps: int) -> None:
        """The second host thread: its own small kernels on its own stream, while the layers run."""
        stream = torch.cuda.Stream(self.device) if self.cuda else None
        with torch.cuda.stream(stream) if stream is not None else _NoMark():
            z = self.helper_x
            for k in range(HELPER_KERNELS * steps):
                z = z * 1.0001 if k % 2 else z + 1.0
                time.sleep(0)  # let the main thread in, as a data-loading or logging thread would

    def run(self, steps: int) -> None:
        """The measured loop: ``steps`` passes over the layers (the caller synchronizes around it)."""
        helper = None
        if self.helper == "thread":
            helper = threading.Thread(target=self.helper_loop, args=(steps,), name="helper")
            helper.start()
        for s in range(steps):
            for i, host in enumerate(self.host):
                with self.mark(f"s{s}.layer{i}"):
                    self.weights.copy_(host, non_blocking=True)
                    self.layer(i, self.weights)
        if helper is not None:
            helper.join()


class _NoMark:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=2)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--tiny", action="store_true")
    for name, choices in OPTIONS.items():
        ap.add_argument(f"--{name}", choices=choices, default=choices[0])
    args = ap.parse_args(argv)
    program = Program(args.device, args.tiny, **{k: getattr(args, k) for k in OPTIONS})
    sync = torch.cuda.synchronize if program.cuda else (lambda: None)
    program.run(args.warmup)
    spans = []
    for _ in range(args.rounds):
        sync()
        start = time.perf_counter()
        program.run(args.steps)
        sync()
        spans.append((time.perf_counter() - start) * 1e6 / args.steps)
    print(f"{statistics.median(spans):.1f} us a step (median of {args.rounds}; {min(spans):.1f}-{max(spans):.1f})")


if __name__ == "__main__":
    main()
