#!/bin/bash
# The issue-23 benchmark as a whole process: `harness sim` of decode_inline-sync tiled to ~1 M trace rows,
# timed by /usr/bin/time -v, ROUNDS rounds alternating the tree before this work (BEFORE_TREE, a checkout of
# 24cb1d0) and this tree (AFTER_TREE). Each run's results are compared with the first "before" run's, bit for
# bit (runs' started_at and wall_s excepted). Usage, from the repository root:
#   BEFORE_TREE=/tmp/base_src ROUNDS=3 measurements/2026-12-07_cpu_1m-op-sim/run.sh OUT_DIR
set -euo pipefail
out=${1:?usage: run.sh OUT_DIR}
after=${AFTER_TREE:-$PWD}
before=${BEFORE_TREE:?set BEFORE_TREE to a checkout of the commit to compare with}
rounds=${ROUNDS:-3}
python=${PYTHON:-/work/venv/bin/python}
mkdir -p "$out"
(cd "$after" && "$python" -m tools.tile_recording --out "$out/tiled") > "$out/tile.log"
{ echo "nproc: $(nproc)"; lscpu | grep "Model name"; } > "$out/machine.txt"
for round in $(seq 1 "$rounds"); do
  for side in before after; do
    tree=$before; [ "$side" = after ] && tree=$after
    res="$out/results-$side-$round"
    rm -rf "$res"
    echo "load before $side $round: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load.txt"
    (cd "$tree" && /usr/bin/time -v "$python" -m harness sim "$out/tiled/tiled.toml" --out "$res") \
      > "$out/sim-$side-$round.log" 2> "$out/time-$side-$round.txt"
  done
done
echo "load after: $(cut -d' ' -f1-3 /proc/loadavg)" >> "$out/load.txt"
"$python" - "$out" "$rounds" <<'PY'
import re, statistics, sys
from pathlib import Path
import pyarrow.parquet as pq
out, rounds = Path(sys.argv[1]), int(sys.argv[2])
def figures(path):
    text = path.read_text()
    get = lambda key: re.search(re.escape(key) + r": (.*)", text).group(1).strip()
    wall = get("Elapsed (wall clock) time (h:mm:ss or m:ss)").split(":")
    return float(get("User time (seconds)")) + float(get("System time (seconds)")), \
        float(wall[-2]) * 60 + float(wall[-1]), int(get("Maximum resident set size (kbytes)")) / 1024
def same(a, b):
    for name in ("ops", "metrics", "runs", "what_ifs"):
        ta, tb = pq.read_table(a / f"{name}.parquet"), pq.read_table(b / f"{name}.parquet")
        keep = [c for c in ta.column_names if c not in ("started_at", "wall_s")]
        if not ta.select(keep).equals(tb.select(keep), check_metadata=True):
            return False
    return (a / "verdict.json").read_text() == (b / "verdict.json").read_text()
reference = out / "results-before-1"
for side in ("before", "after"):
    rows = [figures(out / f"time-{side}-{r}.txt") for r in range(1, rounds + 1)]
    identical = all(same(reference, out / f"results-{side}-{r}") for r in range(1, rounds + 1))
    cpu, wall, rss = (statistics.median(col) for col in zip(*rows))
    each = ", ".join(f"{c:.2f} s / {w:.2f} s / {m:.0f} MB" for c, w, m in rows)
    print(f"{side}: median CPU {cpu:.2f} s (user+sys), wall {wall:.2f} s, peak RSS {rss:.0f} MB; "
          f"runs (CPU / wall / RSS): {each}; results identical to before-1: {identical}")
PY
