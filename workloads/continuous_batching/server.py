"""The modelled server: clients, the scheduler thread and the batched generate loop.

Written once against ``harness.runtime``, so it runs under the simulator and the
replay engine alike. Host threads:

* the **request source**: one thread sending requests at their arrival times
  (open loop), or ``clients`` threads that each send a request, wait for its
  last token, wait a think time and send the next (closed loop);
* the **scheduler** (the policy's main thread): forms a batch with the policy's
  :class:`BatchFormation`, then runs it through the generate loop below, then
  forms the next; GPU steps are kernels on one stream ``gpu``, each followed by
  a stream sync (the engine's CUDA calls are synchronous: ``rt.launch_sync``),
  and tokens are handed out when the sync returns; steps that nothing can
  change in between go as one ``rt.launch_sync_series`` (below);
* short-lived **deadline timers** (see ``channel``).

The generate loop follows the engine's ``process_cuda_batch``:

1. ``m == 1`` and the fast path is on: the single-request path (prefill, then
   one fast decode step per token); requests arriving meanwhile wait.
2. Otherwise prefill all prompts together (*batched*), or only the first with
   the rest pending (*staggered*), in a batch of ``max_batch`` KV slots.
3. Each step, while some slot is still generating: (a) staggered: join one
   pending request into a new slot; (b) mid-batch joins: take queued requests
   into new slots up to ``max_batch``; (c) slot recycling: give each finished
   slot, in slot order, to a pending request or else a queued one, stopping at
   the first miss; (d) one batched decode step over the occupied slots: one
   token for each slot still generating. Until the next request finishes,
   only a join can change the batch, so the loop runs the steps up to that
   finish as one series, which stops after any step whose sync returns with a
   request queued that could join ((a)-(c) then run as they would have after
   that step); the fast path's steps go as one series too.

A join or recycle prefills the one prompt (its first token comes from that
prefill) and inserts its KV into the slot: ``cost.join_us``. The first token
of any request comes from its prefill; every later one from a decode step.

Modelling choices where the engine's source is silent or would break an
invariant (documented, deliberate):

* the engine's loop also stops at ``gen_idx == max_tokens_max``; a request that
  joins late with a long output would be cut short by that bound if it is not
  raised on join. Here every request runs to its own output length.
* the engine's loop tests ``all_done`` before staggered joins, so staggered
  requests still pending when every started slot has finished (a first request
  of one output token, say) would never be served. Here the loop goes on while
  staggered requests are pending, and they take finished slots even when slot
  recycling is switched off (the engine always recycles).
"""

from __future__ import annotations

from array import array
from collections import deque
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from harness.runtime import KernelKind, PolicyGen, Queue, Runtime, Stream
from workloads.continuous_batching.channel import RequestChannel
from workloads.continuous_batching.cost_model import CostModel
from workloads.continuous_batching.inputs import BatchingInputs

DEVICE = 0


class Request:
    """One request's life in the server (times in µs; -1 until it happens)."""

    __slots__ = (
        "index",
        "prompt_tokens",
        "output_tokens",
        "arrival_us",
        "client",
        "done_queue",
        "admitted_us",
        "first_token_us",
        "last_token_us",
        "tokens",
        "admission",
        "batch",
        "slot",
        "prefill_us",
        "sent_seq",
        "admit_seq",
        "base_step",
        "fresh",
    )

    def __init__(self, index: int, prompt_tokens: int, output_tokens: int, arrival_us: float) -> None:
        self.index = index
        self.prompt_tokens = prompt_tokens
        self.output_tokens = output_tokens
        self.arrival_us = arrival_us
        self.client = -1
        self.done_queue: Queue | None = None
        self.admitted_us = -1.0  # serving began: its batch started, or it was taken to join a running batch
        self.first_token_us = -1.0
        self.last_token_us = -1.0
        self.tokens = 0
        self.admission = ""
        self.batch = -1
        self.slot = -1
        self.prefill_us = -1.0  # when its prefill (batch prefill, join or recycle) started on the host
        self.sent_seq = -1  # its place in the channel's order (set by the channel)
        self.admit_seq = -1  # its place in the order requests were taken off the channel
        # While it decodes in a batch, ``tokens`` and ``last_token_us`` are kept lazily (GenerateLoop.run):
        # it has ``tokens + (decode steps so far - base_step)`` tokens, its last at the latest decode step
        # unless ``fresh`` (its first token came since). Both are exact again once it has finished.
        self.base_step = 0
        self.fresh = False

    @property
    def done(self) -> bool:
        return self.tokens >= self.output_tokens


