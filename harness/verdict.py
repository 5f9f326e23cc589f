"""The verdict: who wins on each of a workload's headline metrics, and by how much against the baseline.

Pure functions over a results frame (policy label x metric, the mean over repetitions). For each headline
metric (:class:`HeadlineMetric`: the metric, which side is better, optionally a measured reference such as a
recording's span) a :class:`MetricVerdict` gives the best policy, its margin against the baseline (the
spec's ``baseline``, else its first policy) in the metric's unit and in percent, and one sentence::

    prefetch cuts makespan 39.0% against sync (26.3 ms -> 16.0 ms; lower is better)

Equal results are said as such (a tie); a reference adds each policy's predicted change against it
("predicted -36.2% against the recording"). ``harness sim`` prints the sentences under its table and writes
:func:`verdict_document` as ``verdict.json`` in the results folder (its schema: ``docs/verdict.md``); the
dashboard's Compare page leads with the same sentence.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import pandas as pd

Better = Literal["lower", "higher"]

VERDICT_SCHEMA = "harness.verdict/1"
VERDICT_FILE = "verdict.json"
MAX_OTHERS = 3  # the other policies' changes are listed when there are at most this many (not for sweeps)
REL_TIE = 1e-9  # values this close (relative) are equal: floating-point noise, not a result

# Which side is better, guessed from the name for metrics no workload declares (the dashboard's free choice).
HIGHER_IS_BETTER = ("tok_s", "tokens_per_s", "_per_s", "throughput", "goodput", "overlap_frac")
LOWER_IS_BETTER = ("lost", "fallbacks", "dropped", "errors", "violations", "over_overlap_bound")


@dataclass(frozen=True)
class HeadlineMetric:
    """A metric the verdict speaks about, which side of it is better, and an optional measured reference.

    ``reference`` names a metric every run reports with the same measured value (``recorded_makespan_us``: the
    recording's own span); each policy's value is then also given as a change against it, "against
    ``reference_label``".
    """

    metric: str
    better: Better
    reference: str | None = None
    reference_label: str = ""


def guess_better(metric: str, unit: str = "") -> Better | None:
    """``"lower"``, ``"higher"`` or None (busy fractions, bytes moved: no side is better by itself)."""
    if any(word in metric for word in HIGHER_IS_BETTER):
        return "higher"
    if unit == "us" or metric.endswith("_us") or any(word in metric for word in LOWER_IS_BETTER):
        return "lower"
    return None


# --------------------------------------------------------------------------- units


TIME_UNITS = (("s", 1e6), ("ms", 1e3), ("µs", 1.0))


def format_duration(us: float) -> str:
    """``1.5 ms``, ``850 µs``, ``12.3 s``: three significant digits in the unit that fits."""
    if not math.isfinite(us):
        return "-"
    unit, scale = next(((u, s) for u, s in TIME_UNITS if abs(us) >= s), TIME_UNITS[-1])
    value = us / scale
    return f"{value:,.3g} {unit}" if abs(value) < 1000 else f"{value:,.0f} {unit}"


def format_value(value: float | None, unit: str = "") -> str:
    """A value in the unit people read: µs as ms or s, bytes as GB or MB, fractions as %, counts with commas."""
    if value is None or not math.isfinite(value):
        return "-"
    if unit == "us":
        return format_duration(value)
    if unit == "bytes":
        for name, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
            if abs(value) >= size:
                return f"{value / size:,.3g} {name}"
        return f"{value:,.0f} B"
    if unit == "fraction":
        return f"{value:.1%}"
    if unit == "count":
        return f"{value:,.0f}" if float(value).is_integer() else f"{value:,.2f}"
    if unit == "ratio":
        return f"{value:,.3g}×"
    number = f"{value:,.4g}" if abs(value) < 1e4 else f"{value:,.0f}"
    return f"{number} {unit}" if unit else number


def format_percent(change: float) -> str:
    """``39.0%``; ``< 0.1%`` for a change that rounds to zero but is not one (the sign is said in words)."""
    pct = abs(change) * 100
    return "< 0.1%" if 0 < pct < 0.05 else f"{pct:.1f}%"


def metric_words(metric: str) -> str:
    """The name a sentence uses: the unit suffix dropped (``makespan_us`` -> ``makespan``)."""
    return metric.removesuffix("_us")


# --------------------------------------------------------------------------- the verdict

Outcome = Literal["better", "baseline_best", "tie", "single", "no_data"]


@dataclass(frozen=True)
class Reference:
    metric: str
    label: str
    value: float
    change: dict[str, float]  # policy label -> value / reference - 1


@dataclass(frozen=True)
class MetricVerdict:
    """One headline metric's verdict. ``change`` is ``best / baseline - 1`` (NaN when the baseline is 0)."""

    metric: str
    unit: str
    better: Better
    baseline: str
    baseline_value: float
    best: tuple[str, ...]  # the best policies (several when they tie); empty without data
    best_value: float
    change: float
    difference: float  # best - baseline, in ``unit``
    outcome: Outcome
    text: str
    values: dict[str, float] = field(default_factory=dict)  # every policy's value, in policy order
    reference: Reference | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "unit": self.unit,
            "better": self.better,
            "outcome": self.outcome,
            "baseline": self.baseline,
            "baseline_value": _finite(self.baseline_value),
            "best": list(self.best),
            "best_value": _finite(self.best_value),
            "change": _finite(self.change),
            "change_percent": _finite(round(100 * self.change, 3)) if math.isfinite(self.change) else None,
            "difference": _finite(self.difference),
            "values": {label: _finite(v) for label, v in self.values.items()},
            "reference": None
            if self.reference is None
            else {
                "metric": self.reference.metric,
                "label": self.reference.label,
                "value": _finite(self.reference.value),
                "change": {label: _finite(v) for label, v in self.reference.change.items()},
            },
            "text": self.text,
        }


