"""Metrics of the recorded workload, from one run's ops table.

* ``makespan_us``: program start (time 0) to the end of the last op.
* ``recorded_makespan_us``: the same span in the recording; ``makespan_vs_recorded``:
  ``makespan_us / recorded_makespan_us - 1``.
* ``gpu_busy_frac``: time some GPU op ran, over the makespan (per device as items, mean as the run row).
* ``h2d_busy_frac`` / ``d2h_busy_frac``: each direction's copy engine busy, over the makespan.
* ``stream_<device>_<name>_busy_frac``: each stream's busy time, over the makespan.
* ``gpu_wait_for_host_us``: idle GPU time waiting for work the host had not issued yet: each
  idle gap up to when the next op was issued (per device as items, sum as the run row).
* ``group_time_us``: each group's (profiler step or record_function range) GPU time, its ops'
  first start to last end, item = group index; the run row is the mean, and
  ``recorded_group_time_us`` the recording's mean over the same groups.
* ``inferred_waits``, ``unresolved_waits``: cross-stream orderings the recording implied, waits
  left out.
* With ``profiler_overhead = "subtract"`` only: ``unprofiled_makespan_us``, the predicted span of
  the program *without* the profiler (the run's makespan, named for what it is: ``makespan_us``
  and ``recorded_makespan_us`` are then the prediction and the profiled recording), and
  ``profiler_overhead_removed_us``, the host time taken out of the recorded calls;
  ``recording_host_vs_calibration``, the recording's simple calls over the calibration's
  (``compensation.host_speed``), and ``recording_host_slow`` (1 above ``SLOW_HOST_RATIO``: the
  recording's host ran much slower than the calibration's, and the prediction is not to be trusted).
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pyarrow as pa

from harness.workload import MetricRow
from workloads.recorded.policies import GRAPH_LEAD_IN, GRAPH_TAIL, RecordedResult
from workloads.recorded.program import RecordedProgram
from workloads.recorded.whatif import WhatIfSummary

DEVICE_KINDS = ("kernel", "copy_h2d", "copy_d2h", "copy_d2d", "collective")
SPACERS = (GRAPH_LEAD_IN, GRAPH_TAIL)  # GPU time around a graph's kernels, not work


def union_us(start: np.ndarray, end: np.ndarray) -> float:
    """Total length of the union of intervals [start, end)."""
    if len(start) == 0:
        return 0.0
    order = np.argsort(start, kind="stable")
    s, e = start[order], np.maximum.accumulate(end[order])
    gaps = np.maximum(s[1:] - e[:-1], 0.0)
    return float(e[-1] - s[0] - gaps.sum())


def waiting_for_host_us(ops: pd.DataFrame) -> float:
    """Idle time of one device before ops the host had not issued yet when the device went idle."""
    return _waited_us(ops["start_us"].to_numpy(), ops["end_us"].to_numpy(), ops["issue_us"].to_numpy())


def _waited_us(start: np.ndarray, end: np.ndarray, issue: np.ndarray) -> float:
    """:func:`waiting_for_host_us` of one device's ops given as arrays (in the table's order)."""
    order = np.argsort(start, kind="stable")
    start, end, issue = start[order], end[order], issue[order]
    busy_until = np.maximum.accumulate(end)
    idle_from = np.concatenate(([0.0], busy_until[:-1]))
    waited = np.minimum(start, np.maximum(issue, idle_from)) - idle_from
    return float(np.clip(waited, 0.0, None).sum())


def _text(ops: pd.DataFrame, column: str) -> tuple[np.ndarray, np.ndarray]:
    """A string column as (codes, values): ``values[codes]`` is the column, the values sorted (codes ordered as the
    strings are), from a categorical's codes as they are (no string per row) or by factorizing the strings."""
    series = ops[column]
    if isinstance(series.dtype, pd.CategoricalDtype) and series.cat.categories.is_monotonic_increasing:
        return series.cat.codes.to_numpy(), series.cat.categories.to_numpy(dtype=object)
    if isinstance(series.dtype, pd.CategoricalDtype):  # categories in another order: sorted as the strings
        series = series.astype(object)
    codes, values = pd.factorize(series, sort=True)  # a missing value: code -1
    return codes, np.asarray(values, dtype=object)


