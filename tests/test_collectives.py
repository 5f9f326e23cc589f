"""Collectives (issue 26): the NCCL model against closed-form ring/tree times, nccl-tests' bus bandwidth,
measured curves, the rendezvous of the ranks, sharing the GPU with compute, and the profile sections."""

from __future__ import annotations

import math

import pytest

from harness.backend import run_policy
from harness.collective_profile import TopologyFigures
from harness.errors import InputError
from harness.profile import HardwareProfile, Profile, load_profile
from harness.runtime import CollectiveOp
from sim import SimBackend, SimDeadlock
from sim.collectives import (
    CollectiveMismatch,
    CollectiveModel,
    bus_factor,
    bus_gbps,
    closed_form_time_us,
    ring_time_us,
    tree_time_us,
)

KiB, MiB, GiB = 1 << 10, 1 << 20, 1 << 30
TOPO = TopologyFigures(bus_gbps=400.0, tree_bus_gbps=200.0, p2p_gbps=300.0, base_latency_us=5.0, step_latency_us=1.0)


def with_sections(profile: Profile, **sections) -> Profile:
    raw = profile.figures.model_dump(exclude_none=True)
    raw.update(sections)
    return Profile(HardwareProfile.model_validate(raw))


# --------------------------------------------------------------------------- the closed forms


@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_times_are_the_closed_forms(n):
    size = 256 * MiB
    per_us = 400.0e3  # bytes per µs
    expected = 5.0 + 2 * (n - 1) + size * 2 * (n - 1) / n / per_us
    assert ring_time_us("all_reduce", size, n, TOPO) == pytest.approx(expected)
    for op in ("all_gather", "reduce_scatter"):
        assert ring_time_us(op, size, n, TOPO) == pytest.approx(5.0 + (n - 1) + size * (n - 1) / n / per_us)
    assert ring_time_us("broadcast", size, n, TOPO) == pytest.approx(5.0 + (n - 1) + size / per_us)
    assert ring_time_us("send_recv", size, 2, TOPO) == pytest.approx(5.0 + 1.0 + size / 300.0e3)


@pytest.mark.parametrize("n,depth", [(2, 1), (4, 2), (8, 3), (6, 3)])
def test_tree_times_are_the_closed_forms(n, depth):
    size = 4 * MiB
    assert tree_time_us("all_reduce", size, n, TOPO) == pytest.approx(
        5.0 + 2 * depth + size * 2 * (n - 1) / n / 200.0e3
    )
    assert tree_time_us("broadcast", size, n, TOPO) == pytest.approx(5.0 + depth + size / 200.0e3)
    assert tree_time_us("all_gather", size, n, TOPO) is None  # NCCL has rings only for these


def test_auto_picks_the_tree_for_small_messages_and_the_ring_for_large_ones():
    small, large = closed_form_time_us("all_reduce", 1 * KiB, 8, TOPO), closed_form_time_us("all_reduce", GiB, 8, TOPO)
    assert small[0] == "tree" and large[0] == "ring"
    # the crossover is where the two closed forms meet: 2(n-1)α - 2log2(n)α = size·2(n-1)/n·(1/Bt - 1/Br)
    crossover = (14 - 6) * 1.0 / (1.75 * (1 / 200.0e3 - 1 / 400.0e3))
    assert closed_form_time_us("all_reduce", int(crossover * 0.9), 8, TOPO)[0] == "tree"
    assert closed_form_time_us("all_reduce", int(crossover * 1.1), 8, TOPO)[0] == "ring"
    pinned = TOPO.model_copy(update={"algorithm": "ring"})
    assert closed_form_time_us("all_reduce", 1 * KiB, 8, pinned)[0] == "ring"


@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter", "broadcast"])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_bus_bandwidth_tends_to_the_topologys_at_large_sizes(op, n):
    """nccl-tests' convention: busbw = algbw x factor, so a ring's busbw approaches B_ring at any GPU count."""
    ring = TOPO.model_copy(update={"algorithm": "ring"})
    _, t = closed_form_time_us(op, 8 * GiB, n, ring)
    assert bus_gbps(op, 8 * GiB, n, t) == pytest.approx(400.0, rel=2e-3)


def test_bus_factors_are_nccl_tests():
    assert bus_factor("all_reduce", 8) == pytest.approx(14 / 8)
    assert bus_factor("all_gather", 4) == bus_factor("reduce_scatter", 4) == pytest.approx(3 / 4)
    assert bus_factor("broadcast", 8) == bus_factor(CollectiveOp.SEND, 2) == 1.0


