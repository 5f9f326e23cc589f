"""Fit torch.profiler's host overhead per recorded event kind from timed rounds (``harness calibrate --profiler``).

A calibration round (one fresh process, one profiler mode) times each shape of a
standard eager program unprofiled and then under the profiler, and counts, from
the profiled run's own trace, the profiler events one step of each shape holds
(:data:`harness.profile.PROFILER_EVENT_KINDS`). The overhead model is linear:

    profiled_us(shape) - unprofiled_us(shape) = sum_k count_k(shape) * overhead_k

solved per round by non-negative least squares over the shapes
(:func:`fit_overheads`); the calibration reports, per kind, the median over
rounds and the spread (half the interquartile range of the per-round fits,
:func:`summarize`). Kinds that no shape exercises (graph launches on a CPU-only
run; aten ops in CUDA-only mode) are left out, not reported as zero.
:func:`compare_calibrations` says whether two calibrations (two runs) agree
within their reported spreads. Pure numpy: no torch here.

*Check shapes* (``check_shapes``: the calibration's ``block``, a small eager decoder block)
are timed and counted like the others but left out of the fit: per round, their measured
added time over what the fitted overheads predict from their events (aten ops, runtime
calls and ranges, the kinds an eager program scales) is the round's *program scale*
(:func:`program_scale_of`); the calibration keeps its median and spread
(:class:`harness.profile.ProgramScale`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from harness.profile import (
    PROFILER_CALL_KINDS,
    PROFILER_EVENT_KINDS,
    SCALED_EVENT_KINDS,
    ProfilerCalibration,
    ProgramScale,
    Spread,
)


@dataclass(frozen=True)
class ShapeTiming:
    """One shape of one round: per-step host-clock time without and with the profiler, and its events per step."""

    shape: str
    unprofiled_us: float
    profiled_us: float
    counts: dict[str, float]  # per step, by PROFILER_EVENT_KINDS
    gpu_unprofiled_us: float | None = None  # graph shapes: one replay's GPU time (CUDA events), unprofiled
    gpu_profiled_us: float | None = None  # ... and profiled (the GPU idle at the launch: holds the launch's host time)
    gpu_queued_unprofiled_us: float | None = None  # the same with the replay queued behind GPU work: GPU time alone
    gpu_queued_profiled_us: float | None = None  # ... and profiled (rounds before 2026-12-07 evening lack them)

    def gpu_pair(self) -> tuple[float, float, str] | None:
        """(unprofiled, profiled) GPU µs of one replay and how they were timed: ``"queued"`` where the round timed
        the replay behind held GPU work (its GPU time alone), else ``"idle"`` (the profiled launch's host time
        included); None without GPU timings."""
        if self.gpu_queued_unprofiled_us is not None and self.gpu_queued_profiled_us is not None:
            return self.gpu_queued_unprofiled_us, self.gpu_queued_profiled_us, "queued"
        if self.gpu_unprofiled_us is not None and self.gpu_profiled_us is not None:
            return self.gpu_unprofiled_us, self.gpu_profiled_us, "idle"
        return None


@dataclass(frozen=True)
class RoundFit:
    overhead_us: dict[str, float]  # per kind fitted in this round
    residual_us: dict[str, float]  # per shape: measured minus fitted added time, per step


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Least squares ``min |a x - b|`` with ``x >= 0`` (active set: the most negative coefficient is fixed at 0)."""
    free = list(range(a.shape[1]))
    x = np.zeros(a.shape[1])
    while free:
        sol, *_ = np.linalg.lstsq(a[:, free], b, rcond=None)
        if (sol >= 0).all():
            x[:] = 0.0
            x[free] = sol
            return x
        free.pop(int(np.argmin(sol)))
    return x


