"""Which results to show, and a cache key that changes when they change on disk.

A path may be a results folder, a folder of results folders (all its children,
plus the ``fidelity-*.parquet`` files ``harness compare`` writes next to them),
or a single table file such as a stored fidelity table.
"""

from __future__ import annotations

import os
from pathlib import Path

DIRS_ENV = "HARNESS_DASHBOARD_DIRS"  # os.pathsep-separated paths, set by `harness dashboard`
DEFAULT_DIRS = (Path("results"),)
CORE_FILES = ("runs.parquet", "ops.parquet", "metrics.parquet")


def dirs_from_env(environ: dict[str, str] | None = None) -> list[Path]:
    """The paths named in the environment, or the default ``results/``."""
    raw = (environ if environ is not None else os.environ).get(DIRS_ENV, "")
    named = [Path(p) for p in raw.split(os.pathsep) if p.strip()]
    return named or list(DEFAULT_DIRS)


def is_results_folder(path: Path) -> bool:
    """A folder holding at least one of the core tables (possibly a broken results folder)."""
    return path.is_dir() and any((path / name).exists() for name in CORE_FILES)


def expand(paths: list[Path]) -> list[Path]:
    """Results folders and table files among ``paths``, a parent folder standing for its contents.

    A path that is none of these (missing, empty) is kept, so that loading it
    reports why it cannot be read. Hidden entries (partial writes) are skipped.
    """
    found: list[Path] = []
    for path in paths:
        if path.is_file() or is_results_folder(path) or not path.is_dir():
            found.append(path)
            continue
        entries = sorted(c for c in path.iterdir() if not c.name.startswith("."))
        inside = [c for c in entries if is_results_folder(c) or (c.is_file() and c.suffix == ".parquet")]
        found += inside or [path]
    unique: dict[str, Path] = {}
    for path in found:
        unique.setdefault(str(path.resolve()), path)
    return list(unique.values())


def signature(path: Path) -> tuple:
    """Names, sizes and modification times of a path's tables: the cache key of its contents."""
    if path.is_file():
        st = path.stat()
        return ((path.name, st.st_mtime_ns, st.st_size),)
    if not path.is_dir():
        return ("missing",)
    files = sorted(path.glob("*.parquet"))
    return tuple((f.name, f.stat().st_mtime_ns, f.stat().st_size) for f in files) + (path.stat().st_mtime_ns,)
