"""Which host-link calibration predicts a benchmark's replay runs better? (no GPU; after a benchmark call)

    python3 tools/copy_calibration_ab.py OUT PROFILE [PROFILE ...] [--metric makespan_us]

For a folder written by ``fidelity/run_benchmark.sh`` (``OUT/specs/*.toml`` and their replay
results ``OUT/results/<spec>-replay``), simulates every spec again under each PROFILE (the spec's
own profile line ignored) and sets the simulated median of the metric against the replay's, per
spec and policy, with each profile's median and worst |error|. Prints the table and writes it to
``OUT/copy_ab.md``. With ``OUT/profile.toml`` (pooled copies) and a copy re-timed the isolated way
(``tools/calibrate_copies.py --method isolated``), it shows what the pooled calibration changed.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd

from fidelity.benchmark_folder import replayed_specs
from fidelity.respec import respec
from harness.errors import InputError
from harness.profile import load_profile
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend


def simulated_medians(spec_path: Path, profile_path: Path, metric: str) -> dict[str, float]:
    """The spec's policies simulated under ``profile_path``: the median of ``metric`` per policy label.

    The spec is read through a copy pointed at ``profile_path`` (:func:`fidelity.respec.respec`), so a
    folder brought back from the GPU machine, whose specs name that machine's paths, still loads.
    """
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / spec_path.name
        respec(spec_path, str(Path(profile_path).resolve()), copy)
        loaded = load_spec(copy)
    profile = load_profile(profile_path)
    devices = loaded.workload.devices(loaded.workload_params)
    results = run_spec(
        loaded, lambda s, rep: SimBackend(profile, devices, s.device_memory_bytes, seed=s.spec.seed + rep)
    )
    return _medians(results.runs, results.metrics, metric)


def _medians(runs: pd.DataFrame, metrics: pd.DataFrame, metric: str) -> dict[str, float]:
    ok = runs[runs["status"] == "ok"][["run_id", "policy_label"]]
    rows = metrics[(metrics["item"] == -1) & (metrics["metric"] == metric)].merge(ok, on="run_id")
    return {label: float(g["value"].median()) for label, g in rows.groupby("policy_label", sort=False)}


def ab_table(out: Path, profiles: list[Path], metric: str) -> pd.DataFrame:
    rows = []
    for spec, replay in replayed_specs(out):
        measured = _medians(replay.runs, replay.metrics, metric)
        row_of = {label: {"spec": spec.stem, "policy": label, "measured": value} for label, value in measured.items()}
        for profile in profiles:
            for label, value in simulated_medians(spec, profile, metric).items():
                if label in row_of:
                    row_of[label][profile.stem] = value
        rows += row_of.values()
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, profiles: list[Path], metric: str) -> str:
    names = [p.stem for p in profiles]
    lines = [
        f"# {metric}: replay median against each profile's simulation",
        "",
        "| spec | policy | measured | " + " | ".join(f"{n} (error)" for n in names) + " |",
        "|---|---|---:|" + "---:|" * len(names),
    ]
    errors: dict[str, list[float]] = {n: [] for n in names}
    for r in table.to_dict("records"):
        cells = []
        for n in names:
            sim = r.get(n, float("nan"))
            err = (sim - r["measured"]) / r["measured"]
            errors[n].append(abs(err))
            cells.append(f"{sim:,.1f} ({err:+.2%})")
        lines.append(f"| {r['spec']} | {r['policy']} | {r['measured']:,.1f} | " + " | ".join(cells) + " |")
    lines.append("")
    for n in names:
        valid = [e for e in errors[n] if e == e]
        if valid:
            lines.append(f"- {n}: median |error| {statistics.median(valid):.2%}, worst {max(valid):.2%}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="a benchmark folder: specs/ and results/<spec>-replay")
    ap.add_argument("profiles", type=Path, nargs="+", help="profile files to simulate under")
    ap.add_argument("--metric", default="makespan_us")
    args = ap.parse_args(argv)
    if not (args.out / "specs").is_dir():
        print(f"error: {args.out}: no specs/ folder (not a fidelity/run_benchmark.sh output)", file=sys.stderr)
        return 2
    try:
        table = ab_table(args.out, args.profiles, args.metric)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    if table.empty:
        print(f"error: {args.out}: no spec has replay results", file=sys.stderr)
        return 2
    text = render(table, args.profiles, args.metric)
    (args.out / "copy_ab.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
