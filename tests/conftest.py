import importlib.util
from dataclasses import dataclass

import pytest

from harness.profile import load_profile


@pytest.fixture(scope="session")
def h100():
    return load_profile("h100-sxm-pcie5")


# The GPU tests' fixtures (tests/test_replay_gpu*.py skip without CUDA before asking for them).
@pytest.fixture(scope="module")
def context():
    """A one-GPU replay context, shared by a module's tests."""
    from replay.engine import ReplayContext

    return ReplayContext(1)


@pytest.fixture(scope="module")
def profile():
    return load_profile("h100-sxm-pcie5")


# --------------------------------------------------------------------------- optional test groups


@dataclass(frozen=True)
class OptionalGroup:
    """Tests that need a package the ``test`` extra leaves out (tests/README.md lists them)."""

    module: str  # what must import
    package: str  # what to install, in words
    command: str  # the command that installs it and runs the group


OPTIONAL_GROUPS = {
    "ray": OptionalGroup("ray", "Ray", "pip install -e '.[test,ray]' && python -m pytest -m ray"),
    "hta": OptionalGroup("hta", "HolisticTraceAnalysis", "pip install -e '.[test,hta]' && python -m pytest -m hta"),
    "torch": OptionalGroup("torch", "torch (a CPU build is enough)", "pip install torch && python -m pytest -m torch"),
}


def _selected(config: pytest.Config, marker: str) -> bool:
    """Whether ``-m`` asks for this group by name: it selects a test carrying only this marker and no
    test without markers (``-m ray`` or ``-m "ray or hta"``, not ``-m "not ray"`` or no ``-m``)."""
    expression = config.getoption("markexpr") or ""
    if not expression:
        return False
    from _pytest.mark.expression import Expression

    compiled = Expression.compile(expression)
    return compiled.evaluate(lambda name, **_: name == marker) and not compiled.evaluate(lambda name, **_: False)


def _missing(item: pytest.Item) -> tuple[str, str] | None:
    """(marker, message) for the first optional group of ``item`` whose package is not installed."""
    for marker, group in OPTIONAL_GROUPS.items():
        if item.get_closest_marker(marker) is not None and importlib.util.find_spec(group.module) is None:
            return marker, f"needs {group.package}, which is not installed; run this group with: {group.command}"
    return None


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """A test of an optional group whose package is missing skips, naming the command that runs it..."""
    for item in items:
        missing = _missing(item)
        if missing is not None and not _selected(config, missing[0]):
            item.add_marker(pytest.mark.skip(reason=missing[1]))


def pytest_runtest_setup(item: pytest.Item) -> None:
    """...unless the group was asked for with ``-m``: then it fails, so a job meant to run it cannot pass
    without running it."""
    missing = _missing(item)
    if missing is not None and _selected(item.config, missing[0]):
        pytest.fail(f"-m selects the {missing[0]!r} tests but the test {missing[1]}", pytrace=False)