def _finite(value: float) -> float | None:
    return float(value) if value is not None and math.isfinite(value) else None


def _equal(a: float, b: float) -> bool:
    return a == b or abs(a - b) <= REL_TIE * max(abs(a), abs(b))


def _names(labels: Sequence[str]) -> str:
    return labels[0] if len(labels) == 1 else ", ".join(labels[:-1]) + f" and {labels[-1]}"


def metric_verdict(
    table: pd.DataFrame, headline: HeadlineMetric, unit: str = "", baseline: str | None = None
) -> MetricVerdict:
    """The verdict on one metric of ``table`` (index: policy labels in spec order; columns: metrics; means)."""
    metric, better = headline.metric, headline.better
    column = table[metric] if metric in table.columns else pd.Series(dtype=float)
    values = {str(label): float(v) for label, v in column.items() if pd.notna(v) and math.isfinite(float(v))}
    labels = [str(label) for label in table.index]
    base = baseline if baseline is not None else (labels[0] if labels else "")
    base_value = values.get(base, math.nan)
    words = metric_words(metric)
    side = f"{better} is better"

    def make(outcome: Outcome, best: tuple[str, ...], best_value: float, text: str) -> MetricVerdict:
        change = best_value / base_value - 1 if math.isfinite(base_value) and base_value != 0 else math.nan
        if outcome in ("tie", "baseline_best") and math.isfinite(base_value):
            change = 0.0
        difference = best_value - base_value
        reference = _reference(table, headline, values)
        if reference is not None and best:
            text += " " + _reference_sentence(reference, best[0], base, unit)
        return MetricVerdict(
            metric, unit, better, base, base_value, best, best_value, change, difference, outcome, text,
            values, reference,
        )  # fmt: skip

    if not values:
        return make("no_data", (), math.nan, f"No policy reports {metric}.")
    if len(values) == 1:
        (only, value), = values.items()
        return make("single", (only,), value, f"{only} alone reports {words}: {format_value(value, unit)} (nothing to compare).")
    pick = min if better == "lower" else max
    best_value = pick(values.values())
    best = tuple(label for label, v in values.items() if _equal(v, best_value))
    if len(best) == len(values):
        return make("tie", best, best_value, f"{'Both' if len(best) == 2 else f'All {len(best)}'} policies tie on {words}: {format_value(best_value, unit)} ({side}).")
    if not math.isfinite(base_value):
        text = (
            f"{_names(best)} {'is' if len(best) == 1 else 'tie as'} best on {words} at {format_value(best_value, unit)} "
            f"({side}); the baseline {base} reports no {words}."
        )
        return make("better", best, best_value, text)
    if base in best:
        others = [label for label in best if label != base]
        runner_up = sorted(
            ((label, v) for label, v in values.items() if label not in best),
            key=lambda item: item[1], reverse=better == "higher",
        )[0]  # fmt: skip
        tied = f", tied with {_names(others)}" if others else ""
        gap = runner_up[1] / base_value - 1 if base_value != 0 else math.nan
        how = f"{format_percent(gap)} {'higher' if gap > 0 else 'lower'}, " if math.isfinite(gap) else ""
        text = (
            f"{base} (the baseline) is best on {words} at {format_value(base_value, unit)}{tied}; no policy beats it "
            f"(next: {runner_up[0]}, {how}{format_value(runner_up[1], unit)}; {side})."
        )
        return make("baseline_best", best, best_value, text)
    verb = "cuts" if better == "lower" else "raises"
    if base_value != 0:
        margin = f" {format_percent(best_value / base_value - 1)}"
        span = f"{format_value(base_value, unit)} -> {format_value(best_value, unit)}"
    else:
        margin = ""
        span = f"{format_value(base_value, unit)} -> {format_value(best_value, unit)}, no percentage from 0"
    who = best[0] if len(best) == 1 else f"{_names(best)} (tied)"
    verbs = verb if len(best) == 1 else verb.removesuffix("s")
    text = f"{who} {verbs} {words}{margin} against {base} ({span}; {side})."
    others = [(label, v) for label, v in values.items() if label not in best and label != base]
    if base_value != 0 and 0 < len(others) <= MAX_OTHERS:
        listed = ", ".join(f"{label} {_signed(v / base_value - 1)} ({format_value(v, unit)})" for label, v in others)
        text += f" Others against {base}: {listed}."
    return make("better", best, best_value, text)


