"""sha256 (16 hex digits) of every step program made while `harness sim` runs each spec given, per spec: run in
each tree, from its root, and diff the outputs (steps identical byte for byte). Usage:
    HARNESS_HUGE_PAGES=0 PYTHONPATH=. python steps_digest.py OUT_ROOT SPEC.toml...
"""
import hashlib
import sys
from pathlib import Path

import workloads.recorded.steps as st
orig = st.step_program
digests = []
def wrapped(*a, **k):
    p = orig(*a, **k)
    h = hashlib.sha256()
    for t in p.threads:
        h.update(t.name.encode()); h.update(t.steps.tobytes())
    h.update(repr(p.names).encode()); h.update(p.graph_kernels.tobytes())
    digests.append(h.hexdigest()[:16])
    return p
st.step_program = wrapped
from harness.cli import app
out = Path(sys.argv[1])
for i, spec in enumerate(sys.argv[2:]):
    digests.clear()
    try:
        app(["sim", spec, "--out", str(out / f"{i}")], standalone_mode=False)
    except SystemExit:
        pass
    print(Path(spec).name, digests)
