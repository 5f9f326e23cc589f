"""Kernels timed by the GPU's own nanosecond clock (needs torch and CuPy; the replay's default stand-in).

Matrix products sized from a table do not hold a duration on the lent H100:
its SM clock moves between about 1.5 and 1.98 GHz with no power pressure (100-450 W
of 700 W), so the same product took 1.38-1.60 ms from one call to the next and
whole runs drifted by up to 10% (see measurements/2026-11-23_h100_layer-streaming/README.md). These kernels do
the work of their kind *until* ``%globaltimer`` (ns, independent of the SM clock)
says their duration has passed:

* ``COMPUTE``: ``2 x share x SMs`` blocks of 256 threads run chains of FMAs, so
  the kernel occupies that share of the SMs' issue slots for its duration;
* ``MEMORY``: ``4 x SMs`` blocks stream a 256 MiB buffer into another
  (float4 loads and stores) for its duration;
* ``LATENCY``: one warp spins on the timer.

Each block times itself from its own start, so a kernel ends ``D`` after its
last block started; the small constant on top (launch skew, the last timer
read) is measured when the factory is built and subtracted, and each distinct
(kind, duration, share) is tuned once back to back like the sized kernels
(:mod:`replay.sized`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path
from typing import Any

import numpy as np

from harness.runtime import KernelKind
from replay.plan import Plan
from replay.timing import median_gpu_time_us, timing_events

# The kernels' work (the FMA chains, the streaming copy, the timer read) is the native executor's too: one header.
STAND_IN_WORK = Path(__file__).resolve().parent / "native" / "src" / "stand_in_work.cuh"

_KERNELS = r"""
extern "C" __global__ void timed_compute(unsigned long long duration_ns, float* sink) {
    fma_chains_until(globaltimer_ns(), duration_ns, sink);
}

extern "C" __global__ void timed_memory(
    unsigned long long duration_ns, const float4* src, float4* dst, unsigned long long n
) {
    stream_copy_until(globaltimer_ns(), duration_ns, src, dst, n);
}
"""


def kernel_source() -> str:
    """The CUDA source CuPy compiles: the shared work header's text, then the two kernels over it."""
    return STAND_IN_WORK.read_text() + _KERNELS


THREADS = 256
STREAM_BYTES = 256 << 20


