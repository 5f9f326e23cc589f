"""A decoder loop that backs up each step's new K/V rows to the host, inline, one copy per layer and tensor.

The decoder of ``decode_eager.py`` (same sizes). After each step the new K and V rows
of every layer are copied to pinned host memory, one ``copy_(non_blocking=True)`` per
layer and tensor (2 x layers copies, a run of D2H copies at the step's end), then the
host waits for them (``--sync step``: a stream sync each step, as a backup that must
be on the host before the next step). ``--copy token`` backs up only the step's
token (one 8-byte-a-row copy), and ``--sync end`` never waits inside the loop: the
copies are tiny and in line, there is nothing for a side stream to hide.
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch
from torch.profiler import record_function

SIZES = {  # batch, hidden, ffn, layers, heads, vocab
    "host": (1, 256, 688, 4, 4, 4096),
    "mid": (8, 1024, 2816, 4, 8, 8192),
    "gpu": (64, 4096, 11008, 8, 32, 8192),
}
TINY = (2, 64, 128, 2, 2, 128)
CONTEXT = 128
OPTIONS = {"size": ("mid", "host", "gpu"), "copy": ("kv", "token"), "sync": ("step", "end")}


class Program:
    def __init__(self, device: str = "cuda", tiny: bool = False, size: str = "mid", copy: str = "kv", sync: str = "step"):
        self.device = torch.device(device)
        self.cuda = self.device.type == "cuda"
        b, d, f, n_layers, heads, vocab = TINY if tiny else SIZES[size]
        dt = torch.bfloat16 if self.cuda else torch.float32
        torch.manual_seed(0)

        def w(*shape: int) -> torch.Tensor:
            return torch.randn(*shape, device=self.device, dtype=dt) / shape[0] ** 0.5

        self.heads, self.hd = heads, d // heads
        self.embed, self.head, self.norm = w(vocab, d), w(d, vocab), torch.ones(d, device=self.device, dtype=dt)
        self.layers = [
            dict(n1=self.norm.clone(), qkv=w(d, 3 * d), o=w(d, d), n2=self.norm.clone(), up=w(d, 2 * f), down=w(f, d))
            for _ in range(n_layers)
        ]
        self.k_cache = [w(b, heads, CONTEXT, self.hd) for _ in range(n_layers)]
        self.v_cache = [w(b, heads, CONTEXT, self.hd) for _ in range(n_layers)]
        self.new_kv = torch.zeros(n_layers, 2, b, d, device=self.device, dtype=dt)
        self.token = torch.zeros(b, dtype=torch.long, device=self.device)
        self.copy, self.sync = copy, sync
        self.host_kv = torch.empty(self.new_kv.shape, dtype=dt)
        self.host_tokens = torch.empty(256, b, dtype=torch.long)  # a log of the tokens, one row a step
        if self.cuda:
            self.host_kv, self.host_tokens = self.host_kv.pin_memory(), self.host_tokens.pin_memory()

    @staticmethod
    def rms_norm(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6) * weight

    def step(self) -> None:
        x = self.embed[self.token]
        b = x.shape[0]
        for i, p in enumerate(self.layers):
            q, k, v = (self.rms_norm(x, p["n1"]) @ p["qkv"]).split(x.shape[-1], dim=-1)
            self.new_kv[i, 0].copy_(k)
            self.new_kv[i, 1].copy_(v)
            scores = (q.view(b, self.heads, 1, self.hd) @ self.k_cache[i].transpose(-1, -2)) * self.hd**-0.5
            attn = (torch.softmax(scores, dim=-1) @ self.v_cache[i]).reshape(b, -1)
            x = x + attn @ p["o"]
            gate, up = (self.rms_norm(x, p["n2"]) @ p["up"]).chunk(2, dim=-1)
            x = x + (torch.nn.functional.silu(gate) * up) @ p["down"]
        self.token.copy_(torch.argmax(self.rms_norm(x, self.norm) @ self.head, dim=-1))


    def back_up(self, s: int) -> None:
        """Copy the step's new K and V rows of every layer (or its token) to pinned host memory."""
        if self.copy == "token":
            self.host_tokens[s % len(self.host_tokens)].copy_(self.token, non_blocking=True)
            return
        for i in range(len(self.layers)):
            self.host_kv[i, 0].copy_(self.new_kv[i, 0], non_blocking=True)
            self.host_kv[i, 1].copy_(self.new_kv[i, 1], non_blocking=True)

    def run(self, steps: int) -> None:
        """The measured loop: ``steps`` decode steps, each backed up in line (the caller synchronizes around it)."""
        for s in range(steps):
            with record_function(f"step{s}"):
                self.step()
                self.back_up(s)
                if self.sync == "step" and self.cuda:
                    torch.cuda.current_stream(self.device).synchronize()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=24)
    ap.add_argument("--warmup", type=int, default=3)
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
