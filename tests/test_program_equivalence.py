"""The program command (harness.program) gives the ops tables of the call-by-call policies, to the last bit.

For every bundled recorded spec (traces/specs/ whose trace is in traces/recorded/) and each of
its policies, and every what-if on the bundled recordings: the ops table of today's generator
(``workloads.recorded.reissue``, one command per call) equals that of the step program run
through its reference interpreter (``SimBackend(fast_programs=False)``) and through the
simulator's fast path, on the timeline executor and on the event model alike.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import numpy as np
import pandas as pd
import pytest

from harness.backend import run_policy
from harness.paths import SPECS_DIR
from harness.program import (
    GRAPH_KERNEL_DTYPE,
    OP_COPY,
    OP_GRAPH,
    OP_HOST,
    OP_LAUNCH,
    OP_RECORD,
    OP_SYNC_DEVICE,
    OP_SYNC_EVENT,
    OP_SYNC_STREAM,
    OP_WAIT,
    ProgramError,
    ProgramThread,
    StepProgram,
    expand,
    new_steps,
)
from harness.spec import load_spec
from sim import SimBackend
from workloads.recorded.reissue import reissue

WHAT_IFS = {"prefetch_copies", "async_d2h", "graph_launch", "scale_kernels"}


def _recorded_cases() -> list[tuple[str, str, int]]:
    cases = []
    for path in sorted(SPECS_DIR.glob("*.toml")):
        if 'kind = "recorded"' in path.read_text():
            cases += [(path.name, run.label, i) for i, run in enumerate(load_spec(path).policies)]
    return cases


CASES = _recorded_cases()


@functools.cache
def _prepared(spec_name: str):
    loaded = load_spec(SPECS_DIR / spec_name)
    return loaded, loaded.workload.prepare(loaded.prepare_context())


def _ops(backend: SimBackend, main, *args) -> pd.DataFrame:
    return run_policy(backend, main, *args).ops


@pytest.mark.parametrize("spec_name, label, index", CASES, ids=[f"{s[:-5]}-{label}" for s, label, _ in CASES])
def test_program_gives_the_call_by_call_ops_table(spec_name, label, index):
    loaded, program = _prepared(spec_name)
    run = loaded.policies[index]
    what_if = run.policy.name if run.policy.name in WHAT_IFS else ""
    for fast in (True, False):  # the timeline executor first, else the event model; the event model alone

        def backend(fast_programs: bool) -> SimBackend:
            return SimBackend(loaded.profile, 1, loaded.device_memory_bytes, fast=fast, fast_programs=fast_programs)

        legacy = _ops(backend(True), reissue, program, run.params, what_if)
        reference = _ops(backend(False), run.policy.main, program, run.params)
        native = _ops(backend(True), run.policy.main, program, run.params)
        pd.testing.assert_frame_equal(reference, legacy, check_exact=True)
        pd.testing.assert_frame_equal(native, legacy, check_exact=True)


def test_a_compensated_graph_launch_is_the_same_call_by_call(tmp_path):
    """A compensated what-if that adds graphs (graph_launch with profiler_overhead = "subtract" on the H100 profile,
    whose calibration takes CUPTI's GPU time out of graph kernels) re-issues call by call as the step program does:
    both compensate the graphs it added."""
    from harness.paths import TRACES_DIR

    trace = TRACES_DIR / "recorded" / "corpus" / "recordings" / "decode_eager_host-sync.parquet"
    spec = tmp_path / "spec.toml"
    spec.write_text(f'name = "g"\nprofile = "h100"\nrepetitions = 1\n[workload]\nkind = "recorded"\ntrace = "{trace}"\n'
                    '[[policies]]\nname = "graph_launch"\nprofiler_overhead = "subtract"\n')  # fmt: skip
    loaded = load_spec(spec)
    program = loaded.workload.prepare(loaded.prepare_context())
    run = loaded.policies[0]
    backend = SimBackend(loaded.profile, 1, loaded.device_memory_bytes, fast=True, fast_programs=True)
    legacy = _ops(backend, reissue, program, run.params, "graph_launch")
    steps = _ops(SimBackend(loaded.profile, 1, loaded.device_memory_bytes, fast=True, fast_programs=True),
                 run.policy.main, program, run.params)  # fmt: skip
    pd.testing.assert_frame_equal(steps, legacy, check_exact=True)
    kept = run.params.model_copy(update={"graph_gpu_overhead": "keep"})
    longer = _ops(SimBackend(loaded.profile, 1, loaded.device_memory_bytes), run.policy.main, program, kept)
    assert longer["end_us"].max() > steps["end_us"].max()  # the added graphs did lose the GPU time


# --------------------------------------------------------------------------- the layout and its checks


def _program(steps: np.ndarray, streams: int = 1) -> StepProgram:
    return StepProgram((ProgramThread("main", steps),), ("k", "cpu"), streams)


def test_a_bad_step_is_named_by_thread_step_and_field():
    steps = new_steps(3)
    steps["op"] = OP_LAUNCH
    steps["stream"] = 0
    steps["duration_us"] = [1.0, -2.0, 1.0]
    with pytest.raises(ProgramError, match=r"thread 'main', step 1: field 'duration_us'"):
        _program(steps)
    steps["duration_us"] = 1.0
    steps["stream"][2] = 3
    with pytest.raises(ProgramError, match=r"step 2: field 'stream'"):
        _program(steps)
    steps["stream"][2] = 0
    steps["gap_us"][0] = 5.0  # a gap needs its name
    with pytest.raises(ProgramError, match=r"step 0: field 'gap_name'"):
        _program(steps)


def test_a_long_thread_checked_a_chunk_at_a_time_names_what_the_whole_check_names():
    from harness.program import _CHECK_CHUNK_STEPS as CHUNK

    steps = new_steps(2 * CHUNK + 5)
    steps["op"] = OP_LAUNCH
    steps["stream"] = 0
    steps["duration_us"] = 1.0
    steps["gap_us"][CHUNK + 7] = -1.0  # the first chunk is clean: the step is named by its place in the thread
    with pytest.raises(ProgramError, match=rf"step {CHUNK + 7}: field 'gap_us'"):
        _program(steps)
    steps["gap_us"][3] = -1.0  # a rule checked later broken in the first chunk, an earlier rule in the third:
    steps["stream"][2 * CHUNK + 1] = 4  # the first rule broken, at its first step, as one pass over all would say
    with pytest.raises(ProgramError, match=rf"step {2 * CHUNK + 1}: field 'stream'"):
        _program(steps)
    steps["stream"][2 * CHUNK + 1] = 0
    steps["gap_us"][[3, CHUNK + 7]] = 0.0
    assert _program(steps).steps_count == 2 * CHUNK + 5


def test_expand_issues_the_steps_commands():
    from harness.profile import load_profile

    steps = new_steps(2)
    steps[0] = (OP_LAUNCH, 1, 0, 0, 0, 0, 1, 0, 0, 0, 4.0, math.nan, 10.0, 0.5, 0)
    steps[1]["op"], steps[1]["stream"] = OP_SYNC_STREAM, 0
    program = _program(steps)

    def main(rt):
        stream = yield rt.create_stream(0, "s")
        return (yield from expand(rt, rt.run_program(program, [stream])))

    profile = load_profile("h200")
    ops = run_policy(SimBackend(profile, 1, fast_programs=False), main).ops
    assert ops["kind"].tolist() == ["host_work", "kernel", "host_sync"]
    assert ops["name"].tolist() == ["cpu", "k", "sync:s"]
    launch = profile.host.launch_us
    kernel = ops.iloc[1]
    assert kernel["issue_us"] == 4.0 and kernel["start_us"] == 4.0 + launch
    assert kernel["end_us"] == 4.0 + launch + 10.0  # alone on the GPU: its solo duration


# --------------------------------------------------------------------------- every op code, several threads


def _random_program(seed: int, threads: int) -> StepProgram:
    """A program of every op code on 3 streams (2 devices), events shared between threads, some never recorded."""
    rng = np.random.default_rng(seed)
    names = ("gemm", "copy", "cpu", "cpu:step", "graph")
    graph_kernels = np.zeros(3, GRAPH_KERNEL_DTYPE)
    graph_kernels["name"], graph_kernels["duration_us"], graph_kernels["share"] = 0, [5.0, 0.0, 12.5], [1.0, 0.5, 1.0]
    out = []
    for t in range(threads):
        steps = new_steps(60)
        ops = rng.choice(
            [OP_HOST, OP_LAUNCH, OP_LAUNCH, OP_LAUNCH, OP_COPY, OP_RECORD, OP_WAIT, OP_SYNC_STREAM]
            + [OP_SYNC_EVENT, OP_SYNC_DEVICE, OP_GRAPH],
            60,
        )
        steps["op"] = ops
        steps["stream"] = rng.integers(0, 3, 60)
        steps["name"] = np.where(ops == OP_COPY, 1, np.where(ops == OP_GRAPH, 4, 0))
        steps["gap_us"] = np.where(rng.random(60) < 0.5, rng.uniform(0.0, 30.0, 60), 0.0)
        steps["gap_name"] = np.where(steps["gap_us"] > 0, rng.integers(2, 4, 60), -1)
        steps["host_us"] = np.where(rng.random(60) < 0.5, rng.uniform(0.0, 8.0, 60), np.nan)
        steps["duration_us"] = np.where(rng.random(60) < 0.1, 0.0, rng.uniform(1.0, 40.0, 60))
        steps["share"] = rng.choice([1.0, 0.5, 0.25], 60)
        steps["kind"] = np.where(ops == OP_COPY, rng.integers(0, 3, 60), rng.integers(0, 3, 60))
        steps["pageable"] = rng.integers(0, 2, 60)
        steps["nbytes"] = rng.integers(0, 1 << 22, 60)
        steps["event"] = rng.integers(0, 6, 60)  # ids 4, 5: recorded or not, as it falls
        steps["graph_first"], steps["graph_count"] = 0, 3
        out.append(ProgramThread("main" if t == 0 else f"worker{t}", steps))
    return StepProgram(tuple(out), names, 3, graph_kernels, (2, 0, 1))


def _run_random(program: StepProgram, fast: bool, fast_programs: bool, expanded: bool) -> pd.DataFrame:
    from harness.profile import load_profile

    def main(rt):
        streams = []
        for device, name in ((0, "a"), (0, "b"), (1, "c")):
            streams.append((yield rt.create_stream(device, name)))
        command = rt.run_program(program, streams)
        if expanded:
            outcome = yield from expand(rt, command)
        else:
            outcome = yield command
        return outcome.unresolved_waits

    backend = SimBackend(load_profile("h200"), 2, fast=fast, fast_programs=fast_programs)
    run = run_policy(backend, main)
    return pd.concat([run.ops, pd.DataFrame({"unresolved": [run.result]})])


@pytest.mark.parametrize("threads", [1, 2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_every_op_code_runs_alike_on_every_path(seed, threads):
    program = _random_program(seed, threads)
    reference = _run_random(program, fast=False, fast_programs=False, expanded=True)
    assert len(reference) > 60 * threads // 2
    for fast in (True, False):
        for fast_programs in (True, False):
            pd.testing.assert_frame_equal(_run_random(program, fast, fast_programs, False), reference, check_exact=True)


# --------------------------------------------------------------------------- steps made column-wise


def _resolved(program: StepProgram) -> list[pd.DataFrame]:
    """Each thread's steps with names as strings (name indices depend on the order names were met)."""
    names = np.array(program.names + ("",), dtype=object)  # index -1: ""
    out = []
    for thread in program.threads:
        frame = pd.DataFrame(thread.steps)
        for column in ("name", "gap_name"):
            frame[column] = names[frame[column].to_numpy()]
        out.append(frame)
    return out


@pytest.mark.parametrize("trace", sorted({s for s, _, _ in CASES}))
@pytest.mark.parametrize("host_costs, min_kernel_us", [("recorded", 0.0), ("recorded", 12.0), ("profile", 3.0)])
def test_steps_made_column_wise_are_the_call_by_call_steps(trace, host_costs, min_kernel_us):
    from workloads.recorded import steps as recorded_steps
    from workloads.recorded.program import ThreadProgram

    loaded, program = _prepared(trace)
    assert all(t.table is not None for t in program.threads)
    by_call = dataclasses.replace(program, threads=tuple(ThreadProgram(t.name, t.calls) for t in program.threads))
    costs = recorded_steps.HostCosts(host_costs == "recorded", loaded.profile)
    columns = recorded_steps.step_program(program, costs, min_kernel_us, 0.5)
    calls = recorded_steps.step_program(by_call, costs, min_kernel_us, 0.5)
    for a, b in zip(_resolved(columns), _resolved(calls), strict=True):
        pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert columns.sync_order == calls.sync_order


def test_compensation_column_wise_is_call_by_call():
    from harness.profile import ProfilerCalibration, Spread
    from workloads.recorded.compensation import without_profiler_overhead
    from workloads.recorded.program import ThreadProgram

    calibration = ProfilerCalibration(
        torch="2.11.0",
        date="2026-12-07",
        rounds=9,
        overhead={
            k: Spread(median_us=v, spread_us=0.1)
            for k, v in dict(aten_op=1.3, runtime_call=2.7, range=2.1, graph_launch=40.0, graph_kernel=0.7).items()
        },
        floor_us={"call_launch": 5.1, "call_graph_launch": 10.0, "call_memcpy": 3.3},
    )
    for trace in ("recorded_decode_async.toml", "recorded_decode_graph.toml", "recorded_layers_prefetch.toml"):
        _, program = _prepared(trace)
        by_call = dataclasses.replace(program, threads=tuple(ThreadProgram(t.name, t.calls) for t in program.threads))
        columns, removed_columns = without_profiler_overhead(program, calibration)
        calls, removed_calls = without_profiler_overhead(by_call, calibration)
        assert removed_columns == removed_calls > 0
        assert all(t.table is not None for t in columns.threads)
        for a, b in zip(columns.threads, calls.threads, strict=True):
            got = [(c.host_before_us, c.duration_us) for c in a.calls]
            assert repr(got) == repr([(c.host_before_us, c.duration_us) for c in b.calls])
