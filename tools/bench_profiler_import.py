"""Benchmark: import a ~100 MB torch.profiler trace; report wall time, peak memory and the machine.

    python3 tools/bench_profiler_import.py [--mb 100] [--keep PATH]

It synthesises a Kineto-shaped trace by repeating the events of a real one
(../shared/data/kineto_hta/resnet_v100_ns_resolution_rank0.json.gz, or a small
built-in step when that is absent) with shifted timestamps and correlation ids,
then imports it and writes the op-trace Parquet in a fresh child process, so the
peak resident memory reported (ru_maxrss) is the import's alone.
Target: 100 MB in under 30 s and under 2 GB on the 2-core machine.
"""

from __future__ import annotations

import argparse
import copy
import gzip
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT.parent / "shared" / "data" / "kineto_hta" / "resnet_v100_ns_resolution_rank0.json.gz"


def _template() -> tuple[dict, list[dict]]:
    """The top-level object and events to repeat: the real trace, else one hand-made step."""
    if SOURCE.exists():
        doc = json.loads(gzip.decompress(SOURCE.read_bytes()))
        return doc, doc.pop("traceEvents")
    host = {"pid": 10, "tid": 11}
    events = [{"ph": "X", "cat": "user_annotation", "name": "ProfilerStep#0", **host, "ts": 0, "dur": 2000}]
    for i in range(200):
        t = 10 * i
        events += [
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", **host, "ts": t, "dur": 8, "args": {"External id": i}},
            {
                "ph": "X",
                "cat": "cuda_runtime",
                "name": "cudaLaunchKernel",
                **host,
                "ts": t + 1,
                "dur": 5,
                "args": {"correlation": i},
            },
            {
                "ph": "X",
                "cat": "kernel",
                "name": "gemm",
                "pid": 0,
                "tid": 7,
                "ts": t + 4,
                "dur": 9,
                "args": {"correlation": i, "stream": 7},
            },
            {"ph": "s", "cat": "ac2g", "name": "ac2g", "id": i, **host, "ts": t + 1},
            {"ph": "f", "cat": "ac2g", "name": "ac2g", "id": i, "pid": 0, "tid": 7, "ts": t + 4, "bp": "e"},
        ]
    return {"schemaVersion": 1}, events


def synthesise(out: Path, target_mb: float) -> tuple[int, int]:
    """Write a trace of about ``target_mb`` MB of JSON; return (bytes, events)."""
    top, events = _template()
    stamped = [e for e in events if isinstance(e.get("ts"), (int, float)) and e.get("ph") != "M"]
    t0 = min(e["ts"] for e in stamped)
    span = max(e["ts"] + e.get("dur", 0) for e in stamped) - t0 + 1000
    corr = 1 + max(int((e.get("args") or {}).get("correlation", 0)) for e in events)
    one = sum(len(json.dumps(e)) + 2 for e in events)
    reps = max(1, round(target_mb * 1e6 / one))
    count = 0
    with out.open("w") as f:
        f.write(json.dumps(top)[:-1] + (", " if top else "") + '"traceEvents": [\n')
        for k in range(reps):
            for e in events:
                if e.get("ph") == "M" and k:
                    continue
                f.write((",\n" if count else "") + json.dumps(_shift(e, k, span, corr)))
                count += 1
        f.write("\n]}\n")
    return out.stat().st_size, count


def _shift(event: dict, k: int, span: float, corr: int) -> dict:
    if k == 0:
        return event
    e = copy.copy(event)
    if isinstance(e.get("ts"), (int, float)) and e.get("ph") != "M":
        e["ts"] = e["ts"] + k * span
    if isinstance(e.get("args"), dict) and "correlation" in e["args"]:
        e["args"] = {**e["args"], "correlation": e["args"]["correlation"] + k * corr}
    if e.get("cat") == "ac2g" and isinstance(e.get("id"), int):
        e["id"] = e["id"] + k * corr
    if e.get("name", "").startswith("ProfilerStep#"):
        e["name"] = f"ProfilerStep#{k}.{e['name'][13:]}"
    return e


def import_once(path: Path) -> None:
    """Child process: import and write, then print timings and peak RSS as JSON."""
    sys.path.insert(0, str(ROOT))
    from harness.profiler_import import import_profiler_trace
    from harness.trace import write_trace

    t0 = time.perf_counter()
    imported = import_profiler_trace(path)
    t1 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        write_trace(Path(tmp) / "t.parquet", imported.ops, imported.provenance)
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"import_s": t1 - t0, "write_s": t2 - t1, "ops": len(imported.ops), "peak_rss_mb": rss_mb}))


def machine() -> str:
    cpu = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor(),
    )
    import os

    return f"{cpu}, {os.cpu_count()} cores, Python {platform.python_version()}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=100.0, help="size of the synthesised JSON, MB")
    parser.add_argument("--keep", type=Path, help="keep the synthesised trace at this path")
    parser.add_argument("--import-only", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.import_only:
        return import_once(args.import_only)
    with tempfile.TemporaryDirectory() as tmp:
        path = args.keep or Path(tmp) / "bench_trace.json"
        size, n = synthesise(path, args.mb)
        child = subprocess.run(
            [sys.executable, __file__, "--import-only", str(path)], capture_output=True, text=True, check=True
        )
        result = json.loads(child.stdout.strip().splitlines()[-1])
    print(f"machine: {machine()}")
    print(
        f"trace:   {size / 1e6:.1f} MB JSON, {n:,} events "
        f"(repeats of {SOURCE.name if SOURCE.exists() else 'a built-in step'})"
    )
    print(f"import:  {result['import_s']:.2f} s -> {result['ops']:,} ops; write Parquet {result['write_s']:.2f} s")
    print(f"peak RSS of the importing process: {result['peak_rss_mb']:.0f} MB")
    total = result["import_s"] + result["write_s"]
    verdict = "within" if total < 30 and result["peak_rss_mb"] < 2048 else "OUTSIDE"
    print(f"target (100 MB < 30 s, < 2 GB): {verdict} ({total:.2f} s, {result['peak_rss_mb']:.0f} MB)")


if __name__ == "__main__":
    main()
