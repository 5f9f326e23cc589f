"""tools/step_python_gaps.py (no GPU): a recorded step loop's own Python from a raw profiler trace."""

from __future__ import annotations

import runpy

from harness.paths import REPO_ROOT

step_gaps = runpy.run_path(str(REPO_ROOT / "tools" / "step_python_gaps.py"))["step_gaps"]


def _x(cat: str, name: str, ts: float, dur: float) -> dict:
    return {"ph": "X", "cat": cat, "name": name, "ts": ts, "dur": dur}


def _step(n: int, t0: float, head_us: float, copy_end_us: float, sync_at_us: float) -> list[dict]:
    """A recorded step from t0: its range, a capturing query, its first launch, the backup's copy_ and the sync."""
    return [
        _x("user_annotation", f"step{n}", t0, sync_at_us + 300.0),
        _x("cuda_runtime", "cudaStreamIsCapturing", t0 + 1.0, 0.3),  # not a launch
        _x("cuda_runtime", "cudaLaunchKernel", t0 + head_us, 4.0),
        _x("cpu_op", "aten::copy_", t0 + copy_end_us - 10.0, 10.0),
        _x("cuda_runtime", "cudaMemcpyAsync", t0 + copy_end_us - 6.0, 4.0),
        _x("cuda_runtime", "cudaStreamSynchronize", t0 + sync_at_us, 300.0),
    ]


def test_the_loop_the_head_and_the_sync_line_of_each_step_after_the_first():
    # step k starts 13 µs after step k-1's sync returns; its first launch 30 µs into it; the sync 31 µs after copy_
    events, t = [], 0.0
    for n in range(3):
        events += _step(n, t, head_us=30.0, copy_end_us=100.0, sync_at_us=131.0)
        t += 131.0 + 300.0 + 13.0
    events.append({"ph": "i", "cat": "cpu_op", "name": "aten::copy_", "ts": 5.0})  # an instant: not a span
    gaps = step_gaps(events)
    assert gaps == {"loop": [13.0, 13.0], "head": [30.0, 30.0], "copy_to_sync": [31.0, 31.0]}


def test_a_cuda_only_trace_has_steps_between_syncs_and_no_loop_term():
    events, t = [], 0.0
    for n in range(3):
        step = [e for e in _step(n, t, head_us=30.0, copy_end_us=100.0, sync_at_us=131.0)
                if e["cat"] in ("cuda_runtime", "cuda_driver")]  # fmt: skip
        events += step
        t += 131.0 + 300.0 + 13.0
    gaps = step_gaps(events)
    # from the previous sync's return: the 13 µs loop and the 30 µs head together; the memcpy call's end to the sync
    assert gaps == {"loop": [], "head": [43.0, 43.0], "copy_to_sync": [33.0, 33.0]}
