"""Replay recorded specs natively and interpreted, simulate them, and tabulate their spans (needs a CUDA GPU).

For every spec given (default: every bundled ``traces/specs/recorded_*.toml``) and
each of its policies: the median ``makespan_us`` over ``--reps`` repetitions on

* the simulator (``sim``),
* the replay with program commands expanded in Python (``HARNESS_REPLAY_NATIVE=off``),
* the replay with the compiled executor (``HARNESS_REPLAY_NATIVE=on``),

against the recording's span; plus the kernels lifted to the GPU's floor.
Writes ``fidelity.csv`` and ``fidelity.txt`` under ``--out`` and prints the
table; a spec that fails on one backend is reported and the others go on.
Stops starting new specs once ``--budget-s`` is spent.

Targets (issue 23): native within 5% of the recording and 3% of the simulation.

Usage: ``python tools/native_fidelity.py --out DIR [--spec PATH ...] [--reps 1] [--budget-s 300]
[--backends sim interpreted native]``
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import time
import traceback
from pathlib import Path

import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from harness.paths import SPECS_DIR  # noqa: E402
from harness.runner import run_spec  # noqa: E402
from harness.spec import load_spec  # noqa: E402
from sim import SimBackend  # noqa: E402


def _spans(results) -> pd.DataFrame:
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    m = m[m["item"] == -1]
    return m.pivot_table(index="policy_label", columns="metric", values="value", aggfunc="median")


def _backends(context):
    from replay.engine import ReplayBackend

    def replay(spec, rep):
        return ReplayBackend(context, spec.profile, spec.device_memory_bytes, seed=spec.spec.seed + rep)

    def sim(spec, rep):
        return SimBackend(spec.profile, 1, spec.device_memory_bytes, seed=rep)

    return {"sim": (sim, None), "interpreted": (replay, "off"), "native": (replay, "on")}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--spec", type=Path, nargs="*", default=None)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--backends", nargs="*", default=["sim", "interpreted", "native"])
    ap.add_argument("--save-ops", default="", help="write the ops rows of specs whose name holds this (e.g. graph)")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    specs = args.spec or sorted(SPECS_DIR.glob("recorded_*.toml"))
    context = None
    if set(args.backends) - {"sim"}:
        from replay.engine import ReplayContext

        context = ReplayContext(1)
    backends = {k: v for k, v in _backends(context).items() if k in args.backends}
    started = time.perf_counter()
    rows = []
    for path in specs:
        if time.perf_counter() - started > args.budget_s:
            print(f"budget of {args.budget_s:.0f} s spent: {path.name} and later specs not run", flush=True)
            break
        loaded = load_spec(path)
        loaded = dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"repetitions": args.reps}))
        spans: dict[str, pd.DataFrame] = {}
        for name, (factory, mode) in backends.items():
            if mode is not None:
                os.environ["HARNESS_REPLAY_NATIVE"] = mode
            clock = time.perf_counter()
            try:
                results = run_spec(loaded, factory)
                for error in results.failed["error"]:
                    print(f"{path.name} {name}: run failed: {error.splitlines()[0]}", flush=True)
                spans[name] = _spans(results)
                if args.save_ops and args.save_ops in path.stem:  # every run's rows, to see where time went
                    (args.out / "ops").mkdir(exist_ok=True)
                    ops = results.tables["ops"].to_pandas().merge(results.runs[["run_id", "policy_label"]])
                    ops.to_parquet(args.out / "ops" / f"{path.stem}-{name}.parquet")
            except Exception:  # noqa: BLE001 - one backend failing must not stop the others
                print(f"{path.name} {name}: failed\n{traceback.format_exc(limit=6)}", flush=True)
            print(f"{path.name} {name}: {time.perf_counter() - clock:.1f} s", flush=True)
        labels = sorted(set().union(*(s.index for s in spans.values()))) if spans else []
        for label in labels:
            row = {"spec": path.stem, "policy": label}
            for name, frame in spans.items():
                if label in frame.index:
                    row[f"{name}_us"] = frame.loc[label].get("makespan_us")
                    row.setdefault("recorded_us", frame.loc[label].get("recorded_makespan_us"))
                    if name != "sim":
                        row[f"{name}_lifted"] = frame.loc[label].get("replay_kernels_lifted")
            rows.append(row)
    runner = getattr(context, "native", None)
    if runner:  # what the native runs stood on: the floors lifted to and how kernels went out
        cal = runner.calibration
        print(
            f"native: floor {cal.floor_us:.2f} µs on a stream, {cal.in_graph_floor_us:.2f} µs inside a graph; "
            f"stand-in overheads {', '.join(f'{o:.2f}' for o in cal.overhead_us)} µs; "
            f"launches through the {runner.lib.launch_api} API; threads {runner.lib.placement}",
            flush=True,
        )
    table = pd.DataFrame(rows)
    for name in ("sim", "interpreted", "native"):
        if f"{name}_us" in table:
            table[f"{name}_vs_rec"] = table[f"{name}_us"] / table["recorded_us"] - 1.0
    if {"native_us", "sim_us", "recorded_us"} <= set(table.columns):
        table["native_vs_sim"] = table["native_us"] / table["sim_us"] - 1.0
        table["pass"] = (table["native_vs_rec"].abs() <= 0.05) & (table["native_vs_sim"].abs() <= 0.03)
    table.to_csv(args.out / "fidelity.csv", index=False)
    shown = [
        c
        for c in ("spec", "policy", "recorded_us", "sim_vs_rec", "interpreted_vs_rec", "native_vs_rec",
                  "native_vs_sim", "native_lifted", "pass")
        if c in table.columns
    ]  # fmt: skip
    text = table[shown].to_string(index=False, float_format=lambda v: f"{v:+.3f}" if abs(v) < 10 else f"{v:.0f}")
    (args.out / "fidelity.txt").write_text(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
