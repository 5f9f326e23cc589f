"""A command of one spec imports that spec's workload alone (harness.cli.command_line, harness.workload.workload_named),
and still finds every workload as the registry does."""

from __future__ import annotations

import subprocess
import sys

from harness.paths import REPO_ROOT, SPECS_DIR
from harness.workload import registry, workload_named


def test_workload_named_is_the_registrys_workload():
    for name, workload in registry().items():
        assert workload_named(name) is workload
    for unknown in ("no_such_workload", "", "../recorded", "Recorded", None, ["recorded"]):
        assert workload_named(unknown) is None


def test_sim_imports_its_workload_alone_and_the_whole_app_has_every_command():
    script = f"""
import sys
from harness.cli import command_line
from harness.spec import load_spec
import typer
core = command_line(["sim", "x.toml"])
loaded = load_spec(__import__("pathlib").Path({str(SPECS_DIR / "recorded_decode_async.toml")!r}))
print(sorted(m for m in sys.modules if m.startswith("workloads.") and m.count(".") == 1))
print(loaded.workload.name)
whole = command_line(["trace", "--help"])
print(sorted(typer.main.get_command(whole).commands["trace"].commands))
print(sorted(set(typer.main.get_command(whole).commands) - set(typer.main.get_command(core).commands)))
"""
    out = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    modules, workload, trace_commands, workload_commands = out.stdout.splitlines()
    assert modules == "['workloads.recorded']" and workload == "recorded"
    assert "as-run" in trace_commands and "synth-layers" in trace_commands  # the workloads' trace commands
    assert "bench-batching" in workload_commands  # a workload's own top-level command, in the whole app only
