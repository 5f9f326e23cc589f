"""Does a profiler calibration carry to another host? Refit every calibration's raw rounds with each estimator and
tabulate issue 22's decoder family with each (issue 22; docs/recorded-fidelity.md).

For each ``NAME=RAW.json`` (a ``harness calibrate --profiler --raw`` file) and each estimator of
:data:`harness.profiler_fit.ESTIMATORS`, the rounds are refitted (``--from-raw``'s arithmetic) into a copy of the
H100 profile, written under ``OUT/profiles/``, and each corpus's decoder-family recordings (``decode_eager_*``,
``decode_graph_*``) are compensated with it (``tools/corpus_table.py``'s programs table: ``as_recorded``,
``profiler_overhead = "subtract"``, ``overhead_scale = "recording_host"``). A calibration whose graph replays were not
timed queued (A-E) takes the H100 profile's queued graph-kernel GPU figure (G's), as the committed profile does
with A's host figures, so that the tables compare the host-side fits alone. Writes ``OUT/programs.parquet`` (one
row per calibration, estimator, corpus and recording), ``OUT/transfer.parquet`` (median / worst |error| per
calibration, estimator, corpus and mode), ``OUT/fits.parquet`` (the fitted per-event figures, CPU+CUDA mode) and
``OUT/transfer.md``; prints the markdown.

Usage (CPU, a few minutes; the default calibrations are the committed H100 ones)::

    python tools/calibration_transfer.py --out measurements/<date>_cpu_calibration-transfer
    python tools/calibration_transfer.py --calibration A=path/a_raw.json --corpus traces/recorded/corpus --out DIR
"""

from __future__ import annotations

import argparse
import json
import sys
import tomllib
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's harness, not an installed one
from corpus_table import ISSUE22_FAMILY, Simulator, corpus_recordings, programs_table  # noqa: E402

from harness.errors import InputError  # noqa: E402
from harness.profile import HardwareProfile, Profile, load_profile  # noqa: E402
from harness.profiler_fit import ESTIMATORS  # noqa: E402
from replay.calibrate import write_profile  # noqa: E402
from replay.profiler_calibration import fit_rounds, profile_with_calibration, rounds_by_mode  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
M = ROOT / "measurements"
CALIBRATIONS = {  # the H100 calibrations whose raw rounds are committed (F, an H200, is left out)
    "A": M / "2026-12-07_h100_corpus/profiler_calibration_a_raw.json",
    "B": M / "2026-12-07_h100_corpus/profiler_calibration_b_raw.json",
    "C": M / "2026-12-07_h100_profiler-calibrations-cd/profiler_calibration_c_raw.json",
    "D": M / "2026-12-07_h100_profiler-calibrations-cd/profiler_calibration_d_raw.json",
    "E": M / "2026-12-07_h100_profiler-calibration-e/profiler_calibration_e_raw.json",
    "G": M / "2026-12-07_h100_profiler-calibration-g/profiler_calibration_g_raw.json",
    "H": M / "2026-12-07_h100_corpus-2/calib_h/profiler_calibration_h_raw.json",
    "I": M / "2026-12-08_h100_profiler-calibrations-ij/profiler_calibration_i_raw.json",
    "J": M / "2026-12-08_h100_profiler-calibrations-ij/profiler_calibration_j_raw.json",
}
CORPORA = {"1": ROOT / "traces/recorded/corpus", "2": M / "2026-12-07_h100_corpus-2/corpus"}
SAME_RUN = {"1": "A", "2": "H"}  # the calibration taken in the corpus's own device run (same host)
BASE_PROFILE = "h100-sxm-pcie5-measured"
MODES = ("nosync", "sync", "cudaonly")