def test_measured_curves_win_over_the_closed_form_where_they_exist(h100):
    samples = [[1 * KiB, 20.0], [1 * MiB, 40.0], [64 * MiB, 400.0]]
    curve = {"op": "all_reduce", "gpus": 4, "algorithm": "ring", "samples": samples}
    profile = with_sections(h100, collectives=[curve])
    model = CollectiveModel(profile)
    for size, t in samples:
        assert model.time_us(CollectiveOp.ALL_REDUCE, size, 4) == ("ring", pytest.approx(t))
    assert model.time_us(CollectiveOp.ALL_REDUCE, 8 * MiB, 4)[1] == pytest.approx(
        math.exp((math.log(40.0) + math.log(400.0)) / 2)  # log-log halfway between 1 and 64 MiB
    )
    assert model.time_us(CollectiveOp.ALL_REDUCE, 16, 4)[1] == 20.0  # below: latency-bound
    assert model.time_us(CollectiveOp.ALL_REDUCE, 128 * MiB, 4)[1] == pytest.approx(800.0)  # above: bandwidth held
    # another GPU count, another op: the closed form on the (default) topology
    assert model.time_us(CollectiveOp.ALL_REDUCE, MiB, 8) == closed_form_time_us("all_reduce", MiB, 8, model.topology)
    assert model.time_us(CollectiveOp.ALL_GATHER, MiB, 4)[0] == "ring"
    assert model.time_us(CollectiveOp.ALL_REDUCE, MiB, 1) == ("local_copy", h100.d2d_time_us(MiB))


def test_profiles_without_the_sections_stay_valid_and_bad_sections_are_named(h100, tmp_path):
    assert h100.figures.topology == TopologyFigures() and h100.figures.collectives == []
    text = (h100.path.read_text()).replace('name = "h100-sxm-pcie5"', 'name = "bad"')
    bad = tmp_path / "bad.toml"
    bad.write_text(text + '\n[[collectives]]\nop = "all_reduce"\ngpus = 4\nsamples = [[2048, 5.0], [1024, 9.0]]\n')
    with pytest.raises(InputError, match=r"bad.toml: field 'collectives.0.samples': .*strictly increasing"):
        load_profile(bad)
    bad.write_text(text + '\n[topology]\ninterconnect = "infiniband"\n')
    with pytest.raises(InputError, match=r"field 'topology.interconnect'"):
        load_profile(bad)
    good = tmp_path / "good.toml"
    good.write_text(text + '\n[topology]\ninterconnect = "pcie"\nbus_gbps = 20.0\n')
    assert load_profile(good).figures.topology.bus_gbps == 20.0


# --------------------------------------------------------------------------- rendezvous in the simulator


def ranks_policy(rt, n, size, compute_us, op="all_reduce"):
    """One host thread per rank: a kernel of ``compute_us[r]`` then the collective, on one stream."""
    comm = yield rt.create_communicator(range(n), "tp")

    def rank(rt, r):
        s = yield rt.create_stream(r, "compute")
        yield rt.launch(s, "work", compute_us[r])
        yield getattr(rt, op)(s, comm, size, name="coll")
        yield rt.sync_stream(s)

    threads = []
    for r in range(n):
        threads.append((yield rt.spawn(rank, r, name=f"rank{r}")))
    for t in threads:
        yield rt.join(t)


def collective_rows(ops):
    return ops[ops.kind == "collective"].sort_values("device")


@pytest.mark.parametrize("n", [2, 4, 8])
def test_a_collective_starts_when_the_last_rank_reaches_it_and_ends_together(h100, n):
    compute = [100.0 * (r + 1) for r in range(n)]
    run = run_policy(SimBackend(h100, devices=n), ranks_policy, n, 64 * MiB, compute)
    rows = collective_rows(run.ops)
    launch = h100.host.launch_us
    assert list(rows.start_us) == pytest.approx([launch + c for c in compute])  # each rank's stream reached it
    _, solo = CollectiveModel(h100).time_us(CollectiveOp.ALL_REDUCE, 64 * MiB, n)
    assert rows.end_us.tolist() == pytest.approx([launch + max(compute) + solo] * n)
    assert list(rows.bytes) == [64 * MiB] * n


