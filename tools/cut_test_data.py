"""Cut the small public-data slices under tests/data/public/ from the full files in ../shared/data.

The tests run on these slices so that a clone with no sibling folders runs every CPU test; the full
files stay optional (benchmarks read them). Every slice is a deterministic function of its source, so
``--check`` re-cuts them and fails when a committed slice differs from what its source gives.

    python tools/cut_test_data.py [--source ../shared/data] [--out tests/data/public] [--check]

How each slice is cut (tests/data/public/README.md says where each source came from):

* Kineto traces (kineto_hta/): the five small files are copied unchanged; the two large ones keep a
  time window of the host side, from the trace's start to ``host_cut`` after the first ``ProfilerStep``
  starts (every host event starting before the cut, every metadata event), the GPU ops and ``ac2g``
  flows whose correlation belongs to a kept host call, and the GPU annotations starting before the
  last kept GPU op ends. Events keep their order and every field; the JSON is rewritten compactly and
  gzipped with a zero mtime.
* Azure LLM inference trace (azure2023/): CSV lines copied verbatim: the header and the first
  ``first_rows`` rows (conversation), or every ``every``-th row plus the last one (code, so that the
  slice still spans the whole hour).
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_SOURCE = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "tests" / "data" / "public"

GPU_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


@dataclass(frozen=True)
class KinetoWindow:
    """Keep the host events that start before ``host_cut_us`` after the first ProfilerStep starts."""

    name: str
    host_cut_us: float


@dataclass(frozen=True)
class CsvRows:
    """Keep the header and either the first ``first_rows`` rows or every ``every``-th row and the last."""

    name: str
    first_rows: int | None = None
    every: int | None = None


KINETO_COPIED = (
    "alexnet_trace.json.gz",
    "cuda_event_sync_multi_stream_trace.json.gz",
    "cuda_event_sync_trace.json.gz",
    "mi250_minitoy_rocm.json.gz",
    "simple_add_trace.json.gz",
)
KINETO_WINDOWS = (
    KinetoWindow("resnet_v100_ns_resolution_rank0.json.gz", host_cut_us=10_000.0),  # 10 ms of step 101
    KinetoWindow("sampled_rank-0.json.gz", host_cut_us=607_312.0),  # the whole of ProfilerStep#551
)
AZURE = (
    CsvRows("AzureLLMInferenceTrace_conv.csv", first_rows=300),
    CsvRows("AzureLLMInferenceTrace_code.csv", every=20),
)


def cut_kineto(trace: dict, host_cut_us: float) -> dict:
    """The window of ``trace`` described in the module docstring (a new dict; ``trace`` is untouched)."""
    events = trace["traceEvents"]
    steps = [e["ts"] for e in events if e.get("cat") == "user_annotation" and e["name"].startswith("ProfilerStep#")]
    if not steps:
        raise ValueError("no ProfilerStep annotation to cut from")
    cut_ts = min(steps) + host_cut_us

    def is_host(e: dict) -> bool:
        return e.get("ph") == "X" and e.get("cat") not in (*GPU_CATS, "gpu_user_annotation")

    kept_correlations = {
        e["args"]["correlation"]
        for e in events
        if is_host(e) and e["ts"] < cut_ts and "correlation" in e.get("args", {})
    }

    def is_kept_gpu_op(e: dict) -> bool:
        correlation = e.get("args", {}).get("correlation")
        return e.get("ph") == "X" and e.get("cat") in GPU_CATS and correlation in kept_correlations

    gpu_end_ts = max(e["ts"] + e["dur"] for e in events if is_kept_gpu_op(e))
    kept = []
    for e in events:
        ph, cat = e.get("ph"), e.get("cat")
        if ph == "M":
            keep = True
        elif ph == "X" and cat in GPU_CATS:
            keep = is_kept_gpu_op(e)
        elif cat == "gpu_user_annotation":
            keep = e["ts"] < gpu_end_ts
        elif cat == "ac2g":
            keep = e.get("id") in kept_correlations
        else:
            keep = e["ts"] < cut_ts
        if keep:
            kept.append(e)
    return {**trace, "traceEvents": kept}


def _gzip_json(trace: dict) -> bytes:
    return gzip.compress(json.dumps(trace, separators=(",", ":")).encode(), compresslevel=9, mtime=0)


def _csv_slice(text: str, rows: CsvRows) -> str:
    header, *body = text.splitlines(keepends=True)
    if rows.first_rows is not None:
        kept = body[: rows.first_rows]
    else:
        kept = body[:: rows.every]
        if (len(body) - 1) % rows.every:
            kept.append(body[-1])
    return header + "".join(kept)


def slices(source: Path) -> dict[str, bytes]:
    """Every slice, by its path under the output folder, cut from ``source``."""
    out: dict[str, bytes] = {}
    for name in KINETO_COPIED:
        out[f"kineto_hta/{name}"] = (source / "kineto_hta" / name).read_bytes()
    for window in KINETO_WINDOWS:
        trace = json.loads(gzip.decompress((source / "kineto_hta" / window.name).read_bytes()))
        out[f"kineto_hta/{window.name}"] = _gzip_json(cut_kineto(trace, window.host_cut_us))
    for rows in AZURE:
        text = (source / "azure2023" / rows.name).read_text(encoding="utf-8")
        out[f"azure2023/{rows.name}"] = _csv_slice(text, rows).encode("utf-8")
    return out


def _write_atomically(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same(path: Path, data: bytes) -> bool:
    """Whether ``path`` holds ``data`` (gzip files by their content: zlib versions compress differently)."""
    if not path.is_file():
        return False
    if path.suffix == ".gz":
        return gzip.decompress(path.read_bytes()) == gzip.decompress(data)
    return path.read_bytes() == data


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=DEFAULT_SOURCE, help="the full public data (../shared/data)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="where the slices go (tests/data/public)")
    parser.add_argument("--check", action="store_true", help="compare the committed slices with a fresh cut")
    args = parser.parse_args(argv)
    missing = [d for d in ("kineto_hta", "azure2023") if not (args.source / d).is_dir()]
    if missing:
        print(f"{args.source}: missing {', '.join(missing)} (give the full data with --source)", file=sys.stderr)
        return 2
    fresh = slices(args.source)
    if args.check:
        differ = [rel for rel, data in fresh.items() if not _same(args.out / rel, data)]
        for rel in differ:
            print(f"{args.out / rel}: differs from a fresh cut of {args.source}", file=sys.stderr)
        print(f"{len(fresh) - len(differ)} of {len(fresh)} slices match their sources")
        return 1 if differ else 0
    for rel, data in fresh.items():
        _write_atomically(args.out / rel, data)
        print(f"{args.out / rel}: {len(data) / 1024:.1f} KiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
