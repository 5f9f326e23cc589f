"""The profiler calibration's shapes as counted on an H100 (CPU+CUDA mode) and per-event figures to build
synthetic rounds from (the tests of the profiler-fit estimators), and a calibration of given figures (theirs and
the compensation tests')."""

from harness.profile import ProfilerCalibration, Spread

TRUE_US = {"aten_op": 1.2, "runtime_call": 3.0, "range": 2.5, "graph_launch": 12.0, "graph_kernel": 0.9}
COUNTS = {
    "launch": {"aten_op": 64, "runtime_call": 65},
    "views": {"aten_op": 72, "runtime_call": 9},
    "composite": {"aten_op": 64, "runtime_call": 33},
    "ranges": {"aten_op": 32, "runtime_call": 33, "range": 32},
    "graph16": {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 16},
    "graph96": {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 96},
}


def calibration_of(floor_us: dict[str, float], **overhead_us: float) -> ProfilerCalibration:
    """A calibration whose per-event overheads are ``overhead_us`` (spread 0.1 µs each) over the floors ``floor_us``."""
    return ProfilerCalibration(
        torch="2.11.0",
        date="2026-12-08",
        rounds=9,
        overhead={k: Spread(median_us=v, spread_us=0.1) for k, v in overhead_us.items()},
        floor_us=floor_us,
    )
