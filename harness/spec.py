"""Experiment specs: a TOML file naming a workload, its inputs, the policies to
compare, the hardware profile and the seed. The format is documented in the
README ("Spec format"); everything is validated here, before anything runs.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import tomllib
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pydantic

from harness.errors import InputError, from_validation_error
from harness.limits import ENV_RUNS, MAX_DURATION_US, Limits
from harness.profile import Profile, load_profile
from harness.workload import PolicyDef, PolicyParams, PrepareContext, Workload, WorkloadParams, registry, workload_named


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
    # Names the results folder: not hidden (no leading '.'), short enough for a file name with its suffixes.
    name: str = pydantic.Field(max_length=100)
    description: str = ""
    profile: str
    seed: int = pydantic.Field(default=0, ge=0)  # numpy's generators take seeds >= 0
    repetitions: int = pydantic.Field(default=1, ge=1)
    device_memory_bytes: int | None = pydantic.Field(default=None, gt=0)  # cap below the profile's memory
    workload: dict[str, Any]
    policies: list[PolicyEntry] = pydantic.Field(min_length=1)
    baseline: str | None = None  # the policy label the verdict measures the others against (default: the first)

    @pydantic.field_validator("name")
    @classmethod
    def _file_name(cls, name: str) -> str:
        if not name or any(not (c.isascii() and (c.isalnum() or c in "_.-")) for c in name):
            raise ValueError(f"{name!r}: use letters, digits, '.', '_' and '-' only (it names the results folder)")
        if name.startswith("."):
            raise ValueError(f"{name!r} starts with '.': its results folder would be hidden")
        return name


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

    @property
    def baseline(self) -> str:
        """The policy label the verdict measures the others against: the spec's ``baseline``, else the first."""
        return self.spec.baseline or self.policies[0].label

    def prepare_context(self) -> PrepareContext:
        """What the workload's ``prepare`` is given for this spec."""
        return PrepareContext(
            self.workload_params, self.path.parent, self.profile, self.device_memory_bytes, self.spec.seed
        )


