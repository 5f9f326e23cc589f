"""The verdict: who wins each headline metric and by how much against the baseline, in words and in figures.

The wording is checked on small tables with known answers; then every bundled spec in traces/specs is
simulated (one repetition; the 20,000-segment benchmark cut to 200 segments) and its verdicts are checked
against its own metrics table, and ``harness sim`` is checked to print them and write ``verdict.json``.
"""

from __future__ import annotations

import dataclasses
import json
import math

import pandas as pd
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.cli.run import sim_backend_factory
from harness.paths import SPECS_DIR
from harness.runner import run_spec
from harness.spec import load_spec
from harness.verdict import (
    VERDICT_FILE,
    VERDICT_SCHEMA,
    HeadlineMetric,
    metric_verdict,
    results_verdicts,
    verdicts,
)
from harness.workload import registry

MAKESPAN = HeadlineMetric("makespan_us", "lower")
TOKENS = HeadlineMetric("agg_tok_s", "higher")


def table(**columns: dict[str, float]) -> pd.DataFrame:
    """Policies as rows in the order given, metrics as columns."""
    return pd.DataFrame(columns)


def test_the_best_policy_its_margin_the_values_and_the_better_side():
    t = table(makespan_us={"sync": 26_300.0, "prefetch": 16_043.0})
    v = metric_verdict(t, MAKESPAN, "us")
    assert v.text == "prefetch cuts makespan 39.0% against sync (26.3 ms -> 16 ms; lower is better)."
    assert (v.outcome, v.best, v.baseline) == ("better", ("prefetch",), "sync")
    assert v.change == pytest.approx(16_043 / 26_300 - 1) and v.difference == pytest.approx(16_043 - 26_300)


def test_higher_is_better_raises_and_the_others_are_listed_against_the_baseline():
    t = table(agg_tok_s={"window": 400.0, "adaptive": 500.0, "eager": 300.0})
    v = metric_verdict(t, TOKENS, "tok/s")
    assert v.text == (
        "adaptive raises agg_tok_s 25.0% against window (400 tok/s -> 500 tok/s; higher is better). "
        "Others against window: eager -25.0% (300 tok/s)."
    )


def test_the_spec_can_name_the_baseline():
    t = table(makespan_us={"sync": 300.0, "prefetch": 200.0, "resident": 100.0})
    v = metric_verdict(t, MAKESPAN, "us", baseline="prefetch")
    assert v.baseline == "prefetch" and v.best == ("resident",) and v.change == pytest.approx(-0.5)
    assert v.text.startswith("resident cuts makespan 50.0% against prefetch (200 µs -> 100 µs")


def test_equal_results_are_said_to_tie():
    every = metric_verdict(table(makespan_us={"a": 5.0, "b": 5.0, "c": 5.0}), MAKESPAN, "us")
    assert every.outcome == "tie" and every.change == 0 and every.text == "All 3 policies tie on makespan: 5 µs (lower is better)."
    two = metric_verdict(table(makespan_us={"a": 5.0, "b": 5.0 * (1 + 1e-12)}), MAKESPAN, "us")
    assert two.outcome == "tie" and two.text.startswith("Both policies tie")
    best_two = metric_verdict(table(makespan_us={"sync": 9.0, "p1": 3.0, "p2": 3.0}), MAKESPAN, "us")
    assert best_two.best == ("p1", "p2") and best_two.text.startswith("p1 and p2 (tied) cut makespan 66.7% against sync")


def test_a_baseline_nobody_beats_is_said_so_with_the_runner_up():
    v = metric_verdict(table(makespan_us={"sync": 100.0, "prefetch": 112.0, "x": 130.0}), MAKESPAN, "us")
    assert v.outcome == "baseline_best" and v.change == 0 and v.best == ("sync",)
    assert v.text == (
        "sync (the baseline) is best on makespan at 100 µs; no policy beats it "
        "(next: prefetch, 12.0% higher, 112 µs; lower is better)."
    )
    tied = metric_verdict(table(makespan_us={"sync": 100.0, "copy": 100.0, "x": 130.0}), MAKESPAN, "us")
    assert "tied with copy" in tied.text and "next: x, 30.0% higher" in tied.text


def test_a_zero_baseline_gives_no_percentage_and_missing_values_are_skipped():
    lost = HeadlineMetric("backups_lost", "lower")
    v = metric_verdict(table(backups_lost={"none": 64.0, "inline": 0.0}), lost, "count")
    assert v.text == "inline cuts backups_lost 100.0% against none (64 -> 0; lower is better)."
    up = metric_verdict(table(agg_tok_s={"off": 0.0, "on": 5.0}), TOKENS, "tok/s")
    assert math.isnan(up.change) and "no percentage from 0" in up.text and "%" not in up.text
    gap = metric_verdict(table(makespan_us={"sync": float("nan"), "a": 2.0, "b": 3.0}), MAKESPAN, "us")
    assert gap.best == ("a",) and "the baseline sync reports no makespan" in gap.text
    one = metric_verdict(table(makespan_us={"sync": 7.0}), MAKESPAN, "us")
    assert one.outcome == "single" and "nothing to compare" in one.text
    assert metric_verdict(table(other={"sync": 1.0}), MAKESPAN).outcome == "no_data"


