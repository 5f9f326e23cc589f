"""The columnar call table (workloads/recorded/calltable.py) makes exactly the calls of the row-by-row definition.

``build_program`` used to make each ``Call`` in one loop over the trace rows; that loop is kept here as
the definition, and every bundled recording and the public Kineto traces (tests/data/public/kineto_hta/) must give
the same calls, field by field, to the last bit.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from harness.paths import TRACES_DIR
from harness.profiler_import import import_to_parquet
from harness.trace import load_trace
from workloads.recorded.program import MODELLED_CALLS, SYNC_CALLS, Call, DeviceOp, build_program, infer_waits
from workloads.recorded.program import _without_copy_waits

KINETO = Path(__file__).resolve().parent / "data" / "public" / "kineto_hta"
RECORDINGS = sorted((TRACES_DIR / "recorded").glob("*.parquet"))
RECORDINGS = [p for p in RECORDINGS if p.name != "whatif_fidelity.parquet"]
_MODELLED = frozenset(MODELLED_CALLS)


def _missing(value: object) -> bool:
    return value is None or value is pd.NA or value != value


def _device_op(kind, device, stream, name, duration_us, nbytes, host_memory) -> DeviceOp:
    memory = host_memory if isinstance(host_memory, str) and host_memory else "pinned"
    return DeviceOp(kind, (int(device), str(stream)), str(name), float(duration_us), int(nbytes), memory)


def _rows(frame: pd.DataFrame, columns: tuple[str, ...]):
    return zip(*(frame[column].tolist() for column in columns))


_OP_COLUMNS = ("correlation", "kind", "device", "stream", "name", "duration_us", "bytes", "host_memory")
_CALL_COLUMNS = ("start_us", "host_gap_us", "duration_us", "correlation", "stream", "wait_correlation")
_CALL_COLUMNS += ("kind", "name", "group", "gap_aten_ops", "gap_ranges")


def _definition(ops: pd.DataFrame) -> dict[str, tuple[Call, ...]]:
    """Per thread, the calls as build_program defined them row by row."""
    missing = [c for c in ("gap_aten_ops", "gap_ranges") if c not in ops.columns]
    ops = ops.assign(**dict.fromkeys(missing)) if missing else ops
    is_call = ops["kind"].str.startswith("call_").to_numpy(dtype=bool)
    text = [c for c in ops.columns if pd.api.types.is_string_dtype(ops[c].dtype)]
    ops = ops.astype(dict.fromkeys(text, object))
    calls = ops[is_call].sort_values(["thread", "start_us"], kind="stable")
    gpu = ops[(ops["device"].to_numpy() >= 0) & ~is_call]
    linked = gpu[gpu["correlation"].isin(calls["correlation"])]
    by_corr: dict[int, list[DeviceOp]] = {}
    for correlation, *op in _rows(linked.sort_values(["correlation", "start_us"], kind="stable"), _OP_COLUMNS):
        by_corr.setdefault(int(correlation), []).append(_device_op(*op))
    sync_events = bool(calls["wait_correlation"].notna().any())
    first_gpu_call = calls[calls["correlation"].isin(by_corr)]["start_us"].min()
    leading = calls[calls["kind"].isin(SYNC_CALLS) & (calls["start_us"] < first_gpu_call)]
    start_us = float((leading["start_us"] + leading["duration_us"]).max()) if len(leading) else 0.0
    calls = calls.drop(leading.index)
    calls = _without_copy_waits(calls, linked)  # calls that hold the host for their copy keep what follows it
    waits, records, _ = infer_waits(gpu, calls) if not sync_events else ({}, {}, 0)
    return {
        str(thread): _thread_calls(rows, by_corr, start_us, waits, records)
        for thread, rows in calls.groupby("thread", sort=False)
    }


def _thread_calls(rows: pd.DataFrame, by_corr, start_us: float, waits, records) -> tuple[Call, ...]:
    out: list[Call] = []
    pending_us = 0.0
    pending_aten = pending_ranges = pending_calls = 0
    previous_end = start_us
    for start, host_gap_us, duration, correlation, stream_id, wait, kind, name, group, aten, ranges in _rows(
        rows, _CALL_COLUMNS
    ):
        gap = float(start) - previous_end if not out and pending_us == 0.0 else float(host_gap_us or 0.0)
        previous_end = float(start) + float(duration)
        pending_us += max(0.0, gap)
        pending_aten += 0 if _missing(aten) else int(aten)
        pending_ranges += 0 if _missing(ranges) else int(ranges)
        corr = None if _missing(correlation) else int(correlation)
        ops = tuple(by_corr.get(corr, ())) if corr is not None else ()
        stream = (0, str(stream_id)) if isinstance(stream_id, str) and stream_id else None
        if ops:
            stream = ops[0].stream
        # A record or wait whose stream or event the recording does not name cannot be re-issued:
        # its host time stays, and the ordering it made is inferred (infer_waits).
        unnamed = (kind == "call_record" and stream is None) or (
            kind == "call_wait" and (stream is None or _missing(wait))
        )
        if kind not in _MODELLED or unnamed:
            pending_us += float(duration)  # allocation, free, queries: host time
            pending_calls += 1
            continue
        out.append(
            Call(
                kind=kind,
                name=str(name),
                host_before_us=pending_us,
                duration_us=float(duration),
                stream=stream,
                ops=ops,
                group=group if isinstance(group, str) else "",
                event=corr if kind == "call_record" else None,
                waits_for=None if _missing(wait) else int(wait),
                synchronous=kind == "call_memcpy" and "Async" not in str(name),
                wait_before=tuple(waits.get(corr, ())),
                record_after=tuple(records.get(corr, ())),
                gap_aten_ops=pending_aten,
                gap_ranges=pending_ranges,
                gap_calls=pending_calls,
            )
        )
        pending_us = 0.0
        pending_aten = pending_ranges = pending_calls = 0
    return tuple(out)




def _fields(call: Call) -> tuple:
    return tuple(getattr(call, f.name) for f in dataclasses.fields(Call))


def _same_calls(ops: pd.DataFrame, source: str) -> int:
    program = build_program(ops, source)
    definition = _definition(ops)
    assert [t.name for t in program.threads] == sorted(definition, key=[t.name for t in program.threads].index)
    for thread in program.threads:
        assert thread.table is not None
        got = [_fields(c) for c in thread.calls]
        want = [_fields(c) for c in definition[thread.name]]
        assert len(got) == len(want) == thread.call_count
        for i, (a, b) in enumerate(zip(got, want)):
            # repr: NaN == NaN, and -0.0 != 0.0
            assert repr(a) == repr(b), f"{source}, thread {thread.name}, call {i}"
    return sum(t.call_count for t in program.threads)


@pytest.mark.parametrize("path", RECORDINGS, ids=lambda p: p.stem)
def test_call_table_makes_the_defined_calls(path):
    assert _same_calls(load_trace(path).ops, path.name) > 0


def test_call_table_makes_the_defined_calls_of_public_kineto_traces(tmp_path):
    recordings = sorted(KINETO.glob("*.json.gz"))
    assert len(recordings) == 7
    for recording in recordings:
        path = tmp_path / f"{recording.name.split('.')[0]}.parquet"
        import_to_parquet(recording, path, device=None if "rank" not in recording.name else 0)
        _same_calls(load_trace(path).ops, recording.name)


def test_factorize_shared_matches_pandas_factorize_by_value():
    """Codes by object identity: shared objects as pd.factorize codes them; equal values held by distinct objects
    get a code each, but every code's value is the value pandas gives that row (first appearances in order)."""
    from workloads.recorded.calltable import factorize_shared

    a, b = "kernel_" + "x" * 100, "memset"
    a_again = "".join(["kernel_", "x" * 100])  # equal to a, another object
    assert a_again is not a
    values = np.array([b, a, None, a, b, a_again, None], dtype=object)
    codes, uniques = factorize_shared(values)
    assert uniques[codes].tolist() == values.tolist()
    assert [uniques[c] for c in codes] == list(values)
    assert uniques.tolist()[:3] == [b, a, None]  # in order of first appearance
    assert codes[1] == codes[3] and codes[5] != codes[1]  # a_again: a code of its own, the same value
    pandas_codes, pandas_uniques = pd.factorize(values, use_na_sentinel=False)
    by_pandas = pandas_uniques[pandas_codes].tolist()  # pandas holds the missing value as NaN
    assert [None if _missing(v) else v for v in by_pandas] == uniques[codes].tolist()
    empty_codes, empty_uniques = factorize_shared(np.empty(0, object))
    assert len(empty_codes) == 0 and len(empty_uniques) == 0
