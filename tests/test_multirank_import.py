"""The multi-rank importer (issue 26) on small synthetic traces: one torch.profiler file per rank merged
into one trace on as many devices, NCCL kernels as collectives."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from harness.cli import app
from harness.errors import InputError
from harness.multirank_import import (
    CollectiveCall,
    collective_name,
    describe_collective,
    import_rank_traces,
    parse_collective_name,
)
from harness.trace import load_trace

BASE = 1_700_000_000_000_000.0  # epoch µs
NELEMS = 1 << 20  # float32: a 4 MiB all-reduce
LAUNCH_US = 5.0


def nccl_args(world: int, **extra) -> dict:
    return {
        "Collective name": "allreduce",
        "dtype": "Float",
        "In msg nelems": NELEMS,
        "Out msg nelems": NELEMS,
        "Group size": world,
        "Process Group Ranks": str(list(range(world))),
        **extra,
    }


def rank_trace(rank: int, world: int, compute_us: list[float], offset_us: list[float], collective_us: float, *,
               args_on_kernel: bool = True) -> dict:  # fmt: skip
    """Rank ``rank`` of a TP step: a gemm of ``compute_us[rank]``, an all-reduce on the same stream, a device sync.

    Rank r starts ``offset_us[r]`` after rank 0 (one wall clock); the all-reduce starts on each rank when its
    gemm ends and ends on every rank together, ``collective_us`` after the last gemm ends.
    """
    t0 = BASE + offset_us[rank]
    host = {"pid": 100 + rank, "tid": 7}
    gemm_start = t0 + LAUNCH_US + 1.0
    gemm_end = gemm_start + compute_us[rank]
    all_end = max(BASE + offset_us[r] + LAUNCH_US + 1.0 + compute_us[r] for r in range(world)) + collective_us
    events = [
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", **host, "ts": t0, "dur": LAUNCH_US,
         "args": {"correlation": 1}},
        {"ph": "X", "cat": "kernel", "name": "ampere_bf16_gemm", "pid": rank, "tid": 7, "ts": gemm_start,
         "dur": compute_us[rank], "args": {"correlation": 1, "device": rank, "stream": 7}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernelExC", **host, "ts": t0 + LAUNCH_US + 2,
         "dur": LAUNCH_US, "args": {"correlation": 2}},
        {"ph": "X", "cat": "kernel", "name": "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*)", "pid": rank,
         "tid": 7, "ts": gemm_end, "dur": all_end - gemm_end,
         "args": {"correlation": 2, "device": rank, "stream": 7, **(nccl_args(world) if args_on_kernel else {})}},
        {"ph": "X", "cat": "cuda_runtime", "name": "cudaDeviceSynchronize", **host, "ts": t0 + 2 * LAUNCH_US + 4,
         "dur": all_end + 1.0 - (t0 + 2 * LAUNCH_US + 4), "args": {"correlation": 3}},
    ]  # fmt: skip
    if not args_on_kernel:  # older torch: the collective's metadata is on the record_param_comms op around the launch
        events.append(
            {"ph": "X", "cat": "cpu_op", "name": "record_param_comms", **host, "ts": t0 + LAUNCH_US + 1.5,
             "dur": LAUNCH_US + 1, "args": nccl_args(world)}
        )  # fmt: skip
    return {"traceEvents": events}


def write_ranks(tmp_path: Path, world: int, compute_us, offset_us, collective_us, **kw) -> list[Path]:
    paths = []
    for r in range(world):
        path = tmp_path / f"rank{r}.json"
        path.write_text(json.dumps(rank_trace(r, world, compute_us, offset_us, collective_us, **kw)))
        paths.append(path)
    return paths


def test_names_carry_the_collective_and_read_back():
    call = CollectiveCall("send", 4096, (1, 3), 3, "ncclDevKernel_SendRecv(x, y)")
    assert parse_collective_name(collective_name(call)) == call
    assert parse_collective_name("ncclDevKernel_AllReduce") is None


def test_args_describe_the_collective_in_nccl_tests_sizes():
    ar = describe_collective(nccl_args(4), rank=2, world=4, kernel="k")
    assert ar == CollectiveCall("all_reduce", 4 * NELEMS, (0, 1, 2, 3), None, "k")
    gather = {**nccl_args(4), "Collective name": "_allgather_base", "dtype": "BFloat16", "In msg nelems": 10,
              "Out msg nelems": 40}  # fmt: skip
    assert describe_collective(gather, 0, 4, "k").nbytes == 80  # the gathered output
    scatter = {**gather, "Collective name": "reduce_scatter_tensor", "In msg nelems": 40, "Out msg nelems": 10}
    assert describe_collective(scatter, 0, 4, "k").nbytes == 80  # the full input
    send = {**nccl_args(2), "Collective name": "send", "Dst Rank": 1}
    assert describe_collective(send, 0, 2, "k") == CollectiveCall("send", 4 * NELEMS, (0, 1), 1, "k")
    assert describe_collective({**nccl_args(4), "Collective name": "alltoall"}, 0, 4, "k") is None
    assert describe_collective({**nccl_args(8)}, 0, 4, "k") is None  # ranks beyond the traces given


@pytest.mark.parametrize("world", [2, 4])
@pytest.mark.parametrize("args_on_kernel", [True, False], ids=["kernel-args", "record_param_comms"])
def test_traces_merge_into_one_program_with_the_collectives(tmp_path, world, args_on_kernel):
    compute = [100.0 + 40.0 * r for r in range(world)]
    offsets = [30.0 * r for r in range(world)]
    merged = import_rank_traces(write_ranks(tmp_path, world, compute, offsets, 50.0, args_on_kernel=args_on_kernel))
    ops = merged.ops
    assert merged.devices == tuple(range(world))
    coll = ops[ops["kind"] == "collective"].sort_values("device")
    assert coll["device"].tolist() == list(range(world))
    assert (coll["bytes"] == 4 * NELEMS).all()
    assert parse_collective_name(coll["name"].iloc[0]).devices == tuple(range(world))
    gemms = ops[ops["name"] == "ampere_bf16_gemm"].sort_values("device")
    assert gemms["start_us"].tolist() == pytest.approx([o + LAUNCH_US + 1.0 for o in offsets])  # one clock
    assert set(ops.loc[ops["device"] < 0, "thread"]) == {f"r{r}:7" for r in range(world)}
    assert ops.loc[ops["device"] < 0, "correlation"].nunique() == 3 * world  # no two ranks share a link


def test_the_merged_trace_is_a_valid_op_trace_of_one_device_per_rank(tmp_path):
    """Written by the CLI from one file per rank: a valid trace whose ranks' collectives agree."""
    world = 4
    paths = write_ranks(tmp_path, world, [200.0, 260.0, 230.0, 300.0], [0.0, 20.0, 10.0, 5.0], 30.0)
    out = tmp_path / "merged.parquet"
    result = CliRunner().invoke(app, ["trace", "import", *map(str, paths), "--out", str(out)])
    assert result.exit_code == 0, result.output
    trace = load_trace(out)
    coll = trace.ops[trace.ops["kind"] == "collective"]
    calls = [parse_collective_name(n) for n in coll["name"]]
    assert sorted(coll["device"]) == list(range(world))
    assert {(c.op, c.nbytes, c.devices) for c in calls} == {("all_reduce", 4 * NELEMS, tuple(range(world)))}
    ends = coll["start_us"] + coll["duration_us"]
    assert ends.max() - ends.min() < 1e-6  # recorded on one clock, they end together
    assert "4 ranks" in trace.provenance.source


