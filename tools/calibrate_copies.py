"""Re-time the host link of a profile, one way or the other, into a copy of it (needs a CUDA GPU).

    python3 tools/calibrate_copies.py --method pooled|isolated|idle-adjusted --base PROFILE --out COPY [--rounds N]

``pooled`` (what ``harness calibrate`` does): copies through the replay engine as runs issue
them, sizes in rounds, with drift probes before and after (:mod:`replay.copy_calibration`).
``isolated`` (what calibrations did before): each size alone from one pinned buffer
behind a queued ``_sleep`` (:func:`replay.calibrate.measure_link_isolated`); its profile has
no ``[link.drift]``. ``idle-adjusted`` (no GPU): the base profile's pinned samples made
``max(sample, idle_us - copy_launch_us)`` (:func:`replay.copy_calibration.idle_adjusted`; needs a base
calibrated with idle-stream copies). Everything but ``[link]`` (and the name, and a provenance note) is the
base profile's, so the two ways can be simulated against the same replay runs
(``tools/copy_calibration_ab.py``).
"""

from __future__ import annotations

import argparse
import sys
import time
import tomllib
from pathlib import Path

from harness.errors import InputError
from harness.profile import load_profile


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--method", choices=("pooled", "isolated", "idle-adjusted"), required=True)
    ap.add_argument("--base", type=Path, required=True, help="the profile to copy (a TOML file)")
    ap.add_argument("--out", type=Path, required=True, help="the copy to write (must not exist)")
    ap.add_argument("--rounds", type=int, default=None, help="pooled: rounds over the sizes")
    args = ap.parse_args(argv)
    if args.out.exists():
        print(f"error: {args.out}: already exists", file=sys.stderr)
        return 2
    try:
        base = load_profile(args.base)
    except InputError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    from replay.calibrate import measure_link_isolated, write_profile
    from replay.copy_calibration import (
        ROUNDS,
        LinkProber,
        describe_probe,
        drift_section,
        idle_adjusted,
        measure_link,
        plan_for,
    )

    raw = tomllib.loads(args.base.read_text())
    if args.method == "idle-adjusted":
        if not any(raw["link"][d]["pinned"].get("idle_us") for d in ("h2d", "d2h")):
            print(f"error: {args.base}: no pinned idle_us (calibrated before idle-stream copies)", file=sys.stderr)
            return 2
        link = idle_adjusted(raw)["link"]
        note = "[link] pinned samples made max(sample, idle_us - copy_launch_us) by tools/calibrate_copies.py."
    else:
        from replay.engine import ReplayBackend, ReplayContext
        from replay.gpu import CudaUnavailable

        try:
            context = ReplayContext(1)
        except CudaUnavailable as err:
            print(f"error: {err}", file=sys.stderr)
            return 2
        if args.method == "isolated":
            link = measure_link_isolated(context.torch, context.devices[0].device, print)
            link.pop("_duplex_us")
            note = "[link] re-timed the isolated way (each size alone, one pinned buffer) by tools/calibrate_copies.py."
        else:
            backend = ReplayBackend(context, base)
            prober = LinkProber(backend, time.monotonic)
            print(describe_probe(prober.probe("start")))
            link, _ = measure_link(backend, plan_for(base, rounds=args.rounds or ROUNDS), print)
            print(describe_probe(prober.probe("end")))
            link["drift"] = drift_section(prober.probes)
            note = "[link] re-timed the pooled way (as runs issue copies) by tools/calibrate_copies.py."
    raw["link"] = link
    raw["name"] = args.out.stem
    raw["provenance"]["notes"] = (raw["provenance"].get("notes", "") + " " + note).strip()
    write_profile(raw, args.out, f"# {args.out.stem}: {args.base.name} with its host link re-timed ({args.method}).\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
