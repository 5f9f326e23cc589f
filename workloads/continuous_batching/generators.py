"""Request generators: arrival processes and token counts, seeded.

* Poisson at ``rate_per_s``: exponential inter-arrival times.
* Bursty: gamma inter-arrival times with mean ``1 / rate_per_s`` and coefficient
  of variation ``cv`` (shape ``1 / cv²``; cv = 1 is Poisson, cv > 1 bursty).
* Token counts: a fixed count, or uniform integers in ``[lo, hi]``.

Closed-loop clients are not generated here: their arrival times depend on when
earlier requests finish, so the clients are host threads of the run
(``clients.closed_loop_client``).
"""

from __future__ import annotations

import numpy as np


def poisson_arrivals_us(n: int, rate_per_s: float, rng: np.random.Generator) -> np.ndarray:
    if rate_per_s <= 0:
        raise ValueError(f"rate_per_s must be > 0, got {rate_per_s}")
    gaps = rng.exponential(1e6 / rate_per_s, n)
    return np.cumsum(gaps) - gaps[0] if n else np.zeros(0)


def gamma_arrivals_us(n: int, rate_per_s: float, cv: float, rng: np.random.Generator) -> np.ndarray:
    if rate_per_s <= 0 or cv <= 0:
        raise ValueError(f"rate_per_s and cv must be > 0, got {rate_per_s}, {cv}")
    shape = 1.0 / (cv * cv)
    gaps = rng.gamma(shape, 1e6 / rate_per_s / shape, n)
    return np.cumsum(gaps) - gaps[0] if n else np.zeros(0)


def token_counts(n: int, spec: int | list[int] | tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """``spec``: a fixed count, or ``[lo, hi]`` for uniform integers in that closed range."""
    if isinstance(spec, int):
        return np.full(n, spec, dtype=np.int64)
    lo, hi = spec
    if lo > hi:
        raise ValueError(f"token range [{lo}, {hi}] is empty")
    return rng.integers(lo, hi + 1, n, dtype=np.int64)
