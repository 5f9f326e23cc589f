"""Bad and extreme input, as a new user would give it: every case is refused cleanly.

Each case of :data:`CASES` writes its input files into an empty folder, runs one ``harness``
command there (in process; the default results root ``results/`` is inside that folder) and
checks the refusal: exit status 2, one ``error:`` line naming the file (or option, or path) and
the field or row at fault, and nothing written: the folder holds exactly the files the case
made, unchanged. Cases that typer refuses (a bad option value) get its usage error, also exit 2.
"""

from __future__ import annotations

import hashlib
import os
import resource
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.paths import PROFILES_DIR, REPO_ROOT
from harness.trace import TRACE_SCHEMA, Provenance

LAYERS = """name = "corpus"
profile = "h100-sxm-pcie5"
seed = 0

[workload]
kind = "layer_streaming"
segments = 4
param_bytes = 1000000
compute_us = 100.0

[[policies]]
name = "sync"

[[policies]]
name = "prefetch"
depth = 2
"""

BATCHING = """name = "corpus-batching"
profile = "h100-sxm-pcie5"

[workload]
kind = "continuous_batching"
cost_model = "engine-pmat-quoted"
arrivals = "closed_loop"
clients = 2
requests = 8
prompt_tokens = 16
output_tokens = 8

[[policies]]
name = "adaptive"
"""

BATCHING_TRACE = """name = "corpus-requests"
profile = "h100-sxm-pcie5"

[workload]
kind = "continuous_batching"
cost_model = "engine-pmat-quoted"
trace = "requests.csv"

[[policies]]
name = "adaptive"
"""

KV = """name = "corpus-kv"
profile = "h100-sxm-pcie5"

[workload]
kind = "kv_backup"
layers = 4
batch = 2
kv_bytes_per_token_per_layer = 1024
forward_us = 500.0
steps = 8

[[policies]]
name = "async_stream"
"""

PIPELINE = """name = "corpus-pipeline"
profile = "h100-sxm-pcie5"

[workload]
kind = "pipeline_forwarding"
stages = 2
compute_us = 300.0
activation_bytes = 8192
link_gbit_per_s = 100.0
tokens = 8

[[policies]]
name = "reuse_buffers"
"""

OFFLOAD = """name = "corpus-offload"
profile = "h100-sxm-pcie5"

[workload]
kind = "offload_coordinator"
corpus_bytes = 1048576
block_bytes = 131072
cpu_workers = 2
batch_blocks = 2
pressure_limit = 4

[[workload.stages]]
name = "match"
cpu_mibps = 12.0
gpu_mibps = 65.0

[[workload.stages]]
name = "entropy"
cpu_mibps = 28.0

[[policies]]
name = "cpu_only"
"""

PROFILE = (PROFILES_DIR / "h100-sxm-pcie5.toml").read_text()
COST_MODEL = (REPO_ROOT / "traces" / "cost_models" / "engine-pmat-quoted.toml").read_text()

Files = dict[str, str | bytes | Callable[[Path], None]]


@dataclass(frozen=True)
class Case:
    id: str
    argv: list[str]  # "{d}" is the case's folder
    files: Files
    names: tuple[str, ...]  # what the error line must name: the file (or option, path) and the field or row
    env: dict[str, str] = field(default_factory=dict)
    usage: bool = False  # refused by typer's option parsing (its own usage error, exit 2)


def spec(text: str, *swaps: tuple[str, str], extra: str = "") -> str:
    for old, new in swaps:
        assert old in text, old
        text = text.replace(old, new)
    return text + extra


def sim_case(id: str, text: str, *names: str, files: Files | None = None, env: dict | None = None) -> Case:
    return Case(id, ["sim", "{d}/spec.toml"], {"spec.toml": text, **(files or {})}, ("spec.toml", *names), env or {})


# --------------------------------------------------------------------------- trace and request files


def trace_writer(rows: list[dict], provenance: bool = True) -> Callable[[Path], None]:
    """A trace file written around the format's checks, so that bad rows reach the reader."""

    def write(path: Path) -> None:
        frame = pd.DataFrame(rows)
        for f in TRACE_SCHEMA:
            if f.name not in frame.columns:
                frame[f.name] = None
        schema = pa.schema([pa.field(f.name, f.type) for f in TRACE_SCHEMA])
        table = pa.Table.from_pandas(frame[TRACE_SCHEMA.names], schema=schema, preserve_index=False)
        meta = Provenance("corpus", "synthetic", "2026-01-01").to_metadata() if provenance else {}
        pq.write_table(table.replace_schema_metadata(meta), path)

    return write


