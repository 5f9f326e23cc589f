"""Invariants of the simulator on random workloads (hypothesis)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backend import run_policy
from harness.runtime import Direction, HostMemory
from sim import SimBackend

EPS = 1e-6

op_strategy = st.one_of(
    st.tuples(st.just("kernel"), st.floats(0.0, 500.0), st.floats(0.05, 1.0)),
    st.tuples(
        st.just("copy"),
        st.integers(1, 64 << 20),
        st.sampled_from([Direction.H2D, Direction.D2H, Direction.D2D]),
        st.sampled_from([HostMemory.PINNED, HostMemory.PAGEABLE]),
    ),
    st.tuples(st.just("record")),
    st.tuples(st.just("wait"), st.integers(0, 1000)),
    st.tuples(st.just("host"), st.floats(0.0, 200.0)),
)

workload_strategy = st.tuples(
    st.integers(1, 4), st.lists(st.tuples(st.integers(0, 3), op_strategy), min_size=1, max_size=40)
)


def random_policy(n_streams, program):
    """A policy that issues a random program over n streams; waits name earlier events."""

    def main(rt):
        streams = []
        for s in range(n_streams):
            streams.append((yield rt.create_stream(0, f"s{s}")))
        events = []
        for k, (target, op) in enumerate(program):
            stream = streams[target % n_streams]
            kind = op[0]
            if kind == "kernel":
                yield rt.launch(stream, f"k{k}", op[1], op[2])
            elif kind == "copy":
                yield rt.copy(stream, op[1], op[2], op[3], name=f"c{k}")
            elif kind == "record":
                events.append((yield rt.record(stream)))
            elif kind == "wait" and events:
                yield rt.wait_event(stream, events[op[1] % len(events)])
            elif kind == "host":
                yield rt.host_work(op[1])
        for stream in streams:
            yield rt.sync_stream(stream)
        return events

    return main


@settings(max_examples=120, deadline=None)
@given(workload_strategy)
def test_stream_and_engine_invariants(h100, workload):
    n_streams, program = workload
    backend = SimBackend(h100)
    result = run_policy(backend, random_policy(n_streams, program))
    ops = result.ops

    # Every op ends after it starts, and starts no earlier than it was issued.
    assert (ops["end_us"] >= ops["start_us"] - EPS).all()
    assert (ops["start_us"] >= ops["issue_us"] - EPS).all()

    device_ops = ops[ops["device"] >= 0].sort_values("op_id")
    for _, stream_ops in device_ops.groupby("stream"):
        starts = stream_ops["start_us"].to_numpy()
        ends = stream_ops["end_us"].to_numpy()
        # Ops on a stream start in issue order and never run two at once.
        assert (starts[1:] >= starts[:-1] - EPS).all()
        assert (starts[1:] >= ends[:-1] - EPS).all()

    # A waiting stream starts nothing after the wait before its event completes.
    record_end = device_ops[device_ops["kind"] == "record"].set_index("name")["end_us"]
    for _, wait in device_ops[device_ops["kind"] == "wait"].iterrows():
        assert wait["end_us"] >= record_end[wait["name"]] - EPS
        later = device_ops[(device_ops["stream"] == wait["stream"]) & (device_ops["op_id"] > wait["op_id"])]
        if len(later):
            assert later["start_us"].min() >= record_end[wait["name"]] - EPS

    # No copy engine moves bytes faster than the profile allows, and each
    # direction's engine moves one copy at a time.
    for kind, direction in (("copy_h2d", Direction.H2D), ("copy_d2h", Direction.D2H)):
        copies = device_ops[device_ops["kind"] == kind].sort_values("start_us")
        for _, c in copies.iterrows():
            floor = h100.copy_time_us(int(c["bytes"]), direction, HostMemory(c["host_memory"]))
            assert c["end_us"] - c["start_us"] >= floor * (1 - 1e-9) - EPS
        starts, ends = copies["start_us"].to_numpy(), copies["end_us"].to_numpy()
        assert (starts[1:] >= ends[:-1] - EPS).all()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 1000.0), st.floats(0.05, 1.0)), min_size=1, max_size=6))
def test_concurrent_kernels_stretch_only_past_full_share(h100, kernels):
    """Kernels on separate streams launched together: each takes at least its solo time,
    and the whole set takes at least sum(duration * share) (the compute it needs)."""

    def main(rt):
        for i, (duration, share) in enumerate(kernels):
            s = yield rt.create_stream(0, f"s{i}")
            yield rt.launch(s, f"k{i}", duration, share)
        return None

    result = run_policy(SimBackend(h100), main)
    ops = result.ops
    kernels_ops = ops[ops["kind"] == "kernel"]
    for (_, row), (duration, _share) in zip(kernels_ops.iterrows(), kernels):
        assert row["end_us"] - row["start_us"] >= duration - 1e-6
    starts = kernels_ops["start_us"]
    span = kernels_ops["end_us"].max() - starts.min()
    assert span >= sum(d * s for d, s in kernels) - 1e-6
    # Never slower than one after another: while any kernel runs, the running ones together get through
    # at least one µs of their solo durations per µs (each share <= 1), and the GPU idles only before the
    # last launch.
    assert span <= sum(d for d, _ in kernels) + (starts.max() - starts.min()) + 1e-6
    if sum(s for _, s in kernels) <= 1.0:
        # Shares that fit side by side: nobody stretches (an equal split of the GPU would stretch them).
        for (_, row), (duration, _share) in zip(kernels_ops.iterrows(), kernels):
            assert row["end_us"] - row["start_us"] == pytest.approx(duration, abs=1e-6)


def shared_gpu_end_us(kernels: list[tuple[float, float]]) -> list[float]:
    """When each kernel ends, all started together at 0: the model's rule worked phase by phase. All
    running kernels progress at one rate, min(1, 1 / sum of their shares), so they end shortest first."""
    order = sorted(range(len(kernels)), key=lambda i: kernels[i][0])
    ends = [0.0] * len(kernels)
    now_us, done_us = 0.0, 0.0  # elapsed time, and the solo µs every running kernel has done
    for k, i in enumerate(order):
        running_share = sum(kernels[j][1] for j in order[k:])
        rate = min(1.0, 1.0 / running_share)
        now_us += (kernels[i][0] - done_us) / rate
        done_us = kernels[i][0]
        ends[i] = now_us
    return ends


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.floats(1.0, 1000.0), st.floats(0.05, 1.0)), min_size=1, max_size=6))
def test_kernels_started_together_end_where_their_shares_put_them(h100, kernels):
    """Released together by one event: each ends exactly where the share rule puts it, and the set
    takes at least max(sum(share * duration), max(duration)) and at most sum(duration)."""
    gate_us = 2000.0  # longer than the launches behind it

    def main(rt):
        gate = yield rt.create_stream(0, "gate")
        yield rt.launch(gate, "gate", gate_us, 1.0)
        opened = yield rt.record(gate)
        for i, (duration, share) in enumerate(kernels):
            s = yield rt.create_stream(0, f"s{i}")
            yield rt.wait_event(s, opened)
            yield rt.launch(s, f"k{i}", duration, share)
        return None

    ops = run_policy(SimBackend(h100), main).ops
    ops = ops[ops["kind"].eq("kernel") & ops["name"].str.match(r"k\d+$")]
    ops = ops.assign(i=ops["name"].str[1:].astype(int)).sort_values("i")
    start = ops["start_us"].min()
    assert (ops["start_us"] == start).all() and start >= gate_us
    ends = (ops["end_us"] - start).tolist()
    assert ends == pytest.approx(shared_gpu_end_us(kernels), rel=1e-9, abs=1e-6)
    span = max(ends)
    assert span >= max(sum(d * s for d, s in kernels), max(d for d, _ in kernels)) - 1e-6
    assert span <= sum(d for d, _ in kernels) + 1e-6
