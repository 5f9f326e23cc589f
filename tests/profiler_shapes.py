"""The profiler calibration's shapes as counted on an H100 (CPU+CUDA mode) and per-event figures to build
synthetic rounds from: shared by the tests of the profiler-fit estimators."""

TRUE_US = {"aten_op": 1.2, "runtime_call": 3.0, "range": 2.5, "graph_launch": 12.0, "graph_kernel": 0.9}
COUNTS = {
    "launch": {"aten_op": 64, "runtime_call": 65},
    "views": {"aten_op": 72, "runtime_call": 9},
    "composite": {"aten_op": 64, "runtime_call": 33},
    "ranges": {"aten_op": 32, "runtime_call": 33, "range": 32},
    "graph16": {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 16},
    "graph96": {"runtime_call": 3, "graph_launch": 1, "graph_kernel": 96},
}
