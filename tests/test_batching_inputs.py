"""Request traces, importers, generators, cost models and bad input of the continuous-batching workload."""

from __future__ import annotations

import json
import textwrap
import tomllib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.errors import InputError
from harness.paths import REPO_ROOT, TRACES_DIR
from harness.results import read_results, write_results
from harness.runner import run_spec
from harness.spec import load_spec
from sim import SimBackend
from workloads.continuous_batching.cost_model import (
    available_cost_models,
    load_cost_model,
)
from workloads.continuous_batching.fit_cost_model import fit
from workloads.continuous_batching.generators import (
    gamma_arrivals_us,
    poisson_arrivals_us,
)
from workloads.continuous_batching.metrics import REQUESTS_SCHEMA
from workloads.continuous_batching.requests import (
    RequestTable,
    _row_problem,
    read_request_csv,
    read_requests,
    screen,
    write_request_parquet,
)

# Slices of the Azure LLM inference trace 2023 (tests/data/public/README.md says how they were cut).
AZURE = Path(__file__).resolve().parent / "data" / "public" / "azure2023"


def sim_factory(spec, rep):
    return SimBackend(spec.profile, seed=spec.spec.seed + rep)


def write_spec(
    tmp_path: Path, csv_text: str, extra: str = "", policies: str = '[[policies]]\nname = "adaptive"\n'
) -> Path:
    (tmp_path / "reqs.csv").write_text(textwrap.dedent(csv_text).lstrip())
    spec = tmp_path / "spec.toml"
    spec.write_text(
        f'name = "t"\nprofile = "h100-sxm-pcie5"\n[workload]\nkind = "continuous_batching"\n'
        f'cost_model = "engine-pmat-quoted"\ntrace = "reqs.csv"\n{extra}\n{policies}'
    )
    return spec


# ------------------------------------------------------------------ bad input: a clear error naming the row


@pytest.mark.parametrize(
    ("rows", "row", "needle"),
    [
        ("0,10,5\n1000,0,5\n", 1, "prompt_tokens must be a whole number >= 1, got 0"),
        ("0,10,5\n1000,10,-3\n", 1, "output_tokens must be a whole number >= 1, got -3"),
        ("0,10,5\nnan,10,5\n", 1, "arrival_us is nan"),
        ("0,10,5\n2000,10,5\n1000,10,5\n", 2, "earlier than the previous request's 2000"),
        ("0,10,5\n10,5000,5\n", 1, "exceeds the context limit of 4096 tokens"),
        ("-5,10,5\n", 0, "arrival_us is negative"),
    ],
)
def test_bad_rows_stop_with_an_error_naming_the_row(tmp_path, rows, row, needle):
    spec = write_spec(tmp_path, "arrival_us,prompt_tokens,output_tokens\n" + rows)
    loaded = load_spec(spec)
    with pytest.raises(InputError) as err:
        run_spec(loaded, sim_factory)
    assert f"row {row}" in str(err.value) and needle in str(err.value)
    assert str(tmp_path / "reqs.csv") in str(err.value)


def test_non_numeric_cell_is_named(tmp_path):
    spec = write_spec(tmp_path, "arrival_us,prompt_tokens,output_tokens\n0,10,5\n5,ten,5\n")
    with pytest.raises(InputError, match=r"row 1, column 'prompt_tokens': not a number: 'ten'"):
        run_spec(load_spec(spec), sim_factory)


def test_reject_mode_counts_and_lists_bad_rows(tmp_path):
    spec = write_spec(
        tmp_path,
        "arrival_us,prompt_tokens,output_tokens\n0,10,5\n100,0,5\n200,12,6\n300,5000,5\n400,8,nan\n500,9,4\n",
        extra='on_invalid = "reject"',
    )
    results = run_spec(load_spec(spec), sim_factory)
    assert (results.runs["status"] == "ok").all()
    m = results.metrics.set_index("metric")["value"]
    assert m["rejected_requests"] == 3 and m["completed_requests"] == 3
    table = results.tables["requests"].to_pandas()
    rejected = table[table["status"] == "rejected"].sort_values("request")
    assert rejected["request"].tolist() == [1, 3, 4]
    assert rejected["reason"].str.len().gt(0).all() and (rejected["tokens_emitted"] == 0).all()
    served = table[table["status"] == "ok"].sort_values("request")
    assert served["request"].tolist() == [0, 2, 5]
    assert (served["tokens_emitted"] == served["output_tokens"]).all()


