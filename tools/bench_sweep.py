"""Time a layer-streaming sweep serially, on the local pool and on a local Ray cluster; check the results agree.

    python3 tools/bench_sweep.py [--points 500] [--segments 200] [--workers 2] [--no-ray]

The sweep is ``sync`` plus ``prefetch`` at depths 1..points-1, one run each. Modes, each timed end to end through
``harness.sweep.run_sweep`` (prepare, runs, assembly; no cache; the same as ``harness sim SPEC`` without and with
``--workers N``, ``--ray local``):

* serial: one process;
* pool: ``--workers`` forked processes;
* Ray: a local Ray cluster of ``--workers`` CPUs, timed once with its start (cold) and once already running (warm).

"Beyond the work": the worker-seconds a parallel mode spent beyond the serial run's work,
``workers x (T_mode - T_fixed) - W``, where ``T_fixed`` is preparing the spec and the assembly's fixed part (timed
apart) and ``W`` the serial time less ``T_fixed`` (the runs' simulation, metrics and tables). The per-task overhead is
the slope of that between the default chunks and 5 runs per task (sending a chunk, its results, a task's scheduling);
the rest is fixed (starting workers, the idle worker during the last task, the driver's share of the cores).
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from harness.cli.run import sim_backend_factory
from harness.machine import cpu_name
from harness.runner import assemble, prepare_spec
from harness.spec import load_spec
from harness.sweep import SweepOptions, run_sweep


def spec_text(points: int, segments: int) -> str:
    depths = ", ".join(str(d) for d in range(1, points))
    return f"""name = "bench-sweep"
profile = "h100"
seed = 0

[workload]
kind = "layer_streaming"
segments = {segments}
param_bytes = 67108864
compute_us = 700.0
jitter = 0.25

[[policies]]
name = "sync"

[[policies]]
name = "prefetch"
sweep = {{ depth = [{depths}] }}
"""


def machine() -> str:
    return f"{cpu_name()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def timed(loaded, options: SweepOptions):
    clock = time.perf_counter()
    report = run_sweep(loaded, sim_backend_factory, options)
    return time.perf_counter() - clock, report


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=500)
    parser.add_argument("--segments", type=int, default=200)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()

    folder = Path(tempfile.mkdtemp(prefix="bench-sweep-"))
    spec = folder / "spec.toml"
    spec.write_text(spec_text(args.points, args.segments))
    loaded = load_spec(spec)
    print(f"machine: {machine()}")
    serial_s, serial = timed(loaded, SweepOptions())
    runs = serial.results.runs
    clock = time.perf_counter()
    prepare_spec(loaded)
    tables = [{name: t.slice(i, 1) for name, t in serial.results.tables.items() if name == "runs"} for i in range(2)]
    assemble(loaded, tables)  # the assembly's fixed part; its per-row part is counted with the runs
    fixed = time.perf_counter() - clock
    work = serial_s - fixed
    ops = int(runs["n_ops"].sum())
    print(
        f"sweep: {len(runs)} runs of {args.segments} segments, {ops:,} ops; {work:.2f} s of runs serially "
        f"({1e3 * work / len(runs):.1f} ms per run: simulation {1e3 * runs['wall_s'].mean():.1f} ms, metrics and "
        f"tables the rest); prepare and assembly: {fixed:.2f} s"
    )
    reference = {name: t for name, t in serial.results.tables.items() if name != "runs"}
    w = args.workers
    rows = [("serial", serial_s, serial, 1)]
    rows.append(("pool", *timed(loaded, SweepOptions(workers=w)), w))
    rows.append(("pool 5/task", *timed(loaded, SweepOptions(workers=w, task_runs=5)), w))
    if not args.no_ray:
        rows.append(("ray cold", *timed(loaded, SweepOptions(workers=w, ray="local")), w))
        import ray

        ray.init(num_cpus=w, include_dashboard=False, log_to_driver=False)
        rows.append(("ray warm", *timed(loaded, SweepOptions(ray="auto")), w))  # its workers start and prepare
        rows.append(("ray warm 2", *timed(loaded, SweepOptions(ray="auto")), w))  # workers running, spec prepared
        rows.append(("ray 5/task", *timed(loaded, SweepOptions(ray="auto", task_runs=5)), w))
        ray.shutdown()

    print(f"{'mode':<13}{'wall s':>8}{'speed-up':>10}{'tasks':>7}{'beyond the work':>17}  identical")
    by_name = {}
    for name, wall, report, workers in rows:
        beyond = workers * (wall - fixed) - work  # worker-seconds not spent on the runs
        by_name[name] = (beyond, report.tasks)
        same = all(report.results.tables[n].equals(t, check_metadata=True) for n, t in reference.items())
        print(
            f"{name:<13}{wall:>8.2f}{serial_s / wall:>9.2f}x{report.tasks:>7}{beyond:>15.2f} s"
            f"  {'yes' if same else 'NO'}"
        )
    task_s = work / by_name["pool"][1]
    pairs = [("pool", "pool", "pool 5/task")] + ([("ray", "ray warm 2", "ray 5/task")] if not args.no_ray else [])
    for label, coarse, fine in pairs:
        (b1, t1), (b2, t2) = by_name[coarse], by_name[fine]
        per_task = (b2 - b1) / (t2 - t1)
        fixed_part = b1 - per_task * t1
        print(
            f"{label}: per-task overhead {1e3 * per_task:.1f} ms ({100 * per_task / task_s:.1f}% of a "
            f"{1e3 * task_s:.0f} ms task of {by_name['pool'][1] and len(runs) // by_name['pool'][1]} runs); "
            f"fixed {fixed_part:.2f} worker-s (start, the last task's idle worker, the driver's share of the cores)"
        )


if __name__ == "__main__":
    main()