def load_spec(
    path: str | Path, workload_overrides: dict[str, Any] | None = None, limits: Limits | None = None
) -> LoadedSpec:
    """Read and validate a spec; ``workload_overrides`` replace keys of its ``[workload]`` table.

    ``limits`` (default: :meth:`Limits.from_env`) bounds the number of runs, counted before a sweep is expanded.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise InputError(path, "", "spec file not found") from None
    except IsADirectoryError:
        raise InputError(path, "", "is a folder, not a spec file") from None
    except OSError as err:
        raise InputError(path, "", f"cannot read the spec file: {err.strerror or err}") from None
    try:
        raw = tomllib.loads(data.decode())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise InputError(path, "", f"malformed TOML: {err}") from None
    _check_tables(path, raw)
    _check_numbers(path, {**raw, "workload": {**raw.get("workload", {}), **(workload_overrides or {})}})
    _check_no_bools(path, ExperimentSpec, raw, "")
    try:
        spec = ExperimentSpec.model_validate(raw)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err) from None

    profile = _load_spec_profile(path, spec.profile)
    memory = min(spec.device_memory_bytes or profile.device.memory_bytes, profile.device.memory_bytes)

    values = {**spec.workload, **(workload_overrides or {})}
    kind = values.pop("kind", None)
    workload = workload_named(kind)
    if workload is None:
        raise InputError(
            path, "field 'workload.kind'", f"unknown workload {kind!r}; known: {', '.join(sorted(registry()))}"
        )
    _check_no_bools(path, workload.params, values, "workload")
    try:
        workload_params = workload.params.model_validate(values)
    except pydantic.ValidationError as err:
        raise from_validation_error(path, err, prefix="workload") from None

    _check_run_count(path, spec, limits or Limits.from_env())
    policies: list[PolicyRun] = []
    seen: set[str] = set()
    for i, entry in enumerate(spec.policies):
        if entry.name not in workload.policies:
            raise InputError(
                path,
                f"field 'policies[{i}].name'",
                f"unknown policy {entry.name!r} for {kind}; known: {', '.join(workload.policies)}",
            )
        definition = workload.policies[entry.name]
        for key in entry.sweep:
            if key in (entry.model_extra or {}):
                raise InputError(path, f"field 'policies[{i}].{key}'", "given both as a parameter and in 'sweep'")
        for label, values in entry.expanded():
            _check_no_bools(path, definition.params, values, f"policies[{i}]")
            try:
                params = definition.params.model_validate(values)
            except pydantic.ValidationError as err:
                raise from_validation_error(path, err, prefix=f"policies[{i}]") from None
            if label in seen:
                raise InputError(
                    path,
                    f"field 'policies[{i}].label'",
                    f"label {label!r} is used twice; give each entry a unique label",
                )
            seen.add(label)
            policies.append(PolicyRun(label, definition, params))

    if spec.baseline is not None and spec.baseline not in seen:
        raise InputError(
            path,
            "field 'baseline'",
            f"{spec.baseline!r} is not a policy label of this spec; labels: {', '.join(p.label for p in policies)}",
        )
    return LoadedSpec(
        path, hashlib.sha256(data).hexdigest(), spec, profile, workload, workload_params, policies, memory
    )


def _check_tables(path: Path, raw: dict[str, Any]) -> None:
    """Refuse ``[workload]`` given as a value (``workload = "layer_streaming"``) before anything reads into it."""
    value = raw.get("workload")
    if value is None or isinstance(value, dict):
        return
    kinds = {str: "text", int: "number", float: "number", bool: "true/false", list: "list"}
    got = f"the {kinds.get(type(value), type(value).__name__)} {json.dumps(value, default=str)}"
    fix = f'[workload] on a line of its own and kind = "{value}" below it' if isinstance(value, str) else ""
    raise InputError(
        path,
        "field 'workload'",
        f"must be a table (its kind and parameters), got {got}" + (f": write {fix}" if fix else ""),
    )


def _check_numbers(path: Path, raw: Any, where: str = "") -> None:
    """Refuse NaN and infinities anywhere in the spec, and times beyond :data:`MAX_DURATION_US`.

    Times are the keys ending in ``_us``, ``_ms`` or ``_s`` (and the values of lists under such keys).
    """
    items = raw.items() if isinstance(raw, dict) else enumerate(raw) if isinstance(raw, list) else ()
    for key, value in items:
        here = f"{where}.{key}" if isinstance(key, str) and where else str(key) if not where else f"{where}[{key}]"
        if isinstance(value, (dict, list)):
            _check_numbers(path, value, here)
        elif isinstance(value, float) and not math.isfinite(value):
            raise InputError(path, f"field '{here}'", f"must be a finite number, got {value}")
        elif isinstance(value, (int, float)) and not isinstance(value, bool):
            name = here.split(".")[-1].split("[")[0]
            if "per_" in name:  # a rate (rate_per_s), not a time
                continue
            scale = next((f for suffix, f in (("_us", 1.0), ("_ms", 1e3), ("_s", 1e6)) if name.endswith(suffix)), None)
            if scale is not None and abs(value) * scale > MAX_DURATION_US:
                raise InputError(
                    path,
                    f"field '{here}'",
                    f"{value} is too long a time (at most {MAX_DURATION_US:.0e} µs, ~11.6 days)",
                )


def _load_spec_profile(path: Path, profile: str) -> Profile:
    """The spec's profile: a GPU alias, a bundled name, or a .toml path relative to the spec's folder.

    An error inside a profile file names that file and its field; an unknown name names the spec's field.
    """
    candidate = Path(profile)
    is_path = candidate.suffix == ".toml" or "/" in profile or "\\" in profile
    target: str | Path = profile
    if is_path and not candidate.is_absolute():
        target = path.parent / candidate
    try:
        return load_profile(target)
    except InputError as err:
        if is_path and err.source == str(target) and err.where == "" and "not found" in err.message:
            raise InputError(path, "field 'profile'", f"profile file {str(target)!r} not found") from None
        if not is_path and err.source == profile:
            raise InputError(path, "field 'profile'", f"{profile!r}: {err.message}") from None
        raise InputError(err.source, err.where, f"{err.message} (profile of {path})") from None


def _accepts_bool(annotation: Any) -> bool:
    if annotation is bool or annotation is Any:
        return True
    if typing.get_origin(annotation) in (typing.Union, types.UnionType, typing.Literal):
        return any(_accepts_bool(a) or a is True or a is False for a in typing.get_args(annotation))
    return False


def _check_no_bools(path: Path, model: type[pydantic.BaseModel], values: dict[str, Any], prefix: str) -> None:
    """Refuse ``true``/``false`` for a field that is not a flag (pydantic would read ``depth = true`` as 1)."""
    for key, value in values.items():
        field = model.model_fields.get(key)
        flags = (
            [value]
            if isinstance(value, bool)
            else [v for v in value if isinstance(v, bool)]
            if isinstance(value, list)
            else []
        )
        if field is not None and flags and not _accepts_bool(field.annotation):
            where = f"{prefix}.{key}" if prefix else key
            raise InputError(path, f"field '{where}'", f"expected a number or text, got {str(flags[0]).lower()}")


def _check_run_count(path: Path, spec: ExperimentSpec, limits: Limits) -> None:
    """Refuse more runs than the limit before a sweep is expanded (a 10^6-point sweep is counted, not built)."""
    points = [math.prod(len(v) for v in entry.sweep.values()) for entry in spec.policies]
    runs = sum(points) * spec.repetitions
    if runs <= limits.max_runs:
        return
    widest = max(range(len(points)), key=points.__getitem__)
    if spec.repetitions > 1 and spec.repetitions >= points[widest]:
        where = "field 'repetitions'"
    elif points[widest] > 1:
        where = f"field 'policies[{widest}].sweep'"
    else:
        where = "field 'policies'"
    raise InputError(
        path,
        where,
        f"{runs:,} runs ({sum(points):,} policy points x {spec.repetitions:,} repetitions) exceed the limit of "
        f"{limits.max_runs:,} runs; run fewer, or raise the limit with --max-runs or {ENV_RUNS}",
    )