@dataclass
class ServerLog:
    """What the scheduler saw; the metrics and the requests table are computed from it."""

    requests: list[Request]
    batch_sizes: array = field(default_factory=lambda: array("i"))  # size of each batch formed, in order
    batch_fast_path: array = field(default_factory=lambda: array("b"))
    step_slots: array = field(default_factory=lambda: array("i"))  # occupied slots per decode step
    step_active: array = field(default_factory=lambda: array("i"))  # slots that got a token per decode step
    # every gap between a request's consecutive tokens, in the order they happened, run-length encoded:
    # itl_run_us[i] repeated itl_run_count[i] times; a negative count -n marks a time of a series of steps,
    # standing for n gaps from the entry before it (see add_itl_between and itl_us())
    itl_run_us: array = field(default_factory=lambda: array("d"))
    itl_run_count: array = field(default_factory=lambda: array("i"))
    max_slots_in_use: int = 0
    end_us: float = 0.0

    def add_itl(self, gap_us: float, count: int = 1) -> None:
        """``count`` more gaps of ``gap_us``."""
        runs, counts = self.itl_run_us, self.itl_run_count
        if runs and counts[-1] > 0 and runs[-1] == gap_us:
            counts[-1] += count
        else:
            runs.append(gap_us)
            counts.append(count)

    def add_itl_between(self, times_us: list[float], count: int) -> None:
        """``count`` gaps of each interval between consecutive ``times_us`` (the steps of a series): kept as the
        times themselves, the first with no gaps, and subtracted by :meth:`itl_us` (the same subtractions)."""
        self.itl_run_us.fromlist(times_us)
        counts = self.itl_run_count
        counts.append(0)
        counts.extend(array("i", (-count,)) * (len(times_us) - 1))

    def add_steps(self, slots: int, active: int, steps: int) -> None:
        """``steps`` decode steps over ``slots`` occupied slots, ``active`` of them generating."""
        self.step_slots.extend(array("i", (slots,)) * steps)
        self.step_active.extend(array("i", (active,)) * steps)

    def itl_us(self) -> np.ndarray:
        """Every gap between a request's consecutive tokens, in the order they happened."""
        if not self.itl_run_us:
            return np.zeros(0)
        values = np.frombuffer(self.itl_run_us, dtype=float)
        counts = np.frombuffer(self.itl_run_count, dtype=np.int32)
        gaps = values.copy()  # a series' later times (negative counts) become the gap from the time before
        np.subtract(values[1:], values[:-1], out=gaps[1:], where=counts[1:] < 0)
        return np.repeat(gaps, np.abs(counts))


# ----------------------------------------------------------------------------- request sources


def open_loop_source(rt: Runtime, channel: RequestChannel, requests: list[Request]) -> PolicyGen:
    """Send each request at its arrival time (the time it is actually queued is recorded)."""
    for req in requests:
        now = yield rt.now()
        if req.arrival_us > now:
            yield rt.host_work(req.arrival_us - now, "until_arrival")
        req.arrival_us = yield rt.now()
        yield from channel.send(rt, req)


def closed_loop_client(
    rt: Runtime, channel: RequestChannel, pool: deque, client: int, think_us: float, done: Queue
) -> PolicyGen:
    """Send a request, wait for its last token, think, send the next; until none is left.

    Clients start together: the first request goes out at once, the think time
    (exponential, mean ``think_us``) comes between a request's last token and the next send.
    """
    first = True
    while pool:
        req = pool.popleft()
        if think_us > 0 and not first:
            yield rt.host_work(rt.rng.expovariate(1.0 / think_us), "think")
        first = False
        req.client = client
        req.done_queue = done
        req.arrival_us = yield rt.now()
        yield from channel.send(rt, req)
        yield rt.get(done)


# ----------------------------------------------------------------------------- the generate loop


@dataclass(frozen=True)
class LoopOptions:
    max_batch: int
    fast_path: bool
    staggered_prefill: bool
    mid_batch_joins: bool
    slot_recycling: bool


