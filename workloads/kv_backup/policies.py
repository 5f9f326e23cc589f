"""KV-backup policies: the overlapped decode loop of :mod:`harness.decode_backup` with one forward launch a step.

Every TP rank runs the decode loop on its own GPU; its forward is one kernel (a
CUDA-graph launch) and its backup is one D2H copy per group of layers (see
:mod:`harness.decode_backup` for the loop and the five policies).

Op names (the metrics read them): the forward of step ``s`` is ``forward[s]``;
the copy of layers ``l0..l1`` covering steps ``a..b`` is
``kv_backup[a-b:Ll0-l1]`` (``kv_backup[7-7:L0-60]``). The device column is the rank.
"""

from __future__ import annotations

import re

from harness.decode_backup import DecodeLoop
from harness.runtime import Communicator, Direction, HostMemory, PolicyGen, Runtime, Stream
from workloads.kv_backup.inputs import KvBackupInputs


def forward_name(step: int) -> str:
    return f"forward[{step}]"


def backup_name(first_step: int, last_step: int, first_layer: int, last_layer: int) -> str:
    return f"kv_backup[{first_step}-{last_step}:L{first_layer}-{last_layer}]"


FORWARD_RE = re.compile(r"^forward\[(\d+)\]$")
BACKUP_RE = re.compile(r"^kv_backup\[(\d+)-(\d+):L(\d+)-(\d+)\]$")


def _forward(rt: Runtime, inputs: KvBackupInputs, compute: Stream, comm: Communicator | None, step: int) -> PolicyGen:
    yield rt.launch(compute, forward_name(step), inputs.forward_us)


def _copy_layers(rt: Runtime, inputs: KvBackupInputs, stream: Stream, first: int, last: int) -> PolicyGen:
    per_layer = inputs.layer_bytes(last - first + 1)
    for l0, l1 in inputs.layer_groups():
        yield rt.copy(
            stream, (l1 - l0 + 1) * per_layer, Direction.D2H, HostMemory.PINNED, backup_name(first, last, l0, l1)
        )


DECODE = DecodeLoop(forward=_forward, copy=_copy_layers)
POLICIES = DECODE.policy_defs("as async_stream, one copy per layer every k steps")
