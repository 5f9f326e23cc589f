"""harness sim re-runs itself once with glibc's huge-page tunable, where the system offers transparent huge pages."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from harness.huge_pages import ENV_SWITCH, TUNABLE, glibc_version, huge_page_environment, thp_mode
from harness.paths import REPO_ROOT


@pytest.mark.parametrize(
    ("environ", "mode", "glibc", "tunables"),
    [
        ({}, "madvise", (2, 36), f"{TUNABLE}=1"),
        ({}, "always", (2, 35), f"{TUNABLE}=1"),
        ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 36), f"glibc.malloc.arena_max=2:{TUNABLE}=1"),
        ({"GLIBC_TUNABLES": f"{TUNABLE}=0"}, "madvise", (2, 36), None),  # the user's choice (or the re-run)
        ({"GLIBC_TUNABLES": f"glibc.malloc.arena_max=2:{TUNABLE}=1"}, "madvise", (2, 36), None),
        ({ENV_SWITCH: "0"}, "madvise", (2, 36), None),
        ({}, "never", (2, 36), None),
        ({}, None, (2, 36), None),
        ({}, "madvise", (2, 34), None),  # no such tunable before 2.35
        ({}, "madvise", None, None),  # another C library
    ],
)
def test_when_to_rerun_and_with_what(environ, mode, glibc, tunables):
    found = huge_page_environment({"PATH": "/bin", **environ}, mode, glibc)
    if tunables is None:
        assert found is None
    else:
        assert found == {"PATH": "/bin", **environ, "GLIBC_TUNABLES": tunables}


def test_sim_reruns_once_with_the_tunable():
    if huge_page_environment({}, thp_mode(), glibc_version()) is None:
        pytest.skip("no transparent huge pages or no glibc >= 2.35 here: sim runs on as it is")
    script = (
        "import os, sys; print('run', os.environ.get('GLIBC_TUNABLES'), flush=True); "
        "sys.argv = ['harness', 'sim', '--help']; from harness.__main__ import main; main()"
    )
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", ENV_SWITCH)}
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    runs = [line for line in out.stdout.splitlines() if line.startswith("run ")]
    assert runs == ["run None", f"run {TUNABLE}=1"]  # the first process, then the one it became
    assert "SPEC" in out.stdout  # the command ran (its help)
