"""Per-request identities of the continuous-batching workload, on requests that queue.

Each request's timestamps (arrival, admitted, first token, last token) define its figures:
queue = admitted - arrival, TTFT = first token - arrival, e2e = last token - arrival and
TPOT = (last - first token) / (output tokens - 1) (none for a one-token output). The written
results must say exactly that, per request and in the run-level percentiles and means, and the
server's inter-token gaps must add up to each request's decode time. The arrivals come every
100 µs, far faster than a prefill, so most requests wait behind others.
"""

from __future__ import annotations

import textwrap

import numpy as np
import pytest

from harness.backend import run_policy
from harness.profile import load_profile
from harness.results import read_results, write_results
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend
from workloads.continuous_batching.cost_model import load_cost_model
from workloads.continuous_batching.inputs import BatchingInputs
from workloads.continuous_batching.metrics import PERCENTILES, requests_frame
from workloads.continuous_batching.policies import FixedWindowParams, fixed_window
from workloads.continuous_batching.requests import RequestTable, screen

ARRIVAL_GAP_US = 100.0
PROMPTS = [40, 300, 16, 120, 64, 500, 24, 80, 200, 32, 150, 48, 90, 260]
OUTPUTS = [6, 1, 12, 3, 9, 2, 20, 1, 5, 14, 7, 4, 11, 8]  # one-token outputs included: they have no TPOT
ARRIVALS_US = [i * ARRIVAL_GAP_US for i in range(len(PROMPTS))]

POLICIES = """
[[policies]]
name = "fixed_window"
label = "one-at-a-time"
max_batch = 1
fast_path = false
window_ms = 0.0

[[policies]]
name = "fixed_window"
label = "window-2ms"
max_batch = 3
window_ms = 2.0

[[policies]]
name = "adaptive"
label = "adaptive"
max_batch = 4

[[policies]]
name = "adaptive"
label = "adaptive-staggered"
max_batch = 4
prefill = "staggered"
"""


@pytest.fixture(scope="module")
def written(tmp_path_factory):
    """The results folder of the spec above, as written and read back: (requests, metrics, runs)."""
    folder = tmp_path_factory.mktemp("identities")
    rows = "".join(f"{a},{p},{o}\n" for a, p, o in zip(ARRIVALS_US, PROMPTS, OUTPUTS))
    (folder / "reqs.csv").write_text("arrival_us,prompt_tokens,output_tokens\n" + rows)
    spec = folder / "spec.toml"
    spec.write_text(
        'name = "identities"\nprofile = "h100-sxm-pcie5"\nseed = 1\n[workload]\nkind = "continuous_batching"\n'
        'cost_model = "engine-pmat-quoted"\ntrace = "reqs.csv"\n' + textwrap.dedent(POLICIES)
    )
    loaded = load_spec(spec)
    results = run_spec(loaded, lambda s, rep: SimBackend(s.profile, seed=s.spec.seed + rep))
    assert (results.runs["status"] == "ok").all(), results.runs["error"].tolist()
    back = read_results(write_results(folder / "res", results.tables))
    return back.extra["requests"], back.metrics, back.runs


def _per_run(written):
    requests, metrics, runs = written
    for run_id, label in zip(runs["run_id"], runs["policy_label"]):
        table = requests[requests["run_id"] == run_id].sort_values("request")
        values = metrics[(metrics["run_id"] == run_id) & (metrics["item"] == -1)].set_index("metric")["value"]
        yield label, table, values


def test_every_policy_ran_with_requests_that_queue(written):
    labels = []
    for label, table, _ in _per_run(written):
        labels.append(label)
        assert len(table) == len(PROMPTS) and (table["status"] == "ok").all()
        queued = table["admitted_us"] - table["arrival_us"]
        # arrivals far faster than service: most requests wait, some for several prefills
        assert (queued > 0).mean() >= 0.5, label
        assert queued.max() > 10 * ARRIVAL_GAP_US * len(PROMPTS) / 4, label
    assert labels == ["one-at-a-time", "window-2ms", "adaptive", "adaptive-staggered"]