def segment_rows(duration: float = 100.0, nbytes: int = 1000, kind: str = "kernel", group: str | None = "s0"):
    copy = dict(device=0, stream="s", kind="copy_h2d", name="p", bytes=nbytes, duration_us=10.0, group=group)
    kernel = dict(device=0, stream="s", kind=kind, name="k", bytes=0, duration_us=duration, group=group)
    return [copy, kernel]


TRACE_SPEC = spec(LAYERS, ("segments = 4\nparam_bytes = 1000000\ncompute_us = 100.0\n", 'trace = "ops.parquet"\n'))


def trace_case(id: str, writer: Callable[[Path], None] | bytes | str, *names: str) -> Case:
    return Case(id, ["sim", "{d}/spec.toml"], {"spec.toml": TRACE_SPEC, "ops.parquet": writer}, ("ops.parquet", *names))


def requests_case(id: str, csv: str, *names: str) -> Case:
    files: Files = {"spec.toml": BATCHING_TRACE, "requests.csv": csv}
    return Case(id, ["sim", "{d}/spec.toml"], files, ("requests.csv", *names))


def request_parquet_without_metadata(path: Path) -> None:
    frame = pd.DataFrame({"arrival_us": [0.0], "prompt_tokens": [4], "output_tokens": [4]})
    pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), path)


def results_folder(path: Path) -> None:
    """A results folder of one sim run (what `compare` reads)."""
    path.mkdir()
    pq.write_table(pa.table({"x": [1]}), path / "runs.parquet")


LONG = "x" * 300
BIG = 10**9

