"""Per-command host time read from a replay results folder's ops (sync policy): copy issue -> kernel issue,
kernel issue -> sync start, sync end -> next copy issue (free + alloc). Needs no GPU; prints, writes nothing.
Usage: python3 tools/ops_host_gaps.py RESULTS..."""

import sys

import numpy as np
import pandas as pd

for folder in sys.argv[1:]:
    ops = pd.read_parquet(f"{folder}/ops.parquet")
    for run_id, o in ops.groupby("run_id"):
        if ":sync:" not in run_id:
            continue
        o = o.sort_values("op_id")
        k, c, s = o[o.kind == "kernel"], o[o.kind == "copy_h2d"], o[o.kind == "host_sync"]
        n = min(len(k), len(c), len(s))
        copy_cost = np.median(k.issue_us.values[:n] - c.issue_us.values[:n])
        launch_cost = np.median(s.start_us.values[:n] - k.issue_us.values[:n])
        free_alloc = np.median(c.issue_us.values[1:n] - s.end_us.values[: n - 1])
        print(f"{run_id:45} copy {copy_cost:6.1f}  launch {launch_cost:6.1f}  free+alloc {free_alloc:6.1f}")
