"""Prove that a change to the simulator left every bundled spec's results as they were.

``save DIR`` simulates every spec in ``traces/specs/`` (``harness sim``, one process each) into
``DIR/<spec>/``; ``compare DIR`` simulates them again into a temporary folder and compares every
Parquet table with the saved one, cell by cell (floats to the last bit). ``runs.parquet`` is
compared without ``started_at`` and ``wall_s``, which differ from run to run. It exits 1 and
names each table, column and first differing row when anything moved.

Usage::

    python3 tools/results_snapshot.py save /tmp/snap      # before the change
    python3 tools/results_snapshot.py compare /tmp/snap   # after it
    python3 tools/results_snapshot.py compare /tmp/snap --spec bench_layer_streaming  # one spec
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd

SPECS = Path(__file__).resolve().parents[1] / "traces" / "specs"
VOLATILE = {"runs.parquet": ["started_at", "wall_s"]}


def simulate_all(out: Path, only: list[str]) -> None:
    out.mkdir(parents=True, exist_ok=True)
    for spec in sorted(SPECS.glob("*.toml")):
        if only and spec.stem not in only:
            continue
        target = out / spec.stem
        proc = subprocess.run(
            [sys.executable, "-m", "harness", "sim", str(spec), "--out", str(target)],
            capture_output=True,
            text=True,
        )
        if proc.returncode != 0:
            raise SystemExit(f"{spec.name}: harness sim failed ({proc.returncode}):\n{proc.stdout}{proc.stderr}")
        print(f"simulated {spec.stem}", flush=True)


def table_differences(saved: Path, fresh: Path) -> list[str]:
    """What differs between two results folders' Parquet tables."""
    problems = []
    names = sorted({p.name for p in saved.glob("*.parquet")} | {p.name for p in fresh.glob("*.parquet")})
    for name in names:
        a_path, b_path = saved / name, fresh / name
        if not a_path.exists() or not b_path.exists():
            problems.append(f"{name}: only in {'the saved' if a_path.exists() else 'the new'} results")
            continue
        a = pd.read_parquet(a_path).drop(columns=VOLATILE.get(name, []), errors="ignore")
        b = pd.read_parquet(b_path).drop(columns=VOLATILE.get(name, []), errors="ignore")
        if list(a.columns) != list(b.columns) or len(a) != len(b):
            problems.append(f"{name}: shape {a.shape} {list(a.columns)} -> {b.shape} {list(b.columns)}")
            continue
        for column in a.columns:
            x, y = a[column].reset_index(drop=True), b[column].reset_index(drop=True)
            same = (x == y) | (x.isna() & y.isna())
            if not bool(same.all()):
                row = int((~same).to_numpy().nonzero()[0][0])
                problems.append(f"{name}: column {column!r} differs first at row {row}: {x[row]!r} -> {y[row]!r}")
    return problems


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("action", choices=["save", "compare"])
    parser.add_argument("snapshot", type=Path)
    parser.add_argument("--spec", action="append", default=[], help="only this spec (file stem); repeatable")
    args = parser.parse_args()
    if args.action == "save":
        simulate_all(args.snapshot, args.spec)
        return
    with tempfile.TemporaryDirectory() as tmp:
        simulate_all(Path(tmp), args.spec)
        problems = []
        for saved in sorted(p for p in args.snapshot.iterdir() if p.is_dir()):
            if args.spec and saved.name not in args.spec:
                continue
            problems += [f"{saved.name}/{p}" for p in table_differences(saved, Path(tmp) / saved.name)]
    if problems:
        print("\n".join(problems))
        raise SystemExit(1)
    print("every table identical")


if __name__ == "__main__":
    main()
