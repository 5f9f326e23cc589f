"""What a worker process (the local pool's or a Ray worker) runs: chunks of a spec's runs.

A worker is sent a :class:`SpecRef` (the spec file's absolute path and hash, the limits and the
backend factory, all picklable) and prepares the spec once per process; a local pool started by
``fork`` inherits the driver's prepared spec instead (:func:`remember`).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from harness import __version__
from harness.errors import InputError
from harness.limits import Limits
from harness.runner import PreparedSpec, RunTables, SpecBackendFactory, execute_run, prepare_spec
from harness.spec import LoadedSpec, load_spec

FactoryFor = Callable[[LoadedSpec], SpecBackendFactory]
"""``factory_for(loaded)`` -> the per-run backend factory; a module-level function, so that it pickles by name."""


@dataclass(frozen=True)
class SpecRef:
    """A spec as workers find it: its file (absolute path) and hash, the limits, the backend factory."""

    path: str
    sha256: str
    key: str  # spec_key(): the cache's key
    limits: Limits
    factory_for: FactoryFor

    @property
    def process_key(self) -> str:
        """The spec and the factory: a worker process that ran another factory's runs of the spec prepares anew."""
        return f"{self.key}:{_name(self.factory_for)}"


def _name(function: Callable) -> str:
    if isinstance(function, functools.partial):
        return f"partial({_name(function.func)}, {function.args!r}, {sorted(function.keywords.items())!r})"
    return f"{getattr(function, '__module__', '?')}.{getattr(function, '__qualname__', repr(function))}"


def spec_key(loaded: LoadedSpec, backend_name: str) -> str:
    """What a run's result depends on besides its label: the spec's bytes, its resolved workload parameters and
    hardware profile, the backend and the package version (a hex SHA-256)."""
    parts = [
        loaded.sha256,
        loaded.workload_params.model_dump_json(),
        loaded.profile.figures.model_dump_json(),
        str(loaded.device_memory_bytes),
        backend_name,
        __version__,
    ]
    return hashlib.sha256(json.dumps(parts).encode()).hexdigest()


_PREPARED: dict[str, tuple[PreparedSpec, SpecBackendFactory]] = {}  # this process's spec, by process_key


def remember(ref: SpecRef, prepared: PreparedSpec, make_backend: SpecBackendFactory) -> None:
    """Keep the driver's prepared spec: workers forked from this process then need not prepare it again."""
    _PREPARED.clear()
    _PREPARED[ref.process_key] = (prepared, make_backend)


def prepared_for(ref: SpecRef) -> tuple[PreparedSpec, SpecBackendFactory]:
    """The spec of ``ref``, prepared once per process; refused if its file changed since the sweep began."""
    if ref.process_key not in _PREPARED:
        loaded = load_spec(ref.path, limits=ref.limits)
        if loaded.sha256 != ref.sha256:
            raise InputError(ref.path, "", "the spec file changed while its sweep ran; run the sweep again")
        remember(ref, prepare_spec(loaded, ref.limits), ref.factory_for(loaded))
    return _PREPARED[ref.process_key]


def run_chunk(ref: SpecRef, indices: list[int]) -> list[tuple[int, RunTables]]:
    """Runs ``indices`` of the spec, in order (a Ray task's body)."""
    prepared, make_backend = prepared_for(ref)
    return [(index, execute_run(prepared, index, make_backend)) for index in indices]
