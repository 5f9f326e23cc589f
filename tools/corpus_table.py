"""Tabulate the corpus: the harness's predictions against the programs as they really ran (issues 22 and 24).

Reads a device run's ``manifest.json`` (``tools/corpus_gpu_run.py``) and the
catalogue's pairs, imports each recording (``harness trace import``; the
``.parquet`` beside each ``.json.gz``, made once), and simulates on the profile
of the GPU recorded on (``h100`` / ``h200``, from ``traces/profiles/gpu-defaults.toml``):

* **programs** (issue 22): each recording re-issued ``as_recorded`` against its
  recorded span, and, where the recorded workload has profiler compensation
  (``profiler_overhead = "subtract"``), the predicted unprofiled span against the
  program's unprofiled median (timed before any profiling in its process);
* **pairs** (issue 24): the pair's spec (``as_recorded`` and the what-if, labelled
  ``what_if``, with its params) on the base program's recording: the predicted
  change (what-if over as_recorded) against the real change, recording to recording
  and unprofiled to unprofiled (compensated where compensation exists), in sign and
  size, and the predicted span against the changed program's recording.

A figure that cannot be had says why in its ``*_note`` column ("n/a: compensation
not available", the what-if's refusal). Changes within +-1% count as no change
(``sign`` 0). ``--bundled`` tabulates the five bundled H200 programs of
``traces/recorded/`` (``spans.json``) the same way.

Usage: ``python tools/corpus_table.py [--corpus traces/recorded/corpus] [--out DIR]``
or ``python tools/corpus_table.py --bundled [--out DIR]``; writes ``programs.parquet``,
``pairs.parquet`` and ``table.md`` under ``--out`` (default: the corpus folder, or
``traces/recorded/bundled_table/`` with ``--bundled``) and prints the markdown.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's harness, not an installed one
from corpus_catalogue import CORPUS_DIR, MODE_TEXT, CatalogueError, load_catalogue  # noqa: E402

from harness.backend import run_policy  # noqa: E402
from harness.errors import InputError  # noqa: E402
from harness.paths import TRACES_DIR  # noqa: E402
from harness.profile import Profile, gpu_defaults, load_profile  # noqa: E402
from harness.spec import load_spec  # noqa: E402
from sim import SimBackend  # noqa: E402
from workloads.recorded.compensation import SLOW_HOST_RATIO  # noqa: E402

NO_CHANGE = 0.01  # |change| below this is "no change" (sign 0)
AS_RECORDED_SPEC = CORPUS_DIR / "specs" / "as_recorded.toml"
NO_COMPENSATION = "n/a: compensation not available (the recorded workload has no profiler_overhead parameter)"
BUNDLED_PAIRS = [  # the bundled programs' what-ifs (traces/recorded/README.md)
    ("b1_prefetch", "layers_sync", "layers_prefetch", "specs/prefetch_copies.toml", "prefetch one layer ahead", "pays"),
    ("b2_async_d2h", "decode_inline", "decode_async", "specs/async_d2h.toml", "D2H backup on a side stream", "pays"),
    ("b3_graph", "decode_inline", "decode_graph", "specs/graph_launch.toml", "each step as a CUDA graph", "pays"),
]


@dataclass(frozen=True)
class Pair:
    id: str
    base: str
    changed: str
    spec: Path
    change: str
    expect: str


@dataclass(frozen=True)
class Recording:
    """One recording of the manifest and the unprofiled truth of its program."""

    program: str
    mode: str
    path: Path  # .json.gz
    unprofiled_us: float  # the program's unprofiled median span, from the process that timed the truth
    spread_us: tuple[float, float]  # min, max of those samples


def sign(x: float) -> int:
    return 0 if abs(x) < NO_CHANGE else (1 if x > 0 else -1)


def profile_for(gpu: str) -> tuple[str, Profile]:
    """The bundled profile alias of the GPU a manifest names (its gpu-defaults entry)."""
    for alias, default in gpu_defaults().items():
        if default.gpu_name == gpu or default.gpu_name in gpu or alias.upper() in gpu.upper():
            return alias, load_profile(alias)
    raise InputError(gpu, "", f"no bundled profile for this GPU; known: {', '.join(gpu_defaults())}")


# --------------------------------------------------------------------------- reading a manifest


def corpus_recordings(corpus: Path) -> tuple[dict, list[Recording]]:
    """The environment and the recordings of the device run whose ``manifest.json`` is in ``corpus``."""
    path = corpus / "manifest.json"
    try:
        manifest = json.loads(path.read_text())
    except FileNotFoundError:
        raise InputError(path, "", "no manifest: run tools/corpus_gpu_run.py on a GPU and copy its output here") from None
    except json.JSONDecodeError as err:
        raise InputError(path, "", f"malformed JSON: {err}") from None
    if manifest.get("dry_run"):
        raise InputError(path, "field 'dry_run'", "a CPU dry run: its recordings hold no GPU ops to tabulate")
    rows = manifest.get("rows", [])
    truth = {(r["program"], r["job"]): r for r in rows}
    out = []
    for i, r in enumerate(rows):
        t = truth.get((r["program"], r["truth_job"]), r)  # the truth is timed in the program's own (first) job
        out.append(
            Recording(
                r["program"],
                r["mode"],
                corpus / r["recording"],
                float(t["unprofiled_median_us"]),
                (float(t["unprofiled_min_us"]), float(t["unprofiled_max_us"])),
            )
        )
    return {**manifest["environment"], "manifest": manifest, "corpus": str(corpus)}, out


def bundled_recordings() -> tuple[dict, list[Recording]]:
    spans = json.loads((TRACES_DIR / "recorded" / "spans.json").read_text())
    out = []
    for program, figures in spans["programs"].items():
        samples = figures["unprofiled_span_us"]
        for mode, suffix in (("sync", "-sync"), ("nosync", "")):
            out.append(
                Recording(
                    program,
                    mode,
                    TRACES_DIR / "recorded" / f"{program}{suffix}.json.gz",
                    float(figures["unprofiled_span_median_us"]),
                    (min(samples), max(samples)),
                )
            )
    env = {k: spans[k] for k in ("gpu", "torch", "cuda", "date", "script") if k in spans}
    return env, out


# --------------------------------------------------------------------------- simulating


class Simulator:
    """Imports recordings (once) and simulates specs on them, on one profile."""

    def __init__(
        self, profile: Profile, reimport: bool = False, host_stalls: str = "typical", graph_gpu: str = "auto"
    ):
        self.profile = profile
        self.reimport = reimport  # import every recording again (once), e.g. after the op-trace format changed
        self.host_stalls = host_stalls  # what a compensated run does with the recording's host stalls
        self.graph_gpu = graph_gpu  # graph_gpu_overhead of a compensated run (the calibration's GPU time a kernel)
        self._prepared: dict[tuple[Path, Path], tuple] = {}
        self._imported: set[Path] = set()
        self.summaries: dict[tuple[Path, Path, str], str] = {}  # what each what-if said it changed

    @staticmethod
    def parquet_of(recording: Path) -> Path:
        """The .parquet beside ``recording`` (a .json.gz): its op trace once imported."""
        return recording.with_name(recording.name.removesuffix(".json.gz") + ".parquet")

    def trace(self, recording: Path) -> Path:
        """The op trace of ``recording`` (a .json.gz): the .parquet beside it, imported if missing."""
        parquet = self.parquet_of(recording)
        if not parquet.exists() or (self.reimport and parquet not in self._imported):
            self._imported.add(parquet)
            from harness.profiler_import import import_to_parquet

            tmp = parquet.with_name(parquet.name + ".tmp")
            import_to_parquet(recording, tmp)
            tmp.replace(parquet)
        return parquet

    def _loaded(self, spec: Path, recording: Path):
        key = (spec, recording)
        if key not in self._prepared:
            loaded = load_spec(spec, {"trace": str(self.trace(recording).resolve())})
            program = loaded.workload.prepare(loaded.prepare_context())
            self._prepared[key] = (loaded, program)
        return self._prepared[key]

    def host_vs_calibration(self, recording: Path) -> tuple[float, bool]:
        """The recording's simple calls over the calibration's (``compensation.host_speed``, of its steps made typical
        when the compensated runs make them so) and whether that flags it as taken on a host much slower than the
        calibration's; (nan, False) where there is no such figure."""
        from workloads.recorded import compensation, typical

        program = self._loaded(AS_RECORDED_SPEC, recording)[1]
        if self.host_stalls == "typical":
            program = typical.with_typical_steps(program)[0]
        try:
            speed = compensation.host_speed(program, compensation.calibration_for(program, self.profile))
        except compensation.CannotCompensate:
            return math.nan, False
        return (speed.ratio, speed.slow) if speed is not None else (math.nan, False)

    def recorded_span_us(self, recording: Path) -> float:
        return self._loaded(AS_RECORDED_SPEC, recording)[1].recorded_span_us

    def span_us(self, spec: Path, recording: Path, label: str, compensate: bool) -> float:
        """The simulated span of the spec's run ``label`` on ``recording``; raises ValueError when it cannot."""
        loaded, program = self._loaded(spec, recording)
        run = next((r for r in loaded.policies if r.label == label), None)
        if run is None:
            raise InputError(spec, "", f"no policy labelled {label!r}")
        params = run.params
        if compensate:
            if "profiler_overhead" not in type(params).model_fields:
                raise LookupError(NO_COMPENSATION)
            update = {"profiler_overhead": "subtract"}
            if "host_stalls" in type(params).model_fields:
                update["host_stalls"] = self.host_stalls
            if "graph_gpu_overhead" in type(params).model_fields:
                update["graph_gpu_overhead"] = self.graph_gpu
            params = params.model_copy(update=update)
        elif "profiler_overhead" in type(params).model_fields:
            params = params.model_copy(update={"profiler_overhead": "keep"})
        outcome = run_policy(SimBackend(self.profile), run.policy.main, program, params)
        changed = getattr(outcome.result, "what_ifs", ())  # what the what-if changed (WhatIfSummary)
        if changed:
            self.summaries[(spec, recording, label)] = "; ".join(s.text() for s in changed)
        return float(outcome.ops["end_us"].max())