def fit_overheads(timings: list[ShapeTiming]) -> RoundFit:
    """One round's overhead per event kind (µs per event) by non-negative least squares over its shapes."""
    kinds = [k for k in PROFILER_EVENT_KINDS if any(t.counts.get(k, 0.0) > 0 for t in timings)]
    if not kinds:
        raise ValueError("no shape recorded any profiler event: nothing to fit")
    a = np.array([[t.counts.get(k, 0.0) for k in kinds] for t in timings], dtype=float)
    b = np.array([_added_us(t) for t in timings], dtype=float)
    x = nnls(a, b)
    residual = b - a @ x
    return RoundFit(dict(zip(kinds, map(float, x))), {t.shape: float(r) for t, r in zip(timings, residual)})


# How a round's per-kind overheads are fitted (summarize's ``estimator``): ``nnls`` over every tight shape, or
# ``isolated`` (each kind from the shapes that isolate it); ``*_share``: the same per round, then each eager kind
# taken as a share of the round's own simple call before the median over rounds (:func:`share_of_simple_call`);
# ``isolated_share_gemm``: isolated_share plus the GEMM launch's premium (``gemm_launch``, :func:`gemm_launch_us`).
ESTIMATORS = ("nnls", "isolated", "nnls_share", "isolated_share", "isolated_share_gemm")
LAUNCH_SHAPE_CALLS = 64  # simple calls (an add and its launch) in one step of the ``launch`` shape
# GEMM launches in one step of the ``composite`` shape: 32 ``torch.matmul`` of small matrices
# (replay/profiler_calibration.py), each one cuBLAS kernel launched by ``cuLaunchKernelEx``
COMPOSITE_GEMM_LAUNCHES = 32

# The ``isolated`` estimator's stages: each stage's kinds fitted on its own shapes, with the kinds of the stages
# before it held at their fitted figures (subtracted from the shapes' added time first).
ISOLATED_STAGES: tuple[tuple[tuple[str, ...], tuple[str, ...]], ...] = (
    (("launch", "views"), ("aten_op", "runtime_call")),  # one add + its launch; views: aten ops that launch nothing
    (("ranges",), ("range",)),  # the launch shape's adds, each inside a record_function: the range alone is new
    (("graph16", "graph96"), ("graph_launch", "graph_kernel")),  # two graph sizes: per replay and per kernel
)


def fit_overheads_isolated(timings: list[ShapeTiming]) -> RoundFit:
    """One round's overhead per event kind, each kind from the shapes that isolate it (:data:`ISOLATED_STAGES`).

    The aten op and the runtime call come from the ``launch`` and ``views`` shapes alone (two shapes, two kinds:
    exactly determined, so the launch shape's simple call, one aten op and its launch, is reproduced to the µs);
    the range from the ``ranges`` shape less its adds' aten ops and calls at those figures; the graph kinds from
    the two graph shapes less their runtime calls. Shapes in no stage (``composite``: nested ops that cost the
    profiler more per counted event than the tight loops do) are not fitted; their residual is reported. A round
    without a stage's shapes falls back to :func:`fit_overheads` (non-negative least squares over every shape)
    for the kinds no stage fitted. Negative solutions are held at 0 (non-negative least squares per stage)."""
    by_shape = {t.shape: t for t in timings}
    known: dict[str, float] = {}
    for shapes, kinds in ISOLATED_STAGES:
        rows = [by_shape[s] for s in shapes if s in by_shape]
        kinds_here = [k for k in kinds if k not in known and any(t.counts.get(k, 0.0) > 0 for t in rows)]
        if not rows or not kinds_here:
            continue
        a = np.array([[t.counts.get(k, 0.0) for k in kinds_here] for t in rows], dtype=float)
        b = np.array([_unexplained_us(t, known) for t in rows])
        known.update(zip(kinds_here, map(float, nnls(a, b))))
    missing = [k for k in PROFILER_EVENT_KINDS if k not in known and any(t.counts.get(k, 0.0) > 0 for t in timings)]
    if missing:  # a round lacking a stage's shapes: those kinds by least squares over every shape, the rest held
        rest = [t for t in timings if any(t.counts.get(k, 0.0) > 0 for k in missing)]
        a = np.array([[t.counts.get(k, 0.0) for k in missing] for t in rest], dtype=float)
        b = np.array([_unexplained_us(t, known) for t in rest])
        known.update(zip(missing, map(float, nnls(a, b))))
    if not known:
        raise ValueError("no shape recorded any profiler event: nothing to fit")
    overhead = {k: known[k] for k in PROFILER_EVENT_KINDS if k in known}
    residual = {t.shape: _unexplained_us(t, overhead) for t in timings}
    return RoundFit(overhead, residual)