def test_a_rank_file_with_two_gpus_or_a_single_file_is_refused(tmp_path):
    paths = write_ranks(tmp_path, 2, [100.0, 100.0], [0.0, 0.0], 20.0)
    with pytest.raises(InputError, match="one trace per rank, 2 or more"):
        import_rank_traces(paths[:1])
    two = json.loads(paths[0].read_text())
    launch = dict(two["traceEvents"][0], args={"correlation": 50})
    extra = dict(two["traceEvents"][1], pid=5, args={"correlation": 50, "device": 5, "stream": 7})
    two["traceEvents"] += [launch, extra]
    paths[0].write_text(json.dumps(two))
    with pytest.raises(InputError, match=r"rank0.json: .*2 devices \[0, 5\]"):  # one rank, one GPU
        import_rank_traces(paths)
    result = CliRunner().invoke(app, ["trace", "import", *map(str, paths), "--device", "0", "-o", str(tmp_path / "x")])
    assert result.exit_code == 2 and "cannot be given with one trace per rank" in result.output


def test_nccl_kernels_without_metadata_stay_kernels_and_are_counted(tmp_path):
    paths = write_ranks(tmp_path, 2, [100.0, 100.0], [0.0, 0.0], 20.0)
    for path in paths:
        doc = json.loads(path.read_text())
        for e in doc["traceEvents"]:
            if e.get("cat") == "kernel":
                e["args"] = {"correlation": e["args"]["correlation"], "device": e["pid"], "stream": 7}
        path.write_text(json.dumps(doc))
    merged = import_rank_traces(paths)
    assert (merged.ops["kind"] == "collective").sum() == 0
    assert "2 NCCL kernel(s) whose operation, size or participants" in merged.provenance.notes
