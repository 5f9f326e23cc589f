"""Sized stand-ins: real work of a kernel's kind, sized from measured tables to take its duration (needs torch).

The fallback stand-in (:func:`replay.kernels.make_kernels` picks it when CuPy is
missing or ``HARNESS_REPLAY_KERNELS=sized``; sized work drifts with the SM
clock: see measurements/2026-11-23_h100_layer-streaming/README.md), and what calibration measures the
profile's ``[kernels]`` tables with. A policy describes a kernel by its solo
duration ``D`` and a :class:`~harness.runtime.KernelKind`; the sized stand-ins
run real work of that kind sized to take ``D`` on this GPU:

* ``COMPUTE``: bf16 matrix products ``A[:rows] @ B`` (K = N = 8192), sized from a
  table of measured times, in as few pieces as fit the largest measured size;
* ``MEMORY``: device-to-device copies between two scratch buffers, sized likewise;
* ``LATENCY``: ``torch.cuda._sleep`` (one thread spinning for a number of cycles).

The sized work leaves a remainder below one size step; a short ``_sleep``
fills it, so every kernel is "bulk work + a filler". Tables are measured when
the stand-ins are built (about a second). Each distinct (kind, duration) a run
asks for is then *tuned*: timed back to back on a busy stream (so only GPU
time counts, not the host's issue time) and its filler (or, if need be, its
size) corrected until it hits ``D``; the replay engine tunes between its
warm-up runs, so timed runs use tuned plans. ``compute_share`` is not modelled
by the sized stand-ins: the work occupies the GPU as its kind does.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from harness.runtime import KernelKind
from replay.fit import fit_line, monotone_times, size_for_time, split_pieces, time_for_size
from replay.plan import Plan
from replay.timing import median_gpu_time_us, timing_events

MATMUL_K = MATMUL_N = 8192
MATMUL_ROWS = (128, 256, 512, 1024, 1536, 2048, 3072, 4096, 6144, 8192, 12288)
D2D_BYTES = (1 << 20, 4 << 20, 16 << 20, 64 << 20, 128 << 20, 256 << 20, 512 << 20)
SLEEP_CYCLES = (0, 20_000, 200_000, 1_000_000)
ROW_STEP = 64
BYTE_STEP = 4096


@dataclass(frozen=True)
class KernelTables:
    """Measured times of the work the factory can issue (back to back: GPU time only)."""

    matmul_k: int
    matmul_n: int
    matmul_rows: tuple[int, ...]
    matmul_us: tuple[float, ...]
    d2d_bytes: tuple[int, ...]
    d2d_us: tuple[float, ...]
    sleep_base_us: float  # _sleep(c) takes sleep_base_us + c / sleep_cycles_per_us
    sleep_cycles_per_us: float
    min_kernel_us: float  # the shortest kernel the GPU runs back to back (a _sleep(0)); shorter ones are lifted to it

    def as_profile_section(self) -> dict:
        return {
            "matmul_k": self.matmul_k,
            "matmul_n": self.matmul_n,
            "matmul_samples": [[r, round(t, 2)] for r, t in zip(self.matmul_rows, self.matmul_us)],
            "d2d_samples": [[b, round(t, 2)] for b, t in zip(self.d2d_bytes, self.d2d_us)],
            "sleep_base_us": round(self.sleep_base_us, 3),
            "sleep_cycles_per_us": round(self.sleep_cycles_per_us, 2),
            "min_kernel_us": round(self.min_kernel_us, 3),
        }


class SizedKernels:
    """Sizes, tunes and issues the stand-in work for described kernels on one device."""

    stand_in = "sized"

    def __init__(self, torch: Any, device: Any) -> None:
        self.torch = torch
        self.device = device
        self.stream = torch.cuda.Stream(device=device)
        gen = torch.Generator(device=device).manual_seed(0)
        bf16 = torch.bfloat16
        # Random (not zero) operands: zeros run faster than real data.
        self._b = torch.randn(MATMUL_K, MATMUL_N, device=device, dtype=bf16, generator=gen)
        self._a = torch.randn(MATMUL_ROWS[-1], MATMUL_K, device=device, dtype=bf16, generator=gen)
        self._c = torch.empty(MATMUL_ROWS[-1], MATMUL_N, device=device, dtype=bf16)
        self._src = torch.randint(0, 255, (D2D_BYTES[-1],), device=device, dtype=torch.uint8, generator=gen)
        self._dst = torch.empty(D2D_BYTES[-1], device=device, dtype=torch.uint8)
        self._events = timing_events(torch)
        self._plans: dict[tuple[KernelKind, float], Plan] = {}
        self.tables = self._measure_tables()

    @property
    def scratch_bytes(self) -> int:
        return sum(t.numel() * t.element_size() for t in (self._a, self._b, self._c, self._src, self._dst))

    # ------------------------------------------------------------------ issuing
    @property
    def min_kernel_us(self) -> float:
        return self.tables.min_kernel_us

    def as_profile_section(self) -> dict:
        return self.tables.as_profile_section()

    def issue(self, plan: Plan, stream: Any = None) -> None:
        """Queue the plan's work on the current stream (the caller makes ``stream`` current)."""
        torch = self.torch
        if plan.kind is KernelKind.COMPUTE and plan.size:
            a, c = self._a[: plan.size], self._c[: plan.size]
            for _ in range(plan.pieces):
                torch.mm(a, self._b, out=c)
        elif plan.kind is KernelKind.MEMORY and plan.size:
            dst, src = self._dst[: plan.size], self._src[: plan.size]
            for _ in range(plan.pieces):
                dst.copy_(src, non_blocking=True)
        torch.cuda._sleep(int(plan.sleep_cycles))

    # ------------------------------------------------------------------ planning
    def plan(self, kind: KernelKind, duration_us: float, name: str = "", share: float = 1.0) -> Plan:
        """The plan of a kernel of ``duration_us``; below the GPU's floor it runs at the floor (:mod:`replay.floor`)."""
        duration_us = max(float(duration_us), self.tables.min_kernel_us)
        key = (kind, round(duration_us, 1))
        plan = self._plans.get(key)
        if plan is None:
            plan = self._initial_plan(kind, key[1])
            self._plans[key] = plan
        return plan

    def untuned(self) -> list[Plan]:
        return [p for p in self._plans.values() if not p.tuned]

    def plans(self) -> list[Plan]:
        return list(self._plans.values())

    def _sleep_cycles_for(self, filler_us: float) -> int:
        t = self.tables
        return max(0, int(round((filler_us - t.sleep_base_us) * t.sleep_cycles_per_us)))

    def _curve(self, kind: KernelKind) -> tuple[tuple[int, ...], tuple[float, ...], int]:
        t = self.tables
        if kind is KernelKind.COMPUTE:
            return t.matmul_rows, t.matmul_us, ROW_STEP
        return t.d2d_bytes, t.d2d_us, BYTE_STEP

    def _initial_plan(self, kind: KernelKind, duration_us: float) -> Plan:
        t = self.tables
        if kind is KernelKind.LATENCY:
            return Plan(kind, duration_us, 0, 0, self._sleep_cycles_for(duration_us))
        sizes, times, step = self._curve(kind)
        filler_floor = t.sleep_base_us + 1.0
        bulk_us = duration_us - filler_floor
        if bulk_us < times[0]:
            # Shorter than the smallest sized work: a sleep alone stands in for it.
            return Plan(kind, duration_us, 0, 0, self._sleep_cycles_for(duration_us))
        pieces, each_us = split_pieces(bulk_us, times[-1])
        size = self._size_for(sizes, times, step, each_us)
        predicted = pieces * time_for_size(sizes, times, size)
        return Plan(kind, duration_us, pieces, size, self._sleep_cycles_for(duration_us - predicted))

    @staticmethod
    def _size_for(sizes: tuple[int, ...], times: tuple[float, ...], step: int, each_us: float) -> int:
        size = int(size_for_time(sizes, times, each_us) // step * step)
        return min(max(size, sizes[0]), sizes[-1])

    # ------------------------------------------------------------------ tuning
    def tune(self, plan: Plan, rounds: int = 4, tolerance_us: float = 0.5) -> Plan:
        """Correct the plan until its back-to-back GPU time is within ``tolerance_us`` (or 0.1%) of its duration."""
        t = self.tables
        for _ in range(rounds):
            measured = self.gpu_time_us(lambda: self.issue(plan), reps=5)
            plan.measured_us = measured
            plan.history.append(measured)
            error = plan.duration_us - measured
            if abs(error) <= max(tolerance_us, 1e-3 * plan.duration_us):
                break
            filler_us = t.sleep_base_us + plan.sleep_cycles / t.sleep_cycles_per_us + error
            if filler_us >= t.sleep_base_us or plan.size == 0:
                plan.sleep_cycles = self._sleep_cycles_for(filler_us)
            else:
                # The bulk alone overshoots: shrink each piece by the overshoot, then refill.
                sizes, times, step = self._curve(plan.kind)
                each_us = time_for_size(sizes, times, plan.size) - (t.sleep_base_us + 1.0 - filler_us) / plan.pieces
                plan.size = self._size_for(sizes, times, step, each_us)
                plan.sleep_cycles = 0
        plan.tuned = True
        return plan

    def tune_untuned(self) -> list[Plan]:
        return [self.tune(p) for p in self.untuned()]

    # ------------------------------------------------------------------ measuring
    def lengthened(self, plan: Plan, by_us: float) -> Plan:
        """A copy of ``plan`` whose filler sleep runs ``by_us`` longer (shorter when negative, never below 0)."""
        cycles = plan.sleep_cycles + by_us * self.tables.sleep_cycles_per_us
        return replace(plan, sleep_cycles=max(0, int(round(cycles))))

    def gpu_time_us(self, issue: Any, reps: int = 5) -> float:
        return median_gpu_time_us(self.torch, self.stream, self._events, issue, reps)

    def _measure_tables(self) -> KernelTables:
        torch = self.torch
        with torch.cuda.stream(self.stream):  # warm up cuBLAS, the copy kernel and _sleep
            for _ in range(3):
                torch.mm(self._a, self._b, out=self._c)
                self._dst.copy_(self._src)
                torch.cuda._sleep(1000)
        self.stream.synchronize()
        sleep_us = [self.gpu_time_us(lambda c=c: torch.cuda._sleep(c)) for c in SLEEP_CYCLES]
        base, slope = fit_line(list(SLEEP_CYCLES), sleep_us)
        mm_us = [self.gpu_time_us(lambda r=r: torch.mm(self._a[:r], self._b, out=self._c[:r])) for r in MATMUL_ROWS]
        d2d_us = [
            self.gpu_time_us(lambda n=n: self._dst[:n].copy_(self._src[:n], non_blocking=True)) for n in D2D_BYTES
        ]
        return KernelTables(
            MATMUL_K,
            MATMUL_N,
            MATMUL_ROWS,
            tuple(monotone_times(mm_us)),
            D2D_BYTES,
            tuple(monotone_times(d2d_us)),
            sleep_base_us=max(base, 0.0),
            sleep_cycles_per_us=1.0 / slope,
            min_kernel_us=sleep_us[0],
        )
