"""The program command (harness.program) gives the ops tables of the call-by-call policies, to the last bit.

For every bundled recorded spec (traces/specs/ whose trace is in traces/recorded/) and each of
its policies, and every what-if on the bundled recordings: the ops table of today's generator
(``workloads.recorded.reissue``, one command per call) equals that of the step program run
through its reference interpreter (``SimBackend(fast_programs=False)``) and through the
simulator's fast path, on the timeline executor and on the event model alike.
"""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest

from harness.backend import run_policy
from harness.paths import SPECS_DIR
from harness.program import (
    OP_LAUNCH,
    OP_SYNC_STREAM,
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
