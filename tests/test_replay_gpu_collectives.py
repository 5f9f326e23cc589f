"""Collectives on the replay (issue 26): a communicator of one GPU, and the refusal of several in one process
(skipped without torch and CUDA; the multi-GPU replay itself runs by fidelity/run_collectives.sh)."""

from __future__ import annotations

import pytest

from harness.backend import ops_frame

torch = pytest.importorskip("torch")
pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]
MiB = 1 << 20


def test_a_one_gpu_communicator_replays_as_a_local_copy(context, profile):
    from replay.engine import ReplayBackend

    def main(rt):
        comm = yield rt.create_communicator([0], "solo")
        s = yield rt.create_stream(0, "c")
        for _ in range(3):
            yield rt.all_reduce(s, comm, 64 * MiB, name="ar")
        yield rt.sync_stream(s)

    ops = ops_frame(ReplayBackend(context, profile, seed=0, warmup_runs=1).run(main).ops)
    rows = ops[ops["kind"] == "collective"]
    assert len(rows) == 3 and (rows["bytes"] == 64 * MiB).all()
    took = (rows["end_us"] - rows["start_us"]).median()
    assert 0.5 * profile.d2d_time_us(64 * MiB) < took < 3 * profile.d2d_time_us(64 * MiB)


@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs 2 GPUs")
def test_several_gpus_in_one_process_point_at_the_distributed_replay(profile):
    from replay.engine import NeedsDistributedReplay, ReplayBackend, ReplayContext

    def main(rt):
        yield rt.create_communicator([0, 1], "pair")

    with pytest.raises(NeedsDistributedReplay, match="harness replay --distributed"):
        ReplayBackend(ReplayContext(2), profile, seed=0, warmup_runs=0).run(main)
