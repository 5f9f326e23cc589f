#!/bin/bash
# Usage, from the repository root: compare_specs.sh OUT_DIR BEFORE_TREE
# Every bundled recorded/what-if spec simulated by BEFORE_TREE and this tree; each results folder compared bit for bit
set -u
out=$1; before=$2; mkdir -p $out
for spec in traces/specs/recorded_*.toml traces/specs/whatif_*.toml; do
  name=$(basename $spec .toml)
  (cd $before && /work/venv/bin/python -m harness sim $spec --out $out/$name-before > /dev/null 2>$out/$name-before.err)
  /work/venv/bin/python -m harness sim $spec --out $out/$name-after > /dev/null 2>$out/$name-after.err
done
/work/venv/bin/python - $out <<'PY'
import sys
from pathlib import Path
import pyarrow.parquet as pq
out = Path(sys.argv[1])
names = sorted({p.name.rsplit("-", 1)[0] for p in out.iterdir() if p.is_dir()})
bad = 0
for name in names:
    a, b = out / f"{name}-before", out / f"{name}-after"
    ok = a.is_dir() and b.is_dir()
    if ok:
        files = sorted(p.name for p in a.glob("*.parquet"))
        ok = files == sorted(p.name for p in b.glob("*.parquet"))
        for f in files if ok else []:
            ta, tb = pq.read_table(a / f), pq.read_table(b / f)
            keep = [c for c in ta.column_names if c not in ("started_at", "wall_s")]
            ok &= ta.select(keep).equals(tb.select(keep), check_metadata=True)
        ok &= (a / "verdict.json").read_text() == (b / "verdict.json").read_text()
    bad += not ok
    print(f"{name}: {'identical' if ok else 'DIFFERENT'}")
print(f"{len(names)} specs, {bad} different")
PY
