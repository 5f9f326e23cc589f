"""A multi-rank recording re-issued as recorded (issue 26): collective steps in the program command.

Synthetic 2- and 4-rank traces of a tensor-parallel loop (tests/multirank_traces.py) are imported with
``harness trace import`` of one file per rank; ``as_recorded`` simulates them within the model's
tolerance of the recorded span; the simulator's fast path for program commands gives the op rows of
the reference expansion (and of the call-by-call re-issue) bit for bit; ranks whose traces disagree
are refused naming the file and the rank; the ``overlap_collectives`` what-if's rewrite is checked on a
hand-made program.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from multirank_traces import (
    CALL_EVERY_US,
    COMPUTE_STREAM,
    RING_KERNEL,
    nccl_args,
    recorded_span_us,
    tp_rank_traces,
    write_rank_traces,
)
from typer.testing import CliRunner

from harness.backend import run_policy
from harness.cli import app
from harness.errors import InputError
from harness.multirank_import import (
    CollectiveCall,
    collective_name,
    import_rank_traces,
    import_ranks_to_parquet,
    recorded_algorithm,
)
from harness.profile import load_profile
from harness.program import (
    ALGORITHMS,
    COLLECTIVE_CODES,
    OP_COLLECTIVE,
    OP_LAUNCH,
    OP_SYNC_DEVICE,
    ProgramError,
    ProgramThread,
    StepProgram,
    expand,
    new_steps,
)
from harness.runtime import CollectiveOp
from harness.spec import load_spec
from harness.trace import load_trace, write_trace
from sim import SimBackend
from sim.collectives import CollectiveModel
from workloads.recorded import whatif
from workloads.recorded.program import Call, DeviceOp, RecordedProgram, ThreadProgram
from workloads.recorded.reissue import reissue
from workloads.recorded.whatif import NotApplicable

PROFILE = "h100-sxm-pcie5"  # no [topology]: the default NVLink figures time the all-reduces
NBYTES = 64 << 20
LAYERS = 3
runner = CliRunner()


def _model_us(world: int) -> float:
    _, time_us = CollectiveModel(load_profile(PROFILE)).time_us(CollectiveOp.ALL_REDUCE, NBYTES, world, "ring")
    return time_us


def _docs(world: int, nccl_stream: bool, collective_us: float | None = None) -> list[dict]:
    compute = [[200.0 + 30.0 * r + 10.0 * layer for layer in range(LAYERS)] for r in range(world)]
    offsets = [15.0 * r for r in range(world)]
    us = _model_us(world) if collective_us is None else collective_us
    return tp_rank_traces(world, LAYERS, compute, offsets, us, NBYTES, nccl_stream)


def _spec(folder: Path, world: int, *policies: str) -> Path:
    spec = folder / "tp.toml"
    text = f'name = "tp"\nprofile = "{PROFILE}"\n[workload]\nkind = "recorded"\ntrace = "tp.parquet"\n'
    text += f"devices = {world}\n" + "".join(f'[[policies]]\nname = "{p}"\n' for p in policies)
    spec.write_text(text)
    return spec


def _imported(tmp_path: Path, world: int, nccl_stream: bool, *policies: str) -> tuple[Path, list[dict]]:
    docs = _docs(world, nccl_stream)
    import_ranks_to_parquet(write_rank_traces(tmp_path, docs), tmp_path / "tp.parquet")
    return _spec(tmp_path, world, *policies), docs


# --------------------------------------------------------------------------- as recorded, end to end


@pytest.mark.parametrize("world, nccl_stream", [(2, False), (4, True)], ids=["2ranks-one-stream", "4ranks-nccl"])
def test_as_recorded_of_an_imported_multirank_trace_simulates_its_recorded_span(tmp_path, world, nccl_stream):
    """``harness sim`` of a recorded spec on the merged trace: every rank's collectives meet as the runtime's, each
    timed by the collective model; the recording's collectives took the model's time, so the span agrees to the
    launch latency and the sync's wake-up (a few µs: the tolerance is 1%, the issue's bar 3%)."""
    spec, docs = _imported(tmp_path, world, nccl_stream, "as_recorded")
    result = runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 0, result.output
    metrics = pd.read_parquet(tmp_path / "out" / "metrics.parquet").set_index("metric")
    run_level = metrics[metrics["item"] == -1]["value"]  # -1: the whole run
    assert run_level["recorded_makespan_us"] == pytest.approx(recorded_span_us(docs))
    assert abs(run_level["makespan_vs_recorded"]) < 0.01
    ops = pd.read_parquet(tmp_path / "out" / "ops.parquet")
    coll = ops[ops["kind"] == "collective"]
    assert sorted(coll["device"].value_counts().items()) == [(r, LAYERS) for r in range(world)]
    for _, meeting in coll.groupby("end_us"):  # the ranks of each all-reduce end together, one row per rank
        assert sorted(meeting["device"]) == list(range(world))
    last_gemm_end = ops[ops["name"] == "ampere_bf16_gemm"].groupby("device")["end_us"].max()
    assert coll["end_us"].max() - last_gemm_end.max() == pytest.approx(_model_us(world))
    if nccl_stream:
        assert run_level["inferred_waits"] == 2 * LAYERS * world - world  # each all-reduce after its gemm, and back


# --------------------------------------------------------------------------- the fast path is the expansion


def _prepared(spec: Path):
    loaded = load_spec(spec)
    return loaded, loaded.workload.prepare(loaded.prepare_context())


@pytest.mark.parametrize("world, nccl_stream", [(2, False), (2, True), (4, False), (4, True)])
def test_the_sim_fast_path_gives_the_reference_expansion_bit_for_bit(tmp_path, world, nccl_stream):
    spec, _ = _imported(tmp_path, world, nccl_stream, "as_recorded", "overlap_collectives")
    loaded, program = _prepared(spec)
    profile = loaded.profile
    for run in loaded.policies:
        what_if = run.policy.name if run.policy.name != "as_recorded" else ""

        def ops(fast: bool, fast_programs: bool, main, *args) -> pd.DataFrame:
            backend = SimBackend(profile, world, fast=fast, fast_programs=fast_programs)
            return run_policy(backend, main, *args).ops

        reference = ops(False, False, run.policy.main, program, run.params)  # expand, command by command
        assert (reference["kind"] == "collective").sum() == world * LAYERS
        for fast in (True, False):  # the fast path from the timeline executor (it gives up), and on the event model
            got = ops(fast, True, run.policy.main, program, run.params)
            pd.testing.assert_frame_equal(got, reference, check_exact=True)
        legacy = ops(True, True, reissue, program, run.params, what_if)  # one command per recorded call
        pd.testing.assert_frame_equal(legacy, reference, check_exact=True)


def test_the_step_program_has_a_collective_step_per_rank_and_per_rank_device_syncs(tmp_path):
    from workloads.recorded.policies import AsRecordedParams, step_program_for

    spec, _ = _imported(tmp_path, 4, True, "as_recorded")
    loaded, program = _prepared(spec)

    class _Rt:
        profile = loaded.profile

    made = step_program_for(_Rt(), program, AsRecordedParams())
    assert made.communicators == ((0, 1, 2, 3),)
    stream_device = [key[0] for key in program.streams]
    for rank, thread in enumerate(made.threads):
        steps = thread.steps
        coll = steps[steps["op"] == OP_COLLECTIVE]
        assert len(coll) == LAYERS
        assert set(coll["kind"]) == {COLLECTIVE_CODES[CollectiveOp.ALL_REDUCE]}
        assert set(coll["nbytes"]) == {NBYTES} and set(coll["graph_first"]) == {0} and set(coll["graph_count"]) == {-1}
        assert set(coll["algorithm"]) == {ALGORITHMS.index("ring")}  # from the kernel's name
        assert {stream_device[s] for s in coll["stream"]} == {rank}  # each rank's part on its own stream
        sync = steps[steps["op"] == OP_SYNC_DEVICE]
        assert len(sync) == 1 and stream_device[sync["stream"][0]] == rank  # syncs its own GPU only


def test_the_kernel_name_gives_nccls_algorithm():
    assert recorded_algorithm(RING_KERNEL) == "ring"
    assert recorded_algorithm("ncclKernel_AllReduce_TREE_LL_Sum_float") == "tree"
    assert recorded_algorithm("ncclDevKernel_AllReduce_Sum_bf16_NVLS_TREE_SIMPLE(x)") == "nvls_tree"
    assert recorded_algorithm("ncclDevKernel_SendRecv(ncclDevComm*)") is None


# --------------------------------------------------------------------------- the program layout's collective step


def _collective_program(threads: int) -> StepProgram:
    """Rank 0 and rank 1 (one thread each, or both issued from one thread): a kernel, an all-reduce, a send from 0
    to 1, a broadcast from 1, each rank's device-wide sync of its own streams."""
    names = ("gemm", "cpu", "ar", "p2p")
    per_rank = []
    for rank in (0, 1):
        steps = new_steps(5)
        steps["stream"] = rank
        steps[0] = (OP_LAUNCH, 0, 0, 0, rank, 0, 1, 0, 0, 0, 3.0 + 7 * rank, math.nan, 40.0 + 25 * rank, 1.0, 0)
        ar = COLLECTIVE_CODES[CollectiveOp.ALL_REDUCE]
        steps[1] = (OP_COLLECTIVE, ar, 0, ALGORITHMS.index("tree"), rank, 2, -1, 0, 0, -1, 0.0, 2.0, 0.0, 1.0, 1 << 20)
        p2p = COLLECTIVE_CODES[CollectiveOp.SEND if rank == 0 else CollectiveOp.RECV]
        steps[2] = (OP_COLLECTIVE, p2p, 0, 0, rank, 3, -1, 0, 1, 1 - rank, 0.0, math.nan, 0.0, 1.0, 4096)
        bcast = COLLECTIVE_CODES[CollectiveOp.BROADCAST]
        steps[3] = (OP_COLLECTIVE, bcast, 0, 0, rank, -1, -1, 0, 0, 1, 0.0, math.nan, 0.0, 1.0, 1 << 16)
        steps[4]["op"], steps[4]["stream"] = OP_SYNC_DEVICE, rank
        per_rank.append(steps)
    if threads == 1:
        issued = [per_rank[0][:4], per_rank[1][:4], per_rank[0][4:], per_rank[1][4:]]  # both ranks, then the syncs
        parts = (ProgramThread("main", np.concatenate(issued)),)
    else:
        parts = (ProgramThread("main", per_rank[0]), ProgramThread("rank1", per_rank[1]))
    return StepProgram(parts, names, 2, communicators=((0, 1), (0, 1)))


