"""A recording as a run: the imported trace's own timeline in the results' ops vocabulary.

``harness trace as-run SPEC --out DIR`` writes a results folder whose one run (backend
``recording``, policy ``as_recorded``) is what the profiler recorded, on the same clock
as a simulation of the spec (time 0 = the program's start, after the syncs that wait for
work from before it), with the same lane names: the dashboard then draws the recording
beside the simulation and the replay, and ``harness compare`` can take it as the measured
side. Rows: each thread's CPU time between calls (``host_work``, named ``cpu:<group>``),
the time it blocked in a sync (``host_sync``), every GPU op (kernels and memsets as
``kernel``, copies by direction) issued at its launching call's start.
"""

from __future__ import annotations

import pandas as pd

from harness.backend import HOST_DEVICE, Backend, OpRow, RunResult
from workloads.recorded.policies import RecordedResult
from workloads.recorded.program import SYNC_CALLS, RecordedProgram

GPU_KINDS = {
    "kernel": "kernel",
    "memset": "kernel",
    "copy_h2d": "copy_h2d",
    "copy_d2h": "copy_d2h",
    "copy_d2d": "copy_d2d",
    "collective": "collective",  # a multi-rank recording's NCCL kernels (harness.multirank_import)
}


def recording_rows(ops: pd.DataFrame, program: RecordedProgram) -> list[OpRow]:
    """The recorded ops of ``ops`` (an imported trace) as ops-table rows on the simulation's clock."""
    start = program.start_us
    main = program.threads[0].name
    threads = {t.name: ("main" if t.name == main else f"thread{t.name}") for t in program.threads}
    rows: list[tuple] = []
    calls = ops[ops["kind"].str.startswith("call_")].sort_values("start_us", kind="stable")
    calls = calls[calls["start_us"] + calls["duration_us"] > start]
    for call in calls.itertuples():
        thread = threads.get(str(call.thread), f"thread{call.thread}")
        begin = float(call.start_us) - start
        gap = float(call.host_gap_us) if call.host_gap_us == call.host_gap_us else 0.0
        group = call.group if isinstance(call.group, str) else ""
        if gap > 0 and begin - gap >= 0:
            name = f"cpu:{group}" if group else "cpu"
            rows.append(_host_row(thread, "host_work", name, begin - gap, begin))
        if call.kind in SYNC_CALLS:
            name = f"sync:s{call.stream}" if isinstance(call.stream, str) and call.stream else call.name
            rows.append(_host_row(thread, "host_sync", name, begin, begin + float(call.duration_us)))
    launched = calls.set_index("correlation")["thread"]
    gpu = ops[ops["kind"].isin(list(GPU_KINDS)) & ops["correlation"].isin(launched.index)]
    for op in gpu.itertuples():
        thread = threads.get(str(launched.get(op.correlation)), "main")
        issue = float(op.launch_us) - start
        begin = float(op.start_us) - start
        memory = op.host_memory if isinstance(op.host_memory, str) and op.kind in ("copy_h2d", "copy_d2h") else ""
        stream = f"s{op.stream}" if op.device == 0 else f"d{op.device}s{op.stream}"
        rows.append(
            (
                issue,
                int(op.device),
                stream,
                GPU_KINDS[op.kind],
                str(op.name),
                int(op.bytes),
                memory or "",
                thread,
                issue,
                begin,
                begin + float(op.duration_us),
            )
        )
    rows.sort(key=lambda r: (r[0], r[8]))
    return [OpRow(i + 1, *r[1:]) for i, r in enumerate(rows)]


def _host_row(thread: str, kind: str, name: str, start_us: float, end_us: float) -> tuple:
    """(sort key, then an OpRow's fields after op_id) of a host op."""
    return (start_us, HOST_DEVICE, thread, kind, name, 0, "", thread, start_us, start_us, end_us)


class RecordingBackend(Backend):
    """A stand-in backend whose every run is the recording itself (backend ``recording``).

    It runs nothing: ``run`` returns the recorded timeline of the trace it was made
    with, so the runner tabulates it and the workload's metrics measure it like a run.
    """

    name = "recording"

    def __init__(self, trace_ops: pd.DataFrame, hardware: str) -> None:
        self.trace_ops = trace_ops
        self.device_name = hardware

    def run(self, main, program: RecordedProgram, *args) -> RunResult:
        rows = recording_rows(self.trace_ops, program)
        calls = sum(t.call_count for t in program.threads)
        return RunResult(rows, RecordedResult(calls, 0), max((r.end_us for r in rows), default=0.0))
