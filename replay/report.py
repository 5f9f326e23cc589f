"""The fidelity benchmark's markdown report (no torch): ``python3 -m replay.report DIR``.

Reads ``DIR/fidelity.parquet`` (from ``harness compare``), the replay results
under ``DIR/results/`` and the calibrated profile ``DIR/profile.toml``, and writes
``DIR/fidelity.md``: the makespan table (shape, policy, simulated, measured,
error), the issue's criteria with their verdicts, and the provenance.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from pathlib import Path

import pandas as pd

from harness.compare import makespan_summary
from harness.results import read_results

MEDIAN_LIMIT, WORST_LIMIT, BOUND_LIMIT = 0.02, 0.05, 0.03


def bound_ratios(results_dir: Path) -> pd.DataFrame:
    """Median replay ``makespan_over_overlap_bound`` of every prefetch policy, per spec."""
    rows = []
    for folder in sorted(results_dir.iterdir()):
        res = read_results(folder)
        runs = res.runs[(res.runs["backend"] == "replay") & (res.runs["status"] == "ok") & (res.runs["policy"] == "prefetch")]
        m = res.metrics[(res.metrics["metric"] == "makespan_over_overlap_bound") & res.metrics["run_id"].isin(runs["run_id"])]
        m = m.merge(runs[["run_id", "spec_name", "policy_label"]], on="run_id")
        for (spec, label), g in m.groupby(["spec_name", "policy_label"]):
            rows.append({"spec_name": spec, "policy_label": label, "ratio": float(g["value"].median()), "worst": float(g["value"].max())})
    return pd.DataFrame(rows, columns=["spec_name", "policy_label", "ratio", "worst"])


def render(table: pd.DataFrame, bounds: pd.DataFrame, profile: dict, command: str) -> str:
    mk = table[table["metric"] == "makespan_us"].copy()
    summary = makespan_summary(table)
    prov = profile.get("provenance", {})
    lines = [
        "# Sim-vs-replay fidelity: layer streaming on the lent GPU",
        "",
        f"- GPU: {prov.get('gpu', '?')}; driver {prov.get('driver', '?')}; torch {prov.get('torch', '?')}",
        f"- profile: `{profile.get('name', '?')}` measured {prov.get('date', '?')} by `harness calibrate` in the same call",
        f"- command: `{command}`",
        "- simulated: `harness sim` with that profile; measured: `harness replay` (median of the repetitions; range in brackets)",
        "",
        "| shape | policy | simulated ms | measured ms (min-max) | error |",
        "|---|---|---:|---:|---:|",
    ]
    for r in mk.itertuples():
        lines.append(
            f"| {r.spec_name} | {r.policy_label} | {r.simulated / 1e3:.3f} | {r.measured / 1e3:.3f} "
            f"({r.measured_min / 1e3:.3f}-{r.measured_max / 1e3:.3f}) | {r.rel_error:+.2%} |"
        )
    lines += ["", "## Criteria", ""]
    ok_median = summary["median_abs_error"] <= MEDIAN_LIMIT
    ok_worst = summary["max_abs_error"] <= WORST_LIMIT
    lines.append(f"- makespan error, median |error| {summary['median_abs_error']:.2%} (limit 2%): {'PASS' if ok_median else 'FAIL'}")
    lines.append(f"- makespan error, worst |error| {summary['max_abs_error']:.2%} (limit 5%): {'PASS' if ok_worst else 'FAIL'}")
    for spec, agree in summary["ranks_agree"].items():
        lines.append(f"- {spec}: policies ranked the same by sim and replay: {'PASS' if agree else 'FAIL'}")
    for r in bounds.itertuples():
        verdict = "PASS" if r.ratio - 1 <= BOUND_LIMIT else "FAIL"
        lines.append(
            f"- {r.spec_name} {r.policy_label}: replay makespan / overlap bound = {r.ratio:.4f} (worst {r.worst:.4f}; limit 1.03): {verdict}"
        )
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--command", default="traces/fidelity/run_benchmark.sh")
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.dir / "fidelity.parquet")
    profile = tomllib.loads((args.dir / "profile.toml").read_text())
    text = render(table, bound_ratios(args.dir / "results"), profile, args.command)
    (args.dir / "fidelity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
