"""The fidelity report (no torch): ``python3 -m fidelity.report DIR`` writes ``DIR/fidelity.md``.

Reads ``DIR/fidelity.parquet`` (from ``harness compare``), the calibrated profile
``DIR/profile.toml`` and the results folders under ``DIR/results/`` where there are
some. It names no workload: each spec's workload comes from the table's
``workload`` column (for tables stored before that column, from the runs under
``DIR/results/``), and what the report shows and checks for it is what the
workload declares in its ``fidelity`` field (:class:`harness.workload.Fidelity`):

* its shown metrics: simulated, measured median and range, relative error, per spec and policy, and
  next to each error the noise it was measured in: the replay's run-to-run spread (half the
  interquartile range of the repetitions) and the host link's drift (:func:`link_drift_by_spec`:
  the probes ``DIR/link_probes.csv`` took before and after each spec's replay against the
  calibration's own, else the calibration's drift from the profile's ``[link.drift]``);
* its error bounds: median and worst |error| of a metric over the workload's rows, against the limits;
* its ranked metrics: whether each spec's policies rank the same in sim and replay;
* its checks: each claim of the modelled change, on the simulated and on the measured side.

Where the results folders hold both sides' ops, a last section gives the replay's
median kernel and copy durations over the simulator's, per spec and policy (what of
an error they do not explain is host time between the device ops).
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import InputError
from harness.paths import SPECS_DIR
from harness.results import ResultsError, read_results
from harness.workload import Fidelity, FidelityCheck, Value, Workload, registry

TABLE_FILE, PROFILE_FILE, RESULTS_DIR, REPORT_FILE = "fidelity.parquet", "profile.toml", "results", "fidelity.md"
PROBES_FILE = "link_probes.csv"  # python3 -m replay.link_probe, before and after each spec's replay
OP_KINDS = ("kernel", "copy_h2d", "copy_d2h", "copy_d2d")  # device ops whose durations the last section compares
_MEASURED_STAT = {"median": "measured", "min": "measured_min", "max": "measured_max"}


def workload_of(
    table: pd.DataFrame, results_dir: Path | None = None, spec_dirs: Sequence[Path] = (SPECS_DIR,)
) -> dict[str, str]:
    """Each spec's workload ("" when unknown).

    From the table's ``workload`` column; for a table stored before that column, from
    the runs of the results folders, else from the spec files in ``spec_dirs`` whose
    ``name`` is the spec's (their ``[workload] kind``).
    """
    found: dict[str, str] = {}
    if "workload" in table.columns:
        for spec, workload in table.groupby("spec_name", sort=False)["workload"].first().items():
            if isinstance(workload, str) and workload:
                found[spec] = workload
    if results_dir is not None and results_dir.is_dir():
        for folder in sorted(p for p in results_dir.iterdir() if (p / "runs.parquet").is_file()):
            runs = pd.read_parquet(folder / "runs.parquet", columns=["spec_name", "workload"])
            for spec, workload in runs.drop_duplicates("spec_name").itertuples(index=False):
                found.setdefault(spec, workload)
    for folder in spec_dirs:
        for path in sorted(Path(folder).glob("*.toml")) if Path(folder).is_dir() else ():
            try:
                spec = tomllib.loads(path.read_text())
            except (OSError, tomllib.TOMLDecodeError):
                continue
            kind = spec.get("workload", {}).get("kind") if isinstance(spec.get("workload"), dict) else None
            if isinstance(spec.get("name"), str) and isinstance(kind, str):
                found.setdefault(spec["name"], kind)
    return {spec: found.get(spec, "") for spec in table["spec_name"].drop_duplicates()}


def side_value(rows: pd.DataFrame, side: str) -> Value:
    """``value(policy, metric, stat)`` over one spec's rows, ``side`` ``"simulated"`` or ``"measured"``."""
    indexed = rows.set_index(["policy_label", "metric"])

    def value(policy: str, metric: str, stat: str = "median") -> float:
        if stat not in _MEASURED_STAT:
            raise ValueError(f"stat must be one of {sorted(_MEASURED_STAT)}, not {stat!r}")
        column = _MEASURED_STAT[stat] if side == "measured" else "simulated"
        return float(indexed.loc[(policy, metric), column])

    return value


