"""Measure the continuous-batching step cost model on a CUDA GPU.

Standalone script (torch + transformers only; it imports nothing from the
harness, so it runs on the device image as is). It builds a Llama-shaped decoder
from a config object with random bf16 weights (TinyLlama-1.1B shape by default:
22 layers, hidden 2048, MLP 5632, 32 query / 4 KV heads; no hub download) and
times, with the host clock around a synchronised call (so host launch overhead
is included, as the engine's synchronous scheduler thread sees it):

* ``prefill``: one forward over ``m`` prompts of ``L`` tokens (HF eager, SDPA,
  DynamicCache), last-position logits only, argmax, token ids copied to the host;
* ``decode``: one batched decode step of ``m`` sequences at context ``C`` (same
  path, one new token each), after a prefill to ``C``;
* ``join``: adding one request to a running batch: a 1-prompt prefill plus the
  copy of its KV cache into a pre-allocated slot of a ``max_batch``-slot cache
  (``insert_us`` is the copy alone);
* ``fast_decode``: the single-request path: an m=1 decode step over a
  StaticCache, captured once as a CUDA graph and replayed (``graph: true``); if
  capture fails the eager m=1 step is recorded instead (``graph: false``) and
  the log says why.

Each figure is the median of ``--reps`` timed calls after warm-up calls. Writes
JSON (raw samples + metadata) to ``--out``; ``python3 -m
workloads.continuous_batching.fit_cost_model`` turns it into a cost
model TOML under traces/cost_models/.

Usage: ``python3 tools/measure_step_cost.py --out step_cost_raw.json``
(``--tiny --device cpu`` runs a tiny model on the CPU to check the script).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import platform
import statistics
import subprocess
import sys
import time
import traceback


def log(msg: str) -> None:
    print(msg, flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--tiny", action="store_true", help="tiny model, small grid (script check on CPU)")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--max-batch", type=int, default=8, help="KV slots of the batch a join inserts into")
    ap.add_argument(
        "--variants",
        action="store_true",
        help="also time batched StaticCache decode, eager and as a CUDA graph, and profile one eager step",
    )
    ap.add_argument("--profile-out", default="", help="where --variants writes the profiler table")
    args = ap.parse_args()

    import torch
    import transformers
    from transformers import LlamaConfig, LlamaForCausalLM

    dev = torch.device(args.device)
    dtype = torch.bfloat16 if dev.type == "cuda" else torch.float32
    if args.tiny:
        cfg = LlamaConfig(
            vocab_size=512,
            hidden_size=64,
            intermediate_size=128,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=1024,
        )
        prompt_lens, batch_sizes, contexts, decode_batches = [8, 32, 128], [1, 2, 4], [16, 128], [1, 2, 4]
    else:
        cfg = LlamaConfig(
            vocab_size=32000,
            hidden_size=2048,
            intermediate_size=5632,
            num_hidden_layers=22,
            num_attention_heads=32,
            num_key_value_heads=4,
            max_position_embeddings=8192,
            rms_norm_eps=1e-5,
            tie_word_embeddings=False,
        )
        prompt_lens = [16, 64, 128, 256, 512, 1024, 2048]
        batch_sizes = [1, 2, 4, 8]
        contexts = [64, 512, 1024, 2048]
        decode_batches = [1, 2, 4, 8, 16]
    cfg._attn_implementation = "sdpa"
    torch.manual_seed(0)
    t0 = time.perf_counter()
    with torch.device(dev):
        model = LlamaForCausalLM(cfg).to(dtype).eval()
    n_params = sum(p.numel() for p in model.parameters())
    log(f"model: {n_params / 1e9:.3f} B params, {dtype}, built in {time.perf_counter() - t0:.1f} s on {dev}")

    def sync() -> None:
        if dev.type == "cuda":
            torch.cuda.synchronize()

    def timed(fn, reps=args.reps, warmup=args.warmup) -> float:
        for _ in range(warmup):
            fn()
        sync()
        samples = []
        for _ in range(reps):
            start = time.perf_counter()
            fn()
            sync()
            samples.append((time.perf_counter() - start) * 1e6)
        return statistics.median(samples)

    vocab = cfg.vocab_size

    def ids(m: int, n: int):
        return torch.randint(0, vocab, (m, n), device=dev)

    def forward(input_ids, cache=None, **kw):
        try:
            return model(input_ids=input_ids, past_key_values=cache, use_cache=True, logits_to_keep=1, **kw)
        except TypeError:  # older transformers
            return model(input_ids=input_ids, past_key_values=cache, use_cache=True, **kw)

    out = {"meta": {}, "prefill": [], "decode": [], "join": [], "fast_decode": [], "decode_static": [], "notes": []}
    with torch.inference_mode():
        # ---------------------------------------------------------------- prefill
        for m in batch_sizes:
            for L in prompt_lens:
                x = ids(m, L)

                def run_prefill(x=x):
                    o = forward(x)
                    o.logits[:, -1].argmax(-1).cpu()

                us = timed(run_prefill)
                out["prefill"].append({"m": m, "prompt_tokens": L, "us": us})
                log(f"prefill m={m:2d} L={L:5d}: {us:10.1f} us")
        # ---------------------------------------------------------------- decode
        for m in decode_batches:
            for C in contexts:
                o = forward(ids(m, C))
                cache = o.past_key_values
                nxt = o.logits[:, -1].argmax(-1, keepdim=True)
                state = {"nxt": nxt}

                def run_step():
                    o2 = forward(state["nxt"], cache)
                    state["nxt"] = o2.logits[:, -1].argmax(-1, keepdim=True)
                    state["nxt"].cpu()

                us = timed(run_step)
                out["decode"].append({"m": m, "context_tokens": C, "us": us})
                log(f"decode  m={m:2d} C={C:5d}: {us:10.1f} us")
                del cache, o
        # ---------------------------------------------------------------- join
        n_layers = cfg.num_hidden_layers
        head_dim = cfg.hidden_size // cfg.num_attention_heads
        max_ctx = max(prompt_lens) + 64
        slots_k = [
            torch.empty(args.max_batch, cfg.num_key_value_heads, max_ctx, head_dim, dtype=dtype, device=dev)
            for _ in range(n_layers)
        ]
        slots_v = [torch.empty_like(t) for t in slots_k]

        def layer_kv(cache, i):
            if hasattr(cache, "layers"):
                return cache.layers[i].keys, cache.layers[i].values
            return cache.key_cache[i], cache.value_cache[i]

        for L in prompt_lens:
            x = ids(1, L)
            box = {}

            def run_prefill1(x=x):
                o = forward(x)
                o.logits[:, -1].argmax(-1).cpu()
                box["cache"] = o.past_key_values

            def run_insert(L=L):
                cache = box["cache"]
                for i in range(n_layers):
                    k, v = layer_kv(cache, i)
                    slots_k[i][3, :, :L].copy_(k[0])
                    slots_v[i][3, :, :L].copy_(v[0])

            def run_join():
                run_prefill1()
                run_insert()

            prefill_us = timed(run_prefill1)
            insert_us = timed(run_insert)
            us = timed(run_join)
            out["join"].append({"prompt_tokens": L, "prefill_us": prefill_us, "insert_us": insert_us, "us": us})
            log(f"join    L={L:5d}: {us:10.1f} us (prefill {prefill_us:.1f}, KV insert {insert_us:.1f})")
        # ---------------------------------------------------------------- fast path
        fast_contexts = contexts
        graph_ok = False
        try:
            from transformers import StaticCache

            if dev.type != "cuda":
                raise RuntimeError("CUDA graphs need a CUDA device")
            static_len = max(fast_contexts) + 64
            try:
                cache = StaticCache(config=cfg, max_cache_len=static_len)
            except TypeError:
                cache = StaticCache(config=cfg, max_batch_size=1, max_cache_len=static_len, device=dev, dtype=dtype)
            prompt = ids(1, 16)
            pos = torch.arange(16, device=dev)
            forward(prompt, cache, cache_position=pos, position_ids=pos[None])
            static_ids = ids(1, 1)
            static_pos = torch.tensor([16], device=dev)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    o = forward(static_ids, cache, cache_position=static_pos, position_ids=static_pos[None])
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                o = forward(static_ids, cache, cache_position=static_pos, position_ids=static_pos[None])
                static_next = o.logits[:, -1].argmax(-1, keepdim=True)
            for C in fast_contexts:
                static_pos.fill_(C)

                def run_graph():
                    graph.replay()
                    static_ids.copy_(static_next)
                    static_next.cpu()

                us = timed(run_graph)
                out["fast_decode"].append({"context_tokens": C, "us": us, "graph": True})
                log(f"fast    C={C:5d}: {us:10.1f} us (CUDA graph, StaticCache of {static_len})")
            graph_ok = True
        except Exception as err:  # record why, then fall back to the eager m=1 step
            out["notes"].append(f"CUDA-graph fast path failed, eager m=1 recorded instead: {type(err).__name__}: {err}")
            log(out["notes"][-1])
            traceback.print_exc()
        if args.variants and dev.type == "cuda":
            measure_static_variants(out, forward, ids, cfg, decode_batches, max(contexts) + 64, timed, log)
            profile_eager_step(forward, ids, log, args.profile_out)
        if not graph_ok:
            for row in out["decode"]:
                if row["m"] == 1:
                    out["fast_decode"].append(
                        {"context_tokens": row["context_tokens"], "us": row["us"], "graph": False}
                    )

    def cmd(args_: list[str]) -> str:
        try:
            return subprocess.run(args_, capture_output=True, text=True, timeout=20).stdout.strip()
        except Exception:
            return ""

    out["meta"] = {
        "script": "tools/measure_step_cost.py",
        "argv": sys.argv,
        "date": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(dev) if dev.type == "cuda" else platform.processor() or "cpu",
        "driver": cmd(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "python": platform.python_version(),
        "dtype": str(dtype),
        "params": n_params,
        "model": {
            k: getattr(cfg, k)
            for k in (
                "vocab_size",
                "hidden_size",
                "intermediate_size",
                "num_hidden_layers",
                "num_attention_heads",
                "num_key_value_heads",
            )
        },
        "reps": args.reps,
        "warmup": args.warmup,
        "max_batch": args.max_batch,
        "fast_path_graph": graph_ok,
    }
    with open(args.out, "w") as f:
        json.dump(out, f, indent=1)
    log(f"wrote {args.out}")


def measure_static_variants(out, forward, ids, cfg, batches, static_len, timed, log) -> None:
    """Batched decode over a StaticCache of m rows: eager, then captured as a CUDA graph."""
    import torch
    from transformers import StaticCache

    dev = torch.device("cuda")
    for m in batches:
        try:
            cache = StaticCache(config=cfg, max_cache_len=static_len)
            pos = torch.arange(16, device=dev)
            forward(ids(m, 16), cache, cache_position=pos, position_ids=pos[None].expand(m, -1))
            x = ids(m, 1)
            p = torch.tensor([static_len - 8], device=dev)
            pid = p[None].expand(m, -1)

            def eager():
                o = forward(x, cache, cache_position=p, position_ids=pid)
                o.logits[:, -1].argmax(-1).cpu()

            eager_us = timed(eager)
            side = torch.cuda.Stream()
            side.wait_stream(torch.cuda.current_stream())
            with torch.cuda.stream(side):
                for _ in range(3):
                    forward(x, cache, cache_position=p, position_ids=pid)
            torch.cuda.current_stream().wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                o = forward(x, cache, cache_position=p, position_ids=pid)
                nxt = o.logits[:, -1].argmax(-1)

            def replay():
                graph.replay()
                nxt.cpu()

            graph_us = timed(replay)
            out["decode_static"].append({"m": m, "static_len": static_len, "eager_us": eager_us, "graph_us": graph_us})
            log(
                f"static  m={m:2d} (StaticCache {static_len}): "
                f"eager {eager_us:10.1f} us, CUDA graph {graph_us:10.1f} us"
            )
            del graph, cache
        except Exception as err:
            out["notes"].append(f"static decode m={m} failed: {type(err).__name__}: {err}")
            log(out["notes"][-1])


def profile_eager_step(forward, ids, log, path: str) -> None:
    """Where an eager DynamicCache decode step spends its time (m=4, C=512)."""
    import torch
    from torch.profiler import ProfilerActivity, profile

    o = forward(ids(4, 512))
    cache = o.past_key_values
    x = o.logits[:, -1].argmax(-1, keepdim=True)
    for _ in range(3):
        forward(x, cache)
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        forward(x, cache).logits[:, -1].argmax(-1).cpu()
        torch.cuda.synchronize()
    table = prof.key_averages().table(sort_by="cpu_time_total", row_limit=25)
    log(table[-6000:])
    if path:
        with open(path, "w") as f:
            f.write(table)


if __name__ == "__main__":
    main()
