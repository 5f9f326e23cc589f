"""Collectives in the simulator: NCCL's algorithms timed from the profile, and the rendezvous of the ranks.

**Time of one collective** (:class:`CollectiveModel`). ``size`` is nccl-tests'
size (the all-reduce buffer, the all-gather output, the reduce-scatter input,
the broadcast buffer, the send/recv message), ``n`` the GPU count. Where the
profile has a measured curve for the operation at ``n`` GPUs
(``[[collectives]]``, ``harness calibrate --collectives``) the time is read off
it, log-log between samples, the first sample's time below it (latency-bound)
and the last sample's bandwidth above it. Elsewhere it is the closed form of the
algorithm NCCL would run, on the ``[topology]`` figures (``α``: one hop,
``B``: bus bandwidth, ``L``: the fixed cost)::

    ring all_reduce                 L + 2(n-1) α + size · 2(n-1)/n / B_ring
    ring all_gather, reduce_scatter L +  (n-1) α + size ·  (n-1)/n / B_ring
    ring broadcast (a chain)        L +  (n-1) α + size / B_ring
    tree all_reduce (up, then down) L + 2⌈log2 n⌉ α + size · 2(n-1)/n / B_tree
    tree broadcast                  L +  ⌈log2 n⌉ α + size / B_tree
    send/recv                       L + α + size / B_p2p

so the bus bandwidth (nccl-tests' ``busbw = algbw · factor``, :func:`bus_factor`)
tends to ``B`` at large sizes. ``algorithm = "auto"`` takes the faster of ring and
tree, as NCCL's tuner does (the tree wins small messages, the ring large ones);
all-gather and reduce-scatter are rings only. A communicator of one GPU is a
local device-to-device copy (``Profile.d2d_time_us``), as NCCL does out of place.

**Sharing the GPU.** While it runs, a collective holds ``compute_share`` of every
participating GPU's compute (NCCL's kernels occupy SMs): it goes to each
device's fluid compute server as work of its solo time at that share, so
compute oversubscribed by kernels of other streams stretches it (and it them);
it ends on every rank when the slowest rank's part ends. It does not contend with
the host link, with other collectives on the interconnect, nor does a rank waiting
for the others hold SMs (limitations, see ``docs/collectives.md``).

**Rendezvous** (:class:`CollectiveBook`). The k-th collective a rank issues on a
communicator meets the k-th of every other rank (the k-th send from a to b meets
the k-th recv at b from a); they must agree on the operation, the size and the
root, or the run stops with :class:`CollectiveMismatch` naming both. The
collective starts when the last rank's stream reaches it; each rank's op row
starts when its own stream reached it (the NCCL kernel was already waiting) and
all end together.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import simpy

from harness.collective_profile import CollectiveCurve, TopologyFigures
from harness.profile import Profile
from harness.runtime import Collective, CollectiveOp

_P2P = (CollectiveOp.SEND, CollectiveOp.RECV)


class CollectiveMismatch(RuntimeError):
    """Ranks that meet in one collective disagree on what it is (or a rank never comes)."""


def curve_op(op: CollectiveOp) -> str:
    """The name a profile curve uses for ``op`` (send and recv are both ``send_recv``)."""
    return "send_recv" if op in _P2P else op.value


def bus_factor(op: CollectiveOp | str, gpus: int) -> float:
    """nccl-tests' ``busbw / algbw`` for ``op`` at ``gpus`` GPUs (1 for broadcast and send/recv)."""
    name = op if isinstance(op, str) else curve_op(op)
    n = gpus
    if name == "all_reduce":
        return 2.0 * (n - 1) / n
    if name in ("all_gather", "reduce_scatter"):
        return (n - 1) / n
    return 1.0


def algorithm_gbps(size_bytes: int, time_us: float) -> float:
    """nccl-tests' ``algbw``: size over time, GB/s (1e9 bytes)."""
    return size_bytes / time_us / 1e3


def bus_gbps(op: CollectiveOp | str, size_bytes: int, gpus: int, time_us: float) -> float:
    """nccl-tests' ``busbw``: ``algbw`` times :func:`bus_factor`, GB/s."""
    return algorithm_gbps(size_bytes, time_us) * bus_factor(op, gpus)


