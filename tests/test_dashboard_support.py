"""Results folders for the dashboard tests (no tests here; imported by test_dashboard*.py).

Sim results come from running the simulator on bundled specs. The ``replay``
folder is a clearly synthetic fixture: the sim results of one spec rewritten as
if a replay had measured every ``*_us`` metric and op time REPLAY_SCALE times
the simulated one, written with the product's own ``to_table``/``write_results``.
"""

from __future__ import annotations

import contextlib
import io
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from fidelity.compare import fidelity_table, load_many, write_fidelity
from harness.cli.run import simulate_spec
from harness.paths import SPECS_DIR
from harness.results import read_results, to_table, write_results

DEMO = "layer_streaming_demo"  # 3 policies, 1 repetition: compare, timeline, fidelity pairs
SWEEP = "layer_streaming_sweep"  # prefetch depth 1..4: the sweep page
BATCHING = "batching_c1_window"  # ~5k ops per run and a requests table: bounded timeline, CDFs
REPLAY_SCALE = 1.25  # the synthetic "measured" values are 25 % above the simulated ones
SYNTHETIC_DEVICE = "synthetic replay (test fixture)"


@dataclass(frozen=True)
class DashboardData:
    root: Path  # a folder of results folders (and a stored fidelity table)
    good: dict[str, Path]  # name -> results folder
    missing_ops: Path  # a results folder without ops.parquet
    corrupt: Path  # a results folder whose metrics.parquet is garbage
    fidelity_file: Path


def simulate(spec: str, out: Path) -> Path:
    with contextlib.redirect_stdout(io.StringIO()):
        return simulate_spec(SPECS_DIR / f"{spec}.toml", out, out.parent)


def write_synthetic_replay(sim_folder: Path, out: Path) -> Path:
    """The sim runs of ``sim_folder`` as a replay would record them, times scaled by REPLAY_SCALE."""
    res = read_results(sim_folder)
    rename = {rid: rid.replace(":sim:", ":replay:") for rid in res.runs["run_id"]}
    runs = res.runs.assign(run_id=res.runs["run_id"].map(rename), backend="replay", device_name=SYNTHETIC_DEVICE)
    ops = res.ops.assign(run_id=res.ops["run_id"].map(rename))
    for column in ("issue_us", "start_us", "end_us"):
        ops[column] = ops[column] * REPLAY_SCALE
    metrics = res.metrics.assign(run_id=res.metrics["run_id"].map(rename))
    timed = metrics["metric"].str.endswith("_us")
    metrics.loc[timed, "value"] = metrics.loc[timed, "value"] * REPLAY_SCALE
    return write_results(
        out, {"runs": to_table("runs", runs), "ops": to_table("ops", ops), "metrics": to_table("metrics", metrics)}
    )


def build(root: Path) -> DashboardData:
    good = {name: simulate(name, root / f"{name}-sim") for name in (DEMO, SWEEP, BATCHING)}
    good["replay"] = write_synthetic_replay(good[DEMO], root / f"{DEMO}-replay")
    missing_ops = root / "broken-missing-ops"
    shutil.copytree(good[DEMO], missing_ops)
    (missing_ops / "ops.parquet").unlink()
    corrupt = root / "broken-corrupt"
    shutil.copytree(good[DEMO], corrupt)
    (corrupt / "metrics.parquet").write_bytes(b"this is not a parquet file")
    runs, metrics = load_many([good[DEMO], good["replay"]])
    fidelity_file = write_fidelity(root / "fidelity-test.parquet", fidelity_table(runs, metrics))
    return DashboardData(root, good, missing_ops, corrupt, fidelity_file)


# --------------------------------------------------------------------------- tables the pages draw as Markdown


def read_markdown_table(text: str) -> pd.DataFrame:
    """A Markdown table as the page wrote it, cells unescaped (strings)."""
    rows = [
        [re.sub(r"\\(.)", r"\1", cell.strip()) for cell in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
        for line in text.splitlines()
    ]
    return pd.DataFrame(rows[2:], columns=rows[0])


def shown_tables(at) -> list[pd.DataFrame]:
    """The page's tables drawn as Markdown (an AppTest's), in page order."""
    return [read_markdown_table(m.value) for m in at.markdown if m.value.startswith("| ")]

