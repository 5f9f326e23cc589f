"""Experiment specs: a TOML file naming a workload, its inputs, the policies to
compare, the hardware profile and the seed. The format is documented in the
README ("Spec format"); everything is validated here, before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from harness.errors import InputError, from_validation_error
from harness.profile import Profile, load_profile
from harness.workload import PolicyDef, PolicyParams, PrepareContext, Workload, WorkloadParams, registry


class PolicyEntry(pydantic.BaseModel):
    """One ``[[policies]]`` table: ``name``, optional ``label`` and ``sweep``, then the policy's parameters.

    ``sweep = { depth = [1, 2, 4] }`` runs the policy once per combination of the
    listed values (cartesian product), labelled ``<label>[depth=2]``.
    """

    model_config = pydantic.ConfigDict(extra="allow", frozen=True)
    name: str
    label: str | None = None
    sweep: dict[str, list[Any]] = pydantic.Field(default_factory=dict)

    @pydantic.field_validator("sweep")
    @classmethod
    def _non_empty(cls, sweep: dict[str, list[Any]]) -> dict[str, list[Any]]:
        for key, values in sweep.items():
            if not values:
                raise ValueError(f"sweep over {key!r} lists no values")
        return sweep

    def expanded(self) -> list[tuple[str, dict[str, Any]]]:
        """(label, parameters) for every point of the sweep (one point without a sweep)."""
        base = dict(self.model_extra or {})
        label = self.label or self.name
        if not self.sweep:
            return [(label, base)]
        keys = list(self.sweep)
        points = []
        for values in itertools.product(*(self.sweep[k] for k in keys)):
            point = dict(zip(keys, values))
            suffix = ",".join(f"{k}={v}" for k, v in point.items())
            points.append((f"{label}[{suffix}]", {**base, **point}))
        return points


class ExperimentSpec(pydantic.BaseModel):
    model_config = pydantic.ConfigDict(extra="forbid", frozen=True)
    name: str = pydantic.Field(pattern=r"^[A-Za-z0-9_.-]+$")
    description: str = ""
    profile: str
    seed: int = 0
    repetitions: int = pydantic.Field(default=1, ge=1)
    device_memory_bytes: int | None = pydantic.Field(default=None, gt=0)  # cap below the profile's memory
    workload: dict[str, Any]
    policies: list[PolicyEntry] = pydantic.Field(min_length=1)


@dataclass(frozen=True)
class PolicyRun:
    label: str
    policy: PolicyDef
    params: PolicyParams

    @property
    def params_json(self) -> str:
        return json.dumps(self.params.model_dump(mode="json"), sort_keys=True)


@dataclass(frozen=True)
class LoadedSpec:
    path: Path
    sha256: str
    spec: ExperimentSpec
    profile: Profile
    workload: Workload
    workload_params: WorkloadParams
    policies: list[PolicyRun]
    device_memory_bytes: int

    def prepare_context(self) -> PrepareContext:
        """What the workload's ``prepare`` is given for this spec."""
        return PrepareContext(self.workload_params, self.path.parent, self.profile, self.device_memory_bytes, self.spec.seed)


def load_spec(path: str | Path, workload_overrides: dict[str, Any] | None = None) -> LoadedSpec:
    """Read and validate a spec; ``workload_overrides`` replace keys of its ``[workload]`` table."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "", "spec file not found") from None
    except IsADirectoryError:
        raise InputError(path, "", "is a folder, not a spec file") from None
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "", f"malformed TOML: {err}") from None
    try:
        spec = ExperimentSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err) from None

    try:
        profile = load_profile(spec.profile)
    except InputError as err:
        raise InputError(path, "field 'profile'", err.message) from None
    memory = min(spec.device_memory_bytes or profile.device.memory_bytes, profile.device.memory_bytes)

    workloads = registry()
    values = {**spec.workload, **(workload_overrides or {})}
    kind = values.pop("kind", None)
    if kind not in workloads:
        raise InputError(path, "field 'workload.kind'", f"unknown workload {kind!r}; known: {', '.join(sorted(workloads))}")
    workload = workloads[kind]
    try:
        workload_params = workload.params.model_validate(values)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err, prefix="workload") from None

    policies: list[PolicyRun] = []
    seen: set[str] = set()
    for i, entry in enumerate(spec.policies):
        if entry.name not in workload.policies:
            raise InputError(
                path, f"field 'policies[{i}].name'", f"unknown policy {entry.name!r} for {kind}; known: {', '.join(workload.policies)}"
            )
        definition = workload.policies[entry.name]
        for key in entry.sweep:
            if key in (entry.model_extra or {}):
                raise InputError(path, f"field 'policies[{i}].{key}'", "given both as a parameter and in 'sweep'")
        for label, values in entry.expanded():
            try:
                params = definition.params.model_validate(values)
            except pydantic.ValidationError as err:
                raise from_validation_error(path, err, prefix=f"policies[{i}]") from None
            if label in seen:
                raise InputError(path, f"field 'policies[{i}].label'", f"label {label!r} is used twice; give each entry a unique label")
            seen.add(label)
            policies.append(PolicyRun(label, definition, params))

    return LoadedSpec(path, hashlib.sha256(data).hexdigest(), spec, profile, workload, workload_params, policies, memory)