def refit(name: str, raw: Path, estimator: str, base: Profile, out: Path) -> tuple[Path, dict]:
    """The profile of ``base`` with ``raw``'s rounds fitted by ``estimator`` (written to ``out``), and the result."""
    try:
        recorded = json.loads(raw.read_text())
    except OSError as err:
        raise InputError(raw, "", f"cannot read: {err.strerror or err}") from None
    except json.JSONDecodeError as err:
        raise InputError(raw, "", f"not JSON: line {err.lineno}: {err.msg}") from None
    result = fit_rounds(rounds_by_mode(recorded, str(raw)), [], [], log=lambda _line: None, estimator=estimator)
    for mode, cal in result["calibrations"].items():  # the base's queued graph-kernel GPU figure where none here
        held = base.figures.profiler.get(mode)
        if cal.gpu_timing != "queued" and held is not None and held.gpu_timing == "queued":
            update = {"gpu_overhead": held.gpu_overhead, "gpu_timing": "queued"}
            result["calibrations"][mode] = cal.model_copy(update=update)
    updated = profile_with_calibration(tomllib.loads(base.path.read_text()), result, base.host.thread_wake_us)
    updated["name"] = f"h100-profiler-{name.lower()}-{estimator}"
    HardwareProfile.model_validate(updated)
    path = out / f"{name}_{estimator}.toml"
    write_profile(updated, path, f"# {BASE_PROFILE} with calibration {name} refitted by estimator {estimator}.\n")
    return path, result


def family_rows(profile_path: Path, corpus: Path) -> pd.DataFrame:
    """The decoder family's programs table on ``corpus`` with the profile at ``profile_path``."""
    _, recordings = corpus_recordings(corpus)
    recordings = [r for r in recordings if r.program.startswith(ISSUE22_FAMILY)]
    return programs_table(Simulator(load_profile(str(profile_path))), recordings)


def summarize(programs: pd.DataFrame) -> pd.DataFrame:
    """Median and worst |error| vs the unprofiled run per calibration, estimator, corpus and mode."""
    err = programs.assign(abs_error=programs["error_vs_unprofiled"].abs())
    grouped = err.groupby(["calibration", "estimator", "corpus", "mode"])["abs_error"]
    return grouped.agg(median="median", worst="max", recordings="count").reset_index()


def eager_level_lines(programs: pd.DataFrame) -> list[str]:
    """Per corpus, default mode (nosync): the eager decoders' mean signed error and their range (min..max), per
    calibration and estimator: the estimator moves the level, the range is the programs'."""
    eager = programs[programs["program"].str.startswith("decode_eager_") & (programs["mode"] == "nosync")]
    if eager.empty:
        return []
    estimators = [e for e in ESTIMATORS if e in set(eager["estimator"])]
    lines = ["### Eager decoders, default mode: mean signed error [min .. max]", ""]
    for corpus in sorted(eager["corpus"].unique()):
        part = eager[eager["corpus"] == corpus]
        lines += [f"Corpus {corpus}:", "", "| calibration | " + " | ".join(estimators) + " |",
                  "|---|" + "---:|" * len(estimators)]  # fmt: skip
        for cal in sorted(part["calibration"].unique()):
            cells = []
            for e in estimators:
                err = part[(part["calibration"] == cal) & (part["estimator"] == e)]["error_vs_unprofiled"]
                cells.append(f"{err.mean():+.1%} [{err.min():+.1%} .. {err.max():+.1%}]" if len(err) else "-")
            lines.append(f"| {cal} | " + " | ".join(cells) + " |")
        lines.append("")
    return lines


