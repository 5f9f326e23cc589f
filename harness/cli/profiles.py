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
    base_profile: str | None = typer.Option(
        None,
        help="Profile whose memory figure caps the calibration runs (default: "
        f"{QUOTED_PROFILE}); with --profiler, the profile the calibration is added to (default: this GPU's).",
    ),
    notes: str = typer.Option("", help="Free text for the profile's provenance notes."),
    force: bool = typer.Option(False, help="Replace an existing profile file."),
    profiler: bool = typer.Option(
        False,
        "--profiler",
        help="Calibrate torch.profiler's host overhead per recorded event and a plain eager program's host costs "
        "instead, and write them into a copy of the base profile ([profiler.<mode>], [host_costs.pytorch_eager]).",
    ),
    modes: str = typer.Option(
        "cpu_cuda,cpu_cuda_sync,cuda", help="--profiler: the profiler modes to calibrate, comma-separated."
    ),
    rounds: int = typer.Option(9, min=1, help="--profiler: rounds (one fresh process per round and mode)."),
    script: Path | None = typer.Option(
        None, help="--profiler: also time this script of yours unprofiled and profiled, in each round and mode."
    ),
    raw: Path | None = typer.Option(None, help="--profiler: also write every round's figures to this JSON file."),
    from_raw: Path | None = typer.Option(
        None,
        "--from-raw",
        help="--profiler: fit the rounds of an earlier --raw file instead of measuring (no GPU needed), e.g. a "
        "calibration stopped before it wrote its profile.",
    ),
    estimator: str = typer.Option(
        "nnls",
        help="--profiler: how each round's per-event overheads are fitted: nnls (least squares over every tight "
        "shape) or isolated (each kind from the shapes that isolate it); nnls_share / isolated_share: the eager "
        "kinds as shares of each round's simple call; isolated_share_gemm: isolated_share plus gemm_launch, a GEMM "
        "launch's (cuLaunchKernelEx) premium from the composite shape (docs/recorded-fidelity.md).",
    ),
    budget_s: float = typer.Option(
        300.0,
        help="--profiler: start no round after this many seconds (the first always runs; the rounds done are kept); "
        "--collectives: measure no size after this many seconds.",
    ),
    collectives: bool = typer.Option(
        False,
        "--collectives",
        help="Measure NCCL collectives by size (1 KiB..1 GiB) and GPU count (one process per GPU, torch.distributed) "
        "and write them into a copy of the base profile ([[collectives]], [topology]). Needs >= 2 GPUs.",
    ),
    gpus: str = typer.Option("", help="--collectives: GPU counts to measure, comma-separated (default 2,4,8 as fit)."),
    interconnect: str = typer.Option("nvlink", help="--collectives: the [topology] interconnect (nvlink or pcie)."),
) -> None:
    """Measure this GPU's hardware profile (host link timed as runs issue copies, its drift, duplex, host costs,
    kernel tables) and write it.

    With --profiler: measure what torch.profiler adds per recorded event in each mode, and what a plain eager
    PyTorch program pays per call, and write the base profile with them (what profiler_overhead = "subtract"
    and what-ifs of recorded programs read)."""
    if profiler:
        _calibrate_profiler(name, out, base_profile, force, modes, rounds, script, raw, budget_s, from_raw, estimator)
        return
    if collectives:
        _calibrate_collectives(name, out, base_profile, force, gpus, interconnect, budget_s)
        return
    base_profile = base_profile or QUOTED_PROFILE
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


def _gpu_default_profile(gpu_name: str) -> str:
    """The profile alias whose GPU is ``gpu_name`` (traces/profiles/gpu-defaults.toml), else the quoted default."""
    from harness.profile import gpu_defaults

    match = [alias for alias, default in sorted(gpu_defaults().items()) if default.gpu_name == gpu_name]
    return match[0] if match else QUOTED_PROFILE


