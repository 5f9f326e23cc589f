"""Request traces: when each LLM request arrives and how many tokens it carries.

A request trace is a Parquet file (format version 1):

==============  =======  =====================================================
column          type     meaning
==============  =======  =====================================================
arrival_us      float64  when the request reaches the server, µs from the
                         trace's start; non-decreasing
prompt_tokens   int64    tokens in the prompt (>= 1)
output_tokens   int64    tokens the request generates (>= 1)
==============  =======  =====================================================

File metadata (Parquet key-value): ``harness.requests.format_version`` ("1"),
``harness.requests.source`` (where the rows came from), ``harness.requests.date``
and optionally ``harness.requests.description``.

CSV files are read by :func:`read_request_csv`: either the columns above, or the
public Azure LLM inference trace layout ``TIMESTAMP,ContextTokens,GeneratedTokens``
(timestamps become µs since the first row).

Bad rows (tokens < 1 or missing, NaN / negative / decreasing arrivals, a prompt
plus output longer than the context limit) are checked by :func:`screen`: in
``error`` mode the first one raises an :class:`InputError` naming its row; in
``reject`` mode every bad row is set aside with its reason, to be counted in
the metrics and listed in the requests table with ``status = "rejected"``.
Nothing is ever dropped silently.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from harness.errors import InputError
from harness.limits import MAX_DURATION_US
from harness.trace import read_stamped_parquet

REQUESTS_FORMAT_VERSION = "1"
REQUEST_COLUMNS = ("arrival_us", "prompt_tokens", "output_tokens")
AZURE_COLUMNS = ("TIMESTAMP", "ContextTokens", "GeneratedTokens")
_SCHEMA = pa.schema([("arrival_us", pa.float64()), ("prompt_tokens", pa.int64()), ("output_tokens", pa.int64())])


@dataclass(frozen=True)
class RequestTable:
    """Rows as read, before screening: float arrays so that NaN can be reported."""

    arrival_us: np.ndarray
    prompt_tokens: np.ndarray
    output_tokens: np.ndarray
    source: str  # file path or generator description

    def __len__(self) -> int:
        return len(self.arrival_us)


@dataclass(frozen=True)
class Rejection:
    row: int
    arrival_us: float
    prompt_tokens: float
    output_tokens: float
    reason: str


@dataclass(frozen=True)
class ScreenedRequests:
    """The requests a run serves (``row`` maps each back to its trace row) and those set aside."""

    row: np.ndarray  # int64, row of the source table
    arrival_us: np.ndarray  # float64, non-decreasing
    prompt_tokens: np.ndarray  # int64 >= 1
    output_tokens: np.ndarray  # int64 >= 1
    rejected: tuple[Rejection, ...]
    source: str

    def __len__(self) -> int:
        return len(self.row)


def _frame_to_table(frame: pd.DataFrame, source: str, path: Path) -> RequestTable:
    arrays = []
    for column in REQUEST_COLUMNS:
        values = pd.to_numeric(frame[column], errors="coerce").to_numpy(dtype=float)
        bad = np.isnan(values) & frame[column].notna().to_numpy()
        if bad.any():
            i = int(bad.argmax())
            raise InputError(path, f"row {i}, column '{column}'", f"not a number: {frame[column].iloc[i]!r}")
        arrays.append(values)
    return RequestTable(arrays[0], arrays[1], arrays[2], source)


def read_request_csv(path: Path) -> RequestTable:
    """Read a CSV of requests: harness columns or the Azure LLM inference trace layout."""
    path = Path(path)
    if not path.exists():
        raise InputError(path, "", "request CSV not found")
    try:
        frame = pd.read_csv(path)
    except Exception as err:  # pandas raises several types for malformed files
        raise InputError(path, "", f"not a readable CSV file ({err})") from None
    columns = [c.strip() for c in frame.columns]
    frame.columns = columns
    if all(c in columns for c in REQUEST_COLUMNS):
        return _frame_to_table(frame, str(path), path)
    if all(c in columns for c in AZURE_COLUMNS):
        stamps = pd.to_datetime(frame["TIMESTAMP"], errors="coerce")
        if (bad := stamps.isna().to_numpy()).any():
            i = int(bad.argmax())
            raise InputError(path, f"row {i}, column 'TIMESTAMP'", f"not a timestamp: {frame['TIMESTAMP'].iloc[i]!r}")
        origin = stamps.iloc[0]
        arrival = (stamps - origin).dt.total_seconds().to_numpy() * 1e6 if len(stamps) else np.zeros(0)
        renamed = pd.DataFrame(
            {"arrival_us": arrival, "prompt_tokens": frame["ContextTokens"], "output_tokens": frame["GeneratedTokens"]}
        )
        return _frame_to_table(renamed, f"{path} (Azure LLM inference trace layout)", path)
    raise InputError(
        path,
        "header",
        f"expected columns {', '.join(REQUEST_COLUMNS)} or the Azure layout {', '.join(AZURE_COLUMNS)}; "
        f"found {', '.join(columns)}",
    )


def read_request_parquet(path: Path) -> RequestTable:
    path = Path(path)
    table, _ = read_stamped_parquet(
        path, "request trace", "harness.requests", REQUESTS_FORMAT_VERSION, ("source",), REQUEST_COLUMNS
    )
    return _frame_to_table(table.to_pandas(), str(path), path)


def read_requests(path: Path) -> RequestTable:
    """A request trace by extension: ``.parquet`` or ``.csv``."""
    path = Path(path)
    if path.suffix.lower() == ".csv":
        return read_request_csv(path)
    return read_request_parquet(path)


def write_request_parquet(
    path: Path, arrival_us, prompt_tokens, output_tokens, source: str, description: str = ""
) -> Path:
    """Write a request trace (validated first; the file appears only once complete)."""
    path = Path(path)
    table_in = RequestTable(
        np.asarray(arrival_us, float), np.asarray(prompt_tokens, float), np.asarray(output_tokens, float), str(path)
    )
    screen(table_in, context_limit_tokens=None, on_invalid="error")
    frame = pd.DataFrame(
        {
            "arrival_us": table_in.arrival_us,
            "prompt_tokens": table_in.prompt_tokens.astype(np.int64),
            "output_tokens": table_in.output_tokens.astype(np.int64),
        }
    )
    table = pa.Table.from_pandas(frame, schema=_SCHEMA, preserve_index=False)
    meta = {
        "format_version": REQUESTS_FORMAT_VERSION,
        "source": source,
        "date": dt.date.today().isoformat(),
        "description": description,
    }
    table = table.replace_schema_metadata({f"harness.requests.{k}".encode(): v.encode() for k, v in meta.items()})
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(f".{path.name}.partial")
    pq.write_table(table, partial)
    partial.replace(path)
    return path


def _row_problem(arrival: float, prompt: float, output: float, previous_arrival: float, limit: int | None) -> str:
    if not np.isfinite(arrival):
        return f"arrival_us is {arrival}, not a finite time"
    if arrival < 0:
        return f"arrival_us is negative ({arrival})"
    if arrival > MAX_DURATION_US:
        return f"arrival_us is {arrival}, beyond {MAX_DURATION_US:.0e} µs (11.6 days)"
    if arrival < previous_arrival:
        return (
            f"arrival_us {arrival} is earlier than the previous request's {previous_arrival} "
            "(arrivals must be in order)"
        )
    for name, value in (("prompt_tokens", prompt), ("output_tokens", output)):
        if not np.isfinite(value) or value < 1 or value != int(value):
            return f"{name} must be a whole number >= 1, got {value}"
    if limit is not None and prompt + output > limit:
        return f"prompt_tokens + output_tokens = {int(prompt + output)} exceeds the context limit of {limit} tokens"
    return ""


def screen(table: RequestTable, context_limit_tokens: int | None, on_invalid: str) -> ScreenedRequests:
    """Check every row; raise on the first bad one (``error``) or set bad rows aside (``reject``)."""
    if on_invalid not in ("error", "reject"):
        raise ValueError(f"on_invalid must be 'error' or 'reject', got {on_invalid!r}")
    a, p, o = table.arrival_us, table.prompt_tokens, table.output_tokens
    # Fast path: vectorised check; only traces with a problem take the row loop.
    with np.errstate(invalid="ignore"):
        ok = (
            np.isfinite(a)
            & (a >= 0)
            & (a <= MAX_DURATION_US)
            & np.isfinite(p)
            & np.isfinite(o)
            & (p >= 1)
            & (o >= 1)
            & (p == np.floor(p))
            & (o == np.floor(o))
        )
        if context_limit_tokens is not None:
            ok &= (p + o) <= context_limit_tokens
        ordered = np.all(np.diff(a) >= 0) if len(a) > 1 else True
    if ok.all() and ordered:
        keep = np.arange(len(a))
        return ScreenedRequests(keep, a.astype(float), p.astype(np.int64), o.astype(np.int64), (), table.source)
    good = np.flatnonzero(ok)
    if len(good) < 2 or np.all(np.diff(a[good]) >= 0):
        # The rows that pass the checks above are in order, so they are the ones kept; only the others
        # need the row-by-row reasons, each against the last kept arrival before it (as the loop below).
        bad = np.flatnonzero(~ok)
        before = np.searchsorted(good, bad) - 1
        reasons = [
            _row_problem(
                float(a[i]), float(p[i]), float(o[i]), float(a[good[k]]) if k >= 0 else 0.0, context_limit_tokens
            )
            for i, k in zip(bad.tolist(), before.tolist())
        ]
        if all(reasons):  # (else the two checks disagree on a row: the loop below decides)
            if reasons and on_invalid == "error":
                raise InputError(table.source, f"row {int(bad[0])}", reasons[0])
            rejected = tuple(
                Rejection(i, float(a[i]), float(p[i]), float(o[i]), reason) for i, reason in zip(bad.tolist(), reasons)
            )
            kept = (a[good].astype(float), p[good].astype(np.int64), o[good].astype(np.int64))
            return ScreenedRequests(good, *kept, rejected, table.source)
    rows, rejected = [], []
    previous = 0.0
    for i in range(len(a)):
        problem = _row_problem(float(a[i]), float(p[i]), float(o[i]), previous, context_limit_tokens)
        if problem:
            if on_invalid == "error":
                raise InputError(table.source, f"row {i}", problem)
            rejected.append(Rejection(i, float(a[i]), float(p[i]), float(o[i]), problem))
            continue
        rows.append(i)
        previous = float(a[i])
    keep = np.asarray(rows, dtype=np.int64)
    return ScreenedRequests(
        keep, a[keep].astype(float), p[keep].astype(np.int64), o[keep].astype(np.int64), tuple(rejected), table.source
    )
