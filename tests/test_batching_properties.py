"""Invariants of the continuous-batching server on random workloads and policies (hypothesis).

Every request gets exactly its output tokens, no token comes before its request
arrived, never more than max_batch slots hold requests, and requests leave the
channel in arrival order (first tokens too, except under staggered prefill,
where the engine lets newer requests join before pending staggered ones).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from harness.backend import run_policy
from harness.profile import load_profile
from harness.runtime import KernelKind, Runtime
from sim import SimBackend
from workloads.continuous_batching.cost_model import (
    BatchCost,
    CostModel,
    CostProvenance,
    DecodeCost,
    FastDecodeCost,
    JoinCost,
    PrefillCost,
    available_cost_models,
    load_cost_model,
)
from workloads.continuous_batching.inputs import BatchingInputs
from workloads.continuous_batching.metrics import metrics, requests_frame
from workloads.continuous_batching.policies import (
    AdaptiveParams,
    FixedWindowParams,
    adaptive,
    fixed_window,
)
from workloads.continuous_batching.requests import RequestTable, screen

H100 = load_profile("h100-sxm-pcie5")


@pytest.fixture(scope="module")
def monkeypatch_module():
    """A monkeypatch a hypothesis test may hold across its examples (each patch is undone by ``context()``)."""
    with pytest.MonkeyPatch.context() as patch:
        yield patch


COST = CostModel(
    format_version=1,
    name="test",
    context_limit_tokens=4096,
    provenance=CostProvenance(source="test", hardware="none", date="2026-11-23"),
    prefill=PrefillCost(floor_us=500.0, base_us=300.0, per_seq_us=200.0, per_token_us=2.0),
    decode=DecodeCost(floor_us=0.0, base_us=900.0, per_seq_us=150.0, per_context_token_us=0.01),
    join=JoinCost(overhead_us=250.0),
    fast_decode=FastDecodeCost(floor_us=0.0, base_us=400.0, per_context_token_us=0.0),
    batch=BatchCost(cleanup_us=50.0),
)

requests_strategy = st.lists(
    st.tuples(st.floats(0.0, 20_000.0), st.integers(1, 300), st.integers(1, 24)), min_size=1, max_size=24
)
loop_strategy = st.fixed_dictionaries(
    {
        "max_batch": st.integers(1, 5),
        "fast_path": st.booleans(),
        "prefill": st.sampled_from(["batched", "staggered"]),
        "mid_batch_joins": st.booleans(),
        "slot_recycling": st.booleans(),
    }
)
policy_strategy = st.one_of(
    st.tuples(
        st.just("fixed_window"),
        loop_strategy,
        st.fixed_dictionaries({"window_ms": st.sampled_from([0.0, 0.5, 3.0, 10.0])}),
    ),
    st.tuples(
        st.just("adaptive"),
        loop_strategy,
        st.fixed_dictionaries(
            {"peer_wait_ms": st.sampled_from([0.0, 1.0, 3.0]), "singleton_wait_ms": st.sampled_from([0.0, 2.0])}
        ),
    ),
)


def make_inputs(rows, clients: int) -> BatchingInputs:
    gaps = np.array([r[0] for r in rows])
    table = RequestTable(
        np.cumsum(gaps), np.array([r[1] for r in rows], float), np.array([r[2] for r in rows], float), "hypothesis"
    )
    return BatchingInputs(
        screen(table, COST.context_limit_tokens, "error"), COST, COST.context_limit_tokens, clients, 300.0, "hypothesis"
    )


def simulate(inputs: BatchingInputs, policy):
    name, loop, extra = policy
    params = (FixedWindowParams if name == "fixed_window" else AdaptiveParams)(**loop, **extra)
    main = fixed_window if name == "fixed_window" else adaptive
    outcome = run_policy(SimBackend(H100, seed=3), main, inputs, params)
    return params, outcome.result, outcome.ops


def max_overlap(starts: np.ndarray, ends: np.ndarray) -> int:
    """Most half-open intervals [start, end) holding at one instant (an end at t frees before a start at t)."""
    events = sorted([(e, -1) for e in ends] + [(s, 1) for s in starts])
    depth = best = 0
    for _, step in events:
        depth += step
        best = max(best, depth)
    return best


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=requests_strategy, clients=st.sampled_from([0, 0, 1, 3]), policy=policy_strategy)
def test_every_request_served_in_order_within_slots(rows, clients, policy):
    inputs = make_inputs(rows, clients)
    params, log, ops = simulate(inputs, policy)
    frame = requests_frame(inputs, log)

    # exactly its output tokens, all of them, none before it arrived
    assert (frame["tokens_emitted"] == frame["output_tokens"]).all()
    assert len(log.itl_us()) == int((frame["output_tokens"] - 1).sum())
    assert (frame["admitted_us"] >= frame["arrival_us"]).all()
    assert (frame["first_token_us"] > frame["arrival_us"]).all()
    assert (frame["last_token_us"] >= frame["first_token_us"]).all()

    # never more than max_batch requests hold KV slots (from their prefill to their last token)
    starts = np.array([r.prefill_us for r in log.requests])
    ends = np.array([r.last_token_us for r in log.requests])
    assert max_overlap(starts, ends) <= params.max_batch
    assert log.max_slots_in_use <= params.max_batch
    assert (frame["slot"] < params.max_batch).all()

    # FIFO: requests leave the channel in the order they were sent, at non-decreasing times;
    # first tokens in that order too, unless staggered
    sent = np.array([r.sent_seq for r in log.requests])
    taken = np.array([r.admit_seq for r in log.requests])
    assert sorted(sent) == list(range(1, len(sent) + 1))
    assert (taken[np.argsort(sent)] == np.arange(1, len(sent) + 1)).all()
    ordered = frame.sort_values(["arrival_us", "admitted_us"], kind="stable")
    assert ordered["admitted_us"].is_monotonic_increasing
    if params.prefill == "batched":
        ordered = frame.sort_values(["arrival_us", "first_token_us"], kind="stable")
        assert ordered["first_token_us"].is_monotonic_increasing

    # the fast path runs only single-request batches and takes no joins
    fast_batches = set(frame.loc[frame["admission"] == "fast_path", "batch"])
    assert all((frame["batch"] == b).sum() == 1 for b in fast_batches)
    if not params.fast_path:
        assert not fast_batches

    # the metrics agree with the table
    values = {m.metric: m.value for m in metrics(inputs, ops, log) if m.item == -1}
    assert values["completed_requests"] == len(frame)
    assert values["output_tokens"] == frame["output_tokens"].sum()
    assert 0.0 < values["gpu_busy_frac"] <= 1.0 + 1e-9


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rows=requests_strategy, clients=st.sampled_from([0, 0, 1, 3]), policy=policy_strategy)
def test_decode_series_serve_as_single_steps_would(rows, clients, policy, monkeypatch_module):
    """The generate loop runs decode steps in series (``launch_sync_series``) only where no request can
    join in between: cut every series to one step and the requests, ITLs, metrics and ops are the same."""
    inputs = make_inputs(rows, clients)
    _, log, ops = simulate(inputs, policy)
    whole = Runtime.launch_sync_series

    def one_step_each(self, stream, name, durations_us, compute_share=1.0, kind=KernelKind.COMPUTE, until=None):
        return whole(self, stream, name, durations_us, compute_share, kind, until=lambda: True)

    with monkeypatch_module.context() as patch:
        patch.setattr(Runtime, "launch_sync_series", one_step_each)
        _, single_log, single_ops = simulate(inputs, policy)
    assert requests_frame(inputs, log).equals(requests_frame(inputs, single_log))
    assert np.array_equal(log.itl_us(), single_log.itl_us())
    assert log.step_slots == single_log.step_slots and log.step_active == single_log.step_active
    assert ops.equals(single_ops)


@settings(max_examples=25, deadline=None)
@given(rows=requests_strategy)
def test_single_slot_without_fast_path_serves_one_at_a_time(rows):
    """max_batch = 1: one request at a time, strictly in arrival order, each with its full output."""
    inputs = make_inputs(rows, 0)
    params, log, _ = simulate(
        inputs,
        (
            "fixed_window",
            {"max_batch": 1, "fast_path": False, "prefill": "batched", "mid_batch_joins": True, "slot_recycling": True},
            {"window_ms": 1.0},
        ),
    )
    frame = requests_frame(inputs, log).sort_values("request")
    assert (frame["first_token_us"].to_numpy()[1:] >= frame["last_token_us"].to_numpy()[:-1]).all()
    assert set(frame["admission"]) <= {"batch", "recycle"}


@settings(max_examples=200, deadline=None)
@given(
    model=st.sampled_from(available_cost_models()),
    slots=st.integers(0, 256),
    context=st.integers(0, 1 << 22),
    per_step=st.integers(0, 256),
    steps=st.integers(0, 40),
    per_token=st.one_of(st.none(), st.floats(-1.0, 1.0)),
    floor_at=st.one_of(st.none(), st.floats(0.0, 1.0)),
)
def test_a_decode_series_is_priced_as_its_steps(model, slots, context, per_step, steps, per_token, floor_at) -> None:
    """The generate loop prices a series of decode steps (``decode_series_us``) as ``decode_us`` prices
    each step, to the last bit, and hands the backend Python floats: with the model's own coefficients, and
    with a per-token cost (negative too) and a floor that falls inside the series' range of costs."""
    cost = load_cost_model(model)
    decode = cost.decode if per_token is None else cost.decode.model_copy(update={"per_context_token_us": per_token})
    if floor_at is not None and steps:
        ends = [  # the costs of the first and the last step without the floor
            decode.base_us + decode.per_seq_us * slots + decode.per_context_token_us * (context + i * per_step)
            for i in (0, steps - 1)
        ]
        decode = decode.model_copy(update={"floor_us": min(ends) + floor_at * (max(ends) - min(ends))})
    cost = cost.model_copy(update={"decode": decode})
    series = cost.decode_series_us(slots, context, per_step, steps)
    assert series == [cost.decode_us(slots, context + i * per_step) for i in range(steps)]
    assert all(type(d) is float for d in series)


def test_the_metrics_need_only_the_columns_they_declare() -> None:
    """``simulate_policy`` builds only ``OPS_COLUMNS_READ`` of the devices' rows of the ops table, with
    categorical strings: the metrics must be the same."""
    from harness.backend import ops_frame
    from harness.paths import SPECS_DIR
    from harness.spec import load_spec
    from workloads.continuous_batching.metrics import OPS_COLUMNS_READ, metrics

    loaded = load_spec(SPECS_DIR / "batching_c4_prefill.toml", {"requests": 60})
    inputs = loaded.workload.prepare(loaded.prepare_context())
    for run in loaded.policies:
        outcome = SimBackend(loaded.profile, 1, None, 0).run(run.policy.main, inputs, run.params)
        full = metrics(inputs, ops_frame(outcome.ops), outcome.result)
        assert metrics(inputs, ops_frame(outcome.ops, columns=OPS_COLUMNS_READ), outcome.result) == full
        read = ops_frame(outcome.ops, columns=OPS_COLUMNS_READ, categorical_strings=True, host_rows=False)
        assert (read["device"] >= 0).all() and metrics(inputs, read, outcome.result) == full