class GenerateLoop:
    """Runs formed batches through the engine's batched generate loop on one GPU stream."""

    def __init__(
        self, rt: Runtime, gpu: Stream, channel: RequestChannel, cost: CostModel, options: LoopOptions, log: ServerLog
    ) -> None:
        self.rt = rt
        self.gpu = gpu
        self.channel = channel
        self.cost = cost
        self.opt = options
        self.log = log
        self.completed = 0
        self.admitted = 0
        self._finishing: dict[int, list[Request]] = {}  # decode step (of this batch) -> requests ending there
        self.joins = 0  # requests prefilled into a slot of the running batch so far
        self.fresh = 0  # requests with a first token since the latest decode step

    def _step(self, name: str, duration_us: float) -> PolicyGen:
        """One synchronous GPU step: launch, wait for it; returns the time the host sees it done."""
        return (yield self.rt.launch_sync(self.gpu, name, duration_us, 1.0, KernelKind.COMPUTE))

    def _token(self, req: Request, now: float) -> PolicyGen:
        if req.tokens == 0:
            req.first_token_us = now
        else:
            self.log.add_itl(now - req.last_token_us)
        req.last_token_us = now
        req.tokens += 1
        if req.tokens == req.output_tokens:
            yield from self._finished(req)

    def _finished(self, req: Request) -> PolicyGen:
        self.completed += 1
        if req.done_queue is not None:
            yield self.rt.put(req.done_queue, req.index)

    def _first_token(self, req: Request, now: float, step: int) -> PolicyGen:
        """A batched request's first token (from its prefill); from here on it decodes lazily (see Request)."""
        yield from self._token(req, now)
        if req.tokens < req.output_tokens:
            req.base_step = step
            req.fresh = True
            self.fresh += 1
            self._finishing.setdefault(step + req.output_tokens - req.tokens, []).append(req)

    def _admit(self, req: Request, now: float, admission: str, batch: int) -> None:
        """Record that serving ``req`` begins (a formed batch is admitted in the order its requests were taken)."""
        self.admitted += 1
        req.admit_seq = self.admitted
        req.admitted_us = now
        req.admission = admission
        req.batch = batch

    def run(self, batch: list[Request], batch_id: int) -> PolicyGen:
        rt, cost, opt, log = self.rt, self.cost, self.opt, self.log
        m = len(batch)
        now = yield rt.now()
        log.batch_sizes.append(m)
        fast = m == 1 and opt.fast_path
        log.batch_fast_path.append(fast)
        if fast:
            req = batch[0]
            self._admit(req, now, "fast_path", batch_id)
            req.slot = 0
            req.prefill_us = now
            log.max_slots_in_use = max(log.max_slots_in_use, 1)
            t = yield from self._step("fast_prefill", cost.prefill_us((req.prompt_tokens,)))
            yield from self._token(req, t)
            while not req.done:  # one decode step per token, each over the context so far
                context = req.prompt_tokens + req.tokens
                steps = (cost.fast_decode_us(context + i) for i in range(req.output_tokens - req.tokens))
                for t in (yield rt.launch_sync_series(self.gpu, "fast_decode", steps)):
                    yield from self._token(req, t)
            yield from self._cleanup()
            return

        for req in batch:
            self._admit(req, now, "batch", batch_id)
        staggered = opt.staggered_prefill and m > 1
        first = batch[:1] if staggered else batch
        pending: deque[Request] = deque(batch[1:] if staggered else ())
        for req in batch[1:] if staggered else ():
            req.admission = "staggered_join"
        slots: list[Request] = []
        for req in first:
            req.slot = len(slots)
            req.prefill_us = now
            slots.append(req)
        log.max_slots_in_use = max(log.max_slots_in_use, len(slots))
        t = yield from self._step("prefill", cost.prefill_us(tuple(r.prompt_tokens for r in first)))
        self._finishing.clear()
        step = 0  # decode steps of this batch so far
        self.fresh = 0
        for req in first:
            yield from self._first_token(req, t, 0)
        last_t = t  # time of the latest decode step
        gpu, series, compute = self.gpu, rt.launch_sync_series, KernelKind.COMPUTE
        decode_series_us = cost.decode_series_us
        max_batch, mid_batch_joins, recycling, try_recv, queued = (
            opt.max_batch,
            opt.mid_batch_joins,
            opt.slot_recycling,
            self.channel.try_recv,
            self.channel.has_items,
        )
        add_itl = log.add_itl
        finishing = self._finishing
        active = [s for s in slots if s.tokens < s.output_tokens]
        context = -1  # sum of prompt + tokens over the active slots; -1: to recount
        joins = self.joins = 0

        while pending or active:
            # (a) staggered: one pending prompt joins per step
            if pending and len(slots) < max_batch:
                yield from self._join(pending.popleft(), slots, len(slots), step)
            # (b) mid-batch joins from the channel into free slots
            if mid_batch_joins:
                while len(slots) < max_batch:
                    req = try_recv()
                    if req is None:
                        break
                    self._admit(req, (yield rt.now()), "mid_batch_join", batch_id)
                    yield from self._join(req, slots, len(slots), step)
            # (c) slot recycling: finished slots, in order, to pending or queued requests
            # (pending staggered requests take finished slots even with recycling off: they
            # belong to this batch, and mid-batch joins may have filled every new slot)
            # (none is finished while every slot is active and none joined since ``active`` was taken)
            if (recycling or pending) and (len(active) != len(slots) or self.joins != joins):
                for i in range(len(slots)):
                    if not slots[i].done:
                        continue
                    if pending:
                        req = pending.popleft()
                    elif recycling:
                        req = try_recv()
                        if req is None:
                            break
                        self._admit(req, (yield rt.now()), "recycle", batch_id)
                    else:
                        break
                    yield from self._join(req, slots, i, step)
            # (d) decode steps over the occupied slots: one, or as many as nothing can change in between
            if self.joins != joins:
                joins = self.joins
                active = [s for s in slots if s.tokens < s.output_tokens]
                context = -1
            if not active:
                if pending:  # unreachable: a pending request always finds a new or finished slot above
                    raise RuntimeError("generate loop: pending staggered requests but no slot to join")
                continue
            if context < 0:
                context = sum(s.prompt_tokens + s.tokens + (step - s.base_step) for s in active)
            n, occupied = len(active), len(slots)
            # Until the next request finishes, only a join changes the slots: a pending staggered request
            # joins before the next step if a slot is free or finished, a queued one (mid-batch join, slot
            # recycling) once one is on the channel when a step's sync returns. So the steps up to that
            # finish run as one series that stops early when a request is queued, if it could join.
            steps = 1 if pending and (occupied < max_batch or n != occupied) else min(finishing) - step
            watch = (mid_batch_joins and occupied < max_batch) or (recycling and n != occupied)
            times = yield series(
                gpu,
                "decode",
                decode_series_us(occupied, context, n, steps),
                1.0,
                compute,
                queued if watch else None,
            )
            ran = len(times)
            step += ran
            log.add_steps(occupied, n, ran)
            # every active slot gets one token a step: gaps from the previous decode step, or from a fresh first token
            t = times[0]
            if self.fresh:
                self.fresh = 0
                for s in active:
                    if s.fresh:
                        add_itl(t - s.last_token_us)
                        s.fresh = False
                    else:
                        add_itl(t - last_t)
            else:
                add_itl(t - last_t, n)
            if ran > 1:
                log.add_itl_between(times, n)
                t = times[-1]
            last_t = t
            context += n * ran
            ended = finishing.pop(step, None)  # none finish before the series' last step
            if ended is not None:
                ended.sort(key=_slot)
                for req in ended:
                    req.tokens = req.output_tokens
                    req.last_token_us = t
                    yield from self._finished(req)
                active = [s for s in slots if s.tokens < s.output_tokens]
                context = -1
        yield from self._cleanup()

    def _join(self, req: Request, slots: list[Request], slot: int, step: int) -> PolicyGen:
        """Prefill one prompt into ``slot`` (a new one at the end, or a finished one), after ``step`` decode steps."""
        req.slot = slot
        req.prefill_us = yield self.rt.now()
        if slot == len(slots):
            slots.append(req)
        else:
            slots[slot] = req
        self.log.max_slots_in_use = max(self.log.max_slots_in_use, len(slots))
        name = "recycle" if req.admission == "recycle" else "join"
        t = yield from self._step(name, self.cost.join_us(req.prompt_tokens))
        self.joins += 1
        yield from self._first_token(req, t, step)

    def _cleanup(self) -> PolicyGen:
        if self.cost.batch.cleanup_us > 0:
            yield self.rt.host_work(self.cost.batch.cleanup_us, "batch_cleanup")


