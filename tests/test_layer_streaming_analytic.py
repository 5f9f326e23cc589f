"""Layer-streaming policies against closed-form expectations (within 0.5%)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.backend import run_policy
from harness.runtime import Direction, HostMemory
from sim import SimBackend
from workloads.layer_streaming import WORKLOAD
from workloads.layer_streaming.inputs import LayerStreamingInputs, Segment
from workloads.layer_streaming.metrics import metrics
from workloads.layer_streaming.policies import StreamingResult

MiB = 1 << 20


def simulate(profile, segments, policy, memory_bytes=None, **params):
    definition = WORKLOAD.policies[policy]
    inputs = LayerStreamingInputs(tuple(segments), HostMemory.PINNED, 1.0, "test")
    run = run_policy(
        SimBackend(profile, device_memory_bytes=memory_bytes), definition.main, inputs, definition.params(**params)
    )
    ops = run.ops
    ops.insert(0, "run_id", "t")
    rows = {(m.metric, m.item): m.value for m in metrics(inputs, ops, run.result)}
    return rows, run.result, ops


def copy_us(profile, seg):
    return profile.copy_time_us(seg.param_bytes, Direction.H2D, HostMemory.PINNED)


segments_strategy = st.lists(st.tuples(st.integers(16, 512), st.floats(200.0, 10_000.0)), min_size=2, max_size=24).map(
    lambda rows: [Segment(i, mib * MiB, us) for i, (mib, us) in enumerate(rows)]
)


@settings(max_examples=40, deadline=None)
@given(segments_strategy)
def test_sync_makespan_is_copies_plus_compute_plus_overheads(h100, segments):
    rows, _, _ = simulate(h100, segments, "sync")
    host = h100.host
    per_segment_overhead = host.alloc_us + host.copy_launch_us + host.sync_wake_us + host.free_us
    # The run ends when the last synchronize returns (before the last free).
    expected = (
        sum(copy_us(h100, s) + s.compute_us for s in segments) + len(segments) * per_segment_overhead - host.free_us
    )
    assert rows[("makespan_us", -1)] == pytest.approx(expected, rel=0.005)


def overlap_bound(profile, segments):
    copies = [copy_us(profile, s) for s in segments]
    computes = [s.compute_us for s in segments]
    return copies[0] + sum(max(copies[i + 1], computes[i]) for i in range(len(segments) - 1)) + computes[-1]


@settings(max_examples=40, deadline=None)
@given(segments_strategy)
def test_prefetch_stays_between_the_overlap_bound_and_bound_plus_host_costs(h100, segments):
    rows, result, _ = simulate(h100, segments, "prefetch")
    assert result == StreamingResult(fallbacks=0, prefetched=len(segments) - 1)
    host = h100.host
    # Host time between one segment's end and the next one's start, at most:
    # wake from the sync, free, wait_event, launch, and the next prefetch's alloc, copy launch, record.
    per_segment = (
        host.sync_wake_us
        + host.free_us
        + host.wait_us
        + host.launch_us
        + host.alloc_us
        + host.copy_launch_us
        + host.record_us
    )
    bound = overlap_bound(h100, segments)
    makespan = rows[("makespan_us", -1)]
    assert bound <= makespan <= bound + host.alloc_us + host.copy_launch_us + len(segments) * per_segment


@pytest.mark.parametrize(
    "mib, compute_us",
    [(64, 8000.0), (256, 5000.0), (512, 9000.0), (192, 3600.0)],  # compute-bound, transfer-bound, balanced
)
def test_prefetch_is_within_half_a_percent_of_the_overlap_bound(h100, mib, compute_us):
    """With segments of milliseconds the ~15-30 µs of host work per segment is under 0.5%."""
    segments = [Segment(i, mib * MiB, compute_us * (1 + 0.1 * (i % 3))) for i in range(16)]
    rows, _, _ = simulate(h100, segments, "prefetch")
    assert rows[("makespan_us", -1)] == pytest.approx(overlap_bound(h100, segments), rel=0.005)


def test_resident_is_compute_plus_per_segment_sync(h100):
    segments = [Segment(i, 64 * MiB, 1000.0) for i in range(10)]
    rows, _, _ = simulate(h100, segments, "resident")
    host = h100.host
    expected = 10 * (1000.0 + host.launch_us + host.sync_wake_us)
    assert rows[("makespan_us", -1)] == pytest.approx(expected, rel=1e-9)
    assert rows[("h2d_busy_frac", -1)] == 0.0


def test_prefetch_overlaps_and_sync_does_not(h100):
    segments = [Segment(i, 256 * MiB, 4000.0) for i in range(8)]
    sync_rows, _, _ = simulate(h100, segments, "sync")
    pre_rows, _, _ = simulate(h100, segments, "prefetch")
    assert sync_rows[("copy_compute_overlap_us", -1)] == 0.0
    assert pre_rows[("overlap_frac", -1)] > 0.8
    assert pre_rows[("makespan_us", -1)] < 0.65 * sync_rows[("makespan_us", -1)]


def test_prefetch_falls_back_to_sync_when_the_pending_buffer_does_not_fit(h100):
    # Room for one 512 MiB segment plus a bit: every pending allocation fails.
    segments = [Segment(i, 512 * MiB, 5000.0) for i in range(6)]
    rows, result, ops = simulate(h100, segments, "prefetch", memory_bytes=700 * MiB)
    assert result == StreamingResult(fallbacks=5, prefetched=0)
    sync_rows, _, _ = simulate(h100, segments, "sync", memory_bytes=700 * MiB)
    assert rows[("makespan_us", -1)] == pytest.approx(sync_rows[("makespan_us", -1)], rel=0.005)
    # Every copy went on the compute stream: nothing overlapped.
    assert set(ops[ops["kind"] == "copy_h2d"]["stream"]) == {"compute"}


def test_deeper_prefetch_absorbs_uneven_compute_until_the_budget_stops_it(h100):
    # Equal copies (~4.9 ms), compute alternating 9 ms / 1 ms: depth 2 copies two
    # segments during a long compute; depth 1 leaves the engine idle half the time.
    segments = [Segment(i, 256 * MiB, 9000.0 if i % 2 == 0 else 1000.0) for i in range(12)]
    makespan = {}
    for budget in (None, 600 * MiB):  # 600 MiB: room for the current and one pending buffer only
        for depth in (1, 2, 4):
            rows, result, _ = simulate(h100, segments, "prefetch", memory_bytes=budget, depth=depth)
            assert result.fallbacks == 0
            makespan[(budget, depth)] = rows[("makespan_us", -1)]
    assert makespan[(None, 2)] < 0.85 * makespan[(None, 1)]
    assert makespan[(None, 4)] <= makespan[(None, 2)]
    assert makespan[(600 * MiB, 4)] == pytest.approx(makespan[(None, 1)], rel=1e-9)
    assert makespan[(600 * MiB, 2)] == pytest.approx(makespan[(None, 1)], rel=1e-9)


def test_segment_times_sum_to_last_compute_end(h100):
    segments = [Segment(i, (i + 1) * 32 * MiB, 300.0 * (i + 1)) for i in range(6)]
    rows, _, ops = simulate(h100, segments, "prefetch")
    per_segment = [rows[("segment_time_us", i)] for i in range(6)]
    last_kernel_end = ops[ops["name"] == "segment[5]"]["end_us"].iloc[0]
    assert sum(per_segment) == pytest.approx(last_kernel_end)


def test_overlap_of_ops_that_only_touch_is_exactly_zero_and_matches_the_union_identity():
    import numpy as np
    import pandas as pd

    from harness.timeline import overlap_us, union_us

    rng = np.random.default_rng(7)
    edges = np.cumsum(rng.uniform(0.1, 5000.0, 41)) / 3.0  # non-representable sums, as op times are
    a = pd.DataFrame({"start_us": edges[0:40:2], "end_us": edges[1:41:2]})  # alternate stretches:
    b = pd.DataFrame({"start_us": edges[1:40:2], "end_us": edges[2:41:2]})  # b runs exactly between a's ops
    assert overlap_us(a, b) == 0.0
    shifted = b.assign(start_us=b["start_us"] - 1.0)  # now each b op overlaps the a op before it by 1 µs
    assert overlap_us(a, shifted) == pytest.approx(20.0)
    both = pd.concat([a, shifted])
    assert overlap_us(a, shifted) == pytest.approx(union_us(a) + union_us(shifted) - union_us(both))
