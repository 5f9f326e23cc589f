"""The built executor through ctypes: the fake one (any machine with g++) and the CUDA one (a GPU machine).

Steps and outputs cross as the numpy arrays themselves (``STEP_DTYPE`` /
``OUT_DTYPE`` are the C structs), one pointer per host thread; no copy, no GIL
held while the native threads run (ctypes releases it for the call).
"""

from __future__ import annotations

import ctypes
import functools
import os
import re

import numpy as np

from replay.native.build import NativeUnavailable, build
from replay.native.steps import OUT_DTYPE, NativeProgram

_ERR = 512


def _pointers(arrays: list[np.ndarray]) -> ctypes.Array:
    return (ctypes.c_void_p * len(arrays))(*[a.ctypes.data for a in arrays])


def _counts(arrays: list[np.ndarray]) -> ctypes.Array:
    return (ctypes.c_int64 * len(arrays))(*[len(a) for a in arrays])


def _checked(fn, *args, what: str, ok=lambda result: result >= 0):
    """Call native ``fn(*args, err, errlen)``; its result, or a RuntimeError "native WHAT failed: <its message>"."""
    err = ctypes.create_string_buffer(_ERR)
    result = fn(*args, err, _ERR)
    if not ok(result):
        raise RuntimeError(f"native {what} failed: {err.value.decode()}")
    return result


