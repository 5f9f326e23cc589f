"""Step by step, where the native replay of a decode_graph recording spends its time against the simulation and
the recording (CPU; reads what ``tools/graph_diag.py`` wrote).

Each step of decode_graph is: a graph launch (host cost, then its kernels on the GPU), a D2H copy queued behind
it, a stream sync, host work. Per step k, from the launch call's start T0:

* ``to_graph``: T0 to the graph's first GPU work (the launch's host cost and lead-in; the simulation's lead-in
  spacer and the native replay's event before the launch count as the graph's GPU work);
* ``graph``: its first GPU work to its last (the simulation's tail spacer, the native replay's event after it,
  included; the recording: first kernel start to last kernel end);
* ``to_copy``: the graph's end to the copy's start;
* ``copy``: the copy's GPU time;
* ``wake``: the copy's end to the sync's return;
* ``host``: the sync's return to the next step's T0 (nothing for the last step);
* ``step``: T0 to the next step's T0.

Writes ``steps.csv`` (every step of every run) and ``steps_summary.csv`` (per spec, policy and backend: each
segment's median and its sum over the steps, median over runs) under OUT, and prints the native - sim
difference per segment, in µs per run and % of the simulated span.

Usage: ``python tools/graph_diag_report.py OUT``
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
RECORDINGS = {
    "recorded_decode_graph": ROOT / "traces/recorded/decode_graph-sync.parquet",
    "recorded_decode_graph_nosync": ROOT / "traces/recorded/decode_graph.parquet",
}
SEGMENTS = ["to_graph", "graph", "to_copy", "copy", "wake", "host", "step"]


def _segments(t0, g0, g1, c0, c1, s1) -> pd.DataFrame:
    n = min(len(t0), len(g0), len(g1), len(c0), len(c1), len(s1))
    t0, g0, g1, c0, c1, s1 = (np.asarray(a, float)[:n] for a in (t0, g0, g1, c0, c1, s1))
    nxt = np.append(t0[1:], np.nan)
    return pd.DataFrame(
        {
            "k": np.arange(n),
            "to_graph": g0 - t0,
            "graph": g1 - g0,
            "to_copy": c0 - g1,
            "copy": c1 - c0,
            "wake": s1 - c1,
            "host": nxt - s1,
            "step": nxt - t0,
        }
    )


def recording_steps(path: Path) -> pd.DataFrame:
    t = pd.read_parquet(path)
    calls = t[t["kind"].str.startswith("call_")]
    launches = calls[calls["kind"] == "call_graph_launch"].sort_values("start_us")
    kernels = t[(t["kind"] == "kernel") & t["correlation"].isin(launches["correlation"])]
    ends = kernels["start_us"] + kernels["duration_us"]
    g0 = kernels.groupby("correlation")["start_us"].min().reindex(launches["correlation"])
    g1 = ends.groupby(kernels["correlation"]).max().reindex(launches["correlation"])
    copies = t[t["kind"] == "copy_d2h"].sort_values("start_us")
    syncs = calls[calls["kind"] == "call_sync_stream"].sort_values("start_us")
    return _segments(
        launches["start_us"],
        g0,
        g1,
        copies["start_us"],
        copies["start_us"] + copies["duration_us"],
        syncs["start_us"] + syncs["duration_us"],
    )


def run_steps(ops: pd.DataFrame, backend: str) -> pd.DataFrame:
    """One run's rows (sim: a kernel row per graph kernel and spacer, sharing their launch's issue; native: one
    kernel row per graph launch, its events' times)."""
    kernels = ops[ops["kind"] == "kernel"]
    per_launch = kernels.groupby("issue_us").agg(g0=("start_us", "min"), g1=("end_us", "max")).sort_index()
    copies = ops[ops["kind"] == "copy_d2h"].sort_values("issue_us")
    syncs = ops[(ops["kind"] == "host_sync") & ops["name"].str.startswith("sync:")].sort_values("issue_us")
    return _segments(
        per_launch.index, per_launch["g0"], per_launch["g1"], copies["start_us"], copies["end_us"], syncs["end_us"]
    )