def test_a_reference_gives_each_policy_predicted_change_against_the_recording():
    whatif = HeadlineMetric("makespan_us", "lower", "recorded_makespan_us", "the recording")
    t = table(
        makespan_us={"as_recorded": 41_211.0, "prefetch_copies": 26_313.0},
        recorded_makespan_us={"as_recorded": 41_266.0, "prefetch_copies": 41_266.0},
    )
    v = metric_verdict(t, whatif, "us")
    assert v.reference is not None and v.reference.change["prefetch_copies"] == pytest.approx(26_313 / 41_266 - 1)
    assert v.text.endswith("Predicted against the recording (41.3 ms): prefetch_copies -36.2%, as_recorded -0.1%.")
    close = metric_verdict(t.assign(makespan_us=[41_260.0, 26_313.0]), whatif, "us")
    assert close.text.endswith("as_recorded -0.015%.")  # rounds to 0.0%: three decimals keep its size and sign


def test_verdicts_skip_headline_metrics_the_table_lacks():
    t = table(makespan_us={"a": 2.0, "b": 1.0})
    assert [v.metric for v in verdicts(t, [MAKESPAN, TOKENS], {"makespan_us": "us"})] == ["makespan_us"]


def test_every_workload_declares_what_its_verdict_answers():
    for name, workload in registry().items():
        assert workload.headlines(), name
        for headline in workload.headlines():
            assert headline.better in ("lower", "higher"), (name, headline)


# --------------------------------------------------------------------------- every bundled spec

SPECS = sorted(SPECS_DIR.glob("*.toml"))
SMALLER = {"bench_layer_streaming": {"segments": 200}}  # its 20,000 segments take ~20 s on a 2-core box


@pytest.mark.parametrize("path", SPECS, ids=lambda p: p.stem)
def test_every_bundled_spec_gets_a_verdict_that_matches_its_figures(path):
    loaded = load_spec(path, SMALLER.get(path.stem))
    loaded = dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"repetitions": 1}))
    results = run_spec(loaded, sim_backend_factory(loaded))
    found = results_verdicts(results.runs, results.metrics, loaded.workload.headlines(), loaded.baseline)
    assert found, f"{path.name}: no verdict"
    means = results.metrics[results.metrics["item"] == -1].merge(results.runs[["run_id", "policy_label"]])
    for v in found:
        values = means[means["metric"] == v.metric].groupby("policy_label", sort=False)["value"].mean()
        assert v.baseline == loaded.baseline and (v.baseline in v.text or v.outcome == "tie")
        assert v.values == pytest.approx(values.to_dict())
        assert v.outcome in ("better", "baseline_best", "tie"), v.text
        pick = min if v.better == "lower" else max
        assert v.best_value == pick(values) and set(v.best) <= set(values.index)
        assert f"{v.better} is better" in v.text
        if v.outcome == "better" and v.baseline_value != 0:
            assert v.change == pytest.approx(v.best_value / v.baseline_value - 1)
            assert ("cut" if v.better == "lower" else "raise") in v.text
            assert f"{abs(100 * v.change):.1f}%" in v.text or abs(100 * v.change) < 0.05


def test_the_demo_says_prefetch_and_resident_against_sync(tmp_path):
    result = CliRunner().invoke(app, ["demo", "--out", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    verdict = next(line for line in result.output.splitlines() if line.startswith("verdict:"))
    assert verdict.startswith("verdict: resident cuts makespan 55.4% against sync (338 ms -> 151 ms; lower is better).")
    assert "Others against sync: prefetch -39.1% (206 ms)." in verdict
    document = json.loads((tmp_path / "demo" / VERDICT_FILE).read_text())
    assert document["schema"] == VERDICT_SCHEMA and document["baseline"] == "sync"
    assert (document["spec"], document["workload"], document["backend"]) == ("layer-streaming-demo", "layer_streaming", "sim")
    (makespan,) = document["verdicts"]
    assert makespan["metric"] == "makespan_us" and makespan["unit"] == "us" and makespan["better"] == "lower"
    assert makespan["best"] == ["resident"] and list(makespan["values"]) == ["sync", "prefetch", "resident"]
    assert makespan["change_percent"] == pytest.approx(-55.44, abs=0.01)
    assert "verdict: " + makespan["text"] == verdict


def test_a_spec_baseline_changes_the_verdict_and_an_unknown_one_is_refused(tmp_path):
    text = (SPECS_DIR / "layer_streaming_demo.toml").read_text().replace("../layer_streaming/", str(SPECS_DIR.parent / "layer_streaming") + "/")
    spec = tmp_path / "spec.toml"
    spec.write_text('baseline = "prefetch"\n' + text)
    result = CliRunner().invoke(app, ["sim", str(spec), "--out", str(tmp_path / "r")])
    assert result.exit_code == 0, result.output
    assert "verdict: resident cuts makespan 26.8% against prefetch (206 ms -> 151 ms" in result.output
    spec.write_text('baseline = "prefetch-depth9"\n' + text)
    result = CliRunner().invoke(app, ["sim", str(spec), "--out", str(tmp_path / "r2")])
    assert result.exit_code == 2 and not (tmp_path / "r2").exists()
    assert "field 'baseline': 'prefetch-depth9' is not a policy label of this spec; labels: sync, prefetch, resident" in result.output


def test_the_dashboard_headline_defaults_to_the_baseline_the_spec_named(tmp_path):
    from dashboard.compare import spec_baseline

    folder = tmp_path / "results"
    folder.mkdir()
    runs = pd.DataFrame({"folder": [str(folder)] * 2, "policy_label": ["sync", "prefetch"]})
    assert spec_baseline(runs) is None  # no verdict.json: the page takes the first policy
    (folder / VERDICT_FILE).write_text(json.dumps({"schema": VERDICT_SCHEMA, "baseline": "prefetch"}))
    assert spec_baseline(runs) == "prefetch"
    (folder / VERDICT_FILE).write_text("{not json")
    assert spec_baseline(runs) is None
