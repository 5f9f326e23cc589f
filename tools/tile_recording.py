"""Make a ~1 M-op recording: a committed recording tiled end to end, with a spec that simulates it.

Writes ``OUT/tiled.parquet`` (the trace, its provenance kept) and ``OUT/tiled.toml`` (a
``recorded`` spec of ``as_recorded`` on it, one repetition), so that the whole process of
``harness sim OUT/tiled.toml`` can be timed: the issue-23 benchmark,

    python3 tools/tile_recording.py --out /tmp/tiled
    /usr/bin/time -v python3 -m harness sim /tmp/tiled/tiled.toml --out /tmp/tiled/results

Each copy of the recording is shifted in time past the previous one and gets its own
correlation ids and groups (``tools/bench_recorded.py``'s :func:`tiled`), so the program
is that loop run many times over. The default is ``decode_inline-sync`` (2,379 host
calls, 2,328 GPU ops) tiled to about 1,000,000 trace rows.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.paths import TRACES_DIR
from harness.trace import load_trace, write_trace
from tools.bench_recorded import tiled

SPEC = """# {rows:,} trace rows: {source} tiled end to end {copies} times (tools/tile_recording.py)
name = "tiled-{stem}"
description = "{source} tiled to {rows:,} rows"
profile = "{profile}"
seed = 0
repetitions = 1

[workload]
kind = "recorded"
trace = "tiled.parquet"

[[policies]]
name = "as_recorded"
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--out", type=Path, required=True, help="folder for tiled.parquet and tiled.toml")
    ap.add_argument("--ops", type=int, default=1_000_000, help="rows of the tiled trace (about)")
    ap.add_argument("--trace", type=Path, default=TRACES_DIR / "recorded" / "decode_inline-sync.parquet")
    ap.add_argument("--profile", default="h200")
    args = ap.parse_args()
    trace = load_trace(args.trace)
    ops = tiled(trace.ops, args.ops)
    args.out.mkdir(parents=True, exist_ok=True)
    write_trace(args.out / "tiled.parquet", ops, trace.provenance)
    copies = len(ops) // len(trace.ops)
    spec = SPEC.format(rows=len(ops), source=args.trace.name, copies=copies, stem=args.trace.stem, profile=args.profile)
    (args.out / "tiled.toml").write_text(spec)
    print(f"{args.out / 'tiled.toml'}: {len(ops):,} rows ({copies} copies of {args.trace.name})")


if __name__ == "__main__":
    main()
