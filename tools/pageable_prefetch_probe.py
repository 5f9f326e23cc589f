"""Probe: why the corpus's pageable prefetch program (p05) ran 3% slower than its base (issue 24).

The p05 pair (``layers.py`` -> ``layers_prefetch.py``, 8 layers of 128 MiB bf16 weights from
pageable memory) changed by +3.0% between its recordings (H100, 2026-12-07), almost all of it
in the changed program's copies running 3.1% slower (13,049 against 12,656 µs a copy, CUPTI);
its 11 unprofiled rounds changed by +0.6% median where the prefetch program ran first of the
two (rounds 1, 3, ..., 9) and by -6.8 to +19.4% where it ran right after the base (0, 2, ..., 10).
The what-if keeps the base's copy durations. This separates the candidates, unprofiled, with
the corpus's own programs (imported from ``traces/recorded/corpus/programs/``):

* ``base``, ``prefetch``: the two programs as the corpus runs them (each with its own host weights);
* ``base_on_prefetch_weights``, ``prefetch_on_base_weights``: the same loops on the *other*
  program's host tensors (is it the host memory the copies read, not the loop?);
* ``base_side_stream``: the base's in-line order (copy, then the layer) with each copy on a
  created stream behind an event and the layer behind the copy's event (the stream and events
  without the prefetch's issue order);
* ``prefetch_default_stream``: the prefetch's issue order (the next layer's copy, then this
  layer) with the copies on the default stream (the issue order without the stream).

Each round runs every variant once (``steps`` passes, host clock between two device
synchronizes, as ``tools/corpus_gpu_run.py``), in an order rotated every round, and records
which variant ran just before (the order effect); then, per weight set, each 128 MiB tensor
copied alone on the default stream, timed with CUDA events (the host memory's own pageable
bandwidth). Last, where each weight set lives: per tensor, the NUMA nodes of its pages and its
transparent huge pages (``/proc/self/numa_maps``, ``/proc/self/smaps``).

Writes under ``--out``: ``runs.csv`` (round, position, variant, previous, span_us),
``copies.csv`` (round, weights, layer, us, gbps), ``tensors.csv`` and ``summary.txt``
(medians, per-round ratios to ``base``, by predecessor). One command, bounded by
``--budget-s`` (no round starts that would end after it):
``python tools/pageable_prefetch_probe.py --out $OUT/pageable_prefetch --budget-s 120``.
"""

from __future__ import annotations

import argparse
import copy
import csv
import importlib.util
import statistics
import time
from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent.parent / "traces" / "recorded" / "corpus" / "programs"
VARIANTS = (
    "base",
    "prefetch",
    "base_on_prefetch_weights",
    "prefetch_on_base_weights",
    "base_side_stream",
    "prefetch_default_stream",
)


