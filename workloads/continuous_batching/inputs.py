"""Inputs of the continuous-batching workload: the requests and the step cost model.

The ``[workload]`` table (see :class:`BatchingParams`)::

    kind = "continuous_batching"
    cost_model = "engine-pmat-quoted"   # traces/cost_models/<name>.toml, or a .toml path
    arrivals = "closed_loop"            # trace | poisson | bursty | closed_loop
    clients = 4                         # closed_loop: concurrent clients
    think_us = 300.0                    # closed_loop: mean (exponential) delay before each send
    requests = 400                      # generated requests (or the first N rows of a trace)
    prompt_tokens = 24                  # generated prompts: a count or [lo, hi]
    output_tokens = [128, 384]          # generated outputs: a count or [lo, hi]
    # trace = "../requests/x.parquet"   # rows' tokens (and, for arrivals = "trace", their times)
    # rate_per_s = 5.0; cv = 3.0        # poisson / bursty
    # arrival_scale = 2.0               # stretch the trace's arrival times (half the rate)
    # on_invalid = "reject"             # bad rows: "error" (default) names the row and stops;
    #                                   # "reject" sets them aside, counted in the metrics

With ``arrivals = "trace"`` requests arrive at the trace's times; with poisson or
bursty the times are generated (tokens from the trace when one is given); with
closed_loop each of ``clients`` host threads sends a request, waits for its last
token, waits ``think_us`` (exponential, mean) and sends the next, taking requests
in trace/generated order.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pydantic

from harness.errors import SPEC_WORKLOAD, InputError
from harness.limits import file_rows
from harness.workload import PrepareContext, WorkEstimate, WorkloadParams
from workloads.continuous_batching.cost_model import CostModel, load_cost_model
from workloads.continuous_batching.generators import (
    gamma_arrivals_us,
    poisson_arrivals_us,
    token_counts,
)
from workloads.continuous_batching.requests import (
    RequestTable,
    ScreenedRequests,
    read_requests,
    screen,
)

TokenSpec = int | tuple[int, int]


class BatchingParams(WorkloadParams):
    cost_model: str
    arrivals: Literal["trace", "poisson", "bursty", "closed_loop"] = "trace"
    trace: str | None = None
    requests: int | None = pydantic.Field(default=None, ge=1)
    rate_per_s: float | None = pydantic.Field(default=None, gt=0)
    cv: float | None = pydantic.Field(default=None, gt=0)
    clients: int | None = pydantic.Field(default=None, ge=1)
    think_us: float = pydantic.Field(default=0.0, ge=0)
    arrival_scale: float = pydantic.Field(default=1.0, gt=0)  # multiplies trace arrival times (2.0: half the rate)
    prompt_tokens: TokenSpec | None = None
    output_tokens: TokenSpec | None = None
    context_limit_tokens: int | None = pydantic.Field(default=None, ge=2)
    on_invalid: Literal["error", "reject"] = "error"

    @pydantic.field_validator("prompt_tokens", "output_tokens")
    @classmethod
    def _positive(cls, v: TokenSpec | None) -> TokenSpec | None:
        values = (v,) if isinstance(v, int) else (v or ())
        if any(x < 1 for x in values):
            raise ValueError(f"token counts must be >= 1, got {v}")
        if isinstance(v, tuple) and v[0] > v[1]:
            raise ValueError(f"token range {list(v)} is empty (lo > hi)")
        return v

    @pydantic.model_validator(mode="after")
    def _consistent(self) -> BatchingParams:
        generated_tokens = self.prompt_tokens is not None or self.output_tokens is not None
        if self.trace is not None and generated_tokens:
            raise ValueError("give either 'trace' or 'prompt_tokens'/'output_tokens', not both")
        if self.trace is None:
            if self.prompt_tokens is None or self.output_tokens is None:
                raise ValueError("without 'trace', give both 'prompt_tokens' and 'output_tokens'")
            if self.requests is None:
                raise ValueError("without 'trace', give 'requests' (how many to generate)")
        if self.arrivals == "trace" and self.trace is None:
            raise ValueError("arrivals = 'trace' needs 'trace'")
        if self.arrivals in ("poisson", "bursty") and self.rate_per_s is None:
            raise ValueError(f"arrivals = '{self.arrivals}' needs 'rate_per_s'")
        if self.arrivals == "bursty" and self.cv is None:
            raise ValueError("arrivals = 'bursty' needs 'cv' (coefficient of variation of inter-arrival times)")
        if self.arrivals == "closed_loop" and self.clients is None:
            raise ValueError("arrivals = 'closed_loop' needs 'clients'")
        return self


OPS_PER_TOKEN = 2  # a decode step's launch and sync when every request runs alone (batches share them)
OPS_PER_REQUEST = 8
BYTES_PER_REQUEST = 600  # the request's inputs, its row of the requests table and its metric rows
# Memory per op row until the results are written: nearly every row is half of a decode step (a kernel
# and its host sync, one step record in harness.oplog.OpLog, ~24 bytes a row) until the ops table
# (~110 bytes a row) and its Arrow copy are made. Measured peak RSS less the interpreter's (~133 MB),
# per op: harness sim of 10,000 Poisson requests (1.34 M ops) 270; bench-batching 233 (the 19,366-request
# Azure conversation trace, 2.1 M ops: 221). With a margin:
BYTES_PER_OP = 320
ASSUMED_OUTPUT_TOKENS = 512  # mean output of a trace too big to read its column for the estimate


def estimate(ctx: PrepareContext) -> WorkEstimate:
    """One run's size from the request count and the mean output length (ops follow decode steps)."""
    params = ctx.params
    if params.trace is None:
        n = params.requests or 0
        tokens = params.output_tokens
        mean_output = float(sum(tokens) / 2 if isinstance(tokens, tuple) else tokens or 0)
        driver = "requests" if n >= mean_output else "output_tokens"
    else:
        path = (ctx.spec_dir / params.trace).resolve()
        rows = file_rows(path) or 0
        n = min(rows, params.requests) if params.requests is not None else rows
        mean_output = _mean_output_tokens(path, rows)
        driver = "requests" if params.requests is not None and params.requests < rows else "trace"
    ops = int(n * (OPS_PER_TOKEN * mean_output + OPS_PER_REQUEST)) + 16
    return WorkEstimate(ops, n * BYTES_PER_REQUEST, driver, bytes_per_op=BYTES_PER_OP)


