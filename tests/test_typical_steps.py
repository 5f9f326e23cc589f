"""host_stalls = "typical": a recording's stalled repeated steps at their family's median host time (typical.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from harness.paths import TRACES_DIR
from harness.trace import load_trace
from workloads.recorded.program import SYNC_CALLS, ThreadProgram, build_program
from workloads.recorded.typical import call_period, typical_costs, with_typical_steps

RECORDED = TRACES_DIR / "recorded"


def _steps(n_steps: int, host_us: list[float], sync_us: float = 500.0):
    """A loop of ``n_steps`` steps of 3 launches and a stream sync; ``host_us[s]``: step s's extra gap."""
    kind, name, group, before, duration = [], [], [], [], []
    for s in range(n_steps):
        for i, (k, nm) in enumerate([("call_launch", "cudaLaunchKernel")] * 3 + [("call_sync_stream", "sync")]):
            kind.append(k), name.append(nm), group.append(f"step{s}")
            before.append(10.0 + i + (host_us[s] if i == 1 else 0.0))
            duration.append(sync_us if k in SYNC_CALLS else 4.0 + 0.1 * i)
    return tuple(np.array(x, dtype=object if i < 3 else np.float64) for i, x in enumerate((kind, name, group, before,
                                                                                           duration)))


def _host(kind, before, duration):
    return before.sum() + np.where(np.isin(kind, SYNC_CALLS), 0.0, duration).sum()


def test_a_stalled_step_takes_the_median_steps_host_time_and_the_others_keep_theirs():
    noise = [0.0, 1.0, -1.0, 0.5, 2000.0, -0.5, 1.5, 0.0]  # step 4 stalled 2 ms
    kind, name, group, before, duration = _steps(8, noise)
    new_before, new_duration = typical_costs(kind, name, group, before, duration)
    per_step = [_host(kind[i:i + 4], new_before[i:i + 4], new_duration[i:i + 4]) for i in range(0, 32, 4)]
    recorded = [_host(kind[i:i + 4], before[i:i + 4], duration[i:i + 4]) for i in range(0, 32, 4)]
    median = float(np.median(recorded))
    assert per_step[4] == pytest.approx(median) and recorded[4] > median + 1900
    assert [p for s, p in enumerate(per_step) if s != 4] == [r for s, r in enumerate(recorded) if s != 4]
    syncs = np.isin(kind, SYNC_CALLS)
    assert (new_duration[syncs] == duration[syncs]).all()  # a sync's blocked time is not host work
    assert (new_before >= 0).all() and (new_duration >= 0).all()


def test_steps_within_the_noise_band_or_too_few_repeats_stay_as_recorded():
    kind, name, group, before, duration = _steps(8, [0.0, 3.0, -2.0, 1.0, 4.0, -1.0, 2.0, 0.0])
    assert all((a == b).all() for a, b in zip(typical_costs(kind, name, group, before, duration), (before, duration)))
    kind, name, group, before, duration = _steps(2, [0.0, 5000.0])  # two steps: no family to compare with
    assert all((a == b).all() for a, b in zip(typical_costs(kind, name, group, before, duration), (before, duration)))


def test_an_unmarked_thread_is_cut_by_the_period_of_its_calls():
    kind, name, group, before, duration = _steps(10, [0.0] * 6 + [3000.0] + [0.0] * 3)
    assert call_period(kind, name) == 4
    prologue = (np.array(["call_memcpy"] + kind.tolist(), dtype=object),
                np.array(["cudaMemcpyAsync"] + name.tolist(), dtype=object))  # fmt: skip
    assert call_period(*prologue) == 4  # a prologue shifts the steps, not the period
    assert call_period(np.array(["call_launch", "call_memcpy", "call_record"] * 2, dtype=object),
                       np.array(["a", "b", "c"] * 2, dtype=object)) is None  # two repeats: no period
    unmarked = np.full(len(group), "", dtype=object)
    new_before, _ = typical_costs(kind, name, unmarked, before, duration)
    assert new_before.sum() < before.sum() - 2900  # the stalled step found without its ranges


def _program(name: str):
    trace = load_trace(RECORDED / f"{name}.parquet")
    return build_program(trace.ops, name, trace.provenance.profiler_mode)


def test_typical_steps_on_a_recording_the_same_by_columns_and_by_calls_and_a_stall_comes_out():
    program = _program("decode_inline-sync")
    objects = replace(program, threads=tuple(ThreadProgram(t.name, t.calls) for t in program.threads))
    by_columns, removed = with_typical_steps(program)
    by_calls, removed_calls = with_typical_steps(objects)
    costs = [[(c.host_before_us, c.duration_us) for c in t.calls] for t in by_columns.threads]
    assert costs == [[(c.host_before_us, c.duration_us) for c in t.calls] for t in by_calls.threads]
    assert removed == pytest.approx(removed_calls) and removed >= 0
    assert [c.ops for t in by_columns.threads for c in t.calls] == [c.ops for t in program.threads for c in t.calls]
    main = program.threads[0].table
    stalled_at = int(np.flatnonzero(main.group == main.group[len(main) // 2])[3])
    before = main.host_before_us.copy()
    before[stalled_at] += 20_000.0  # a 20 ms stall in one step
    stalled = replace(program, threads=(ThreadProgram(program.threads[0].name,
                                                      table=main.with_costs(before, main.duration_us)),
                                        *program.threads[1:]))  # fmt: skip
    _, removed_stalled = with_typical_steps(stalled)
    assert removed_stalled == pytest.approx(removed + 20_000.0, abs=50.0)
