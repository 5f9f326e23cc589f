"""Metrics of one tensor-parallel decode run, from its ops timeline.

Run-level rows (``item = -1``) unless said otherwise:

* ``tpot_us``: time per output token, the mean interval between the ends of
  consecutive steps (a step ends with its last all-reduce on the slowest rank);
  ``makespan_us``: the whole run.
* ``collective_fraction``: share of the run a rank's stream spent in all-reduces
  (waiting for the other ranks included); run row = mean over ranks, ``item = rank``.
* ``backup_lag_mean_us``: from a step's end to the end of the copy backing it up.
* ``bytes_backed_up``; ``backups_expected``, ``backups_done``, ``backups_lost``
  (one backup per rank and step; ``backups_lost`` also per rank, ``item = rank``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.decode_backup import backup_count_rows, rank_share_rows
from harness.workload import MetricRow
from workloads.tensor_parallel.inputs import TensorParallelInputs
from workloads.tensor_parallel.policies import BACKUP_RE, LAYER_RE


def step_ends(ops: pd.DataFrame, inputs: TensorParallelInputs) -> np.ndarray:
    """End of each step's last all-reduce, ``[rank, step]``."""
    last = ops[(ops["kind"] == "collective") & ops["name"].str.startswith("ar_mlp[")]
    parts = last["name"].str.extract(LAYER_RE)
    last = last[parts[2].astype(int) == inputs.layers - 1]
    steps = parts.loc[last.index, 1].astype(int).to_numpy()
    ends = np.full((inputs.tp_ranks, inputs.steps), np.nan)
    ends[last["device"].to_numpy(int), steps] = last["end_us"].to_numpy(float)
    return ends


def backup_ends(ops: pd.DataFrame, inputs: TensorParallelInputs) -> tuple[np.ndarray, pd.DataFrame]:
    """When each (rank, step)'s backup copy ended (NaN: never), and the backup copies."""
    d2h = ops[ops["kind"] == "copy_d2h"]
    parts = d2h["name"].str.extract(BACKUP_RE).dropna().astype(int)
    copies = d2h.loc[parts.index]
    done = np.full((inputs.tp_ranks, inputs.steps), np.nan)
    for rank, first, last, end in zip(copies["device"], parts[0], parts[1], copies["end_us"]):
        done[int(rank), first : last + 1] = end
    return done, copies


def metrics(inputs: TensorParallelInputs, ops: pd.DataFrame, result: None) -> list[MetricRow]:
    device_ops = ops[ops["device"] >= 0]
    makespan = float(ops["end_us"].max()) if len(ops) else 0.0
    ends = step_ends(device_ops, inputs)
    saved, copies = backup_ends(device_ops, inputs)
    lag = (saved - ends)[~np.isnan(saved)]
    return [
        MetricRow("tpot_us", float(np.diff(ends.max(axis=0)).mean()), "us"),
        MetricRow("makespan_us", makespan, "us"),
        MetricRow("backup_lag_mean_us", float(lag.mean()) if lag.size else 0.0, "us"),
        MetricRow("bytes_backed_up", float(copies["bytes"].sum()), "bytes"),
        *backup_count_rows(saved),
        *rank_share_rows("collective_fraction", device_ops[device_ops["kind"] == "collective"], makespan, saved),
    ]
