"""Metrics and the per-request table of one continuous-batching run.

Run-level metrics (``item = -1``), times in µs:

* ``ttft_*``: first token − arrival; ``e2e_*``: last token − arrival;
  ``queue_*``: start of serving − arrival (the batch started, or the request was
  taken to join a running batch: the engine's ``queue_latency`` point, so a batch
  window counts as queueing); ``tpot_*``: (last − first token)
  / (output tokens − 1), per request with more than one token; ``itl_*``: every
  gap between consecutive tokens of a request. Each at p50, p90, p99, p999
  (99.9th percentile), plus ``*_mean``.
* ``agg_tok_s``: output tokens / (last token − first arrival);
  ``per_slot_tok_s``: 1e6 / mean ITL, the rate one decoding slot sees;
* ``batch_size_mean``, ``batches``, ``singleton_batches``, ``fast_path_batches``;
  ``batches_of_size`` (item = size: how many batches started with that many
  requests); ``decode_steps``, ``step_active_mean``, ``steps_with_active``
  (item = active slots: how many decode steps had that many);
* ``gpu_busy_frac``: share of the run (first arrival to last token) with a
  kernel on the GPU, from the ops timeline; ``max_slots_in_use``;
* ``completed_requests``, ``rejected_requests`` (rows set aside by
  ``on_invalid = "reject"``; listed in the requests table with their reason).

The ``requests`` table (schema :data:`REQUESTS_SCHEMA`) has one row per trace
row, served or rejected.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.timeline import union_us
from harness.workload import MetricRow
from workloads.continuous_batching.inputs import BatchingInputs
from workloads.continuous_batching.server import ServerLog

PERCENTILES = (("p50", 50.0), ("p90", 90.0), ("p99", 99.0), ("p999", 99.9))

REQUESTS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("request", pa.int64()),  # row of the request trace (or generated request number)
        ("status", pa.string()),  # "ok" (served) or "rejected" (set aside by on_invalid = "reject")
        ("reason", pa.string()),  # why it was rejected; "" when served
        ("client", pa.int64()),  # closed-loop client that sent it; -1 for open-loop arrivals
        ("prompt_tokens", pa.int64()),
        ("output_tokens", pa.int64()),  # tokens requested
        ("tokens_emitted", pa.int64()),  # tokens it received (equals output_tokens when served)
        ("arrival_us", pa.float64()),  # when it was queued on the server's request channel
        (
            "admitted_us",
            pa.float64(),
        ),  # when serving it began: its batch started, or it was taken to join a running one
        ("first_token_us", pa.float64()),
        ("last_token_us", pa.float64()),
        ("queue_us", pa.float64()),  # admitted - arrival
        ("ttft_us", pa.float64()),  # first token - arrival
        ("e2e_us", pa.float64()),  # last token - arrival
        ("tpot_us", pa.float64()),  # (last - first token) / (output_tokens - 1); NaN for one-token outputs
        ("batch", pa.int64()),  # number of the batch (generate-loop call) that served it
        ("slot", pa.int64()),  # KV slot it occupied
        ("admission", pa.string()),  # batch | fast_path | staggered_join | mid_batch_join | recycle
    ]
)


def requests_frame(inputs: BatchingInputs, log: ServerLog) -> pd.DataFrame:
    """One row per request (served, then rejected), without ``run_id``."""
    reqs = log.requests
    rows = inputs.requests.row
    f = pd.DataFrame(
        {
            "request": rows[[r.index for r in reqs]] if reqs else np.zeros(0, np.int64),
            "status": "ok",
            "reason": "",
            "client": [r.client for r in reqs],
            "prompt_tokens": [r.prompt_tokens for r in reqs],
            "output_tokens": [r.output_tokens for r in reqs],
            "tokens_emitted": [r.tokens for r in reqs],
            "arrival_us": [r.arrival_us for r in reqs],
            "admitted_us": [r.admitted_us for r in reqs],
            "first_token_us": [r.first_token_us for r in reqs],
            "last_token_us": [r.last_token_us for r in reqs],
            "batch": [r.batch for r in reqs],
            "slot": [r.slot for r in reqs],
            "admission": [r.admission for r in reqs],
        }
    )
    f["queue_us"] = f["admitted_us"] - f["arrival_us"]
    f["ttft_us"] = f["first_token_us"] - f["arrival_us"]
    f["e2e_us"] = f["last_token_us"] - f["arrival_us"]
    many = f["output_tokens"] > 1
    f["tpot_us"] = np.where(
        many, (f["last_token_us"] - f["first_token_us"]) / (f["output_tokens"] - 1).clip(lower=1), np.nan
    )
    if inputs.requests.rejected:
        rej = pd.DataFrame(
            {
                "request": [r.row for r in inputs.requests.rejected],
                "status": "rejected",
                "reason": [r.reason for r in inputs.requests.rejected],
                "client": -1,
                "prompt_tokens": [_as_int(r.prompt_tokens) for r in inputs.requests.rejected],
                "output_tokens": [_as_int(r.output_tokens) for r in inputs.requests.rejected],
                "tokens_emitted": 0,
                "arrival_us": [r.arrival_us for r in inputs.requests.rejected],
                "batch": -1,
                "slot": -1,
                "admission": "",
            }
        )
        f = pd.concat([f, rej], ignore_index=True)
    return f[[c for c in REQUESTS_SCHEMA.names if c != "run_id"]]


def _as_int(value: float) -> int:
    return int(value) if np.isfinite(value) else -1


def _percentile_rows(name: str, values: np.ndarray, *, owned: bool = False) -> list[MetricRow]:
    """The percentile and mean rows of the finite ``values``; ``owned``: the caller no longer needs the
    array, which may then be reordered in place (no copy of millions of ITLs)."""
    finite = np.isfinite(values)
    if not finite.all():
        values, owned = values[finite], True
    del finite
    if values.size == 0:
        return []
    mean = float(values.mean())  # before any reordering: the same sum in the same order
    # one call for every percentile: one partition of the values, not one each (the same numbers)
    at = np.percentile(values, [q for _, q in PERCENTILES], overwrite_input=owned)
    rows = [MetricRow(f"{name}_{label}_us", float(v), "us") for (label, _), v in zip(PERCENTILES, at)]
    rows.append(MetricRow(f"{name}_mean_us", mean, "us"))
    return rows


OPS_COLUMNS_READ = ("device", "kind", "start_us", "end_us")
"""The ops-table columns :func:`metrics` reads, of the devices' rows only (``device >= 0``): a caller may
build only these (``harness.backend.ops_frame(..., columns=OPS_COLUMNS_READ, host_rows=False)``)."""


def metrics(inputs: BatchingInputs, ops: pd.DataFrame, log: ServerLog) -> list[MetricRow]:
    return metrics_with(inputs, requests_frame(inputs, log), ops, log)


def metrics_with(inputs: BatchingInputs, requests: pd.DataFrame, ops: pd.DataFrame, log: ServerLog) -> list[MetricRow]:
    """:func:`metrics`, given the run's :func:`requests_frame` (a caller that keeps it builds it once)."""
    served = requests[requests["status"] == "ok"]
    rows: list[MetricRow] = []
    for name in ("ttft", "e2e", "queue", "tpot"):
        rows += _percentile_rows(name, served[f"{name}_us"].to_numpy(dtype=float))
    itl = log.itl_us()
    itl_count, itl_mean = itl.size, float(itl.mean()) if itl.size else 0.0
    rows += _percentile_rows("itl", itl, owned=True)
    del itl
    start = float(served["arrival_us"].min())
    end = float(served["last_token_us"].max())
    span = end - start
    tokens = int(served["tokens_emitted"].sum())
    rows += [
        MetricRow("agg_tok_s", tokens / span * 1e6 if span > 0 else 0.0, "tok/s"),
        MetricRow("per_slot_tok_s", 1e6 / itl_mean if itl_count else 0.0, "tok/s"),
        MetricRow("output_tokens", float(tokens), "count"),
        MetricRow("completed_requests", float((served["tokens_emitted"] == served["output_tokens"]).sum()), "count"),
        MetricRow("rejected_requests", float(len(inputs.requests.rejected)), "count"),
    ]
    sizes = np.frombuffer(log.batch_sizes, dtype=np.int32) if len(log.batch_sizes) else np.zeros(0, np.int32)
    fast = np.frombuffer(log.batch_fast_path, dtype=np.int8) if len(log.batch_fast_path) else np.zeros(0, np.int8)
    rows += [
        MetricRow("batches", float(sizes.size), "count"),
        MetricRow("batch_size_mean", float(sizes.mean()) if sizes.size else 0.0, "requests"),
        MetricRow("singleton_batches", float((sizes == 1).sum()), "count"),
        MetricRow("fast_path_batches", float(fast.sum()), "count"),
        MetricRow("max_slots_in_use", float(log.max_slots_in_use), "count"),
    ]
    for size, count in zip(*np.unique(sizes, return_counts=True)):
        rows.append(MetricRow("batches_of_size", float(count), "count", int(size)))
    active = np.frombuffer(log.step_active, dtype=np.int32) if len(log.step_active) else np.zeros(0, np.int32)
    rows += [
        MetricRow("decode_steps", float(active.size), "count"),
        MetricRow("step_active_mean", float(active.mean()) if active.size else 0.0, "slots"),
    ]
    for size, count in zip(*np.unique(active, return_counts=True)):
        rows.append(MetricRow("steps_with_active", float(count), "count", int(size)))
    kernels = ops.loc[(ops["device"] >= 0) & (ops["kind"] == "kernel"), ["start_us", "end_us"]]
    rows.append(MetricRow("gpu_busy_frac", union_us(kernels) / span if span > 0 else 0.0, "fraction"))
    return rows


def tables(inputs: BatchingInputs, ops: pd.DataFrame, log: ServerLog) -> dict[str, pd.DataFrame]:
    return {"requests": requests_frame(inputs, log)}
