"""What machine a benchmark ran on, for its report."""

from __future__ import annotations

import os
import platform


def cpu_name() -> str:
    """The CPU model, for benchmark reports."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_report() -> dict[str, str]:
    """Python version, CPU model and visible cores: the lines every benchmark report ends with."""
    return {"python": platform.python_version(), "cpu": cpu_name(), "cores visible": str(os.cpu_count())}
