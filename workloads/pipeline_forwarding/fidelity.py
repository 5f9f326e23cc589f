"""What the fidelity report shows and checks for pipeline forwarding (``fidelity/report.py``)."""

from harness.workload import Fidelity, FidelityCheck, Value


def _overlap_then_reuse(v: Value) -> tuple[bool, str]:
    a, r, o = (v(p, "tpot_us") for p in ("alloc_per_token", "reuse_buffers", "overlapped"))
    return o < r < a, (
        f"TPOT ms: alloc {a / 1e3:.3f}, reuse {r / 1e3:.3f} ({r / a - 1:+.2%}), "
        f"overlapped {o / 1e3:.3f} ({o / r - 1:+.2%} vs reuse)"
    )


FIDELITY = Fidelity(
    shown_metrics=(
        "tpot_us",
        "stage_compute_us",
        "stage_transfer_us",
        "stage_setup_us",
        "stage_wait_us",
        "tokens_out_of_order",
    ),
    checks=(
        FidelityCheck(
            "TPOT: overlapped < reuse_buffers < alloc_per_token",
            ("alloc_per_token", "reuse_buffers", "overlapped"),
            _overlap_then_reuse,
        ),
    ),
)
