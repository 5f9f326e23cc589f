"""A spec's copy for a benchmark call: pointed at another profile, its input files made absolute paths.

``fidelity/run_benchmark.sh`` simulates and replays copies of the specs it is given, each pointed at
the profile of that call, under its output folder. A spec names its inputs (a trace, a request file)
relative to its own folder, so the copy turns every string that names an existing path relative to the
original spec's folder into an absolute path; everything else is copied as it is.

Usage: ``python3 -m fidelity.respec SPEC PROFILE COPY``
"""

from __future__ import annotations

import sys
import tomllib
from pathlib import Path
from typing import Any

import tomli_w


def absolute_inputs(value: Any, folder: Path) -> Any:
    """``value`` with every string naming an existing path relative to ``folder`` made absolute."""
    if isinstance(value, dict):
        return {key: absolute_inputs(item, folder) for key, item in value.items()}
    if isinstance(value, list):
        return [absolute_inputs(item, folder) for item in value]
    if isinstance(value, str) and value and not Path(value).is_absolute() and (folder / value).exists():
        return str((folder / value).resolve())
    return value


def respec(spec: Path, profile: str, copy: Path) -> None:
    data = absolute_inputs(tomllib.loads(spec.read_text()), spec.parent)
    data["profile"] = profile
    copy.write_text(tomli_w.dumps(data))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        raise SystemExit("usage: python3 -m fidelity.respec SPEC PROFILE COPY")
    respec(Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]))