def _attempt(fn, *args) -> tuple[float, str]:
    try:
        return fn(*args), ""
    except LookupError as err:
        return math.nan, str(err.args[0])
    except (ValueError, InputError) as err:  # a what-if that does not apply names what it looked for
        return math.nan, f"n/a: {type(err).__name__}: {err}"


# --------------------------------------------------------------------------- the tables


def programs_table(sim: Simulator, recordings: list[Recording]) -> pd.DataFrame:
    rows = []
    for rec in recordings:
        recorded = sim.recorded_span_us(rec.path)
        predicted, note = _attempt(sim.span_us, AS_RECORDED_SPEC, rec.path, "as_recorded", False)
        unprof, unprof_note = _attempt(sim.span_us, AS_RECORDED_SPEC, rec.path, "as_recorded", True)
        host_ratio, host_slow = sim.host_vs_calibration(rec.path)
        rows.append(
            {
                "program": rec.program,
                "mode": rec.mode,
                "recording": rec.path.name,
                "recorded_span_us": recorded,
                "predicted_recording_us": predicted,
                "error_vs_recording": predicted / recorded - 1,
                "unprofiled_us": rec.unprofiled_us,
                "unprofiled_min_us": rec.spread_us[0],
                "unprofiled_max_us": rec.spread_us[1],
                "recording_vs_unprofiled": recorded / rec.unprofiled_us - 1,
                "predicted_unprofiled_us": unprof,
                "error_vs_unprofiled": unprof / rec.unprofiled_us - 1,
                "host_vs_calibration": host_ratio,  # compensation.host_speed: the recording's simple calls
                "host_slow": host_slow,  # ... above SLOW_HOST_RATIO: a host much slower than the calibration's
                "note": "; ".join(n for n in (note, unprof_note) if n),
            }
        )
    return pd.DataFrame(rows)


