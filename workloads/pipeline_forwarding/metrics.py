"""Metrics of one pipeline-forwarding run, computed from its ops timeline.

Run-level rows (``item = -1``):

* ``tpot_us``: time per output token of one sequence, the mean interval between
  its consecutive tokens leaving the last stage (end of their ``token_out``
  copy); ``tokens_per_s`` is its inverse, per sequence.
* ``tokens_emitted`` and ``tokens_out_of_order`` (pairs of consecutive
  emissions whose (token, sequence) order is reversed; 0 when order holds).
* ``makespan_us``.

Per-stage breakdown (``item = stage``; steady state: tokens 1.., averaged per
decode round, i.e. per output token of every sequence), a partition of the
stage host thread's time:

* ``stage_compute_us``: its kernels;
* ``stage_transfer_us``: its H2D/D2H copies, plus the part of its wait for
  input during which the incoming network hop was carrying that input;
* ``stage_encode_us``, ``stage_allocate_us``, ``stage_setup_us``: host work;
* ``stage_wait_us``: the rest of its wait for input (upstream stages working);
* ``stage_other_us``: TPOT minus all of the above: runtime-call costs
  (launch, copy issue, sync wake-up). It can dip a few µs below zero because
  call costs overlap the copies they issue.

The five work categories also get a row with ``item = -1``: their sum over stages.
"""

from __future__ import annotations

import pandas as pd

from harness.workload import MetricRow
from workloads.pipeline_forwarding.inputs import PipelineInputs
from workloads.pipeline_forwarding.policies import ITEM_RE, PipelineResult, link_name, stage_name

WORK = ("compute", "transfer", "encode", "allocate", "setup")


def with_items(ops: pd.DataFrame) -> pd.DataFrame:
    """Ops named after an item, with ``what``, ``seq`` and ``tok`` columns."""
    parts = ops["name"].str.extract(ITEM_RE)
    parts.columns = ["what", "seq", "tok"]
    keep = parts["what"].notna()
    items = ops[keep].assign(
        what=parts.loc[keep, "what"], seq=parts.loc[keep, "seq"].astype(int), tok=parts.loc[keep, "tok"].astype(int)
    )
    return items.assign(duration=items["end_us"] - items["start_us"])


def emissions(items: pd.DataFrame) -> pd.DataFrame:
    """Tokens leaving the last stage, in the order they left."""
    out = items[(items["what"] == "token_out") & (items["device"] >= 0)]
    return out.sort_values(["end_us", "op_id"], kind="stable")


def out_of_order(emitted: pd.DataFrame) -> int:
    keys = list(zip(emitted["tok"], emitted["seq"]))
    return sum(1 for a, b in zip(keys, keys[1:]) if b < a)


def tpot_us(emitted: pd.DataFrame, tokens: int) -> float:
    by_seq = emitted.sort_values(["seq", "tok"]).groupby("seq")["end_us"]
    return float(((by_seq.max() - by_seq.min()) / (tokens - 1)).mean())


def _overlap(a0: float, a1: float, b0: float, b1: float) -> float:
    return max(0.0, min(a1, b1) - max(a0, b0))


def stage_breakdown(
    inputs: PipelineInputs, items: pd.DataFrame, waits: list, stage: int, tpot: float
) -> dict[str, float]:
    rounds = inputs.tokens - 1
    steady = items[items["tok"] >= 1]
    device = steady[(steady["device"] >= 0) & (steady["stream"] == stage_name(stage))]
    host = steady[(steady["device"] < 0) & (steady["thread"] == stage_name(stage))]
    copies = device["kind"].isin(["copy_h2d", "copy_d2h"])
    incoming = link_name((stage - 1) % inputs.stages)
    net = items[(items["thread"] == incoming) & (items["what"] == "net")].set_index(["seq", "tok"])
    blocked = carried = 0.0
    for (seq, tok), start, end in waits:
        if stage > 0 and tok < 1:
            continue  # start-up: the first token's wait is not steady state
        hop = net.loc[(seq, tok)]
        blocked += end - start
        carried += _overlap(start, end, float(hop["start_us"]), float(hop["end_us"]))
    parts = {
        "compute": float(device.loc[~copies, "duration"].sum()) / rounds,
        "transfer": (float(device.loc[copies, "duration"].sum()) + carried) / rounds,
        "encode": float(host.loc[host["what"] == "encode", "duration"].sum()) / rounds,
        "allocate": float(host.loc[host["what"] == "allocate", "duration"].sum()) / rounds,
        "setup": float(host.loc[host["what"] == "setup", "duration"].sum()) / rounds,
        "wait": (blocked - carried) / rounds,
    }
    parts["other"] = tpot - sum(parts.values())
    return parts


def metrics(inputs: PipelineInputs, ops: pd.DataFrame, result: PipelineResult) -> list[MetricRow]:
    items = with_items(ops)
    emitted = emissions(items)
    tpot = tpot_us(emitted, inputs.tokens)
    rows = [
        MetricRow("tpot_us", tpot, "us"),
        MetricRow("tokens_per_s", 1e6 / tpot if tpot > 0 else 0.0, "1/s"),
        MetricRow("tokens_emitted", float(len(emitted)), "count"),
        MetricRow("tokens_out_of_order", float(out_of_order(emitted)), "count"),
        MetricRow("makespan_us", float(ops["end_us"].max()), "us"),
    ]
    totals = dict.fromkeys(WORK, 0.0)
    for stage in range(inputs.stages):
        parts = stage_breakdown(inputs, items, result.waits[stage], stage, tpot)
        for name, value in parts.items():
            rows.append(MetricRow(f"stage_{name}_us", value, "us", stage))
            if name in totals:
                totals[name] += value
    rows += [MetricRow(f"stage_{name}_us", value, "us") for name, value in totals.items()]
    return rows