def test_spec_field_errors_name_the_field(tmp_path):
    spec = tmp_path / "s.toml"
    spec.write_text(
        'name = "t"\nprofile = "h100-sxm-pcie5"\n[workload]\nkind = "continuous_batching"\n'
        'cost_model = "engine-pmat-quoted"\narrivals = "poisson"\nrequests = 5\nprompt_tokens = 10\n'
        'output_tokens = [8, 4]\n[[policies]]\nname = "adaptive"\n'
    )
    with pytest.raises(InputError, match=r"field 'workload.output_tokens'.*empty"):
        load_spec(spec)
    spec.write_text(spec.read_text().replace("output_tokens = [8, 4]", "output_tokens = 4"))
    with pytest.raises(InputError, match="rate_per_s"):
        load_spec(spec)
    spec.write_text(
        spec.read_text().replace('cost_model = "engine-pmat-quoted"', 'cost_model = "nope"\nrate_per_s = 2.0')
    )
    with pytest.raises(InputError, match="cost model not found"):
        run_spec(load_spec(spec), sim_factory)


# ------------------------------------------------------------------ formats and importers


def test_azure_layout_csv_is_read_as_microseconds_since_the_first_row(tmp_path):
    path = tmp_path / "azure.csv"
    path.write_text(
        "TIMESTAMP,ContextTokens,GeneratedTokens\n2023-11-16 18:15:46.6805900,374,44\n"
        "2023-11-16 18:15:50.9951690,396,109\n2023-11-16 18:15:51.2224670,879,55\n"
    )
    table = read_request_csv(path)
    assert table.arrival_us.tolist() == pytest.approx([0.0, 4_314_579.0, 4_541_877.0])
    assert table.prompt_tokens.tolist() == [374, 396, 879] and table.output_tokens.tolist() == [44, 109, 55]


def test_unknown_csv_header_is_an_error(tmp_path):
    path = tmp_path / "x.csv"
    path.write_text("time,in,out\n0,1,1\n")
    with pytest.raises(InputError, match="header.*Azure layout"):
        read_request_csv(path)


def test_parquet_round_trip_keeps_provenance_and_refuses_files_without_it(tmp_path):
    out = write_request_parquet(tmp_path / "r.parquet", [0.0, 5.0], [3, 4], [2, 1], source="unit test")
    table = read_requests(out)
    assert table.prompt_tokens.tolist() == [3, 4] and table.arrival_us.tolist() == [0.0, 5.0]
    pd.DataFrame({"arrival_us": [0.0], "prompt_tokens": [1], "output_tokens": [1]}).to_parquet(
        tmp_path / "bare.parquet"
    )
    with pytest.raises(InputError, match="format_version"):
        read_requests(tmp_path / "bare.parquet")
    with pytest.raises(InputError, match="row 1"):
        write_request_parquet(tmp_path / "bad.parquet", [0.0, 5.0], [3, 0], [2, 1], source="unit test")
    assert not (tmp_path / "bad.parquet").exists()


def test_bundled_azure_sample_matches_the_public_trace():
    sample = read_requests(TRACES_DIR / "requests" / "azure_conv_first300.parquet")
    assert len(sample) == 300 and sample.arrival_us[0] == 0.0
    public = read_request_csv(AZURE / "AzureLLMInferenceTrace_conv.csv")  # the public trace's first 300 rows
    assert len(public) == 300
    np.testing.assert_allclose(sample.arrival_us, public.arrival_us)
    np.testing.assert_array_equal(sample.prompt_tokens, public.prompt_tokens)
    np.testing.assert_array_equal(sample.output_tokens, public.output_tokens)


def test_real_azure_code_trace_is_ordered_and_positive():
    table = read_request_csv(AZURE / "AzureLLMInferenceTrace_code.csv")  # every 20th of 8,819 rows and the last
    assert len(table) == 442
    assert (np.diff(table.arrival_us) >= 0).all() and table.arrival_us[-1] > 3.4e9
    assert table.prompt_tokens.min() >= 1 and table.output_tokens.min() >= 1


