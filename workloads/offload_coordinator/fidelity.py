"""What the fidelity report shows and checks for the offload coordinator (``fidelity/report.py``)."""

from harness.workload import Fidelity, FidelityCheck, Value

SERIAL_CAP_MIBPS = 28.0  # one thread's entropy rate in the fidelity spec (the reference's quoted cap)


def _fix_shares_more(v: Value) -> tuple[bool, str]:
    fix, bug = v("streaming_backpressure", "gpu_share"), v("streaming_ratchet", "gpu_share")
    late = v("streaming_ratchet", "gpu_share_late")
    return fix > 2 * bug and late == 0, f"GPU share fix {fix:.3f}, ratchet {bug:.3f} (second half {late:.3f})"


def _serial_is_capped(v: Value) -> tuple[bool, str]:
    serial, cpu = v("serial_gpu_coordinator", "throughput_mibps"), v("cpu_only", "throughput_mibps")
    fix = v("streaming_backpressure", "throughput_mibps")
    return (
        serial <= SERIAL_CAP_MIBPS and serial < cpu < fix,
        f"MiB/s: serial {serial:.1f}, cpu_only {cpu:.1f}, fix {fix:.1f}",
    )


FIDELITY = Fidelity(
    shown_metrics=(
        "throughput_mibps",
        "gpu_share",
        "gpu_share_late",
        "gpu_busy_frac",
        "worker_busy_frac",
        "latency_p50_us",
        "pressure_final",
    ),
    checks=(
        FidelityCheck(
            "the fix's GPU share far above the ratchet's, which routes nothing in the second half",
            ("streaming_backpressure", "streaming_ratchet"),
            _fix_shares_more,
        ),
        FidelityCheck(
            f"serial coordinator capped (<= {SERIAL_CAP_MIBPS:g} MiB/s) below cpu_only, below the fix",
            ("serial_gpu_coordinator", "cpu_only", "streaming_backpressure"),
            _serial_is_capped,
        ),
    ),
)
