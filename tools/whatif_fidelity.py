"""The what-if fidelity table: a what-if applied to one recording against the real program that does it.

For each (recording, what-if, real program) it simulates the what-if on the
recording with the recorded kernel durations (the prediction), and compares it
with the real program's recorded span (its profiler recording, made in the same
device call) and its unprofiled span (``traces/recorded/spans.json``). Given the
results folder of a device call (``fidelity/run_benchmark.sh`` over the
``whatif_*`` specs), it adds the replay of the what-if (``min_kernel_us = 3``)
and the simulation of the same policy, sim vs replay.

Usage: ``python3 tools/whatif_fidelity.py [--replay measurements/DATE_h200_whatif/results]
[--out traces/recorded/whatif_fidelity.parquet]``; prints the table as markdown.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's harness, not an installed one

from harness.backend import run_policy
from harness.paths import SPECS_DIR, TRACES_DIR
from harness.results import read_results
from harness.spec import load_spec
from sim import SimBackend

# (what-if spec, recording variant, real program)
CASES = [
    ("whatif_layers_prefetch", "prefetch_copies", "layers_prefetch"),
    ("whatif_decode_async", "async_d2h", "decode_async"),
    ("whatif_decode_graph", "graph_launch", "decode_graph"),
]


def predicted_us(spec_name: str, label: str, sync_events: bool, min_kernel_us: float = 0.0) -> float:
    loaded = load_spec(SPECS_DIR / f"{spec_name}.toml")
    if not sync_events:  # the same program recorded without sync events
        trace = loaded.workload_params.trace.replace("-sync.parquet", ".parquet")
        loaded = load_spec(SPECS_DIR / f"{spec_name}.toml", {"trace": trace})
    run = next(r for r in loaded.policies if r.label == label)
    params = run.params.model_copy(update={"min_kernel_us": min_kernel_us})
    inputs = loaded.workload.prepare(loaded.prepare_context())
    ops = run_policy(SimBackend(loaded.profile), run.policy.main, inputs, params).ops
    return float(ops["end_us"].max())


def recorded_span_us(program: str, sync_events: bool) -> float:
    loaded = load_spec(SPECS_DIR / f"recorded_{program}{'' if sync_events else '_nosync'}.toml")
    return loaded.workload.prepare(loaded.prepare_context()).recorded_span_us


def replayed_us(results: Path, spec_name: str, label: str) -> float:
    res = read_results(results / f"{spec_name}-replay")
    runs = res.runs[(res.runs["policy_label"] == label) & (res.runs["status"] == "ok")]
    m = res.metrics[(res.metrics["metric"] == "makespan_us") & res.metrics["run_id"].isin(runs["run_id"])]
    return float(m["value"].median())


def table(replay: Path | None) -> pd.DataFrame:
    spans = json.loads((TRACES_DIR / "recorded" / "spans.json").read_text())["programs"]
    rows = []
    for spec_name, what_if, program in CASES:
        recording = (
            load_spec(SPECS_DIR / f"{spec_name}.toml").workload_params.trace.split("/")[-1].replace("-sync.parquet", "")
        )
        for sync_events in (True, False):
            row = {
                "recording": recording + ("" if sync_events else " (no sync events)"),
                "what_if": what_if,
                "real_program": program,
                "predicted_us": predicted_us(spec_name, what_if, sync_events),
                "real_recorded_us": recorded_span_us(program, sync_events),
                "real_unprofiled_us": spans[program]["unprofiled_span_median_us"],
            }
            if replay is not None and sync_events:
                row["sim_min3us_us"] = predicted_us(spec_name, what_if, True, 3.0)
                row["replay_min3us_us"] = replayed_us(replay, spec_name, what_if)
            rows.append(row)
    frame = pd.DataFrame(rows)
    frame["error_vs_recorded"] = frame["predicted_us"] / frame["real_recorded_us"] - 1
    frame["error_vs_unprofiled"] = frame["predicted_us"] / frame["real_unprofiled_us"] - 1
    if "replay_min3us_us" in frame:
        frame["sim_vs_replay"] = frame["sim_min3us_us"] / frame["replay_min3us_us"] - 1
    return frame


def markdown(frame: pd.DataFrame) -> str:
    lines = [
        "| recording | what-if | real program | predicted µs | real, recorded µs (error) | real, unprofiled µs (error) "
        "| sim / replay µs, min 3 µs kernels (error) |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for r in frame.itertuples():
        replay = (
            "-"
            if pd.isna(getattr(r, "replay_min3us_us", float("nan")))
            else (f"{r.sim_min3us_us:,.0f} / {r.replay_min3us_us:,.0f} ({r.sim_vs_replay:+.1%})")
        )
        lines.append(
            f"| {r.recording} | {r.what_if} | {r.real_program} | {r.predicted_us:,.0f} | "
            f"{r.real_recorded_us:,.0f} ({r.error_vs_recorded:+.1%}) | "
            f"{r.real_unprofiled_us:,.0f} ({r.error_vs_unprofiled:+.1%}) | "
            f"{replay} |"
        )
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--replay", type=Path, default=None, help="results folder of the device call (sim/replay of whatif_*)"
    )
    ap.add_argument("--out", type=Path, default=None, help="Parquet file to write")
    args = ap.parse_args()
    frame = table(args.replay)
    if args.out:
        frame.to_parquet(args.out, index=False)
    print(markdown(frame))


if __name__ == "__main__":
    main()
