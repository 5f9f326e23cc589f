"""The import rules of ARCHITECTURE.md, checked on every module's imports (lazy ones inside functions too)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from harness.paths import REPO_ROOT

# Layer of a module, from its dotted name. harness.cli (and python -m harness) is the top; the rest of
# harness is the core.
PACKAGES = ("harness", "sim", "replay", "workloads", "fidelity", "dashboard")

REGISTRY = "harness.workload"  # the one core module that imports the workloads package (to discover them)

# layer -> layers it may import (besides itself, the standard library and third-party packages)
ALLOWED = {
    "core": set(),
    "sim": {"core"},
    "replay": {"core"},
    "workloads": {"core"},
    "fidelity": {"core"},
    "dashboard": {"core", "fidelity"},
    "cli": {"core", "sim", "replay", "fidelity", "dashboard"},
}


def layer(module: str) -> str | None:
    top = module.split(".")[0]
    if top not in PACKAGES:
        return None
    if top == "harness":
        return "cli" if module.startswith(("harness.cli", "harness.__main__")) else "core"
    return top


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports(path: Path, text: str | None = None) -> list[tuple[int, str]]:
    """(line, imported module) for every import statement in the file (or ``text``), at any depth."""
    found = []
    for node in ast.walk(ast.parse(path.read_text() if text is None else text, str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module == "workloads":
            found += [(node.lineno, f"workloads.{alias.name}") for alias in node.names]  # names a workload
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found += [(node.lineno, node.module)]
    return found


def violations(path: Path, text: str | None = None) -> list[str]:
    """What breaks the rules among the imports of ``path`` (whose source is ``text`` when given)."""
    importer = module_name(path)
    mine = layer(importer)
    problems = []
    for line, imported in imports(path, text):
        theirs = layer(imported)
        if theirs is None or mine is None:
            continue
        where = f"{path.relative_to(REPO_ROOT)}:{line} imports {imported}"
        if imported == "workloads":
            if importer not in (REGISTRY, "workloads"):
                problems.append(f"{where}: only {REGISTRY}.registry() imports the workloads package")
            continue
        if imported.startswith("workloads.") and theirs == "workloads":
            own = importer.split(".")[:2]
            if imported.split(".")[:2] != own:
                problems.append(f"{where}: only its own workload may name a workload (use harness.workload.registry())")
            continue
        if theirs != mine and theirs not in ALLOWED[mine]:
            problems.append(f"{where}: layer {mine!r} may not import layer {theirs!r}")
    return problems


SOURCES = sorted(p for package in PACKAGES for p in (REPO_ROOT / package).rglob("*.py"))


def test_every_package_is_checked():
    assert len(SOURCES) > 50
    assert {layer(module_name(p)) for p in SOURCES} == set(ALLOWED)


@pytest.mark.parametrize("package", PACKAGES)
def test_imports_go_down_the_layers(package):
    problems = [v for p in SOURCES if p.relative_to(REPO_ROOT).parts[0] == package for v in violations(p)]
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize(
    ("importer", "source", "expected"),
    [
        ("sim/engine.py", "from replay.engine import ReplayBackend", "layer 'sim' may not import layer 'replay'"),
        ("replay/engine.py", "import workloads.layer_streaming.policies", "only its own workload may name a workload"),
        ("harness/runner.py", "from workloads.kv_backup import WORKLOAD", "only its own workload may name a workload"),
        ("harness/spec.py", "from workloads import kv_backup", "only its own workload may name a workload"),
        ("harness/cli/run.py", "from workloads.kv_backup import WORKLOAD", "only its own workload may name a workload"),
        ("harness/spec.py", "from sim import SimBackend", "layer 'core' may not import layer 'sim'"),
        (
            "workloads/kv_backup/experiments.py",
            "def f():\n    from sim import SimBackend",
            "layer 'workloads' may not import layer 'sim'",
        ),
        (
            "workloads/kv_backup/metrics.py",
            "from workloads.layer_streaming.inputs import Segment",
            "only its own workload",
        ),
        ("dashboard/app.py", "from harness.cli import app", "layer 'dashboard' may not import layer 'cli'"),
        (
            "fidelity/report.py",
            "from replay.engine import ReplayBackend",
            "layer 'fidelity' may not import layer 'replay'",
        ),
    ],
)
def test_a_wrong_import_is_caught(importer, source, expected):
    problems = violations(REPO_ROOT / importer, source)
    assert len(problems) == 1 and expected in problems[0], problems


def test_allowed_imports_pass():
    allowed = {
        "workloads/kv_backup/metrics.py": (
            "from workloads.kv_backup.inputs import KvBackupInputs\nfrom harness.runtime import Stream"
        ),
        "harness/cli/run.py": "from sim import SimBackend\nfrom replay.engine import ReplayBackend",
        "dashboard/fidelity.py": "from fidelity.compare import fidelity_table",
        "harness/workload.py": "import importlib\nimport workloads as package",
    }
    for importer, source in allowed.items():
        assert violations(REPO_ROOT / importer, source) == [], importer
