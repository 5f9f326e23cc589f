"""Import one torch.profiler trace per rank into one multi-device op trace (issue 26).

``import_rank_traces([rank0.json, rank1.json, ...])`` imports each file as
``harness trace import`` does (:mod:`harness.profiler_import`) and merges them:

* **rank r's GPU is device r** (files in global-rank order; each file holds one
  GPU, as torch.profiler records one process); its host threads are named
  ``r<r>:<tid>`` and its correlations move by ``r << 40`` so that links stay
  within their rank;
* **one clock**: every rank's times are moved to the earliest rank's time 0
  (ranks on one host share the wall clock the files record);
* **NCCL kernels become collectives** (kind ``collective``): the operation, the
  size in nccl-tests' convention (all-reduce, reduce-scatter, broadcast, send:
  the input; all-gather, recv: the output) and the participants are read from
  the kernel's ``args`` (``Collective name``, ``In msg nelems``, ``Out msg
  nelems``, ``dtype``, ``Process Group Ranks``, ``Group size``, ``Src Rank`` /
  ``Dst Rank``, as torch >= 2.2 records them) or else from the
  ``record_param_comms`` op that launched it on the same thread (older torch).
  The name carries them (:func:`collective_name`); an NCCL kernel whose
  operation, size or participants the trace does not give stays a kernel of its
  recorded duration, counted in the provenance notes.

The ranks' collectives are checked to agree (:func:`collective_mismatch`: the k-th
on a set of ranks the same operation, size and root on each, as many on each);
traces that disagree are refused naming the rank's file. A recorded spec of
``devices = N`` re-issues the merged trace ``as_recorded``: each collective as an
``OP_COLLECTIVE`` step of the program command (``harness.program``), NCCL's algorithm
from its kernel's name (:func:`recorded_algorithm`); ``docs/collectives.md``.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd

from harness.errors import InputError
from harness.kineto_events import parse_events, read_json_bytes
from harness.profiler_import import ImportedTrace, import_profiler_trace
from harness.trace import write_trace

RANK_CORRELATION_STRIDE = 1 << 40
_NCCL = re.compile(r"^nccl", re.IGNORECASE)
_OPS_BY_ARG = {
    "allreduce": "all_reduce",
    "all_reduce": "all_reduce",
    "allgather": "all_gather",
    "all_gather": "all_gather",
    "_allgather_base": "all_gather",
    "all_gather_into_tensor": "all_gather",
    "allgather_into_tensor_coalesced": "all_gather",
    "reduce_scatter": "reduce_scatter",
    "_reduce_scatter_base": "reduce_scatter",
    "reduce_scatter_tensor": "reduce_scatter",
    "reduce_scatter_tensor_coalesced": "reduce_scatter",
    "broadcast": "broadcast",
    "send": "send",
    "recv": "recv",
}
_DTYPE_BYTES = {
    "float": 4, "float32": 4, "int": 4, "int32": 4, "uint32": 4,
    "double": 8, "float64": 8, "long": 8, "int64": 8,
    "bfloat16": 2, "half": 2, "float16": 2, "short": 2, "int16": 2,
    "byte": 1, "char": 1, "int8": 1, "uint8": 1, "bool": 1,
    "float8_e4m3fn": 1, "float8_e5m2": 1, "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1,
}  # fmt: skip
_INPUT_SIZED = ("all_reduce", "reduce_scatter", "broadcast", "send")


@dataclass(frozen=True)
class CollectiveCall:
    """What a recorded NCCL kernel did: the operation, nccl-tests' size, the devices, the peer or root."""

    op: str
    nbytes: int
    devices: tuple[int, ...]
    peer: int | None  # send/recv: the other device; broadcast: the root
    kernel: str


def collective_name(call: CollectiveCall) -> str:
    """The op-trace name of a recorded collective: ``nccl:<op>:<bytes>:<devices>:<peer>:<kernel>``."""
    peer = "-" if call.peer is None else str(call.peer)
    devices = ",".join(map(str, call.devices))
    return f"nccl:{call.op}:{call.nbytes}:{devices}:{peer}:{call.kernel}"


_NAME = re.compile(r"^nccl:(\w+):(\d+):([\d,]+):(-|\d+):(.*)$", re.DOTALL)


def parse_collective_name(name: str) -> CollectiveCall | None:
    """The :class:`CollectiveCall` a name of :func:`collective_name` carries, or None for any other name."""
    m = _NAME.match(name)
    if m is None:
        return None
    op, nbytes, devices, peer, kernel = m.groups()
    ranks = tuple(int(d) for d in devices.split(","))
    return CollectiveCall(op, int(nbytes), ranks, None if peer == "-" else int(peer), kernel)


_ALGORITHM = re.compile(r"_(NVLS_TREE|NVLS|COLLNET_DIRECT|COLLNET_CHAIN|RING|TREE|PAT)(?=_|\b|\()", re.IGNORECASE)