def ring_time_us(op: str, size_bytes: int, gpus: int, topo: TopologyFigures) -> float:
    """The ring algorithm's closed form (see the module docstring); ``op`` as a curve names it."""
    n, per_us = gpus, topo.bus_gbps * 1e3
    if op == "send_recv":
        return topo.base_latency_us + topo.step_latency_us + size_bytes / (topo.p2p_gbps * 1e3)
    if op == "all_reduce":
        hops = 2 * (n - 1)
    elif op in ("all_gather", "reduce_scatter", "broadcast"):
        hops = n - 1
    else:
        raise ValueError(f"unknown collective {op!r}")
    moved = size_bytes if op == "broadcast" else size_bytes * bus_factor(op, n)
    return topo.base_latency_us + hops * topo.step_latency_us + moved / per_us


def tree_time_us(op: str, size_bytes: int, gpus: int, topo: TopologyFigures) -> float | None:
    """The tree algorithm's closed form, or None where NCCL has no tree for ``op``."""
    depth = math.ceil(math.log2(gpus)) if gpus > 1 else 0
    per_us = topo.tree_bus_gbps * 1e3
    if op == "all_reduce":
        return topo.base_latency_us + 2 * depth * topo.step_latency_us + size_bytes * bus_factor(op, gpus) / per_us
    if op == "broadcast":
        return topo.base_latency_us + depth * topo.step_latency_us + size_bytes / per_us
    return None


def closed_form_time_us(op: str, size_bytes: int, gpus: int, topo: TopologyFigures) -> tuple[str, float]:
    """``(algorithm, time_us)`` NCCL would run on ``topo`` (ring, tree, or the faster under ``auto``)."""
    ring = ring_time_us(op, size_bytes, gpus, topo)
    if op == "send_recv":
        return "p2p", ring
    tree = tree_time_us(op, size_bytes, gpus, topo)
    if tree is None or topo.algorithm == "ring":
        return "ring", ring
    if topo.algorithm == "tree" or tree < ring:
        return "tree", tree
    return "ring", ring


@dataclass(frozen=True)
class MeasuredCurve:
    """A profile's measured ``[[collectives]]`` curve, ready to read (see the module docstring)."""

    log_sizes: np.ndarray
    log_times: np.ndarray
    last_size: float
    last_time_us: float
    first_time_us: float
    algorithm: str

    @classmethod
    def of(cls, curve: CollectiveCurve) -> MeasuredCurve:
        sizes = np.array([s for s, _ in curve.samples], dtype=float)
        times = np.array([t for _, t in curve.samples], dtype=float)
        return cls(np.log(sizes), np.log(times), sizes[-1], times[-1], times[0], curve.algorithm or "measured")

    def time_us(self, size_bytes: int) -> float:
        if size_bytes >= self.last_size:
            return self.last_time_us * size_bytes / self.last_size
        if size_bytes <= 0 or math.log(size_bytes) <= self.log_sizes[0]:
            return self.first_time_us
        return float(np.exp(np.interp(math.log(size_bytes), self.log_sizes, self.log_times)))


class CollectiveModel:
    """Solo time of each collective on a profile: measured curves first, the topology's closed form otherwise."""

    def __init__(self, profile: Profile) -> None:
        self.profile = profile
        self.topology: TopologyFigures = profile.figures.topology
        self._curves = {(c.op, c.gpus): MeasuredCurve.of(c) for c in profile.figures.collectives}

    @property
    def compute_share(self) -> float:
        return self.topology.compute_share

    def time_us(
        self, op: CollectiveOp, size_bytes: int, gpus: int, algorithm: str | None = None
    ) -> tuple[str, float]:
        """``(algorithm, solo time in µs)`` of ``op`` moving ``size_bytes`` (nccl-tests' size) among ``gpus``.

        ``algorithm``: the one a recording says NCCL ran; ``"ring"`` or ``"tree"`` then takes that closed form
        (a ring where NCCL has no tree for ``op``) where no measured curve applies; others: the model's choice."""
        if gpus == 1:
            return "local_copy", self.profile.d2d_time_us(size_bytes)
        name = curve_op(op)
        curve = self._curves.get((name, gpus))
        if curve is not None:
            return curve.algorithm, curve.time_us(size_bytes)
        if algorithm == "tree" and name != "send_recv":
            tree = tree_time_us(name, size_bytes, gpus, self.topology)
            if tree is not None:
                return "tree", tree
        if algorithm in ("ring", "tree") and name != "send_recv":
            return "ring", ring_time_us(name, size_bytes, gpus, self.topology)
        return closed_form_time_us(name, size_bytes, gpus, self.topology)