def gemm_launch_us(timings: list[ShapeTiming], overhead_us: dict[str, float]) -> float | None:
    """The profiler's extra cost of one GEMM launch over a plain runtime call (µs): the ``composite`` shape's added
    time less what ``overhead_us`` predicts from its counted events (its aten ops and runtime calls; in CUDA-only
    rounds its runtime calls alone), over its :data:`COMPOSITE_GEMM_LAUNCHES`; held at 0 when negative. None
    without a ``composite`` shape."""
    composite = next((t for t in timings if t.shape == "composite"), None)
    if composite is None:
        return None
    return max(_unexplained_us(composite, overhead_us), 0.0) / COMPOSITE_GEMM_LAUNCHES


def _with_gemm_launch(timings: list[ShapeTiming], fit: RoundFit) -> RoundFit:
    """``fit`` with the round's ``gemm_launch`` figure (:func:`gemm_launch_us`) and composite's residual after it."""
    gemm = gemm_launch_us(timings, fit.overhead_us)
    if gemm is None:
        return fit
    residual = dict(fit.residual_us)
    residual["composite"] = residual.get("composite", 0.0) - gemm * COMPOSITE_GEMM_LAUNCHES
    return RoundFit({**fit.overhead_us, "gemm_launch": gemm}, residual)


def _added_us(timing: ShapeTiming) -> float:
    return timing.profiled_us - timing.unprofiled_us


def _unexplained_us(timing: ShapeTiming, overhead_us: dict[str, float]) -> float:
    """The shape's added time less what its counted events cost at ``overhead_us`` (µs per step)."""
    return _added_us(timing) - sum(timing.counts.get(k, 0.0) * v for k, v in overhead_us.items())