def _fmt(value: float) -> str:
    if math.isnan(value):
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _error(value: float) -> str:
    return "-" if math.isnan(value) else f"{value:+.2%}"


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _percent(value: float, signed: bool = False) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:+.2%}" if signed else f"±{value:.2%}"


@dataclass(frozen=True)
class SpecDrift:
    """The host link's drift around one spec's replay: relative to the calibration's reference copy."""

    changes: tuple[float, ...] = ()  # (probe - calibration) / calibration, for each probe around the spec
    calibration_spread: float = math.nan  # the calibration's own drift ([link.drift] spread_frac)

    @property
    def size(self) -> float:
        """How far the link moved: the largest |change|, else the calibration's spread, else NaN."""
        return max(abs(c) for c in self.changes) if self.changes else self.calibration_spread

    def cell(self) -> str:
        if self.changes:
            return " → ".join(_percent(c, signed=True) for c in self.changes)
        return "-" if math.isnan(self.calibration_spread) else f"{self.calibration_spread:.2%} (calibration)"


def link_drift_by_spec(specs: Sequence[str], profile: Mapping | None, probes: pd.DataFrame | None) -> dict:
    """Each spec's :class:`SpecDrift`: its probes (in the order taken) against the calibration's reference copy
    (the median of ``[link.drift]``'s probe medians); without probes, the calibration's own drift."""
    drift = (profile or {}).get("link", {}).get("drift") or {}
    medians = [p["median_us"] for p in drift.get("probes", [])]
    reference = statistics.median(medians) if medians else math.nan
    spread = float(drift.get("spread_frac", math.nan))
    out = {}
    for spec in specs:
        changes: tuple[float, ...] = ()
        if probes is not None and not math.isnan(reference) and "spec_name" in probes.columns:
            mine = probes[(probes["spec_name"] == spec) & (probes["nbytes"] == drift.get("nbytes"))]
            changes = tuple(float(m) / reference - 1 for m in mine["median_us"])
        out[spec] = SpecDrift(changes, spread)
    return out


def run_spread(row: Any) -> float:
    """The measured repetitions' spread relative to their median (NaN for tables stored before the column)."""
    spread = getattr(row, "measured_spread", math.nan)
    return spread / abs(row.measured) if row.measured and not math.isnan(spread) else math.nan


def noise(row: Any, drift: SpecDrift) -> float:
    """What an error of this row cannot be told from: the larger of the run spread and the link's drift."""
    figures = [f for f in (run_spread(row), drift.size) if not math.isnan(f)]
    return max(figures) if figures else math.nan


def _in_noise(row: Any, drift: SpecDrift) -> str:
    level = noise(row, drift)
    if math.isnan(level) or math.isnan(row.rel_error):
        return "-"
    return "yes" if abs(row.rel_error) <= level else "no"


def metric_rows(rows: pd.DataFrame, fidelity: Fidelity, drifts: Mapping[str, SpecDrift] | None = None) -> list[str]:
    """The shown metrics of one workload's rows, in declared order per spec, each error next to its noise."""
    if drifts is None:  # a table stored before the noise was measured: the columns it has
        lines = ["| spec | policy | metric | simulated | measured (min-max) | error |", "|---|---|---|---:|---:|---:|"]
    else:
        lines = [
            "| spec | policy | metric | simulated | measured (min-max) | error | run spread | link drift | in noise |",
            "|---|---|---|---:|---:|---:|---:|---:|:---:|",
        ]
    order = {m: i for i, m in enumerate(fidelity.shown_metrics)}
    for spec in rows["spec_name"].drop_duplicates():
        part = rows[(rows["spec_name"] == spec) & rows["metric"].isin(order)]
        part = part.assign(_o=part["metric"].map(order)).sort_values("_o", kind="stable")
        drift = (drifts or {}).get(spec, SpecDrift())
        for r in part.itertuples():
            line = (
                f"| {r.spec_name} | {r.policy_label} | {r.metric} | {_fmt(r.simulated)} | "
                f"{_fmt(r.measured)} ({_fmt(r.measured_min)}-{_fmt(r.measured_max)}) | {_error(r.rel_error)} |"
            )
            if drifts is not None:
                line += f" {_percent(run_spread(r))} | {drift.cell()} | {_in_noise(r, drift)} |"
            lines.append(line)
    return lines


