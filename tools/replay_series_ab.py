"""Does running decode steps as one ``launch_sync_series`` change a batching replay? (needs a CUDA GPU)

Replays each SPEC (``harness replay``, default: the two batching fidelity specs) alternately
as the policy is written (``series``) and with every series cut to one step (``single``: what
the generate loop did before it had series; ``until`` always true, so the loop yields once per
step), ``--rounds`` times each, and prints each run's metrics side by side. In the simulator
the two give identical results (``tests/test_batching_properties.py``); on the GPU they
differ only by host time between steps and by run-to-run noise, which the rounds show.

Usage (from the repository root): python3 tools/replay_series_ab.py OUT [--rounds 2] [SPEC...]
Writes one results folder per spec, mode and round under OUT; prints a table.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pandas as pd

METRICS = ["ttft_p50_us", "ttft_p99_us", "tpot_p50_us", "agg_tok_s", "singleton_batches"]
SPECS = ["traces/specs/batching_replay_c1.toml", "traces/specs/batching_replay_c4.toml"]

# run in a fresh interpreter: the harness CLI, with launch_sync_series cut to one step a call
SINGLE_STEP_CLI = """
import sys
from harness.runtime import Runtime
whole = Runtime.launch_sync_series
def one_step(self, stream, name, durations_us, compute_share=1.0, kind=None, until=None):
    command = whole(self, stream, name, durations_us, compute_share, *(() if kind is None else (kind,)))
    command.until = lambda: True
    return command
Runtime.launch_sync_series = one_step
from harness.cli import app
sys.argv[0] = "harness"
app()
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("specs", nargs="*", default=SPECS)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rows = []
    for round_ in range(args.rounds):
        for mode in ("series", "single"):
            for spec in args.specs:
                folder = args.out / f"{Path(spec).stem}-{mode}-{round_}"
                head = (
                    [sys.executable, "-m", "harness"] if mode == "series" else [sys.executable, "-c", SINGLE_STEP_CLI]
                )
                subprocess.run([*head, "replay", spec, "--out", str(folder)], check=True, capture_output=True)
                metrics = pd.read_parquet(folder / "metrics.parquet")
                runs = pd.read_parquet(folder / "runs.parquet")[["run_id", "policy_label"]]
                overall = metrics[(metrics["item"] == -1) & metrics["metric"].isin(METRICS)].merge(runs, on="run_id")
                for (label, metric), value in overall.groupby(["policy_label", "metric"])["value"].median().items():
                    rows.append(
                        {
                            "spec": Path(spec).stem,
                            "policy": label,
                            "metric": metric,
                            "mode": mode,
                            "round": round_,
                            "value": value,
                        }
                    )
    table = pd.DataFrame(rows).pivot_table(
        index=["spec", "policy", "metric"], columns=["mode", "round"], values="value"
    )
    print(table.round(1).to_string())


if __name__ == "__main__":
    main()
