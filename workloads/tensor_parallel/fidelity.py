"""What the fidelity report shows and checks for tensor-parallel decode (``fidelity/report.py``).

Issue 26's bar: simulated TPOT within 5% of the replay at TP 4 and 8, and the KV-backup policies
ranking the same on both sides (needs the multi-GPU replay, ``replay/distributed.py``).
"""

from harness.decode_backup import RANK_ONLY_LOSES_BACKUPS, async_beats_inline
from harness.workload import ErrorBound, Fidelity, FidelityCheck


FIDELITY = Fidelity(
    shown_metrics=("tpot_us", "collective_fraction", "backup_lag_mean_us", "backups_lost"),
    error_bounds=(ErrorBound("tpot_us", 0.05, 0.05),),
    ranked_metrics=("tpot_us",),
    checks=(
        FidelityCheck(
            "async_stream lowers TPOT against inline on every TP rank",
            ("inline", "async_stream"),
            async_beats_inline,
        ),
        RANK_ONLY_LOSES_BACKUPS,
    ),
)
