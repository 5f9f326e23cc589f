"""The ``isolated`` profiler-overhead estimator: each kind from the shapes that isolate it (harness/profiler_fit.py)."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from harness.profiler_fit import ShapeTiming, fit_overheads, fit_overheads_isolated, fit_round, summarize
from tests.profiler_shapes import COUNTS, TRUE_US

ROOT = Path(__file__).resolve().parent.parent


def _round(rng: np.random.Generator, noise_us: float = 0.0, extra_us: dict[str, float] | None = None,
           truth: dict[str, float] = TRUE_US) -> list[ShapeTiming]:  # fmt: skip
    """One round whose added time per shape is its events at ``truth``, plus noise and a shape's own ``extra_us``."""
    out = []
    for shape, counts in COUNTS.items():
        base = 300.0 + 7 * len(shape)
        added = sum(n * truth[k] for k, n in counts.items()) + (extra_us or {}).get(shape, 0.0)
        out.append(ShapeTiming(shape, base, base + added + rng.normal(0, noise_us), counts))
    return out


def test_isolated_recovers_every_kind_from_exact_rounds():
    fit = fit_overheads_isolated(_round(np.random.default_rng(0)))
    assert fit.overhead_us == pytest.approx(TRUE_US, abs=1e-9)
    assert all(abs(r) < 1e-9 for r in fit.residual_us.values())


def test_a_costlier_composite_shape_moves_the_least_squares_split_but_not_the_isolated_one():
    """The composite shape's nested ops cost the profiler more per counted event than the tight loops (H100: 6-8
    µs a matmul against 4 for an add and its launch): the NNLS fit trades its excess between the aten op and the
    runtime call; the isolated estimator leaves it in the composite's residual."""
    timings = _round(np.random.default_rng(1), extra_us={"composite": 150.0})
    isolated, nnls = fit_overheads_isolated(timings), fit_overheads(timings)
    assert isolated.overhead_us == pytest.approx(TRUE_US, abs=1e-9)
    assert isolated.residual_us["composite"] == pytest.approx(150.0)
    assert abs(nnls.overhead_us["aten_op"] - TRUE_US["aten_op"]) > 0.3  # the least-squares figure moved by > 25%


def test_noise_on_the_ranges_shape_moves_only_the_range_figure():
    rng = np.random.default_rng(2)
    for _ in range(20):
        shift = rng.normal(0, 40.0)
        fit = fit_overheads_isolated(_round(rng, extra_us={"ranges": shift}))
        assert fit.overhead_us["range"] == pytest.approx(max(TRUE_US["range"] + shift / 32, 0.0), abs=1e-9)
        for kind in ("aten_op", "runtime_call", "graph_launch", "graph_kernel"):
            assert fit.overhead_us[kind] == pytest.approx(TRUE_US[kind], abs=1e-9)


def test_the_median_over_noisy_rounds_is_near_the_truth_and_steadier_than_nnls_when_one_shape_drifts():
    """Nine rounds, 3 µs of noise on every shape step and the composite shape drifting by up to +-120 µs a step
    (a host slow phase in one shape): the isolated medians stay within 10% of the truth, and the aten-op figure's
    spread over rounds is tighter than the least-squares fit's."""
    rng = np.random.default_rng(3)
    rounds = [_round(rng, 3.0, {"composite": rng.uniform(-120, 120)}) for _ in range(9)]
    isolated, _ = summarize(rounds, {}, "2.11.0", "2026-12-08", estimator="isolated")
    nnls, _ = summarize(rounds, {}, "2.11.0", "2026-12-08")
    for kind, true in TRUE_US.items():
        assert isolated.overhead[kind].median_us == pytest.approx(true, rel=0.1)
    assert isolated.overhead["aten_op"].spread_us < nnls.overhead["aten_op"].spread_us


def test_a_round_without_the_views_shape_falls_back_to_least_squares_for_what_no_stage_fits():
    timings = [t for t in _round(np.random.default_rng(4)) if t.shape not in ("views", "ranges")]
    fit = fit_overheads_isolated(timings)  # launch alone cannot split aten op from runtime call: NNLS on the rest
    assert set(fit.overhead_us) == set(TRUE_US) - {"range"}
    assert all(v >= 0 for v in fit.overhead_us.values())
    no_graphs = [t for t in _round(np.random.default_rng(5)) if not t.shape.startswith("graph")]
    assert set(fit_overheads_isolated(no_graphs).overhead_us) == {"aten_op", "runtime_call", "range"}