def fit_round(timings: list[ShapeTiming], estimator: str = "nnls") -> RoundFit:
    """One round's fit by ``estimator`` (:data:`ESTIMATORS`; a ``*_share`` estimator fits its round as its base;
    ``*_gemm`` adds the round's ``gemm_launch`` figure from the ``composite`` shape, :func:`gemm_launch_us`)."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; known: {', '.join(ESTIMATORS)}")
    gemm = estimator.endswith("_gemm")
    estimator = estimator.removesuffix("_gemm").removesuffix("_share")
    if estimator == "nnls":
        return fit_overheads(timings)
    fit = fit_overheads_isolated(timings)  # "isolated", the only other base
    return _with_gemm_launch(timings, fit) if gemm else fit


def simple_call_us(timings: list[ShapeTiming]) -> float | None:
    """The round's profiled simple call (µs): the ``launch`` shape's profiled step over its
    :data:`LAUNCH_SHAPE_CALLS` calls; None without that shape."""
    launch = next((t for t in timings if t.shape == "launch"), None)
    return None if launch is None or launch.profiled_us <= 0 else launch.profiled_us / LAUNCH_SHAPE_CALLS


def share_of_simple_call(
    fits: list[RoundFit], simple_us: list[float | None], floor_us: float | None
) -> dict[str, Spread]:
    """Per eager kind (:data:`harness.profile.SCALED_EVENT_KINDS`): the median over rounds of each round's figure
    as a share of the same round's profiled simple call, put back in µs against the calibration's call floor.

    ``overhead_scale = "recording_host"`` multiplies each eager figure by the recording's simple call over the
    calibration's (floor + aten op + runtime call), so what carries to a recording is each figure's share of the
    simple call. A per-kind median over rounds mixes rounds taken while the host ran at different speeds (and the
    floor is a separate measurement, in its own moment); the share is taken within the round, where the figure
    and its simple call were timed together. With ``f_k`` the median shares and ``F`` the floor, the figures
    are ``f_k F / (1 - f_aten - f_runtime)``: a simple call of floor plus aten op plus runtime call then has the
    measured shares. Without a floor, the median simple call times the share. Spreads scale the same way."""
    pairs = [(f, s) for f, s in zip(fits, simple_us) if s]
    kinds = [k for k in SCALED_EVENT_KINDS if pairs and all(k in f.overhead_us for f, _ in pairs)]
    if not kinds:
        return {}
    shares = {k: spread([f.overhead_us[k] / s for f, s in pairs]) for k in kinds}
    simple_share = sum(shares[k].median_us for k in ("aten_op", "runtime_call") if k in shares)
    if floor_us is not None and simple_share < 0.95:
        unit = floor_us / (1.0 - simple_share)
    else:
        unit = float(np.median([s for _, s in pairs]))
    return {k: Spread(median_us=round(v.median_us * unit, 3), spread_us=round(v.spread_us * unit, 3))
            for k, v in shares.items()}  # fmt: skip


GPU_KINDS = ("graph_launch", "graph_kernel")


def fit_gpu_overheads(timings: list[ShapeTiming]) -> dict[str, float] | None:
    """One round's GPU time the profiler adds per graph replay and per kernel in it (µs), by non-negative least
    squares over the shapes whose replays were timed on the GPU; None with fewer than two such shapes."""
    timed = [t for t in timings if t.gpu_unprofiled_us is not None and t.gpu_profiled_us is not None]
    if len(timed) < 2:
        return None
    a = np.array([[t.counts.get(k, 0.0) for k in GPU_KINDS] for t in timed], dtype=float)
    b = np.array([t.gpu_profiled_us - t.gpu_unprofiled_us for t in timed], dtype=float)
    return dict(zip(GPU_KINDS, map(float, nnls(a, b))))


def program_scale_of(timing: ShapeTiming, overhead_us: dict[str, float]) -> float | None:
    """Measured added time of ``timing`` over what ``overhead_us`` predicts for the eager kinds it holds (graph
    kinds taken as predicted); None when the eager kinds predict nothing (no such events, or no fitted figure)."""
    eager = sum(timing.counts.get(k, 0.0) * overhead_us.get(k, 0.0) for k in SCALED_EVENT_KINDS)
    other = sum(timing.counts.get(k, 0.0) * overhead_us.get(k, 0.0) for k in PROFILER_EVENT_KINDS
                if k not in SCALED_EVENT_KINDS)  # fmt: skip
    if eager <= 0:
        return None
    return max(timing.profiled_us - timing.unprofiled_us - other, 0.0) / eager


def realistic_graph_kernel_us(timing: ShapeTiming) -> float | None:
    """GPU time the profiler added to each kernel of a graph replay (µs: profiled less unprofiled CUDA-event time
    of one replay, over its kernels; the queued timings where the round has them, :meth:`ShapeTiming.gpu_pair`);
    None without GPU timings or kernels."""
    kernels = timing.counts.get("graph_kernel", 0.0)
    pair = timing.gpu_pair()
    if pair is None or kernels <= 0:
        return None
    return (pair[1] - pair[0]) / kernels


def spread(values: list[float]) -> Spread:
    """Median and half the interquartile range of ``values``."""
    q25, q50, q75 = np.percentile(np.asarray(values, dtype=float), [25, 50, 75])
    return Spread(median_us=round(float(q50), 3), spread_us=round(float(q75 - q25) / 2.0, 3))


def summarize(
    rounds: list[list[ShapeTiming]],
    floor_us: dict[str, list[float]],
    torch_version: str,
    date: str,
    method: str = "",
    check_shapes: tuple[str, ...] = (),
    gpu_check_shapes: tuple[str, ...] = (),
    estimator: str = "nnls",
) -> tuple[ProfilerCalibration, str]:
    """The calibration of one mode from its rounds (each fitted alone), and a one-paragraph note of the figures.

    ``floor_us``: per ``call_*`` kind, the unprofiled per-call host times measured in the rounds (median kept).
    A kind enters only if every round could fit it. ``check_shapes``: shapes left out of the fit, whose
    per-round :func:`program_scale_of` gives the calibration's ``program_scale``. ``gpu_check_shapes``: graph
    shapes shaped like a real program's graph, left out of both fits; where their replays were timed on the GPU,
    the per-kernel GPU time the profiler added to them (:func:`realistic_graph_kernel_us`) is the calibration's
    ``gpu_overhead.graph_kernel`` (the tight graphs' fit stays in the notes). ``estimator``: how each round is
    fitted (:func:`fit_round`: ``"nnls"`` over every fitted shape, or ``"isolated"``, each kind from the shapes
    that isolate it; ``"*_share"``: the eager kinds then as shares of each round's simple call,
    :func:`share_of_simple_call`).
    """
    if not rounds:
        raise ValueError("no calibration rounds")
    fitted = [[t for t in r if t.shape not in check_shapes + gpu_check_shapes] for r in rounds]
    fits = [fit_round(r, estimator) for r in fitted]
    scales = [
        x
        for r, f in zip(rounds, fits)
        for t in r
        if t.shape in check_shapes and (x := program_scale_of(t, f.overhead_us)) is not None
    ]
    kinds = [k for k in PROFILER_EVENT_KINDS + PROFILER_CALL_KINDS if all(k in f.overhead_us for f in fits)]
    overhead = {k: spread([f.overhead_us[k] for f in fits]) for k in kinds}
    if "_share" in estimator:
        floor = np.median(floor_us["call_launch"]) if floor_us.get("call_launch") else None
        shared = share_of_simple_call(fits, [simple_call_us(r) for r in fitted], floor)
        overhead.update({k: v for k, v in shared.items() if k in overhead})
    shapes = [t.shape for t in rounds[0]]
    gpu_fits = [g for g in (fit_gpu_overheads(r) for r in fitted) if g is not None]
    gpu_overhead = {k: spread([g[k] for g in gpu_fits]) for k in GPU_KINDS} if gpu_fits else {}
    realistic = [x for r in rounds for t in r if t.shape in gpu_check_shapes
                 and (x := realistic_graph_kernel_us(t)) is not None]  # fmt: skip
    tight_note = ""
    timed = {p[2] for r in rounds for t in r if t.shape in gpu_check_shapes and (p := t.gpu_pair()) is not None}
    gpu_timing = "queued" if timed == {"queued"} else ("idle" if timed else "")
    if realistic:
        if gpu_overhead:
            tight_note = ("; tight graphs' GPU fit (not used): " + ", ".join(
                f"{k} {v.median_us:.3f} ± {v.spread_us:.3f} µs" for k, v in gpu_overhead.items()))  # fmt: skip
        gpu_overhead = {"graph_kernel": spread(realistic)}
    else:
        gpu_timing = "idle" if gpu_overhead else ""  # the tight graphs' fit, timed with the GPU idle
    lines = []
    for shape in shapes:
        rows = [t for r in rounds for t in r if t.shape == shape]
        unprof = spread([t.unprofiled_us for t in rows])
        prof = spread([t.profiled_us for t in rows])
        counts = ", ".join(f"{k} {rows[0].counts.get(k, 0):g}" for k in PROFILER_EVENT_KINDS if rows[0].counts.get(k))
        if shape in check_shapes:
            fit_note = "not fitted, program scale " + (f"{spread(scales).median_us:.2f}" if scales else "n/a")
        elif shape in gpu_check_shapes:
            per_kernel = [x for t in rows if (x := realistic_graph_kernel_us(t)) is not None]
            figure = f"{spread(per_kernel).median_us:.3f}" if per_kernel else "n/a"
            fit_note = "not fitted, GPU µs a kernel " + figure
        else:
            residual = f"residual {spread([f.residual_us[shape] for f in fits if shape in f.residual_us]).median_us:+.1f}"
            if estimator.endswith("_gemm") and shape == "composite":
                fit_note = "gives gemm_launch (its residual over its counted events), " + residual
            elif estimator.startswith("isolated") and not any(shape in shapes for shapes, _ in ISOLATED_STAGES):
                fit_note = "not fitted (isolated estimator), " + residual
            else:
                fit_note = "fit " + residual
        gpu = [t for t in rows if t.gpu_unprofiled_us is not None and t.gpu_profiled_us is not None]
        if gpu:
            fit_note += (f", GPU time a replay {spread([t.gpu_unprofiled_us for t in gpu]).median_us:.1f} -> "
                         f"{spread([t.gpu_profiled_us for t in gpu]).median_us:.1f} µs profiled")  # fmt: skip
        queued = [t for t in rows if (p := t.gpu_pair()) is not None and p[2] == "queued"]
        if queued:
            fit_note += (f", queued {spread([t.gpu_queued_unprofiled_us for t in queued]).median_us:.1f} -> "
                         f"{spread([t.gpu_queued_profiled_us for t in queued]).median_us:.1f} µs")  # fmt: skip
        lines.append(
            f"{shape}: unprofiled {unprof.median_us:.1f} ± {unprof.spread_us:.1f} µs/step, profiled "
            f"{prof.median_us:.1f} ± {prof.spread_us:.1f}, {fit_note} ({counts})"
        )
    if lines and tight_note:
        lines[-1] += tight_note
    floors = {k: round(float(np.median(v)), 3) for k, v in floor_us.items() if v}
    calibration = ProfilerCalibration(
        torch=torch_version,
        date=date,
        rounds=len(rounds),
        overhead=overhead,
        floor_us=floors,
        method=method,
        notes="; ".join(lines),
        gpu_overhead=gpu_overhead,
        gpu_timing=gpu_timing,
        program_scale=scale_figure(scales, "the calibration's " + "/".join(check_shapes) + " shape") if scales else None,
    )
    return calibration, "\n".join(lines)


def scale_figure(values: list[float], source: str) -> ProgramScale:
    """Median and half-IQR of per-round program scales (a scale of 0, nothing added, is kept as 0.01)."""
    figure = spread(values)
    return ProgramScale(median=max(figure.median_us, 0.01), spread=figure.spread_us, source=source)


@dataclass(frozen=True)
class Agreement:
    mode: str
    kind: str
    a: Spread | None
    b: Spread | None

    @property
    def difference_us(self) -> float | None:
        return None if self.a is None or self.b is None else self.b.median_us - self.a.median_us

    @property
    def agrees(self) -> bool | None:
        """Whether the medians differ by at most the sum of the two spreads (None: one side lacks the kind)."""
        if self.a is None or self.b is None:
            return None
        return abs(self.b.median_us - self.a.median_us) <= self.a.spread_us + self.b.spread_us + 1e-9


def compare_calibrations(
    a: dict[str, ProfilerCalibration], b: dict[str, ProfilerCalibration]
) -> list[Agreement]:
    """Per mode both calibrated and per event kind: the two figures and whether they agree within their spreads."""
    out = []
    for mode in [m for m in a if m in b]:
        for kind in PROFILER_EVENT_KINDS:
            first, second = a[mode].overhead.get(kind), b[mode].overhead.get(kind)
            if first is not None or second is not None:
                out.append(Agreement(mode, kind, first, second))
    return out