def _run_collective_program(program: StepProgram, fast: bool, fast_programs: bool, expanded: bool) -> pd.DataFrame:
    def main(rt):
        streams = [(yield rt.create_stream(0, "a")), (yield rt.create_stream(1, "b"))]
        comms = [(yield rt.create_communicator((0, 1), "tp")), (yield rt.create_communicator((0, 1), "p2p"))]
        command = rt.run_program(program, streams, comms)
        outcome = (yield from expand(rt, command)) if expanded else (yield command)
        return outcome.unresolved_waits

    return run_policy(SimBackend(load_profile(PROFILE), 2, fast=fast, fast_programs=fast_programs), main).ops


@pytest.mark.parametrize("threads", [1, 2])
def test_collective_steps_run_alike_on_every_path(threads):
    program = _collective_program(threads)
    reference = _run_collective_program(program, fast=False, fast_programs=False, expanded=True)
    coll = reference[reference["kind"] == "collective"]
    assert sorted(coll["name"]) == sorted(["ar", "ar", "p2p", "p2p", "broadcast", "broadcast"])
    ar = coll[coll["name"] == "ar"]
    assert len(set(ar["end_us"])) == 1  # started when the later rank reached it, ended on both together
    model = CollectiveModel(load_profile(PROFILE))
    tree_us = model.time_us(CollectiveOp.ALL_REDUCE, 1 << 20, 2, "tree")[1]
    assert ar["end_us"].max() - ar["start_us"].max() == pytest.approx(tree_us)  # the recorded algorithm's time
    syncs = reference[reference["kind"] == "host_sync"]
    assert sorted(syncs["name"]) == ["sync:a", "sync:b"]  # each rank's sync waits for its own device only
    for fast in (True, False):
        for fast_programs in (True, False):
            got = _run_collective_program(program, fast, fast_programs, expanded=False)
            pd.testing.assert_frame_equal(got, reference, check_exact=True)


