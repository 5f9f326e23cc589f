"""A recorded CUDA-graph loop step by step: the recording's timeline against ``as_recorded``'s simulated one (issue 24).

For each step (the i-th graph launch, the i-th host-link copy after it, the i-th host sync), in the recording
(``harness trace import``'s ``.parquet``, its own timestamps) and in the simulator's ops table of
``as_recorded`` on it (``profiler_overhead = "keep"``: the recording as recorded): the launch call's start
(against the program's start), when the graph reached the GPU (its first GPU op against the launch call's
start; in the simulation its first op after the launch's latency, the recording's lead-in after an idle launch:
the ``graph lead-in`` spacer where there is one, which holds what queued graphs kept beyond the tail and the gaps
between its kernels beyond the profile's), the graph's GPU span (the simulation's holds its lead-in and tail spacers),
the copy's start after the graph's end and its duration, the sync's return after the copy's end (the wake), the
next launch after that return (the host's step head), and the step period (launch to launch). Medians over
steps 2 on (the first launch of a graph also uploads it), and each step with ``--per-step``. Made to find why
``decode_graph_gpu_backup`` came out +7.8% long (traces/recorded/corpus/README.md).

Usage: ``python tools/graph_step_compare.py traces/recorded/corpus/recordings/decode_graph_gpu_backup-sync.parquet
[--profile h100] [--per-step]`` (no GPU).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this tree's harness, not an installed one

from harness.backend import run_policy  # noqa: E402
from harness.profile import load_profile  # noqa: E402
from harness.trace import load_trace  # noqa: E402
from sim import SimBackend  # noqa: E402
from workloads.recorded.policies import AsRecordedParams, as_recorded  # noqa: E402
from workloads.recorded.program import build_program  # noqa: E402

SYNCS = ("call_sync_stream", "call_sync_device", "call_sync_event")
COPIES = ("copy_d2h", "copy_h2d")


def _terms(launch_us, first_us, last_us, copies: pd.DataFrame, sync_end_us: np.ndarray) -> pd.DataFrame:
    """One row per step from the i-th launch call start, graph first/last GPU time, copy and sync return."""
    n = len(launch_us)
    copy_start = np.full(n, np.nan)
    copy_us = np.full(n, np.nan)
    k = min(n, len(copies))
    copy_start[:k] = copies["start_us"].to_numpy()[:k]
    copy_us[:k] = copies["duration_us"].to_numpy()[:k]
    wake = np.full(n, np.nan)
    wake[: min(n, len(sync_end_us))] = sync_end_us[:n]
    frame = pd.DataFrame(
        {
            "launch_at_us": launch_us - launch_us[0],
            "gpu_had_graph_after_call_start_us": first_us - launch_us,
            "graph_span_us": last_us - first_us,
            "copy_after_graph_us": copy_start - last_us,
            "copy_us": copy_us,
            "sync_return_after_copy_us": wake - (copy_start + copy_us),
        }
    )
    frame["next_launch_after_sync_us"] = np.append(launch_us[1:] - wake[:-1], np.nan)
    frame["step_period_us"] = np.append(np.diff(launch_us), np.nan)
    return frame


def recorded_steps(ops: pd.DataFrame) -> pd.DataFrame:
    calls = ops[ops["kind"].str.startswith("call_")].sort_values("start_us", kind="stable")
    launches = calls[calls["kind"] == "call_graph_launch"]
    gpu = ops[ops["device"] >= 0]
    graph = gpu[gpu["correlation"].isin(launches["correlation"])]
    first = graph.groupby("correlation")["start_us"].min().reindex(launches["correlation"]).to_numpy()
    last = (graph["start_us"] + graph["duration_us"]).groupby(graph["correlation"]).max()
    last = last.reindex(launches["correlation"]).to_numpy()
    launch_us = launches["start_us"].to_numpy()
    copies = gpu[gpu["kind"].isin(COPIES)].sort_values("start_us")
    syncs = calls[calls["kind"].isin(SYNCS) & (calls["start_us"] > launch_us[0])]
    return _terms(launch_us, first, last, copies, (syncs["start_us"] + syncs["duration_us"]).to_numpy())


def simulated_steps(ops: pd.DataFrame) -> pd.DataFrame:
    kernels = ops[ops["kind"] == "kernel"]  # a graph's kernels share the launch call's start as their issue time
    graphs = kernels.groupby("issue_us").agg(first=("start_us", "min"), last=("end_us", "max")).sort_index()
    copies = ops[ops["kind"].isin(COPIES)].sort_values("start_us")
    copies = copies.assign(duration_us=copies["end_us"] - copies["start_us"])
    syncs = ops[ops["kind"] == "host_sync"].sort_values("start_us")
    return _terms(graphs.index.to_numpy(), graphs["first"].to_numpy(), graphs["last"].to_numpy(), copies,
                  syncs["end_us"].to_numpy())  # fmt: skip


def compare(path: Path, profile: str) -> tuple[pd.DataFrame, pd.DataFrame, float, float]:
    trace = load_trace(path)
    program = build_program(trace.ops, str(path))
    params = AsRecordedParams(profiler_overhead="keep")
    run = run_policy(SimBackend(load_profile(profile)), as_recorded, program, params)
    return recorded_steps(trace.ops), simulated_steps(run.ops), program.recorded_span_us, float(run.ops["end_us"].max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("recordings", nargs="+", type=Path)
    parser.add_argument("--profile", default="h100")
    parser.add_argument("--per-step", action="store_true")
    args = parser.parse_args(argv)
    for path in args.recordings:
        recorded, simulated, span, predicted = compare(path, args.profile)
        error = predicted / span - 1
        print(f"## {path.name}: as_recorded {predicted:,.0f} µs against {span:,.0f} recorded ({error:+.2%})\n")
        table = pd.DataFrame({"recording": recorded.iloc[1:].median(), "as_recorded": simulated.iloc[1:].median()})
        table["difference"] = table["as_recorded"] - table["recording"]
        print("medians over steps 2 on (µs)\n")
        print(table.round(1).to_string())
        if args.per_step:
            both = recorded.add_suffix(" rec").join(simulated.add_suffix(" sim"))
            print("\n" + both[sorted(both.columns)].round(1).to_string())
        print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