def _graph_arrays(kinds: list[int], grids: list[int], timer_ns: list[int]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A graph's stand-ins as the native calls take them: kinds and grids int32, timers int64."""
    return np.asarray(kinds, np.int32), np.asarray(grids, np.int32), np.asarray(timer_ns, np.int64)


def _outs(program: NativeProgram) -> list[np.ndarray]:
    return [np.zeros(len(steps), OUT_DTYPE) for steps in program.threads]


@functools.cache
def fake_library() -> ctypes.CDLL:
    lib = ctypes.CDLL(str(build("fake")))
    lib.nx_fake_run.restype = ctypes.c_int
    lib.nx_fake_run.argtypes = [
        ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
        ctypes.c_int, ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_void_p, ctypes.c_int,
        ctypes.c_int64, ctypes.c_int, ctypes.c_char_p, ctypes.c_int,
    ]  # fmt: skip
    lib.nx_fake_pool_stats.restype = None
    lib.nx_fake_pool_stats.argtypes = [ctypes.c_void_p]
    _declare_host(lib)
    return lib


def fake_pool_stats() -> tuple[int, int]:
    """The fake library's thread pool (``src/worker_pool.hpp``): (threads it holds, placements made since it was
    loaded)."""
    out = np.zeros(2, np.int64)
    fake_library().nx_fake_pool_stats(out.ctypes.data)
    return int(out[0]), int(out[1])


def _declare_host(lib: ctypes.CDLL) -> None:
    """The host-thread functions both libraries export (``src/host_thread.hpp``)."""
    lib.nx_host_cpus.restype = ctypes.c_int
    lib.nx_host_cpus.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.nx_host_jitter.restype = None
    lib.nx_host_jitter.argtypes = [
        ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p, ctypes.c_int64,
        ctypes.c_void_p,
    ]  # fmt: skip
    lib.nx_place_check.restype = None
    lib.nx_place_check.argtypes = [ctypes.c_int, ctypes.c_void_p]


PLACED_PINNED, PLACED_FIFO = 1, 2
LAUNCH_APIS = ("runtime", "driver", "packed")  # nx_launch_api's codes, in order


def check_placement_env() -> None:
    """Refuse a ``HARNESS_NATIVE_CPUS`` / ``HARNESS_NATIVE_FIFO`` the executor would not understand, naming it."""
    cpus = os.environ.get("HARNESS_NATIVE_CPUS", "auto").strip()
    if cpus not in ("", "auto", "off", "0", "none") and not re.fullmatch(r"\d+(-\d+)?(,\d+(-\d+)?)*", cpus):
        raise ValueError(f"HARNESS_NATIVE_CPUS must be auto, off or a CPU list like 5,7,9-11; got {cpus!r}")
    for part in cpus.split(",") if cpus[:1].isdigit() else ():
        a, _, b = part.partition("-")
        if b and int(b) < int(a):
            raise ValueError(f"HARNESS_NATIVE_CPUS: the range {part!r} runs backwards")
    fifo = os.environ.get("HARNESS_NATIVE_FIFO", "0").strip()
    if fifo not in ("", "0", "1", "on", "off"):
        raise ValueError(f"HARNESS_NATIVE_FIFO must be 0 or 1; got {fifo!r}")
    spin = os.environ.get("HARNESS_NATIVE_SPIN", "busy").strip()
    if spin not in ("", "pause", "busy"):
        raise ValueError(f"HARNESS_NATIVE_SPIN must be busy or pause; got {spin!r}")


GRAPH_TUNE_ENV = "HARNESS_NATIVE_GRAPH_TUNE"


def graph_tune() -> str:
    """How captured graphs are timed when tuned (``HARNESS_NATIVE_GRAPH_TUNE``): "auto" (the default: alone where
    the program launches a graph on a stream it synced since its last work, else back to back), or either forced:
    "back_to_back", "alone"."""
    value = os.environ.get(GRAPH_TUNE_ENV, "auto").strip() or "auto"
    if value not in ("auto", "back_to_back", "alone"):
        raise ValueError(f"{GRAPH_TUNE_ENV} must be auto, back_to_back or alone; got {value!r}")
    return value


def spread(timers: list[int], error_ns: float, proportional: bool = False) -> list[int]:
    """``timers`` (ns) changed by ``error_ns`` in all: evenly, or, to shorten with ``proportional``, each by its
    share of their sum (a long spacer gives most; evenly, timers at 0 would refuse their part). None below 0."""
    total = sum(timers)
    if proportional and error_ns < 0 and total > 0:
        factor = max(0.0, 1.0 + error_ns / total)
        return [int(round(t * factor)) for t in timers]
    return [max(0, int(round(t + error_ns / len(timers)))) for t in timers]


TUNE_ROUNDS = 6  # captures after the first, at most, while a graph is tuned to its target
SPREAD_ROUNDS = 2  # rounds that spread the error over every timer; then one kernel takes it (retune)
DITHER_NS = 512  # the span of the fixed offsets that dithered() gives the timers of a captured graph


def retune(timers: list[int], error_ns: float, round_: int, absorber: int, proportional: bool = False) -> list[int]:
    """The timers of tuning round ``round_`` that were ``error_ns`` short of the target (negative: over it).

    The first ``SPREAD_ROUNDS`` spread it over every timer (:func:`spread`); later rounds give it all to one
    kernel, ``absorber`` (the longest timer: a recorded graph's lead-in spacer) when it can take it. A stand-in
    runs until %globaltimer has passed its timer, and that clock moves in steps (~0.19 µs on the H200), so a
    kernel's time is a staircase of its timer: moving 96 near-floor timers together moved a decode graph by
    ~13-18 µs at a time, and four spread rounds left its launches 9-30 µs over their 139 µs target
    (``measurements/2026-12-07_h200_graph-diag``). One kernel's timer moves the graph by one step at most.
    """
    if round_ >= SPREAD_ROUNDS and timers[absorber] + error_ns >= 0:
        out = list(timers)
        out[absorber] = int(round(timers[absorber] + error_ns))
        return out
    return spread(timers, error_ns, proportional=proportional)


def dithered(timers: list[int]) -> list[int]:
    """``timers`` as captured: each moved by a fixed offset within +-``DITHER_NS``/2 (golden-ratio sequence, mean
    ~0; none below 0), so that kernels with the same timer do not all cross a step of the GPU's timer together:
    the graph's time then follows its timers' sum in small steps (:func:`retune`)."""
    return [max(0, t + int(round(((i * 0.6180339887) % 1.0 - 0.5) * DITHER_NS))) for i, t in enumerate(timers)]


def placement_cpus() -> list[int]:
    """The CPUs a run's threads go on, in thread order, as ``HARNESS_NATIVE_CPUS`` says now ([]: not pinned)."""
    lib = fake_library()
    cpus = np.zeros(1024, np.int32)
    n = lib.nx_host_cpus(cpus.ctypes.data, len(cpus))
    return [int(c) for c in cpus[: min(n, len(cpus))]]


def place_check(index: int) -> tuple[int, int]:
    """(PLACED_* granted, the CPU it ran on) of a fresh thread placed as a run's thread ``index`` would be."""
    out = np.zeros(2, np.int32)
    fake_library().nx_place_check(index, out.ctypes.data)
    return int(out[0]), int(out[1])


def run_fake_native(program: NativeProgram, est0_ns: int = 2000, threaded: bool = True) -> list[np.ndarray]:
    """``program`` run by the compiled executor on the fake device (:func:`replay.native.twin.run_fake`'s twin)."""
    from replay.native.twin import FakeCosts

    lib = fake_library()
    costs = FakeCosts()
    graph_ns = np.asarray(
        [sum(t + costs.kernel_overhead for t in g.timer_ns) for g in program.graphs] or [0], dtype=np.int64
    )
    outs = _outs(program)
    order = np.asarray(program.sync_order or [0], np.int32)
    _checked(
        lib.nx_fake_run, len(program.threads), _pointers(program.threads), _counts(program.threads), _pointers(outs),
        program.streams, order.ctypes.data, program.events, program.timing_events, program.stamps,
        graph_ns.ctypes.data, len(program.graphs), est0_ns, int(threaded), what="fake run", ok=lambda rc: rc == 0,
    )  # fmt: skip
    return outs


class CudaLibrary:
    """The CUDA executor on one device: open once, run many programs (needs a GPU and nvcc)."""

    def __init__(self, device: int = 0) -> None:
        check_placement_env()
        lib = ctypes.CDLL(str(build("cuda")))
        lib.nx_open.restype = ctypes.c_void_p
        lib.nx_open.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.nx_sms.restype = ctypes.c_int
        lib.nx_sms.argtypes = [ctypes.c_void_p]
        lib.nx_time_kernel.restype = ctypes.c_double
        lib.nx_time_kernel.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_longlong,
            ctypes.c_int,
            ctypes.c_char_p,
            ctypes.c_int,
        ]
        lib.nx_add_graph.restype = ctypes.c_int
        lib.nx_add_graph.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p,
            ctypes.c_int,
        ]  # fmt: skip
        lib.nx_time_graph.restype = ctypes.c_double
        lib.nx_time_graph.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.nx_time_graph_alone.restype = ctypes.c_double
        lib.nx_time_graph_alone.argtypes = lib.nx_time_graph.argtypes
        lib.nx_add_graph_stamped.restype = ctypes.c_int
        lib.nx_add_graph_stamped.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_longlong, ctypes.c_char_p, ctypes.c_int,
        ]  # fmt: skip
        lib.nx_last_setup.restype = None
        lib.nx_last_setup.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.nx_wake.restype = None
        lib.nx_wake.argtypes = [ctypes.c_void_p]
        lib.nx_pool_stats.restype = None
        lib.nx_pool_stats.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
        lib.nx_last_stamps.restype = ctypes.c_longlong
        lib.nx_last_stamps.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_longlong]
        lib.nx_trace_graph.restype = ctypes.c_int
        lib.nx_trace_graph.argtypes = [
            ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_longlong, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int,
        ]  # fmt: skip
        lib.nx_run.restype = ctypes.c_int
        lib.nx_run.argtypes = [
            ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p,
            ctypes.c_int, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int, ctypes.c_int,
            ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong, ctypes.c_longlong,
            ctypes.c_longlong, ctypes.c_char_p, ctypes.c_int,
        ]  # fmt: skip
        lib.nx_launch_floor.restype = ctypes.c_int
        lib.nx_launch_floor.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.nx_close.restype = None
        lib.nx_close.argtypes = [ctypes.c_void_p]
        self.lib = lib
        err = ctypes.create_string_buffer(_ERR)
        self.handle = lib.nx_open(device, err, _ERR)
        if not self.handle:
            raise NativeUnavailable(
                f"replay.native: the CUDA executor could not open device {device}: {err.value.decode()}"
            )
        self.sms = lib.nx_sms(self.handle)
        lib.nx_launch_api.restype = ctypes.c_int
        lib.nx_launch_api.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_int]
        lib.nx_placement.restype = ctypes.c_int
        lib.nx_placement.argtypes = [ctypes.c_void_p]
        _declare_host(lib)
        # HARNESS_NATIVE_LAUNCH, read at open: "packed" (default; cuLaunchKernel, the stand-ins looked up once, their
        # parameters in one buffer), "driver" (cuLaunchKernel, an argument array), "runtime" (<<<>>>)
        note = ctypes.create_string_buffer(_ERR)
        self.launch_api = LAUNCH_APIS[lib.nx_launch_api(self.handle, note, _ERR)]
        self.launch_note = note.value.decode()  # why the API asked for is not the one used ("" when it is)
        self._graphs: dict[tuple, int] = {}
        self.tuned_timers: dict[int, list[int]] = {}  # a tuned graph's index -> the timers it was captured with

    def time_kernel_ns(self, kind: int, grid: int, timer_ns: int, reps: int = 20) -> float:
        """Back-to-back GPU time of one stand-in kernel (ns)."""
        return _checked(self.lib.nx_time_kernel, self.handle, kind, grid, timer_ns, reps, what="kernel timing")

    def _capture(self, kinds: list[int], grids: list[int], timer_ns: list[int]) -> int:
        k, g, t = _graph_arrays(kinds, grids, timer_ns)
        return _checked(
            self.lib.nx_add_graph, self.handle, k.ctypes.data, g.ctypes.data, t.ctypes.data, len(k), what="graph capture"
        )

    def time_graph_ns(self, index: int, reps: int = 5) -> float:
        return _checked(self.lib.nx_time_graph, self.handle, index, reps, what="graph timing")

    def time_graph_alone_ns(self, index: int, reps: int = 9) -> float:
        """Median host time from the launch's return to the stream going idle, launched alone on an idle stream."""
        return _checked(self.lib.nx_time_graph_alone, self.handle, index, reps, what="graph timing")

    def graph_stamped(
        self, kinds: list[int], grids: list[int], timer_ns: list[int], stamp_base: int, capacity: int
    ) -> int:
        """A diagnostic: the index of a graph of these stand-ins (captured as given, not tuned) whose kernel i stamps
        slot ``stamp_base + i`` in the runs that launch it; a run's program must then have ``stamps == capacity``
        (the stamp arrays are made that size first, so the run keeps them where the graph writes)."""
        k, g, t = _graph_arrays(kinds, grids, timer_ns)
        return _checked(
            self.lib.nx_add_graph_stamped, self.handle, k.ctypes.data, g.ctypes.data, t.ctypes.data, len(k),
            stamp_base, capacity, what="graph capture",
        )  # fmt: skip

    def launch_floor_ns(self, reps: int = 10_000) -> np.ndarray:
        """The driver's own launch call on this host (ns per call, ``reps`` of them): an empty kernel with no
        parameters launched back to back through the driver (``cuLaunchKernel``; ``<<<>>>`` where the driver's entry
        point was not found), each call timed alone: the floor under any launch command, the replay's or PyTorch's."""
        out = np.zeros(reps, np.int64)
        _checked(self.lib.nx_launch_floor, self.handle, reps, out.ctypes.data, what="launch floor")
        return out

    def wake(self) -> None:
        """A run is coming: the executor's host threads spin from now for ``HARNESS_NATIVE_LINGER_MS`` (default 500),
        so the run does not wait for a sleeping thread or CPU to wake (``src/worker_pool.hpp``)."""
        self.lib.nx_wake(self.handle)

    def pool_stats(self) -> tuple[int, int]:
        """(host threads the executor holds, placements made since it was opened): a thread is placed when a run
        first asks for its CPU, not on every run."""
        out = np.zeros(2, np.int64)
        self.lib.nx_pool_stats(self.handle, out.ctypes.data)
        return int(out[0]), int(out[1])

    def last_setup_ns(self) -> list[int]:
        """The last run's set-up, host-clock ns: entered, stream synced, the run handed to the thread pool, its first
        thread started (placed on its CPU where it was not yet), its CUDA device set (a diagnostic:
        ``tools/graph_diag.py``)."""
        out = np.zeros(5, np.int64)
        self.lib.nx_last_setup(self.handle, out.ctypes.data)
        return [int(v) for v in out]

    def last_stamps(self, n: int) -> tuple[np.ndarray, np.ndarray]:
        """The last run's stamp slots [0, n): (starts, ends), host-clock ns (``CLOCK_MONOTONIC``), -1 where none."""
        starts, ends = np.full(n, -1, np.int64), np.full(n, -1, np.int64)
        got = self.lib.nx_last_stamps(self.handle, starts.ctypes.data, ends.ctypes.data, n)
        return starts[:got], ends[:got]

    def trace_graph(
        self, kinds: list[int], grids: list[int], timer_ns: list[int], reps: int = 5, idle_ns: int = 20_000
    ) -> np.ndarray:
        """A diagnostic: these stand-ins captured as a graph whose kernels stamp themselves, launched ``reps`` times
        alone, each after the stream has been idle ``idle_ns``. An int64 array (reps, 3 + 2n), host-clock ns
        (``CLOCK_MONOTONIC``): the launch call's start, its return, the stream seen idle, then the n kernels' GPU
        starts and ends (-1: not stamped)."""
        k, g, t = _graph_arrays(kinds, grids, timer_ns)
        out = np.zeros((reps, 3 + 2 * len(k)), np.int64)
        _checked(
            self.lib.nx_trace_graph, self.handle, k.ctypes.data, g.ctypes.data, t.ctypes.data, len(k), reps, idle_ns,
            out.ctypes.data, what="graph trace", ok=lambda rc: rc == 0,
        )  # fmt: skip
        return out

    def graph(
        self, kinds: list[int], grids: list[int], timer_ns: list[int], target_ns: int = 0, alone: bool = False
    ) -> int:
        """The index of the captured graph of these kernels (captured once per distinct list).

        With ``target_ns``, tuned to take that long a launch: inside a graph stand-ins run shorter than on a
        stream (3 µs ones ran ~1 µs on the H200), so the difference goes to its kernels' timers and the graph is
        captured again (:func:`retune`; timers :func:`dithered`), the closest capture kept. A launch is timed alone (launch return to
        the stream idle: the GPU's own lead-in and tail are inside the target, which holds the launch's latency and
        the recording's tail as a spacer kernel) when ``alone`` (the host waits for each launch: the program synced
        the stream since its last work), else back to back (they overlap the previous launch);
        ``HARNESS_NATIVE_GRAPH_TUNE`` may force either (:func:`graph_tune`).
        """
        forced = graph_tune()
        if forced != "auto":
            alone = forced == "alone"
        key = (tuple(kinds), tuple(grids), tuple(timer_ns), target_ns, alone)
        index = self._graphs.get(key)
        if index is None:
            timers = list(timer_ns)
            tuned = target_ns > 0 and bool(timers)
            index = self._capture(kinds, grids, dithered(timers) if tuned else timers)
            if tuned:

                def error_of(i: int) -> float:
                    if alone:
                        return target_ns - self.time_graph_alone_ns(i)
                    self.time_graph_ns(i, reps=2)  # a new graph's first launches are slow
                    return target_ns - self.time_graph_ns(i)

                error_ns = error_of(index)
                best = (abs(error_ns), index, timers)
                absorber = max(range(len(timers)), key=timers.__getitem__)
                for round_ in range(TUNE_ROUNDS):
                    if best[0] <= max(500.0, 1e-3 * target_ns):
                        break
                    timers = retune(timers, error_ns, round_, absorber, proportional=alone)
                    index = self._capture(kinds, grids, dithered(timers))
                    error_ns = error_of(index)
                    if abs(error_ns) < best[0]:
                        best = (abs(error_ns), index, timers)
                _, index, timers = best
                self.tuned_timers[index] = dithered(timers)
            self._graphs[key] = index
        return index

    def run(
        self,
        program: NativeProgram,
        stream_handles: list[int] | None = None,
        est0_ns: int = 2000,
        lead_ns: int = 200_000,
        start_ns: int = 0,
    ) -> list[np.ndarray]:
        """Run ``program`` (its graphs' slots must be indices from :meth:`graph`); the out arrays, per thread.

        ``stream_handles``: a ``cudaStream_t`` per stream (e.g. a torch stream's ``cuda_stream``), 0 for one of
        the executor's own; None: all its own. Times are ``CLOCK_MONOTONIC`` ns (``time.perf_counter`` on Linux).
        The program starts at ``start_ns`` (> 0: e.g. when its command was issued, already past: the set-up since
        is taken from its first gaps), else ``lead_ns`` from the call (time for its threads to be made).
        """
        check_placement_env()  # read again by each run
        outs = _outs(program)
        order = np.asarray(program.sync_order or [0], np.int32)
        handles = np.asarray(stream_handles or [0] * program.streams, np.uint64)
        if len(handles) != program.streams:
            raise ValueError(f"{len(handles)} stream handles for a program of {program.streams} streams")
        _checked(
            self.lib.nx_run, self.handle, len(program.threads), _pointers(program.threads), _counts(program.threads),
            _pointers(outs), program.streams, order.ctypes.data, handles.ctypes.data, program.events,
            program.timing_events, program.stamps, program.host_bytes, program.device_bytes, est0_ns, lead_ns,
            start_ns, what="run", ok=lambda rc: rc == 0,
        )  # fmt: skip
        return outs

    @property
    def placement(self) -> str:
        """What every thread of the last run was granted: "pinned+fifo", "pinned", "fifo" or "unpinned"."""
        placed = self.lib.nx_placement(self.handle)
        words = [w for bit, w in ((PLACED_PINNED, "pinned"), (PLACED_FIFO, "fifo")) if placed & bit]
        return "+".join(words) or "unpinned"

    def close(self) -> None:
        if self.handle:
            self.lib.nx_close(self.handle)
            self.handle = None
