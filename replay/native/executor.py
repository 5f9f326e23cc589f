"""Program commands on the GPU through the compiled executor: what the replay engine calls (needs CUDA and nvcc).

``HARNESS_REPLAY_NATIVE`` picks whether the replay runs program commands
natively:

* ``0`` / ``off`` (the default until the GPU check has passed on the lent
  GPUs): always the reference expansion, command by command, in Python;
* ``auto``: natively when the executor builds and opens (else the expansion,
  saying why once on stderr);
* ``1`` / ``on``: natively or fail (the GPU check uses this).

A program runs natively when all its streams are on device 0 (the executor
drives one GPU) and it has no collective steps (``OP_COLLECTIVE``: a multi-rank
recording, whose ranks meet through ``torch.distributed``); otherwise through the
expansion, in every mode, saying so once per program on stderr
("program commands run interpreted: ..."). The executor gets the
program's own torch streams, so work the policy issued on them before the
program stays ordered before it.

:class:`NativeRunner` measures the stand-ins once when it opens
(:class:`~replay.native.program.Calibration`: SMs, the floor, each kind's cost
beyond its timer), converts each program once (:func:`~replay.native.program.to_native`,
CUDA graphs captured once) and turns each run's stamps into op rows on the
replay's clock.
"""

from __future__ import annotations

import os
import statistics
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from harness.oplog import OpRow
from harness.program import ProgramOutcome, StepProgram
from harness.runtime import RunProgram
from replay.floor import FloorLifts
from replay.native.build import NativeUnavailable
from replay.native.library import graph_tune
from replay.native.program import Calibration, Converted, lifts_into, op_rows, to_native
from replay.native.steps import GraphDef, Kind

MODE_ENV = "HARNESS_REPLAY_NATIVE"
LEAD_NS = 50_000  # the program's threads start this long after the call: time for them to be made
_MODES = {"0": "off", "off": "off", "": "off", "auto": "auto", "1": "on", "on": "on"}


START_ENV = "HARNESS_NATIVE_START"


def start_at_issue() -> bool:
    """Where a program's timeline starts (``HARNESS_NATIVE_START``): "issue" (the default), when its command was
    issued, as on the interpreted replay and the simulator (the executor's set-up, ~0.3 ms from the command to
    its threads on the H200 of 2026-12-07, is taken from its first host gaps); "lead": ``LEAD_NS`` after the
    executor is called (the set-up then counts in the run's span: +2.7% on decode_graph's 12 ms)."""
    value = os.environ.get(START_ENV, "issue").strip().lower() or "issue"
    if value not in ("issue", "lead"):
        raise ValueError(f"{START_ENV} must be issue or lead; got {value!r}")
    return value == "issue"


def mode() -> str:
    value = os.environ.get(MODE_ENV, "off").strip().lower()
    if value not in _MODES:
        raise ValueError(f"{MODE_ENV} must be one of 0/off, auto, 1/on; got {value!r}")
    return _MODES[value]


def measure(lib: Any) -> Calibration:
    """The stand-ins' SMs, floor and per-kind cost beyond the timer, from back-to-back runs on the GPU."""
    base = Calibration(lib.sms, 0.0, (0.0, 0.0, 0.0))
    overhead = []
    for kind in (Kind.COMPUTE, Kind.MEMORY, Kind.LATENCY):
        grid = base.grid(kind, 1.0)
        lib.time_kernel_ns(kind, grid, 10_000, reps=3)  # first launches are slow
        at_1ms = statistics.median(lib.time_kernel_ns(kind, grid, 1_000_000, reps=3) for _ in range(3))
        overhead.append((at_1ms - 1e6) / 1e3)
    floor_us = statistics.median(lib.time_kernel_ns(Kind.LATENCY, 1, 0, reps=50) for _ in range(5)) / 1e3
    return Calibration(lib.sms, floor_us, (overhead[0], overhead[1], overhead[2]), graph_floor_us(lib))


GRAPH_FLOOR_KERNELS = 64


def graph_floor_us(lib: Any) -> float:
    """A stand-in's back-to-back time inside a CUDA graph: a graph of zero-timer stand-ins, per kernel (µs).

    The graph's own launch cost is shared by its ``GRAPH_FLOOR_KERNELS`` kernels, as in a recorded graph.
    """
    n = GRAPH_FLOOR_KERNELS
    index = lib.graph([int(Kind.LATENCY)] * n, [1] * n, [0] * n)
    lib.time_graph_ns(index, reps=3)  # the first launches are slow
    return statistics.median(lib.time_graph_ns(index, reps=10) for _ in range(3)) / n / 1e3


