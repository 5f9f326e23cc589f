"""``harness profiles`` and ``harness calibrate``: the hardware profiles the simulator runs on."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from harness.cli.common import check_out, console, fail, print_table
from harness.errors import InputError
from harness.profile import QUOTED_PROFILE


def profiles() -> None:
    """List the bundled hardware profiles and which one is each GPU's default."""
    from harness.profile import available_profiles, gpu_defaults, load_profile
    from harness.runtime import Direction, HostMemory

    table = Table(title="hardware profiles (traces/profiles/)", title_justify="left")
    for column in ("name", "gpu", "memory GiB", "H2D 1 GiB GB/s", "launch µs", "source"):
        table.add_column(column)
    for name in available_profiles():
        p = load_profile(name)
        gbps = (1 << 30) / p.copy_time_us(1 << 30, Direction.H2D, HostMemory.PINNED) / 1e3
        table.add_row(
            name,
            p.device.gpu_name,
            f"{p.device.memory_bytes / 2**30:.1f}",
            f"{gbps:.1f}",
            f"{p.host.launch_us}",
            p.figures.provenance.source,
        )
    print_table(table)
    defaults = Table(
        title="GPU defaults (traces/profiles/gpu-defaults.toml): a spec may name the alias", title_justify="left"
    )
    for column in ("alias", "gpu", "profile"):
        defaults.add_column(column)
    for alias, default in sorted(gpu_defaults().items()):
        defaults.add_row(alias, default.gpu_name, default.profile)
    print_table(defaults)


def calibrate(
    name: str = typer.Option(..., help="Profile name (the file is traces/profiles/NAME.toml unless --out is given)."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Profile file to write."),
    base_profile: str = typer.Option(QUOTED_PROFILE, help="Profile whose memory figure caps the calibration runs."),
    notes: str = typer.Option("", help="Free text for the profile's provenance notes."),
    force: bool = typer.Option(False, help="Replace an existing profile file."),
) -> None:
    """Measure this GPU's hardware profile (host link, duplex, host costs, kernel tables) and write it."""
    from harness.paths import PROFILES_DIR
    from harness.profile import load_profile
    from replay.calibrate import calibrate as run_calibration
    from replay.calibrate import write_profile
    from replay.gpu import CudaUnavailable

    path = out or PROFILES_DIR / f"{name}.toml"
    if path.exists() and not force:
        fail(f"{path}: already exists; pass --force to replace it")
    if not path.exists():
        check_out(path, "profile file")
    try:
        base = load_profile(base_profile)
        raw = run_calibration(name, base, notes, log=lambda line: console.print(line, highlight=False))
    except CudaUnavailable as err:
        fail(f"harness calibrate: {err}")
    except InputError as err:
        fail(str(err))
    header = (
        f"# Hardware profile, format version 1 (see traces/README.md). Written by `harness calibrate --name {name}`.\n"
    )
    write_profile(raw, path, header)
    console.print(f"wrote [bold]{path}[/]")
    console.print(
        "to make it the simulator's default for this GPU, "
        "point the GPU's alias at it in traces/profiles/gpu-defaults.toml",
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command()(profiles)
    app.command()(calibrate)
