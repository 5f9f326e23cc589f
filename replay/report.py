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


def error_sources(results_dir: Path) -> pd.DataFrame:
    """Per spec and policy: replay's median kernel and H2D-copy durations over the simulator's.

    What of the makespan error these do not explain is host time (launch,
    alloc, free, wake-up) between the device ops.
    """
    ops = {}
    for folder in sorted(results_dir.iterdir()):
        res = read_results(folder)
        ok = res.runs[res.runs["status"] == "ok"][["run_id", "spec_name", "policy_label", "backend"]]
        ops[folder.name] = res.ops.merge(ok, on="run_id")
    frame = pd.concat(ops.values(), ignore_index=True)
    frame["dur"] = frame["end_us"] - frame["start_us"]
    med = frame[frame["kind"].isin(["kernel", "copy_h2d"])].groupby(["spec_name", "policy_label", "backend", "kind"])["dur"].median()
    rows = []
    for (spec, label), g in med.groupby(level=["spec_name", "policy_label"]):
        g = g.droplevel(["spec_name", "policy_label"])
        try:
            rows.append(
                {
                    "spec_name": spec,
                    "policy_label": label,
                    "kernel_ratio": g[("replay", "kernel")] / g[("sim", "kernel")],
                    "copy_ratio": g[("replay", "copy_h2d")] / g[("sim", "copy_h2d")],
                }
            )
        except KeyError:
            continue
    return pd.DataFrame(rows, columns=["spec_name", "policy_label", "kernel_ratio", "copy_ratio"])


def render(table: pd.DataFrame, bounds: pd.DataFrame, profile: dict, command: str, sources: pd.DataFrame | None = None) -> str:
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
    if sources is not None and len(sources):
        lines += [
            "",
            "## Where the differences are",
            "",
            "Median replay duration over simulated duration, per op kind (a kernel or copy on an idle stream",
            "includes the host's issue time in the replay). The rest of a makespan error is host time between ops.",
            "",
            "| shape | policy | kernels replay/sim | H2D copies replay/sim |",
            "|---|---|---:|---:|",
        ]
        for r in sources.itertuples():
            lines.append(f"| {r.spec_name} | {r.policy_label} | {r.kernel_ratio:.4f} | {r.copy_ratio:.4f} |")
    lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--command", default="traces/fidelity/run_benchmark.sh")
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.dir / "fidelity.parquet")
    profile = tomllib.loads((args.dir / "profile.toml").read_text())
    text = render(table, bound_ratios(args.dir / "results"), profile, args.command, error_sources(args.dir / "results"))
    (args.dir / "fidelity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