def _mean_output_tokens(path: Path, rows: int) -> float:
    """The trace's mean ``output_tokens`` (one column read), or an assumption for a very large or unreadable file."""
    if rows == 0 or rows > 50_000_000:
        return ASSUMED_OUTPUT_TOKENS
    try:
        if path.suffix.lower() == ".csv":
            header = [c.strip() for c in pd.read_csv(path, nrows=0).columns]
            column = next((i for i, c in enumerate(header) if c in ("output_tokens", "GeneratedTokens")), None)
            if column is None:
                return ASSUMED_OUTPUT_TOKENS
            values = pd.read_csv(path, usecols=[column]).iloc[:, 0]
        else:
            values = pq.read_table(path, columns=["output_tokens"]).column(0).to_pandas()
        mean = float(pd.to_numeric(values, errors="coerce").clip(lower=0).mean())
    except Exception:  # unreadable or malformed: prepare names the problem
        return ASSUMED_OUTPUT_TOKENS
    return mean if mean > 0 else ASSUMED_OUTPUT_TOKENS


@dataclass(frozen=True)
class BatchingInputs:
    requests: ScreenedRequests  # served requests; arrival_us unused for closed loop
    cost: CostModel
    context_limit_tokens: int
    closed_loop_clients: int  # 0: open loop (arrivals at arrival_us)
    think_us: float
    source: str


def prepare(ctx: PrepareContext) -> BatchingInputs:
    params, spec_dir, seed = ctx.params, ctx.spec_dir, ctx.seed
    try:
        cost = load_cost_model(params.cost_model, spec_dir)
    except InputError as err:
        if "not found" not in err.message:
            raise
        raise InputError(SPEC_WORKLOAD, "field 'cost_model'", f"{err.source}: {err.message}") from None
    limit = params.context_limit_tokens or cost.context_limit_tokens
    rng = np.random.default_rng(seed)
    if params.trace is not None:
        table = read_requests((spec_dir / params.trace).resolve())
        if params.requests is not None:
            n = min(params.requests, len(table))
            table = RequestTable(table.arrival_us[:n], table.prompt_tokens[:n], table.output_tokens[:n], table.source)
    else:
        n = params.requests or 0
        try:
            prompts = token_counts(n, params.prompt_tokens, rng)
            outputs = token_counts(n, params.output_tokens, rng)
        except ValueError as err:
            raise InputError(SPEC_WORKLOAD, "", str(err)) from None
        table = RequestTable(np.zeros(n), prompts.astype(float), outputs.astype(float), "generated")
    if len(table) == 0:
        raise InputError(table.source if params.trace else SPEC_WORKLOAD, "", "no requests to serve")
    if params.arrivals in ("poisson", "bursty", "closed_loop"):
        n = len(table)
        if params.arrivals == "poisson":
            times = poisson_arrivals_us(n, params.rate_per_s, rng)
        elif params.arrivals == "bursty":
            times = gamma_arrivals_us(n, params.rate_per_s, params.cv, rng)
        else:
            times = np.zeros(n)  # set when each client sends
        table = RequestTable(times, table.prompt_tokens, table.output_tokens, table.source)
    if params.arrival_scale != 1.0:
        table = RequestTable(
            table.arrival_us * params.arrival_scale, table.prompt_tokens, table.output_tokens, table.source
        )
    screened = screen(table, limit, params.on_invalid)
    if len(screened) == 0:
        raise InputError(
            table.source,
            "",
            f"every one of its {len(table)} requests was rejected "
            f"(first: row {screened.rejected[0].row}, {screened.rejected[0].reason})",
        )
    return BatchingInputs(
        screened, cost, limit, params.clients if params.arrivals == "closed_loop" else 0, params.think_us, table.source
    )
