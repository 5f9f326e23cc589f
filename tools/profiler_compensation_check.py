"""The bundled recordings (traces/recorded/) predicted with and without the profiler's overhead, against their real spans.

Simulates ``as_recorded`` of each recording, and each what-if on the recording it fits, with
``profiler_overhead = "keep"`` and ``"subtract"`` under PROFILE (a profile with
``[profiler.<mode>]`` calibrations, from ``harness calibrate --profiler`` on the GPU the recordings
were made on: an H200 for the bundled ones) and prints the recorded span, both predictions, the
real unprofiled span of the program predicted (``traces/recorded/spans.json``, median of 7) and
each prediction's error against it.

Usage: ``python3 tools/profiler_compensation_check.py PROFILE.toml [--out table.md]`` (no GPU).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from harness.errors import InputError
from harness.paths import TRACES_DIR
from harness.profile import load_profile
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend

RECORDED = TRACES_DIR / "recorded"
WHATIFS = (  # (recording, what-if, the real program that does it)
    ("layers_sync", "prefetch_copies", "layers_prefetch"),
    ("decode_inline", "async_d2h", "decode_async"),
    ("decode_inline", "graph_launch", "decode_graph"),
)


def _policies(policy: str) -> str:
    return (
        f'[[policies]]\nname = "{policy}"\nlabel = "keep"\n'
        f'[[policies]]\nname = "{policy}"\nlabel = "subtract"\nprofiler_overhead = "subtract"\n'
    )


def predict(profile_path: Path, trace: Path, workdir: Path, policy: str = "as_recorded") -> dict[str, float]:
    profile = load_profile(profile_path)
    spec = workdir / f"{trace.stem}-{policy}.toml"
    spec.write_text(
        f'name = "{trace.stem}"\nprofile = "{profile_path}"\nrepetitions = 1\n'
        f'[workload]\nkind = "recorded"\ntrace = "{trace}"\n{_policies(policy)}'
    )
    results = run_spec(load_spec(spec), lambda s, rep: SimBackend(profile, 1, s.device_memory_bytes, seed=rep))
    if len(results.failed):
        raise InputError(trace, "", results.failed["error"].iloc[0])
    m = results.metrics.merge(results.runs[["run_id", "policy_label"]])
    m = m[m["item"] == -1].set_index(["policy_label", "metric"])["value"]
    return {
        "recorded": m[("keep", "recorded_makespan_us")],
        "keep": m[("keep", "makespan_us")],
        "subtract": m[("subtract", "unprofiled_makespan_us")],
        "removed": m[("subtract", "profiler_overhead_removed_us")],
    }


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    parser.add_argument("profile", type=Path)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    spans = json.loads((RECORDED / "spans.json").read_text())["programs"]
    lines = [
        "| recording | policy | real program | recorded µs | keep µs | subtract µs (removed) | real unprofiled µs "
        "| keep error | subtract error |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    cases = [(t, "as_recorded", t.stem.removesuffix("-sync")) for t in sorted(RECORDED.glob("*.parquet"))]
    cases += [(RECORDED / f"{r}{v}.parquet", w, real) for r, w, real in WHATIFS for v in ("-sync", "")]
    errors: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for trace, policy, program in cases:
            if program not in spans:
                continue
            try:
                p = predict(args.profile.resolve(), trace, Path(tmp), policy)
            except InputError as err:
                print(err, file=sys.stderr)
                return 2
            real = spans[program]["unprofiled_span_median_us"]
            keep_err, sub_err = p["keep"] / real - 1, p["subtract"] / real - 1
            errors.setdefault(policy == "as_recorded", []).append(abs(sub_err))
            lines.append(
                f"| {trace.stem} | {policy} | {program} | {p['recorded']:,.0f} | {p['keep']:,.0f} | "
                f"{p['subtract']:,.0f} ({p['removed']:,.0f}) | {real:,.0f} | {keep_err:+.1%} | {sub_err:+.1%} |"
            )
    for as_recorded, errs in sorted(errors.items(), reverse=True):
        what = "as_recorded" if as_recorded else "what-ifs"
        lines.append(f"\n{what}, subtract: median |error| {statistics.median(errs):.1%}, worst {max(errs):.1%}")
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.write_text(text + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
