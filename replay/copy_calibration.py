"""Host-link copies timed the way runs issue them, and the link's drift across a calibration.

The copy part of ``harness calibrate`` (:func:`replay.calibrate.calibrate`). A policy
(:func:`copy_rounds_policy`) runs through the replay engine itself, so every copy
moves bytes exactly as a replayed layer-streaming run moves them: from the
engine's pooled host buffer (:mod:`replay.pools`) into a device buffer freshly
allocated through the caching allocator (the previous one is kept until the next
copy is queued, so consecutive copies land in different blocks, as prefetch's do),
interleaved with the engine's stand-in kernels. Each copy is queued behind a
kernel, so its CUDA events time the GPU's transfer and not the host's issue:

* **behind** (as ``sync`` issues them): kernel, copy, kernel on one compute stream;
* **beside** (as ``prefetch`` issues them): the copy on a side stream held by an
  event until a short kernel ends, while a kernel as long as the copy runs on the
  compute stream.

A pageable copy holds the host until it is done, so it is issued on an idle stream
(**idle**: copy, then kernel; **beside**: after a kernel as long as the copy, on the
side stream), its events counting the host's staging as runs' do (:func:`placements`).
Pinned copies are also issued **idle** (as layer streaming issues them: the transfer
waits for the host's call), kept apart as the table's ``idle_us``
(:func:`idle_adjusted` makes a candidate profile of them).

Sizes are interleaved in **rounds** (every size once per round, the order reversed
every other round, the placement alternating), so a slow moment of the link hits
every size alike instead of one size's every sample; each size's figure is the
median over rounds and its spread half the interquartile range
(:func:`link_section`). Both directions together (duplex) are released by one
kernel onto two streams, in the same rounds.

**Drift.** A reference copy (:data:`REFERENCE`, 64 MiB pinned H2D, issued the same
way) is timed in a short probe (:func:`probe_policy`) at the start, middle and
end of the calibration; :func:`drift_section` writes the probes and their
relative spread to the profile's ``[link.drift]``. ``python3 -m replay.link_probe``
takes the same probe before and after each fidelity run.

The analysis (:func:`copy_durations`, :func:`link_section`, :func:`drift_section`)
is pure: tests run the policies on the simulator and read its profile back.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from harness.runtime import Direction, HostMemory, KernelKind, PolicyGen, Runtime
from replay.fit import MiB, duplex_factor, link_table

PINNED_SIZES = (64 << 10, 256 << 10, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 128 * MiB, 256 * MiB, 512 * MiB, 1024 * MiB)
PAGEABLE_SIZES = (64 << 10, 1 * MiB, 4 * MiB, 16 * MiB, 64 * MiB, 256 * MiB)
DUPLEX_BYTES = 256 * MiB
ROUNDS = 9
GATE_US = 300.0  # the kernel a copy queues behind: longer than the host takes to issue the copy
AFTER_US = 100.0  # the kernel after a 'behind' copy (a layer's compute follows its parameters)
COPY_PREFIX, DUPLEX_PREFIX, PROBE_PREFIX = "cal-copy", "cal-duplex", "cal-probe"
BEHIND, BESIDE, IDLE = "behind", "beside", "idle"


@dataclass(frozen=True, slots=True)
class CopyCase:
    """One kind of copy to time: direction, host-memory kind, bytes, and what the base profile expects (µs)."""

    direction: Direction
    memory: HostMemory
    nbytes: int
    expected_us: float = 1000.0  # sizes the kernel running beside the copy; any positive guess works


@dataclass(frozen=True, slots=True)
class CopyPlan:
    """What :func:`copy_rounds_policy` times (hashable: the replay's warm-up is keyed on it)."""

    cases: tuple[CopyCase, ...]
    rounds: int = ROUNDS
    duplex_bytes: int = DUPLEX_BYTES  # 0: no duplex measurement


REFERENCE = CopyCase(Direction.H2D, HostMemory.PINNED, 64 * MiB)
PROBE_REPS = 9


def plan_for(profile: Any, rounds: int = ROUNDS) -> CopyPlan:
    """The default plan: every size of both directions and host-memory kinds, expected times from ``profile``."""
    cases = []
    for direction in (Direction.H2D, Direction.D2H):
        for memory, sizes in ((HostMemory.PINNED, PINNED_SIZES), (HostMemory.PAGEABLE, PAGEABLE_SIZES)):
            cases += [CopyCase(direction, memory, n, profile.copy_time_us(n, direction, memory)) for n in sizes]
    return CopyPlan(tuple(cases), rounds, DUPLEX_BYTES)


def copy_name(case: CopyCase, place: str) -> str:
    return f"{COPY_PREFIX}:{case.direction.value}:{case.memory.value}:{case.nbytes}:{place}"


def placements(case: CopyCase) -> tuple[str, ...]:
    """The ways a case is issued, taken in turn from round to round.

    A pinned copy is queued behind a kernel or beside one (the events time the transfer, not the
    host's issue, which the profile charges as ``copy_launch_us``: the samples), and also issued on
    an idle stream, as layer streaming issues it (the events then count the host's issue too: the
    table's ``idle_us``, kept beside the samples). A pageable copy holds the host until it has been
    staged and moved, so it is issued on an idle stream, as runs issue it and as the profile has
    always timed it: alone (then a kernel), or beside a kernel already running.
    """
    return (BEHIND, BESIDE, IDLE) if case.memory is HostMemory.PINNED else (IDLE, BESIDE)


def _one_copy(rt: Runtime, compute: Any, side: Any, case: CopyCase, place: str, previous: Any) -> PolicyGen:
    """Issue one copy into a fresh buffer among kernels, let it finish, free the previous buffer; returns this one."""
    buf = yield rt.alloc(0, case.nbytes, "cal-buffer")
    if buf is None:
        raise MemoryError(f"copy calibration: {case.nbytes} bytes do not fit the device budget")
    name = copy_name(case, place)
    beside_us = max(case.expected_us, AFTER_US)
    if place == IDLE:
        yield rt.copy(compute, case.nbytes, case.direction, case.memory, name, buf)
        yield rt.launch(compute, "cal-after", AFTER_US, 1.0, KernelKind.COMPUTE)
    elif place == BEHIND:
        yield rt.launch(compute, "cal-gate", GATE_US, 1.0, KernelKind.COMPUTE)
        yield rt.copy(compute, case.nbytes, case.direction, case.memory, name, buf)
        yield rt.launch(compute, "cal-after", AFTER_US, 1.0, KernelKind.COMPUTE)
    elif case.memory is HostMemory.PINNED:  # beside, held until a short kernel ends
        yield rt.launch(compute, "cal-gate", GATE_US, 1.0, KernelKind.COMPUTE)
        gate = yield rt.record(compute)
        yield rt.wait_event(side, gate)
        yield rt.copy(side, case.nbytes, case.direction, case.memory, name, buf)
        yield rt.launch(compute, "cal-beside", beside_us, 1.0, KernelKind.COMPUTE)
        yield rt.sync_stream(side)
    else:  # pageable beside: the kernel first, then the copy on the idle side stream
        yield rt.launch(compute, "cal-beside", beside_us, 1.0, KernelKind.COMPUTE)
        yield rt.copy(side, case.nbytes, case.direction, case.memory, name, buf)
        yield rt.sync_stream(side)
    yield rt.sync_stream(compute)
    if previous is not None:
        yield rt.free(previous)
    return buf


def _duplex(rt: Runtime, compute: Any, side: Any, plan: CopyPlan) -> PolicyGen:
    """One pinned H2D and one pinned D2H released together by one kernel's end, on two streams."""
    into = yield rt.alloc(0, plan.duplex_bytes, "cal-duplex-in")
    out = yield rt.alloc(0, plan.duplex_bytes, "cal-duplex-out")
    if into is None or out is None:
        raise MemoryError(f"copy calibration: 2 x {plan.duplex_bytes} bytes do not fit the device budget")
    yield rt.launch(compute, "cal-gate", GATE_US, 1.0, KernelKind.COMPUTE)
    gate = yield rt.record(compute)
    yield rt.wait_event(side, gate)
    n = plan.duplex_bytes
    yield rt.copy(side, n, Direction.H2D, HostMemory.PINNED, f"{DUPLEX_PREFIX}:h2d:pinned:{n}", into)
    yield rt.copy(compute, n, Direction.D2H, HostMemory.PINNED, f"{DUPLEX_PREFIX}:d2h:pinned:{n}", out)
    yield rt.sync_stream(side)
    yield rt.sync_stream(compute)
    yield rt.free(into)
    yield rt.free(out)


def copy_rounds_policy(rt: Runtime, plan: CopyPlan) -> PolicyGen:
    """Every case once per round (order reversed every other round, placement alternating), then a duplex pair."""
    compute = yield rt.create_stream(0, "cal-compute")
    side = yield rt.create_stream(0, "cal-side")
    previous = None
    for r in range(plan.rounds):
        numbered = list(enumerate(plan.cases))
        for k, case in numbered if r % 2 == 0 else reversed(numbered):
            places = placements(case)
            place = places[(r + k) % len(places)]  # each case changes placement from round to round
            previous = yield from _one_copy(rt, compute, side, case, place, previous)
        if plan.duplex_bytes:
            if previous is not None:
                yield rt.free(previous)
                previous = None
            yield from _duplex(rt, compute, side, plan)
    if previous is not None:
        yield rt.free(previous)


def probe_policy(rt: Runtime, reps: int = PROBE_REPS, case: CopyCase = REFERENCE) -> PolicyGen:
    """The drift probe: ``reps`` reference copies, each into a fresh buffer behind a kernel."""
    compute = yield rt.create_stream(0, "cal-compute")
    previous = None
    probe = case
    for _ in range(reps):
        buf = yield rt.alloc(0, probe.nbytes, "cal-buffer")
        if buf is None:
            raise MemoryError(f"link probe: {probe.nbytes} bytes do not fit the device budget")
        yield rt.launch(compute, "cal-gate", GATE_US, 1.0, KernelKind.COMPUTE)
        yield rt.copy(compute, probe.nbytes, probe.direction, probe.memory, PROBE_PREFIX, buf)
        yield rt.sync_stream(compute)
        if previous is not None:
            yield rt.free(previous)
        previous = buf
    if previous is not None:
        yield rt.free(previous)


# ------------------------------------------------------------------ analysis (pure)
def _durations(ops: Any, prefix: str) -> Iterable[tuple[str, float]]:
    rows = ops[ops["kind"].isin(("copy_h2d", "copy_d2h")) & ops["name"].str.startswith(prefix)]
    rows = rows.sort_values("op_id")
    return zip(rows["name"], (rows["end_us"] - rows["start_us"]).to_numpy())


def copy_durations(ops: Any) -> dict[tuple[str, str, int], dict[str, list[float]]]:
    """``{(direction, memory, bytes): {placement: [µs, ...]}}`` of a :func:`copy_rounds_policy` run's ops."""
    out: dict[tuple[str, str, int], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for name, us in _durations(ops, COPY_PREFIX + ":"):
        _, direction, memory, nbytes, place = name.split(":")
        out[(direction, memory, int(nbytes))][place].append(float(us))
    return {k: dict(v) for k, v in out.items()}


def duplex_durations(ops: Any) -> list[float]:
    """Each duplex pair's mean duration of its two copies, µs."""
    h2d = [us for name, us in _durations(ops, DUPLEX_PREFIX + ":h2d")]
    d2h = [us for name, us in _durations(ops, DUPLEX_PREFIX + ":d2h")]
    return [statistics.fmean(pair) for pair in zip(h2d, d2h)]


def probe_durations(ops: Any) -> list[float]:
    return [float(us) for _, us in _durations(ops, PROBE_PREFIX)]


def median_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """The median and half the interquartile range (0 for fewer than two values)."""
    if not values:
        raise ValueError("no values")
    median = statistics.median(values)
    if len(values) < 2:
        return float(median), 0.0
    q1, _, q3 = statistics.quantiles(values, n=4, method="inclusive")
    return float(median), float(q3 - q1) / 2


def link_section(
    durations: Mapping[tuple[str, str, int], Mapping[str, Sequence[float]]],
    duplex_us: Sequence[float] = (),
    duplex_bytes: int = DUPLEX_BYTES,
) -> dict:
    """The profile's ``[link]`` from timed copies.

    Per direction and memory kind: a table of each size's median (the placements that time the
    transfer pooled: for pinned copies behind and beside a kernel, for pageable ones all), the latency
    fit of :func:`replay.fit.link_table`, each size's spread (``spread_us``: half the interquartile
    range) and, for pinned copies also issued on an idle stream, that median (``idle_us``). With duplex
    pairs: the duplex factor, their median against the pinned copies of ``duplex_bytes`` timed alone in
    each direction.
    """
    link: dict = {}
    medians: dict[tuple[str, str, int], float] = {}
    for direction in ("h2d", "d2h"):
        link[direction] = {}
        for memory in ("pinned", "pageable"):
            keys = sorted(k for k in durations if k[0] == direction and k[1] == memory)
            if not keys:
                raise ValueError(f"no {direction} {memory} copies were timed")
            figures, idle = [], []
            for key in keys:
                by_place = durations[key]
                timed = [p for p in by_place if memory == "pageable" or p != IDLE] or list(by_place)
                median, spread = median_and_spread([t for p in timed for t in by_place[p]])
                medians[key] = median
                figures.append((key[2], median, spread))
                if memory == "pinned" and by_place.get(IDLE):
                    idle.append([key[2], round(statistics.median(by_place[IDLE]), 2)])
            table = link_table([(n, median) for n, median, _ in figures])
            table["spread_us"] = [[n, round(spread, 2)] for n, _, spread in figures]
            if idle:
                table["idle_us"] = idle
            link[direction][memory] = table
    if duplex_us:
        alone = [medians.get((d, "pinned", duplex_bytes)) for d in ("h2d", "d2h")]
        if None in alone:
            raise ValueError(f"duplex pairs of {duplex_bytes} B need pinned copies of that size timed alone")
        latency = statistics.fmean(link[d]["pinned"]["latency_us"] for d in ("h2d", "d2h"))
        link["duplex_bandwidth_factor"] = duplex_factor(statistics.fmean(alone), statistics.median(duplex_us), latency)
    return link


@dataclass(frozen=True, slots=True)
class LinkProbe:
    """One drift probe: when (s since the calibration began), the reference copy's median and spread (µs)."""

    label: str
    elapsed_s: float
    median_us: float
    spread_us: float


def probe_of(label: str, elapsed_s: float, durations_us: Sequence[float]) -> LinkProbe:
    median, spread = median_and_spread(durations_us)
    return LinkProbe(label, round(elapsed_s, 1), round(median, 2), round(spread, 2))


def drift_fraction(medians_us: Sequence[float]) -> float:
    """The link's drift over probes: (slowest - fastest) / the median of their medians."""
    return (max(medians_us) - min(medians_us)) / statistics.median(medians_us)


def drift_section(probes: Sequence[LinkProbe], case: CopyCase = REFERENCE) -> dict:
    """The profile's ``[link.drift]``: the reference copy, each probe, and their relative spread."""
    if not probes:
        raise ValueError("no drift probes")
    return {
        "direction": case.direction.value,
        "host_memory": case.memory.value,
        "nbytes": case.nbytes,
        "spread_frac": round(drift_fraction([p.median_us for p in probes]), 4),
        "probes": [
            {"label": p.label, "elapsed_s": p.elapsed_s, "median_us": p.median_us, "spread_us": p.spread_us}
            for p in probes
        ],
    }


def idle_adjusted(raw: Mapping) -> dict:
    """A profile (raw dict) whose pinned samples count what an idle-stream issue adds to a copy.

    Layer streaming issues each copy on an idle stream, where the transfer starts only once the host's
    call has submitted it, later for bigger copies; the simulator charges ``copy_launch_us`` in front
    of every copy. Each pinned sample becomes ``max(sample, idle_us - copy_launch_us)``: the copy as runs
    see it, less the host cost already charged, never below its transfer time. Tables without
    ``idle_us`` are left as they are. A candidate model, compared by ``tools/copy_calibration_ab.py``.
    """
    out = {**raw, "link": {**raw["link"]}}
    launch_us = float(raw["host"]["copy_launch_us"])
    for direction in ("h2d", "d2h"):
        table = dict(raw["link"][direction]["pinned"])
        idle = dict((int(n), float(us)) for n, us in table.get("idle_us", []))
        table["samples"] = [[n, round(max(t, idle.get(n, 0.0) - launch_us), 2)] for n, t in table["samples"]]
        out["link"][direction] = {**raw["link"][direction], "pinned": table}
    return out


# ------------------------------------------------------------------ on the GPU, through the replay engine
class LinkProber:
    """Takes drift probes through one replay backend; remembers them with their time since it was made."""

    def __init__(self, backend: Any, clock: Any, reps: int = PROBE_REPS) -> None:
        self.backend, self.clock, self.reps = backend, clock, reps
        self.t0 = clock()
        self.probes: list[LinkProbe] = []

    def probe(self, label: str) -> LinkProbe:
        from harness.backend import run_policy

        durations = probe_durations(run_policy(self.backend, probe_policy, self.reps).ops)
        found = probe_of(label, self.clock() - self.t0, durations)
        self.probes.append(found)
        return found


def describe_probe(probe: LinkProbe, case: CopyCase = REFERENCE) -> str:
    gbps = case.nbytes / probe.median_us / 1e3
    return (
        f"  link probe ({probe.label}, {probe.elapsed_s:.0f} s): {case.direction.value} {case.memory.value} "
        f"{case.nbytes >> 20} MiB {probe.median_us:.1f} µs ± {probe.spread_us:.1f} ({gbps:.2f} GB/s)"
    )


def measure_link(backend: Any, plan: CopyPlan, log: Any) -> tuple[dict, float]:
    """The ``[link]`` section from ``plan``'s copies through ``backend`` (a replay backend); also the duplex median."""
    from harness.backend import run_policy

    ops = run_policy(backend, copy_rounds_policy, plan).ops
    durations = copy_durations(ops)
    duplex = duplex_durations(ops)
    link = link_section(durations, duplex, plan.duplex_bytes)
    for (direction, memory, nbytes), by_place in sorted(durations.items()):
        median, spread = median_and_spread([t for ts in by_place.values() for t in ts])
        places = ", ".join(f"{p} {statistics.median(ts):.1f}" for p, ts in sorted(by_place.items()))
        log(
            f"  {direction} {memory:8} {nbytes:>11} B  {median:10.1f} µs ± {spread:6.1f}  "
            f"{nbytes / median / 1e3:6.2f} GB/s  ({places})"
        )
    duplex_us = statistics.median(duplex) if duplex else float("nan")
    if duplex:
        log(
            f"  duplex: {plan.duplex_bytes >> 20} MiB each way {duplex_us:.1f} µs "
            f"-> factor {link['duplex_bandwidth_factor']}"
        )
    return link, duplex_us
