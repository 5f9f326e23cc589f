"""Reading back a benchmark folder that ``fidelity/run_benchmark.sh`` left: ``OUT/specs/NAME.toml`` (the specs as
simulated and replayed, pointed at the call's profile) and ``OUT/results/NAME-replay`` (each one's replay)."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

from harness.results import Results, ResultsError, read_results


def replayed_specs(out: Path) -> Iterator[tuple[Path, Results]]:
    """Each spec of the folder, by name, with its replay's results; a spec whose replay cannot be read is skipped
    with one line on stderr saying why (a benchmark stopped at its time limit leaves some unreplayed)."""
    for spec in sorted((out / "specs").glob("*.toml")):
        try:
            replay = read_results(out / "results" / f"{spec.stem}-replay")
        except ResultsError as err:
            print(f"skipping {spec.stem}: {err}", file=sys.stderr)
            continue
        yield spec, replay