def _calibrate_profiler(
    name: str,
    out: Path | None,
    base_profile: str | None,
    force: bool,
    modes: str,
    rounds: int,
    script: Path | None,
    raw: Path | None,
    budget_s: float,
    from_raw: Path | None = None,
    estimator: str = "nnls",
) -> None:
    import json

    from harness.paths import PROFILES_DIR
    from harness.profile import load_profile
    from replay.gpu import CudaUnavailable, require_cuda
    from replay.profiler_calibration import calibrate_profiler, fit_rounds, rounds_by_mode

    path = out or PROFILES_DIR / f"{name}.toml"
    if path.exists() and not force:
        fail(f"{path}: already exists; pass --force to replace it")
    if not path.exists():
        check_out(path, "profile file")
    if script is not None and not script.is_file():
        fail(f"{script}: script not found")
    chosen = tuple(m.strip() for m in modes.split(",") if m.strip())
    from harness.profiler_fit import ESTIMATORS

    if estimator not in ESTIMATORS:
        fail(f"--estimator: {estimator!r} is not one of {', '.join(ESTIMATORS)}")
    log = lambda line: console.print(line, highlight=False)  # noqa: E731
    if from_raw is not None:
        try:
            recorded = json.loads(from_raw.read_text())
            by_mode = rounds_by_mode(recorded, str(from_raw))
            first = next(iter(by_mode.values()))[0]
            base = load_profile(base_profile or _gpu_default_profile(first["device"]))
            result = fit_rounds(
                by_mode, recorded.get("script") or [], recorded.get("failures") or [], log, estimator
            )
        except OSError as err:
            fail(f"{from_raw}: cannot read: {err.strerror or err}")
        except json.JSONDecodeError as err:
            fail(f"{from_raw}: not JSON: line {err.lineno}: {err.msg}")
        except (InputError, ValueError, RuntimeError) as err:
            fail(f"harness calibrate --profiler --from-raw: {err}")
        rounds = max(len(v) for v in by_mode.values())
        _write_profiler_profile(name, path, base, result, rounds)
        return
    try:
        torch = require_cuda()
        gpu = torch.cuda.get_device_name(0)
        del torch  # the rounds run in fresh processes; this one only names the GPU
        base = load_profile(base_profile or _gpu_default_profile(gpu))
        result = calibrate_profiler(chosen, rounds, "cuda:0", script, log=log, budget_s=budget_s, raw_path=raw,
                                    estimator=estimator)
    except CudaUnavailable as err:
        fail(f"harness calibrate --profiler: {err}")
    except (InputError, ValueError) as err:
        fail(f"harness calibrate --profiler: {err}")
    except RuntimeError as err:
        fail(f"harness calibrate --profiler: {err}", 1)
    _write_profiler_profile(name, path, base, result, rounds)


def _write_profiler_profile(name: str, path: Path, base, result: dict, rounds: int) -> None:
    import tomllib

    from harness.profile import HardwareProfile
    from replay.calibrate import write_profile
    from replay.profiler_calibration import profile_with_calibration

    base_raw = tomllib.loads(base.path.read_text())
    thread_wake = base.host.thread_wake_us
    updated = profile_with_calibration(base_raw, result, thread_wake)
    updated["name"] = name
    provenance = dict(updated["provenance"])
    provenance["notes"] = (
        provenance.get("notes", "")
        + " [profiler.*] and [host_costs.pytorch_eager] measured by `harness calibrate --profiler` on "
        f"{result['device']} with torch {result['torch']} ({rounds} rounds; base profile {base.name})."
    ).strip()
    updated["provenance"] = provenance
    HardwareProfile.model_validate(updated)
    if result["failures"]:
        console.print(f"[yellow]{len(result['failures'])} round(s) failed and were left out[/]", highlight=False)
    header = (
        f"# Hardware profile, format version 1 (see traces/README.md). {base.name} with the profiler calibration of "
        f"`harness calibrate --profiler --name {name}`.\n"
    )
    write_profile(updated, path, header)
    console.print(f"wrote [bold]{path}[/]")


def _calibrate_collectives(
    name: str, out: Path | None, base_profile: str | None, force: bool, gpus: str, interconnect: str, budget_s: float
) -> None:
    import tomllib

    from harness.paths import PROFILES_DIR
    from harness.profile import HardwareProfile, load_profile

    path = out or PROFILES_DIR / f"{name}.toml"
    if path.exists() and not force:
        fail(f"{path}: already exists; pass --force to replace it")
    if interconnect not in ("nvlink", "pcie"):
        fail(f"--interconnect: {interconnect!r} is neither nvlink nor pcie")
    try:
        counts = tuple(int(g) for g in gpus.split(",") if g.strip()) or None
    except ValueError:
        fail(f"--gpus: {gpus!r} is not a comma-separated list of GPU counts")
    if not path.exists():
        check_out(path, "profile file")
    from replay.collective_calibration import calibrate_collectives
    from replay.gpu import CudaUnavailable

    try:
        base = load_profile(base_profile or QUOTED_PROFILE)
        log = lambda line: console.print(line, highlight=False)  # noqa: E731
        base_raw = tomllib.loads(base.path.read_text())
        updated = calibrate_collectives(base_raw, counts, interconnect=interconnect, budget_s=budget_s, log=log)
    except CudaUnavailable as err:
        fail(f"harness calibrate --collectives: {err}")
    except InputError as err:
        fail(str(err))
    except (RuntimeError, ValueError) as err:
        fail(f"harness calibrate --collectives: {err}", 1)
    updated["name"] = name
    provenance = dict(updated["provenance"])
    provenance["notes"] = (
        provenance.get("notes", "") + f" [[collectives]] and [topology] measured by `harness calibrate --collectives`"
        f" (torch.distributed + NCCL, one process per GPU; base profile {base.name})."
    ).strip()
    updated["provenance"] = provenance
    HardwareProfile.model_validate(updated)
    from replay.calibrate import write_profile

    header = (
        f"# Hardware profile, format version 1 (see traces/README.md). {base.name} with the collectives of "
        f"`harness calibrate --collectives --name {name}`.\n"
    )
    write_profile(updated, path, header)
    console.print(f"wrote [bold]{path}[/]")


def register(app: typer.Typer) -> None:
    app.command()(profiles)
    app.command()(calibrate)