def test_generators_have_the_asked_rate_and_variability():
    rng = np.random.default_rng(0)
    poisson = np.diff(poisson_arrivals_us(20_000, 10.0, rng))
    assert poisson.mean() == pytest.approx(1e5, rel=0.03) and poisson.std() / poisson.mean() == pytest.approx(
        1.0, rel=0.05
    )
    bursty = np.diff(gamma_arrivals_us(20_000, 10.0, 3.0, rng))
    assert bursty.mean() == pytest.approx(1e5, rel=0.1) and bursty.std() / bursty.mean() == pytest.approx(3.0, rel=0.1)


# ------------------------------------------------------------------ cost models


def test_bundled_cost_models_load_and_say_where_they_came_from():
    names = available_cost_models()
    assert {"engine-pmat-quoted", "h100-tinyllama1b-eager", "h100-tinyllama1b-graphs"} <= set(names)
    for name in names:
        model = load_cost_model(name)
        assert model.provenance.source and model.provenance.hardware
        assert model.decode_us(4, 400) > 0 and model.fast_decode_us(100) > 0
        assert model.prefill_us((512,) * 4) >= model.prefill_us((512,))  # more prompts never cost less
    engine = load_cost_model("engine-pmat-quoted")
    assert engine.fast_decode_us(100) == 6700.0  # quoted: 256 tokens x 6.7 ms
    assert engine.join_us(30) == pytest.approx(
        14_600.9
    )  # quoted 14 ms per join (+ 30 prompt tokens, 0.9 of them squared)
    assert engine.prefill_us((8,) * 4) == pytest.approx(20_640.0, abs=1.0)  # quoted 20 ms for the c=4 prefill


@pytest.mark.parametrize("variant", ["eager", "graphs"])
def test_measured_cost_models_are_reproduced_from_the_committed_measurement(variant):
    raw = json.loads(
        (
            REPO_ROOT / "measurements" / "2026-11-23_h100_batching-step-cost-run2" / "h100-tinyllama1b-run2.json"
        ).read_text()
    )
    name = f"h100-tinyllama1b-{variant}"
    refit = fit(raw, variant, name, "measurements/2026-11-23_h100_batching-step-cost-run2/h100-tinyllama1b-run2.log")
    shipped = tomllib.loads((TRACES_DIR / "cost_models" / f"{name}.toml").read_text())
    for table in ("prefill", "decode", "join", "fast_decode"):
        assert refit[table] == shipped[table], table
    graph = {row["m"]: row["graph_us"] for row in raw["decode_static"]}
    model = load_cost_model(name)
    for m, us in graph.items():  # the fitted decode step tracks the CUDA-graph measurement within 10%
        assert model.decode_us(m, 0) >= us * 0.9
        if variant == "graphs":
            assert model.decode_us(m, 0) == pytest.approx(us, rel=0.1)


def test_cost_model_file_errors_name_the_field(tmp_path):
    bad = tmp_path / "m.toml"
    text = (
        (TRACES_DIR / "cost_models" / "engine-pmat-quoted.toml")
        .read_text()
        .replace("base_us = 12300.0", "base_us = -1.0")
    )
    bad.write_text(text)
    with pytest.raises(InputError, match=r"decode.base_us"):
        load_cost_model(str(bad))


# ------------------------------------------------------------------ the requests results table


def test_requests_table_is_written_with_run_id_in_every_row(tmp_path):
    loaded = load_spec(TRACES_DIR / "specs" / "batching_c1_window.toml")
    results = run_spec(loaded, sim_factory)
    requests = results.tables["requests"]
    assert requests.schema.names == REQUESTS_SCHEMA.names
    frame = requests.to_pandas()
    assert set(frame["run_id"]) == set(results.runs["run_id"])
    assert len(frame) == 40 * len(results.runs)
    out = write_results(tmp_path / "res", results.tables)
    back = read_results(out)
    assert "requests" in back.extra and len(back.extra["requests"]) == len(frame)
    ttft = back.metrics[(back.metrics["metric"] == "ttft_p50_us")].merge(back.runs[["run_id", "policy_label"]])
    per_request = back.extra["requests"].groupby("run_id")["ttft_us"].median()
    for _, row in ttft.iterrows():
        assert row["value"] == pytest.approx(per_request[row["run_id"]])


