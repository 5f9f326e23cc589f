"""Do two profiler calibrations (two `harness calibrate --profiler` runs) agree within their reported spreads?

Usage: ``python3 tools/compare_profiler_calibrations.py A.toml B.toml`` (two profiles, or one profile
twice with different runs' figures). Prints, per mode both calibrated and per event kind, each
run's median ± spread (µs per event), the difference and whether it is within the sum of the two
spreads; exits 0 when every figure agrees, 1 when one does not, 2 on bad input.
"""

from __future__ import annotations

import sys

from harness.errors import InputError
from harness.profile import load_profile
from harness.profiler_fit import compare_calibrations


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__.strip().splitlines()[2], file=sys.stderr)
        return 2
    try:
        a, b = (load_profile(p) for p in argv)
    except InputError as err:
        print(err, file=sys.stderr)
        return 2
    rows = compare_calibrations(a.figures.profiler, b.figures.profiler)
    if not rows:
        print("no profiler mode is calibrated in both profiles", file=sys.stderr)
        return 2
    print(f"{'mode':<15}{'event kind':<14}{'A µs':>16}{'B µs':>16}{'B - A':>9}  agree")
    for row in rows:
        a_, b_ = (f"{s.median_us:.2f} ± {s.spread_us:.2f}" if s else "-" for s in (row.a, row.b))
        diff = "-" if row.difference_us is None else f"{row.difference_us:+.2f}"
        verdict = {True: "yes", False: "NO", None: "-"}[row.agrees]
        print(f"{row.mode:<15}{row.kind:<14}{a_:>16}{b_:>16}{diff:>9}  {verdict}")
    for mode in [m for m in a.figures.profiler if m in b.figures.profiler]:
        fa, fb = a.figures.profiler[mode].floor_us, b.figures.profiler[mode].floor_us
        floors = ", ".join(f"{k} {fa[k]:.2f} / {fb[k]:.2f}" for k in fa if k in fb)
        print(f"{mode} floors µs (A / B): {floors}")
    return 1 if any(r.agrees is False for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