def pairs_table(sim: Simulator, recordings: list[Recording], pairs: list[Pair]) -> pd.DataFrame:
    by_key = {(r.program, r.mode): r for r in recordings}
    rows = []
    for pair in pairs:
        for mode in MODE_TEXT:
            base, changed = by_key.get((pair.base, mode)), by_key.get((pair.changed, mode))
            if base is None or changed is None:
                continue
            base_rec, changed_rec = sim.recorded_span_us(base.path), sim.recorded_span_us(changed.path)
            as_rec, _ = _attempt(sim.span_us, pair.spec, base.path, "as_recorded", False)
            what_if, note = _attempt(sim.span_us, pair.spec, base.path, "what_if", False)
            as_rec_u, _ = _attempt(sim.span_us, pair.spec, base.path, "as_recorded", True)
            what_if_u, note_u = _attempt(sim.span_us, pair.spec, base.path, "what_if", True)
            predicted = what_if / as_rec - 1
            real_rec = changed_rec / base_rec - 1
            real_unprof = changed.unprofiled_us / base.unprofiled_us - 1
            predicted_u = what_if_u / as_rec_u - 1
            rows.append(
                {
                    "pair": pair.id,
                    "mode": mode,
                    "base": pair.base,
                    "changed": pair.changed,
                    "what_if": pair.spec.stem,
                    "change": pair.change,
                    "expect": pair.expect,
                    "base_recorded_us": base_rec,
                    "changed_recorded_us": changed_rec,
                    "base_unprofiled_us": base.unprofiled_us,
                    "changed_unprofiled_us": changed.unprofiled_us,
                    "as_recorded_us": as_rec,
                    "what_if_us": what_if,
                    "predicted_change": predicted,
                    "real_change_recorded": real_rec,
                    "real_change_unprofiled": real_unprof,
                    "sign_agrees_recorded": bool(sign(predicted) == sign(real_rec)) if not math.isnan(predicted) else None,
                    "what_if_vs_changed_recording": what_if / changed_rec - 1,
                    "what_if_unprofiled_us": what_if_u,
                    "predicted_change_unprofiled": predicted_u,
                    "sign_agrees_unprofiled": (
                        bool(sign(predicted_u) == sign(real_unprof)) if not math.isnan(predicted_u) else None
                    ),
                    "what_if_vs_changed_unprofiled": what_if_u / changed.unprofiled_us - 1,
                    "what_if_summary": sim.summaries.get((pair.spec, base.path, "what_if"), ""),
                    "note": note or "",
                    "note_unprofiled": note_u or "",
                }
            )
    return pd.DataFrame(rows)