def criteria_lines(
    rows: pd.DataFrame, fidelity: Fidelity, drifts: Mapping[str, SpecDrift] | None = None
) -> list[str]:
    """Verdicts on the declared error bounds and rankings; how many errors lie inside their noise."""
    lines = []
    drifts = drifts or {}
    for bound in fidelity.error_bounds:
        bounded = rows[rows["metric"] == bound.metric]
        errors = bounded["rel_error"].abs()
        if errors.dropna().empty:
            lines.append(f"- {bound.metric}: no row has both a simulated and a measured value")
            continue
        verdicts = [_in_noise(r, drifts.get(r.spec_name, SpecDrift())) for r in bounded.itertuples()]
        if any(v != "-" for v in verdicts):
            lines.append(
                f"- {bound.metric}: {verdicts.count('yes')} of {len(verdicts)} errors inside their noise "
                "(the larger of the run spread and the link drift)"
            )
        median, worst = float(errors.median()), float(errors.max())
        lines.append(
            f"- {bound.metric}, median |error| {median:.2%} (limit {bound.median_limit:.0%}): "
            f"{_verdict(median <= bound.median_limit)}"
        )
        lines.append(
            f"- {bound.metric}, worst |error| {worst:.2%} (limit {bound.worst_limit:.0%}): "
            f"{_verdict(worst <= bound.worst_limit)}"
        )
    for metric in fidelity.ranked_metrics:
        for spec, g in rows[rows["metric"] == metric].groupby("spec_name", sort=False):
            agree = bool((g["rank_simulated"] == g["rank_measured"]).all())
            lines.append(f"- {spec}: policies ranked the same by {metric} in sim and replay: {_verdict(agree)}")
    return lines


def check_row(rows: pd.DataFrame, spec: str, check: FidelityCheck) -> str:
    """One claim on one spec: the verdict and figures on the simulated and on the measured side."""
    cells = []
    for side in ("simulated", "measured"):
        try:
            holds, figures = check.holds(side_value(rows, side))
            cells.append(f"{'holds' if holds else 'DOES NOT HOLD'}: {figures}")
        except KeyError as err:
            cells.append(f"missing {err}")
    return f"| {spec} | {check.claim} | {cells[0]} | {cells[1]} |"


def check_rows(rows: pd.DataFrame, fidelity: Fidelity) -> list[str]:
    """Every check of the workload on every spec that runs the policies it needs."""
    lines = ["| spec | claim | sim | replay |", "|---|---|---|---|"]
    for spec in rows["spec_name"].drop_duplicates():
        part = rows[rows["spec_name"] == spec]
        labels = set(part["policy_label"])
        lines += [check_row(part, spec, c) for c in fidelity.checks if set(c.needs) <= labels]
    return lines


HOST_OP_KINDS = ("host_sync", "host_work")  # ops that hold their thread from start to end


def host_between_us(ops: pd.DataFrame) -> float:
    """A run's host time between commands: on each thread, from each op's issue (a sync's or host work's end)
    to the thread's next op's issue, summed (µs). In the simulator these are the profile's host costs (alloc
    and free, which leave no row, fall in the gap after the op before them)."""
    total = 0.0
    for _, thread_ops in ops.groupby("thread", sort=False):
        thread_ops = thread_ops.sort_values(["issue_us", "op_id"])
        held = thread_ops["kind"].isin(HOST_OP_KINDS).to_numpy()
        free_at = thread_ops["end_us"].where(held, thread_ops["issue_us"]).to_numpy()
        issues = thread_ops["issue_us"].to_numpy()
        total += float((issues[1:] - free_at[:-1]).clip(min=0.0).sum())
    return total


