"""What the fidelity report shows and checks for continuous batching (``fidelity/report.py``).

The checks are the findings of ``FINDINGS.md`` that the replay specs
(``traces/specs/batching_replay_c{1,4}.toml``) exercise, by their policy labels.
"""

from harness.workload import Fidelity, FidelityCheck, Value


def _zero_window_is_free(v: Value) -> tuple[bool, str]:
    extra = v("zero-window", "ttft_p50_us") - v("immediate", "ttft_p50_us")
    return abs(extra) < 1_000, f"TTFT p50 zero-window - immediate {extra:+,.0f} µs"


def _window_adds_its_length(v: Value) -> tuple[bool, str]:
    extra = v("window-10ms", "ttft_p50_us") - v("immediate", "ttft_p50_us")
    tok = v("window-10ms", "agg_tok_s") / v("immediate", "agg_tok_s") - 1
    return 9_000 <= extra <= 12_000 and tok < 0, f"TTFT p50 +{extra / 1e3:.3f} ms, tok/s {tok:+.2%}"


def _staggered_prefill_loses(v: Value) -> tuple[bool, str]:
    ttft = v("staggered-prefill", "ttft_p50_us") / v("batched-prefill", "ttft_p50_us") - 1
    tok = v("staggered-prefill", "agg_tok_s") / v("batched-prefill", "agg_tok_s") - 1
    return ttft > 0 and tok < 0, f"staggered vs batched: TTFT p50 {ttft:+.1%}, tok/s {tok:+.2%}"


def _singleton_wait_cuts_the_tail(v: Value) -> tuple[bool, str]:
    wait, none = v("batched-prefill", "ttft_p99_us"), v("no-singleton-wait", "ttft_p99_us")
    singles = v("no-singleton-wait", "singleton_batches")
    return (
        none > 2 * wait and singles > 0,
        f"TTFT p99 {wait / 1e3:.1f} ms with the wait, {none / 1e3:.1f} ms without ({singles:.0f} singleton batches)",
    )


FIDELITY = Fidelity(
    shown_metrics=("ttft_p50_us", "ttft_p99_us", "ttft_p999_us", "tpot_p50_us", "agg_tok_s", "singleton_batches"),
    checks=(
        FidelityCheck(
            "c=1: zero-window adds no TTFT over immediate start (< 1 ms)",
            ("immediate", "zero-window"),
            _zero_window_is_free,
        ),
        FidelityCheck(
            "c=1: a 10 ms window adds ~10 ms to TTFT p50 and lowers tok/s",
            ("immediate", "window-10ms"),
            _window_adds_its_length,
        ),
        FidelityCheck(
            "short prompts: staggered prefill raises TTFT and loses throughput against batched prefill",
            ("batched-prefill", "staggered-prefill"),
            _staggered_prefill_loses,
        ),
        FidelityCheck(
            "without the 2 ms singleton wait, singleton batches inflate the TTFT tail (p99 over 2x)",
            ("batched-prefill", "no-singleton-wait"),
            _singleton_wait_cuts_the_tail,
        ),
    ),
)
