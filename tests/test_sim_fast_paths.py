"""The simulator's fast paths against its full SimPy model: identical op timelines, metrics and tables.

``SimBackend(..., fast=False)`` runs every op through the SimPy model (the reference);
the default takes the fast paths of ``sim.engine`` (clock moves without the event queue,
a kernel launched on an idle stream fused with the next sync). Each test runs the same
thing both ways and asserts the results are equal to the last bit: random runtime
programs that contend on purpose, random workloads of every workload kind (a bundled
spec of that kind, resized and reseeded), and the recorded workload's ``as_recorded``
over every committed recording in ``traces/recorded/``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import ops_frame
from harness.paths import SPECS_DIR
from harness.profile import load_profile
from harness.runner import run_spec
from harness.runtime import Direction, HostMemory
from harness.spec import LoadedSpec, load_spec
from sim import SimBackend

SETTINGS = settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _results(loaded: LoadedSpec, fast: bool) -> dict:
    devices = loaded.workload.devices(loaded.workload_params)

    def make(spec: LoadedSpec, repetition: int) -> SimBackend:
        return SimBackend(spec.profile, devices, spec.device_memory_bytes, seed=spec.spec.seed + repetition, fast=fast)

    results = run_spec(loaded, make)
    tables = {name: table for name, table in results.tables.items() if name != "runs"}
    runs = results.runs[["run_id", "status", "error", "n_ops"]]
    return {"runs": runs.to_dict("records"), **{name: t.to_pandas() for name, t in tables.items()}}


def assert_same_both_ways(loaded: LoadedSpec) -> None:
    fast, reference = _results(loaded, True), _results(loaded, False)
    assert fast["runs"] == reference["runs"]
    assert all(run["status"] == "ok" for run in fast["runs"]), fast["runs"]
    assert fast.keys() == reference.keys()
    for name in fast:
        if name != "runs":
            assert fast[name].equals(reference[name]), f"table {name!r} differs between fast paths and the full model"


def _reseeded(loaded: LoadedSpec, seed: int) -> LoadedSpec:
    return dataclasses.replace(loaded, spec=loaded.spec.model_copy(update={"seed": seed}))


# one bundled spec per workload kind, with the [workload] field that sizes it
KINDS = {
    "layer_streaming": (["bench_layer_streaming", "layer_streaming_budget"], "segments", 1, 30),
    "continuous_batching": (
        ["batching_c1_window", "batching_c4_prefill", "batching_c4_singleton", "batching_azure_conv"],
        "requests",
        1,
        40,
    ),
    "kv_backup": (["kv_backup_single_gpu", "kv_backup_h20", "kv_backup_per_layer"], "steps", 2, 16),
    "offload_coordinator": (["offload_mozilla"], None, 0, 0),
    "pipeline_forwarding": (["pipeline_two_hosts", "pipeline_2gpu_fidelity"], "tokens", 2, 10),
}


@pytest.mark.parametrize("kind", sorted(KINDS))
@SETTINGS
@given(data=st.data(), seed=st.integers(0, 10_000))
def test_every_workload_kind_same_with_and_without_fast_paths(kind: str, data, seed: int) -> None:
    specs, field, lo, hi = KINDS[kind]
    name = data.draw(st.sampled_from(specs), label="spec")
    overrides = {field: data.draw(st.integers(lo, hi), label=field)} if field else {}
    loaded = load_spec(SPECS_DIR / f"{name}.toml", overrides)
    assert loaded.workload.name == kind
    assert_same_both_ways(_reseeded(loaded, seed))


@pytest.mark.parametrize("spec", sorted(p.name for p in SPECS_DIR.glob("recorded_*.toml")))
def test_as_recorded_on_every_committed_recording(spec: str) -> None:
    loaded = load_spec(SPECS_DIR / spec)
    assert loaded.workload.name == "recorded"
    assert_same_both_ways(loaded)


def test_every_committed_recording_has_a_spec() -> None:
    recordings = {p.name for p in (SPECS_DIR.parent / "recorded").glob("*.parquet") if p.stem != "whatif_fidelity"}
    named = {
        Path(line.split("=", 1)[1].strip().strip('"')).name
        for spec in SPECS_DIR.glob("recorded_*.toml")
        for line in spec.read_text().splitlines()
        if line.startswith("trace")
    }
    assert recordings <= named


# ----------------------------------------------------------------------------- random runtime programs

STEP = st.one_of(
    st.tuples(
        st.just("launch"), st.integers(0, 2), st.sampled_from([0.0, 1e-7, 5.0, 40.0, 333.3]), st.floats(0.1, 1.0)
    ),
    st.tuples(
        st.just("copy"),
        st.integers(0, 2),
        st.sampled_from([0, 4096, 1 << 20, 3 << 22]),
        st.sampled_from(["h2d", "d2h", "d2d"]),
        st.booleans(),
    ),
    st.tuples(st.just("record_wait"), st.integers(0, 2), st.integers(0, 2)),
    st.tuples(st.just("sync"), st.integers(0, 2)),
    st.tuples(st.just("host"), st.sampled_from([0.0, 2.5, 50.0, 400.0])),
    st.tuples(
        st.just("put"),
    ),
    st.tuples(st.just("take_give")),  # take the queue's token (waiting while another thread holds it), give it back
)
PROGRAM = st.lists(st.lists(STEP, max_size=25), min_size=1, max_size=3)
LAUNCH_SYNC = st.tuples(
    st.just("launch_sync"), st.integers(0, 2), st.sampled_from([0.0, 1e-7, 5.0, 40.0, 333.3]), st.floats(0.1, 1.0)
)
PROGRAM_WITH_LAUNCH_SYNC = st.lists(st.lists(st.one_of(STEP, LAUNCH_SYNC), max_size=25), min_size=1, max_size=3)
# launch_sync_series: stream, durations, share, stop after that many steps (None: never), stop once a put was made
SERIES = st.tuples(
    st.just("series"),
    st.integers(0, 2),
    st.lists(st.sampled_from([0.0, 1e-7, 5.0, 40.0, 333.3]), max_size=6),
    st.floats(0.1, 1.0),
    st.sampled_from([None, 1, 3]),
    st.booleans(),
)
PROGRAM_WITH_SERIES = st.lists(st.lists(st.one_of(STEP, LAUNCH_SYNC, SERIES), max_size=25), min_size=1, max_size=3)


def _until(stop_after: int | None, on_put: bool, mailbox: list):
    """A series' stop condition: after ``stop_after`` steps, or once another put is in ``mailbox``; None: neither."""
    if stop_after is None and not on_put:
        return None
    steps, puts = [0], len(mailbox)

    def until() -> bool:
        steps[0] += 1
        return (stop_after is not None and steps[0] >= stop_after) or (on_put and len(mailbox) > puts)

    return until