def recorded_algorithm(kernel: str) -> str | None:
    """NCCL's algorithm as its kernel's name gives it (``ncclDevKernel_AllReduce_Sum_f32_RING_LL``: ``"ring"``);
    None when the name does not say (send/recv kernels, other names)."""
    m = _ALGORITHM.search(kernel)
    return m.group(1).lower() if m else None


def _ranks(args: dict, world: int) -> tuple[int, ...] | None:
    """The group's global ranks: ``Process Group Ranks`` ("[0, 1, 2]"), else ``Group size`` ranks from 0."""
    listed = args.get("Process Group Ranks")
    if isinstance(listed, str) and "..." not in listed:
        found = tuple(int(r) for r in re.findall(r"-?\d+", listed))
        if found:
            return found
    if isinstance(listed, list) and listed:
        return tuple(int(r) for r in listed)
    size = args.get("Group size")
    if isinstance(size, (int, float)) and size >= 1:
        return tuple(range(int(size)))
    return None


def describe_collective(args: dict, rank: int, world: int, kernel: str) -> CollectiveCall | None:
    """The collective a recorded NCCL kernel's ``args`` describe (None: the trace does not say enough)."""
    op = _OPS_BY_ARG.get(str(args.get("Collective name", "")).lower())
    dtype = _DTYPE_BYTES.get(str(args.get("dtype", "")).lower())
    ranks = _ranks(args, world)
    if op is None or dtype is None or ranks is None or any(not 0 <= r < world for r in ranks):
        return None
    nelems = args.get("In msg nelems" if op in _INPUT_SIZED else "Out msg nelems")
    if not isinstance(nelems, (int, float)) or nelems < 0:
        return None
    peer = None
    if op in ("send", "recv"):
        key = "Dst Rank" if op == "send" else "Src Rank"
        value = args.get(key)
        if isinstance(value, (int, float)):
            peer = int(value)
        elif len(ranks) == 2:
            peer = ranks[1] if ranks[0] == rank else ranks[0]
        if peer is None or peer == rank or not 0 <= peer < world:
            return None
        ranks = tuple(sorted({rank, peer}))
    elif op == "broadcast":
        root = args.get("Root rank", args.get("Src Rank"))
        peer = int(root) if isinstance(root, (int, float)) else ranks[0]
    if rank not in ranks:
        return None
    return CollectiveCall(op, int(nelems) * dtype, ranks, peer, kernel)


def _kernel_args(path: Path, ops: pd.DataFrame) -> dict[int, dict]:
    """``{row index: args}`` of the NCCL kernels of one imported file: the kernel's own, or the launching
    thread's latest ``record_param_comms`` before its launch (older torch records them there only)."""
    events, _ = parse_events(path, read_json_bytes(path))
    nccl = ops[(ops["kind"] == "kernel") & ops["name"].str.match(_NCCL)]
    if nccl.empty:
        return {}
    comms = [e for e in events if e.get("ph") == "X" and e.get("name") == "record_param_comms"]
    by_thread: dict[str, list[tuple[float, dict]]] = {}
    for event in comms:
        if "Collective name" in (event.get("args") or {}):
            by_thread.setdefault(str(event.get("tid")), []).append((float(event.get("ts", 0.0)), event["args"]))
    times: dict[str, np.ndarray] = {}
    for thread, entries in by_thread.items():
        entries.sort(key=lambda e: e[0])
        times[thread] = np.array([t for t, _ in entries])
    found: dict[int, dict] = {}
    for index, source, thread, launch in zip(nccl.index, nccl["source_index"], nccl["thread"], nccl["launch_us"]):
        args = events[int(source)].get("args") or {}
        if "Collective name" not in args and str(thread) in times and launch == launch:
            at_us = _file_time(events, int(source), ops.loc[index], launch)
            at = int(np.searchsorted(times[str(thread)], at_us, side="right")) - 1
            args = by_thread[str(thread)][at][1] if at >= 0 else args
        found[index] = args
    return found


def _file_time(events: list, source: int, row: pd.Series, launch_us: float) -> float:
    """The file's own clock at ``launch_us`` (rebased µs), from the kernel's event: its ts minus its start."""
    return float(events[source].get("ts", 0.0)) - float(row["start_us"]) + float(launch_us)


def _describe(op: str, nbytes: int, root: int | None) -> str:
    return f"{op} of {nbytes} bytes" + ("" if root is None else f" from root {root}")


