"""harness.memory_release: what a phase freed leaves the process (peak memory of a big `harness sim`)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest

from harness import memory_release
from harness.memory_release import release_freed_memory

STATM = Path("/proc/self/statm")


def _resident_mb() -> float:
    return int(STATM.read_text().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not STATM.exists() or sys.platform != "linux", reason="reads /proc/self/statm")
def test_memory_arrow_freed_leaves_the_process():
    parts = [pc.add(pa.array(np.arange(1 << 20, dtype=np.float64)), 1.0) for _ in range(32)]  # 256 MB from Arrow
    assert pa.total_allocated_bytes() >= 32 * 8 * 2**20
    del parts
    kept = _resident_mb()  # freed, but still the process's: the pool keeps it for reuse
    release_freed_memory()
    assert _resident_mb() < kept - 128


def test_without_malloc_trim_only_arrow_is_asked(monkeypatch):
    released = []

    class Pool:
        def release_unused(self):
            released.append(True)

    monkeypatch.setattr(memory_release, "_malloc_trim", lambda: None)
    monkeypatch.setattr(pa, "default_memory_pool", lambda: Pool())
    release_freed_memory()
    assert released == [True]