class TimedKernels:
    """Issues and tunes timer-bounded stand-in kernels on one device."""

    stand_in = "timed"

    def __init__(self, torch: Any, device: Any) -> None:
        import cupy

        self.torch = torch
        self.cupy = cupy
        self.device = device
        self.stream = torch.cuda.Stream(device=device)
        props = torch.cuda.get_device_properties(device)
        self.sms = props.multi_processor_count
        with cupy.cuda.Device(device.index):
            module = cupy.RawModule(code=kernel_source())
            self._compute = module.get_function("timed_compute")
            self._memory = module.get_function("timed_memory")
        self._sink = torch.zeros(THREADS, device=device)
        self._src = torch.ones(STREAM_BYTES // 4, device=device)
        self._dst = torch.empty_like(self._src)
        self._n4 = np.uint64(STREAM_BYTES // 16)
        self._cupy_streams: dict[int, Any] = {}
        self._events = timing_events(torch)
        self._plans: dict[tuple[KernelKind, float, float], Plan] = {}
        self.overhead_us: dict[KernelKind, float] = {}
        self.min_kernel_us = 0.0
        self._measure()

    @property
    def scratch_bytes(self) -> int:
        return 2 * STREAM_BYTES

    # ------------------------------------------------------------------ issuing
    def _cupy_stream(self, stream: Any) -> Any:
        pointer = stream.cuda_stream
        ext = self._cupy_streams.get(pointer)
        if ext is None:
            import warnings

            with warnings.catch_warnings():  # CuPy 14 deprecates ExternalStream; it still works and needs no protocol
                warnings.simplefilter("ignore", DeprecationWarning)
                ext = self.cupy.cuda.ExternalStream(pointer, self.device.index)
            self._cupy_streams[pointer] = ext
        return ext

    def _launch(self, kind: KernelKind, grid: int, ns: int, stream: Any) -> None:
        function, grid_dims, block, args = self._prepared(kind, grid, ns)
        function(grid_dims, block, args, stream=self._cupy_stream(stream))

    def issue(self, plan: Plan, stream: Any) -> None:
        """Queue the plan's kernel on ``stream`` (a torch stream); its arguments are built once per plan."""
        launch = plan.launch
        if launch is None or launch[3][0] != plan.sleep_cycles:
            launch = plan.launch = self._prepared(plan.kind, plan.pieces, plan.sleep_cycles)
        function, grid, block, args = launch
        function(grid, block, args, stream=self._cupy_stream(stream))

    def _prepared(self, kind: KernelKind, grid: int, ns: int) -> tuple:
        if kind is KernelKind.MEMORY:
            args = (np.uint64(ns), np.uint64(self._src.data_ptr()), np.uint64(self._dst.data_ptr()), self._n4)
            return self._memory, (grid,), (THREADS,), args
        args = (np.uint64(ns), np.uint64(self._sink.data_ptr()))
        if kind is KernelKind.COMPUTE:
            return self._compute, (grid,), (THREADS,), args
        return self._compute, (1,), (32,), args

    # ------------------------------------------------------------------ planning
    def _grid(self, kind: KernelKind, share: float) -> int:
        if kind is KernelKind.COMPUTE:
            return max(1, round(2 * self.sms * share))
        if kind is KernelKind.MEMORY:
            return 4 * self.sms
        return 1

    def plan(self, kind: KernelKind, duration_us: float, name: str = "", share: float = 1.0) -> Plan:
        """The plan of a kernel of ``duration_us``; below the GPU's floor it runs at the floor (:mod:`replay.floor`)."""
        duration_us = max(float(duration_us), self.min_kernel_us)
        key = (kind, round(duration_us, 1), round(float(share), 3))
        plan = self._plans.get(key)
        if plan is None:
            ns = max(0, int(round((key[1] - self.overhead_us[kind]) * 1e3)))
            # For timed plans: pieces = grid size, size = 0, sleep_cycles = timer duration in ns.
            plan = Plan(kind, key[1], self._grid(kind, share), 0, ns)
            self._plans[key] = plan
        return plan

    def untuned(self) -> list[Plan]:
        return [p for p in self._plans.values() if not p.tuned]

    def plans(self) -> list[Plan]:
        return list(self._plans.values())

    def tune(self, plan: Plan, rounds: int = 3, tolerance_us: float = 0.5) -> Plan:
        for _ in range(rounds):
            measured = self.gpu_time_us(lambda: self.issue(plan, self.stream), reps=5)
            plan.measured_us = measured
            plan.history.append(measured)
            error = plan.duration_us - measured
            if abs(error) <= max(tolerance_us, 1e-4 * plan.duration_us):
                break
            plan.sleep_cycles = max(0, int(round(plan.sleep_cycles + error * 1e3)))
        plan.tuned = True
        return plan

    def lengthened(self, plan: Plan, by_us: float) -> Plan:
        """A copy of ``plan`` whose timer runs ``by_us`` longer (shorter when negative, never below 0)."""
        return dataclasses.replace(plan, sleep_cycles=max(0, int(round(plan.sleep_cycles + by_us * 1e3))), launch=None)

    def tune_untuned(self) -> list[Plan]:
        return [self.tune(p) for p in self.untuned()]

    # ------------------------------------------------------------------ measuring
    def gpu_time_us(self, issue: Any, reps: int = 5) -> float:
        return median_gpu_time_us(self.torch, self.stream, self._events, issue, reps)

    def _measure(self) -> None:
        for kind in KernelKind:
            grid = self._grid(kind, 1.0)
            for _ in range(3):  # compile-free warm-up of each kernel
                self._launch(kind, grid, 10_000, self.stream)
            self.stream.synchronize()
            at_1ms = self.gpu_time_us(lambda k=kind, g=grid: self._launch(k, g, 1_000_000, self.stream), reps=7)
            self.overhead_us[kind] = at_1ms - 1000.0
        self.min_kernel_us = self.gpu_time_us(lambda: self._launch(KernelKind.LATENCY, 1, 0, self.stream), reps=7)
        if not all(math.isfinite(v) for v in self.overhead_us.values()):  # pragma: no cover - defensive
            raise RuntimeError("timed kernels could not be measured")

    def as_profile_section(self) -> dict:
        return {
            "timed_overhead_us": {k.value: round(v, 3) for k, v in self.overhead_us.items()},
            "timed_min_kernel_us": round(self.min_kernel_us, 3),
        }
