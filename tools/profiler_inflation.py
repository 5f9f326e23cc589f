"""Why a recording is slower than its program: per step, what the profiler recorded and what it cost (issue 22).

For every recording of the corpus manifest (``traces/recorded/corpus/manifest.json``) this reads the
raw torch.profiler trace (``recordings/*.json.gz``; kept only where the device run's output was
copied, see the corpus README) and, per decode step, counts the events by kind:

* aten ops (``cpu_op``), top level and nested (inside another aten op on the same thread);
* runtime/driver calls by kind (kernel launch, memcpy, sync, graph launch, other);
* ``record_function`` ranges, graph launches and the kernels they hold, CUPTI sync-event records;

and sets the step's recorded time (one step's first call to the next step's) against the
program's unprofiled time per step (the manifest's median over interleaved rounds). The
inflation is split into what the calibration's per-event overheads explain (``explained``) and
the rest. Steps are the program's ``record_function("step<N>")`` ranges, or, in a CUDA-only
recording (no CPU annotations), equal runs of the thread's calls.

Two figures per recording, because a single recording holds host stalls that a median over
rounds leaves out: ``span`` (the whole recorded run) and ``typical`` (median step x steps).

Usage: ``python tools/profiler_inflation.py [--profile h100-profiler-a.toml] [--out table.csv]``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness.profile import load_profile  # noqa: E402
from harness.profiler_import import call_kind  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "traces" / "recorded" / "corpus"
MODE_OF = {"sync": "cpu_cuda_sync", "nosync": "cpu_cuda", "cudaonly": "cuda"}
STEP = re.compile(r"^(step\d+|ProfilerStep#\d+)$")


def load(path: Path) -> dict[str, pd.DataFrame]:
    events = json.load(gzip.open(path))["traceEvents"]
    rows = [e for e in events if e.get("ph") == "X"]
    frame = pd.DataFrame(
        {
            "cat": [e.get("cat") for e in rows],
            "name": [str(e.get("name", "")) for e in rows],
            "tid": [str(e.get("tid")) for e in rows],
            "ts": [float(e["ts"]) for e in rows],
            "dur": [float(e.get("dur", 0.0)) for e in rows],
            "corr": [(e.get("args") or {}).get("correlation") for e in rows],
        }
    )
    return {
        "calls": frame[frame["cat"].isin(["cuda_runtime", "cuda_driver"])].sort_values("ts"),
        "ops": frame[frame["cat"] == "cpu_op"].sort_values("ts"),
        "ann": frame[frame["cat"] == "user_annotation"].sort_values("ts"),
        "gpu": frame[frame["cat"].isin(["kernel", "gpu_memcpy", "gpu_memset"])],
        "syncs": frame[frame["cat"] == "cuda_sync"],
    }


def nested_flags(ops: pd.DataFrame) -> np.ndarray:
    """Per aten op (sorted by ts): whether it starts inside an earlier op of its thread."""
    out = np.zeros(len(ops), dtype=bool)
    for _, part in ops.groupby("tid"):
        end = -np.inf
        for i, (ts, dur) in zip(part.index, zip(part["ts"], part["dur"])):
            if ts < end:
                out[ops.index.get_loc(i)] = True
            end = max(end, ts + dur)
    return out


def step_starts(t: dict[str, pd.DataFrame], steps: int) -> np.ndarray:
    """The start of each step: its range's start, else the first call of each equal run of calls."""
    marks = t["ann"][t["ann"]["name"].str.match(STEP)]
    if len(marks) >= steps:
        return marks["ts"].to_numpy()[:steps]
    calls = t["calls"]
    thread = calls["tid"].value_counts().index[0]
    main = calls[calls["tid"] == thread]["ts"].to_numpy()
    per = len(main) // steps
    return main[::per][:steps]


