"""One host-link drift probe on the GPU, appended to a CSV: ``python3 -m replay.link_probe FILE --when W``.

The calibration's reference copy (:data:`replay.copy_calibration.REFERENCE`, 64 MiB
pinned H2D into a fresh buffer behind a kernel, through the replay engine) timed
``--reps`` times; one row per probe: when (``before``/``after``/any label), the
spec's name, the UTC time, the copy, its median and spread (half the interquartile
range), µs. ``fidelity/run_benchmark.sh --link-probes`` takes one before and after
each spec's replay; the fidelity report reads them (``DIR/link_probes.csv``) and
puts each spec's link drift, against the profile's own probes, next to its error.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import sys
import tomllib
from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from harness.profile import QUOTED_PROFILE, load_profile
from replay.copy_calibration import PROBE_REPS, REFERENCE, probe_durations, probe_of, probe_policy

PROBE_COLUMNS = ("when", "spec_name", "utc", "direction", "host_memory", "nbytes", "median_us", "spread_us", "reps")


def append_probe(path: Path, row: dict) -> None:
    """Append one row to the probes CSV (written whole to a sibling, then renamed into place)."""
    path = Path(path)
    frame = pd.DataFrame([row], columns=list(PROBE_COLUMNS))
    if path.is_file():
        frame = pd.concat([pd.read_csv(path), frame], ignore_index=True)
    tmp = path.parent / f".{path.name}.partial-{os.getpid()}"
    frame.to_csv(tmp, index=False)
    os.replace(tmp, path)


def spec_name(spec: Path | None) -> str:
    if spec is None:
        return ""
    try:
        name = tomllib.loads(Path(spec).read_text()).get("name", "")
    except (OSError, tomllib.TOMLDecodeError) as err:
        raise ValueError(f"{spec}: cannot read the spec's name ({err})") from None
    return name if isinstance(name, str) else ""


def take_probe(reps: int) -> list[float]:
    from harness.backend import run_policy
    from replay.engine import ReplayBackend, ReplayContext

    backend = ReplayBackend(ReplayContext(1), load_profile(QUOTED_PROFILE))
    return probe_durations(run_policy(backend, probe_policy, reps).ops)


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python3 -m replay.link_probe", description=__doc__.split("\n\n")[0])
    ap.add_argument("file", type=Path, help="CSV to append the probe to (created if missing)")
    ap.add_argument("--when", default="", help="label: before, after, ...")
    ap.add_argument("--spec", type=Path, default=None, help="the spec whose run this probe brackets (its name)")
    ap.add_argument("--reps", type=int, default=PROBE_REPS, help=f"reference copies to time (default {PROBE_REPS})")
    args = ap.parse_args(argv)
    if args.reps < 1:
        print(f"error: --reps must be >= 1, got {args.reps}", file=sys.stderr)
        return 2
    try:
        name = spec_name(args.spec)
        from replay.gpu import CudaUnavailable

        try:
            durations = take_probe(args.reps)
        except CudaUnavailable as err:
            print(f"error: link probe: {err}", file=sys.stderr)
            return 2
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    probe = probe_of(args.when, 0.0, durations)
    append_probe(
        args.file,
        {
            "when": args.when,
            "spec_name": name,
            "utc": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "direction": REFERENCE.direction.value,
            "host_memory": REFERENCE.memory.value,
            "nbytes": REFERENCE.nbytes,
            "median_us": probe.median_us,
            "spread_us": probe.spread_us,
            "reps": len(durations),
        },
    )
    gbps = REFERENCE.nbytes / probe.median_us / 1e3
    print(f"link probe {args.when} {name}: {probe.median_us:.1f} µs ± {probe.spread_us:.1f} ({gbps:.2f} GB/s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