def test_a_rank_that_issues_late_holds_everyone(h100):
    """Rendezvous is on the streams, and on the host: a rank whose host issues late delays every rank."""

    def main(rt):
        comm = yield rt.create_communicator([0, 1], "pair")
        s0 = yield rt.create_stream(0, "c0")
        s1 = yield rt.create_stream(1, "c1")
        yield rt.all_gather(s0, comm, MiB, name="ag")
        yield rt.host_work(500.0, "late")
        yield rt.all_gather(s1, comm, MiB, name="ag")
        yield rt.sync_stream(s0)

    run = run_policy(SimBackend(h100, devices=2), main)
    rows = collective_rows(run.ops)
    solo = CollectiveModel(h100).time_us(CollectiveOp.ALL_GATHER, MiB, 2)[1]
    second_issue = 2 * h100.host.launch_us + 500.0
    assert rows.end_us.tolist() == pytest.approx([second_issue + solo] * 2)
    assert rows.start_us.iloc[0] == pytest.approx(h100.host.launch_us)


def test_collectives_order_with_events_like_kernels(h100):
    """A kernel on another stream that waits on an event recorded after the collective starts after it ends."""

    def main(rt):
        comm = yield rt.create_communicator([0, 1], "pair")
        streams = []
        for d in (0, 1):
            streams.append((yield rt.create_stream(d, "comm")))
        for s in streams:
            yield rt.reduce_scatter(s, comm, 8 * MiB, name="rs")
        done = yield rt.record(streams[0])
        side = yield rt.create_stream(0, "side")
        yield rt.wait_event(side, done)
        yield rt.launch(side, "after", 10.0)
        yield rt.sync_stream(side)

    ops = run_policy(SimBackend(h100, devices=2), main).ops
    end = collective_rows(ops).end_us.max()
    after = ops[ops.name == "after"].iloc[0]
    assert after.start_us >= end


def test_send_meets_its_recv_and_broadcast_names_its_root(h100):
    def main(rt):
        comm = yield rt.create_communicator([0, 1, 2], "three")
        s = []
        for d in range(3):
            s.append((yield rt.create_stream(d, "c")))
        yield rt.send(s[0], comm, MiB, peer=2, name="p2p")
        yield rt.launch(s[2], "busy", 300.0)
        yield rt.recv(s[2], comm, MiB, peer=0, name="p2p")
        for d in range(3):
            yield rt.broadcast(s[d], comm, 4 * MiB, root=1, name="bc")
        for d in range(3):
            yield rt.sync_stream(s[d])

    ops = run_policy(SimBackend(h100, devices=3), main).ops
    p2p = collective_rows(ops[ops.name == "p2p"])
    assert p2p.device.tolist() == [0, 2]
    model = CollectiveModel(h100)
    recv_reached = 2 * h100.host.launch_us + 300.0  # busy is issued after the send, runs 300 µs, then the recv
    assert p2p.end_us.tolist() == pytest.approx([recv_reached + model.time_us(CollectiveOp.SEND, MiB, 2)[1]] * 2)
    bc = collective_rows(ops[ops.name == "bc"])
    assert bc.device.tolist() == [0, 1, 2] and bc.end_us.nunique() == 1


def test_ranks_that_disagree_are_named(h100):
    def main(rt):
        comm = yield rt.create_communicator([0, 1], "tp")
        s0 = yield rt.create_stream(0, "c")
        s1 = yield rt.create_stream(1, "c")
        yield rt.all_reduce(s0, comm, MiB, name="ar_a")
        yield rt.all_reduce(s1, comm, 2 * MiB, name="ar_b")

    with pytest.raises(CollectiveMismatch, match=r"#0 on communicator 'tp': device 1 issued all_reduce 'ar_b' of "):
        run_policy(SimBackend(h100, devices=2), main)


def test_a_rank_that_never_comes_is_a_deadlock_naming_the_collective(h100):
    def main(rt):
        comm = yield rt.create_communicator([0, 1], "tp")
        s0 = yield rt.create_stream(0, "c")
        yield rt.all_reduce(s0, comm, MiB, name="lonely")
        yield rt.sync_stream(s0)

    with pytest.raises(SimDeadlock, match=r"all_reduce 'lonely' of 1048576 bytes on devices \[0, 1\]; never issued by"):
        run_policy(SimBackend(h100, devices=2), main)