def effects_table(sim: Simulator, corpus: Path, manifest: dict) -> pd.DataFrame:
    """The profiler's after-effects in each process: a program recorded again at the end of its process
    (its span in the trace against its first recording's), and its unprofiled runs after the recordings."""
    rows = []
    for job, again in manifest.get("again", {}).items():
        first = next((r for r in manifest["rows"] if r["job"] == job and r["program"] == again["program"]
                      and r["mode"] == again["mode"]), None)
        recording = corpus / again["recording"]  # the raw .json.gz, or (as committed) only its .parquet beside it
        if first is None or not (recording.exists() or sim.parquet_of(recording).exists()):
            continue
        first_us = sim.recorded_span_us(corpus / first["recording"])
        again_us = sim.recorded_span_us(corpus / again["recording"])
        slower = manifest.get("after_profiler", {}).get(job, {})
        rows.append(
            {
                "job": job,
                "program": again["program"],
                "mode": again["mode"],
                "first_recording_us": first_us,
                "again_recording_us": again_us,
                "again_vs_first": again_us / first_us - 1,
                "unprofiled_after_profiling_median": float(pd.Series(slower).median()) if slower else math.nan,
                "unprofiled_after_profiling_max": float(pd.Series(slower).max()) if slower else math.nan,
            }
        )
    return pd.DataFrame(rows)


