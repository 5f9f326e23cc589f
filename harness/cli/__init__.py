"""The ``harness`` command line: one module per command group, plus each workload's own commands.

``app`` is the command line; ``harness.__main__.main`` runs it (the ``harness``
entry point). The core groups register themselves from their modules; a
workload adds commands through its ``commands`` field
(``harness.workload.Workload``): a name with a space (``"trace synth-layers"``)
goes into that group.
"""

from __future__ import annotations

import typer

from harness.cli import bench, compare, dashboard, export, profiles, run, trace
from harness.workload import registry

app = typer.Typer(
    help="Simulate and replay GPU scheduling policies: will this policy pay off on real hardware, and by how much?",
    no_args_is_help=True,
    add_completion=False,
)

for _module in (run, bench, profiles, trace, export, compare, dashboard):
    _module.register(app)


def _register_workload_commands() -> None:
    from sim import SimBackend

    groups = {"trace": trace.trace_app}
    for workload in registry().values():
        if workload.commands is None:
            continue
        for name, function in workload.commands(SimBackend).items():
            group, _, command = name.rpartition(" ")
            if group and group not in groups:
                raise RuntimeError(
                    f"workload {workload.name!r}: command {name!r} names no command group ({', '.join(groups)})"
                )
            (groups[group] if group else app).command(command)(function)


_register_workload_commands()

__all__ = ["app"]