@pytest.mark.parametrize(
    "arrivals", ['arrivals = "poisson"\nrate_per_s = 20.0', 'arrivals = "bursty"\nrate_per_s = 20.0\ncv = 4.0']
)
def test_generated_open_loop_specs_serve_every_request(tmp_path, arrivals):
    spec = tmp_path / "g.toml"
    spec.write_text(
        'name = "g"\nprofile = "h100-sxm-pcie5"\nseed = 3\n[workload]\nkind = "continuous_batching"\n'
        f'cost_model = "h100-tinyllama1b-graphs"\n{arrivals}\nrequests = 60\nprompt_tokens = [8, 512]\n'
        'output_tokens = [4, 64]\n[[policies]]\nname = "adaptive"\nmax_batch = 8\n'
        '[[policies]]\nname = "fixed_window"\nwindow_ms = 5.0\n'
    )
    results = run_spec(load_spec(spec), sim_factory)
    assert (results.runs["status"] == "ok").all()
    table = results.tables["requests"].to_pandas()
    assert len(table) == 120 and (table["tokens_emitted"] == table["output_tokens"]).all()
    arrivals_by_run = table.groupby("run_id")["arrival_us"].apply(lambda s: s.sort_values().to_numpy())
    np.testing.assert_allclose(*arrivals_by_run.to_list())  # both policies saw the same generated arrivals


def test_a_table_without_a_schema_fails_the_run_not_the_spec():
    import dataclasses

    loaded = load_spec(TRACES_DIR / "specs" / "batching_c1_window.toml")
    bogus = dataclasses.replace(loaded.workload, tables=lambda inputs, ops, log: {"bogus": pd.DataFrame({"x": [1]})})
    results = run_spec(dataclasses.replace(loaded, workload=bogus), sim_factory)
    assert (results.runs["status"] == "failed").all()
    assert results.runs["error"].str.contains("without a schema in extra_tables").all()
    assert results.metrics.empty  # no metrics left behind for a failed run
    assert results.tables["requests"].num_rows == 0


# ------------------------------------------------------------------ screening: the vectorised paths equal the row loop

_VALUE = st.one_of(
    st.sampled_from([0.0, 1.0, 2.0, 5.0, 100.0, 2.5, -1.0, float("nan"), float("inf"), 4096.0]),
    st.floats(0.0, 1e6, allow_nan=False),
)


def _screened_row_by_row(table, limit, on_invalid):
    """The definition: each row in turn against the last kept arrival (requests._row_problem)."""
    kept, rejected, previous = [], [], 0.0
    for i in range(len(table)):
        a, p, o = float(table.arrival_us[i]), float(table.prompt_tokens[i]), float(table.output_tokens[i])
        problem = _row_problem(a, p, o, previous, limit)
        if problem:
            if on_invalid == "error":
                return ("error", i, problem)
            rejected.append((i, problem))
            continue
        kept.append(i)
        previous = a
    return (kept, rejected)


@settings(max_examples=300, deadline=None)
@given(
    rows=st.lists(st.tuples(_VALUE, _VALUE, _VALUE), max_size=12),
    sorted_arrivals=st.booleans(),
    limit=st.sampled_from([None, 200, 5000]),
    on_invalid=st.sampled_from(["error", "reject"]),
)
def test_screening_keeps_and_rejects_the_rows_the_row_loop_does(rows, sorted_arrivals, limit, on_invalid) -> None:
    """``screen`` checks a trace with numpy and explains only the bad rows; what it keeps, what it sets aside
    and why (or the error it raises) are what checking every row in turn gives."""
    arrivals = [r[0] for r in rows]
    if sorted_arrivals:  # mostly the case of real traces: bad rows among good ones in order
        arrivals = sorted(arrivals, key=lambda x: (np.isnan(x), x))
    table = RequestTable(
        np.array(arrivals, dtype=float),
        np.array([r[1] for r in rows], dtype=float),
        np.array([r[2] for r in rows], dtype=float),
        "t.csv",
    )
    expected = _screened_row_by_row(table, limit, on_invalid)
    if expected[0] == "error":
        with pytest.raises(InputError, match=f"row {expected[1]}") as raised:
            screen(table, limit, on_invalid)
        assert expected[2] in str(raised.value)
        return
    got = screen(table, limit, on_invalid)
    assert got.row.tolist() == expected[0]
    assert [(r.row, r.reason) for r in got.rejected] == expected[1]
    assert got.arrival_us.tolist() == [float(table.arrival_us[i]) for i in expected[0]]
    assert got.prompt_tokens.dtype == np.int64 and got.arrival_us.dtype == np.float64
