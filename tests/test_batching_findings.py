"""The simulator reproduces the engine's own findings (its quoted cost figures, bundled specs).

Engine (../shared/reference/003-cuda-batch-scheduler.rs.txt):
* c=1: the zero-window policy adds no TTFT over starting at once; a 10 ms window adds ~10 ms;
* c=4: singleton batches started while peers are about to arrive inflate TTFT p99.9
  (1889 ms); the 2 ms singleton wait removes that tail (~50 ms target);
* c=4, short prompts: staggered prefill 241 vs batched 260 tok/s, TTFT 87 vs 40 ms;
  "may win for long prompts (>500 tokens)".
"""

from __future__ import annotations

from harness.paths import SPECS_DIR
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend
from workloads.continuous_batching.experiments import (
    prefill_comparison,
    prefill_crossover,
)


def _sim(spec_name: str) -> dict[str, dict[str, float]]:
    loaded = load_spec(SPECS_DIR / spec_name)
    results = run_spec(loaded, lambda spec, rep: SimBackend(spec.profile, seed=spec.spec.seed + rep))
    assert (results.runs["status"] == "ok").all(), results.runs["error"].tolist()
    m = results.metrics[results.metrics["item"] == -1].merge(results.runs[["run_id", "policy_label"]], on="run_id")
    return {label: dict(zip(g["metric"], g["value"])) for label, g in m.groupby("policy_label")}


def test_c1_zero_window_adds_nothing_and_a_10ms_window_adds_10ms():
    r = _sim("batching_c1_window.toml")
    immediate, zero, window = r["immediate"], r["zero-window"], r["window-10ms"]
    for q in ("p50", "p99"):
        assert abs(zero[f"ttft_{q}_us"] - immediate[f"ttft_{q}_us"]) < 5.0  # only the 1 µs yield
        assert 9_900.0 < window[f"ttft_{q}_us"] - immediate[f"ttft_{q}_us"] < 10_100.0
    assert zero["batch_size_mean"] == window["batch_size_mean"] == 1.0  # nothing else ever arrives at c=1
    assert window["agg_tok_s"] < zero["agg_tok_s"]


def test_c4_singleton_batches_make_the_ttft_tail_and_the_2ms_wait_removes_it():
    r = _sim("batching_c4_singleton.toml")
    before, after = r["no-singleton-wait"], r["singleton-wait-2ms"]
    assert before["singleton_batches"] >= 1 and after["singleton_batches"] == 0
    # the tail: a singleton on the fast path runs ~256 x 6.7 ms while three peers wait
    assert before["ttft_p999_us"] > 1_500_000.0
    assert after["ttft_p999_us"] < 60_000.0
    # the body of the distribution is untouched
    assert abs(before["ttft_p50_us"] - after["ttft_p50_us"]) < 1_000.0
    assert before["ttft_p99_us"] < 60_000.0


def test_c4_short_prompts_staggered_prefill_loses_throughput_and_ttft():
    r = _sim("batching_c4_prefill.toml")
    batched, staggered = r["batched-prefill"], r["staggered-prefill"]
    assert staggered["agg_tok_s"] < batched["agg_tok_s"]
    assert staggered["ttft_mean_us"] > 1.4 * batched["ttft_mean_us"]
    assert staggered["ttft_p50_us"] > batched["ttft_p50_us"]


def test_staggered_prefill_wins_ttft_only_for_long_prompts():
    short = prefill_comparison(SimBackend, "engine-pmat-quoted", 32, requests=60)
    long = prefill_comparison(SimBackend, "engine-pmat-quoted", 1024, requests=60)
    assert short["staggered"]["ttft_mean_us"] > short["batched"]["ttft_mean_us"]
    assert long["staggered"]["ttft_mean_us"] < long["batched"]["ttft_mean_us"]
    for r in (short, long):  # each join is an extra prefill step: never a throughput win here
        assert r["staggered"]["agg_tok_s"] < r["batched"]["agg_tok_s"]


def test_crossover_under_the_engine_figures_is_a_few_hundred_tokens():
    found = prefill_crossover(SimBackend, "engine-pmat-quoted", lo=16, hi=2048, resolution=64, requests=60)
    assert found.prompt_tokens is not None and 250 < found.prompt_tokens < 700
    assert not found.throughput_ever_wins