def _slot(req: Request) -> int:
    return req.slot


# ----------------------------------------------------------------------------- the scheduler


class BatchFormation(Protocol):
    """A policy's batch-formation step: given the first request off the channel, return the batch."""

    def form(self, rt: Runtime, channel: RequestChannel, first: Request) -> PolicyGen: ...


def serve(rt: Runtime, inputs: BatchingInputs, formation: BatchFormation, options: LoopOptions) -> PolicyGen:
    """The policy's main thread: start the request source, then form and run batches until all are served."""
    screened = inputs.requests
    requests = [
        Request(i, int(p), int(o), float(a))
        for i, (p, o, a) in enumerate(zip(screened.prompt_tokens, screened.output_tokens, screened.arrival_us))
    ]
    log = ServerLog(requests)
    gpu = yield rt.create_stream(DEVICE, "gpu")
    doorbell = yield rt.make_queue(1 << 30, "requests")
    channel = RequestChannel(doorbell)
    sources = []
    if inputs.closed_loop_clients:
        pool = deque(requests)
        for c in range(inputs.closed_loop_clients):
            done = yield rt.make_queue(4, f"client{c}.done")
            sources.append(
                (yield rt.spawn(closed_loop_client, channel, pool, c, inputs.think_us, done, name=f"client{c}"))
            )
    else:
        sources.append((yield rt.spawn(open_loop_source, channel, requests, name="arrivals")))
    loop = GenerateLoop(rt, gpu, channel, inputs.cost, options, log)
    batch_id = 0
    while loop.completed < len(requests):
        first = yield from channel.recv(rt)
        batch = yield from formation.form(rt, channel, first)
        yield from loop.run(batch, batch_id)
        batch_id += 1
    log.end_us = yield rt.now()
    for thread in sources:
        yield rt.join(thread)
    yield from channel.join_timers(rt)
    return log