def op_ratios(results_dir: Path) -> pd.DataFrame:
    """Per spec and policy: the replay's median duration of each device-op kind over the simulator's, and its
    median host time between commands (:func:`host_between_us`) over the simulator's (column ``host``)."""
    frames, hosts = [], []
    for folder in sorted(p for p in results_dir.iterdir() if p.is_dir()):
        try:
            res = read_results(folder)
        except ResultsError:
            continue
        ok = res.runs[res.runs["status"] == "ok"][["run_id", "spec_name", "policy_label", "backend"]]
        ops = res.ops[res.ops["kind"].isin(OP_KINDS)]
        frames.append(ops.merge(ok, on="run_id").assign(dur=lambda f: f["end_us"] - f["start_us"]))
        between = {run_id: host_between_us(run_ops) for run_id, run_ops in res.ops.groupby("run_id", sort=False)}
        hosts.append(ok.assign(host=ok["run_id"].map(between)))
    columns = ["spec_name", "policy_label", *OP_KINDS, "host"]
    if not frames:
        return pd.DataFrame(columns=columns)
    frame = pd.concat(frames, ignore_index=True)
    med = frame.groupby(["spec_name", "policy_label", "kind", "backend"], sort=False)["dur"].median().unstack("backend")
    if not {"sim", "replay"} <= set(med.columns):
        return pd.DataFrame(columns=columns)
    ratio = (med["replay"] / med["sim"]).unstack("kind")
    host = pd.concat(hosts).groupby(["spec_name", "policy_label", "backend"], sort=False)["host"].median()
    host = host.unstack("backend")
    ratio["host"] = host["replay"] / host["sim"]
    ratio = ratio.dropna(how="all").reset_index()
    kinds = [k for k in (*OP_KINDS, "host") if k in ratio.columns]
    return ratio[["spec_name", "policy_label", *kinds]]


def drift_lines(profile: Mapping | None, probes: pd.DataFrame | None) -> list[str]:
    """The host link's drift: over the calibration (``[link.drift]``) and around the runs (the probes)."""
    drift = (profile or {}).get("link", {}).get("drift")
    lines = []
    if drift:
        figures = ", ".join(f"{p['label']} {p['median_us']:.1f}" for p in drift.get("probes", []))
        lines.append(
            f"- host link drift during calibration: {drift['spread_frac']:.2%} "
            f"({drift['direction']} {drift['host_memory']} {drift['nbytes'] >> 20} MiB, µs: {figures})"
        )
    if probes is not None and len(probes):
        lo, hi = float(probes["median_us"].min()), float(probes["median_us"].max())
        lines.append(
            f"- link probes around the runs ({PROBES_FILE}): {len(probes)}, the same copy in {lo:.1f}-{hi:.1f} µs"
        )
    return lines


def provenance_lines(
    table: pd.DataFrame,
    profile: Mapping | None,
    command: str,
    probes: pd.DataFrame | None = None,
    noise_shown: bool = False,
) -> list[str]:
    devices = ", ".join(sorted(set(table["device_name"]) - {""})) or "?"
    lines = []
    if profile:
        prov = profile.get("provenance", {})
        host = profile.get("host", {})
        lines += [
            f"- replayed on: {devices}; calibrated GPU 0: {prov.get('gpu', '?')}; "
            f"driver {prov.get('driver', '?')}; torch {prov.get('torch', '?')}",
            f"- profile: `{profile.get('name', '?')}` measured {prov.get('date', '?')} by `harness calibrate`;"
            " host costs (µs): " + ", ".join(f"{k}={v}" for k, v in host.items()),
            *drift_lines(profile, probes),
        ]
    else:
        lines.append(
            f"- replayed on: {devices}; "
            f"simulated with profile(s): {', '.join(sorted(set(table['profile']) - {''})) or '?'}"
        )
    if command:
        lines.append(f"- command: `{command}`")
    lines.append(
        "- simulated: `harness sim` with that profile; measured: `harness replay`, "
        "median of the repetitions (range in brackets); error = (simulated - measured) / measured"
    )
    if not noise_shown:
        return lines
    lines.append(
        "- noise next to each error: run spread = half the interquartile range of the replay's repetitions over "
        "their median; link drift = the reference copy's time in the probes before → after the spec's replay "
        "against the calibration's (positive: the link was slower than calibrated), else the calibration's own "
        "drift; it bounds what copies can explain of an error (in full only where copies are the critical path); "
        "in noise: |error| ≤ the larger of the two"
    )
    return lines


