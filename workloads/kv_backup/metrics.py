"""Metrics of one KV-backup run, computed from its ops timeline.

Run-level rows (``item = -1``) unless said otherwise:

* ``tpot_us``: time per output token, the mean interval between the ends of
  consecutive decode forwards (the slowest rank's, as TP ranks step together);
  ``makespan_us``: the whole run.
* ``backup_lag_mean_us`` / ``backup_lag_max_us``: for each (rank, step) that was
  backed up, from the end of the forward that wrote its KV to the end of the
  last layer copy holding it.
* ``bytes_backed_up``: D2H bytes of backup copies, all ranks.
* ``host_link_util``: share of the run during which a rank's D2H link carried a
  backup copy; run row = mean over ranks, ``item = rank`` per rank.
* ``backups_expected``, ``backups_done``, ``backups_lost``: one backup per
  (rank, step) is due; it is done when every layer's copy covering that step
  ran on that rank. ``backups_lost`` also has one row per rank (``item = rank``).
  The ``none`` policy backs nothing up, so all of its backups count as lost.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from harness.decode_backup import backup_count_rows, rank_share_rows
from harness.workload import MetricRow
from workloads.kv_backup.inputs import KvBackupInputs
from workloads.kv_backup.policies import BACKUP_RE, FORWARD_RE


def forward_ends(ops: pd.DataFrame, inputs: KvBackupInputs) -> np.ndarray:
    """End of each step's forward, ``[rank, step]``."""
    kernels = ops[ops["kind"] == "kernel"]
    steps = kernels["name"].str.extract(FORWARD_RE, expand=False)
    ends = np.full((inputs.tp_ranks, inputs.steps), np.nan)
    ends[kernels["device"].to_numpy(int), steps.astype(int).to_numpy()] = kernels["end_us"].to_numpy(float)
    return ends


def backup_copies(ops: pd.DataFrame) -> pd.DataFrame:
    """Backup copies with their rank, steps covered and layer."""
    d2h = ops[ops["kind"] == "copy_d2h"]
    parts = d2h["name"].str.extract(BACKUP_RE).dropna().astype(int)
    parts.columns = ["first", "last", "first_layer", "last_layer"]
    return d2h.loc[parts.index].assign(rank=d2h.loc[parts.index, "device"].astype(int), **parts)


def backup_ends(copies: pd.DataFrame, inputs: KvBackupInputs) -> np.ndarray:
    """When each (rank, step)'s backup completed (its last layer), NaN where a layer is missing."""
    done = np.full((inputs.tp_ranks, inputs.steps), np.nan)
    layers_seen = np.zeros((inputs.tp_ranks, inputs.steps), dtype=int)
    for row in copies.itertuples(index=False):
        steps = slice(row.first, row.last + 1)
        layers_seen[row.rank, steps] += row.last_layer - row.first_layer + 1
        done[row.rank, steps] = np.fmax(done[row.rank, steps], row.end_us)
    done[layers_seen < inputs.layers] = np.nan
    return done


def metrics(inputs: KvBackupInputs, ops: pd.DataFrame, result: None) -> list[MetricRow]:
    device_ops = ops[ops["device"] >= 0]
    makespan = float(ops["end_us"].max()) if len(ops) else 0.0
    fwd = forward_ends(device_ops, inputs)
    step_end = fwd.max(axis=0)
    copies = backup_copies(device_ops)
    saved = backup_ends(copies, inputs)
    lag = (saved - fwd)[~np.isnan(saved)]

    return [
        MetricRow("tpot_us", float(np.diff(step_end).mean()), "us"),
        MetricRow("makespan_us", makespan, "us"),
        MetricRow("backup_lag_mean_us", float(lag.mean()) if lag.size else 0.0, "us"),
        MetricRow("backup_lag_max_us", float(lag.max()) if lag.size else 0.0, "us"),
        MetricRow("bytes_backed_up", float(copies["bytes"].sum()), "bytes"),
        *backup_count_rows(saved),
        *rank_share_rows("host_link_util", copies, makespan, saved),
    ]
