"""``harness dashboard``: the Streamlit web UI over results folders."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from harness.cli.common import console


def dashboard(
    results: list[Path] = typer.Argument(
        None, help="Results folders, folders of them, or fidelity tables (default: results/)."
    ),
    host: str = typer.Option("127.0.0.1", help="Address to bind; 127.0.0.1 keeps the dashboard on this machine."),
    port: int = typer.Option(8501, help="Port to serve on."),
) -> None:
    """Browse and compare results in a Streamlit app (runs, policy comparison, timelines, fidelity, sweeps)."""
    import dashboard as package
    from dashboard.sources import DIRS_ENV

    app_path = Path(package.__file__).parent / "app.py"
    paths = [str(p.resolve()) for p in (results or [Path("results")])]
    env = dict(os.environ, **{DIRS_ENV: os.pathsep.join(paths)})
    command = [
        sys.executable,
        "-m",
        "streamlit",
        "run",
        str(app_path),
        "--server.address",
        host,
        "--server.port",
        str(port),
        "--server.headless",
        "true",
        "--browser.gatherUsageStats",
        "false",
        "--theme.base",
        "light",
        "--client.toolbarMode",
        "viewer",
        # dashboard/static/ at /app/static/: the timeline chart's plotly.js, which browsers cache (the component
        # route makes them fetch it afresh on every load; dashboard/zoom_chart.py).
        "--server.enableStaticServing",
        "true",
    ]
    console.print(f"dashboard on [bold]http://{host}:{port}[/] over {len(paths)} path(s); Ctrl-C stops it")
    sys.stdout.flush()
    # Become the server (no child left behind when this process is stopped).
    os.execve(sys.executable, command, env)


def register(app: typer.Typer) -> None:
    app.command()(dashboard)
