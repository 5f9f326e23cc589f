"""When the replay runs program commands natively (HARNESS_REPLAY_NATIVE), without a GPU."""

from __future__ import annotations

import time

import pytest

from harness.program import OP_COLLECTIVE, ProgramThread, StepProgram, new_steps
from harness.runtime import Communicator, RunProgram, Stream
from replay.native import executor
from replay.native.build import NativeUnavailable, compile_command, source_hash


class _Context:
    native = None


_ONE_STEP = StepProgram((ProgramThread("main", new_steps(1)),), (), 1)


def _cmd(device: int = 0) -> RunProgram:
    return RunProgram(program=_ONE_STEP, streams=(Stream(1, device, "s0"),))


@pytest.mark.parametrize("value, mode", [("0", "off"), ("off", "off"), ("auto", "auto"), ("1", "on"), ("ON", "on")])
def test_the_mode_is_read_from_the_environment(monkeypatch, value, mode):
    monkeypatch.setenv(executor.MODE_ENV, value)
    assert executor.mode() == mode


def test_a_bad_mode_is_refused_naming_the_variable(monkeypatch):
    monkeypatch.setenv(executor.MODE_ENV, "fast")
    with pytest.raises(ValueError, match="HARNESS_REPLAY_NATIVE must be one of"):
        executor.mode()


def test_off_by_default_and_auto_falls_back_when_the_executor_cannot_open(monkeypatch, capsys):
    monkeypatch.delenv(executor.MODE_ENV, raising=False)
    assert executor.runner_for(_Context(), _cmd()) is None

    def unavailable(device):
        raise NativeUnavailable("replay.native: no nvcc")

    monkeypatch.setattr(executor, "NativeRunner", unavailable)
    monkeypatch.setenv(executor.MODE_ENV, "auto")
    context = _Context()
    assert executor.runner_for(context, _cmd()) is None and context.native is False
    assert "program commands run interpreted: replay.native: no nvcc" in capsys.readouterr().err
    monkeypatch.setenv(executor.MODE_ENV, "on")
    with pytest.raises(NativeUnavailable, match="no nvcc"):
        executor.runner_for(_Context(), _cmd())


def test_programs_on_other_devices_run_interpreted(monkeypatch):
    class Runner:
        def accepts(self, cmd):
            return all(s.device == 0 for s in cmd.streams)

    context = _Context()
    context.native = Runner()
    monkeypatch.setenv(executor.MODE_ENV, "auto")
    assert executor.runner_for(context, _cmd(0)) is context.native
    assert executor.runner_for(context, _cmd(1)) is None


def test_perf_counter_and_the_executors_clock_agree_within_a_few_microseconds():
    offset = executor.perf_counter_offset_ns()
    mono = time.clock_gettime_ns(time.CLOCK_MONOTONIC) + offset
    assert abs(time.perf_counter_ns() - mono) < 50_000


def test_the_build_is_cached_by_source_and_flags(monkeypatch, tmp_path):
    monkeypatch.setenv("HARNESS_NATIVE_CACHE", str(tmp_path))
    fake = compile_command("fake")
    assert source_hash("fake", fake) == source_hash("fake", list(fake))
    assert source_hash("fake", fake) != source_hash("fake", [*fake, "-DX"])
    from replay.native.build import build

    first = build("fake")
    stamp = first.stat().st_mtime_ns
    assert build("fake") == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert first.parent.parent == tmp_path and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]


def test_the_build_hash_covers_every_header_the_sources_include():
    import re

    from replay.native.build import HEADERS, SRC, TARGETS

    seen, todo = set(), list(TARGETS.values())
    while todo:
        for name in re.findall(r'^#include "([^"]+)"', (SRC / todo.pop()).read_text(), re.M):
            if name not in seen:
                seen.add(name)
                todo.append(name)
    assert seen <= set(HEADERS), f"included but not hashed: {sorted(seen - set(HEADERS))}"
    assert "stand_in_work.cuh" in seen


def test_the_stand_in_work_is_written_once_for_the_native_and_the_cupy_kernels():
    from replay import timed
    from replay.native.build import SRC

    work = timed.STAND_IN_WORK.read_text()
    assert timed.STAND_IN_WORK.parent == SRC and "fmaf(" in work and "%%globaltimer" in work
    assert timed.kernel_source().startswith(work)
    for own in (timed._KERNELS, (SRC / "cuda_api.cu").read_text()):
        assert "fmaf(" not in own and "%%globaltimer" not in own and "fma_chains_until(" in own


def test_no_compiler_is_one_clear_line(monkeypatch):
    monkeypatch.setenv("CXX", "")
    monkeypatch.setattr("shutil.which", lambda name: None)
    with pytest.raises(NativeUnavailable, match=r"^replay.native: no C\+\+ compiler"):
        compile_command("fake")
    monkeypatch.delenv("CUDA_HOME", raising=False)
    monkeypatch.delenv("CUDA_PATH", raising=False)
    monkeypatch.setattr("pathlib.Path.is_file", lambda self: False)
    with pytest.raises(NativeUnavailable, match="^replay.native: no nvcc"):
        compile_command("cuda")


