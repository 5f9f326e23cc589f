"""How much of a layer-streaming fidelity error is the replay's host time? (no GPU; after a benchmark call)

    python3 tools/paid_host_costs.py OUT [--md FILE] [--device FIELD=VALUE ...]

For a folder written by ``fidelity/run_benchmark.sh`` on the layer-streaming specs (``OUT/specs/*.toml``,
``OUT/results/<spec>-replay/ops.parquet``, ``OUT/profile.toml``), reads from each replay policy's ops the
host time each runtime command actually cost (:func:`paid_host_costs`: the gap from a command's issue to
the next command's issue, as ``harness calibrate`` defines them, median over every segment but the first
and every repetition), then simulates each spec twice: under the calibrated profile, and under the same
profile with its ``[host]`` replaced by what that policy's replay paid. What the second simulation still
misses is the GPU side's (copies, kernels, dependencies); what it recovers is host time the calibration
did not predict. ``--device`` sets ``[device]`` figures of the profile first (both simulations), to see what
a figure the calibration did not take yet would change (``kernel_after_copy_us=6.5``). Prints a markdown table
(``--md`` writes it too).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pydantic

from fidelity.benchmark_folder import replayed_specs
from fidelity.respec import respec
from harness.profile import Profile, load_profile
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend

HOST_FIELDS = ("launch_us", "copy_launch_us", "record_us", "wait_us", "sync_wake_us", "alloc_us", "free_us")


def _segments(run_ops: pd.DataFrame) -> list[dict]:
    """A run's ops cut into segments: each starts at a copy on the compute stream (sync path) or at a wait."""
    segments: list[dict] = []
    for row in run_ops.sort_values("op_id").itertuples(index=False):
        if row.kind == "wait" or (row.kind == "copy_h2d" and row.stream == "compute"):
            segments.append({})
        if segments:
            segments[-1].setdefault(row.kind, row)
    return segments


def paid_gaps(run_ops: pd.DataFrame) -> dict[str, list[float]]:
    """Each command's host time in one layer-streaming run (``sync`` or ``prefetch`` with depth 1), µs.

    Keys: ``copy_launch_us``, ``launch_us``, ``sync_wake_us``, ``free_alloc_us`` (sync end to the next
    copy's issue: free then alloc) for a sync-path segment; ``wait_us``, ``launch_alloc_us`` (kernel issue
    to the side copy's issue: launch then alloc), ``copy_launch_us``, ``record_us``, ``sync_wake_us``,
    ``free_us`` (sync end to the next wait's issue) for a prefetched one. The first segment (warm-up of the
    run) and the last (no next command) are left out.
    """
    gaps: dict[str, list[float]] = {}

    def add(key: str, value: float) -> None:
        gaps.setdefault(key, []).append(float(value))

    segments = _segments(run_ops)
    for seg, nxt in zip(segments[1:-1], segments[2:]):
        if "host_sync" not in seg or "kernel" not in seg:
            continue
        sync, kernel = seg["host_sync"], seg["kernel"]
        add("sync_wake_us", sync.end_us - kernel.end_us)
        if "wait" not in seg:  # the synchronous path: copy, kernel, sync, free, (alloc of the next)
            add("copy_launch_us", kernel.issue_us - seg["copy_h2d"].issue_us)
            add("launch_us", sync.start_us - kernel.issue_us)
            if "copy_h2d" in nxt and "wait" not in nxt:
                add("free_alloc_us", nxt["copy_h2d"].issue_us - sync.end_us)
        elif "copy_h2d" in seg and "record" in seg:  # prefetched: wait, kernel, alloc + side copy, record, sync, free
            add("wait_us", kernel.issue_us - seg["wait"].issue_us)
            add("launch_alloc_us", seg["copy_h2d"].issue_us - kernel.issue_us)
            add("copy_launch_us", seg["record"].issue_us - seg["copy_h2d"].issue_us)
            add("record_us", sync.start_us - seg["record"].issue_us)
            if "wait" in nxt:
                add("free_us", nxt["wait"].issue_us - sync.end_us)
    return gaps


def paid_host_costs(ops: pd.DataFrame, calibrated: dict[str, float]) -> dict[str, float]:
    """The ``[host]`` figures one policy's replay runs paid (medians over segments and repetitions).

    A figure the policy never pays alone keeps its calibrated value, and a sum it pays is split with it:
    ``sync`` pays free + alloc together (``free_us`` calibrated, ``alloc_us`` the rest), ``prefetch`` pays
    launch + alloc together (``alloc_us`` calibrated, ``launch_us`` the rest); neither goes below zero.
    """
    pooled: dict[str, list[float]] = {}
    for _, run_ops in ops.groupby("run_id", sort=False):
        for key, values in paid_gaps(run_ops).items():
            pooled.setdefault(key, []).extend(values)
    med = {key: statistics.median(values) for key, values in pooled.items() if values}
    host = {key: float(calibrated[key]) for key in HOST_FIELDS}
    host.update({key: med[key] for key in HOST_FIELDS if key in med})
    if "free_alloc_us" in med:
        host["alloc_us"] = max(0.0, med["free_alloc_us"] - host["free_us"])
    if "launch_alloc_us" in med and "launch_us" not in med:
        host["launch_us"] = max(0.0, med["launch_alloc_us"] - host["alloc_us"])
    return {key: round(value, 2) for key, value in host.items()}


