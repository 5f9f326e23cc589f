"""Does the profiler's cost of nested aten ops explain the ``isolated_share`` level bias? (issue 22, analysis)

Three sets of figures, printed as markdown:

1. **The calibrations' ``composite`` premium.** Per H100 calibration (committed raw rounds, the
   ``tools/calibration_transfer.py`` list) and mode: per round, the ``composite`` shape's added time less what the
   ``isolated`` fit (:func:`harness.profiler_fit.fit_overheads_isolated`) predicts from its counted events, per
   matmul (32 a step, each one ``aten::matmul`` with one nested ``aten::mm``); median over rounds. Also as a share
   of the round's own profiled simple call (``launch`` step / 64).
2. **The decoders' nested aten ops.** Per eager decoder recording (raw ``.json.gz``; their per-step counts are
   the median decode step): aten ops top level and nested (starting inside another aten op of the thread), and
   of the nested ones the GEMMs a composite op calls (``aten::mm`` / ``aten::bmm`` inside ``aten::matmul``,
   ``aten::addmm`` inside ``aten::linear``), the only nested ops of the ``composite`` shape's kind.
3. **Both against the bias.** Per calibration (``isolated_share`` rows of a ``calibration_transfer`` programs
   table) and eager recording, the signed error of the predicted unprofiled span, and what it would be if the
   composite premium were taken out as well (a) of every nested op, (b) of every composite GEMM only; each
   premium scaled by the recording's ``host_vs_calibration`` as ``overhead_scale = "recording_host"`` scales the
   eager figures. An estimate from the tables, not a compensation run: the floor clamp is ignored.

Usage::

    python tools/nested_op_premise.py --raw 1=traces/recorded/corpus/recordings \\
        --raw 2=<corpus 2's raw recordings> \\
        --programs measurements/2026-12-08_cpu_calibration-transfer/programs.parquet [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calibration_transfer import CALIBRATIONS, CORPORA  # noqa: E402
from profiler_inflation import load, step_starts  # noqa: E402

from harness.profiler_fit import LAUNCH_SHAPE_CALLS, ShapeTiming, fit_overheads_isolated  # noqa: E402

COMPOSITE_MATMULS = 32  # matmuls in one step of the calibration's composite shape
GEMM_IN_COMPOSITE = {("aten::matmul", "aten::mm"), ("aten::matmul", "aten::bmm"), ("aten::linear", "aten::addmm")}
MODE_OF = {"nosync": "cpu_cuda", "sync": "cpu_cuda_sync", "cudaonly": "cuda"}
GEMM_LAUNCH = "cuLaunchKernelEx"  # cuBLAS's launch (driver API): one per GEMM in these programs and in composite
FAST_HOSTS = ("A", "D", "G", "H", "I", "J")  # the six fast-host H100 calibrations (B: 3 rounds; C, E: slow hosts)


def composite_premium(raw_path: Path) -> pd.DataFrame:
    """Per mode: the composite shape's residual over the isolated fit, µs per matmul and share of the simple call."""
    rounds = json.loads(raw_path.read_text())["rounds"]
    out = []
    for mode in sorted({r["mode"] for r in rounds}):
        per_matmul, share = [], []
        for r in (r for r in rounds if r["mode"] == mode):
            timings = [ShapeTiming(s["shape"], s["unprofiled_us"], s["profiled_us"], s["counts"]) for s in r["shapes"]]
            if not any(t.shape == "composite" for t in timings):
                continue
            residual = fit_overheads_isolated(timings).residual_us["composite"] / COMPOSITE_MATMULS
            simple = next(t for t in timings if t.shape == "launch").profiled_us / LAUNCH_SHAPE_CALLS
            per_matmul.append(residual)
            share.append(residual / simple)
        if per_matmul:
            out.append({"mode": mode, "rounds": len(per_matmul), "premium_us": statistics.median(per_matmul),
                        "premium_share": statistics.median(share)})  # fmt: skip
    return pd.DataFrame(out)


def nested_counts(path: Path, steps: int) -> dict[str, float]:
    """Median decode step's aten ops: top level, nested, and nested composite GEMMs (by parent -> child name)."""
    t = load(path)
    ops = t["ops"].reset_index(drop=True)
    depth, parent = np.zeros(len(ops), dtype=int), np.full(len(ops), "", dtype=object)
    for _, part in ops.groupby("tid"):
        stack: list[tuple[float, str]] = []
        for i, ts, dur, name in zip(part.index, part["ts"], part["dur"], part["name"]):
            while stack and stack[-1][0] <= ts:
                stack.pop()
            depth[i], parent[i] = len(stack), stack[-1][1] if stack else ""
            stack.append((ts + dur, name))
    gemm = np.array([(p, n) in GEMM_IN_COMPOSITE for p, n in zip(parent, ops["name"])])
    bounds = np.append(step_starts(t, steps), np.inf)

    def per_step(ts: pd.Series, flags: dict[str, np.ndarray]) -> pd.DataFrame:
        step = np.searchsorted(bounds, ts.to_numpy(), side="right") - 1
        frame = pd.DataFrame({"step": step, **flags})
        frame = frame[(frame["step"] >= 0) & (frame["step"] < steps)]
        return frame.groupby("step").sum().reindex(range(steps), fill_value=0)

    per = per_step(ops["ts"], {"top": depth == 0, "nested": depth > 0, "gemm": gemm})
    calls = t["calls"]
    per["gemm_launch"] = per_step(calls["ts"], {"gemm_launch": (calls["name"] == GEMM_LAUNCH).to_numpy()})
    return {f"{k}_per_step": float(per[k].median()) for k in ("top", "nested", "gemm", "gemm_launch")}