# --------------------------------------------------------------------------- rendezvous


@dataclass(eq=False)
class Meeting:
    """One collective as every rank issues it: who has reached it and when it is done."""

    key: tuple
    op: CollectiveOp
    nbytes: int
    root: int | None
    devices: tuple[int, ...]  # the participating devices
    first_name: str
    done: simpy.Event
    algorithm: str | None = None  # NCCL's algorithm as the first rank to issue it named it (None: the model's)
    issued: set[int] = field(default_factory=set)  # devices that issued their part
    arrived: set[int] = field(default_factory=set)  # devices whose stream reached it

    def describe(self) -> str:
        missing = sorted(set(self.devices) - self.issued)
        waiting = f"; never issued by device(s) {missing}" if missing else "; issued by all, not reached by all"
        return f"{self.op.value} {self.first_name!r} of {self.nbytes} bytes on devices {list(self.devices)}{waiting}"


StartCollective = Callable[[Meeting], simpy.Event]
"""Runs a meeting whose ranks have all arrived; the returned event fires when it has ended on every rank."""


class CollectiveBook:
    """Matches each rank's collective calls with the other ranks' (see the module docstring)."""

    def __init__(self, env: simpy.Environment, start: StartCollective) -> None:
        self.env = env
        self._start = start
        self._counts: dict[tuple, int] = {}  # (channel, device, role) -> calls issued so far
        self._meetings: dict[tuple, Meeting] = {}

    def issue(self, cmd: Collective) -> Meeting:
        """The meeting a rank's call belongs to; checks that it agrees with the ranks that issued it first."""
        comm, device = cmd.comm, cmd.stream.device
        if cmd.op in _P2P:
            src, dst = (device, cmd.peer) if cmd.op is CollectiveOp.SEND else (cmd.peer, device)
            channel: tuple = (comm.id, "p2p", src, dst)
            devices: tuple[int, ...] = (src, dst)
            role = cmd.op.value
        else:
            channel, devices, role = (comm.id, "collective"), comm.devices, ""
        count_key = (channel, device, role)
        seq = self._counts.get(count_key, 0)
        self._counts[count_key] = seq + 1
        key = (*channel, seq)
        meeting = self._meetings.get(key)
        op = CollectiveOp.SEND if cmd.op in _P2P else cmd.op  # send and recv are one meeting
        root = cmd.peer if cmd.op is CollectiveOp.BROADCAST else None
        if meeting is None:
            meeting = Meeting(key, op, cmd.nbytes, root, devices, cmd.name, self.env.event(), cmd.algorithm)
            self._meetings[key] = meeting
        elif (meeting.op, meeting.nbytes, meeting.root) != (op, cmd.nbytes, root):
            raise CollectiveMismatch(
                f"collective #{seq} on communicator {comm.name!r}: device {device} issued {cmd.op.value}"
                f" {cmd.name!r} of {cmd.nbytes} bytes{_root(root)}, but another rank issued {meeting.op.value}"
                f" {meeting.first_name!r} of {meeting.nbytes} bytes{_root(meeting.root)}"
            )
        meeting.issued.add(device)
        return meeting

    def arrive(self, meeting: Meeting, device: int) -> simpy.Event:
        """``device``'s stream has reached the meeting; the last to arrive starts it. Fires when it has ended."""
        meeting.arrived.add(device)
        if len(meeting.arrived) == len(meeting.devices):
            del self._meetings[meeting.key]
            ended = self._start(meeting)
            ended.callbacks.append(lambda _: meeting.done.succeed())
        return meeting.done

    def unfinished(self) -> list[str]:
        """The meetings some rank never issued or never reached (what a deadlocked run was waiting for)."""
        return [m.describe() for m in self._meetings.values()]


def _root(root: int | None) -> str:
    return "" if root is None else f" from root {root}"