def _simulate(spec_path: Path, profile: Profile, profile_path: Path) -> pd.DataFrame:
    """The spec simulated under ``profile``: one row per run (policy label, makespan)."""
    with tempfile.TemporaryDirectory() as folder:
        copy = Path(folder) / spec_path.name
        respec(spec_path, str(profile_path.resolve()), copy)
        loaded = load_spec(copy)
    devices = loaded.workload.devices(loaded.workload_params)
    results = run_spec(
        loaded, lambda s, rep: SimBackend(profile, devices, s.device_memory_bytes, seed=s.spec.seed + rep)
    )
    return _makespans(results.runs, results.metrics)


def _makespans(runs: pd.DataFrame, metrics: pd.DataFrame) -> pd.DataFrame:
    ok = runs[runs["status"] == "ok"][["run_id", "policy_label"]]
    rows = metrics[(metrics["item"] == -1) & (metrics["metric"] == "makespan_us")].merge(ok, on="run_id")
    return rows.groupby("policy_label", sort=False)["value"].median()


def with_device(profile: Profile, device: dict[str, float]) -> Profile:
    """``profile`` with some of its ``[device]`` figures set (validated as the profile file's would be)."""
    if not device:
        return profile
    figures = profile.figures.model_copy(update={"device": profile.device.model_validate(
        {**profile.device.model_dump(), **device})})  # fmt: skip
    return Profile(figures, profile.path)


def attribution(out: Path, device: dict[str, float] | None = None) -> pd.DataFrame:
    """Per spec and policy: the replay's makespan, the simulated one under the calibrated profile and
    under the host costs that policy's replay paid, their errors, and the paid host costs."""
    profile_path = out / "profile.toml"
    profile = with_device(load_profile(profile_path), device or {})
    calibrated = profile.host.model_dump()
    rows = []
    for spec, replay in replayed_specs(out):
        measured = _makespans(replay.runs, replay.metrics)
        simulated = _simulate(spec, profile, profile_path)
        ops = replay.ops
        for label, value in measured.items():
            policy_ops = ops[ops["run_id"].str.contains(f":{label}:", regex=False)]
            paid = paid_host_costs(policy_ops, calibrated)
            figures = profile.figures.model_copy(update={"host": profile.host.model_copy(update=paid)})
            paid_profile = Profile(figures, profile.path)
            resimulated = _simulate(spec, paid_profile, profile_path)[label]
            rows.append(
                {
                    "spec": spec.stem,
                    "policy": label,
                    "measured_us": float(value),
                    "sim_us": float(simulated[label]),
                    "error": float(simulated[label] - value) / value,
                    "sim_paid_us": float(resimulated),
                    "error_paid": float(resimulated - value) / value,
                    **{f"paid_{k}": v for k, v in paid.items()},
                }
            )
    return pd.DataFrame(rows)


def render(table: pd.DataFrame, calibrated: dict[str, float]) -> str:
    short = {"launch_us": "launch", "copy_launch_us": "copy", "record_us": "record", "wait_us": "wait",
             "sync_wake_us": "wake", "alloc_us": "alloc", "free_us": "free"}  # fmt: skip
    cal = ", ".join(f"{short[k]} {calibrated[k]:g}" for k in HOST_FIELDS)
    lines = [
        "# makespan_us: simulated under the calibrated host costs and under the host costs each replay paid",
        "",
        f"calibrated host costs (µs): {cal}",
        "",
        "| spec | policy | measured | sim (error) | sim at paid host costs (error) | paid host costs, µs: "
        + ", ".join(short[k] for k in HOST_FIELDS)
        + " |",
        "|---|---|---:|---:|---:|---|",
    ]
    for r in table.to_dict("records"):
        paid = " / ".join(f"{r[f'paid_{k}']:.1f}" for k in HOST_FIELDS)
        lines.append(
            f"| {r['spec']} | {r['policy']} | {r['measured_us']:,.0f} | {r['sim_us']:,.0f} ({r['error']:+.2%}) | "
            f"{r['sim_paid_us']:,.0f} ({r['error_paid']:+.2%}) | {paid} |"
        )
    lines.append("")
    for column, what in (("error", "calibrated host costs"), ("error_paid", "host costs the replay paid")):
        errors = table[column].abs()
        lines.append(f"- {what}: median |error| {errors.median():.2%}, worst {errors.max():.2%}")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out", type=Path, help="a benchmark folder: profile.toml, specs/ and results/<spec>-replay")
    ap.add_argument("--md", type=Path, help="also write the table to this file")
    ap.add_argument("--device", action="append", default=[], metavar="FIELD=VALUE", help="set a [device] figure")
    args = ap.parse_args(argv)
    try:
        device = {k: float(v) for k, v in (item.split("=", 1) for item in args.device)}
    except ValueError:
        print(f"error: --device wants FIELD=NUMBER, got {args.device}", file=sys.stderr)
        return 2
    for need in ("profile.toml", "specs"):
        if not (args.out / need).exists():
            print(f"error: {args.out}: no {need} (not a fidelity/run_benchmark.sh output)", file=sys.stderr)
            return 2
    try:
        table = attribution(args.out, device)
    except pydantic.ValidationError as err:
        print(f"error: --device: {err.errors()[0]['loc']}: {err.errors()[0]['msg']}", file=sys.stderr)
        return 2
    if table.empty:
        print(f"error: {args.out}: no spec has replay results", file=sys.stderr)
        return 2
    text = render(table, load_profile(args.out / "profile.toml").host.model_dump())
    if device:
        text += "- with [device] " + ", ".join(f"{k} = {v:g}" for k, v in device.items()) + "\n"
    if args.md:
        args.md.write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
