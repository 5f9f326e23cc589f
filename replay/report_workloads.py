"""The issue-6 workloads' sim-vs-replay report (no torch): ``python3 -m replay.report_workloads DIR``.

Reads ``DIR/fidelity.parquet`` (from ``harness compare``) and the calibrated
profile ``DIR/profile.toml`` and writes ``DIR/fidelity.md``: per workload the
headline metrics (simulated, measured median and range, relative error), and
whether each workload's quoted result keeps its direction on the real GPU:

* kv_backup: ``async_stream`` lowers TPOT against ``inline`` (quoted: -5% on an H20);
* offload_coordinator: the fix's GPU share far above the ratchet's, the serial
  coordinator capped near one thread's entropy rate (28 MiB/s) and below ``cpu_only``;
* pipeline_forwarding: TPOT ``overlapped`` < ``reuse_buffers`` < ``alloc_per_token``.

The checks read the table's medians; a policy missing on either side shows as
"missing" rather than a verdict.
"""

from __future__ import annotations

import argparse
import sys
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

# Metrics shown per workload (spec-name prefix -> metrics), in order.
SHOWN: dict[str, tuple[str, ...]] = {
    "kv-backup": ("tpot_us", "backup_lag_mean_us", "host_link_util", "backups_lost"),
    "offload": (
        "throughput_mibps", "gpu_share", "gpu_share_late", "gpu_busy_frac", "worker_busy_frac", "latency_p50_us", "pressure_final",
    ),
    "pipeline": ("tpot_us", "stage_compute_us", "stage_transfer_us", "stage_setup_us", "stage_wait_us", "tokens_out_of_order"),
}
SERIAL_CAP_MIBPS = 28.0  # one thread's entropy rate in the spec (the reference's quoted cap)


@dataclass(frozen=True)
class Check:
    workload: str  # spec-name prefix the check applies to
    needs: str  # a policy the spec must run for the check to apply
    claim: str
    holds: Callable[[Callable[[str, str], float]], tuple[bool, str]]  # value(policy, metric) -> (verdict, figures)


def _kv(v: Callable[[str, str], float]) -> tuple[bool, str]:
    change = v("async_stream", "tpot_us") / v("inline", "tpot_us") - 1
    return change < 0, f"async_stream vs inline TPOT {change:+.2%}"


def _rank_only(v: Callable[[str, str], float]) -> tuple[bool, str]:
    lost, ok = v("async_scheduler_rank_only", "backups_lost"), v("async_stream", "backups_lost")
    return lost > 0 and ok == 0, f"backups lost: rank-0-only {lost:.0f}, async_stream {ok:.0f}"


def _offload_share(v: Callable[[str, str], float]) -> tuple[bool, str]:
    fix, bug = v("streaming_backpressure", "gpu_share"), v("streaming_ratchet", "gpu_share")
    late = v("streaming_ratchet", "gpu_share_late")
    return fix > 2 * bug and late == 0, f"GPU share fix {fix:.3f}, ratchet {bug:.3f} (second half {late:.3f})"


def _offload_cap(v: Callable[[str, str], float]) -> tuple[bool, str]:
    serial, cpu = v("serial_gpu_coordinator", "throughput_mibps"), v("cpu_only", "throughput_mibps")
    fix = v("streaming_backpressure", "throughput_mibps")
    return serial <= SERIAL_CAP_MIBPS and serial < cpu < fix, f"MiB/s: serial {serial:.1f}, cpu_only {cpu:.1f}, fix {fix:.1f}"


def _pipeline(v: Callable[[str, str], float]) -> tuple[bool, str]:
    a, r, o = (v(p, "tpot_us") for p in ("alloc_per_token", "reuse_buffers", "overlapped"))
    return o < r < a, f"TPOT ms: alloc {a / 1e3:.3f}, reuse {r / 1e3:.3f} ({r / a - 1:+.2%}), overlapped {o / 1e3:.3f} ({o / r - 1:+.2%} vs reuse)"


