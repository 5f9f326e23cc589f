"""A kernel queued behind a host-link copy or a blocked event wait starts the profile's hand-off latency
after it (``[device] kernel_after_copy_us``, ``kernel_after_event_us``), on the full model and the fast paths."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import ops_frame
from harness.paths import SPECS_DIR
from harness.profile import Profile, load_profile
from harness.runtime import Direction, HostMemory
from harness.spec import load_spec
from sim import SimBackend

AFTER_COPY_US, AFTER_EVENT_US = 6.3, 12.7


def handoff_profile(after_copy: float = AFTER_COPY_US, after_event: float = AFTER_EVENT_US) -> Profile:
    base = load_profile("h100-sxm-pcie5")
    device = base.device.model_copy(update={"kernel_after_copy_us": after_copy, "kernel_after_event_us": after_event})
    return Profile(base.figures.model_copy(update={"device": device}))


def _streaming(rt):
    """sync's segment, then prefetch's: a copy and its kernel on one stream; a side copy, its event, a wait."""
    compute = yield rt.create_stream(0, "compute")
    side = yield rt.create_stream(0, "side")
    yield rt.copy(compute, 16 << 20, Direction.H2D, HostMemory.PINNED, "same-stream")
    yield rt.launch(compute, "after-copy", 100.0, 1.0)
    yield rt.copy(side, 16 << 20, Direction.H2D, HostMemory.PINNED, "side")
    ready = yield rt.record(side)
    yield rt.wait_event(compute, ready)
    yield rt.launch(compute, "after-event", 100.0, 1.0)
    yield rt.launch(compute, "after-kernel", 100.0, 1.0)
    yield rt.sync_stream(compute)
    yield rt.host_work(50.0, "idle")
    yield rt.copy(compute, 4 << 20, Direction.H2D, HostMemory.PINNED, "done-long-ago")
    yield rt.sync_stream(compute)
    yield rt.host_work(50.0, "idle")
    yield rt.launch(compute, "issued-late", 100.0, 1.0)  # its copy ended 50 µs before: starts at its issue
    yield rt.sync_stream(compute)


def _rows(profile: Profile, fast: bool):
    ops = ops_frame(SimBackend(profile, 1, None, 0, fast=fast).run(_streaming).ops)
    return {row.name: row for row in ops.itertuples()}


@pytest.mark.parametrize("fast", [True, False])
def test_a_kernel_released_by_a_copy_or_an_event_starts_the_handoff_later(fast):
    rows = _rows(handoff_profile(), fast)
    assert rows["after-copy"].start_us == pytest.approx(rows["same-stream"].end_us + AFTER_COPY_US)
    assert rows["after-event"].start_us == pytest.approx(rows["side"].end_us + AFTER_EVENT_US)
    assert rows["after-kernel"].start_us == rows["after-event"].end_us  # back to back: no hand-off
    late = rows["issued-late"]
    assert late.start_us == pytest.approx(late.issue_us + handoff_profile().host.launch_us)


def test_without_the_figures_a_released_kernel_starts_at_once():
    rows = _rows(handoff_profile(0.0, 0.0), True)
    assert rows["after-copy"].start_us == rows["same-stream"].end_us
    assert rows["after-event"].start_us == rows["side"].end_us


def test_profiles_without_the_figures_read_as_zero():
    device = load_profile("h100-sxm-pcie5").device
    assert device.kernel_after_copy_us == 0.0 and device.kernel_after_event_us == 0.0


def _both_ways(profile: Profile, main, *args, memory_bytes: int | None = None):
    """Runs ``main`` with and without the fast paths; asserts the same ops; returns the fast backend and its run."""
    fast = SimBackend(profile, 1, memory_bytes, 0)
    fast_run = fast.run(main, *args)
    reference = SimBackend(profile, 1, memory_bytes, 0, fast=False).run(main, *args)
    assert ops_frame(fast_run.ops).equals(ops_frame(reference.ops))
    assert fast_run.main_end_us == reference.main_end_us
    return fast, fast_run


def test_the_timeline_times_the_handoff_itself():
    backend, _ = _both_ways(handoff_profile(), _streaming)
    assert backend.timeline_gave_up is None


def _segments(rt, steps):
    """Copies, kernels, records and waits on two streams in the order drawn (all on one host thread)."""
    streams = [(yield rt.create_stream(0, "a")), (yield rt.create_stream(0, "b"))]
    events = []
    for what, s, x in steps:
        stream = streams[s]
        if what == "copy":
            yield rt.copy(stream, int(x) << 16, Direction.H2D, HostMemory.PINNED, "c")
        elif what == "launch":
            yield rt.launch(stream, "k", x, 1.0)
        elif what == "record":
            events.append((yield rt.record(stream)))
        elif what == "wait" and events:
            yield rt.wait_event(stream, events[-1])
        elif what == "sync":
            yield rt.sync_stream(stream)
        else:
            yield rt.host_work(x, "h")
    for stream in streams:
        yield rt.sync_stream(stream)


STEP = st.tuples(
    st.sampled_from(["copy", "launch", "record", "wait", "sync", "host"]),
    st.integers(0, 1),
    st.floats(0.5, 400.0, allow_nan=False),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(STEP, max_size=30),
    after_copy=st.sampled_from([0.0, AFTER_COPY_US]),
    after_event=st.sampled_from([0.0, AFTER_EVENT_US]),
)
def test_random_streaming_same_with_and_without_fast_paths(steps, after_copy, after_event):
    _both_ways(handoff_profile(after_copy, after_event), _segments, steps)


@pytest.mark.parametrize("spec", ["fidelity_short_compute", "fidelity_balanced"])
def test_layer_streaming_same_with_and_without_fast_paths_and_slower_by_the_handoffs(spec):
    """Each of sync's segments pays the copy hand-off once: 32 segments, 32 x 6.3 µs more."""
    loaded = load_spec(SPECS_DIR / f"{spec}.toml")
    inputs = loaded.workload.prepare(loaded.prepare_context())
    sync = next(run for run in loaded.policies if run.label == "sync")
    ends = {}
    for after in (0.0, AFTER_COPY_US):
        profile = handoff_profile(after, AFTER_EVENT_US)
        memory = loaded.device_memory_bytes
        backend, run = _both_ways(profile, sync.policy.main, inputs, sync.params, memory_bytes=memory)
        assert backend.timeline_gave_up is None
        ends[after] = run.main_end_us
    assert ends[AFTER_COPY_US] - ends[0.0] == pytest.approx(len(inputs.segments) * AFTER_COPY_US)


