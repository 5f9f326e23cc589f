"""What the fidelity report shows and checks for KV backup (``fidelity/report.py``)."""

from harness.decode_backup import RANK_ONLY_LOSES_BACKUPS, async_beats_inline
from harness.workload import Fidelity, FidelityCheck


FIDELITY = Fidelity(
    shown_metrics=("tpot_us", "backup_lag_mean_us", "host_link_util", "backups_lost"),
    checks=(
        FidelityCheck(
            "async_stream lowers TPOT against inline (quoted: -5% on an H20)",
            ("inline", "async_stream"),
            async_beats_inline,
        ),
        RANK_ONLY_LOSES_BACKUPS,
    ),
)
