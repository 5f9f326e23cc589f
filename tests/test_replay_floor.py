"""Kernels below the GPU's floor are lifted to it and counted, and a backend's own metrics reach the results."""

from __future__ import annotations

import pytest

from harness.backend import RunResult
from harness.paths import SPECS_DIR
from harness.runner import run_spec
from harness.spec import load_spec
from replay.floor import KERNEL_LIFT_US, KERNELS_LIFTED, FloorLifts, graph_lifts, lifted_us
from sim import SimBackend


def test_kernels_below_the_floor_run_at_it_and_are_counted():
    lifts = FloorLifts()
    assert [lifts.lift(d, 3.2) for d in (1.5, 3.2, 10.0, 0.0, 3.0)] == [3.2, 3.2, 10.0, 0.0, 3.2]
    assert lifts.count == 2 and lifts.added_us == pytest.approx(1.7 + 0.2)
    lifts.add(*graph_lifts([1.0, 5.0, 0.0, 2.0], 3.2))  # a graph launch: its 1 and 2 µs kernels
    assert lifts.metrics() == {
        KERNELS_LIFTED: (4.0, "count"),
        KERNEL_LIFT_US: (pytest.approx(1.9 + 2.2 + 1.2), "us"),
    }
    assert lifted_us(2.0, 3.2) == 3.2 and lifted_us(0.0, 3.2) == 0.0 and lifted_us(4.0, 3.2) == 4.0


class _ReportingSim(SimBackend):
    """The simulator, reporting a backend metric of its own the way the replay reports its lifts."""

    def run(self, main, *args):
        outcome = super().run(main, *args)
        return RunResult(outcome.ops, outcome.result, outcome.main_end_us, {KERNELS_LIFTED: (7.0, "count")})


def test_a_backends_own_metrics_become_run_rows_of_the_metrics_table():
    loaded = load_spec(SPECS_DIR / "recorded_layers_sync.toml")
    results = run_spec(loaded, lambda spec, rep: _ReportingSim(spec.profile, 1, spec.device_memory_bytes, seed=rep))
    assert results.failed.empty, results.failed["error"].tolist()
    lifted = results.metrics[results.metrics["metric"] == KERNELS_LIFTED]
    assert len(lifted) == len(results.runs)  # one run row per run
    assert (lifted["value"] == 7.0).all() and (lifted["item"] == -1).all() and (lifted["unit"] == "count").all()
