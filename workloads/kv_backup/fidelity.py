"""What the fidelity report shows and checks for KV backup (``fidelity/report.py``)."""

from harness.workload import Fidelity, FidelityCheck, Value


def _async_beats_inline(v: Value) -> tuple[bool, str]:
    change = v("async_stream", "tpot_us") / v("inline", "tpot_us") - 1
    return change < 0, f"async_stream vs inline TPOT {change:+.2%}"


def _rank_only_loses_backups(v: Value) -> tuple[bool, str]:
    lost, ok = v("async_scheduler_rank_only", "backups_lost"), v("async_stream", "backups_lost")
    return lost > 0 and ok == 0, f"backups lost: rank-0-only {lost:.0f}, async_stream {ok:.0f}"


FIDELITY = Fidelity(
    shown_metrics=("tpot_us", "backup_lag_mean_us", "host_link_util", "backups_lost"),
    checks=(
        FidelityCheck(
            "async_stream lowers TPOT against inline (quoted: -5% on an H20)",
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
