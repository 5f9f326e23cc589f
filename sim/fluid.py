"""Fluid (rate-sharing) servers: work that progresses at rates set by who else is running.

Two parts of a GPU behave this way in the model:

* **compute**: concurrent kernels each declare the share of the GPU they occupy;
  while the shares sum to at most 1 every kernel runs at its solo speed, and past
  1 all of them slow by the same factor (``1 / sum``), so each kernel's duration
  stretches by the oversubscription;
* **the host link**: a copy in one direction moves at the profile's bandwidth for
  its size, scaled by the duplex factor while the other direction is also busy.

A :class:`FluidServer` keeps the remaining work of each job, re-plans rates on
every arrival and departure, and schedules one timer for the next completion.
Timers made stale by a re-plan are ignored when they fire (SimPy timeouts
cannot be cancelled), so ``env.now`` may run past the last completion; callers
take end times from the ops they recorded, not from ``env.now``.
"""

from __future__ import annotations

from collections.abc import Callable

import simpy

# Work below this (µs of solo compute or bytes) counts as done: absorbs rounding.
DONE_TOLERANCE = 1e-6


class Job:
    """One unit of work on a fluid server."""

    __slots__ = ("remaining", "weight", "group", "rate", "done")

    def __init__(self, remaining: float, weight: float, group: object, done: simpy.Event) -> None:
        self.remaining = remaining
        self.weight = weight  # compute: share of the GPU; link: solo bytes/µs
        self.group = group  # link: direction; compute: unused
        self.rate = 0.0
        self.done = done


RatePolicy = Callable[[list[Job]], None]
"""Sets ``job.rate`` (work per µs) for every running job."""


class FluidServer:
    """Runs jobs concurrently at rates chosen by a :data:`RatePolicy`."""

    __slots__ = ("env", "jobs", "_set_rates", "_stamp", "_plan")

    def __init__(self, env: simpy.Environment, set_rates: RatePolicy) -> None:
        self.env = env
        self.jobs: list[Job] = []
        self._set_rates = set_rates
        self._stamp = 0.0
        self._plan = 0

    def submit(self, work: float, weight: float, group: object = None) -> simpy.Event:
        """Start a job now; the returned event fires when it completes."""
        done = self.env.event()
        if work <= DONE_TOLERANCE:
            done.succeed()
            return done
        self._advance()
        self.jobs.append(Job(work, weight, group, done))
        self._replan()
        return done

    def _advance(self) -> None:
        now = self.env.now
        elapsed = now - self._stamp
        if elapsed > 0.0:
            for job in self.jobs:
                job.remaining -= elapsed * job.rate
        self._stamp = now

    def _replan(self) -> None:
        self._plan += 1
        if not self.jobs:
            return
        jobs = self.jobs
        self._set_rates(jobs)
        first = jobs[0] if len(jobs) == 1 else min(jobs, key=lambda j: j.remaining / j.rate)
        delay = max(first.remaining / first.rate, 0.0)
        plan = self._plan
        timer = self.env.timeout(delay)
        timer.callbacks.append(lambda _ev: self._on_timer(plan, first))

    def _on_timer(self, plan: int, first: Job) -> None:
        if plan != self._plan:
            return  # superseded by a later re-plan
        self._advance()
        first.remaining = 0.0  # the job this timer was set for is done by construction
        if len(self.jobs) == 1:  # that job alone (the common case: one kernel on the device)
            self.jobs = []
            first.done.succeed()
            self._replan()
            return
        finished = [j for j in self.jobs if j.remaining <= DONE_TOLERANCE * max(1.0, j.rate)]
        self.jobs = [j for j in self.jobs if j.remaining > DONE_TOLERANCE * max(1.0, j.rate)]
        for job in finished:
            job.done.succeed()
        self._replan()


def solo_end_us(start_us: float, work: float, share: float) -> float:
    """When compute work of ``share`` submitted alone at ``start_us`` completes, to the last bit as a
    :class:`FluidServer` under :func:`compute_rates` times it (the simulator's shortcuts past the server)."""
    if work <= DONE_TOLERANCE:
        return start_us  # done at once: submit() never starts a job
    # the server's delay is max(work / rate, 0.0); work > 0, and work / 1.0 is work to the bit
    return start_us + (work if share <= 1.0 else work / (1.0 / share))


def compute_rates(jobs: list[Job]) -> None:
    """Kernels share compute by declared share; all stretch equally past 100%."""
    total_share = 0.0
    for job in jobs:
        total_share += job.weight
    rate = 1.0 if total_share <= 1.0 else 1.0 / total_share
    for job in jobs:
        job.rate = rate


def duplex_link_rates(duplex_factor: float) -> RatePolicy:
    """Each direction at its own bandwidth; both slowed by ``duplex_factor`` when both are busy."""

    def set_rates(jobs: list[Job]) -> None:
        directions = {job.group for job in jobs}
        scale = duplex_factor if len(directions) > 1 else 1.0
        per_direction: dict[object, int] = {}
        for job in jobs:
            per_direction[job.group] = per_direction.get(job.group, 0) + 1
        for job in jobs:
            # Copies in one direction share that direction's bandwidth equally.
            job.rate = job.weight * scale / per_direction[job.group]

    return set_rates
