"""A graph launch's latency (runtime contract point 16): a lead-in from the launch's return, not GPU time.

A graph launched onto an idle stream starts its first kernel ``latency_us`` after its call returns; one queued
behind earlier work starts when that work ends (issue 24: the recorded workload charged the H200 recordings'
6 µs idle lead-in as a spacer kernel on every graph, queued ones too, and predicted the corpus's unprofiled
host-size graph decoder 8.3% long). Every path of the simulator gives the same rows: the SimPy model, the
timeline executor, and a step program through its reference expansion and through the fast paths.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from harness.backend import run_policy
from harness.profile import load_profile
from harness.program import (
    GRAPH_KERNEL_DTYPE,
    KIND_CODES,
    OP_GRAPH,
    OP_LAUNCH,
    OP_SYNC_STREAM,
    ProgramError,
    ProgramThread,
    StepProgram,
    expand,
    new_steps,
)
from harness.runtime import GraphKernel, KernelKind
from sim import SimBackend
from workloads.recorded.program import GraphTiming
from workloads.recorded.steps import (
    DEFAULT_GRAPH_TIMING,
    GRAPH_LEAD_IN,
    GRAPH_TAIL,
    graph_latency_us,
    profile_graph_timing,
    timed_graph,
)

H100 = load_profile("h100")  # graph_kernel_gap_us 0: a graph's nodes back to back, the arithmetic below exact
LAUNCH_US, LONG_US, LATENCY_US = 5.0, 200.0, 6.0


def _paths():
    """(label, backend, expanded) for every way the simulator may run a program command."""
    for fast in (True, False):
        for fast_programs in (True, False):
            for expanded in (False, True):
                yield f"fast={fast} fast_programs={fast_programs} expanded={expanded}", fast, fast_programs, expanded


def _generator_policy(kernels_of: dict[str, tuple[GraphKernel, ...]], latency_us: float):
    """Graph 'idle' onto an idle stream, a long kernel, graph 'queued' behind it, graph 'next' behind that."""

    def main(rt):
        s = yield rt.create_stream(0, "s")
        yield rt.launch_graph(s, "idle", kernels_of["idle"], LAUNCH_US, latency_us)
        yield rt.launch(s, "long", LONG_US, host_us=1.0)
        yield rt.launch_graph(s, "queued", kernels_of["queued"], LAUNCH_US, latency_us)
        yield rt.launch_graph(s, "next", kernels_of["next"], LAUNCH_US, latency_us)
        yield rt.sync_stream(s)

    return main


def _step_policy(kernels_of: dict[str, tuple[GraphKernel, ...]], latency_us: float, expanded: bool):
    """The same calls as one program command (OP_GRAPH's duration_us: the latency)."""
    names = ["long"]
    rows, graph_rows = [], []
    for graph in ("idle", "long", "queued", "next"):
        if graph == "long":
            rows.append((OP_LAUNCH, 0, LONG_US, 1.0, -1, 0))
            continue
        first = len(graph_rows)
        for k in kernels_of[graph]:
            names.append(k.name)
            graph_rows.append((len(names) - 1, KIND_CODES[k.kind], (0, 0, 0), k.duration_us, k.compute_share))
        names.append(graph)
        rows.append((OP_GRAPH, len(names) - 1, latency_us, LAUNCH_US, first, len(kernels_of[graph])))
    steps = new_steps(len(rows) + 1)
    for i, (op, name, duration, host, first, count) in enumerate(rows):
        steps[i]["op"], steps[i]["stream"], steps[i]["name"] = op, 0, name
        steps[i]["duration_us"], steps[i]["host_us"] = duration, host
        steps[i]["graph_first"], steps[i]["graph_count"] = first, count
    steps[-1]["op"], steps[-1]["stream"] = OP_SYNC_STREAM, 0
    graphs = np.zeros(len(graph_rows), GRAPH_KERNEL_DTYPE)
    graphs[:] = graph_rows
    program = StepProgram((ProgramThread("main", steps),), tuple(names), 1, graphs)

    def main(rt):
        s = yield rt.create_stream(0, "s")
        command = rt.run_program(program, [s])
        if expanded:
            yield from expand(rt, command)
        else:
            yield command

    return main


def _runs(kernels_of, latency_us: float) -> list[tuple[str, pd.DataFrame]]:
    """The ops table of the calls on every path: the generator on the SimPy model and on the timeline executor,
    then the program command on every path."""
    out = []
    for fast in (False, True):
        ops = run_policy(SimBackend(H100, fast=fast), _generator_policy(kernels_of, latency_us)).ops
        out.append((f"generator fast={fast}", ops))
    for label, fast, fast_programs, expanded in _paths():
        policy = _step_policy(kernels_of, latency_us, expanded)
        out.append((label, run_policy(SimBackend(H100, fast=fast, fast_programs=fast_programs), policy).ops))
    return out


def _same_on_every_path(kernels_of, latency_us: float) -> pd.DataFrame:
    runs = _runs(kernels_of, latency_us)
    generator = runs[0][1]
    for label, ops in runs[1:]:
        if label.startswith("generator"):
            pd.testing.assert_frame_equal(ops, generator, check_exact=True, obj=label)
    program = runs[2][1]
    for label, ops in runs[2:]:
        pd.testing.assert_frame_equal(ops, program, check_exact=True, obj=label)
    device = lambda ops: ops[ops["kind"] == "kernel"].reset_index(drop=True)  # noqa: E731
    # the program's rows are the generator's (its host rows aside: the generator has no program host work)
    pd.testing.assert_frame_equal(device(program)[["name", "start_us", "end_us"]],
                                  device(generator)[["name", "start_us", "end_us"]], check_exact=True)  # fmt: skip
    return generator.set_index("name")


def test_an_idle_launch_waits_out_its_latency_and_a_queued_one_hides_it():
    kernels_of = {g: (GraphKernel(f"{g}0", 10.0), GraphKernel(f"{g}1", 4.0)) for g in ("idle", "queued", "next")}
    ops = _same_on_every_path(kernels_of, LATENCY_US)
    # onto an idle stream: the call returns at 5 µs, the first kernel starts the latency after that
    assert ops.loc["idle0", "start_us"] == LAUNCH_US + LATENCY_US
    assert ops.loc["idle1", "start_us"] == ops.loc["idle0", "end_us"]  # the latency is before the first kernel only
    # queued behind the long kernel (its call returned long before that ended): right after it
    assert ops.loc["queued0", "start_us"] == ops.loc["long", "end_us"]
    assert ops.loc["queued0", "start_us"] > ops.loc["queued0", "issue_us"] + LAUNCH_US + LATENCY_US
    assert ops.loc["next0", "start_us"] == ops.loc["queued1", "end_us"]  # behind a graph: right after its last kernel
    without = _same_on_every_path(kernels_of, 0.0)
    assert without.loc["idle0", "start_us"] == LAUNCH_US
    assert without.loc["queued0", "start_us"] == without.loc["long", "end_us"]
    assert ops.loc["long", "end_us"] - without.loc["long", "end_us"] == LATENCY_US  # the idle graph's wait, only


def test_recorded_graph_timing_idle_lead_is_a_latency_and_queued_graphs_keep_only_the_queued_gap():
    """The recorded workload's graphs (``timed_graph`` + ``graph_latency_us``): a graph launched onto an idle stream
    starts its first kernel the recording's idle lead-in after its call returns; one queued behind a long kernel
    starts what the recording's queued graphs kept beyond the tail after it; one queued behind a graph, the queued
    gap after that graph's last kernel. (Before, the idle lead-in was a spacer of GPU time on every graph, and the
    queued graph started 6 µs after the long kernel rather than 1.)"""
    timing = GraphTiming(
        launches=3, lead_in_us=6.0, kernel_gap_us=0.0, tail_us=2.0, idle_lead_us=6.0, queued_gap_us=3.0
    )
    latency = graph_latency_us(timing)
    assert latency == pytest.approx(5.0)  # the idle lead-in less the 1 µs lead spacer a queued graph keeps too
    kernels_of = {
        g: timed_graph((GraphKernel(f"{g}0", 10.0, 1.0, KernelKind.COMPUTE), GraphKernel(f"{g}1", 4.0)), timing, 0.0)
        for g in ("idle", "queued", "next")
    }
    assert [k.name for k in kernels_of["idle"]] == [GRAPH_LEAD_IN, "idle0", "idle1", GRAPH_TAIL]
    ops = _same_on_every_path(kernels_of, latency)
    assert ops.loc["idle0", "start_us"] == pytest.approx(LAUNCH_US + 6.0)
    assert ops.loc["queued0", "start_us"] == pytest.approx(ops.loc["long", "end_us"] + 1.0)
    assert ops.loc["next0", "start_us"] == pytest.approx(ops.loc["queued1", "end_us"] + 3.0)


def test_a_timing_without_the_idle_and_queued_figures_reads_its_lead_in_as_the_latency():
    timing = GraphTiming(launches=1, lead_in_us=6.0, kernel_gap_us=0.5, tail_us=4.0)
    assert graph_latency_us(timing) == 6.0
    lead = timed_graph((GraphKernel("a", 1.0), GraphKernel("b", 1.0), GraphKernel("c", 1.0)), timing, 0.25)
    assert lead[0].name == GRAPH_LEAD_IN and lead[0].duration_us == pytest.approx(2 * 0.25 - 0.25)  # gaps only
    issued = GraphTiming(launches=1, lead_in_us=0.0, kernel_gap_us=0.5, tail_us=4.0, issued_in_call_us=19.0)
    assert graph_latency_us(issued) == 0.0 and graph_latency_us(None) == 0.0


def test_added_graphs_take_the_profiles_device_figures_else_the_defaults():
    timing = profile_graph_timing(H100)
    assert timing.idle_lead_us == H100.device.graph_lead_in_us
    assert timing.queued_gap_us == H100.device.graph_queued_gap_us
    assert timing.tail_us == H100.device.graph_queued_gap_us  # graphs back to back: the whole gap after the graph
    assert graph_latency_us(timing) == H100.device.graph_lead_in_us
    assert 5.0 < H100.device.graph_lead_in_us < 7.0 and 3.0 < H100.device.graph_queued_gap_us < 6.0
    h200 = load_profile("h200")
    assert h200.device.graph_lead_in_us is None and profile_graph_timing(h200) is None
    assert graph_latency_us(DEFAULT_GRAPH_TIMING) == 6.0


def test_a_negative_latency_is_refused_by_the_runtime_and_the_step_check():
    from harness.runtime import Runtime, Stream

    rt = Runtime([], "sim", 0, H100)
    for bad in (-1.0, math.nan):
        with pytest.raises(ValueError, match="latency_us must be >= 0"):
            rt.launch_graph(Stream(1, 0, "s"), "g", (GraphKernel("k", 1.0),), latency_us=bad)
    steps = new_steps(1)
    steps["op"], steps["stream"], steps["graph_count"], steps["duration_us"] = OP_GRAPH, 0, 1, -1.0
    graphs = np.zeros(1, GRAPH_KERNEL_DTYPE)
    graphs["share"] = 1.0
    with pytest.raises(ProgramError, match=r"step 0: field 'duration_us'"):
        StepProgram((ProgramThread("main", steps),), ("k",), 1, graphs)


def test_graph_timing_measures_the_idle_lead_and_the_queued_gap_apart():
    """The corpus's H100 recordings: the backup decoder syncs each step (its graphs launch onto an idle stream,
    6.6 µs lead-in), the plain one issues its graphs back to back (queued 5.9 µs after the graph ahead)."""
    from harness.paths import TRACES_DIR
    from harness.trace import load_trace
    from workloads.recorded.program import build_program

    folder = TRACES_DIR / "recorded" / "corpus" / "recordings"
    backup = build_program(load_trace(folder / "decode_graph_host_backup-sync.parquet").ops, "b").graph_timing
    assert backup.queued_gap_us is None and backup.idle_lead_us == pytest.approx(6.60, abs=0.05)
    queued = build_program(load_trace(folder / "decode_graph_host-sync.parquet").ops, "q").graph_timing
    assert queued.queued_gap_us == pytest.approx(5.89, abs=0.05) and queued.lead_in_us == 0.0
    assert graph_latency_us(queued) == pytest.approx(queued.idle_lead_us) and queued.idle_lead_us < 6.0