def metrics(program: RecordedProgram, ops: pd.DataFrame, result: RecordedResult) -> list[MetricRow]:
    makespan = float(ops["end_us"].max()) if len(ops) else 0.0
    # The devices' ops, as arrays in the table's order (no frame of them: a long run's are half a million rows)
    device = ops["device"].to_numpy()
    kind_codes, kinds = _text(ops, "kind")
    stream_codes, streams = _text(ops, "stream")
    name_codes, names = _text(ops, "name")
    on_device = (device >= 0) & np.isin(kind_codes, np.flatnonzero(np.isin(kinds, DEVICE_KINDS)))
    on_device &= ~np.isin(name_codes, np.flatnonzero(np.isin(names, SPACERS)))
    del name_codes
    device, kind_codes, stream_codes = device[on_device], kind_codes[on_device], stream_codes[on_device]
    start, end, issue = (ops[c].to_numpy()[on_device] for c in ("start_us", "end_us", "issue_us"))
    rows = [
        MetricRow("makespan_us", makespan, "us"),
        MetricRow("recorded_makespan_us", program.recorded_span_us, "us"),
        MetricRow("makespan_vs_recorded", makespan / program.recorded_span_us - 1.0, "fraction"),
        MetricRow("inferred_waits", float(program.inferred_waits), "count"),
        MetricRow("unresolved_waits", float(result.unresolved_waits), "count"),
    ]
    if getattr(result, "profiler_overhead", "keep") == "subtract":
        rows += [
            MetricRow("unprofiled_makespan_us", makespan, "us"),
            MetricRow("profiler_overhead_removed_us", float(result.overhead_removed_us), "us"),
        ]
        speed = getattr(result, "host_speed", None)
        if speed is not None:  # the recording's simple calls against the calibration's (compensation.host_speed)
            rows += [
                MetricRow("recording_host_vs_calibration", speed.ratio, "ratio"),
                MetricRow("recording_host_slow", float(speed.slow), "flag"),
            ]
    per = max(makespan, 1e-9)
    busy, waited = [], []
    devices = np.unique(device)
    for d in devices.tolist():  # each device's ops in the table's order (all of them: one device)
        mine = slice(None) if len(devices) == 1 else device == d
        busy.append(union_us(start[mine], end[mine]) / per)
        waited.append(_waited_us(start[mine], end[mine], issue[mine]))
        rows += [
            MetricRow("gpu_busy_frac", busy[-1], "fraction", int(d)),
            MetricRow("gpu_wait_for_host_us", waited[-1], "us", int(d)),
        ]
    rows += [
        MetricRow("gpu_busy_frac", float(np.mean(busy)) if busy else 0.0, "fraction"),
        MetricRow("gpu_wait_for_host_us", float(sum(waited)), "us"),
    ]
    for kind, metric in (("copy_h2d", "h2d_busy_frac"), ("copy_d2h", "d2h_busy_frac")):
        code = np.flatnonzero(kinds == kind)
        mine = kind_codes == (code[0] if len(code) else -2)
        rows.append(MetricRow(metric, union_us(start[mine], end[mine]) / per, "fraction"))
    # each (device, stream) in order (device, then the stream's name: its code), its ops in the table's order
    width = len(streams) + 1  # code -1 (no stream) is 0 here
    for pair in np.unique(device.astype(np.int64) * width + stream_codes.astype(np.int64) + 1).tolist():
        d, code = divmod(pair, width)
        code -= 1
        if code < 0:  # no stream: a group-by leaves it out
            continue
        mine = (device == d) & (stream_codes == code)
        value = union_us(start[mine], end[mine]) / per
        rows.append(MetricRow(f"stream_{d}_{streams[code]}_busy_frac", value, "fraction"))
    rows += _group_rows(program, ops, issue, start, end)
    return rows


