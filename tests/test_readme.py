"""The README's commands: the two set-up commands make their own virtual environment, `.ci/run` runs exactly the
README's test command, and every `harness` command the README shows exists with the options it uses."""

from __future__ import annotations

import re
import shlex
import subprocess

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.paths import REPO_ROOT

README = (REPO_ROOT / "README.md").read_text()
CI_RUN = REPO_ROOT / ".ci" / "run"


def line_after(comment: str) -> str:
    lines = README.splitlines()
    return lines[lines.index(comment) + 1]


def test_the_two_commands_make_or_reuse_a_venv_and_never_pip_install_into_the_system_python():
    demo = line_after("# run the bundled example end to end (layer streaming: sync vs prefetch vs resident)")
    tests = line_after("# run the tests")
    for command in (demo, tests):
        steps = [step.strip() for step in command.split("&&")]
        assert steps[0] == "python3 -m venv .venv", command  # creates it, or reuses an existing one
        assert all(step.startswith(".venv/bin/") for step in steps[1:]), command  # never the system's pip
    assert demo.endswith(".venv/bin/harness demo") and "-e ." in demo
    assert "'.[test]'" in tests and tests.endswith("-m pytest -q")


def test_ci_runs_exactly_the_readme_test_command():
    printed = subprocess.run(["bash", str(CI_RUN), "--print-test-command"], capture_output=True, text=True, check=True)
    assert printed.stdout.strip() == line_after("# run the tests")
    script = CI_RUN.read_text()
    assert 'eval "$test_command"' in script and "pytest" not in script.replace("tests/test_readme.py", "")


def shown_commands() -> list[list[str]]:
    """Every `harness ...` line of the README's code blocks, as argv after `harness`."""
    blocks = re.findall(r"```bash\n(.*?)```", README, flags=re.S)
    found = []
    for block in blocks:
        for line in block.splitlines():
            line = line.split(" #")[0].strip()
            if line.startswith("harness "):
                found.append(shlex.split(line)[1:])
    return found


@pytest.mark.parametrize("argv", shown_commands(), ids=lambda a: " ".join(a[:2]))
def test_every_harness_command_the_readme_shows_exists_with_its_options(argv):
    words = [w for w in argv if not w.startswith("-")]
    command = words[:2] if words and words[0] in ("trace", "export") else words[:1]
    result = CliRunner().invoke(app, [*command, "--help"])
    assert result.exit_code == 0, (argv, result.output)
    for option in (a.split("=")[0] for a in argv if a.startswith("--")):
        assert option in result.output, (argv, option)


def test_the_readme_keeps_measured_history_out():
    """Measured history (which machine, what it was before) lives in docs/performance.md, each figure with its machine."""
    for phrase in ("the lent", "was 5.3 s", "Xeon", "EPYC"):
        assert phrase not in README, phrase
    assert (REPO_ROOT / "docs" / "performance.md").is_file() and "docs/performance.md" in README