def _series(rt, stream, step, mailbox):
    """A series step, as the one command (``by_hand``: False) or as the launch_sync loop it stands for."""
    _, _, durations, share, stop_after, on_put, by_hand = step
    until = _until(stop_after, on_put, mailbox)
    if by_hand:
        times = []
        for duration in durations:
            times.append((yield rt.launch_sync(stream, "k", duration, share)))
            if until is not None and until():
                break
    else:
        times = yield rt.launch_sync_series(stream, "k", iter(durations), share, until=until)
    assert len(times) <= len(durations) and times == sorted(times)
    if times:
        assert times[-1] == (yield rt.now())
    else:
        yield rt.now()
    return times


def _program_main(rt, threads, streams_per_device, devices):
    mailbox: list[int] = []  # every put, in the order made (what a series may stop on)
    taken: list[tuple[int, int, float]] = []  # every get: the getter, the item it got, when it got it

    def worker(rt, steps, streams, queue, index):
        for step in steps:
            what = step[0]
            if what == "launch":
                yield rt.launch(streams[step[1] % len(streams)], "k", step[2], step[3])
                if index % 2 == 0:  # the batching server's pattern: launch, then sync the same stream
                    yield rt.sync_stream(streams[step[1] % len(streams)])
            elif what == "launch_sync":  # the same pattern as one command; it returns when the sync did
                woke = yield rt.launch_sync(streams[step[1] % len(streams)], "k", step[2], step[3])
                assert woke == (yield rt.now())
            elif what == "launch_sync_by_hand":  # what launch_sync stands for, call by call
                yield rt.launch(streams[step[1] % len(streams)], "k", step[2], step[3])
                yield rt.sync_stream(streams[step[1] % len(streams)])
                yield rt.now()
            elif what == "copy":
                memory = HostMemory.PAGEABLE if step[4] else HostMemory.PINNED
                yield rt.copy(streams[step[1] % len(streams)], step[2], Direction(step[3]), memory, "c")
            elif what == "record_wait":
                event = yield rt.record(streams[step[1] % len(streams)])
                yield rt.wait_event(streams[step[2] % len(streams)], event)
            elif what == "sync":
                yield rt.sync_stream(streams[step[1] % len(streams)])
            elif what == "host":
                yield rt.host_work(step[1], "h")
            elif what == "series":
                yield from _series(rt, streams[step[1] % len(streams)], (*step, False)[:7], mailbox)
            elif what == "take_give":
                item = yield rt.get(queue)
                taken.append((index, item, (yield rt.now())))
                yield rt.put(queue, item)
            else:
                mailbox.append(index)
                yield rt.put(queue, index)
                item = yield rt.get(queue)
                taken.append((index, item, (yield rt.now())))
        for stream in streams:
            yield rt.sync_stream(stream)

    streams = []
    for d in range(devices):
        for s in range(streams_per_device):
            streams.append((yield rt.create_stream(d, f"s{d}.{s}")))
    queue = yield rt.make_queue(2, "q")
    yield rt.put(queue, -1)  # the token "take_give" steps pass around (each thread's steps leave as many items)
    spawned = []
    for i, steps in enumerate(threads[1:], start=1):
        spawned.append((yield rt.spawn(worker, steps, streams, queue, i, name=f"t{i}")))
    yield from worker(rt, threads[0], streams, queue, 0)
    for thread in spawned:
        yield rt.join(thread)
    return taken  # the handoffs, in the order they happened (both ways must agree)


