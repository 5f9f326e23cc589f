"""Exact compute-share cases of the simulator, through the public runtime.

The model (sim/fluid.py): concurrent kernels each occupy their declared share of the GPU; while the
shares of the running kernels sum to at most 1 every kernel runs at its solo speed, past 1 they all
stretch by the sum. Every figure below is worked out by hand from that rule; a simulator that split
the GPU equally between concurrent kernels, ignoring their shares, fails all but the share-1.0 cases.
"""

from __future__ import annotations

import pytest

from harness.backend import run_policy
from sim import SimBackend

GATE_US = 1000.0  # longer than all the launches behind it: every gated kernel starts when it ends


def gated_kernels(kernels: list[tuple[float, float]]):
    """A policy: one kernel (duration µs, share) per stream, all held by one event so they start together."""

    def main(rt):
        gate = yield rt.create_stream(0, "gate")
        yield rt.launch(gate, "gate", GATE_US, 1.0)
        opened = yield rt.record(gate)
        streams = []
        for i, (duration_us, share) in enumerate(kernels):
            stream = yield rt.create_stream(0, f"s{i}")
            yield rt.wait_event(stream, opened)
            yield rt.launch(stream, f"k{i}", duration_us, share)
            streams.append(stream)
        for stream in streams:
            yield rt.sync_stream(stream)

    return main


def kernel_times(h100, policy) -> tuple[list[float], list[float]]:
    """The (start, end) µs of the kernels named k0, k1, ... in that order."""
    ops = run_policy(SimBackend(h100), policy).ops
    kernels = ops[ops["kind"].eq("kernel") & ops["name"].str.match(r"k\d+$")]
    kernels = kernels.assign(i=kernels["name"].str[1:].astype(int)).sort_values("i")
    return kernels["start_us"].tolist(), kernels["end_us"].tolist()


@pytest.mark.parametrize(
    ("kernels", "expected_us"),
    [
        # two full-GPU kernels share it: each at half speed, both end at 2 x 100
        ([(100.0, 1.0), (100.0, 1.0)], [200.0, 200.0]),
        # two half-GPU kernels fit side by side: each at its solo speed
        ([(100.0, 0.5), (100.0, 0.5)], [100.0, 100.0]),
        # 0.6 + 0.6 = 1.2: both stretch 1.2x
        ([(100.0, 0.6), (100.0, 0.6)], [120.0, 120.0]),
        # three at 0.3: 0.9 fits, none stretches
        ([(100.0, 0.3), (100.0, 0.3), (100.0, 0.3)], [100.0, 100.0, 100.0]),
        # 0.5 + 1.0 = 1.5: both at 2/3 speed until the 50 µs one ends at 75, then the other alone
        # (50 of its 100 µs done) ends at 75 + 50 = 125
        ([(100.0, 0.5), (50.0, 1.0)], [125.0, 75.0]),
        # 0.4 + 0.4 + 0.4 = 1.2: all at 1/1.2 until the 60 µs one ends at 72; then 0.8 fits: the 90 µs
        # one has 30 left and ends at 102, the 120 µs one has 60 left and ends at 132
        ([(60.0, 0.4), (90.0, 0.4), (120.0, 0.4)], [72.0, 102.0, 132.0]),
    ],
    ids=["1.0+1.0", "0.5+0.5", "0.6+0.6", "0.3x3", "0.5+1.0", "0.4x3-staggered-ends"],
)
def test_concurrent_kernels_end_when_their_shares_say(h100, kernels, expected_us):
    starts, ends = kernel_times(h100, gated_kernels(kernels))
    assert starts == pytest.approx([starts[0]] * len(kernels), abs=1e-9)  # all released by the gate together
    assert starts[0] >= GATE_US
    assert [end - starts[0] for end in ends] == pytest.approx(expected_us, abs=1e-6)


def test_a_kernel_alone_runs_at_its_solo_speed_whatever_its_share(h100):
    for share in (0.05, 0.5, 1.0):
        starts, ends = kernel_times(h100, gated_kernels([(100.0, share)]))
        assert ends[0] - starts[0] == pytest.approx(100.0, abs=1e-9)


def test_two_full_kernels_launched_in_turn_finish_the_pair_at_twice_the_duration(h100):
    """No gate: the second starts one launch later (at b), while the first (started at a) runs alone.
    The first ends at a + 2d - (b - a), the second at a + 2d: together they never outrun one GPU."""

    def main(rt):
        streams = []
        for i in range(2):
            streams.append((yield rt.create_stream(0, f"s{i}")))
            yield rt.launch(streams[i], f"k{i}", 100.0, 1.0)
        for stream in streams:
            yield rt.sync_stream(stream)

    (a, b), ends = kernel_times(h100, main)
    assert 0.0 < b - a < 100.0  # the second launch overlaps the first kernel
    assert ends == pytest.approx([a + 200.0 - (b - a), a + 200.0], abs=1e-6)