def test_the_probe_summarizes_launch_time_and_lateness_from_a_run():
    from replay.native.probe import probe_program, summarize
    from replay.native.twin import FakeCosts, run_fake

    out = run_fake(probe_program(500, 5000))[0]
    summary = summarize(out, 500)
    assert summary["launch_median_us"] == FakeCosts().launch / 1e3  # the fake's launch cost
    assert summary["late_median_us"] == 0.0 == summary["late_p99_us"]  # the fake clock is never late
    # every launch is due 5 µs after the previous one returned
    assert (out["target_ns"][1:500] - out["done_ns"][:499] == 5000).all()


def test_the_calibration_measures_the_floor_on_a_stream_and_inside_a_graph():
    from replay.native.executor import GRAPH_FLOOR_KERNELS, measure
    from replay.native.steps import Kind

    class Lib:  # back to back, a stand-in costs its timer plus 1.5 µs (compute), 2 (memory), 2.5 (latency)
        sms = 132
        graphs: list = []

        def time_kernel_ns(self, kind, grid, timer_ns, reps=20):
            return timer_ns + (1500.0, 2000.0, 2500.0)[kind]

        def graph(self, kinds, grids, timer_ns, target_ns=0):
            self.graphs.append((kinds, timer_ns, target_ns))
            return 7

        def time_graph_ns(self, index, reps=5):
            assert index == 7
            return 900.0 * GRAPH_FLOOR_KERNELS  # 0.9 µs a kernel inside a graph

    lib = Lib()
    cal = measure(lib)
    assert cal.overhead_us == pytest.approx((1.5, 2.0, 2.5)) and cal.floor_us == pytest.approx(2.5)
    assert cal.in_graph_floor_us == pytest.approx(0.9)
    assert lib.graphs == [([int(Kind.LATENCY)] * GRAPH_FLOOR_KERNELS, [0] * GRAPH_FLOOR_KERNELS, 0)]


def test_programs_of_collectives_run_interpreted_in_every_mode_and_say_so(monkeypatch, capsys):
    steps = new_steps(1)
    steps["op"], steps["stream"], steps["graph_first"], steps["graph_count"] = OP_COLLECTIVE, 0, 0, -1
    program = StepProgram((ProgramThread("main", steps),), (), 1, communicators=((0, 1),))
    cmd = RunProgram(program, (Stream(1, 0, "s0"),), (Communicator(2, (0, 1), "tp"),))

    class Runner:
        def accepts(self, cmd):
            return True

    context = _Context()
    context.native = Runner()
    for value in ("auto", "on"):
        monkeypatch.setenv(executor.MODE_ENV, value)
        assert executor.runner_for(context, cmd) is None
    assert executor.runner_for(context, _cmd(0)) is context.native  # the same runner takes one without collectives
    err = capsys.readouterr().err
    assert err.count("program commands run interpreted: a program of collectives") == 1  # once per program


def test_a_run_in_another_native_mode_warms_up_again(monkeypatch):
    """The replay warms a policy up once per inputs and mode: a native run first opens, calibrates and converts
    (~57 ms on the H100), which a timed run after interpreted warm-ups counted in its span (2.28x the recording)."""
    from replay.engine import _warm_key

    def main(rt):
        yield from ()

    keys = {}
    for value in ("off", "0", "on", "auto"):
        monkeypatch.setenv(executor.MODE_ENV, value)
        keys[value] = _warm_key(main, (1, "x"))
    assert keys["off"] == keys["0"]
    assert len({keys["off"], keys["on"], keys["auto"]}) == 3
    monkeypatch.setenv(executor.MODE_ENV, "on")
    unhashable = ([1],)
    assert _warm_key(main, unhashable) == _warm_key(main, unhashable) != keys["on"]


def test_graph_tuning_spreads_what_is_missing_evenly_and_takes_what_is_over_by_share():
    from replay.native.library import spread

    assert spread([1000, 0, 8000], 3000) == [2000, 1000, 9000]
    assert spread([1000, 0, 8000], -3000) == [0, 0, 7000]  # evenly: the timer at 0 cannot give its part
    shorter = spread([1000, 0, 8000], -3000, proportional=True)
    assert shorter == [667, 0, 5333] and sum(shorter) == 6000  # by share: all of it taken
    assert spread([1000, 0, 8000], -20_000, proportional=True) == [0, 0, 0]
    assert spread([1000, 0, 8000], 3000, proportional=True) == [2000, 1000, 9000]


def test_the_graph_tuning_mode_is_read_from_the_environment(monkeypatch):
    from replay.native.library import GRAPH_TUNE_ENV, graph_tune

    monkeypatch.delenv(GRAPH_TUNE_ENV, raising=False)
    assert graph_tune() == "back_to_back"
    monkeypatch.setenv(GRAPH_TUNE_ENV, "alone")
    assert graph_tune() == "alone"
    monkeypatch.setenv(GRAPH_TUNE_ENV, "lonely")
    with pytest.raises(ValueError, match="HARNESS_NATIVE_GRAPH_TUNE must be back_to_back or alone; got 'lonely'"):
        graph_tune()