def _both_ways(profile: str, devices: int, main, *args):
    prof = load_profile(profile)
    fast = SimBackend(prof, devices, None, 0)
    fast_outcome = fast.run(main, *args)
    reference = SimBackend(prof, devices, None, 0, fast=False).run(main, *args)
    # both tables in op_id order, index 0..n-1 (the timeline logs rows in issue order, the full model as they finish)
    assert ops_frame(fast_outcome.ops).equals(ops_frame(reference.ops))
    assert fast_outcome.main_end_us == reference.main_end_us
    assert fast_outcome.result == reference.result
    return fast


@pytest.mark.parametrize(
    "program",
    [PROGRAM, PROGRAM_WITH_LAUNCH_SYNC, PROGRAM_WITH_SERIES],
    ids=["plain", "with_launch_sync", "with_series"],
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    streams_per_device=st.integers(1, 3),
    devices=st.integers(1, 2),
    profile=st.sampled_from(["h100-sxm-pcie5", "h200-measured"]),
)
def test_random_programs_same_with_and_without_fast_paths(program, data, streams_per_device, devices, profile) -> None:
    threads = data.draw(program, label="threads")
    _both_ways(profile, devices, _program_main, threads, streams_per_device, devices)


@pytest.mark.parametrize(
    "program", [PROGRAM_WITH_LAUNCH_SYNC, PROGRAM_WITH_SERIES], ids=["with_launch_sync", "with_series"]
)
@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    data=st.data(),
    copies=st.integers(2, 3),
    streams_per_device=st.integers(1, 3),
    profile=st.sampled_from(["h100-sxm-pcie5", "h200-measured"]),
)
def test_threads_running_one_program_same_with_and_without_fast_paths(
    program, data, copies, streams_per_device, profile
) -> None:
    """Threads that run the same steps do them at the same instants: every tie the event order settles
    (two wake-ups due at once, a launch while another thread's event is due, ops queued behind a kernel
    its own thread started) is met, and the fast paths must settle it as the full model does."""
    steps = data.draw(program, label="threads")[0]
    _both_ways(profile, 1, _program_main, [steps] * copies, streams_per_device, 1)


def _as_separate_calls(step):
    """A launch_sync step as the three calls it stands for; any other step as it is."""
    return [("launch_sync_by_hand", *step[1:])] if step[0] == "launch_sync" else [step]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(threads=PROGRAM_WITH_LAUNCH_SYNC, streams_per_device=st.integers(1, 2), fast=st.booleans())