@pytest.mark.parametrize("spec", ["recorded_layers_prefetch", "recorded_layers_sync"])
def test_recorded_programs_same_with_and_without_fast_paths_under_the_handoff(spec):
    """Program commands (sim.program's loop) apply the hand-off as the timeline and the full model do."""
    from harness.runner import run_spec

    loaded = load_spec(SPECS_DIR / f"{spec}.toml")
    profile = handoff_profile()
    devices = loaded.workload.devices(loaded.workload_params)
    ops = {}
    for fast in (True, False):
        results = run_spec(
            loaded, lambda s, rep: SimBackend(profile, devices, s.device_memory_bytes, seed=rep, fast=fast)
        )
        ops[fast] = results.tables["ops"].to_pandas()
    assert ops[True].equals(ops[False])
    plain_profile = handoff_profile(0.0, 0.0)
    plain = run_spec(loaded, lambda s, rep: SimBackend(plain_profile, devices, s.device_memory_bytes, seed=rep))
    assert not plain.tables["ops"].to_pandas().equals(ops[True])  # the recording has kernels behind copies


def test_the_calibration_reads_the_figures_back_from_a_simulated_run():
    """replay.handoff_calibration's policy on the simulator gives back the profile's own figures."""
    from harness.backend import run_policy
    from replay.handoff_calibration import ROUNDS, handoff_figures, handoff_policy

    for after_copy, after_event in ((AFTER_COPY_US, AFTER_EVENT_US), (0.0, 0.0)):
        run = run_policy(SimBackend(handoff_profile(after_copy, after_event), 1, None, 0), handoff_policy)
        assert handoff_figures(run.ops) == {
            "kernel_after_copy_us": pytest.approx(after_copy),
            "kernel_after_event_us": pytest.approx(after_event),
        }
    with pytest.raises(ValueError, match="not the policy's rounds"):
        handoff_figures(run.ops[run.ops["name"] != "cal-handoff:copy"])
    assert ROUNDS >= 9


def _both_ways_on(profile: Profile, devices: int, main, *args) -> None:
    fast = SimBackend(profile, devices, None, 0).run(main, *args)
    reference = SimBackend(profile, devices, None, 0, fast=False).run(main, *args)
    assert ops_frame(fast.ops).equals(ops_frame(reference.ops))
    assert fast.main_end_us == reference.main_end_us and fast.result == reference.result


def _fast_path_programs():
    from test_sim_fast_paths import PROGRAM_WITH_SERIES, SOLO_STEP, _program_main, _single_thread_main

    return PROGRAM_WITH_SERIES, SOLO_STEP, _program_main, _single_thread_main


_THREADS, _SOLO, _PROGRAM_MAIN, _SINGLE_MAIN = _fast_path_programs()


@settings(max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), streams_per_device=st.integers(1, 3), devices=st.integers(1, 2), single=st.booleans())
def test_fast_path_programs_same_both_ways_under_the_handoff(data, streams_per_device, devices, single):
    """tests/test_sim_fast_paths.py's random programs (several threads, queues, launch_sync, series; or one
    thread on the timeline) under a profile with both hand-offs: the fast paths give the full model's ops."""
    profile = handoff_profile()
    if single:
        steps = data.draw(st.lists(_SOLO, max_size=40), label="steps")
        _both_ways_on(profile, devices, _SINGLE_MAIN, steps, streams_per_device, devices)
    else:
        threads = data.draw(_THREADS, label="threads")
        _both_ways_on(profile, devices, _PROGRAM_MAIN, threads, streams_per_device, devices)
