"""Layer-streaming policies, written once against harness.runtime.

All three follow the engine's per-segment loop: the segment's kernel is
launched on the compute stream and the host synchronises before moving on
(the engine's ``compute_async + synchronize``), then frees the segment's
parameters. They differ in where the parameters come from:

* ``sync``: copy the segment's parameters H2D on the compute stream, then
  compute: per-segment time is H2D + compute.
* ``prefetch``: while segment N computes, up to ``depth`` later segments'
  parameters are copied on a separate stream into pending buffers; the compute
  stream waits on each copy's event. Per-segment time falls toward
  max(H2D, compute). A pending buffer that cannot be allocated (the device
  budget is full) is not prefetched: that segment takes the synchronous path.
* ``resident``: every parameter already lives on the GPU: compute only.
"""

from __future__ import annotations

from dataclasses import dataclass

import pydantic

from harness.runtime import Buffer, Direction, Event, PolicyGen, Runtime, Stream
from harness.workload import NoParams, PolicyParams
from workloads.layer_streaming.inputs import LayerStreamingInputs, Segment

DEVICE = 0


@dataclass(frozen=True, slots=True)
class StreamingResult:
    """What a layer-streaming policy returns."""

    fallbacks: int  # segments that took the synchronous path because their buffer could not be allocated
    prefetched: int  # segments copied ahead on the side stream


class PrefetchParams(PolicyParams):
    depth: int = pydantic.Field(default=1, ge=1)  # segments copied ahead of the one computing


def copy_name(seg: Segment) -> str:
    return f"params[{seg.index}]"


def kernel_name(seg: Segment) -> str:
    return f"segment[{seg.index}]"


def _copy_in(rt: Runtime, inputs: LayerStreamingInputs, stream: Stream, seg: Segment) -> PolicyGen:
    """Allocate the segment's buffer and queue its H2D copy on ``stream``; None if it does not fit."""
    buf = yield rt.alloc(DEVICE, seg.param_bytes, copy_name(seg))
    if buf is not None:
        yield rt.copy(stream, seg.param_bytes, Direction.H2D, inputs.host_memory, copy_name(seg), buf)
    return buf


def _copy_in_or_fail(rt: Runtime, inputs: LayerStreamingInputs, stream: Stream, seg: Segment) -> PolicyGen:
    buf = yield from _copy_in(rt, inputs, stream, seg)
    if buf is None:
        raise MemoryError(f"segment {seg.index}: {seg.param_bytes} bytes do not fit the device budget even alone")
    return buf


def _finish(rt: Runtime, stream: Stream, buf: Buffer | None) -> PolicyGen:
    """The engine's per-segment synchronize, then release the segment's parameters."""
    yield rt.sync_stream(stream)
    if buf is not None:
        yield rt.free(buf)


def sync(rt: Runtime, inputs: LayerStreamingInputs, params: NoParams) -> PolicyGen:
    compute = yield rt.create_stream(DEVICE, "compute")
    for seg in inputs.segments:
        buf = yield from _copy_in_or_fail(rt, inputs, compute, seg)
        yield rt.launch(compute, kernel_name(seg), seg.compute_us, inputs.compute_share)
        yield from _finish(rt, compute, buf)
    return StreamingResult(fallbacks=0, prefetched=0)


def prefetch(rt: Runtime, inputs: LayerStreamingInputs, params: PrefetchParams) -> PolicyGen:
    compute = yield rt.create_stream(DEVICE, "compute")
    side = yield rt.create_stream(DEVICE, "prefetch")
    segments = inputs.segments
    pending: dict[int, tuple[Buffer, Event]] = {}
    next_up = 0  # first segment whose parameters are neither pending nor loaded
    fallbacks = prefetched = 0
    for i, seg in enumerate(segments):
        if i in pending:
            buf, ready = pending.pop(i)
            yield rt.wait_event(compute, ready)
            prefetched += 1
        else:
            # Synchronous path: the first segment, or one whose pending buffer could
            # not be allocated. Prefetch stops at the first failure, so nothing
            # later is pending and only this segment's buffer is needed.
            buf = yield from _copy_in_or_fail(rt, inputs, compute, seg)
            fallbacks += i > 0
            next_up = i + 1
        yield rt.launch(compute, kernel_name(seg), seg.compute_us, inputs.compute_share)
        # While it computes, copy up to `depth` later segments on the side stream.
        while next_up < len(segments) and next_up <= i + params.depth:
            pending_buf = yield from _copy_in(rt, inputs, side, segments[next_up])
            if pending_buf is None:
                break  # device budget full: that segment takes the synchronous path
            ready = yield rt.record(side)
            pending[next_up] = (pending_buf, ready)
            next_up += 1
        yield from _finish(rt, compute, buf)
    return StreamingResult(fallbacks, prefetched)


def resident(rt: Runtime, inputs: LayerStreamingInputs, params: NoParams) -> PolicyGen:
    compute = yield rt.create_stream(DEVICE, "compute")
    for seg in inputs.segments:
        yield rt.launch(compute, kernel_name(seg), seg.compute_us, inputs.compute_share)
        yield from _finish(rt, compute, None)
    return StreamingResult(fallbacks=0, prefetched=0)