def test_launch_sync_is_a_launch_a_sync_and_a_now(threads, streams_per_device, fast) -> None:
    """``launch_sync`` records the very ops, at the very times, of launch + sync_stream + now."""
    prof = load_profile("h100-sxm-pcie5")
    one = SimBackend(prof, 1, None, 0, fast=fast).run(_program_main, threads, streams_per_device, 1)
    by_hand = [[s for step in steps for s in _as_separate_calls(step)] for steps in threads]
    three = SimBackend(prof, 1, None, 0, fast=fast).run(_program_main, by_hand, streams_per_device, 1)
    assert ops_frame(one.ops).equals(ops_frame(three.ops))
    assert one.main_end_us == three.main_end_us


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(threads=PROGRAM_WITH_SERIES, streams_per_device=st.integers(1, 2), fast=st.booleans())
def test_a_series_is_its_launch_syncs_one_by_one(threads, streams_per_device, fast) -> None:
    """``launch_sync_series`` records the very ops, at the very times, and stops at the very step, of a loop of
    ``launch_sync`` that checks the stop condition after each; other threads' puts stop it midway."""
    prof = load_profile("h100-sxm-pcie5")
    one = SimBackend(prof, 1, None, 0, fast=fast).run(_program_main, threads, streams_per_device, 1)
    by_hand = [[(*step, True) if step[0] == "series" else step for step in steps] for steps in threads]
    loop = SimBackend(prof, 1, None, 0, fast=fast).run(_program_main, by_hand, streams_per_device, 1)
    assert ops_frame(one.ops).equals(ops_frame(loop.ops))
    assert one.main_end_us == loop.main_end_us


def test_a_series_stops_on_a_put_made_while_it_runs() -> None:
    """A series watching the mailbox stops at the first step whose sync returns after another thread's put."""
    threads = [[("series", 0, [333.3] * 6, 1.0, None, True)], [("host", 400.0), ("put",)]]
    for fast in (True, False):
        outcome = SimBackend(load_profile("h100-sxm-pcie5"), 1, None, 0, fast=fast).run(_program_main, threads, 1, 1)
        kernels = ops_frame(outcome.ops).query("kind == 'kernel'")
        assert len(kernels) == 2  # the put comes at ~400 µs, during the second step
        assert kernels.end_us.iloc[0] < 400.0 < kernels.end_us.iloc[1]


@pytest.mark.parametrize(
    ("durations", "bad"),
    [
        (lambda: iter([5.0, -1.0]), "-1.0"),  # an iterator: checked step by step, as the backend takes them
        (lambda: [5.0, 3, float("nan")], "nan"),  # a list: checked when the command is built
        (lambda: (5.0, -2.0), "-2.0"),
    ],
)
def test_a_series_rejects_a_bad_duration_naming_its_step(durations, bad) -> None:
    ran = []

    def main(rt):
        stream = yield rt.create_stream(0, "s")
        command = rt.launch_sync_series(stream, "decode", durations())
        ran.append(command)
        yield command

    with pytest.raises(ValueError, match=rf"kernel 'decode', step \d of a series: duration_us must be >= 0, got {bad}"):
        SimBackend(load_profile("h100-sxm-pcie5"), 1, None, 0).run(main)
    assert len(ran) == (1 if bad == "-1.0" else 0)  # a list or tuple fails at the call that made it


def test_fast_paths_take_the_batching_steps() -> None:
    """The batching server's launch + sync steps run without SimPy events (the point of the fast path)."""
    loaded = load_spec(SPECS_DIR / "batching_c1_window.toml", {"requests": 20})
    inputs = loaded.workload.prepare(loaded.prepare_context())
    counts = []
    for fast in (True, False):
        backend = SimBackend(loaded.profile, 1, None, 0, fast=fast)
        env = backend.env
        steps = 0
        step = env.step

        def counting_step(step=step) -> None:
            nonlocal steps
            steps += 1
            step()

        env.step = counting_step
        run = loaded.policies[0]
        backend.run(run.policy.main, inputs, run.params)
        counts.append(steps)
    assert counts[0] * 5 < counts[1]


# ----------------------------------------------------------------------------- the timeline executor (sim.timeline)

# one host thread, no queues: the timeline's domain
SOLO_STEP = st.one_of(STEP.filter(lambda step: step[0] not in ("put", "take_give")), LAUNCH_SYNC, SERIES)