CASES: list[Case] = [
    # ------------------------------------------------------------------ the spec file itself
    Case("spec missing", ["sim", "{d}/nope.toml"], {}, ("nope.toml", "not found")),
    Case("spec is a folder", ["sim", "{d}/sub"], {"sub/keep.txt": "x"}, ("sub", "folder")),
    sim_case("malformed TOML", "name = [", "malformed TOML"),
    sim_case("not UTF-8", b'name = "\xff\xfe"\n', "malformed TOML"),  # type: ignore[arg-type]
    sim_case("name missing", spec(LAYERS, ('name = "corpus"\n', "")), "field 'name'"),
    sim_case("name with a space", spec(LAYERS, ('"corpus"', '"my spec"')), "field 'name'"),
    sim_case("name starts with a dot", spec(LAYERS, ('"corpus"', '".hidden"')), "field 'name'", "hidden"),
    sim_case("name of 300 characters", spec(LAYERS, ('"corpus"', f'"{LONG}"')), "field 'name'", "100"),
    sim_case("unknown top-level key", spec(LAYERS, ("seed = 0", "seed = 0\ncolour = 1")), "field 'colour'"),
    sim_case("seed negative", spec(LAYERS, ("seed = 0", "seed = -1")), "field 'seed'"),
    sim_case("seed text", spec(LAYERS, ("seed = 0", 'seed = "x"')), "field 'seed'"),
    sim_case("seed true", spec(LAYERS, ("seed = 0", "seed = true")), "field 'seed'"),
    sim_case("repetitions zero", spec(LAYERS, ("seed = 0", "seed = 0\nrepetitions = 0")), "field 'repetitions'"),
    sim_case(
        "repetitions 10^9",
        spec(LAYERS, ("seed = 0", f"seed = 0\nrepetitions = {BIG}")),
        "field 'repetitions'",
        "HARNESS_MAX_RUNS",
    ),
    sim_case(
        "device memory zero",
        spec(LAYERS, ("seed = 0", "seed = 0\ndevice_memory_bytes = 0")),
        "field 'device_memory_bytes'",
    ),
    sim_case("no policies", spec(LAYERS.split("[[policies]]")[0], extra="policies = []\n"), "field 'policies'"),
    # ------------------------------------------------------------------ profiles
    sim_case("profile missing", spec(LAYERS, ('profile = "h100-sxm-pcie5"\n', "")), "field 'profile'"),
    sim_case("profile unknown", spec(LAYERS, ('"h100-sxm-pcie5"', '"a100-nope"')), "field 'profile'", "a100-nope"),
    sim_case("profile file missing", spec(LAYERS, ('"h100-sxm-pcie5"', '"gpu.toml"')), "field 'profile'", "gpu.toml"),
    Case(
        "profile file with a bad field (relative to the spec)",
        ["sim", "{d}/specs/spec.toml"],
        {
            "specs/spec.toml": spec(LAYERS, ('"h100-sxm-pcie5"', '"profiles/gpu.toml"')),
            "specs/profiles/gpu.toml": PROFILE.replace("memory_bytes = ", "memory_bytes = -"),
        },
        ("specs/profiles/gpu.toml", "field 'device.memory_bytes'"),
    ),
    sim_case(
        "profile file malformed",
        spec(LAYERS, ('"h100-sxm-pcie5"', '"gpu.toml"')),
        "gpu.toml",
        "malformed TOML",
        files={"gpu.toml": "format_version = ["},
    ),
    sim_case(
        "profile format version 9",
        spec(LAYERS, ('"h100-sxm-pcie5"', '"gpu.toml"')),
        "gpu.toml",
        "field 'format_version'",
        files={"gpu.toml": PROFILE.replace("format_version = 1", "format_version = 9")},
    ),
    sim_case(
        "profile NaN launch cost",
        spec(LAYERS, ('"h100-sxm-pcie5"', '"gpu.toml"')),
        "gpu.toml",
        "field 'host.launch_us'",
        files={"gpu.toml": PROFILE.replace("launch_us = ", "launch_us = nan #", 1)},
    ),
    sim_case(
        "profile inf latency",
        spec(LAYERS, ('"h100-sxm-pcie5"', '"gpu.toml"')),
        "gpu.toml",
        "latency_us",
        files={"gpu.toml": PROFILE.replace("latency_us = ", "latency_us = inf #", 1)},
    ),
    # ------------------------------------------------------------------ workload and policies
    sim_case("workload kind unknown", spec(LAYERS, ('"layer_streaming"', '"sorting"')), "field 'workload.kind'"),
    sim_case(
        "workload given as a string",
        spec(LAYERS.split("[workload]")[0], extra='workload = "layer_streaming"\n[[policies]]\nname = "sync"\n'),
        "field 'workload'",
        "must be a table",
        '[workload] on a line of its own and kind = "layer_streaming"',
    ),
    sim_case(
        "workload given as a number",
        spec(LAYERS.split("[workload]")[0], extra='workload = 3\n[[policies]]\nname = "sync"\n'),
        "field 'workload'",
        "got the number 3",
    ),
    sim_case("workload kind missing", spec(LAYERS, ('kind = "layer_streaming"\n', "")), "field 'workload.kind'"),
    sim_case("policy unknown", spec(LAYERS, ('name = "sync"', 'name = "magic"')), "field 'policies[0].name'"),
    sim_case(
        "label used twice",
        spec(LAYERS, ('name = "sync"', 'name = "sync"\nlabel = "x"'), ("depth = 2", 'depth = 2\nlabel = "x"')),
        "field 'policies[1].label'",
    ),
    sim_case("depth zero", spec(LAYERS, ("depth = 2", "depth = 0")), "field 'policies[1].depth'"),
    sim_case("depth true", spec(LAYERS, ("depth = 2", "depth = true")), "field 'policies[1].depth'"),
    sim_case("depth text", spec(LAYERS, ("depth = 2", 'depth = "two"')), "field 'policies[1].depth'"),
    sim_case("depth 2.5", spec(LAYERS, ("depth = 2", "depth = 2.5")), "field 'policies[1].depth'"),
    sim_case("unknown policy parameter", spec(LAYERS, ("depth = 2", "depht = 2")), "field 'policies[1].depht'"),
    sim_case("sweep of nothing", spec(LAYERS, ("depth = 2", "sweep = { depth = [] }")), "field 'policies.1.sweep"),
    sim_case("sweep with true", spec(LAYERS, ("depth = 2", "sweep = { depth = [1, true] }")), "policies[1].depth"),
    sim_case(
        "sweep and parameter both",
        spec(LAYERS, ("depth = 2", "depth = 2\nsweep = { depth = [1, 2] }")),
        "field 'policies[1].depth'",
    ),
    sim_case(
        "sweep of 10^6 points",
        spec(LAYERS, ("depth = 2", f"sweep = {{ depth = {list(range(1, 1001))}, x = {list(range(1000))} }}")),
        "field 'policies[1].sweep'",
        "--max-runs",
    ),
    sim_case("compute NaN", spec(LAYERS, ("100.0", "nan")), "field 'workload.compute_us'", "finite"),
    sim_case("compute inf", spec(LAYERS, ("100.0", "inf")), "field 'workload.compute_us'", "finite"),
    sim_case("compute -inf", spec(LAYERS, ("100.0", "-inf")), "field 'workload.compute_us'"),
    sim_case("compute 1e308", spec(LAYERS, ("100.0", "1e308")), "field 'workload.compute_us'", "too long"),
    sim_case("compute negative", spec(LAYERS, ("100.0", "-5.0")), "field 'workload'", "compute_us"),
    sim_case("compute list with inf", spec(LAYERS, ("100.0", "[1.0, 2.0, inf, 4.0]")), "workload.compute_us[2]"),
    sim_case("param bytes zero", spec(LAYERS, ("= 1000000", "= 0")), "field 'workload'", "param_bytes"),
    sim_case("param bytes list short", spec(LAYERS, ("= 1000000", "= [1, 2]")), "field 'workload'", "param_bytes"),
    sim_case(
        "segment larger than device memory",
        spec(LAYERS, ("= 1000000", "= 1000000000000")),
        "field 'workload', segment 0",
        "device memory",
    ),
    sim_case("segments zero", spec(LAYERS, ("segments = 4", "segments = 0")), "field 'workload.segments'"),
    sim_case(
        "segments 10^9",
        spec(LAYERS, ("segments = 4", f"segments = {BIG}")),
        "field 'workload.segments'",
        "HARNESS_MAX_MEMORY_GB",
    ),
    sim_case("jitter 1.5", spec(LAYERS, ("compute_us = 100.0", "compute_us = 100.0\njitter = 1.5")), "jitter"),
    sim_case(
        "compute share zero",
        spec(LAYERS, ("compute_us = 100.0", "compute_us = 100.0\ncompute_share = 0")),
        "workload.compute_share",
    ),
    sim_case(
        "host memory unknown",
        spec(LAYERS, ("compute_us = 100.0", 'compute_us = 100.0\nhost_memory = "gpu"')),
        "workload.host_memory",
    ),
    sim_case("trace and segments", spec(LAYERS, ("segments = 4", 'segments = 4\ntrace = "x"')), "field 'workload'"),
    # ------------------------------------------------------------------ op traces
    trace_case("trace missing", b"", "not a readable Parquet"),
    Case(
        "trace file absent",
        ["sim", "{d}/spec.toml"],
        {"spec.toml": TRACE_SPEC},
        ("ops.parquet", "not found"),
    ),
    trace_case("trace is text", "device,stream\n0,s\n", "not a readable Parquet"),
    trace_case("trace with no rows", trace_writer([]), "no ops"),
    trace_case("trace without provenance", trace_writer(segment_rows(), provenance=False), "format_version"),
    trace_case("trace NaN duration", trace_writer(segment_rows(duration=float("nan"))), "row 1", "duration_us"),
    trace_case("trace inf duration", trace_writer(segment_rows(duration=float("inf"))), "row 1", "duration_us"),
    trace_case(
        "trace 1e308 durations",
        trace_writer(segment_rows(duration=1e308) + segment_rows(duration=1e308)),
        "row 1",
        "duration_us",
    ),
    trace_case("trace negative bytes", trace_writer(segment_rows(nbytes=-1)), "row 0", "bytes"),
    trace_case("trace unknown kind", trace_writer(segment_rows(kind="dance")), "row 1", "kind"),
    trace_case("trace without groups", trace_writer(segment_rows(group=None)), "row 0", "group"),
    trace_case("trace group without copy", trace_writer(segment_rows()[1:]), "group 's0'", "copy_h2d"),
    trace_case(
        "trace segment beyond memory",
        trace_writer(segment_rows(nbytes=10**13)),
        "segment 0",
        "device memory",
    ),
    # ------------------------------------------------------------------ continuous batching and request files
    sim_case(
        "requests 10^9",
        spec(BATCHING, ("requests = 8", f"requests = {BIG}")),
        "field 'workload.requests'",
        "--max-memory-gb",
    ),
    sim_case(
        "output tokens 10^9",
        spec(BATCHING, ("output_tokens = 8", f"output_tokens = {BIG}")),
        "field 'workload.output_tokens'",
    ),
    sim_case("prompt tokens zero", spec(BATCHING, ("prompt_tokens = 16", "prompt_tokens = 0")), "prompt_tokens"),
    sim_case("output range empty", spec(BATCHING, ("output_tokens = 8", "output_tokens = [9, 3]")), "output_tokens"),
    sim_case(
        "poisson without a rate",
        spec(BATCHING, ('arrivals = "closed_loop"', 'arrivals = "poisson"')),
        "field 'workload'",
        "rate_per_s",
    ),
    sim_case(
        "rate zero",
        spec(BATCHING, ('arrivals = "closed_loop"', 'arrivals = "poisson"\nrate_per_s = 0')),
        "workload.rate_per_s",
    ),
    sim_case("think 1e300", spec(BATCHING, ("clients = 2", "clients = 2\nthink_us = 1e300")), "workload.think_us"),
    sim_case("clients zero", spec(BATCHING, ("clients = 2", "clients = 0")), "workload.clients"),
    sim_case(
        "cost model unknown",
        spec(BATCHING, ('"engine-pmat-quoted"', '"nope"')),
        "field 'workload.cost_model'",
        "not found",
    ),
    Case(
        "cost model with NaN",
        ["sim", "{d}/spec.toml"],
        {
            "spec.toml": spec(BATCHING, ('"engine-pmat-quoted"', '"cost.toml"')),
            "cost.toml": COST_MODEL.replace("base_us = 8000.0", "base_us = nan", 1),
        },
        ("cost.toml", "field 'prefill.base_us'"),
    ),
    sim_case(
        "window NaN",
        spec(BATCHING, ('name = "adaptive"', 'name = "fixed_window"\nwindow_ms = nan')),
        "policies[0].window_ms",
    ),
    requests_case("request CSV wrong header", "a,b,c\n1,2,3\n", "header"),
    requests_case("request CSV not a number", "arrival_us,prompt_tokens,output_tokens\n0,x,4\n", "row 0", "prompt"),
    requests_case("request CSV arrivals backwards", "arrival_us,prompt_tokens,output_tokens\n5,4,4\n1,4,4\n", "row 1"),
    requests_case("request CSV zero tokens", "arrival_us,prompt_tokens,output_tokens\n0,0,4\n", "row 0"),
    requests_case("request CSV arrival 1e300", "arrival_us,prompt_tokens,output_tokens\n1e300,4,4\n", "row 0"),
    requests_case("request CSV NaN arrival", "arrival_us,prompt_tokens,output_tokens\nnan,4,4\n", "row 0"),
    requests_case("request CSV header only", "arrival_us,prompt_tokens,output_tokens\n", "no requests"),
    requests_case("request CSV Azure bad time", "TIMESTAMP,ContextTokens,GeneratedTokens\nsoon,4,4\n", "row 0"),
    requests_case("request CSV binary", "\x00\x01\x02", "requests.csv"),
    Case(
        "request Parquet without metadata",
        ["sim", "{d}/spec.toml"],
        {
            "spec.toml": spec(BATCHING_TRACE, ("requests.csv", "r.parquet")),
            "r.parquet": request_parquet_without_metadata,
        },
        ("r.parquet", "format_version"),
    ),
    # ------------------------------------------------------------------ the other workloads
    sim_case("kv steps one", spec(KV, ("steps = 8", "steps = 1")), "field 'workload.steps'"),
    sim_case("kv 65 ranks", spec(KV, ("steps = 8", "steps = 8\ntp_ranks = 65")), "field 'workload.tp_ranks'"),
    sim_case("kv steps 10^9", spec(KV, ("steps = 8", f"steps = {BIG}")), "field 'workload.steps'", "limit"),
    sim_case("kv forward inf", spec(KV, ("500.0", "inf")), "field 'workload.forward_us'"),
    sim_case(
        "kv copy wider than layers",
        spec(KV, ("steps = 8", "steps = 8\nlayers_per_copy = 9")),
        "field 'workload'",
        "layers_per_copy",
    ),
    sim_case("pipeline one stage", spec(PIPELINE, ("stages = 2", "stages = 1")), "field 'workload.stages'"),
    sim_case("pipeline compute list", spec(PIPELINE, ("300.0", "[1.0, 2.0, 3.0]")), "field 'workload'", "compute"),
    sim_case("pipeline tokens 10^9", spec(PIPELINE, ("tokens = 8", f"tokens = {BIG}")), "field 'workload.tokens'"),
    sim_case("pipeline link zero", spec(PIPELINE, ("= 100.0", "= 0.0")), "field 'workload.link_gbit_per_s'"),
    sim_case("offload no blocks", spec(OFFLOAD, ("corpus_bytes = 1048576\n", "")), "field 'workload'"),
    sim_case(
        "offload corpus 10^18",
        spec(OFFLOAD, ("corpus_bytes = 1048576", "corpus_bytes = 1000000000000000000")),
        "field 'workload.corpus_bytes'",
    ),
    sim_case("offload CPU rate zero", spec(OFFLOAD, ("cpu_mibps = 28.0", "cpu_mibps = 0.0")), "stages"),
    sim_case(
        "offload CPU rate 1e-300",
        spec(OFFLOAD, ("cpu_mibps = 28.0", "cpu_mibps = 1e-300")),
        "field 'workload.stages'",
    ),
    Case(
        "offload block-size file with zero",
        ["sim", "{d}/spec.toml"],
        {
            "spec.toml": spec(OFFLOAD, ("corpus_bytes = 1048576\nblock_bytes = 131072", 'block_sizes = "b.csv"')),
            "b.csv": "block_bytes\n100\n0\n",
        },
        ("b.csv", "row 1"),
    ),
    # ------------------------------------------------------------------ command-line flags
    Case("bench segments zero", ["bench", "--segments", "0"], {}, ("--segments",), usage=True),
    Case("bench segments negative", ["bench", "--segments", "-5"], {}, ("--segments",), usage=True),
    Case("bench repeat zero", ["bench", "--repeat", "0"], {}, ("--repeat",), usage=True),
    Case("bench policy bogus", ["bench", "--policy", "bogus"], {}, ("bench_layer_streaming.toml", "bogus")),
    Case("bench set NaN", ["bench", "--set", "compute_us=nan"], {}, ("bench_layer_streaming.toml", "compute_us")),
    Case("bench set without value", ["bench", "--set", "segments"], {}, ("--set",), usage=True),
    Case("bench set unknown field", ["bench", "--set", "colour=1"], {}, ("bench_layer_streaming.toml", "colour")),
    Case("bench segments 10^9", ["bench", "--segments", str(BIG)], {}, ("field 'workload.segments'", "limit")),
    Case(
        "bench-batching requests 10^9",
        ["bench-batching", "--requests", str(BIG)],
        {},
        ("--requests", "HARNESS_MAX_MEMORY_GB"),
    ),
    Case("crossover lo above hi", ["batching-crossover", "--lo", "200", "--hi", "100"], {}, ("--lo", "--hi")),
    Case(
        "sim max-ops zero",
        ["sim", "{d}/spec.toml", "--max-ops", "0"],
        {"spec.toml": LAYERS},
        ("--max-ops",),
        usage=True,
    ),
    Case(
        "sim max-ops below the spec",
        ["sim", "{d}/spec.toml", "--max-ops", "10"],
        {"spec.toml": LAYERS},
        ("spec.toml", "field 'workload.segments'", "--max-ops"),
    ),
    Case(
        "memory limit variable not a number",
        ["sim", "{d}/spec.toml"],
        {"spec.toml": LAYERS},
        ("HARNESS_MAX_MEMORY_GB", "abc"),
        env={"HARNESS_MAX_MEMORY_GB": "abc"},
    ),
    Case(
        "runs limit variable zero",
        ["sim", "{d}/spec.toml"],
        {"spec.toml": LAYERS},
        ("HARNESS_MAX_RUNS",),
        env={"HARNESS_MAX_RUNS": "0"},
    ),
    # ------------------------------------------------------------------ output paths
    Case("out under a file", ["sim", "{d}/spec.toml", "--out", "{d}/f/x"], {"spec.toml": LAYERS, "f": "x"}, ("f/x",)),
    Case(
        "results root is a file",
        ["sim", "{d}/spec.toml", "--results-root", "{d}/f"],
        {"spec.toml": LAYERS, "f": "x"},
        ("is a file",),
    ),
    Case("out in /proc", ["sim", "{d}/spec.toml", "--out", "/proc/harness-x"], {"spec.toml": LAYERS}, ("/proc",)),
    Case(
        "out exists",
        ["sim", "{d}/spec.toml", "--out", "{d}/old"],
        {"spec.toml": LAYERS, "old/keep.txt": "x"},
        ("old", "already exists"),
    ),
    Case(
        "out name of 300 characters",
        ["sim", "{d}/spec.toml", "--out", "{d}/" + LONG],
        {"spec.toml": LAYERS},
        ("longer than",),
    ),
    Case(
        "compare out under a file",
        ["compare", "{d}/r", "--out", "{d}/f/x.parquet"],
        {"f": "x", "r": results_folder},
        ("f/x.parquet", "is a file"),
    ),
    Case(
        "compare out in /proc",
        ["compare", "{d}/r", "--out", "/proc/x.parquet"],
        {"r": results_folder},
        ("/proc/x.parquet",),
    ),
    Case(
        "compare results root is a file",
        ["compare", "{d}/r", "--results-root", "{d}/f"],
        {"f": "x", "r": results_folder},
        ("is a file",),
    ),
    Case("compare results missing", ["compare", "{d}/nope"], {}, ("nope",)),
    Case("synth-layers under a file", ["trace", "synth-layers", "{d}/f/t.parquet"], {"f": "x"}, ("f/t.parquet",)),
    Case("synth-layers in /proc", ["trace", "synth-layers", "/proc/t.parquet"], {}, ("/proc/t.parquet",)),
    Case(
        "synth-layers over a file",
        ["trace", "synth-layers", "{d}/t.parquet"],
        {"t.parquet": "keep"},
        ("t.parquet", "--force"),
    ),
    Case("synth-layers to a folder", ["trace", "synth-layers", "{d}/sub"], {"sub/k": "x"}, ("sub", "folder")),
    Case(
        "synth-layers segments zero",
        ["trace", "synth-layers", "{d}/t.parquet", "--segments", "0"],
        {},
        ("--segments",),
        usage=True,
    ),
    Case(
        "synth-layers compute 1e308",
        ["trace", "synth-layers", "{d}/t.parquet", "--compute-us", "1e308"],
        {},
        ("--compute-us",),
    ),
    Case(
        "synth-layers unknown profile",
        ["trace", "synth-layers", "{d}/t.parquet", "--profile", "nope"],
        {},
        ("nope", "unknown hardware profile"),
    ),
    Case("trace validate missing", ["trace", "validate", "{d}/nope.parquet"], {}, ("nope.parquet", "not found")),
    Case(
        "trace validate NaN row",
        ["trace", "validate", "{d}/t.parquet"],
        {"t.parquet": trace_writer(segment_rows(duration=float("nan")))},
        ("t.parquet", "row 1", "duration_us"),
    ),
    Case(
        "trace validate zero rows",
        ["trace", "validate", "{d}/t.parquet"],
        {"t.parquet": trace_writer([])},
        ("t.parquet", "no ops"),
    ),
    # ------------------------------------------------------------------ torch.profiler traces (harness trace import)
    Case(
        "profiler trace missing",
        ["trace", "import", "{d}/p.json", "--out", "{d}/t.parquet"],
        {},
        ("p.json",),
    ),
    Case(
        "profiler trace import under a file",
        ["trace", "import", "{d}/p.json", "--out", "{d}/file/t.parquet"],
        {"p.json": '{"traceEvents": []}', "file": "x"},
        ("file", "is a file"),
    ),
    Case(
        "perfetto export over an existing file",
        ["export", "perfetto", "{d}/res", "--out", "{d}/old.json"],
        {"old.json": "{}"},
        ("old.json", "already exists"),
    ),
    Case(
        "profiler trace not JSON",
        ["trace", "import", "{d}/p.json", "--out", "{d}/t.parquet"],
        {"p.json": "{not json"},
        ("p.json",),
    ),
    Case(
        "profiler trace without events",
        ["trace", "import", "{d}/p.json", "--out", "{d}/t.parquet"],
        {"p.json": '{"traceEvents": []}'},
        ("p.json",),
    ),
    Case(
        "profiler import over a file",
        ["trace", "import", "{d}/p.json", "--out", "{d}/t.parquet"],
        {"p.json": '{"traceEvents": []}', "t.parquet": "keep"},
        ("t.parquet", "already exists"),
    ),
]

