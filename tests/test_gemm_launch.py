"""The GEMM launch's profiler premium (``gemm_launch``): fitted from the calibration's ``composite`` shape by the
``isolated_share_gemm`` estimator (harness/profiler_fit.py), taken off each recorded ``cuLaunchKernelEx`` by
compensation (workloads/recorded/compensation.py)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pydantic
import pytest

from harness.paths import TRACES_DIR
from harness.profile import ProfilerCalibration, ProgramScale
from harness.profiler_fit import COMPOSITE_GEMM_LAUNCHES, ShapeTiming, fit_round, summarize
from harness.trace import load_trace
from workloads.recorded.compensation import overheads_us, without_profiler_overhead
from workloads.recorded.program import Call, ThreadProgram, build_program
from tests.profiler_shapes import COUNTS, TRUE_US, calibration_of

GEMM_US = 2.2  # the premium a GEMM launch costs the profiler over a plain runtime call
CUDA_ONLY = {shape: {k: n for k, n in c.items() if k != "aten_op"} for shape, c in COUNTS.items()}


def _rounds(rng, floor_us: float, factors: list[float], counts=COUNTS, gemm_us: float = GEMM_US):
    """Rounds on a host whose speed drifts (every time of round i times ``factors[i]``): each shape's added time
    its counted events at :data:`TRUE_US`, the composite's plus ``gemm_us`` a GEMM launch, and 0.5 µs of noise."""
    rounds = []
    for c in factors:
        out = []
        for shape, n in counts.items():
            base = (64 * floor_us if shape == "launch" else 300.0) * c
            added = sum(k * TRUE_US[kind] for kind, k in n.items())
            added += COMPOSITE_GEMM_LAUNCHES * gemm_us if shape == "composite" else 0.0
            out.append(ShapeTiming(shape, base, base + c * added + rng.normal(0, 0.5), n))
        rounds.append(out)
    return rounds


@pytest.mark.parametrize("counts", [COUNTS, CUDA_ONLY], ids=["cpu_cuda", "cuda_only"])
def test_one_round_recovers_the_gemm_premium_and_leaves_the_other_kinds_as_isolated_fits_them(counts):
    timings = _rounds(np.random.default_rng(1), 6.0, [1.0], counts)[0]
    plain, gemm = fit_round(timings, "isolated_share"), fit_round(timings, "isolated_share_gemm")
    assert "gemm_launch" not in plain.overhead_us
    assert gemm.overhead_us["gemm_launch"] == pytest.approx(GEMM_US, abs=0.05)
    assert {k: v for k, v in gemm.overhead_us.items() if k != "gemm_launch"} == plain.overhead_us
    assert plain.residual_us["composite"] == pytest.approx(COMPOSITE_GEMM_LAUNCHES * GEMM_US, abs=2.0)
    assert abs(gemm.residual_us["composite"]) < 2.0


def test_a_composite_cheaper_than_its_counted_events_gives_no_negative_premium():
    timings = _rounds(np.random.default_rng(2), 6.0, [1.0], gemm_us=-1.0)[0]
    assert fit_round(timings, "isolated_share_gemm").overhead_us["gemm_launch"] == 0.0


def test_the_calibration_carries_the_premium_as_a_share_of_the_simple_call_like_the_other_eager_kinds():
    """Rounds at 1.1-1.6x the host speed the floor was timed at: the premium's share of the simple call is the
    truth's, as isolated_share keeps the aten op's and runtime call's; the other figures are isolated_share's."""
    floor = 6.0
    rounds = _rounds(np.random.default_rng(7), floor, [1.1, 1.6, 1.3, 1.5, 1.2, 1.4, 1.3])
    shared, _ = summarize(rounds, {"call_launch": [floor]}, "2.11.0", "2026-12-08", estimator="isolated_share")
    gemm, text = summarize(rounds, {"call_launch": [floor]}, "2.11.0", "2026-12-08", estimator="isolated_share_gemm")
    simple = floor + gemm.overhead_us("aten_op") + gemm.overhead_us("runtime_call")
    true_simple = floor + TRUE_US["aten_op"] + TRUE_US["runtime_call"]
    assert gemm.overhead_us("gemm_launch") / simple == pytest.approx(GEMM_US / true_simple, rel=0.03)
    assert {k: v for k, v in gemm.overhead.items() if k != "gemm_launch"} == shared.overhead
    assert "gemm_launch" not in shared.overhead
    assert "composite" in text and "gives gemm_launch" in text


def _calibration(**overhead: float) -> ProfilerCalibration:
    return calibration_of({"call_launch": 5.0}, **overhead)


WITHOUT = _calibration(aten_op=1.0, runtime_call=3.0, range=2.0)
WITH = _calibration(aten_op=1.0, runtime_call=3.0, range=2.0, gemm_launch=2.5)