def stamped_steps(out: Path) -> list[pd.DataFrame]:
    """The stamped native replay's steps (graph_diag's ``stamped_replay``): the graph's first and last kernel from
    their own stamps, the copy from its events, the sync's return; one frame per program and repetition."""
    steps_file, kernels_file = out / "stamped_steps.parquet", out / "stamped_kernels.parquet"
    if not (steps_file.exists() and kernels_file.exists()):
        return []
    steps, kernels = pd.read_parquet(steps_file), pd.read_parquet(kernels_file)
    frames = []
    for (program, rep), rows in steps[steps["thread"] == 0].groupby(["program", "rep"]):
        rows = rows.sort_values("step")
        graphs = rows[rows["op"] == 2]
        k = kernels[(kernels["program"] == program) & (kernels["rep"] == rep)]
        per_launch = k.groupby("step").agg(g0=("start_us", "min"), g1=("end_us", "max")).reindex(graphs["step"])
        copies, syncs = rows[rows["op"] == 3], rows[rows["op"] == 7]
        frame = _segments(
            graphs["begin_ns"], per_launch["g0"], per_launch["g1"], copies["gpu_start_ns"], copies["gpu_end_ns"],
            syncs["ret_ns"],
        )  # fmt: skip
        n = len(frame)
        frame["own_lead_in"] = per_launch["g0"].to_numpy()[:n] - graphs["ret_ns"].to_numpy()[:n]
        frame["launch_call"] = graphs["ret_ns"].to_numpy()[:n] - graphs["api_ns"].to_numpy()[:n]
        frame["launch_late"] = graphs["ret_ns"].to_numpy()[:n] - (graphs["begin_ns"] + graphs["call_ns"] / 1e3).to_numpy()[:n]
        spec = "recorded_decode_graph" if rows["copy_us"].iloc[0] < 157.5 else "recorded_decode_graph_nosync"
        policy = "as_recorded" if rows["graph_kernel_us"].iloc[0] < 5000 else "as_recorded-min3us"
        frames.append(frame.assign(spec=spec, policy=policy, backend="native-stamped", run=f"p{program}r{rep}"))
    return frames


def main() -> None:
    out = Path(sys.argv[1])
    frames = []
    for spec, path in RECORDINGS.items():
        if path.exists():
            frames.append(recording_steps(path).assign(spec=spec, policy="as_recorded", backend="recording", run=""))
        for backend in ("sim", "native"):
            f = out / "ops" / f"{spec}-{backend}.parquet"
            if not f.exists():
                continue
            ops = pd.read_parquet(f)
            for (policy, run), rows in ops.groupby(["policy_label", "run_id"]):
                frames.append(run_steps(rows, backend).assign(spec=spec, policy=policy, backend=backend, run=run))
    frames += stamped_steps(out)
    steps = pd.concat(frames, ignore_index=True)
    steps.to_csv(out / "steps.csv", index=False)
    keys = ["spec", "policy", "backend"]
    per_run = steps.groupby(keys + ["run"])[SEGMENTS].sum(min_count=1)
    sums = per_run.groupby(keys).median()
    medians = steps.groupby(keys)[SEGMENTS].median()
    summary = pd.concat({"sum": sums, "median": medians}, axis=1)
    summary.columns = [f"{seg}_{stat}_us" for stat, seg in summary.columns]
    summary.to_csv(out / "steps_summary.csv")
    pd.set_option("display.width", 250)
    print("per step, median (µs):")
    print(medians.round(2).to_string())
    print("\nsum over the steps, median over runs (µs):")
    print(sums.round(1).to_string())
    if "own_lead_in" in steps:
        extra = steps[steps["backend"] == "native-stamped"].groupby(["spec", "policy"])
        print("\nstamped native replay, per step, median (µs): the launch's own lead-in (return to first kernel),")
        print("the launch call (api to return), the return less the sim's (begin + recorded call cost):")
        print(extra[["own_lead_in", "launch_call", "launch_late"]].median().round(2).to_string())
    print("\nnative - sim, sum over the steps (µs per run; % of the simulated step sum):")
    for (spec, policy), block in sums.groupby(level=[0, 1]):
        block = block.droplevel([0, 1])
        for native in ("native", "native-stamped"):
            if {native, "sim"} <= set(block.index):
                diff = block.loc[native] - block.loc["sim"]
                pct = 100 * diff / block.loc["sim", "step"]
                cells = ", ".join(f"{s} {diff[s]:+.1f} ({pct[s]:+.2f}%)" for s in SEGMENTS)
                print(f"{spec} {policy} {native}: {cells}")


if __name__ == "__main__":
    main()
