"""The ``harness`` command line: one module per command group, plus each workload's own commands.

``app`` is the whole command line (made on first use); ``harness.__main__.main`` runs
:func:`command_line`, which leaves the workloads' commands out (and so does not import every
workload) when the command named is one of the core's own outside the groups a workload may
extend: ``harness sim spec.toml`` imports the spec's workload alone. The core groups register
themselves from their modules; a workload adds commands through its ``commands`` field
(``harness.workload.Workload``): a name with a space (``"trace synth-layers"``) goes into that group.
"""

from __future__ import annotations

import typer

from harness.cli import bench, compare, dashboard, export, profiles, run, trace

WORKLOAD_GROUPS = {"trace": trace.trace_app}  # the core groups a workload's command may join


def _core_app() -> typer.Typer:
    core = typer.Typer(
        help="Simulate and replay GPU scheduling policies: will this policy pay off on real hardware, and by how much?",
        no_args_is_help=True,
        add_completion=False,
    )
    for module in (run, bench, profiles, trace, export, compare, dashboard):
        module.register(core)
    return core


def _register_workload_commands(app: typer.Typer) -> None:
    from harness.workload import registry
    from sim import SimBackend

    groups = dict(WORKLOAD_GROUPS)
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


_whole: typer.Typer | None = None


def whole_app() -> typer.Typer:
    """The command line with every workload's commands (made once)."""
    global _whole
    if _whole is None:
        made = _core_app()
        _register_workload_commands(made)
        _whole = made
    return _whole


def command_line(args: list[str]) -> typer.Typer:
    """The command line that runs ``args`` (the arguments after the program's name): the core's alone where
    ``args`` name one of its own commands that no workload extends, else :func:`whole_app`."""
    if _whole is None and args and args[0] not in WORKLOAD_GROUPS:
        core = _core_app()
        if args[0] in typer.main.get_command(core).commands:  # type: ignore[attr-defined]
            return core
    return whole_app()


def __getattr__(name: str) -> object:
    if name == "app":
        return whole_app()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["app", "command_line", "whole_app"]