def collective_mismatch(ops: pd.DataFrame) -> tuple[int, str] | None:
    """The first rank whose recorded collectives disagree with the other ranks': ``(rank, what is wrong)``, or None.

    The k-th collective each rank issues on a set of ranks must be the same operation, size and root on every rank
    of the set (the k-th send from a to b: the k-th receive at b from a), and every rank must issue as many, as a
    run of the program does; traces that were cut at different steps, or that are not one run's ranks, do not.
    A rank's collectives are taken in the order it launched them.
    """
    coll = ops[ops["kind"] == "collective"]
    if coll.empty:
        return None
    order = coll.sort_values(["launch_us", "start_us"], kind="stable", na_position="last")
    sequences: dict[tuple, dict[int, list[tuple]]] = {}  # channel -> device -> what it issued, in order
    for device, name in zip(order["device"].tolist(), order["name"].tolist()):
        call = parse_collective_name(str(name))
        if call is None:
            continue
        if call.op in ("send", "recv"):
            src, dst = (device, call.peer) if call.op == "send" else (call.peer, device)
            channel: tuple = ("p2p", src, dst)
            entry: tuple = ("send", call.nbytes, None)
            members: tuple[int, ...] = (src, dst)
        else:
            channel = ("collective", call.devices)
            entry = (call.op, call.nbytes, call.peer if call.op == "broadcast" else None)
            members = call.devices
        issued = sequences.setdefault(channel, {d: [] for d in members})
        issued.setdefault(int(device), []).append(entry)
    for channel in sorted(sequences, key=str):
        issued = sequences[channel]
        first, *others = sorted(issued)
        for rank in others:
            mine, theirs = issued[rank], issued[first]
            for k, (a, b) in enumerate(zip(mine, theirs)):
                if a != b:
                    if channel[0] == "p2p":
                        where = f"transfer #{k} from rank {channel[1]} to rank {channel[2]}"
                    else:
                        where = f"collective #{k} on ranks {list(channel[1])}"
                    return rank, f"{where} is {_describe(*a)}, but rank {first}'s is {_describe(*b)}"
            if len(mine) != len(theirs):
                if channel[0] == "p2p":
                    what = f"rank {channel[1]} sends {len(issued[channel[1]])} message(s) to rank {channel[2]}, which"
                    what += f" receives {len(issued[channel[2]])} from it"
                else:
                    what = (
                        f"{len(mine)} collective(s) on ranks {list(channel[1])}, rank {first}'s trace"
                        f" {len(theirs)}"
                    )
                return rank, (
                    f"{what}: every rank's trace must cover the same steps of one run (start and stop the profiler"
                    " at the same step on every rank)"
                )
    return None


def import_rank_traces(paths: Sequence[str | Path]) -> ImportedTrace:
    """Merge one trace per rank into one multi-device trace (see the module docstring)."""
    paths = [Path(p) for p in paths]
    if len(paths) < 2:
        raise InputError(paths[0] if paths else "-", "", "a multi-rank import takes one trace per rank, 2 or more")
    world = len(paths)
    imported = [import_profiler_trace(p) for p in paths]
    for path, one in zip(paths, imported):
        if len(one.devices) != 1:
            raise InputError(
                path, "", f"holds GPUs {list(one.devices)}: a multi-rank import takes one GPU per file (one rank)"
            )
    origin = min(one.origin_us for one in imported)
    frames, notes, kept_as_kernels, collectives = [], [], 0, 0
    for rank, (path, one) in enumerate(zip(paths, imported)):
        ops = one.ops.copy()
        args = _kernel_args(path, ops)
        for index, kernel_args in args.items():
            call = describe_collective(kernel_args, rank, world, str(ops.at[index, "name"]))
            if call is None:
                kept_as_kernels += 1
                continue
            collectives += 1
            ops.at[index, "kind"] = "collective"
            ops.at[index, "name"] = collective_name(call)
            ops.at[index, "bytes"] = call.nbytes
        shift = one.origin_us - origin
        ops["start_us"] = ops["start_us"] + shift
        ops["launch_us"] = ops["launch_us"] + shift
        ops.loc[ops["device"] >= 0, "device"] = rank
        ops["thread"] = ops["thread"].map(lambda t: None if t is None or t != t else f"r{rank}:{t}")
        for column in ("correlation", "wait_correlation"):
            ops[column] = ops[column] + rank * RANK_CORRELATION_STRIDE
        frames.append(ops)
        if one.provenance.notes:
            notes.append(f"rank {rank} ({path.name}): {one.provenance.notes}")
    if kept_as_kernels:
        notes.append(
            f"{kept_as_kernels} NCCL kernel(s) whose operation, size or participants the traces do not give"
            " (or an operation the runtime has no command for) stay kernels of their recorded duration"
        )
    ops = pd.concat(frames, ignore_index=True).sort_values(["start_us", "device"], kind="stable", ignore_index=True)
    mismatch = collective_mismatch(ops)
    if mismatch is not None:
        rank, what = mismatch
        raise InputError(paths[rank], f"rank {rank}", what)
    first = imported[0].provenance
    provenance = replace(
        first,
        source=f"torch.profiler traces of {world} ranks: {', '.join(p.name for p in paths)} (harness.multirank_import)",
        description=f"ranks 0..{world - 1} as devices 0..{world - 1}; {collectives} NCCL collectives",
        sync_events="recorded" if all(o.provenance.sync_events == "recorded" for o in imported) else "absent",
        notes="\n".join(notes),
    )
    return ImportedTrace(paths[0], ops, provenance, tuple(range(world)), (), origin)


def import_ranks_to_parquet(paths: Sequence[str | Path], out: str | Path) -> ImportedTrace:
    """Import one trace per rank and write the merged trace to ``out``; nothing is written on error."""
    merged = import_rank_traces(paths)
    write_trace(Path(out), merged.ops, merged.provenance)
    return merged

