"""Synthetic torch.profiler traces of a tensor-parallel program, one file per rank (issue 26's tests).

Each rank runs ``layers`` steps of a gemm then an all-reduce of ``nbytes`` (float32), launched by one host
thread that runs ahead of the GPU, then a ``cudaDeviceSynchronize``. The all-reduce runs on the compute
stream, or (``nccl_stream``) on a stream of its own as torch's process group runs it, ordered with the
compute stream (the importer infers those orderings from the start times: no sync events). On one wall
clock: rank r starts ``offset_us[r]`` late; rank r's all-reduce of layer l starts when its gemm ends and
ends on every rank together, ``collective_us`` after the last rank's gemm ended; the next gemm starts then.
"""

from __future__ import annotations

import json
from pathlib import Path

BASE_US = 1_700_000_000_000_000.0  # epoch µs
LAUNCH_US = 5.0  # each launch call's duration
CALL_EVERY_US = 10.0  # the host issues a call this often
COMPUTE_STREAM, NCCL_STREAM = 7, 20
RING_KERNEL = "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)"


def nccl_args(world: int, nbytes: int) -> dict:
    return {
        "Collective name": "allreduce",
        "dtype": "Float",
        "In msg nelems": nbytes // 4,
        "Out msg nelems": nbytes // 4,
        "Group size": world,
        "Process Group Ranks": str(list(range(world))),
    }


def tp_rank_traces(
    world: int,
    layers: int,
    compute_us: list[list[float]],  # [rank][layer]
    offset_us: list[float],
    collective_us: float,
    nbytes: int,
    nccl_stream: bool = False,
) -> list[dict]:
    """Every rank's trace (a Chrome trace document each); see the module docstring."""
    coll_stream = NCCL_STREAM if nccl_stream else COMPUTE_STREAM
    gemm_start = [[0.0] * layers for _ in range(world)]
    ar_end = [0.0] * layers
    for layer in range(layers):
        for r in range(world):
            first = BASE_US + offset_us[r] + LAUNCH_US + 1.0
            gemm_start[r][layer] = first if layer == 0 else ar_end[layer - 1]
        ar_end[layer] = max(gemm_start[r][layer] + compute_us[r][layer] for r in range(world)) + collective_us
    docs = []
    for r in range(world):
        host = {"pid": 100 + r, "tid": 7}
        t = BASE_US + offset_us[r]
        events: list[dict] = []
        for layer in range(layers):
            gemm, ar = 2 * layer + 1, 2 * layer + 2
            start, end = gemm_start[r][layer], gemm_start[r][layer] + compute_us[r][layer]
            events += [
                {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernel", **host, "ts": t, "dur": LAUNCH_US,
                 "args": {"correlation": gemm}},
                {"ph": "X", "cat": "kernel", "name": "ampere_bf16_gemm", "pid": r, "tid": COMPUTE_STREAM,
                 "ts": start, "dur": end - start, "args": {"correlation": gemm, "device": r, "stream": COMPUTE_STREAM}},
                {"ph": "X", "cat": "cuda_runtime", "name": "cudaLaunchKernelExC", **host, "ts": t + CALL_EVERY_US,
                 "dur": LAUNCH_US, "args": {"correlation": ar}},
                {"ph": "X", "cat": "kernel", "name": RING_KERNEL, "pid": r, "tid": coll_stream, "ts": end,
                 "dur": ar_end[layer] - end,
                 "args": {"correlation": ar, "device": r, "stream": coll_stream, **nccl_args(world, nbytes)}},
            ]  # fmt: skip
            t += 2 * CALL_EVERY_US
        events.append(
            {"ph": "X", "cat": "cuda_runtime", "name": "cudaDeviceSynchronize", **host, "ts": t,
             "dur": ar_end[-1] + 1.0 - t, "args": {"correlation": 1000}}
        )  # fmt: skip
        docs.append({"traceEvents": events})
    return docs


def write_rank_traces(folder: Path, docs: list[dict]) -> list[Path]:
    paths = []
    for r, doc in enumerate(docs):
        path = folder / f"rank{r}.json"
        path.write_text(json.dumps(doc))
        paths.append(path)
    return paths


def recorded_span_us(docs: list[dict]) -> float:
    """The recording's span: the earliest rank's first call to the last op's or call's end."""
    events = [e for doc in docs for e in doc["traceEvents"]]
    return max(e["ts"] + e["dur"] for e in events) - min(e["ts"] for e in events)