def test_a_bad_collective_step_is_named_by_thread_step_and_field():
    program = _collective_program(2)
    steps = program.threads[1].steps.copy()
    steps["graph_first"][1] = 2  # no third communicator
    with pytest.raises(ProgramError, match=r"thread 'rank1', step 1: field 'graph_first'"):
        StepProgram((program.threads[0], ProgramThread("rank1", steps)), program.names, 2, communicators=((0, 1),) * 2)
    steps = program.threads[1].steps.copy()
    steps["graph_count"][2] = 5  # a recv from a device outside the communicator
    with pytest.raises(ProgramError, match=r"step 2: field 'graph_count' \(the peer\) is 5"):
        StepProgram((program.threads[0], ProgramThread("rank1", steps)), program.names, 2, communicators=((0, 1),) * 2)


def test_run_program_refuses_communicators_that_do_not_match_and_a_stream_outside_its_communicator():
    program = _collective_program(2)

    def main(rt, comm_devices, stream_device):
        streams = [(yield rt.create_stream(0, "a")), (yield rt.create_stream(stream_device, "b"))]
        comms = [(yield rt.create_communicator(comm_devices, "c")), (yield rt.create_communicator((0, 1), "d"))]
        yield rt.run_program(program, streams, comms)

    backend = SimBackend(load_profile(PROFILE), 3)
    with pytest.raises(ValueError, match=r"need communicators of devices \[\[0, 1\], \[0, 1\]\], given \[\[0, 2\]"):
        run_policy(backend, main, (0, 2), 1)
    with pytest.raises(ValueError, match=r"thread 'rank1', step 1: collective on stream 'b' of device 2, not in"):
        run_policy(SimBackend(load_profile(PROFILE), 3), main, (0, 1), 2)