def test_the_runtime_rejects_bad_collectives_at_the_call(h100):
    def main(rt):
        comm = yield rt.create_communicator([0, 1], "tp")
        s2 = yield rt.create_stream(2, "c")
        with pytest.raises(ValueError, match="device 2, not in communicator 'tp'"):
            rt.all_reduce(s2, comm, MiB)
        s0 = yield rt.create_stream(0, "c")
        with pytest.raises(ValueError, match="cannot send to itself"):
            rt.send(s0, comm, MiB, peer=0)
        with pytest.raises(ValueError, match="device 2 is not in communicator"):
            rt.broadcast(s0, comm, MiB, root=2)
        with pytest.raises(ValueError, match="distinct devices"):
            rt.create_communicator([1, 1])

    run_policy(SimBackend(h100, devices=3), main)


def test_a_collective_shares_the_gpu_with_concurrent_compute(h100):
    """NCCL's kernels hold compute_share of the SMs: beside a kernel of share 1 both stretch by 1 + share."""
    share = h100.figures.topology.compute_share

    def main(rt, with_kernel):
        comm = yield rt.create_communicator([0, 1], "tp")
        streams = []
        for d in (0, 1):
            streams.append((yield rt.create_stream(d, "comm")))
        side = yield rt.create_stream(0, "side")
        if with_kernel:
            yield rt.launch(side, "gemm", 5000.0)
        for s in streams:
            yield rt.all_reduce(s, comm, 256 * MiB, name="ar")
        for s in (*streams, side):
            yield rt.sync_stream(s)

    alone = collective_rows(run_policy(SimBackend(h100, devices=2), main, False).ops)
    shared = collective_rows(run_policy(SimBackend(h100, devices=2), main, True).ops)
    solo = CollectiveModel(h100).time_us(CollectiveOp.ALL_REDUCE, 256 * MiB, 2)[1]
    assert alone.end_us.max() - alone.start_us.max() == pytest.approx(solo, rel=1e-9)  # from the rendezvous
    stretched = shared.end_us.max() - shared.start_us.max()
    assert solo < stretched <= solo * (1 + share) + 1e-6


def test_a_communicator_of_one_device_is_a_local_copy(h100):
    def main(rt):
        comm = yield rt.create_communicator([0], "solo")
        s = yield rt.create_stream(0, "c")
        yield rt.all_reduce(s, comm, 32 * MiB, name="ar")
        yield rt.sync_stream(s)

    row = collective_rows(run_policy(SimBackend(h100, devices=1), main).ops).iloc[0]
    assert row.end_us - row.start_us == pytest.approx(h100.d2d_time_us(32 * MiB))


# --------------------------------------------------------------------------- calibration (code only: no GPUs here)


def test_calibration_refuses_machines_with_fewer_than_two_gpus():
    from replay.collective_calibration import NotEnoughGpus, gpu_counts_to_measure

    for available in (0, 1):
        with pytest.raises(NotEnoughGpus, match=f"at least 2 GPUs; this one has {available}"):
            gpu_counts_to_measure(available)
    assert gpu_counts_to_measure(8) == (2, 4, 8)
    assert gpu_counts_to_measure(6) == (2, 4, 6)
    with pytest.raises(NotEnoughGpus, match=r"GPU counts \[8\] cannot be measured here"):
        gpu_counts_to_measure(4, (2, 8))


def test_the_fitted_topology_gives_back_the_ring_it_was_measured_on():
    """Curves made by a known ring closed form fit back to its figures; the profile then reproduces them."""
    from replay.collective_calibration import DEFAULT_SIZES, fit_ring_topology

    truth = TopologyFigures(bus_gbps=370.0, base_latency_us=8.0, step_latency_us=0.7, algorithm="ring")
    curves = [
        {"op": "all_reduce", "gpus": n, "algorithm": "nccl",
         "samples": [[s, ring_time_us("all_reduce", s, n, truth)] for s in DEFAULT_SIZES]}
        for n in (2, 4, 8)
    ]  # fmt: skip
    fitted = TopologyFigures(**fit_ring_topology(curves, "nvlink"))
    assert fitted.bus_gbps == pytest.approx(370.0, rel=1e-3)
    assert fitted.base_latency_us == pytest.approx(8.0, abs=0.02)
    assert fitted.step_latency_us == pytest.approx(0.7, abs=0.002)
    at_six = ring_time_us("all_reduce", 3 * MiB, 6, truth)
    assert ring_time_us("all_reduce", 3 * MiB, 6, fitted) == pytest.approx(at_six, rel=1e-3)


def test_calibrate_collectives_without_gpus_fails_in_one_line(tmp_path):
    from typer.testing import CliRunner

    from harness.cli import app

    out = tmp_path / "p.toml"
    result = CliRunner().invoke(app, ["calibrate", "--collectives", "--name", "x", "--out", str(out)])
    assert result.exit_code == 2
    assert "harness calibrate --collectives:" in result.output and ("GPU" in result.output or "torch" in result.output)
    assert not out.exists()