def _module(name: str):
    spec = importlib.util.spec_from_file_location(f"corpus_{name}", PROGRAMS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _base_side_stream(program, steps: int) -> None:
    """``layers.py``'s order (copy, then the layer) with the copy on a created stream between two events."""
    import torch

    main = torch.cuda.current_stream(program.device)
    side = program.copy_stream
    for s in range(steps):
        for i, host in enumerate(program.host):
            with program.mark(f"s{s}.layer{i}"):
                free = torch.cuda.Event()
                free.record(main)
                side.wait_event(free)
                with torch.cuda.stream(side):
                    program.weights.copy_(host, non_blocking=True)
                ready = torch.cuda.Event()
                ready.record(side)
                main.wait_event(ready)
                program.layer(i, program.weights)


def _prefetch_default_stream(program, steps: int) -> None:
    """``layers_prefetch.py``'s order (the next layer's copy, then this layer) with the copies on the default stream."""
    order = [(s, i) for s in range(steps) for i in range(len(program.host))]
    program.buffers[0].copy_(program.host[0], non_blocking=True)
    for n, (s, i) in enumerate(order):
        with program.mark(f"s{s}.layer{i}"):
            if n + 1 < len(order):
                program.buffers[(n + 1) % 2].copy_(program.host[order[n + 1][1]], non_blocking=True)
            program.layer(i, program.buffers[n % 2])


def _vma_facts(spans: dict[str, tuple[int, int]]) -> dict[str, dict]:
    """For each named address range (start, bytes): the mappings it overlaps (a range can span several), their
    AnonHugePages kB in all (smaps) and their NUMA page counts (numa_maps), "start:N0=..;" per mapping."""
    facts: dict[str, dict] = {name: {"mappings": 0, "anon_huge_kb": 0, "numa_pages": ""} for name in spans}
    try:
        numa = {}
        for line in Path("/proc/self/numa_maps").read_text().splitlines():
            numa[int(line.split()[0], 16)] = " ".join(t for t in line.split() if t.startswith("N") and "=" in t)
        current = None
        for line in Path("/proc/self/smaps").read_text().splitlines():
            head = line.split()[0]
            if "-" in head and all(c in "0123456789abcdef-" for c in head):
                current = tuple(int(x, 16) for x in head.split("-"))
            elif head == "AnonHugePages:" and current is not None:
                for name, (start, nbytes) in spans.items():
                    if current[0] < start + nbytes and start < current[1]:
                        fact = facts[name]
                        fact["mappings"] += 1
                        fact["anon_huge_kb"] += int(line.split()[1])
                        fact["numa_pages"] += f"{current[1] - current[0]}B:{numa.get(current[0], '')};"
    except OSError as err:
        for name in spans:
            facts[name]["error"] = str(err)
    return facts


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--budget-s", type=float, default=120.0)
    ap.add_argument("--rounds", type=int, default=36)
    ap.add_argument("--steps", type=int, default=2)
    args = ap.parse_args(argv)
    if args.budget_s > 150:
        ap.error("--budget-s must be at most 150")
    import torch

    begun = time.monotonic()
    layers, layers_prefetch = _module("layers"), _module("layers_prefetch")
    base = layers.Program("cuda", shape="large", memory="pageable")
    prefetch = layers_prefetch.Program("cuda", shape="large", memory="pageable")
    base.copy_stream = torch.cuda.Stream(base.device)
    base_swapped, prefetch_swapped = copy.copy(base), copy.copy(prefetch)
    base_swapped.host, prefetch_swapped.host = prefetch.host, base.host
    runs = {
        "base": lambda n: base.run(n),
        "prefetch": lambda n: prefetch.run(n),
        "base_on_prefetch_weights": lambda n: base_swapped.run(n),
        "prefetch_on_base_weights": lambda n: prefetch_swapped.run(n),
        "base_side_stream": lambda n: _base_side_stream(base, n),
        "prefetch_default_stream": lambda n: _prefetch_default_stream(prefetch, n),
    }
    weights = {"base": base.host, "prefetch": prefetch.host}

    def timed(variant: str) -> float:
        torch.cuda.synchronize()
        start = time.perf_counter()
        runs[variant](args.steps)
        torch.cuda.synchronize()
        return (time.perf_counter() - start) * 1e6

    for variant in VARIANTS:  # warm-up (cuBLAS, allocator, streams), not kept
        timed(variant)
    round_s = time.monotonic()
    run_rows, copy_rows = [], []
    previous = ""
    stream = torch.cuda.current_stream()
    dev = torch.empty_like(base.weights)
    for r in range(args.rounds):
        elapsed = time.monotonic() - begun
        per_round = (time.monotonic() - round_s) / r if r else 3.0
        if elapsed + per_round > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s: stopped after {r} rounds")
            break
        k = r % len(VARIANTS)
        order = VARIANTS[k:] + VARIANTS[:k]
        if (r // len(VARIANTS)) % 2:
            order = tuple(reversed(order))
        for position, variant in enumerate(order):
            run_rows.append((r, position, variant, previous, timed(variant)))
            previous = variant
        for name in ("base", "prefetch") if r % 2 == 0 else ("prefetch", "base"):
            for layer, host in enumerate(weights[name]):
                torch.cuda.synchronize()
                a, b = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
                a.record(stream)
                dev.copy_(host, non_blocking=True)
                b.record(stream)
                b.synchronize()
                us = a.elapsed_time(b) * 1e3
                copy_rows.append((r, name, layer, us, host.numel() * host.element_size() / us / 1e3))
        previous = "copies"
    ranges = {f"{name}[{i}]": (t.data_ptr(), t.numel() * t.element_size()) for name, ts in weights.items()
             for i, t in enumerate(ts)}
    facts = _vma_facts(ranges)

    args.out.mkdir(parents=True, exist_ok=True)
    with open(args.out / "runs.csv", "w", newline="") as f:
        csv.writer(f).writerows([("round", "position", "variant", "previous", "span_us"), *run_rows])
    with open(args.out / "copies.csv", "w", newline="") as f:
        csv.writer(f).writerows([("round", "weights", "layer", "us", "gbps"), *copy_rows])
    with open(args.out / "tensors.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("tensor", "ptr", "bytes", "mappings", "anon_huge_kb", "numa_pages", "error"))
        for name, (ptr, nbytes) in ranges.items():
            fact = facts[name]
            writer.writerow((name, hex(ptr), nbytes, fact["mappings"], fact["anon_huge_kb"], fact["numa_pages"],
                             fact.get("error", "")))
    lines = [f"device: {torch.cuda.get_device_name()}, torch {torch.__version__}, rounds {len(run_rows) // len(VARIANTS)}"
             f", steps {args.steps}, {time.monotonic() - begun:.0f} s"]
    spans = {v: [row[4] for row in run_rows if row[2] == v] for v in VARIANTS}
    base_of = {row[0]: row[4] for row in run_rows if row[2] == "base"}
    for v in VARIANTS:
        if not spans[v]:
            continue
        ratios = [row[4] / base_of[row[0]] - 1 for row in run_rows if row[2] == v and row[0] in base_of]
        lines.append(f"{v:26} median {statistics.median(spans[v]):10.0f} µs ({min(spans[v]):.0f}-{max(spans[v]):.0f})"
                     f"  vs base in its round: median {statistics.median(ratios):+.1%}"
                     f" ({min(ratios):+.1%} to {max(ratios):+.1%})")
    for v in ("prefetch", "base"):
        after: dict[str, list[float]] = {}
        for row in run_rows:
            if row[2] == v:
                after.setdefault(row[3] or "(first)", []).append(row[4])
        for prev, us in sorted(after.items()):
            lines.append(f"  {v} right after {prev:26} n={len(us):2}  median {statistics.median(us):10.0f} µs")
    for name in ("base", "prefetch"):
        gbps = [row[4] for row in copy_rows if row[1] == name]
        if gbps:
            lines.append(f"{name} weights, one copy alone: median {statistics.median(gbps):.2f} GB/s "
                         f"({min(gbps):.2f}-{max(gbps):.2f}, {len(gbps)} copies)")
    text = "\n".join(lines)
    (args.out / "summary.txt").write_text(text + "\n")
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