def per_step(t: dict[str, pd.DataFrame], steps: int) -> pd.DataFrame:
    starts = step_starts(t, steps)
    calls = t["calls"]
    end = float((calls["ts"] + calls["dur"]).max())
    bounds = np.append(starts, end)
    kinds = calls["name"].map(call_kind)
    graph_corr = set(calls.loc[kinds == "call_graph_launch", "corr"].dropna())
    ops = t["ops"]
    nested = nested_flags(ops) if len(ops) else np.zeros(0, dtype=bool)
    ranges = t["ann"][~t["ann"]["name"].str.match(STEP)]
    rows = []
    for k in range(len(starts)):
        lo, hi = bounds[k], bounds[k + 1]

        def inside(ts, lo=lo, hi=hi):
            return (ts >= lo) & (ts < hi)

        c = inside(calls["ts"].to_numpy())
        ck = kinds[c]
        o = inside(ops["ts"].to_numpy())
        g = t["gpu"]
        in_graph = g["corr"].isin(graph_corr) & g["corr"].isin(calls.loc[c, "corr"])
        rows.append(
            {
                "step": k,
                "step_us": hi - lo,
                "aten_top": int((o & ~nested).sum()),
                "aten_nested": int((o & nested).sum()),
                "calls": int(c.sum()),
                "launch": int(ck.isin(["call_launch", "call_memset"]).sum()),
                "memcpy": int((ck == "call_memcpy").sum()),
                "sync": int(ck.isin(["call_sync_stream", "call_sync_device", "call_sync_event"]).sum()),
                "sync_blocked_us": float(calls.loc[c & kinds.isin(
                    ["call_sync_stream", "call_sync_device", "call_sync_event"]).to_numpy(), "dur"].sum()),
                "graph_launch": int((ck == "call_graph_launch").sum()),
                "graph_kernel": int(in_graph.sum()),
                "ranges": int(inside(ranges["ts"].to_numpy()).sum()),
                "sync_events": int(inside(t["syncs"]["ts"].to_numpy()).sum()),
            }
        )
    return pd.DataFrame(rows)


def explained_us(row: pd.Series, cal) -> float:
    return (
        (row["aten_top"] + row["aten_nested"]) * cal.overhead_us("aten_op")
        + row["calls"] * cal.overhead_us("runtime_call")
        + row["ranges"] * cal.overhead_us("range")
        + row["graph_launch"] * cal.overhead_us("graph_launch")
        + row["graph_kernel"] * cal.overhead_us("graph_kernel")
    )


def table(corpus: Path, raw_dir: Path, profile_path: str) -> pd.DataFrame:
    manifest = json.loads((corpus / "manifest.json").read_text())
    profile = load_profile(profile_path)
    out = []
    for row in manifest["rows"]:
        recordings = [row["recording"]]
        again = manifest["again"].get(row["job"])
        if again and again["program"] == row["program"] and again["mode"] == row["mode"]:
            recordings.append(again["recording"])
        for rec in recordings:
            path = raw_dir / Path(rec).name
            if not path.exists():
                continue
            steps = int(row["steps"])
            t = load(path)
            s = per_step(t, steps)
            cal = profile.profiler_calibration(MODE_OF[row["mode"]])
            typical = s.median(numeric_only=True)
            unprof_step = float(row["unprofiled_per_step_median_us"])
            out.append(
                {
                    "recording": Path(rec).name.removesuffix(".json.gz"),
                    "mode": row["mode"],
                    "unprofiled_step_us": unprof_step,
                    "span_step_us": float(s["step_us"].sum()) / steps,
                    "typical_step_us": float(typical["step_us"]),
                    "worst_step_us": float(s["step_us"].max()),
                    **{k: float(typical[k]) for k in s.columns if k not in ("step", "step_us")},
                    "inflation_typical_us": float(typical["step_us"]) - unprof_step,
                    "explained_us": explained_us(typical, cal),
                }
            )
    frame = pd.DataFrame(out)
    frame["unexplained_us"] = frame["inflation_typical_us"] - frame["explained_us"]
    frame["stalls_share"] = frame["span_step_us"] / frame["typical_step_us"] - 1
    return frame


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", type=Path, default=CORPUS)
    ap.add_argument("--raw", type=Path, default=None, help="folder of the raw *.json.gz (default: corpus/recordings)")
    ap.add_argument("--profile", default="measurements/2026-12-07_h100_corpus/profiler_calibration_a.toml")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    frame = table(args.corpus, args.raw or args.corpus / "recordings", args.profile)
    pd.set_option("display.width", 250, "display.max_columns", 40, "display.max_rows", 200)
    cols = ["recording", "unprofiled_step_us", "span_step_us", "typical_step_us", "worst_step_us", "aten_top",
            "aten_nested", "calls", "memcpy", "sync", "graph_kernel", "inflation_typical_us", "explained_us",
            "unexplained_us", "stalls_share"]
    print(frame[cols].round(2).to_string(index=False))
    if args.out:
        frame.to_csv(args.out, index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