CHECKS = (
    Check("kv-backup", "inline", "async_stream lowers TPOT against inline (quoted: -5% on an H20)", _kv),
    Check("kv-backup", "async_scheduler_rank_only", "backing up on the scheduler rank only loses the other ranks' backups", _rank_only),
    Check("offload", "streaming_ratchet", "the fix's GPU share far above the ratchet's, which routes nothing in the second half", _offload_share),
    Check("offload", "serial_gpu_coordinator", f"serial coordinator capped (<= {SERIAL_CAP_MIBPS:g} MiB/s) below cpu_only, below the fix", _offload_cap),
    Check("pipeline", "overlapped", "TPOT: overlapped < reuse_buffers < alloc_per_token", _pipeline),
)


def _fmt(value: float) -> str:
    if value != value:
        return "-"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _error(row) -> str:
    return "-" if row.rel_error != row.rel_error else f"{row.rel_error:+.2%}"


def metric_rows(table: pd.DataFrame) -> list[str]:
    lines = ["| spec | policy | metric | simulated | measured (min-max) | error |", "|---|---|---|---:|---:|---:|"]
    for spec in table["spec_name"].drop_duplicates():
        metrics = next((m for prefix, m in SHOWN.items() if spec.startswith(prefix)), ("makespan_us",))
        part = table[(table["spec_name"] == spec) & table["metric"].isin(metrics)]
        order = {m: i for i, m in enumerate(metrics)}
        part = part.assign(_o=part["metric"].map(order)).sort_values(["_o"], kind="stable")
        for r in part.itertuples():
            lines.append(
                f"| {r.spec_name} | {r.policy_label} | {r.metric} | {_fmt(r.simulated)} | "
                f"{_fmt(r.measured)} ({_fmt(r.measured_min)}-{_fmt(r.measured_max)}) | {_error(r)} |"
            )
    return lines


def direction_rows(table: pd.DataFrame) -> list[str]:
    lines = ["| spec | claim | sim | replay |", "|---|---|---|---|"]
    for spec in table["spec_name"].drop_duplicates():
        policies = set(table.loc[table["spec_name"] == spec, "policy_label"])
        for check in CHECKS:
            if spec.startswith(check.workload) and check.needs in policies:
                lines.append(_check_row(table, spec, check))
    return lines


def _check_row(table: pd.DataFrame, spec: str, check: Check) -> str:
    cells = []
    for side in ("simulated", "measured"):
        part = table[table["spec_name"] == spec].set_index(["policy_label", "metric"])[side]

        def value(policy: str, metric: str, part=part) -> float:
            return float(part.loc[(policy, metric)])

        try:
            holds, figures = check.holds(value)
            cells.append(f"{'holds' if holds else 'DOES NOT HOLD'}: {figures}")
        except KeyError as err:
            cells.append(f"missing {err}")
    return f"| {spec} | {check.claim} | {cells[0]} | {cells[1]} |"


def render(table: pd.DataFrame, profile: dict, command: str) -> str:
    prov = profile.get("provenance", {})
    host = profile.get("host", {})
    lines = [
        "# Sim-vs-replay fidelity: the issue-6 workloads on the lent GPU(s)",
        "",
        f"- replayed on: {', '.join(sorted(set(table['device_name'])))}; calibrated GPU 0: {prov.get('gpu', '?')}; driver {prov.get('driver', '?')}; torch {prov.get('torch', '?')}",
        f"- profile: `{profile.get('name', '?')}` measured {prov.get('date', '?')} by `harness calibrate` in the same call;"
        f" host costs (µs): " + ", ".join(f"{k}={v}" for k, v in host.items()),
        f"- command: `{command}`",
        "- simulated: `harness sim` with that profile; measured: `harness replay`, median of the repetitions (range in brackets);"
        " error = (simulated - measured) / measured",
        "",
        *metric_rows(table),
        "",
        "## Do the quoted results keep their direction?",
        "",
        *direction_rows(table),
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("dir", type=Path)
    ap.add_argument("--command", default="traces/fidelity/issue6/run_benchmark.sh")
    args = ap.parse_args(argv)
    table = pd.read_parquet(args.dir / "fidelity.parquet")
    profile = tomllib.loads((args.dir / "profile.toml").read_text())
    text = render(table, profile, args.command)
    (args.dir / "fidelity.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