runner = CliRunner()


def _make(folder: Path, files: Files) -> None:
    for name, content in files.items():
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if callable(content):
            content(path)
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


def _tree(folder: Path) -> dict[str, str]:
    """Every entry under ``folder`` (hidden ones included) with a hash of its bytes."""
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else "dir"
        for p in sorted(folder.rglob("*"))
    }


def test_the_corpus_is_large_and_covers_every_input_kind():
    assert len(CASES) >= 80
    assert len({c.id for c in CASES}) == len(CASES)


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_is_refused_cleanly_and_writes_nothing(case, tmp_path, monkeypatch):
    folder = tmp_path / "case"
    folder.mkdir()
    _make(folder, case.files)
    before = _tree(folder)
    monkeypatch.chdir(folder)
    for key in ("HARNESS_MAX_RUNS", "HARNESS_MAX_OPS", "HARNESS_MAX_MEMORY_GB"):
        monkeypatch.delenv(key, raising=False)
    for key, value in case.env.items():
        monkeypatch.setenv(key, value)
    argv = [a.replace("{d}", str(folder)) for a in case.argv]
    result = runner.invoke(app, argv)
    output = result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), output
    assert result.exit_code == 2, output
    assert "Traceback" not in output
    if case.usage:
        flat = " ".join(output.replace("│", " ").split())
        assert "Invalid value" in flat or "Missing" in flat or "expected KEY=VALUE" in flat, output
        assert all(name in flat for name in case.names), output
    else:
        errors = [line for line in output.splitlines() if line.startswith("error:")]
        assert len(errors) == 1, output
        assert all(name in errors[0] for name in case.names), (errors[0], case.names)
    assert _tree(folder) == before, "the refused command wrote something"
    assert not any(p.name.startswith(".") for p in folder.parent.iterdir())