def test_cuda_only_rounds_fit_the_runtime_call_and_graph_kinds():
    counts = {s: {k: v for k, v in c.items() if k not in ("aten_op", "range")} for s, c in COUNTS.items()}
    truth = {"runtime_call": 4.0, "graph_launch": 10.0, "graph_kernel": 0.7}  # CUDA only: no aten op, no range
    timings = [ShapeTiming(s, 100.0, 100.0 + sum(n * truth[k] for k, n in c.items()), c) for s, c in counts.items()]
    fit = fit_overheads_isolated(timings)
    assert "aten_op" not in fit.overhead_us and "range" not in fit.overhead_us
    assert fit.overhead_us == pytest.approx(truth, abs=1e-9)


def test_an_unknown_estimator_is_refused():
    with pytest.raises(ValueError, match="unknown estimator 'ols'"):
        fit_round(_round(np.random.default_rng(6)), "ols")


def test_calibrate_from_raw_takes_the_estimator_and_refuses_an_unknown_one(tmp_path):
    raw = ROOT / "measurements/2026-12-07_h100_corpus/profiler_calibration_a_raw.json"
    out = tmp_path / "a_isolated.toml"
    cmd = [sys.executable, "-m", "harness", "calibrate", "--profiler", "--name", "a-iso", "--from-raw", str(raw),
           "--out", str(out)]  # fmt: skip
    bad = subprocess.run(cmd + ["--estimator", "ols"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2
    assert "--estimator: 'ols' is not one of nnls, isolated, nnls_share" in bad.stdout + bad.stderr
    assert not out.exists()
    done = subprocess.run(cmd + ["--estimator", "isolated"], capture_output=True, text=True, cwd=ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    text = out.read_text()
    assert "estimator 'isolated'" in text
    first = json.loads(raw.read_text())["rounds"]
    assert any(r["mode"] == "cpu_cuda" for r in first)


def _drifting_rounds(rng: np.random.Generator, floor_us: float, factors: list[float]) -> list[list[ShapeTiming]]:
    """Rounds on a host whose speed drifts round to round: every time in round i, the launch shape's unprofiled call
    (``floor_us``) and every profiler event, times ``factors[i]``."""
    rounds = []
    for c in factors:
        out = []
        for shape, counts in COUNTS.items():
            base = (64 * floor_us if shape == "launch" else 300.0) * c
            added = c * sum(n * TRUE_US[k] for k, n in counts.items())
            out.append(ShapeTiming(shape, base, base + added + rng.normal(0, 0.5), counts))
        rounds.append(out)
    return rounds


@pytest.mark.parametrize("estimator", ["nnls_share", "isolated_share"])
def test_share_estimators_keep_each_kinds_share_of_the_simple_call_when_the_floor_was_timed_in_another_moment(
    estimator,
):
    """The floor (measured apart from the shapes) was timed while the host ran at 1.0; the shapes' rounds ran at
    1.1-1.6x. ``overhead_scale = "recording_host"`` carries each figure's share of floor + aten op + runtime call:
    the plain medians over rounds inflate the shares by the drift; the share estimators keep the shares measured
    within each round (the launch shape's 65th runtime call, its synchronize, biases them by < 1%)."""
    floor = 6.0
    rounds = _drifting_rounds(np.random.default_rng(7), floor, [1.1, 1.6, 1.3, 1.5, 1.2, 1.4, 1.3])
    simple_true = floor + TRUE_US["aten_op"] + TRUE_US["runtime_call"]
    plain, _ = summarize(rounds, {"call_launch": [floor]}, "2.11.0", "2026-12-08", estimator=estimator[:-6])
    shared, _ = summarize(rounds, {"call_launch": [floor]}, "2.11.0", "2026-12-08", estimator=estimator)

    def shares(cal):
        o = {k: cal.overhead[k].median_us for k in ("aten_op", "runtime_call", "range")}
        return {k: v / (floor + o["aten_op"] + o["runtime_call"]) for k, v in o.items()}

    for kind in ("aten_op", "runtime_call", "range"):
        true_share = TRUE_US[kind] / simple_true
        assert shares(shared)[kind] == pytest.approx(true_share, rel=0.03)
        assert shares(plain)[kind] > true_share * 1.15  # the drift, taken as overhead
    assert shared.overhead["graph_kernel"] == plain.overhead["graph_kernel"]  # graph kinds are not shares


def test_the_summary_says_which_shapes_the_isolated_estimator_left_out():
    rounds = [_round(np.random.default_rng(8), 1.0, {"composite": 100.0}) for _ in range(3)]
    _, text = summarize(rounds, {}, "2.11.0", "2026-12-08", estimator="isolated")
    composite = next(line for line in text.splitlines() if line.startswith("composite"))
    match = re.search(r"not fitted \(isolated estimator\), residual ([+-][0-9.]+)", composite)
    assert match and float(match.group(1)) == pytest.approx(100.0, abs=3.0)  # the composite's own excess
    assert "not fitted" not in next(line for line in text.splitlines() if line.startswith("views"))
