"""Experiments on the simulator that answer the workload's questions directly.

Each takes ``simulator``, a :data:`harness.backend.BackendFactory` (the CLI
hands in ``sim.SimBackend``): a workload never imports a backend itself.

* :func:`simulate_policy`: simulate one policy on prepared inputs; returns the
  run-level metrics and the requests frame (what ``harness sim`` records).
* :func:`prefill_comparison`: batched vs staggered prefill at c closed-loop
  clients for one prompt length.
* :func:`prefill_crossover`: the shortest prompt length at which staggered
  prefill's mean TTFT is no worse than batched prefill's (bisection over the
  prompt length), and whether staggered ever matches batched on aggregate
  throughput in the range.
* :func:`bench_requests`: wall time to simulate a large request trace on one
  core (the ``harness bench-batching`` command).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from harness.backend import BackendFactory, ops_frame
from harness.errors import InputError
from harness.limits import Limits, beyond
from harness.machine import machine_report
from harness.profile import QUOTED_PROFILE, Profile, load_profile
from harness.workload import PrepareContext
from workloads.continuous_batching.cost_model import load_cost_model
from workloads.continuous_batching.inputs import BatchingInputs, BatchingParams, estimate, prepare
from workloads.continuous_batching.metrics import OPS_COLUMNS_READ, metrics_with, requests_frame
from workloads.continuous_batching.policies import AdaptiveParams, FixedWindowParams, adaptive, fixed_window

NO_MEMORY_LIMIT_BYTES = 1 << 40


@dataclass(frozen=True)
class BatchingRun:
    metrics: dict[str, float]  # run-level metrics (item = -1)
    requests: pd.DataFrame
    ops: int
    wall_s: float


def simulate_policy(
    simulator: BackendFactory,
    inputs: BatchingInputs,
    params: AdaptiveParams | FixedWindowParams,
    seed: int = 0,
    profile: Profile | None = None,
) -> BatchingRun:
    backend = simulator(profile or load_profile(QUOTED_PROFILE), 1, None, seed)
    main = adaptive if isinstance(params, AdaptiveParams) else fixed_window
    start = time.perf_counter()
    outcome = backend.run(main, inputs, params)
    # what the metrics read, no more: no results folder is written
    ops = ops_frame(outcome.ops, columns=OPS_COLUMNS_READ, categorical_strings=True, host_rows=False)
    wall = time.perf_counter() - start
    requests = requests_frame(inputs, outcome.result)
    values = {m.metric: m.value for m in metrics_with(inputs, requests, ops, outcome.result) if m.item == -1}
    return BatchingRun(values, requests, len(outcome.ops), wall)


def _prepare(params: BatchingParams, seed: int) -> BatchingInputs:
    return prepare(PrepareContext(params, Path("."), load_profile(QUOTED_PROFILE), NO_MEMORY_LIMIT_BYTES, seed))


def closed_loop_inputs(
    cost_model: str, clients: int, prompt_tokens, output_tokens, requests: int, think_us: float = 450.0, seed: int = 5
) -> BatchingInputs:
    params = BatchingParams(
        cost_model=cost_model,
        arrivals="closed_loop",
        clients=clients,
        think_us=think_us,
        requests=requests,
        prompt_tokens=prompt_tokens,
        output_tokens=output_tokens,
    )
    return _prepare(params, seed)


def prefill_comparison(
    simulator: BackendFactory,
    cost_model: str,
    prompt_tokens: int,
    clients: int = 4,
    output_tokens: int = 256,
    requests: int = 120,
    seed: int = 5,
) -> dict[str, dict[str, float]]:
    inputs = closed_loop_inputs(cost_model, clients, prompt_tokens, output_tokens, requests, seed=seed)
    modes = ("batched", "staggered")
    return {
        mode: simulate_policy(simulator, inputs, AdaptiveParams(max_batch=clients, prefill=mode), seed).metrics
        for mode in modes
    }


@dataclass(frozen=True)
class Crossover:
    cost_model: str
    prompt_tokens: int | None  # shortest prompt where staggered mean TTFT <= batched; None: not within range
    lo: int
    hi: int
    throughput_ever_wins: bool  # staggered agg tok/s >= batched at any evaluated length
    evaluated: tuple[
        tuple[int, float, float, float, float], ...
    ]  # (L, ttft batched, ttft staggered, tok/s batched, tok/s staggered)


def prefill_crossover(
    simulator: BackendFactory,
    cost_model: str,
    lo: int = 16,
    hi: int = 4096,
    resolution: int = 8,
    clients: int = 4,
    requests: int = 120,
) -> Crossover:
    """Bisect the prompt length where staggered prefill's mean TTFT stops losing to batched prefill's.

    ``hi`` is capped so that prompt + 256 output tokens fit the cost model's context limit.
    """
    hi = min(hi, load_cost_model(cost_model).context_limit_tokens - 256)
    seen: dict[int, tuple[float, float, float, float]] = {}

    def staggered_wins(length: int) -> bool:
        if length not in seen:
            r = prefill_comparison(simulator, cost_model, length, clients=clients, requests=requests)
            seen[length] = (
                r["batched"]["ttft_mean_us"],
                r["staggered"]["ttft_mean_us"],
                r["batched"]["agg_tok_s"],
                r["staggered"]["agg_tok_s"],
            )
        b, s, _, _ = seen[length]
        return s <= b

    found: int | None = None
    if staggered_wins(lo):
        found = lo
    elif staggered_wins(hi):
        a, b = lo, hi  # staggered loses at a, wins at b
        while b - a > resolution:
            mid = (a + b) // 2
            a, b = (a, mid) if staggered_wins(mid) else (mid, b)
        found = b
    evaluated = tuple((k, *v) for k, v in sorted(seen.items()))
    return Crossover(cost_model, found, lo, hi, any(v[3] >= v[2] for v in seen.values()), evaluated)


def bench_requests(
    simulator: BackendFactory,
    trace: Path | None,
    requests: int,
    cost_model: str,
    max_batch: int,
    rate_per_s: float | None,
    repeat: int,
) -> dict[str, str]:
    """Simulate ``requests`` requests (the first rows of ``trace``, or Poisson-generated) with the adaptive policy."""
    if trace is not None:
        arrivals = "trace" if rate_per_s is None else "poisson"
        params = BatchingParams(
            cost_model=cost_model,
            trace=str(trace),
            requests=requests,
            arrivals=arrivals,
            rate_per_s=rate_per_s,
            on_invalid="reject",
        )
    else:
        params = BatchingParams(
            cost_model=cost_model,
            arrivals="poisson",
            rate_per_s=rate_per_s or 5.0,
            requests=requests,
            prompt_tokens=(16, 2048),
            output_tokens=(16, 512),
        )
    size = estimate(PrepareContext(params, Path("."), load_profile(QUOTED_PROFILE), NO_MEMORY_LIMIT_BYTES, 0))
    if problem := beyond(size.ops, size.ops * size.bytes_per_op + size.memory_bytes, Limits.from_env()):
        raise InputError("--requests", "", f"{requests:,} requests need {problem}")
    inputs = _prepare(params, 0)
    best: BatchingRun | None = None
    for _ in range(repeat):
        run = simulate_policy(simulator, inputs, AdaptiveParams(max_batch=max_batch))
        if best is None or run.wall_s < best.wall_s:
            best = run
    assert best is not None
    m = best.metrics
    return {
        "requests": f"{len(inputs.requests):,}"
        + (f" (+{len(inputs.requests.rejected)} rejected)" if inputs.requests.rejected else ""),
        "source": str(trace) if trace else "poisson, generated",
        "output tokens": f"{int(m['output_tokens']):,}",
        "decode steps": f"{int(m['decode_steps']):,}",
        "ops": f"{best.ops:,}",
        "simulated s": f"{best.requests['last_token_us'].max() / 1e6:,.1f}",
        "best wall s": f"{best.wall_s:.2f}",
        **machine_report(),
    }