def test_timestamps_are_in_order_and_arrivals_are_the_trace(written):
    for label, table, _ in _per_run(written):
        np.testing.assert_array_equal(table["arrival_us"], ARRIVALS_US, err_msg=label)
        assert (table["admitted_us"] >= table["arrival_us"]).all(), label
        assert (table["first_token_us"] > table["admitted_us"]).all(), label
        assert (table["last_token_us"] >= table["first_token_us"]).all(), label
        one = table["output_tokens"] == 1
        assert (table.loc[one, "last_token_us"] == table.loc[one, "first_token_us"]).all(), label


def test_each_figure_is_its_defining_difference_per_request(written):
    for label, table, _ in _per_run(written):
        arrival, admitted = table["arrival_us"], table["admitted_us"]
        first, last, n = table["first_token_us"], table["last_token_us"], table["output_tokens"]
        np.testing.assert_array_equal(table["queue_us"], admitted - arrival, err_msg=label)
        np.testing.assert_array_equal(table["ttft_us"], first - arrival, err_msg=label)
        np.testing.assert_array_equal(table["e2e_us"], last - arrival, err_msg=label)
        many = n > 1
        np.testing.assert_array_equal(table.loc[many, "tpot_us"], ((last - first) / (n - 1))[many], err_msg=label)
        assert table.loc[~many, "tpot_us"].isna().all(), label
        # and so, as a queued request sees them: TTFT = queue + (first token - admitted)
        np.testing.assert_allclose(table["ttft_us"], table["queue_us"] + (first - admitted), rtol=1e-12)


def test_run_level_figures_are_the_percentiles_of_the_differences(written):
    for label, table, values in _per_run(written):
        arrival, many = table["arrival_us"], table["output_tokens"] > 1
        differences = {
            "queue": table["admitted_us"] - arrival,
            "ttft": table["first_token_us"] - arrival,
            "e2e": table["last_token_us"] - arrival,
            "tpot": ((table["last_token_us"] - table["first_token_us"]) / (table["output_tokens"] - 1))[many],
        }
        for name, per_request in differences.items():
            x = per_request.to_numpy(dtype=float)
            for tag, q in PERCENTILES:
                assert values[f"{name}_{tag}_us"] == pytest.approx(np.percentile(x, q), rel=1e-12), (label, name, tag)
            assert values[f"{name}_mean_us"] == pytest.approx(x.mean(), rel=1e-12), (label, name)


# --------------------------------------------------------------------------- the server's own log

H100 = load_profile("h100-sxm-pcie5")
COST = load_cost_model("engine-pmat-quoted")


def _queued_inputs() -> BatchingInputs:
    table = RequestTable(
        np.array(ARRIVALS_US), np.array(PROMPTS, float), np.array(OUTPUTS, float), "every 100 µs: they queue"
    )
    screened = screen(table, COST.context_limit_tokens, "error")
    return BatchingInputs(screened, COST, COST.context_limit_tokens, 0, 0.0, "queued")


@pytest.mark.parametrize("max_batch", [1, 3])
def test_inter_token_gaps_add_up_to_each_decode_and_one_slot_serves_in_turn(max_batch):
    inputs = _queued_inputs()
    params = FixedWindowParams(max_batch=max_batch, fast_path=False, window_ms=0.0)
    log = run_policy(SimBackend(H100, seed=1), fixed_window, inputs, params).result
    frame = requests_frame(inputs, log).sort_values("request")
    itl = log.itl_us()
    # the server logs every gap between consecutive tokens as it happens: one per token after the first,
    # together the whole decode time of every request, so that mean TPOT weighted by gaps is mean ITL
    assert len(itl) == int((frame["output_tokens"] - 1).sum())
    decode_us = frame["last_token_us"] - frame["first_token_us"]
    assert itl.sum() == pytest.approx(decode_us.sum(), rel=1e-12)
    many = frame["output_tokens"] > 1
    weighted_tpot = (frame.loc[many, "tpot_us"] * (frame.loc[many, "output_tokens"] - 1)).sum() / len(itl)
    assert weighted_tpot == pytest.approx(itl.mean(), rel=1e-12)
    if max_batch == 1:
        # one slot: each request is admitted only after the one before it has its last token, so its queue
        # time covers the whole of that wait
        admitted, last = frame["admitted_us"].to_numpy(), frame["last_token_us"].to_numpy()
        assert (admitted[1:] >= last[:-1]).all()
        assert (frame["queue_us"].to_numpy()[1:] >= last[:-1] - frame["arrival_us"].to_numpy()[1:]).all()