def decoder_counts(corpus: Path, raw_dir: Path) -> pd.DataFrame:
    manifest = json.loads((corpus / "manifest.json").read_text())
    rows = []
    for row in manifest["rows"]:
        name = Path(row["recording"]).name
        if not row["program"].startswith("decode_eager") or not (raw_dir / name).exists():
            continue
        rows.append({"recording": name, "program": row["program"], "mode": row["mode"], "steps": int(row["steps"]),
                     **nested_counts(raw_dir / name, int(row["steps"]))})  # fmt: skip
    return pd.DataFrame(rows)


def markdown(frame: pd.DataFrame, index: bool = True) -> str:
    """A frame as a markdown table (without pandas' optional tabulate dependency)."""
    frame = frame.reset_index() if index else frame
    cells = [[str(c) for c in frame.columns]] + [[str(v) for v in row] for row in frame.itertuples(index=False)]
    lines = ["| " + " | ".join(r) + " |" for r in cells]
    return "\n".join([lines[0], "|" + "---|" * len(frame.columns), *lines[1:]])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--raw", action="append", required=True, help="CORPUS=folder of its raw .json.gz recordings")
    ap.add_argument("--programs", type=Path, required=True, help="a calibration_transfer programs.parquet")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)

    premium = pd.concat(
        [composite_premium(p).assign(calibration=c) for c, p in CALIBRATIONS.items()], ignore_index=True
    )
    counts = pd.concat(
        [decoder_counts(CORPORA[c], Path(d)).assign(corpus=c) for c, d in (s.split("=", 1) for s in args.raw)],
        ignore_index=True,
    )
    programs = pd.read_parquet(args.programs)
    programs = programs[(programs["estimator"] == "isolated_share") & programs["program"].str.startswith("decode_eager")]
    both = programs.merge(counts, on=["corpus", "recording", "program", "mode"])
    both["cal_mode"] = both["mode"].map(MODE_OF)
    both = both.merge(premium.rename(columns={"mode": "cal_mode"}), on=["calibration", "cal_mode"])
    scale = both["host_vs_calibration"].fillna(1.0) * both["premium_us"] * both["steps"] / both["unprofiled_us"]
    both["error_if_nested"] = both["error_vs_unprofiled"] - both["nested_per_step"] * scale
    both["error_if_gemm"] = both["error_vs_unprofiled"] - both["gemm_launch_per_step"] * scale

    pd.set_option("display.width", 200)
    print("## composite premium over the isolated fit (µs per matmul; share of the round's simple call)\n")
    wide = premium.pivot(index="calibration", columns="mode", values=["premium_us", "premium_share"]).round(3)
    wide.columns = [f"{v} {m}" for v, m in wide.columns]
    print(markdown(wide))
    print("\n## eager decoders: aten ops per median step\n")
    counts["nested_share"] = counts["nested_per_step"] / (counts["nested_per_step"] + counts["top_per_step"])
    print(markdown(counts.round(3), index=False))
    print("\n## isolated_share signed error now / if composite's premium came off every nested op / every GEMM\n")
    print("mean [min .. max] over the corpus's eager decoder recordings of that mode\n")
    table = both.groupby(["corpus", "mode", "calibration"]).agg(
        now=("error_vs_unprofiled", "mean"), now_min=("error_vs_unprofiled", "min"),
        now_max=("error_vs_unprofiled", "max"), if_nested=("error_if_nested", "mean"),
        if_gemm=("error_if_gemm", "mean"), gemm_min=("error_if_gemm", "min"), gemm_max=("error_if_gemm", "max"),
        worst_now=("error_vs_unprofiled", lambda e: e.abs().max()), worst_gemm=("error_if_gemm", lambda e: e.abs().max()),
    ).mul(100).round(1)  # fmt: skip
    print(markdown(table))
    fast = both[both["calibration"].isin(FAST_HOSTS)]
    print("\n## spread of the level across the six fast-host calibrations (points between mean signed errors)\n")
    for (corpus, mode), part in fast.groupby(["corpus", "mode"]):
        means = part.groupby("calibration")[["error_vs_unprofiled", "error_if_gemm", "error_if_nested"]].mean() * 100
        print(f"- corpus {corpus} {mode}: now {means.iloc[:, 0].min():+.1f} .. {means.iloc[:, 0].max():+.1f}; "
              f"GEMM premium off {means.iloc[:, 1].min():+.1f} .. {means.iloc[:, 1].max():+.1f}; "
              f"nested premium off {means.iloc[:, 2].min():+.1f} .. {means.iloc[:, 2].max():+.1f}")  # fmt: skip
    per_program = fast.groupby(["corpus", "mode", "recording"]).agg(
        error=("error_vs_unprofiled", "mean"), nested_per_step=("nested_per_step", "first"),
        gemm_per_step=("gemm_per_step", "first"), steps=("steps", "first"), unprofiled_us=("unprofiled_us", "first"))
    per_program["nested_per_ms"] = per_program["nested_per_step"] * per_program["steps"] / per_program["unprofiled_us"] * 1e3
    per_program["gemm_per_ms"] = per_program["gemm_per_step"] * per_program["steps"] / per_program["unprofiled_us"] * 1e3
    print("\n## per recording: mean signed error over the fast-host calibrations against nested ops per unprofiled ms\n")
    print(markdown(per_program.assign(error=per_program["error"] * 100).round(2)))
    for (corpus, mode), part in per_program.groupby(level=["corpus", "mode"]):
        if len(part) >= 3 and part["nested_per_ms"].std() > 0:  # CUDA-only recordings record no aten ops
            slope, _ = np.polyfit(part["nested_per_ms"], part["error"] * 100, 1)
            print(f"- corpus {corpus} {mode}: {len(part)} recordings, nested per ms "
                  f"{part['nested_per_ms'].min():.1f} .. {part['nested_per_ms'].max():.1f}; least-squares slope "
                  f"{slope:+.2f} points per nested op/ms, i.e. {slope / 0.1:+.2f} µs a nested op")
    print("\n## issue 22's bar, default mode (nosync): the decoder family's median / worst |error|, isolated_share now"
          " and with the GEMM premium taken off the eager recordings (graph decoders unchanged)\n")  # fmt: skip
    family = pd.read_parquet(args.programs)
    family = family[(family["estimator"] == "isolated_share") & (family["mode"] == "nosync")]
    family = family.merge(both[["calibration", "corpus", "recording", "mode", "error_if_gemm"]], how="left",
                          on=["calibration", "corpus", "recording", "mode"])  # fmt: skip
    family["error_gemm_off"] = family["error_if_gemm"].fillna(family["error_vs_unprofiled"])
    # the same with the premium carried as isolated_share carries a kind: its share of the round's simple call,
    # put back against the calibration's simple call (floor + aten op + runtime call, CPU+CUDA fits)
    fits = pd.read_parquet(args.programs.parent / "fits.parquet")
    fits = fits[fits["estimator"] == "isolated_share"].set_index("calibration")
    simple = fits["floor_us"] + fits["aten_op"] + fits["runtime_call"]
    share = premium[premium["mode"] == "cpu_cuda"].set_index("calibration")["premium_share"]
    gemm = both[both["mode"] == "nosync"]
    premium_share_us = gemm["calibration"].map(share * simple)
    gemm = gemm.assign(error_if_gemm_share=gemm["error_vs_unprofiled"] - gemm["gemm_launch_per_step"] * premium_share_us
                       * gemm["host_vs_calibration"].fillna(1.0) * gemm["steps"] / gemm["unprofiled_us"])  # fmt: skip
    family = family.merge(gemm[["calibration", "corpus", "recording", "error_if_gemm_share"]], how="left",
                          on=["calibration", "corpus", "recording"])  # fmt: skip
    family["error_gemm_share_off"] = family["error_if_gemm_share"].fillna(family["error_vs_unprofiled"])
    bar = family.groupby(["corpus", "calibration"]).agg(
        n=("error_vs_unprofiled", "size"),
        median_now=("error_vs_unprofiled", lambda e: e.abs().median() * 100),
        worst_now=("error_vs_unprofiled", lambda e: e.abs().max() * 100),
        median_gemm_off=("error_gemm_off", lambda e: e.abs().median() * 100),
        worst_gemm_off=("error_gemm_off", lambda e: e.abs().max() * 100),
        median_gemm_share_off=("error_gemm_share_off", lambda e: e.abs().median() * 100),
        worst_gemm_share_off=("error_gemm_share_off", lambda e: e.abs().max() * 100),
        eager_mean_gemm_share_off=("error_if_gemm_share", lambda e: e.mean() * 100),
    ).round(1)  # fmt: skip
    print(markdown(bar))
    print("\n(premium share of the simple call x the calibration's simple call, µs: "
          + ", ".join(f"{c} {v:.2f}" for c, v in (share * simple).round(2).items()) + ")")
    if args.out:
        args.out.mkdir(parents=True, exist_ok=True)
        both.to_parquet(args.out / "nested_premise.parquet", index=False)
        premium.to_csv(args.out / "composite_premium.csv", index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
