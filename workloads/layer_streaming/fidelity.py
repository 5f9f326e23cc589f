"""What the fidelity report shows and checks for layer streaming (``fidelity/report.py``).

The bounds are the fidelity benchmark's: the simulator's makespan within 2% of the
replay's in the median over shapes and policies, 5% at worst, with the same ranking
of the policies in every shape; and the modelled change's claim that ``prefetch``
comes within 3% of the overlap bound (first copy + sum of max(copy, compute) + last
compute, from the run's own copy and compute times).
"""

from harness.workload import ErrorBound, Fidelity, FidelityCheck, Value

BOUND_LIMIT = 0.03  # prefetch's makespan over its overlap bound, at most 1 + this


def _prefetch_beats_sync(v: Value) -> tuple[bool, str]:
    change = v("prefetch", "makespan_us") / v("sync", "makespan_us") - 1
    return change < 0, f"prefetch vs sync makespan {change:+.2%}"


def _prefetch_near_bound(v: Value) -> tuple[bool, str]:
    ratio, worst = v("prefetch", "makespan_over_overlap_bound"), v("prefetch", "makespan_over_overlap_bound", "max")
    return (
        ratio - 1 <= BOUND_LIMIT,
        f"makespan / overlap bound {ratio:.4f} (worst repetition {worst:.4f}; limit {1 + BOUND_LIMIT:.2f})",
    )


FIDELITY = Fidelity(
    shown_metrics=("makespan_us", "makespan_over_overlap_bound"),
    error_bounds=(ErrorBound("makespan_us", median_limit=0.02, worst_limit=0.05),),
    ranked_metrics=("makespan_us",),
    checks=(
        FidelityCheck("prefetch lowers the makespan against sync", ("sync", "prefetch"), _prefetch_beats_sync),
        FidelityCheck(f"prefetch within {BOUND_LIMIT:.0%} of the overlap bound", ("prefetch",), _prefetch_near_bound),
    ),
)
