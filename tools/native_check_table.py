"""The pass/fail table of one ``tools/gpu_native_check.sh`` folder: one line per check of issue 23, with its figure.

Usage: ``python tools/native_check_table.py OUT`` (the check's folder; prints the table and writes
``OUT/passfail.csv``). A check whose stage left nothing to read says so and fails.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pandas as pd

LAUNCH_MEDIAN_US, LATE_MEDIAN_US, LATE_P99_US = 3.0, 1.0, 3.0


def probe_rows(out: Path) -> list[tuple[str, str, str, bool]]:
    path = out / "probe" / "probe.json"
    if not path.is_file():
        return [("launch probe", "no probe.json", "", False)]
    data = json.loads(path.read_text())
    runs = data.get("runs") or [  # a probe before 2026-12-07's second check: one API, unpinned, per gap
        {"api": data.get("launch_api", "runtime"), "placement": "off", "granted": "unpinned", "gap_us": float(g), **v}
        for g, v in data.get("gaps", {}).items()
    ]
    rows = []
    for r in runs:
        label = f"launch {r['api']}/{r['placement']} ({r['granted']}) gap {r['gap_us']:g} µs"
        figure = f"call {r['launch_median_us']:.2f} med; late {r['late_median_us']:.2f} med, {r['late_p99_us']:.2f} p99"
        ok = r["launch_median_us"] <= LAUNCH_MEDIAN_US
        if r["gap_us"] > 0:
            ok = ok and r["late_median_us"] <= LATE_MEDIAN_US and r["late_p99_us"] <= LATE_P99_US
        rows.append((label, figure, "call ≤ 3; late ≤ 1 med, ≤ 3 p99", ok))
    return rows


def fidelity_rows(csv: Path, what: str) -> list[tuple[str, str, str, bool]]:
    if not csv.is_file():
        return [(what, f"no {csv.name}", "", False)]
    table = pd.read_csv(csv)
    rows = []
    for _, r in table.iterrows():
        figure = f"native {r['native_vs_rec']:+.1%} of the recording, {r['native_vs_sim']:+.1%} of the sim"
        if str(r["policy"]).endswith("us") and "-min" in str(r["policy"]):  # kernels lifted on purpose: vs the sim
            rows.append((f"{what} {r['spec']} {r['policy']}", figure, "sim ≤ 3%", abs(r["native_vs_sim"]) <= 0.03))
        else:
            rows.append((f"{what} {r['spec']} {r['policy']}", figure, "rec ≤ 5%, sim ≤ 3%", bool(r["pass"])))
    return rows


def gpu_test_rows(out: Path) -> list[tuple[str, str, str, bool]]:
    log = out / "gpu_tests.log"
    if not log.is_file():
        return [("GPU tests", "no gpu_tests.log", "", False)]
    text = log.read_text()
    tail = re.findall(r"^=* ?(\d+ (?:passed|failed|error|skipped).*?) in [\d.]+s", text, re.M)
    rows = [("GPU tests", tail[-1] if tail else "no pytest summary", "all pass", bool(tail) and "failed" not in tail[-1]
             and "error" not in tail[-1])]  # fmt: skip
    rows += [(f"  {name}", "FAILED", "", False) for name in re.findall(r"^FAILED (\S+)", text, re.M)]
    return rows


def main() -> None:
    out = Path(sys.argv[1])
    rows = []
    summary = out / "summary.txt"
    for line in summary.read_text().splitlines() if summary.is_file() else []:
        m = re.match(r"(\w+): rc=(\d+) in (\d+)s", line)
        if m:
            rows.append((f"stage {m[1]}", f"rc {m[2]} in {m[3]} s", "rc 0", m[2] == "0"))
        elif "skipped" in line:
            rows.append((f"stage {line.split(':')[0]}", "skipped", "rc 0", False))
    rows += probe_rows(out)
    rows += fidelity_rows(out / "fidelity" / "fidelity.csv", "recorded")
    rows += fidelity_rows(out / "two_threads" / "fidelity" / "fidelity.csv", "two threads")
    rows += fidelity_rows(out / "fidelity_graphs_alone" / "fidelity.csv", "graphs tuned alone")
    rows += gpu_test_rows(out)
    table = pd.DataFrame(rows, columns=["check", "figure", "target", "pass"])
    table.to_csv(out / "passfail.csv", index=False)
    print(f"== pass/fail: {int(table['pass'].sum())} of {len(table)} pass")
    width = int(table["check"].str.len().max())
    for r in table.itertuples():
        print(f"{r.check:<{width}}  {'yes' if r._4 else 'NO ':<3}  {r.figure}  (target {r.target or '-'})")


if __name__ == "__main__":
    main()
