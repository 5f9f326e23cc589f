"""``layers.py`` changed by hand: layer i+1's weights are prefetched on a side stream during layer i.

Two device buffers: while layer i computes with one, a copy stream fills the other
with layer i+1's weights (the copy first waits for the event recorded behind the
layer that last used that buffer); layer i's compute waits for its buffer's
``ready`` event. The same options as ``layers.py``: with ``--backup side`` the
program has two side streams (the prefetch's and the backup's); with ``--memory
pageable`` the prefetch copies come from pageable memory. On a CPU the copies run
in line.
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
        self.buffers = [torch.empty(dim, dim, device=self.device, dtype=dt) for _ in range(2)]
        rows = min(BACKUP_ROWS, tokens)
        self.host_out = torch.empty(n_layers, rows, dim, dtype=dt)
        self.side = None
        if self.cuda:
            self.host_out = self.host_out.pin_memory()
            self.side = torch.cuda.Stream(self.device)
            self.copy_stream = torch.cuda.Stream(self.device)
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
        if self.side is None:
            for s in range(steps):
                for i, host in enumerate(self.host):
                    with self.mark(f"s{s}.layer{i}"):
                        self.buffers[0].copy_(host, non_blocking=True)
                        self.layer(i, self.buffers[0])
        else:
            self.prefetched(steps)
        if helper is not None:
            helper.join()

    def prefetched(self, steps: int) -> None:
        main, copies = torch.cuda.current_stream(self.device), self.copy_stream
        order = [(s, i) for s in range(steps) for i in range(len(self.host))]
        ready = [torch.cuda.Event() for _ in range(2)]
        free: list[torch.cuda.Event | None] = [None, None]
        with torch.cuda.stream(copies):
            self.buffers[0].copy_(self.host[0], non_blocking=True)
            ready[0].record(copies)
        for n, (s, i) in enumerate(order):
            with self.mark(f"s{s}.layer{i}"):
                if n + 1 < len(order):
                    nxt = (n + 1) % 2
                    with torch.cuda.stream(copies):
                        if free[nxt] is not None:
                            copies.wait_event(free[nxt])  # the layer that last used this buffer is done
                        self.buffers[nxt].copy_(self.host[order[n + 1][1]], non_blocking=True)
                        ready[nxt].record(copies)
                main.wait_event(ready[n % 2])
                self.layer(i, self.buffers[n % 2])
                free[n % 2] = torch.cuda.Event()
                free[n % 2].record(main)


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
