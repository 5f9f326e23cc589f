"""What the CLI's command modules share: the consoles and error exit (``harness.terminal``), number formatting, output paths."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from harness.terminal import console, err_console, fail

__all__ = ["console", "default_out", "err_console", "fail", "fmt", "utc_stamp"]


def fmt(value: float) -> str:
    """A metric value for a table: thousands separators for big values, '-' for NaN."""
    if value != value:
        return "-"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    if abs(value) >= 10:
        return f"{value:.1f}"
    return f"{value:.3f}"


def utc_stamp() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")


def default_out(results_root: Path, spec_name: str, backend: str) -> Path:
    """A new results folder ``<root>/<spec>-<backend>-<UTC stamp>[-n]`` that does not exist yet."""
    stamp = utc_stamp()
    out = results_root / f"{spec_name}-{backend}-{stamp}"
    n = 1
    while out.exists():
        n += 1
        out = results_root / f"{spec_name}-{backend}-{stamp}-{n}"
    return out
