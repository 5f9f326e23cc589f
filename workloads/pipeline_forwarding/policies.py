"""Pipeline-forwarding policies, written once against harness.runtime.

Models a change to a distributed LLM server's split decode (see
``../shared/reference/004-pipeline-forwarding-buffer-reuse.txt``). Each stage
has a host thread and a stream on its GPU; each hop between stages (and the
return hop from the last stage to stage 0) is a link thread that holds a
message for the network time ``link_latency_us + bytes / bandwidth`` (the link
carries one message at a time). Queues between the threads carry message ids
``(sequence, token)``; bounded FIFOs, so order is kept by construction of the
links and checked at stage 0, which raises if a token comes back out of order.

Per item ``(sequence, token)`` a stage does, on its host thread::

    wait for the input message        (stage 0: the previous token's sampled id)
    [stage 0: setup]                  (sampler / direct-return handling, next input)
    H2D input -> compute -> D2H output, then wait for its stream
    [allocate a new encode buffer and message envelope]
    encode the activation             (the last stage returns the token instead)
    send

* ``alloc_per_token``: every forwarding stage allocates its encode buffer and
  builds a new message envelope for every token (the behaviour before the change).
* ``reuse_buffers``: each forwarding stage allocates one reusable frame and
  caller-owned encode buffer before decoding and refills it per token (the
  change): the per-token ``allocate`` disappears.
* ``overlapped``: ``reuse_buffers`` plus stage 0 running the next token's setup
  right after sending the current activation, while downstream stages compute
  (the follow-up the change names as the larger lever).

Names the metrics read: streams and stage threads are ``stage{s}``, link
threads ``link{s}`` (hop s -> s+1; ``link{S-1}`` is the return hop). Item
``(q, t)`` is written ``q.t``: kernels ``compute[q.t]``; copies ``act_in[q.t]``,
``act_out[q.t]`` and, on the last stage, ``token_out[q.t]`` (the token leaving
the pipeline); host work ``setup[q.t]``, ``allocate[q.t]``, ``encode[q.t]``,
``net[q.t]`` on link threads; the one-time frame allocation is ``allocate[frame]``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from harness.runtime import Direction, HostMemory, PolicyGen, Queue, Runtime
from harness.workload import NoParams
from workloads.pipeline_forwarding.inputs import PipelineInputs

ITEM_RE = re.compile(r"^(\w+)\[(\d+)\.(\d+)\]$")


@dataclass(frozen=True)
class Forwarding:
    reuse_buffers: bool
    overlap_setup: bool


def item_name(what: str, seq: int, tok: int) -> str:
    return f"{what}[{seq}.{tok}]"


def stage_name(stage: int) -> str:
    return f"stage{stage}"


def link_name(hop: int) -> str:
    return f"link{hop}"


def decode_order(inputs: PipelineInputs) -> list[tuple[int, int]]:
    """Items in the order stage 0 starts them: token-major, then sequence."""
    return [(seq, tok) for tok in range(inputs.tokens) for seq in range(inputs.sequences)]


def _receive(rt: Runtime, queue: Queue, waits: list) -> PolicyGen:
    started = yield rt.now()
    item = yield rt.get(queue)
    waits.append((item, started, (yield rt.now())))
    return item


def _forward_item(
    rt, inputs: PipelineInputs, cfg: Forwarding, stage: int, stream, seq: int, tok: int, out: Queue
) -> PolicyGen:
    """One item's GPU work on this stage, then (unless last) allocate, encode and send."""
    last = stage == inputs.stages - 1
    in_bytes = inputs.return_bytes if stage == 0 else inputs.activation_bytes
    yield rt.copy(stream, in_bytes, Direction.H2D, HostMemory.PINNED, item_name("act_in", seq, tok))
    yield rt.launch(stream, item_name("compute", seq, tok), inputs.compute_us[stage])
    if last:
        yield rt.copy(stream, inputs.return_bytes, Direction.D2H, HostMemory.PINNED, item_name("token_out", seq, tok))
    else:
        yield rt.copy(stream, inputs.activation_bytes, Direction.D2H, HostMemory.PINNED, item_name("act_out", seq, tok))
    yield rt.sync_stream(stream)
    if not last:
        if not cfg.reuse_buffers:
            yield rt.host_work(inputs.alloc_us, item_name("allocate", seq, tok))
        yield rt.host_work(inputs.encode_us, item_name("encode", seq, tok))
    yield rt.put(out, (seq, tok))