def perf_counter_offset_ns() -> int:
    """``perf_counter`` ns less ``CLOCK_MONOTONIC`` ns (0 on Linux, where they are the same clock)."""
    pairs = []
    for _ in range(5):
        a = time.perf_counter_ns()
        m = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
        b = time.perf_counter_ns()
        pairs.append((b - a, (a + b) // 2 - m))
    return min(pairs)[1]


class NativeRunner:
    """The compiled executor on device 0, with its calibration and converted programs."""

    def __init__(self, device: int = 0) -> None:
        from replay.native.library import CudaLibrary

        self.lib = CudaLibrary(device)
        self.calibration = measure(self.lib)
        self.offset_ns = perf_counter_offset_ns()
        self._programs: dict[tuple[int, float, str], tuple[StepProgram, Converted]] = {}

    def accepts(self, cmd: RunProgram) -> bool:
        return all(s.device == 0 for s in cmd.streams)

    def converted(self, program: StepProgram, graph_gap_us: float = 0.0) -> Converted:
        """``program``'s native steps, made once per program (its graphs captured and tuned then)."""
        key = (id(program), graph_gap_us, graph_tune())
        entry = self._programs.get(key)
        if entry is None or entry[0] is not program:

            def graph_index(graph: GraphDef) -> int:
                return self.lib.graph(graph.kinds, graph.grids, graph.timer_ns, graph.target_ns, graph.alone)

            converted = to_native(program, self.calibration, graph_index, graph_gap_us)
            entry = self._programs[key] = (program, converted)
        return entry[1]

    def run(
        self,
        cmd: RunProgram,
        thread_name: str,
        new_id: Callable[[], int],
        origin_s: float,
        lifts: FloorLifts,
        graph_gap_us: float = 0.0,
    ) -> tuple[list[OpRow], list[OpRow], ProgramOutcome]:
        """Run ``cmd``; (host rows, device rows, outcome) on the replay's clock (µs since ``origin_s``)."""
        program = cmd.program
        converted = self.converted(program, graph_gap_us)  # made once, in a warm-up run (graphs tuned then)
        self.lib.wake()  # the host threads spin from now: they are awake by the time the run reaches them
        issued_ns = time.perf_counter_ns() - self.offset_ns  # CLOCK_MONOTONIC: the program starts now
        handles = [int(s.native.cuda_stream) if s.native is not None else 0 for s in cmd.streams]
        start_ns = issued_ns if start_at_issue() else 0
        called_ns = time.perf_counter_ns() - self.offset_ns
        outs = self.lib.run(converted.native, handles, lead_ns=LEAD_NS, start_ns=start_ns)
        self.last_run = (issued_ns, called_ns, outs)  # for diagnostics (tools/graph_diag.py): the set-up
        base_us = origin_s * 1e6

        def to_us(ns: np.ndarray) -> np.ndarray:
            ns = np.asarray(ns, dtype=np.int64)
            return np.where(ns >= 0, (ns + self.offset_ns) / 1e3 - base_us, np.nan)

        names = [thread_name] + [t.name for t in program.threads[1:]]
        host, device, unresolved = op_rows(
            program, converted, outs, names, [(s.device, s.name) for s in cmd.streams], to_us, new_id
        )
        lifts_into(lifts, converted)
        return host, device, ProgramOutcome(unresolved)


_failed: set[str] = set()


_told: set[int] = set()  # programs whose interpreted run was said


def interpreted_because(cmd: RunProgram) -> str | None:
    """Why ``cmd`` runs interpreted whatever the mode (None: the mode decides): its collective steps."""
    if cmd.program.communicators:
        return (
            "a program of collectives (OP_COLLECTIVE steps) runs through its expansion: the native executor drives"
            " one GPU and issues no NCCL calls"
        )
    return None


def runner_for(context: Any, cmd: RunProgram) -> NativeRunner | None:
    """The context's native runner when ``cmd`` should run natively (see the module docstring), else None."""
    chosen = mode()
    if chosen == "off":
        return None
    reason = interpreted_because(cmd)
    if reason is not None:
        if id(cmd.program) not in _told:
            _told.add(id(cmd.program))
            print(f"replay: program commands run interpreted: {reason}", file=sys.stderr)
        return None
    runner = getattr(context, "native", None)
    if runner is None:
        try:
            runner = context.native = NativeRunner(0)
        except (NativeUnavailable, OSError, RuntimeError) as err:
            if chosen == "on":
                raise
            if str(err) not in _failed:
                _failed.add(str(err))
                print(f"replay: program commands run interpreted: {err}", file=sys.stderr)
            context.native = False
            return None
    if runner is False or not runner.accepts(cmd):
        if chosen == "on" and runner is not False:
            raise NativeUnavailable(f"{MODE_ENV}=on: a program on devices other than 0 cannot run natively")
        return None
    return runner