# --------------------------------------------------------------------------- output


def _pct(x: float) -> str:
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:+.1%}"


def _us(x: float) -> str:
    return "-" if isinstance(x, float) and math.isnan(x) else f"{x:,.0f}"


def _host(row) -> str:
    ratio = getattr(row, "host_vs_calibration", math.nan)
    if ratio is None or math.isnan(ratio):
        return "-"
    return f"{ratio:.2f}" + (" SLOW" if getattr(row, "host_slow", False) else "")


ISSUE22_FAMILY = ("decode_eager_", "decode_graph_")  # the 12 programs of issue 22's Done-when


def summary(programs: pd.DataFrame, pairs: pd.DataFrame) -> list[str]:
    """The issues' bars: |error| of predicted unprofiled spans (median, worst) per mode; pairs' signs and spans."""
    lines = []
    for mode, part in programs.groupby("mode", sort=False):
        for column, what in (("error_vs_recording", "as_recorded vs recording"),
                             ("error_vs_unprofiled", "predicted unprofiled vs unprofiled")):
            err = part[column].abs().dropna()
            if len(err):
                lines.append(f"- {mode}: {what}: median |error| {err.median():.1%}, worst {err.max():.1%} "
                             f"({len(err)} recordings)")
        in_family = part["program"].str.startswith(ISSUE22_FAMILY)
        family = part[in_family]["error_vs_unprofiled"].abs().dropna()
        if len(family) and len(family) < len(part):
            lines.append(f"- {mode}: predicted unprofiled vs unprofiled, issue 22's decoder family only: median "
                         f"|error| {family.median():.1%}, worst {family.max():.1%} ({len(family)} recordings)")
        slow = part["host_slow"].fillna(False).astype(bool) if "host_slow" in part else in_family & False
        if slow.any():
            names = ", ".join(dict.fromkeys(part.loc[slow, "program"])) + f" ({int(slow.sum())} recordings)"
            kept = part[in_family & ~slow]["error_vs_unprofiled"].abs().dropna()
            lines.append(f"- {mode}: flagged as recorded on a host much slower than the calibration's "
                         f"(simple calls > {SLOW_HOST_RATIO:.1f}x the calibrated): {names}")
            if len(kept):
                lines.append(f"- {mode}: decoder family without the flagged recordings: median |error| "
                             f"{kept.median():.1%}, worst {kept.max():.1%} ({len(kept)} recordings)")
    for mode, part in pairs.groupby("mode", sort=False):
        done = part.dropna(subset=["predicted_change"])
        span = done["what_if_vs_changed_recording"].abs()
        lines.append(
            f"- {mode}: pairs: sign agrees (recorded) in {int(done['sign_agrees_recorded'].sum())} of {len(done)}"
            f" ({len(part) - len(done)} not applicable); what-if within 5% of the changed recording in "
            f"{int((span <= 0.05).sum())} of {len(done)}, worst {span.max():.1%}" if len(done) else
            f"- {mode}: pairs: none applicable"
        )
    return lines


