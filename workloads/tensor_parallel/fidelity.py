"""What the fidelity report shows and checks for tensor-parallel decode (``fidelity/report.py``).

Issue 26's bar: simulated TPOT within 5% of the replay at TP 4 and 8, and the KV-backup policies
ranking the same on both sides (needs the multi-GPU replay, ``replay/distributed.py``).
"""

from harness.workload import ErrorBound, Fidelity, FidelityCheck, Value


def _async_beats_inline(v: Value) -> tuple[bool, str]:
    change = v("async_stream", "tpot_us") / v("inline", "tpot_us") - 1
    return change < 0, f"async_stream vs inline TPOT {change:+.2%}"


def _rank_only_loses_backups(v: Value) -> tuple[bool, str]:
    lost, ok = v("async_scheduler_rank_only", "backups_lost"), v("async_stream", "backups_lost")
    return lost > 0 and ok == 0, f"backups lost: rank-0-only {lost:.0f}, async_stream {ok:.0f}"


FIDELITY = Fidelity(
    shown_metrics=("tpot_us", "collective_fraction", "backup_lag_mean_us", "backups_lost"),
    error_bounds=(ErrorBound("tpot_us", 0.05, 0.05),),
    ranked_metrics=("tpot_us",),
    checks=(
        FidelityCheck(
            "async_stream lowers TPOT against inline on every TP rank",
            ("inline", "async_stream"),
            _async_beats_inline,
        ),
        FidelityCheck(
            "backing up on the scheduler rank only loses the other ranks' backups",
            ("async_scheduler_rank_only", "async_stream"),
            _rank_only_loses_backups,
        ),
    ),
)