# --------------------------------------------------------------------------- ranks that disagree


def test_ranks_that_disagree_on_a_collective_are_refused_naming_the_file_and_the_rank(tmp_path):
    docs = _docs(2, nccl_stream=False)
    for event in docs[1]["traceEvents"]:
        if event["name"] == RING_KERNEL and event["args"]["correlation"] == 4:  # layer 1's all-reduce on rank 1
            event["args"].update(nccl_args(2, NBYTES // 2))
    paths = write_rank_traces(tmp_path, docs)
    with pytest.raises(InputError) as err:
        import_rank_traces(paths)
    assert str(err.value) == (
        f"{paths[1]}: rank 1: collective #1 on ranks [0, 1] is all_reduce of {NBYTES // 2} bytes, but rank 0's is"
        f" all_reduce of {NBYTES} bytes"
    )
    result = runner.invoke(app, ["trace", "import", *map(str, paths), "-o", str(tmp_path / "tp.parquet")])
    assert result.exit_code == 2 and "collective #1 on ranks [0, 1]" in " ".join(result.output.split())
    assert not (tmp_path / "tp.parquet").exists()


def test_a_rank_trace_cut_short_is_refused(tmp_path):
    docs = _docs(4, nccl_stream=True)
    cut = CALL_EVERY_US * 2 * (LAYERS - 1)  # rank 3's profiler stopped before its last layer
    first = min(e["ts"] for e in docs[3]["traceEvents"])
    docs[3]["traceEvents"] = [e for e in docs[3]["traceEvents"] if e["ts"] < first + cut or e["cat"] == "kernel"]
    docs[3]["traceEvents"] = [
        e for e in docs[3]["traceEvents"] if e["cat"] != "kernel" or e["args"]["correlation"] <= 2 * (LAYERS - 1)
    ]
    paths = write_rank_traces(tmp_path, docs)
    with pytest.raises(InputError, match=r"rank3\.json: rank 3: 2 collective\(s\) on ranks \[0, 1, 2, 3\], rank 0's"
                       r" trace 3: every rank's trace must cover the same steps"):  # fmt: skip
        import_rank_traces(paths)


def test_a_merged_trace_whose_ranks_disagree_or_a_spec_of_too_few_devices_is_refused(tmp_path):
    spec, _ = _imported(tmp_path, 2, False, "as_recorded")
    trace = load_trace(tmp_path / "tp.parquet")
    ops = trace.ops.copy()
    at = ops.index[(ops["kind"] == "collective") & (ops["device"] == 1)][0]
    ops.at[at, "name"] = collective_name(CollectiveCall("all_gather", NBYTES, (0, 1), None, RING_KERNEL))
    write_trace(tmp_path / "bad.parquet", ops, trace.provenance)
    spec.write_text(spec.read_text().replace("tp.parquet", "bad.parquet"))
    result = runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2
    assert "bad.parquet: rank 1: collective #0 on ranks [0, 1] is all_gather" in " ".join(result.output.split())
    spec.write_text(spec.read_text().replace("bad.parquet", "tp.parquet").replace("devices = 2", "devices = 1"))
    result = runner.invoke(app, ["sim", str(spec), "--out", str(tmp_path / "out")])
    assert result.exit_code == 2 and "set devices = 2 in [workload]" in " ".join(result.output.split())
    assert not (tmp_path / "out").exists()


# --------------------------------------------------------------------------- the overlap what-if's rewrite


S7, NCCL, SIDE = (0, str(COMPUTE_STREAM)), (0, "20"), (0, "comm")


def _launch(name: str, stream, group: str, kind: str = "kernel", **kw) -> Call:
    op = DeviceOp(kind, stream, name, 50.0, 0, "pinned")
    return Call("call_launch", "cudaLaunchKernel", 1.0, 5.0, stream, (op,), group, **kw)


def _hand_made(calls: list[Call], streams) -> RecordedProgram:
    return RecordedProgram(
        threads=(ThreadProgram("r0:7", tuple(calls)),),
        streams=tuple(streams),
        devices=1,
        start_us=0.0,
        recorded_span_us=1000.0,
        recorded_group_us=(),
        sync_events=False,
        inferred_waits=0,
        unlinked_ops=0,
        source="hand-made",
    )


AR = collective_name(CollectiveCall("all_reduce", NBYTES, (0, 1), None, RING_KERNEL))


def test_overlap_moves_a_collective_off_the_compute_stream_and_waits_for_it_at_the_next_group():
    calls = [
        _launch("gemm0", S7, "layer0"),
        _launch(AR, S7, "layer0", kind="collective"),
        _launch("gemm1", S7, "layer0"),  # same group: no longer waits for the all-reduce
        _launch("gemm2", S7, "layer1"),  # next group: waits for it
        Call("call_sync_device", "cudaDeviceSynchronize", 0.0, 9.0, None, (), "layer1"),
    ]
    changed = whatif.overlap_collectives(_hand_made(calls, [S7]))
    out = changed.threads[0].calls
    assert [(c.kind, c.stream, c.ops[0].name if c.ops else None) for c in out] == [
        ("call_launch", S7, "gemm0"),
        ("call_record", S7, None),  # the collective's producer: everything before it on the compute stream
        ("call_wait", SIDE, None),
        ("call_launch", SIDE, AR),  # moved to the side stream of its device
        ("call_record", SIDE, None),  # its end
        ("call_launch", S7, "gemm1"),
        ("call_wait", S7, None),  # at the next group's first op on the compute stream
        ("call_launch", S7, "gemm2"),
        ("call_sync_device", None, None),
    ]
    produced, reduced = out[1].event, out[4].event
    assert out[2].waits_for == produced and out[6].waits_for == reduced and produced != reduced
    assert produced < 0 and reduced < 0 and all(c.synthetic for c in (out[1], out[2], out[4], out[6]))
    assert changed.streams == (S7, SIDE)
    summary = changed.what_ifs[-1]
    counts = (summary.collectives_moved, summary.waits_deferred, summary.events_added, summary.waits_added)
    assert counts == (1, 0, 2, 2)


def test_overlap_defers_the_waits_for_a_collective_on_its_own_stream_to_the_next_group():
    calls = [
        _launch("gemm0", S7, "layer0", record_after=((S7, -1),)),
        _launch(AR, NCCL, "layer0", kind="collective", wait_before=((NCCL, -1),), record_after=((NCCL, -2),)),
        _launch("gemm1", S7, "layer0", wait_before=((S7, -2),)),  # waited for the all-reduce: deferred
        _launch("gemm2", S7, "layer1"),
        Call("call_sync_stream", "cudaStreamSynchronize", 0.0, 9.0, S7, (), "layer1"),
    ]
    changed = whatif.overlap_collectives(_hand_made(calls, [S7, NCCL]))
    out = changed.threads[0].calls
    assert out[1].stream == NCCL and out[1].wait_before == ((NCCL, -1),)  # it still follows its producer
    assert out[2].ops[0].name == "gemm1" and out[2].wait_before == ()
    assert (out[3].kind, out[3].stream, out[3].waits_for) == ("call_wait", S7, -2)  # before gemm2, the next group
    assert out[4].ops[0].name == "gemm2" and changed.streams == (S7, NCCL)
    summary = changed.what_ifs[-1]
    assert (summary.collectives_moved, summary.waits_deferred, summary.waits_added) == (0, 1, 1)


def test_overlap_without_collectives_is_not_applicable():
    with pytest.raises(NotApplicable, match="overlap_collectives: found no collective to overlap"):
        whatif.overlap_collectives(_hand_made([_launch("gemm0", S7, "layer0")], [S7]))


# --------------------------------------------------------------------------- the distributed replay's share


def test_each_rank_process_runs_only_its_own_ranks_threads_of_a_program_of_collectives():
    from harness.runtime import Communicator, RunProgram, Stream
    from replay.distributed import own_rank_program

    program = _collective_program(2)
    host_only = new_steps(1)
    host_only["gap_us"], host_only["gap_name"] = 4.0, 1
    program = StepProgram((*program.threads, ProgramThread("helper", host_only)), program.names, 2,
                          communicators=program.communicators)  # fmt: skip
    cmd = RunProgram(program, (Stream(1, 0, "a"), Stream(2, 1, "b")), (Communicator(3, (0, 1), "c"),) * 2)
    for rank, kept in ((0, ["main", "helper"]), (1, ["rank1"])):
        mine = own_rank_program(cmd, rank)
        assert [t.name for t in mine.program.threads] == ["main", "rank1", "helper"]  # places and names kept
        assert [t.name for t in mine.program.threads if len(t.steps)] == kept
        assert mine.streams == cmd.streams and mine.communicators == cmd.communicators