def _group_rows(
    program: RecordedProgram, ops: pd.DataFrame, issue: np.ndarray, start: np.ndarray, end: np.ndarray
) -> list[MetricRow]:
    """Each group's GPU time: the GPU work (``issue``/``start``/``end`` of the device ops, in the table's order: no
    event waits or records, which the recording's group times do not hold either) issued from the group's first host
    work (named ``cpu:<group>``) until the next group's, first start to last end; and the recording's, for
    comparison."""
    names = [g for g, _ in program.recorded_group_us]
    if not names:
        return []
    host = ops.loc[(ops["kind"] == "host_work") & ops["name"].str.startswith("cpu:"), ["name", "start_us"]]
    if host.empty:
        return []
    first = host.groupby("name", sort=False, observed=True)["start_us"].min().sort_values()
    # each op in the group whose first host work began last at or before its issue (none before the first)
    group = np.searchsorted(first.to_numpy(), issue, side="right") - 1
    inside = group >= 0
    start, end = start[inside], end[inside]
    extent = pd.DataFrame({"group": group[inside], "start": start, "end": end}).groupby("group", sort=True)
    starts, ends = extent["start"].min(), extent["end"].max()
    named = first.index.to_numpy()[starts.index.to_numpy()].tolist()  # each group's host work name (ends: same index)
    widths = (ends.to_numpy() - starts.to_numpy()).tolist()
    spans = {name[len("cpu:") :]: float(width) for name, width in zip(named, widths)}
    rows = [MetricRow("group_time_us", spans[g], "us", i) for i, g in enumerate(names) if g in spans]
    if rows:
        rows.append(MetricRow("group_time_us", float(np.mean([r.value for r in rows])), "us"))
        recorded = [us for g, us in program.recorded_group_us if g in spans]
        rows.append(MetricRow("recorded_group_time_us", float(np.mean(recorded)), "us"))
    return rows


_COUNTS = [f.name for f in dataclasses.fields(WhatIfSummary) if f.type in ("int", int)]
WHAT_IFS_SCHEMA = pa.schema(
    [
        ("run_id", pa.string()),
        ("what_if", pa.string()),
        ("summary", pa.string()),  # WhatIfSummary.text(): what harness sim prints
        ("groups_from", pa.string()),
        *((name, pa.int64()) for name in _COUNTS),
    ]
)
"""``what_ifs.parquet``: one row per what-if a run applied (none for ``as_recorded``)."""


def tables(program: RecordedProgram, ops: pd.DataFrame, result: RecordedResult) -> dict[str, pd.DataFrame]:
    rows = [
        {"what_if": s.what_if, "summary": s.text(), "groups_from": s.groups_from, **{n: getattr(s, n) for n in _COUNTS}}
        for s in getattr(result, "what_ifs", ())
    ]
    return {"what_ifs": pd.DataFrame(rows, columns=[f.name for f in WHAT_IFS_SCHEMA][1:])}


def notes(results_tables: dict[str, pa.Table]) -> list[str]:
    """What each what-if changed, one line per policy label, and a warning for each label whose recording's host ran
    much slower than the calibration's (``harness sim`` prints them below its table)."""
    return _what_if_notes(results_tables) + slow_host_notes(results_tables)


def _what_if_notes(results_tables: dict[str, pa.Table]) -> list[str]:
    what_ifs, runs = results_tables.get("what_ifs"), results_tables.get("runs")
    if what_ifs is None or runs is None or what_ifs.num_rows == 0:
        return []
    frame = what_ifs.to_pandas().merge(runs.to_pandas()[["run_id", "policy_label"]], on="run_id")
    lines = frame.drop_duplicates(["policy_label", "summary"])
    return [
        f"{row.policy_label}: {row.summary.split(': ', 1)[-1]}" if row.policy_label != row.what_if else row.summary
        for row in lines.itertuples()
    ]


def slow_host_notes(results_tables: dict[str, pa.Table]) -> list[str]:
    """One warning per policy label whose compensated runs flagged the recording (``recording_host_slow``)."""
    from workloads.recorded.compensation import SLOW_HOST_RATIO

    metrics, runs = results_tables.get("metrics"), results_tables.get("runs")
    if metrics is None or runs is None or metrics.num_rows == 0:
        return []
    m = metrics.to_pandas()
    m = m[(m["item"] == -1) & m["metric"].isin(["recording_host_vs_calibration", "recording_host_slow"])]
    if m.empty:
        return []
    m = m.merge(runs.to_pandas()[["run_id", "policy_label"]], on="run_id")
    table = m.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="max", sort=False)
    if "recording_host_slow" not in table:
        return []
    return [
        f"{label}: WARNING: the recording's simple calls took {row.recording_host_vs_calibration:.2f}x what the "
        f"calibration measured for them (over {SLOW_HOST_RATIO:.1f}x): its host ran much slower than the "
        "calibration's (a slow phase, or another machine), and the unprofiled prediction is not the program's; "
        "record again, or calibrate on that host"
        for label, row in table.iterrows()
        if row.recording_host_slow > 0
    ]