def render(
    table: pd.DataFrame,
    profile: Mapping | None = None,
    command: str = "",
    results_dir: Path | None = None,
    workloads: Mapping[str, Workload] | None = None,
    probes: pd.DataFrame | None = None,
) -> str:
    """The report's markdown: provenance, then per workload its metrics, criteria and checks."""
    workloads = registry() if workloads is None else workloads
    spec_dirs = ([results_dir.parent / "specs"] if results_dir is not None else []) + [SPECS_DIR]
    of = workload_of(table, results_dir, spec_dirs)
    drifts: dict | None = link_drift_by_spec(list(of), profile, probes)
    if "measured_spread" not in table.columns and all(math.isnan(d.size) for d in drifts.values()):
        drifts = None  # nothing measured the noise (a table and profile from before it was): no noise columns
    lines = ["# Sim-vs-replay fidelity", "", *provenance_lines(table, profile, command, probes, drifts is not None)]
    names = list(dict.fromkeys(of.values()))
    for name in names:
        specs = [s for s, w in of.items() if w == name]
        rows = table[table["spec_name"].isin(specs)]
        workload = workloads.get(name)
        fidelity = workload.fidelity if workload is not None else Fidelity()
        title = name or "workload unknown"
        lines += ["", f"## {title}", ""]
        if workload is None:
            lines += [f"No registered workload {name!r} for {', '.join(specs)}: its makespan only, no checks.", ""]
        lines += metric_rows(rows, fidelity, drifts)
        criteria = criteria_lines(rows, fidelity, drifts)
        if criteria:
            lines += ["", "### Criteria", "", *criteria]
        checks = check_rows(rows, fidelity)
        if len(checks) > 2:
            lines += ["", "### Do the modelled change's results keep their direction?", "", *checks]
    ratios = op_ratios(results_dir) if results_dir is not None and results_dir.is_dir() else None
    if ratios is not None and len(ratios):
        kinds = [k for k in (*OP_KINDS, "host") if k in ratios.columns]
        lines += [
            "",
            "## Where the differences are",
            "",
            "Median replay duration over simulated duration, per op kind (a kernel or copy on an idle stream",
            "includes the host's issue time in the replay). The rest of an error is host time between ops:",
            "`host` is the replay's host time from each command to the next (after a sync, from its return),",
            "summed over a run, over the simulator's (which charges the profile's host costs); median runs.",
            "",
            "| spec | policy | " + " | ".join(f"{k} replay/sim" for k in kinds) + " |",
            "|---|---|" + "---:|" * len(kinds),
        ]
        for r in ratios.itertuples(index=False):
            cells = ["-" if math.isnan(v) else f"{v:.4f}" for v in (float(getattr(r, k)) for k in kinds)]
            lines.append(f"| {r.spec_name} | {r.policy_label} | " + " | ".join(cells) + " |")
    lines.append("")
    return "\n".join(lines)


def write_report(directory: Path, command: str = "", force: bool = False, out: Path | None = None) -> Path:
    """Render the report of a benchmark folder into ``out`` (default ``DIR/fidelity.md``)."""
    directory = Path(directory)
    table_path = directory / TABLE_FILE
    if not table_path.is_file():
        raise InputError(table_path, "", "no fidelity table here (run `harness compare ... --out` into it first)")
    out = directory / REPORT_FILE if out is None else Path(out)
    if out.exists() and not force:
        raise FileExistsError(f"{out} already exists (a measured report is never overwritten; --force to replace it)")
    profile_path = directory / PROFILE_FILE
    profile = tomllib.loads(profile_path.read_text()) if profile_path.is_file() else None
    probes_path = directory / PROBES_FILE
    try:
        probes = pd.read_csv(probes_path) if probes_path.is_file() else None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise InputError(probes_path, "", f"unreadable link probes ({err})") from None
    if probes is not None and not {"spec_name", "nbytes", "median_us"} <= set(probes.columns):
        raise InputError(probes_path, "header", "needs the columns spec_name, nbytes, median_us")
    text = render(pd.read_parquet(table_path), profile, command, directory / RESULTS_DIR, probes=probes)
    out.write_text(text)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m fidelity.report", description=__doc__.split("\n\n")[0])
    ap.add_argument("dir", type=Path, help="benchmark folder: fidelity.parquet, profile.toml, results/")
    ap.add_argument("--command", default="", help="the command that made the folder, for the provenance")
    ap.add_argument("--out", type=Path, default=None, help="report file (default DIR/fidelity.md)")
    ap.add_argument("--force", action="store_true", help="replace an existing report")
    args = ap.parse_args(argv)
    try:
        out = write_report(args.dir, args.command, args.force, args.out)
    except (InputError, FileExistsError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    print(out.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