def markdown(provenance: dict, programs: pd.DataFrame, pairs: pd.DataFrame, effects: pd.DataFrame | None = None) -> str:
    lines = ["# Corpus table", ""]
    lines += [f"- {k}: {v}" for k, v in provenance.items()]
    lines += ["", "## Summary", ""] + summary(programs, pairs)
    lines += ["", "## Programs: as_recorded against the recording, compensated against the unprofiled run", ""]
    lines += [
        "| program | mode | recorded µs | predicted (error) | unprofiled µs (min-max) | recording vs unprofiled "
        "| predicted unprofiled (error) | host vs calibration |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in programs.itertuples():
        unprof = (
            f"{_us(r.predicted_unprofiled_us)} ({_pct(r.error_vs_unprofiled)})"
            if not math.isnan(r.predicted_unprofiled_us)
            else "n/a"
        )
        lines.append(
            f"| {r.program} | {r.mode} | {_us(r.recorded_span_us)} | {_us(r.predicted_recording_us)} "
            f"({_pct(r.error_vs_recording)}) | {_us(r.unprofiled_us)} ({_us(r.unprofiled_min_us)}-"
            f"{_us(r.unprofiled_max_us)}) | {_pct(r.recording_vs_unprofiled)} | {unprof} | {_host(r)} |"
        )
    notes = sorted({n for n in programs["note"] if n})
    lines += [""] + [f"Note: {n}" for n in notes]
    lines += ["", "## Pairs: predicted change against the real change", ""]
    lines += [
        "| pair | mode | what-if | predicted change | real change, recorded (sign) | what-if vs changed recording "
        "| real change, unprofiled | predicted unprofiled change (sign) | what-if vs changed unprofiled | note |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for r in pairs.itertuples():
        ok = {True: "ok", False: "WRONG", None: "-"}
        lines.append(
            f"| {r.pair} | {r.mode} | {r.what_if} | {_pct(r.predicted_change)} | {_pct(r.real_change_recorded)} "
            f"({ok[r.sign_agrees_recorded]}) | {_pct(r.what_if_vs_changed_recording)} | "
            f"{_pct(r.real_change_unprofiled)} | {_pct(r.predicted_change_unprofiled)} "
            f"({ok[r.sign_agrees_unprofiled]}) | {_pct(r.what_if_vs_changed_unprofiled)} | "
            f"{r.note or ('' if r.note_unprofiled == NO_COMPENSATION else r.note_unprofiled)} |"
        )
    if (pairs["note_unprofiled"] == NO_COMPENSATION).any():
        lines += ["", f"Unprofiled predictions: {NO_COMPENSATION}."]
    lines += ["", f"Changes within ±{NO_CHANGE:.0%} count as no change (sign 0)."]
    said = pairs[pairs["what_if_summary"] != ""] if "what_if_summary" in pairs else pairs.iloc[:0]
    if len(said):
        lines += ["", "## What each what-if said it changed", ""]
        lines += [f"- {r.pair} ({r.mode}): {'; '.join(r.what_if_summary.splitlines())}" for r in said.itertuples()]
    if effects is not None and len(effects):
        lines += ["", "## The profiler's after-effects, per process", ""]
        lines += ["| job | program recorded again (mode) | first recording µs | again µs (change) "
                  "| unprofiled after profiling, median / worst change |", "|---|---|---:|---:|---:|"]
        for r in effects.itertuples():
            lines.append(f"| {r.job} | {r.program} ({r.mode}) | {_us(r.first_recording_us)} | "
                         f"{_us(r.again_recording_us)} ({_pct(r.again_vs_first)}) | "
                         f"{_pct(r.unprofiled_after_profiling_median)} / {_pct(r.unprofiled_after_profiling_max)} |")
    return "\n".join(lines) + "\n"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True, cwd=CORPUS_DIR
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def _scales(profile: Profile) -> str:
    """The profile's program scales per profiler mode, where calibrated (``; program scale ...``)."""
    scales = [f"{mode} {c.program_scale.median:.2f} ({c.program_scale.source})"
              for mode, c in sorted(profile.figures.profiler.items()) if c.program_scale]  # fmt: skip
    return "; program scale " + ", ".join(scales) if scales else "; no program scale"


def build(
    env: dict,
    recordings: list[Recording],
    pairs: list[Pair],
    modes: tuple[str, ...] | None = None,
    profile: str | None = None,
    reimport: bool = False,
    host_stalls: str = "typical",
    graph_gpu: str = "auto",
) -> tuple[dict, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Provenance, the programs table, the pairs table and the after-effects table (empty without a manifest).

    ``profile`` (an alias, bundled name or .toml path) replaces the GPU's default profile, e.g. one that
    ``harness calibrate --profiler`` wrote with the profiler's overhead on the recording's machine.
    """
    if modes:
        recordings = [r for r in recordings if r.mode in modes]
    alias, chosen = profile_for(env.get("gpu", ""))
    if profile is not None:
        alias, chosen = str(profile), load_profile(profile)
    sim = Simulator(chosen, reimport, host_stalls, graph_gpu)
    profile = chosen
    provenance = {
        "recorded on": f"{env.get('gpu')} (torch {env.get('torch')}, CUDA {env.get('cuda')}, "
        f"driver {env.get('driver', 'not recorded')}), {env.get('date_utc', env.get('date'))}",
        "simulated with": f"profile {alias} ({profile.name}), harness commit {_commit()}",
        "compensated with": f'profiler_overhead = "subtract", host_stalls = "{host_stalls}", '
        f'graph_gpu_overhead = "{graph_gpu}", overhead_scale = "recording_host"'
        + _scales(profile),
        "tabulated": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    }
    manifest = env.get("manifest")
    effects = effects_table(sim, Path(env["corpus"]), manifest) if manifest else pd.DataFrame()
    return provenance, programs_table(sim, recordings), pairs_table(sim, recordings, pairs), effects


def write(out: Path, provenance: dict, programs: pd.DataFrame, pairs: pd.DataFrame, effects: pd.DataFrame) -> str:
    """Write the tables and table.md, each complete or not at all (written aside, then renamed)."""
    out.mkdir(parents=True, exist_ok=True)
    text = markdown(provenance, programs, pairs, effects)
    staged = []
    tables = [("programs.parquet", programs), ("pairs.parquet", pairs)] + ([("effects.parquet", effects)] if len(effects) else [])
    for name, frame in tables:
        tmp = out / f".{name}.tmp"
        frame.attrs = {}
        table = frame.assign(**{f"provenance_{k.replace(' ', '_')}": v for k, v in provenance.items()})
        table.to_parquet(tmp, index=False)
        staged.append((tmp, out / name))
    tmp = out / ".table.md.tmp"
    tmp.write_text(text)
    staged.append((tmp, out / "table.md"))
    for src, dst in staged:
        src.replace(dst)
    return text


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpus", type=Path, default=CORPUS_DIR, help="folder with manifest.json and recordings/")
    ap.add_argument("--bundled", action="store_true", help="tabulate traces/recorded/'s five bundled programs")
    ap.add_argument("--modes", nargs="*", default=None, help="profiler modes to tabulate (default: all)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--profile", default=None, help="hardware profile to simulate with (default: the GPU's)")
    ap.add_argument("--reimport", action="store_true", help="import every recording again (new op-trace format)")
    ap.add_argument("--host-stalls", choices=("keep", "typical"), default="typical",
                    help="what the compensated prediction does with a recording's host stalls (default: typical)")
    ap.add_argument("--graph-gpu", choices=("keep", "subtract", "auto"), default="auto",
                    help="graph_gpu_overhead of the compensated prediction: subtract the calibration's GPU time a "
                    "graph kernel (a calibration with the graph_block shape), keep it, or auto (default): subtract "
                    "only a figure timed with the replay queued behind GPU work (gpu_timing = queued)")  # fmt: skip
    args = ap.parse_args(argv)
    try:
        if args.bundled:
            env, recordings = bundled_recordings()
            pairs = [Pair(i, b, c, CORPUS_DIR / s, ch, e) for i, b, c, s, ch, e in BUNDLED_PAIRS]
            out = args.out or TRACES_DIR / "recorded" / "bundled_table"
        else:
            env, recordings = corpus_recordings(args.corpus)
            cat = load_catalogue(args.corpus / "corpus.toml")
            pairs = [Pair(p.id, p.base, p.changed, args.corpus / p.spec, p.change, p.expect) for p in cat.pairs.values()]
            out = args.out or args.corpus
        modes = tuple(args.modes) if args.modes else None
        provenance, programs, pair_rows, effects = build(
            env, recordings, pairs, modes, args.profile, args.reimport, args.host_stalls, args.graph_gpu
        )
    except (InputError, CatalogueError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    print(write(out, provenance, programs, pair_rows, effects))


if __name__ == "__main__":
    main()
