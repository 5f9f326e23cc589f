"""tools/graph_launch_split_probe.py's trace reading (no GPU): each graph launch's call and its first kernel."""

from __future__ import annotations

import runpy

from harness.paths import REPO_ROOT

split_from_trace = runpy.run_path(str(REPO_ROOT / "tools" / "graph_launch_split_probe.py"))["split_from_trace"]


def test_each_launch_is_paired_with_its_earliest_kernel_by_correlation():
    events = [
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 100.0, "dur": 200.0,
         "args": {"correlation": 7}},
        {"ph": "X", "cat": "kernel", "name": "add", "ts": 125.0, "dur": 1.0, "args": {"correlation": 7}},
        {"ph": "X", "cat": "kernel", "name": "add", "ts": 119.5, "dur": 1.0, "args": {"correlation": 7}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 1000.0, "dur": 80.0,
         "args": {"correlation": 9}},
        {"ph": "X", "cat": "kernel", "name": "add", "ts": 1086.0, "dur": 1.0, "args": {"correlation": 9}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", "ts": 2000.0, "dur": 5.0,
         "args": {"correlation": 11}},  # not a graph launch
        {"ph": "X", "cat": "kernel", "name": "k", "ts": 2010.0, "dur": 1.0, "args": {"correlation": 11}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaGraphLaunch", "ts": 3000.0, "dur": 80.0,
         "args": {"correlation": 12}},  # no kernel linked: left out
        {"ph": "i", "cat": "kernel", "name": "marker", "ts": 1.0, "args": {"correlation": 7}},
    ]  # fmt: skip
    assert split_from_trace(events) == [(200.0, 19.5), (80.0, 86.0)]
