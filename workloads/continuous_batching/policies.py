"""Batch-formation policies of the continuous-batching workload.

Every policy shares the generate loop (``server.GenerateLoop``) and its options:
``max_batch`` (KV slots, M), ``fast_path`` (single-request path when m = 1),
``prefill`` (``batched``: all prompts of a new batch at once; ``staggered``:
the first at once, the rest joining one per decode step), ``mid_batch_joins``
and ``slot_recycling``. They differ in how the scheduler forms a batch after
taking the first request off the channel:

* ``fixed_window``: wait until ``window_ms`` after the first request for more,
  up to M (``window_ms = 0``: take only what is already queued: immediate start);
* ``adaptive`` (the engine's zero-window policy): yield once (``yield_us``),
  drain the queue without blocking up to M; then if peers were found and the
  batch is not full, wait up to ``peer_wait_ms`` (3) for stragglers; if it is a
  singleton but the previous batch had more than one request, wait up to
  ``singleton_wait_ms`` (2) for peers; otherwise start at once. Setting
  ``singleton_wait_ms = 0`` gives the engine's behaviour before that fix.
"""

from __future__ import annotations

from typing import Literal

import pydantic

from harness.runtime import PolicyGen, Runtime
from harness.workload import PolicyParams
from workloads.continuous_batching.channel import RequestChannel
from workloads.continuous_batching.inputs import BatchingInputs
from workloads.continuous_batching.server import LoopOptions, Request, serve


class LoopParams(PolicyParams):
    max_batch: int = pydantic.Field(default=4, ge=1)
    fast_path: bool = True
    prefill: Literal["batched", "staggered"] = "batched"
    mid_batch_joins: bool = True
    slot_recycling: bool = True

    def loop_options(self) -> LoopOptions:
        return LoopOptions(
            self.max_batch, self.fast_path, self.prefill == "staggered", self.mid_batch_joins, self.slot_recycling
        )


class FixedWindowParams(LoopParams):
    window_ms: float = pydantic.Field(default=10.0, ge=0)


class AdaptiveParams(LoopParams):
    yield_us: float = pydantic.Field(default=1.0, ge=0)  # the cooperative yield before the drain
    peer_wait_ms: float = pydantic.Field(default=3.0, ge=0)
    singleton_wait_ms: float = pydantic.Field(default=2.0, ge=0)


class FixedWindow:
    def __init__(self, params: FixedWindowParams) -> None:
        self.window_us = params.window_ms * 1000.0
        self.max_batch = params.max_batch

    def form(self, rt: Runtime, channel: RequestChannel, first: Request) -> PolicyGen:
        batch = [first]
        deadline = (yield rt.now()) + self.window_us
        while len(batch) < self.max_batch:
            req = yield from channel.recv_until(rt, deadline)
            if req is None:
                break
            batch.append(req)
        return batch


class Adaptive:
    def __init__(self, params: AdaptiveParams) -> None:
        self.p = params
        self.recent_batch_gt1 = False

    def form(self, rt: Runtime, channel: RequestChannel, first: Request) -> PolicyGen:
        p = self.p
        batch = [first]
        if p.yield_us > 0:
            yield rt.host_work(p.yield_us, "yield")
        while len(batch) < p.max_batch:
            req = channel.try_recv()
            if req is None:
                break
            batch.append(req)
        wait_ms = 0.0
        if 1 < len(batch) < p.max_batch:
            wait_ms = p.peer_wait_ms
        elif len(batch) == 1 and self.recent_batch_gt1 and p.max_batch > 1:
            wait_ms = p.singleton_wait_ms
        if wait_ms > 0:
            deadline = (yield rt.now()) + wait_ms * 1000.0
            while len(batch) < p.max_batch:
                req = yield from channel.recv_until(rt, deadline)
                if req is None:
                    break
                batch.append(req)
        self.recent_batch_gt1 = len(batch) > 1
        return batch


def fixed_window(rt: Runtime, inputs: BatchingInputs, params: FixedWindowParams) -> PolicyGen:
    return (yield from serve(rt, inputs, FixedWindow(params), params.loop_options()))


def adaptive(rt: Runtime, inputs: BatchingInputs, params: AdaptiveParams) -> PolicyGen:
    return (yield from serve(rt, inputs, Adaptive(params), params.loop_options()))
