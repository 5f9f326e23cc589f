"""Offload-coordinator policies, written once against harness.runtime.

Models a merged change to a compression library (see
``../shared/reference/000-compression-gpu-backpressure.txt``). A stream's
blocks are compressed by CPU worker threads; a GPU coordinator takes blocks off
their hands when it has capacity. Capacity is a **pressure** counter, in blocks:
it goes up by the batch length when a batch is sent to the GPU and must come
down by the batch length when the batch completes; a block is routed to the GPU
only while pressure is under the limit.

Threads and queues (every policy):

* ``main`` is the dispatcher: it takes up the stream's blocks in order (all of
  them are available at the start: a file being compressed) and routes each.
* ``worker<k>`` (``cpu_workers`` of them) take ``(block, first stage)`` items
  off the bounded ``cpu_work`` queue and run the remaining stages as host work
  (``<stage>[<block>]``). A full queue blocks the dispatcher: the CPU's own
  backpressure.
* GPU work for a batch of blocks is one H2D copy of the batch's bytes
  (``h2d_ratio`` of them), one kernel per GPU-capable stage (duration = the
  batch's work bytes / the stage's GPU rate), one D2H copy (``d2h_ratio``),
  then a recorded event; batches go to ``gpu_streams`` streams round-robin.

The streaming dispatcher learns of completed batches only when it polls, that
is between routing decisions; while it is blocked on a full ``cpu_work`` queue
a finished batch waits and the GPU may idle (the ``gpu_busy_frac`` metric shows
how much). A deep pressure limit keeps the GPU fed but queues GPU blocks behind
several batches: the latency metrics split by route show that trade.

The policies:

* ``cpu_only``: every block goes to the workers.
* ``streaming_backpressure`` (the fix): the dispatcher is the GPU coordinator.
  Before routing each block it polls its in-flight batches (``query_event``,
  non-blocking); each completed batch brings pressure down by its length and
  its blocks go to the workers for their remaining (CPU-only) stages. The block
  then joins the open GPU batch if pressure < limit (the batch is sent once it
  holds ``batch_blocks`` blocks, or at the end of the stream), else it goes to
  the workers whole.
* ``streaming_ratchet`` (the bug): the same, except completion never brings
  pressure down. Once ``ceil(limit / batch) `` batches have been sent, pressure
  stays at or above the limit and no block is routed to the GPU again. (The
  reference words it as: once pressure passed the limit no send was attempted,
  and only the send path could lower it; the effect is this lock-out.)
* ``serial_gpu_coordinator`` (the removed design): GPU work runs through one
  coordinator thread inside the parallel scheduler. With the GPU backend every
  block is a GPU task: the scheduler (``main``) hands each block to the
  ``gpu_coordinator`` thread over a bounded request channel (it blocks when the
  channel is full). The coordinator keeps up to ``pressure_limit`` blocks in
  flight on the GPU (pressure up on send, down on completion), and encodes the
  CPU-only stages of each completed batch **itself**, block after block, while
  the next batches run on the GPU. Throughput is capped by one thread's rate of
  the CPU-only stages (the reference: 28 MiB/s from serialised entropy
  encoding) however many workers or however fast the GPU. The workers have no
  block work in this mode and are not started.

Each policy returns a :class:`RunLog`: per block its route, when it was taken
up and when its last stage finished; per batch its blocks and times; and every
change of the pressure counter with the number of blocks then in flight.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

from harness.runtime import Direction, Event, KernelKind, PolicyGen, Queue, Runtime, Stream
from harness.workload import NoParams
from workloads.offload_coordinator.inputs import OffloadInputs

DEVICE = 0
CPU = "cpu"
GPU = "gpu"
_STOP = None  # tells a worker (or the serial coordinator) that the stream has ended


@dataclass(slots=True)
class BlockLog:
    index: int
    nbytes: int
    route: str = ""  # "cpu" or "gpu"
    taken_us: float = float("nan")  # when the dispatcher took the block up (latency starts)
    done_us: float = float("nan")  # when its last stage finished
    batch: int = -1  # GPU batch, -1 for CPU-routed blocks
    cpu_stages_run: list[str] = field(default_factory=list)  # stage names run on a CPU thread


@dataclass(slots=True)
class BatchLog:
    index: int
    blocks: list[int]
    sent_us: float
    seen_done_us: float = float("nan")  # when the coordinator learnt of its completion


@dataclass(slots=True)
class RunLog:
    blocks: list[BlockLog]
    batches: list[BatchLog] = field(default_factory=list)
    # (time_us, pressure, blocks in flight on the GPU) after every change of either
    pressure: list[tuple[float, int, int]] = field(default_factory=list)
    workers: int = 0


def batch_label(batch: int) -> str:
    return f"b{batch}"


# --------------------------------------------------------------------------- CPU side


def _run_cpu_stages(rt: Runtime, inputs: OffloadInputs, rec: BlockLog, first_stage: int) -> PolicyGen:
    block = inputs.blocks[rec.index]
    for stage in inputs.stages[first_stage:]:
        yield rt.host_work(stage.cpu_us(block.work_bytes), f"{stage.name}[{rec.index}]")
        rec.cpu_stages_run.append(stage.name)
    rec.done_us = yield rt.now()


def _cpu_worker(rt: Runtime, inputs: OffloadInputs, work: Queue) -> PolicyGen:
    while True:
        item = yield rt.get(work)
        if item is _STOP:
            return
        rec, first_stage = item
        yield from _run_cpu_stages(rt, inputs, rec, first_stage)


# --------------------------------------------------------------------------- GPU side


class _GpuBatches:
    """Sends batches to the GPU and tracks the pressure counter (one owner thread)."""

    def __init__(self, rt: Runtime, inputs: OffloadInputs, log: RunLog, streams: list[Stream]) -> None:
        self.rt = rt
        self.inputs = inputs
        self.log = log
        self.streams = streams
        self.pressure = 0
        self.in_flight_blocks = 0
        self.in_flight: deque[tuple[BatchLog, list[BlockLog], Event]] = deque()

    def send(self, batch: list[BlockLog]) -> PolicyGen:
        rt, inputs = self.rt, self.inputs
        k = len(self.log.batches)
        stream = self.streams[k % len(self.streams)]
        label = batch_label(k)
        nbytes = sum(rec.nbytes for rec in batch)
        work_bytes = sum(inputs.blocks[rec.index].work_bytes for rec in batch)
        sent = yield rt.now()
        yield rt.copy(stream, int(nbytes * inputs.h2d_ratio), Direction.H2D, inputs.host_memory, f"h2d[{label}]")
        for stage in inputs.gpu_stages:
            yield rt.launch(
                stream, f"{stage.name}[{label}]", stage.gpu_us(work_bytes), inputs.kernel_share, KernelKind.COMPUTE
            )
        yield rt.copy(stream, int(nbytes * inputs.d2h_ratio), Direction.D2H, inputs.host_memory, f"d2h[{label}]")
        done = yield rt.record(stream)
        for rec in batch:
            rec.batch = k
        entry = BatchLog(k, [rec.index for rec in batch], sent)
        self.log.batches.append(entry)
        self.in_flight.append((entry, batch, done))
        self.pressure += len(batch)
        self.in_flight_blocks += len(batch)
        yield from self._log_pressure()

    def complete(self, entry: BatchLog, batch: list[BlockLog], release_pressure: bool) -> PolicyGen:
        entry.seen_done_us = yield self.rt.now()
        self.in_flight_blocks -= len(batch)
        if release_pressure:
            self.pressure -= len(batch)
        yield from self._log_pressure()

    def _log_pressure(self) -> PolicyGen:
        now = yield self.rt.now()
        self.log.pressure.append((now, self.pressure, self.in_flight_blocks))


def _make_streams(rt: Runtime, inputs: OffloadInputs) -> PolicyGen:
    streams = []
    for s in range(inputs.gpu_streams):
        streams.append((yield rt.create_stream(DEVICE, f"gpu{s}")))
    return streams


def _require_gpu_stage(inputs: OffloadInputs, policy: str) -> None:
    if not inputs.gpu_stages:
        raise ValueError(f"policy {policy!r} needs a stage with gpu_mibps (the first stage(s) of [[workload.stages]])")


# --------------------------------------------------------------------------- streaming path


def _streaming(rt: Runtime, inputs: OffloadInputs, use_gpu: bool, release_pressure: bool) -> PolicyGen:
    log = RunLog([BlockLog(b.index, b.nbytes) for b in inputs.blocks], workers=inputs.cpu_workers)
    work = yield rt.make_queue(inputs.cpu_queue_blocks, "cpu_work")
    workers = []
    for w in range(inputs.cpu_workers):
        workers.append((yield rt.spawn(_cpu_worker, inputs, work, name=f"worker{w}")))
    gpu = _GpuBatches(rt, inputs, log, (yield from _make_streams(rt, inputs))) if use_gpu else None
    n_gpu_stages = len(inputs.gpu_stages)
    open_batch: list[BlockLog] = []

    def finish_batch(entry: BatchLog, batch: list[BlockLog]) -> PolicyGen:
        yield from gpu.complete(entry, batch, release_pressure)
        for rec in batch:
            if n_gpu_stages < len(inputs.stages):
                yield rt.put(work, (rec, n_gpu_stages))
            else:
                rec.done_us = entry.seen_done_us

    for rec in log.blocks:
        if gpu is not None:
            # Poll completions without blocking, oldest first.
            for item in list(gpu.in_flight):
                entry, batch, done = item
                if (yield rt.query_event(done)):
                    gpu.in_flight.remove(item)
                    yield from finish_batch(entry, batch)
        rec.taken_us = yield rt.now()
        if gpu is not None and gpu.pressure < inputs.pressure_limit:
            rec.route = GPU
            open_batch.append(rec)
            if len(open_batch) == inputs.batch_blocks:
                yield from gpu.send(open_batch)
                open_batch = []
        else:
            rec.route = CPU
            yield rt.put(work, (rec, 0))
    if gpu is not None:
        if open_batch:
            yield from gpu.send(open_batch)
        while gpu.in_flight:
            entry, batch, done = gpu.in_flight.popleft()
            yield rt.sync_event(done)
            yield from finish_batch(entry, batch)
    for _ in workers:
        yield rt.put(work, _STOP)
    for thread in workers:
        yield rt.join(thread)
    return log


def cpu_only(rt: Runtime, inputs: OffloadInputs, params: NoParams) -> PolicyGen:
    return (yield from _streaming(rt, inputs, use_gpu=False, release_pressure=True))


def streaming_backpressure(rt: Runtime, inputs: OffloadInputs, params: NoParams) -> PolicyGen:
    _require_gpu_stage(inputs, "streaming_backpressure")
    return (yield from _streaming(rt, inputs, use_gpu=True, release_pressure=True))


def streaming_ratchet(rt: Runtime, inputs: OffloadInputs, params: NoParams) -> PolicyGen:
    _require_gpu_stage(inputs, "streaming_ratchet")
    return (yield from _streaming(rt, inputs, use_gpu=True, release_pressure=False))


# --------------------------------------------------------------------------- removed design


def _serial_coordinator(rt: Runtime, inputs: OffloadInputs, requests: Queue, log: RunLog) -> PolicyGen:
    gpu = _GpuBatches(rt, inputs, log, (yield from _make_streams(rt, inputs)))
    n_gpu_stages = len(inputs.gpu_stages)
    ended = False
    while True:
        while not ended and gpu.pressure < inputs.pressure_limit:
            batch: list[BlockLog] = []
            while len(batch) < inputs.batch_blocks:
                rec = yield rt.get(requests)
                if rec is _STOP:
                    ended = True
                    break
                batch.append(rec)
            if batch:
                yield from gpu.send(batch)
        if not gpu.in_flight:
            return
        entry, batch, done = gpu.in_flight.popleft()
        yield rt.sync_event(done)
        yield from gpu.complete(entry, batch, release_pressure=True)
        for rec in batch:  # the serialised part: this one thread encodes every GPU block
            yield from _run_cpu_stages(rt, inputs, rec, n_gpu_stages)


def serial_gpu_coordinator(rt: Runtime, inputs: OffloadInputs, params: NoParams) -> PolicyGen:
    _require_gpu_stage(inputs, "serial_gpu_coordinator")
    log = RunLog([BlockLog(b.index, b.nbytes) for b in inputs.blocks], workers=0)
    requests = yield rt.make_queue(inputs.pressure_limit, "gpu_requests")
    coordinator = yield rt.spawn(_serial_coordinator, inputs, requests, log, name="gpu_coordinator")
    for rec in log.blocks:
        rec.taken_us = yield rt.now()
        rec.route = GPU
        yield rt.put(requests, rec)
    yield rt.put(requests, _STOP)
    yield rt.join(coordinator)
    return log