def test_refused_huge_specs_stay_under_a_gigabyte(tmp_path):
    """The largest refusals (10^9 requests, segments, repetitions) are decided before anything is allocated."""
    cases = {
        "requests": spec(BATCHING, ("requests = 8", f"requests = {BIG}")),
        "segments": spec(LAYERS, ("segments = 4", f"segments = {BIG}")),
        "repetitions": spec(LAYERS, ("seed = 0", f"seed = 0\nrepetitions = {BIG}")),
    }
    script = (
        "import resource, sys\n"
        "from typer.testing import CliRunner\n"
        "from harness.cli import app\n"
        "code = CliRunner().invoke(app, ['sim', sys.argv[1]]).exit_code\n"
        "print(code, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)\n"
    )
    for name, text in cases.items():
        path = tmp_path / f"{name}.toml"
        path.write_text(text)
        env = {k: v for k, v in os.environ.items() if not k.startswith("HARNESS_MAX_")}
        done = subprocess.run(
            [sys.executable, "-c", script, str(path)],
            capture_output=True,
            text=True,
            cwd=tmp_path,
            env=env,
            timeout=120,
        )
        code, peak_kib = done.stdout.split()
        assert code == "2", (name, done.stdout, done.stderr)
        assert int(peak_kib) * 1024 < 1e9, (name, peak_kib)
    assert not (tmp_path / "results").exists()
    assert resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024 < 1e9


def test_labels_with_markup_and_sweep_points_are_printed_whole(tmp_path, monkeypatch):
    """A label that looks like rich markup, and sweep labels wider than 80 columns in all, survive piped output."""
    text = spec(
        LAYERS,
        ('name = "sync"', 'name = "sync"\nlabel = "[/]oops[bold"'),
        ("depth = 2", "sweep = { depth = [1, 2, 3, 4] }"),
    )
    (tmp_path / "spec.toml").write_text(text)
    monkeypatch.chdir(tmp_path)
    result = runner.invoke(app, ["sim", "spec.toml", "--out", "out"])
    assert result.exit_code == 0, result.output
    for label in ("[/]oops[bold", *(f"prefetch[depth={d}]" for d in range(1, 5))):
        assert label in result.output, result.output
    assert "…" not in result.output