def first_stage(rt: Runtime, inputs: PipelineInputs, cfg: Forwarding, out: Queue, returns: Queue) -> PolicyGen:
    stream = yield rt.create_stream(inputs.device(0), stage_name(0))
    if cfg.reuse_buffers:
        yield rt.host_work(inputs.alloc_us, "allocate[frame]")
    order = decode_order(inputs)
    waits: list = []
    if cfg.overlap_setup:
        yield rt.host_work(inputs.stage0_setup_us, item_name("setup", *order[0]))
    for i, (seq, tok) in enumerate(order):
        if tok > 0:
            back = yield from _receive(rt, returns, waits)
            if back != (seq, tok - 1):
                raise RuntimeError(f"stage 0 expected token {(seq, tok - 1)} back, got {back}")
        if not cfg.overlap_setup:
            yield rt.host_work(inputs.stage0_setup_us, item_name("setup", seq, tok))
        yield from _forward_item(rt, inputs, cfg, 0, stream, seq, tok, out)
        if cfg.overlap_setup and i + 1 < len(order):
            yield rt.host_work(inputs.stage0_setup_us, item_name("setup", *order[i + 1]))
    for _ in range(inputs.sequences):  # the last round's tokens come back too
        yield rt.get(returns)
    return waits


def later_stage(
    rt: Runtime, inputs: PipelineInputs, cfg: Forwarding, stage: int, inbox: Queue, out: Queue
) -> PolicyGen:
    stream = yield rt.create_stream(inputs.device(stage), stage_name(stage))
    if cfg.reuse_buffers and stage < inputs.stages - 1:
        yield rt.host_work(inputs.alloc_us, "allocate[frame]")
    waits: list = []
    for _ in decode_order(inputs):
        seq, tok = yield from _receive(rt, inbox, waits)
        yield from _forward_item(rt, inputs, cfg, stage, stream, seq, tok, out)
    return waits


def link(rt: Runtime, inputs: PipelineInputs, nbytes: int, inbox: Queue, out: Queue) -> PolicyGen:
    for _ in decode_order(inputs):
        seq, tok = yield rt.get(inbox)
        yield rt.host_work(inputs.link_us(nbytes), item_name("net", seq, tok))
        yield rt.put(out, (seq, tok))


@dataclass(frozen=True, slots=True)
class PipelineResult:
    """What a pipeline policy returns: per stage, its input waits ``[(item, from_us, to_us)]``."""

    waits: tuple[list[tuple[int, float, float]], ...]


def run_pipeline(rt: Runtime, inputs: PipelineInputs, cfg: Forwarding) -> PolicyGen:
    """Wire stages and links with queues; returns each stage's input waits ``[(item, from_us, to_us)]``."""
    n = inputs.stages
    capacity = inputs.sequences
    sent, arrived = [], []  # stage s -> link s; link s-1 -> stage s
    for s in range(n):
        sent.append((yield rt.make_queue(capacity, f"{stage_name(s)}_out")))
        arrived.append((yield rt.make_queue(capacity, f"{stage_name(s)}_in")))
    stages = [(yield rt.spawn(first_stage, inputs, cfg, sent[0], arrived[0], name=stage_name(0)))]
    for s in range(1, n):
        stages.append((yield rt.spawn(later_stage, inputs, cfg, s, arrived[s], sent[s], name=stage_name(s))))
    links = []
    for hop in range(n):
        nbytes = inputs.return_bytes if hop == n - 1 else inputs.activation_bytes
        links.append((yield rt.spawn(link, inputs, nbytes, sent[hop], arrived[(hop + 1) % n], name=link_name(hop))))
    waits = []
    for thread in stages:
        waits.append((yield rt.join(thread)))
    for thread in links:
        yield rt.join(thread)
    return PipelineResult(tuple(waits))


def alloc_per_token(rt: Runtime, inputs: PipelineInputs, params: NoParams) -> PolicyGen:
    return (yield from run_pipeline(rt, inputs, Forwarding(reuse_buffers=False, overlap_setup=False)))


def reuse_buffers(rt: Runtime, inputs: PipelineInputs, params: NoParams) -> PolicyGen:
    return (yield from run_pipeline(rt, inputs, Forwarding(reuse_buffers=True, overlap_setup=False)))


def overlapped(rt: Runtime, inputs: PipelineInputs, params: NoParams) -> PolicyGen:
    return (yield from run_pipeline(rt, inputs, Forwarding(reuse_buffers=True, overlap_setup=True)))
