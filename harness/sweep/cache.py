"""The resumable sweep's cache: each finished run's tables, kept until the results folder is written.

Layout: ``<root>/<spec name>-<key[:16]>/<entry>/<table>.arrow`` where the key is
:func:`harness.sweep.worker.spec_key` (spec bytes, workload parameters, profile, backend, version) and the
entry a hash of the run's policy label and repetition. Each table is an Arrow IPC file, exact to the bit.
An entry is written to a hidden ``.<entry>.partial-<pid>`` folder and renamed into place, so a killed
process never leaves half an entry; the next cache opened in the folder removes such leftovers.
Only runs that finished ``ok`` are kept: a failed run is tried again on the next attempt.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import pyarrow as pa

from harness.results import remove_stale_staging
from harness.runner import RunTables

SUFFIX = ".arrow"


class RunCache:
    def __init__(self, root: Path, spec_name: str, key: str) -> None:
        self.folder = Path(root) / f"{spec_name}-{key[:16]}"
        self.folder.mkdir(parents=True, exist_ok=True)
        remove_stale_staging(self.folder)

    def _entry(self, label: str, repetition: int) -> str:
        return hashlib.sha256(f"{label}\0{repetition}".encode()).hexdigest()[:32]

    def get(self, label: str, repetition: int) -> RunTables | None:
        """The run's tables, or None when it is not in the cache (or its entry cannot be read)."""
        entry = self.folder / self._entry(label, repetition)
        if not entry.is_dir():
            return None
        try:
            tables = {}
            for file in entry.glob(f"*{SUFFIX}"):
                with pa.OSFile(str(file), "rb") as source:
                    tables[file.name.removesuffix(SUFFIX)] = pa.ipc.open_file(source).read_all()
        except (OSError, pa.ArrowInvalid):
            return None
        return tables if "runs" in tables else None

    def put(self, label: str, repetition: int, tables: RunTables) -> None:
        """Keep a finished run (atomically); a run already kept (by a concurrent sweep) stays as it is."""
        name = self._entry(label, repetition)
        staging = self.folder / f".{name}.partial-{os.getpid()}"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            for table_name, table in tables.items():
                with pa.OSFile(str(staging / f"{table_name}{SUFFIX}"), "wb") as sink:
                    with pa.ipc.new_file(sink, table.schema) as writer:
                        writer.write_table(table)
            os.rename(staging, self.folder / name)
        except OSError:
            if not (self.folder / name).is_dir():
                raise
        finally:
            shutil.rmtree(staging, ignore_errors=True)

    def count(self) -> int:
        return sum(1 for p in self.folder.iterdir() if not p.name.startswith("."))

    def clear(self) -> None:
        """Remove this spec's cache folder (after its results folder is written)."""
        shutil.rmtree(self.folder, ignore_errors=True)
        try:
            self.folder.parent.rmdir()  # the cache root, when no other spec's runs are kept there
        except OSError:
            pass
