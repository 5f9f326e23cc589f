"""The command line end to end: results folders, determinism, atomic writes, bad input."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from harness import results as results_module
from harness.cli import app
from harness.paths import SPECS_DIR, TRACES_DIR
from harness.results import read_results
from harness.trace import Provenance, load_trace, write_trace

runner = CliRunner()

SPEC = """
name = "t"
profile = "h100-sxm-pcie5"
seed = 3

[workload]
kind = "layer_streaming"
segments = 6
param_bytes = 67108864
compute_us = 900.0
jitter = 0.3

[[policies]]
name = "sync"

[[policies]]
name = "prefetch"
depth = 2
"""


def write_spec(tmp_path: Path, text: str = SPEC) -> Path:
    path = tmp_path / "spec.toml"
    path.write_text(text)
    return path


def sim(*args: str):
    return runner.invoke(app, ["sim", *args])


def test_sim_writes_the_three_tables_with_one_row_per_run(tmp_path):
    out = tmp_path / "out"
    result = sim(str(write_spec(tmp_path)), "--out", str(out))
    assert result.exit_code == 0, result.output
    res = read_results(out)
    assert list(res.runs["policy_label"]) == ["sync", "prefetch"]
    assert set(res.runs["backend"]) == {"sim"} and set(res.runs["status"]) == {"ok"}
    assert res.runs.loc[1, "params_json"] == '{"depth": 2}'
    assert res.runs["package_version"].notna().all()
    assert set(res.ops["run_id"]) == set(res.runs["run_id"])
    makespans = res.metrics[(res.metrics["metric"] == "makespan_us")].set_index("run_id")["value"]
    assert makespans["t:prefetch:sim:r0"] < makespans["t:sync:sim:r0"]
    # The table printed at the end names the policies and the metrics.
    assert "prefetch" in result.output and "makespan_us" in result.output


def test_same_spec_and_seed_give_byte_identical_metrics(tmp_path):
    spec = write_spec(tmp_path)
    a, b = tmp_path / "a", tmp_path / "b"
    assert sim(str(spec), "--out", str(a)).exit_code == 0
    assert sim(str(spec), "--out", str(b)).exit_code == 0
    assert (a / "metrics.parquet").read_bytes() == (b / "metrics.parquet").read_bytes()
    assert (a / "ops.parquet").read_bytes() == (b / "ops.parquet").read_bytes()


def test_another_seed_changes_generated_inputs(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    assert sim(str(write_spec(tmp_path)), "--out", str(a)).exit_code == 0
    assert sim(str(write_spec(tmp_path, SPEC.replace("seed = 3", "seed = 4"))), "--out", str(b)).exit_code == 0
    assert (a / "metrics.parquet").read_bytes() != (b / "metrics.parquet").read_bytes()


def test_an_interrupted_write_leaves_nothing_behind(tmp_path, monkeypatch):
    calls = []
    real = pq.write_table

    def dying_write(table, where, *args, **kwargs):
        calls.append(where)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the user pressed Ctrl-C mid-write
        return real(table, where, *args, **kwargs)

    monkeypatch.setattr(results_module.pq, "write_table", dying_write)
    out = tmp_path / "out"
    sim(str(write_spec(tmp_path)), "--out", str(out))
    assert len(calls) == 2
    assert list(tmp_path.iterdir()) == [tmp_path / "spec.toml"]


def test_existing_results_are_never_overwritten(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    result = sim(str(write_spec(tmp_path)), "--out", str(out))
    assert result.exit_code != 0
    assert "already exists" in " ".join(result.output.split())
    assert list(out.iterdir()) == []


BAD_SPECS = [
    ("missing field", SPEC.replace('profile = "h100-sxm-pcie5"\n', ""), "field 'profile'", "Field required"),
    ("unknown profile", SPEC.replace("h100-sxm-pcie5", "tpu-v9"), "field 'profile'", "unknown hardware profile"),
    (
        "unknown policy",
        SPEC.replace('name = "sync"', 'name = "magic"'),
        "field 'policies[0].name'",
        "unknown policy 'magic'",
    ),
    ("unknown policy parameter", SPEC.replace("depth = 2", "dept = 2"), "field 'policies[1].dept'", "Extra inputs"),
    (
        "bad policy parameter",
        SPEC.replace("depth = 2", "depth = 0"),
        "field 'policies[1].depth'",
        "greater than or equal to 1",
    ),
    ("negative duration", SPEC.replace("compute_us = 900.0", "compute_us = -5.0"), "field 'workload'", "compute_us"),
    ("NaN duration", SPEC.replace("compute_us = 900.0", "compute_us = nan"), "field 'workload.compute_us'", "finite"),
    (
        "unknown workload",
        SPEC.replace('kind = "layer_streaming"', 'kind = "sorting"'),
        "field 'workload.kind'",
        "unknown workload",
    ),
    (
        "segment larger than device memory",
        SPEC.replace("param_bytes = 67108864", "param_bytes = 100000000000"),
        "field 'workload', segment",
        "exceeds device memory",
    ),
    (
        "segment larger than the budget",
        SPEC.replace("seed = 3", "seed = 3\ndevice_memory_bytes = 1000000"),
        "field 'workload', segment 0",
        "exceeds device memory of 1000000 bytes",
    ),
    ("malformed TOML", SPEC.replace("[workload]", "[workload"), "", "malformed TOML"),
    (
        "duplicate label",
        SPEC.replace('name = "prefetch"', 'name = "sync"').replace("depth = 2", ""),
        "field 'policies[1].label'",
        "used twice",
    ),
]


@pytest.mark.parametrize("case, text, where, message", BAD_SPECS, ids=[c[0] for c in BAD_SPECS])
def test_bad_specs_get_one_clear_error_and_write_nothing(tmp_path, case, text, where, message):
    spec = write_spec(tmp_path, text)
    out = tmp_path / "out"
    result = sim(str(spec), "--out", str(out))
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "error:" in flat and "spec.toml" in flat
    assert where in flat and message in flat
    assert not out.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["spec.toml"]


def _trace_spec(tmp_path: Path, trace: Path) -> Path:
    return write_spec(
        tmp_path,
        f'''
name = "tr"
profile = "h100-sxm-pcie5"
[workload]
kind = "layer_streaming"
trace = "{trace.name}"
[[policies]]
name = "sync"
''',
    )


def _ops():
    return pd.DataFrame(
        [
            dict(device=0, stream="s", kind="copy_h2d", name="p0", bytes=1 << 20, duration_us=28.0, group="g0"),
            dict(device=0, stream="s", kind="kernel", name="k0", bytes=0, duration_us=100.0, group="g0"),
            dict(device=0, stream="s", kind="copy_h2d", name="p1", bytes=1 << 20, duration_us=28.0, group="g1"),
            dict(device=0, stream="s", kind="kernel", name="k1", bytes=0, duration_us=100.0, group="g1"),
        ]
    )


PROVENANCE = Provenance(source="unit test", hardware="synthetic", date="2026-11-23")


@pytest.mark.parametrize(
    "column, row, value, message",
    [
        ("duration_us", 3, -1.0, "row 3, column 'duration_us'"),
        ("duration_us", 1, float("nan"), "row 1, column 'duration_us'"),
        ("kind", 2, "memcpy", "row 2, column 'kind'"),
        ("group", 2, None, "row 2, column 'group'"),
    ],
)
def test_bad_trace_rows_are_named(tmp_path, column, row, value, message):
    ops = _ops()
    ops[column] = ops[column].astype(object)
    ops.loc[row, column] = value
    trace = tmp_path / "trace.parquet"
    # Write without validation, as a foreign tool would.
    import pyarrow as pa

    table = pa.Table.from_pandas(ops, preserve_index=False).replace_schema_metadata(PROVENANCE.to_metadata())
    pq.write_table(table, trace)
    out = tmp_path / "out"
    result = sim(str(_trace_spec(tmp_path, trace)), "--out", str(out))
    assert result.exit_code == 2, result.output
    flat = " ".join(result.output.split())
    assert "trace.parquet" in flat and message in flat
    assert not out.exists()


def test_trace_without_provenance_or_not_parquet_is_rejected(tmp_path):
    import pyarrow as pa

    trace = tmp_path / "trace.parquet"
    pq.write_table(pa.Table.from_pandas(_ops(), preserve_index=False), trace)
    result = sim(str(_trace_spec(tmp_path, trace)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "harness.trace.format_version" in result.output
    trace.write_bytes(b"definitely not parquet")
    result = sim(str(_trace_spec(tmp_path, trace)), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2 and "not a readable Parquet file" in " ".join(result.output.split())


def test_trace_round_trip_keeps_rows_and_provenance(tmp_path):
    path = write_trace(tmp_path / "t.parquet", _ops(), PROVENANCE)
    trace = load_trace(path)
    assert trace.provenance == PROVENANCE
    assert list(trace.ops["duration_us"]) == [28.0, 100.0, 28.0, 100.0]
    assert trace.ops["start_us"].isna().all()  # optional columns are present, null


def test_bundled_trace_is_valid_and_says_it_is_synthetic():
    trace = load_trace(TRACES_DIR / "layer_streaming" / "dit_9seg_synthetic.parquet")
    assert trace.provenance.hardware == "synthetic" and "synthetic" in trace.provenance.source


def test_demo_runs_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = runner.invoke(app, ["demo", "--out", str(out)])
    assert result.exit_code == 0, result.output
    res = read_results(out)
    m = res.metrics[res.metrics["item"] == -1].pivot(index="run_id", columns="metric", values="value")
    sync, prefetch, resident = (
        m.loc[f"layer-streaming-demo:{p}:sim:r0", "makespan_us"] for p in ("sync", "prefetch", "resident")
    )
    assert resident < prefetch < sync
    assert m.loc["layer-streaming-demo:prefetch:sim:r0", "makespan_over_overlap_bound"] == pytest.approx(1.0, abs=0.005)


@pytest.mark.parametrize("spec", sorted(SPECS_DIR.glob("layer_streaming*.toml")), ids=lambda p: p.stem)
def test_bundled_layer_streaming_specs_run(tmp_path, spec):
    result = sim(str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 0, result.output


def test_bench_reports_ops_per_second():
    result = runner.invoke(app, ["bench", "--set", "segments=200", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert "ops/s" in result.output
    assert "998" in result.output  # 200 segments of prefetch: ~5 ops each (copy, record, wait, kernel, free ...)


def test_bench_runs_any_policy_of_the_spec_workload_and_refuses_unknown_ones(tmp_path):
    # A policy the spec does not list runs with its default parameters: the bench goes through prepare.
    text = (SPECS_DIR / "kv_backup_h20.toml").read_text()
    spec = tmp_path / "kv.toml"
    spec.write_text(text[: text.index("[[policies]]")] + '[[policies]]\nname = "inline"\n')
    result = runner.invoke(app, ["bench", str(spec), "--policy", "async_stream", "--repeat", "1"])
    assert result.exit_code == 0, result.output
    assert "async_stream" in result.output
    result = runner.invoke(app, ["bench", "--policy", "bogus"])
    assert result.exit_code == 2
    assert "no policy labelled or named 'bogus'; known: prefetch, resident, sync" in " ".join(result.output.split())


def test_a_sweep_expands_to_one_run_per_point_with_its_parameters(tmp_path):
    spec = write_spec(tmp_path, SPEC.replace("depth = 2", "sweep = { depth = [1, 3] }"))
    out = tmp_path / "out"
    result = sim(str(spec), "--out", str(out))
    assert result.exit_code == 0, result.output
    runs = read_results(out).runs
    assert list(runs["policy_label"]) == ["sync", "prefetch[depth=1]", "prefetch[depth=3]"]
    assert list(runs["params_json"])[1:] == ['{"depth": 1}', '{"depth": 3}']
    assert "prefetch[depth=3]" in " ".join(result.output.split())


def test_a_bad_sweep_value_is_named(tmp_path):
    spec = write_spec(tmp_path, SPEC.replace("depth = 2", "sweep = { depth = [1, 0] }"))
    result = sim(str(spec), "--out", str(tmp_path / "out"))
    assert result.exit_code == 2
    assert "field 'policies[1].depth'" in " ".join(result.output.split())