def _reference(table: pd.DataFrame, headline: HeadlineMetric, values: Mapping[str, float]) -> Reference | None:
    if headline.reference is None or headline.reference not in table.columns:
        return None
    measured = [float(v) for v in table[headline.reference] if pd.notna(v) and math.isfinite(float(v))]
    if not measured or measured[0] == 0:
        return None
    ref = measured[0]
    return Reference(headline.reference, headline.reference_label or headline.reference, ref, {
        label: v / ref - 1 for label, v in values.items()
    })  # fmt: skip


def _signed(change: float) -> str:
    """``-36.2%``, ``+0.9%``; a change that rounds to 0.0% keeps three decimals (``-0.012%``)."""
    pct = 100 * change
    return "0.0%" if pct == 0 else f"{pct:+.3f}%" if abs(pct) < 0.05 else f"{pct:+.1f}%"


def _reference_sentence(reference: Reference, best: str, baseline: str, unit: str) -> str:
    """``Predicted against the recording (41.3 ms): prefetch_copies -36.2%, as_recorded -0.1%.``"""
    shown = [best] + [baseline] * (baseline != best and baseline in reference.change)
    parts = ", ".join(f"{label} {_signed(reference.change[label])}" for label in shown)
    return f"Predicted against {reference.label} ({format_value(reference.value, unit)}): {parts}."


def verdicts(
    table: pd.DataFrame,
    headlines: Iterable[HeadlineMetric],
    units: Mapping[str, str] | None = None,
    baseline: str | None = None,
) -> list[MetricVerdict]:
    """One verdict per headline metric that ``table`` has (see :func:`metric_verdict`)."""
    units = units or {}
    return [
        metric_verdict(table, h, units.get(h.metric, ""), baseline) for h in headlines if h.metric in table.columns
    ]


def verdict_document(found: Sequence[MetricVerdict], **about: Any) -> dict[str, Any]:
    """What ``verdict.json`` holds: ``about`` (spec, workload, backend, profile, baseline), then the verdicts."""
    return {"schema": VERDICT_SCHEMA, **about, "verdicts": [v.to_json() for v in found]}


def results_verdicts(
    runs: pd.DataFrame, metrics: pd.DataFrame, headlines: Sequence[HeadlineMetric], baseline: str | None = None
) -> list[MetricVerdict]:
    """The verdicts of a results folder's ``runs`` and ``metrics`` tables (whole-run rows of the ``ok`` runs,
    mean over repetitions; policies in the order they ran). A failed baseline gives no percentages."""
    names = {h.metric for h in headlines} | {h.reference for h in headlines if h.reference}
    ok = runs[runs["status"] == "ok"][["run_id", "policy_label"]]
    rows = metrics[(metrics["item"] == -1) & metrics["metric"].isin(names)].merge(ok, on="run_id")
    order = list(dict.fromkeys(runs["policy_label"]))
    table = rows.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="mean", sort=False)
    table = table.reindex(index=order)
    units = dict(zip(rows["metric"], rows["unit"].fillna(""))) if "unit" in rows.columns else {}
    return verdicts(table, headlines, units, baseline if baseline in order else (order[0] if order else None))