# --------------------------------------------------------------------------- the multi-GPU replay's pure parts


def test_the_distributed_replay_refuses_too_few_gpus():
    from replay.distributed import NotEnoughGpusForRanks, visible_devices

    assert visible_devices(4, 8) == [0, 1, 2, 3]
    with pytest.raises(NotEnoughGpusForRanks, match="uses 8 GPUs .* this machine has 1"):
        visible_devices(8, 1)
    with pytest.raises(NotEnoughGpusForRanks, match="2 or more devices"):
        visible_devices(1, 8)


def test_rank_runs_merge_onto_one_clock_keeping_each_ranks_own_rows():
    from replay.distributed import RankRecord, merge_rank_runs

    def rows(rank):  # every rank's process saw every thread; only its own device's rows and threads count
        return [
            (1, -1, "main", "host_work", "w", 0, "", "main", 0.0, 0.0, 5.0),
            (2, rank, "compute", "kernel", "k", 0, "", f"rank{rank}", 5.0, 6.0, 10.0),
            (3, 1 - rank, "compute", "kernel", "k", 0, "", f"rank{1 - rank}", 5.0, 6.0, 10.0),  # a phantom's
            (4, -1, f"rank{rank}", "host_sync", "s", 0, "", f"rank{rank}", 10.0, 10.0, 12.0),
            (5, -1, f"rank{1 - rank}", "host_sync", "s", 0, "", f"rank{1 - rank}", 10.0, 10.0, 10.0),
        ]

    records = [
        RankRecord(1, 0, rows(1), None, 20.0, 1000.000030, ("rank1",)),  # started 30 µs after rank 0
        RankRecord(0, 0, rows(0), "result", 20.0, 1000.0, ("rank0",)),
    ]
    merged = merge_rank_runs(records)
    got = sorted((r.op_id, r.device, r.thread, r.start_us) for r in merged.ops)
    assert got == [
        (2, -1, "main", pytest.approx(0.0)),
        (4, 0, "rank0", pytest.approx(6.0)),
        (5, 1, "rank1", pytest.approx(36.0)),
        (8, -1, "rank0", pytest.approx(10.0)),
        (9, -1, "rank1", pytest.approx(40.0)),
    ]
    assert merged.result == "result" and merged.main_end_us == 20.0
    records[1].error = "RuntimeError: NCCL timeout"
    with pytest.raises(RuntimeError, match="rank 0: RuntimeError: NCCL timeout"):
        merge_rank_runs(records)


# --------------------------------------------------------------------------- the collective sweep workload


@pytest.mark.parametrize("gpus", [2, 4, 8])
def test_the_sweep_measures_what_the_model_says_per_size(gpus):
    """Through the whole pipeline (spec, workload, sim, metrics): each size's time per call is the model's where
    the GPU bounds it; a small size is bound by the host's launches (as nccl-tests' loop is), never faster."""
    from harness.paths import SPECS_DIR
    from harness.runner import run_spec
    from harness.spec import load_spec

    sizes = [4 * KiB, 4 * MiB, 256 * MiB]
    loaded = load_spec(SPECS_DIR / f"collective_sweep_{gpus}gpu.toml", {"sizes_bytes": sizes, "iters": 3})
    results = run_spec(loaded, lambda spec, rep: SimBackend(spec.profile, spec.workload.devices(spec.workload_params)))
    assert results.failed.empty, results.failed["error"].tolist()
    m = results.metrics.merge(results.runs[["run_id", "policy_label", "repetition"]], on="run_id")
    m = m[m["repetition"] == 0].set_index(["policy_label", "metric", "item"])["value"]
    model = CollectiveModel(loaded.profile)
    for op in ("all_reduce", "all_gather", "reduce_scatter", "broadcast", "send_recv"):
        for i, size in enumerate(sizes):
            n = 2 if op == "send_recv" else gpus
            _, expected = model.time_us(CollectiveOp.SEND if op == "send_recv" else CollectiveOp(op), size, n)
            if expected > loaded.profile.host.launch_us:
                assert m[op, "time_us", i] == pytest.approx(expected, rel=1e-6), (op, size)
                assert m[op, "busbw_gbps", i] == pytest.approx(bus_gbps(op, size, n, expected), rel=1e-6)
            else:
                assert expected <= m[op, "time_us", i] <= loaded.profile.host.launch_us + 1e-6, (op, size)