def _single_thread_main(rt, steps, streams_per_device, devices):
    streams = []
    for d in range(devices):
        for s in range(streams_per_device):
            streams.append((yield rt.create_stream(d, f"s{d}.{s}")))
    for step in steps:
        what = step[0]
        stream = streams[step[1] % len(streams)] if what != "host" else None
        if what == "launch":
            yield rt.launch(stream, "k", step[2], step[3])
        elif what == "launch_sync":
            woke = yield rt.launch_sync(stream, "k", step[2], step[3])
            assert woke == (yield rt.now())
        elif what == "copy":
            memory = HostMemory.PAGEABLE if step[4] else HostMemory.PINNED
            yield rt.copy(stream, step[2], Direction(step[3]), memory, "c")
        elif what == "record_wait":
            event = yield rt.record(stream)
            yield rt.wait_event(streams[step[2] % len(streams)], event)
            if (yield rt.query_event(event)):
                yield rt.host_work(1.0, "saw_it_done")
        elif what == "sync":
            yield rt.sync_stream(stream)
        elif what == "series":
            yield from _series(rt, stream, (*step, False), [])
        else:
            yield rt.host_work(step[1], "h")
    for stream in streams:
        yield rt.sync_stream(stream)
    return (yield rt.now())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    steps=st.lists(SOLO_STEP, max_size=40),
    streams_per_device=st.integers(1, 3),
    devices=st.integers(1, 2),
    profile=st.sampled_from(["h100-sxm-pcie5", "h200-measured"]),
)
def test_random_single_thread_programs_same_on_the_timeline(steps, streams_per_device, devices, profile) -> None:
    """Whether the timeline executor times the run or gives up midway, the ops are the full model's."""
    _both_ways(profile, devices, _single_thread_main, steps, streams_per_device, devices)


def test_the_timeline_times_uncontended_runs_itself() -> None:
    """Copies on a side stream, kernels on another, waits between them: no contention, so no event model."""
    steps = [("copy", 1, 1 << 20, "h2d", False), ("record_wait", 1, 0), ("launch", 0, 40.0, 1.0)] * 20
    steps += [("copy", 0, 4096, "d2h", True), ("sync", 0), ("host", 2.5)]
    backend = _both_ways("h100-sxm-pcie5", 1, _single_thread_main, steps, 2, 1)
    assert backend.timeline_gave_up is None


@pytest.mark.parametrize(
    ("steps", "reason"),
    [
        ([("launch", 0, 40.0, 1.0), ("launch", 1, 40.0, 0.5)], "compute work of two streams overlaps"),
        ([("copy", 0, 3 << 22, "h2d", False), ("copy", 1, 3 << 22, "d2h", False)], "both directions"),
        (
            [("launch", 0, 333.3, 1.0), ("copy", 0, 4096, "h2d", False), ("copy", 1, 4096, "h2d", False)],
            "out of issue order",
        ),
    ],
)
def test_the_timeline_gives_up_on_contention_and_the_full_model_runs_it(steps, reason) -> None:
    backend = _both_ways("h100-sxm-pcie5", 1, _single_thread_main, steps, 2, 1)
    assert reason in (backend.timeline_gave_up or "")


def test_a_second_host_thread_leaves_the_timeline() -> None:
    backend = _both_ways("h100-sxm-pcie5", 1, _program_main, [[("launch", 0, 5.0, 1.0)], [("host", 2.5)]], 1, 1)
    assert backend.timeline_gave_up == "MakeQueue needs the event model"


@pytest.mark.parametrize("spec", ["bench_layer_streaming", "layer_streaming_demo", "recorded_layers_prefetch"])
def test_single_thread_workloads_run_on_the_timeline(spec: str) -> None:
    """The point of the executor: layer streaming and recorded programs never need the event queue."""
    loaded = load_spec(SPECS_DIR / f"{spec}.toml", {"segments": 50} if spec == "bench_layer_streaming" else {})
    inputs = loaded.workload.prepare(loaded.prepare_context())
    for run in loaded.policies:
        backend = SimBackend(loaded.profile, 1, loaded.device_memory_bytes, loaded.spec.seed)
        backend.run(run.policy.main, inputs, run.params)
        assert backend.timeline_gave_up is None, (run.label, backend.timeline_gave_up)


def test_a_series_rejects_a_bad_share_at_the_call_as_launch_does() -> None:
    rt = SimBackend(load_profile("h100-sxm-pcie5"), 1, None, 0).runtime
    for build in (rt.launch, rt.launch_sync_series):
        with pytest.raises(ValueError, match=r"kernel 'decode': compute_share must be in \(0, 1\], got 1.5"):
            build(None, "decode", [5.0] if build == rt.launch_sync_series else 5.0, 1.5)