def test_the_figure_is_optional_and_an_unknown_kind_is_still_refused():
    assert WITHOUT.compensation_us("gemm_launch") == 0.0
    scaled = WITH.model_copy(update={"program_scale": ProgramScale(median=1.4, spread=0.0)})
    assert ProfilerCalibration.model_validate(scaled.model_dump()).compensation_us("gemm_launch") == pytest.approx(3.5)
    with pytest.raises(pydantic.ValidationError, match="gemm_lunch"):
        _calibration(aten_op=1.0, gemm_lunch=2.0)


def test_only_a_call_named_culaunchkernelex_carries_the_premium_in_its_own_overhead():
    gemm = Call("call_launch", "cuLaunchKernelEx", 30.0, 4.0, None, (), "", gap_aten_ops=3)
    plain = replace(gemm, name="cudaLaunchKernel")
    ex_c = replace(gemm, name="cudaLaunchKernelExC")  # a launch of the same family, not cuBLAS's: no premium
    assert overheads_us(gemm, WITH) == pytest.approx((3 * 1.0 + 3.0, 2.5))
    assert overheads_us(plain, WITH) == overheads_us(ex_c, WITH) == pytest.approx((6.0, 0.0))
    assert overheads_us(gemm, WITHOUT) == pytest.approx((6.0, 0.0))


def _host(program):
    return [(c.name, c.host_before_us, c.duration_us) for t in program.threads for c in t.calls]


def test_compensation_takes_the_premium_off_the_gemm_launches_only_never_below_the_floor():
    """A hand-made program: two plain launches and three GEMM launches, one of them already near its floor."""
    calls = (
        Call("call_launch", "cudaLaunchKernel", 20.0, 5.0, None, (), "", gap_aten_ops=2),
        Call("call_launch", "cuLaunchKernelEx", 20.0, 5.0, None, (), "", gap_aten_ops=2),
        Call("call_launch", "cuLaunchKernelEx", 3.0, 3.0, None, (), "", gap_aten_ops=2),  # 6 µs: 1 over the floor
        Call("call_launch", "cudaLaunchKernel", 20.0, 5.0, None, (), "", gap_aten_ops=2),
        Call("call_launch", "cuLaunchKernelEx", 20.0, 1.0, None, (), "", gap_aten_ops=2),  # premium over its cost
    )
    program = replace(_program(), threads=(ThreadProgram("main", calls),))
    before, removed_before = without_profiler_overhead(program, WITHOUT)
    after, removed_after = without_profiler_overhead(program, WITH)
    b, a = _host(before), _host(after)
    assert [x for x, y in zip(b, a) if x != y] == [b[1], b[2], b[4]]  # the GEMM launches alone moved
    assert a[1] == ("cuLaunchKernelEx", 15.0, 5.0 - 2.5)  # gap less 2 aten ops + the call; the premium off its cost
    assert b[2][1] + b[2][2] == pytest.approx(5.0) and a[2][1] + a[2][2] == pytest.approx(5.0)  # held at the floor
    assert a[4] == ("cuLaunchKernelEx", 15.0 - 1.5, 0.0)  # the call's cost first, the rest from its gap
    assert removed_after - removed_before == pytest.approx(2.5 + 0.0 + 2.5)


def _program(name: str = "decode_inline-sync"):
    trace = load_trace(TRACES_DIR / "recorded" / f"{name}.parquet")
    return build_program(trace.ops, name, trace.provenance.profiler_mode)


def test_the_column_path_takes_off_the_same_as_the_call_path():
    """A real recording (its calls held as columns) with every 7th launch renamed a GEMM launch: the column-wise
    arithmetic matches the per-call one to the bit, and only the renamed launches change against no figure."""
    program = _program()
    threads = []
    for t in program.threads:
        launches = np.flatnonzero(t.table.kind == "call_launch")[::7]
        name = t.table.name.copy()
        name[launches] = "cuLaunchKernelEx"
        threads.append(ThreadProgram(t.name, table=replace(t.table, name=name)))
    renamed = replace(program, threads=tuple(threads))
    objects = replace(renamed, threads=tuple(ThreadProgram(t.name, t.calls) for t in renamed.threads))
    columns, removed_columns = without_profiler_overhead(renamed, WITH)
    by_call, removed_calls = without_profiler_overhead(objects, WITH)
    assert _host(columns) == _host(by_call) and removed_columns == pytest.approx(removed_calls)
    plain, removed_plain = without_profiler_overhead(renamed, WITHOUT)
    moved = [x[0] for x, y in zip(_host(plain), _host(columns)) if x != y]
    assert moved and set(moved) == {"cuLaunchKernelEx"}
    assert removed_columns > removed_plain