def markdown(summary: pd.DataFrame, fits: pd.DataFrame, programs: pd.DataFrame) -> str:
    lines = ["Decoder family (issue 22), predicted unprofiled span against the real one: median / worst |error|.", ""]
    for corpus in sorted(summary["corpus"].unique()):
        part = summary[summary["corpus"] == corpus]
        modes = [m for m in MODES if m in set(part["mode"])]
        estimators = [e for e in ESTIMATORS if e in set(part["estimator"])]
        lines += [f"### Corpus {corpus} (same-run calibration: {SAME_RUN.get(corpus, '?')})", ""]
        head = " | ".join(f"{m} {e}" for m in modes for e in estimators)
        lines += [f"| calibration | {head} |", "|---|" + "---:|" * (len(modes) * len(estimators))]
        for cal in sorted(part["calibration"].unique()):
            cells = []
            for m in modes:
                for e in estimators:
                    row = part[(part["calibration"] == cal) & (part["mode"] == m) & (part["estimator"] == e)]
                    cells.append(f"{row['median'].iloc[0]:.1%} / {row['worst'].iloc[0]:.1%}" if len(row) else "-")
            lines.append(f"| {cal} | " + " | ".join(cells) + " |")
        lines.append("")
    lines += eager_level_lines(programs)
    lines += ["### Fitted figures, CPU+CUDA mode (µs per event; simple = floor + aten op + runtime call)", "",
              "| calibration | estimator | floor | aten op | runtime call | range | simple | (aten + rt) / simple "
              "| range / simple | gemm launch | gemm / simple |", "|---|---|" + "---:|" * 9]  # fmt: skip
    if "gemm_launch" not in fits:
        fits = fits.assign(gemm_launch=float("nan"))
    for _, f in fits.sort_values(["calibration", "estimator"]).iterrows():
        simple = f["floor_us"] + f["aten_op"] + f["runtime_call"]
        gemm = "-" if pd.isna(f["gemm_launch"]) else f"{f['gemm_launch']:.2f} | {f['gemm_launch'] / simple:.2f}"
        lines.append(f"| {f['calibration']} | {f['estimator']} | {f['floor_us']:.2f} | {f['aten_op']:.2f} | "
                     f"{f['runtime_call']:.2f} | {f['range']:.2f} | {simple:.2f} | "
                     f"{(f['aten_op'] + f['runtime_call']) / simple:.2f} | {f['range'] / simple:.2f} | "
                     f"{gemm if gemm != '-' else '- | -'} |")  # fmt: skip
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--calibration", action="append", default=[], metavar="NAME=RAW.json",
                    help="a calibration's raw rounds (default: the committed H100 ones)")  # fmt: skip
    ap.add_argument("--corpus", action="append", default=[], type=Path, help="corpus folder(s) (default: both)")
    ap.add_argument("--estimator", action="append", default=[], choices=ESTIMATORS, help="default: all")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--merge", nargs="+", type=Path, default=None, metavar="DIR",
                    help="measure nothing: combine the tables of earlier --out folders (e.g. one per estimator, "
                    "run side by side) into --out")  # fmt: skip
    args = ap.parse_args(argv)
    if args.merge:
        try:
            programs = pd.concat([pd.read_parquet(d / "programs.parquet") for d in args.merge], ignore_index=True)
            fit_table = pd.concat([pd.read_parquet(d / "fits.parquet") for d in args.merge], ignore_index=True)
        except OSError as err:
            print(f"error: --merge: {err}", file=sys.stderr)
            sys.exit(2)
        write_tables(args.out, programs, fit_table)
        return
    try:
        calibrations = dict(c.split("=", 1) for c in args.calibration) if args.calibration else CALIBRATIONS
    except ValueError:
        print(f"error: --calibration wants NAME=RAW.json, got {args.calibration}", file=sys.stderr)
        sys.exit(2)
    corpora = {str(i + 1): c for i, c in enumerate(args.corpus)} if args.corpus else CORPORA
    estimators = args.estimator or list(ESTIMATORS)
    base = load_profile(BASE_PROFILE)
    (args.out / "profiles").mkdir(parents=True, exist_ok=True)
    frames, fits = [], []
    try:
        for name, raw in calibrations.items():
            for estimator in estimators:
                path, result = refit(name, Path(raw), estimator, base, args.out / "profiles")
                cal = result["calibrations"].get("cpu_cuda")
                if cal is not None:
                    fits.append({"calibration": name, "estimator": estimator,
                                 "floor_us": cal.floor_us.get("call_launch", float("nan")),
                                 **{k: cal.overhead_us(k) for k in ("aten_op", "runtime_call", "range")},
                                 "gemm_launch": cal.overhead_us("gemm_launch") if "gemm_launch" in cal.overhead
                                 else float("nan")})  # fmt: skip
                for corpus_id, corpus in corpora.items():
                    rows = family_rows(path, Path(corpus))
                    frames.append(rows.assign(calibration=name, estimator=estimator, corpus=corpus_id))
                    print(f"{name} {estimator} corpus {corpus_id}: {len(rows)} recordings", file=sys.stderr)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(2)
    write_tables(args.out, pd.concat(frames, ignore_index=True), pd.DataFrame(fits))


def write_tables(out: Path, programs: pd.DataFrame, fit_table: pd.DataFrame) -> None:
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize(programs)
    programs.to_parquet(out / "programs.parquet", index=False)
    summary.to_parquet(out / "transfer.parquet", index=False)
    fit_table.to_parquet(out / "fits.parquet", index=False)
    text = markdown(summary, fit_table, programs)
    (out / "transfer.md").write_text(text)
    print(text)


if __name__ == "__main__":
    main()
