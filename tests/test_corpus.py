"""The GPU corpus of plain PyTorch programs (issues 22 and 24): catalogue, programs, device script, tabulation.

The programs run here in their tiny CPU mode (torch on the CPU; skipped without it),
the device script in its --dry-run mode, the tabulation on the bundled H200 recordings.
"""

from __future__ import annotations

import ast
import gzip
import json
import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from harness.errors import InputError
from harness.paths import REPO_ROOT, TRACES_DIR
from harness.spec import load_spec

sys.path.insert(0, str(REPO_ROOT / "tools"))
import corpus_catalogue as catalogue  # noqa: E402
import corpus_table  # noqa: E402

CAT = catalogue.load_catalogue()
PROGRAMS_DIR = catalogue.CORPUS_DIR / "programs"
WHAT_IFS = {"async_d2h", "prefetch_copies", "graph_launch", "scale_kernels"}
RETABULATE = "re-run `python tools/corpus_table.py` (and `--bundled`) after changing the recorded workload"


def test_catalogue_has_the_issue_22_family_and_the_issue_24_pairs():
    family = {
        (p.file, p.options["size"], p.options["backup"])
        for p in CAT.programs.values()
        if p.file in ("decode_eager.py", "decode_graph.py")
    }
    assert family == {
        (f, s, b) for f in ("decode_eager.py", "decode_graph.py") for s in ("host", "mid", "gpu") for b in ("none", "inline")
    }
    assert len(CAT.pairs) >= 10
    what_ifs = set()
    for pair in CAT.pairs.values():
        loaded = load_spec(CAT.path.parent / pair.spec)
        labels = {r.label: r.policy.name for r in loaded.policies}
        assert labels["as_recorded"] == "as_recorded", pair.id
        assert labels["what_if"] in WHAT_IFS, pair.id
        what_ifs.add(labels["what_if"])
    assert {"async_d2h", "prefetch_copies", "graph_launch"} <= what_ifs
    assert any(p.expect == "does_not_pay" for p in CAT.pairs.values())
    # every program is timed and recorded by a job in the default mode
    assert all("sync" in CAT.jobs[p.job].modes for p in CAT.programs.values())


@pytest.mark.parametrize("path", sorted(PROGRAMS_DIR.glob("*.py")), ids=lambda p: p.stem)
def test_programs_are_plain_pytorch_scripts(path):
    tree = ast.parse(path.read_text())
    assert ast.get_docstring(tree), f"{path.name}: no module description"
    imported = {
        (n.module if isinstance(n, ast.ImportFrom) else a.name).split(".")[0]
        for n in ast.walk(tree)
        if isinstance(n, (ast.Import, ast.ImportFrom))
        for a in (n.names if isinstance(n, ast.Import) else [n])
    }
    assert not imported & {"harness", "sim", "replay", "workloads", "fidelity", "dashboard"}, path.name
    text = path.read_text()
    assert '"--steps"' in text and '"--warmup"' in text and "def run(self, steps: int)" in text


def test_catalogue_errors_name_the_file_and_the_entry(tmp_path):
    (tmp_path / "programs").mkdir()
    bad = tmp_path / "corpus.toml"
    bad.write_text('[[job]]\nid = "j"\nmodes = ["sync"]\nrounds = 3\n\n[[program]]\nid = "p"\nfile = "nope.py"\n'
                   'steps = 2\njob = "j"\n')
    with pytest.raises(catalogue.CatalogueError, match=r"corpus.toml: program\[0\] \(p\): no program file programs/nope.py"):
        catalogue.load_catalogue(bad)
    bad.write_text('[[job]]\nid = "j"\nmodes = ["everything"]\nrounds = 3\n')
    with pytest.raises(catalogue.CatalogueError, match=r"job\[0\] \(j\): modes must be some of sync, nosync, cudaonly"):
        catalogue.load_catalogue(bad)


def _program_class(file: str):
    import importlib.util

    spec = importlib.util.spec_from_file_location(f"corpus_test_{Path(file).stem}", PROGRAMS_DIR / file)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.Program


@pytest.mark.torch
def test_every_program_runs_tiny_on_the_cpu():
    import torch

    torch.set_num_threads(1)
    for p in CAT.programs.values():
        program = _program_class(p.file)("cpu", True, **p.options)
        program.run(2)  # the CUDA graph, side streams and pinned memory are guarded off on the CPU


@pytest.mark.torch
def test_device_script_dry_run_times_before_it_records_and_writes_a_manifest(tmp_path):
    (tmp_path / "programs").symlink_to(PROGRAMS_DIR)
    (tmp_path / "corpus.toml").write_text(
        '[[job]]\nid = "j"\nmodes = ["sync", "cudaonly"]\nrounds = 3\n\n'
        '[[program]]\nid = "eager"\nfile = "decode_eager.py"\noptions = { size = "host", backup = "inline" }\n'
        'steps = 30\njob = "j"\n\n'
        '[[program]]\nid = "prefetch"\nfile = "layers_prefetch.py"\noptions = { shape = "small", marks = "no" }\n'
        'steps = 3\njob = "j"\n'
    )
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, str(REPO_ROOT / "tools" / "corpus_gpu_run.py"), "--dry-run", "--out", str(out),
         "--catalogue", str(tmp_path / "corpus.toml")],
        capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dry_run"] and not manifest["failed_jobs"] and not manifest["program_errors"]
    rows = {(r["program"], r["mode"]): r for r in manifest["rows"]}
    assert set(rows) == {(p, m) for p in ("eager", "prefetch") for m in ("sync", "cudaonly")}
    assert len(manifest["samples"]["j"]["eager"]) == 2  # a dry run: 2 rounds
    for row in rows.values():
        assert row["unprofiled_min_us"] <= row["unprofiled_median_us"] <= row["unprofiled_max_us"]
        trace = json.loads(gzip.decompress((out / row["recording"]).read_bytes()))
        assert trace["traceEvents"] and row["recording_bytes"] == (out / row["recording"]).stat().st_size
    log = (out / "logs" / "j.log").read_text()
    assert log.index("unprofiled") < log.index("recorded eager")  # the truth is timed before any profiling
    assert (out / manifest["again"]["j"]["recording"]).exists()
    assert set(manifest["after_profiler"]["j"]) == {"eager", "prefetch"}
    assert (out / "manifest.csv").read_text().startswith("program,file,options,pairs,job,truth_job,mode")


def test_table_refuses_a_missing_or_dry_run_manifest(tmp_path):
    with pytest.raises(InputError, match="no manifest: run tools/corpus_gpu_run.py"):
        corpus_table.corpus_recordings(tmp_path)
    (tmp_path / "manifest.json").write_text(json.dumps({"dry_run": True, "rows": []}))
    with pytest.raises(InputError, match="a CPU dry run"):
        corpus_table.corpus_recordings(tmp_path)


def _bundled_pair(pair_id: str) -> list:
    return [corpus_table.Pair(i, b, c, catalogue.CORPUS_DIR / s, ch, e)
            for i, b, c, s, ch, e in corpus_table.BUNDLED_PAIRS if i == pair_id]


def test_table_of_the_bundled_async_d2h_pair():
    env, recordings = corpus_table.bundled_recordings()
    recordings = [r for r in recordings if r.program in ("decode_inline", "decode_async")]
    _, programs, pairs, _ = corpus_table.build(env, recordings, _bundled_pair("b2_async_d2h"), ("sync",))
    assert list(programs["program"]) == ["decode_inline", "decode_async"]
    assert (programs["error_vs_recording"].abs() < 0.01).all()  # as_recorded reproduces each recording
    assert programs["recording_vs_unprofiled"].min() > 0.2  # under the profiler these ran 25% slower
    row = pairs.iloc[0]
    assert row["predicted_change"] == pytest.approx(row["what_if_us"] / row["as_recorded_us"] - 1)
    assert row["real_change_recorded"] == pytest.approx(row["changed_recorded_us"] / row["base_recorded_us"] - 1)
    assert row["predicted_change"] < -0.01 and row["sign_agrees_recorded"]
    params = load_spec(catalogue.CORPUS_DIR / "specs" / "async_d2h.toml").policies[0].params
    if "profiler_overhead" in type(params).model_fields:  # compensation has landed: a figure, or why not
        if math.isnan(row["what_if_unprofiled_us"]):  # the recording's profile has no profiler calibration yet
            assert "CannotCompensate" in row["note_unprofiled"] and "calibrate --profiler" in row["note_unprofiled"]
    else:
        assert row["note_unprofiled"] == corpus_table.NO_COMPENSATION and math.isnan(row["what_if_unprofiled_us"])


@pytest.mark.parametrize("folder", [TRACES_DIR / "recorded" / "bundled_table", catalogue.CORPUS_DIR])
def test_committed_tables_rederive_from_the_bundled_recordings(folder):
    """The committed tables' predictions are what this tree predicts from the bundled recordings (sync mode)."""
    if not (folder / "pairs.parquet").exists():
        pytest.skip(f"no table in {folder} yet (the corpus is tabulated once the device run's recordings are in)")
    table = pd.read_parquet(folder / "pairs.parquet")
    table = table[table["mode"] == "sync"]
    if folder == catalogue.CORPUS_DIR:
        env, recordings = corpus_table.corpus_recordings(folder)
        pairs = [corpus_table.Pair(p.id, p.base, p.changed, folder / p.spec, p.change, p.expect)
                 for p in CAT.pairs.values()]
    else:
        env, recordings = corpus_table.bundled_recordings()
        pairs = [corpus_table.Pair(i, b, c, catalogue.CORPUS_DIR / s, ch, e)
                 for i, b, c, s, ch, e in corpus_table.BUNDLED_PAIRS]
    _, _, derived, _ = corpus_table.build(env, recordings, pairs, ("sync",))
    merged = table.merge(derived, on=["pair", "mode"], suffixes=("", "_now"))
    assert len(merged) == len(table)
    for column in ("as_recorded_us", "what_if_us", "base_recorded_us", "changed_recorded_us"):
        now, then = merged[f"{column}_now"].to_numpy(), merged[column].to_numpy()
        same = (now == pytest.approx(then, rel=1e-9, nan_ok=True))
        assert same, f"{folder.name}: {column} differs from the committed table: {RETABULATE}"


def test_table_of_a_device_run_writes_programs_pairs_and_after_effects(tmp_path, capsys):
    """A device run's folder (here: bundled H200 recordings standing in for two corpus programs), end to end."""
    corpus = tmp_path / "corpus"
    (corpus / "recordings").mkdir(parents=True)
    (corpus / "programs").symlink_to(PROGRAMS_DIR)
    (corpus / "specs").symlink_to(catalogue.CORPUS_DIR / "specs")
    (corpus / "corpus.toml").write_text(
        '[[job]]\nid = "backups"\nmodes = ["sync"]\nrounds = 11\n\n'
        '[[program]]\nid = "inline"\nfile = "backup_step.py"\nsteps = 24\njob = "backups"\n\n'
        '[[program]]\nid = "async"\nfile = "backup_step_async.py"\nsteps = 24\njob = "backups"\n\n'
        '[[pair]]\nid = "p1"\nbase = "inline"\nchanged = "async"\nspec = "specs/async_d2h.toml"\n'
        'change = "side stream"\nexpect = "pays"\n'
    )
    bundled = TRACES_DIR / "recorded"
    for name, source in (("inline-sync", "decode_inline-sync"), ("async-sync", "decode_async-sync"),
                         ("inline-sync-again", "decode_inline")):
        (corpus / "recordings" / f"{name}.json.gz").write_bytes((bundled / f"{source}.json.gz").read_bytes())
    row = dict(job="backups", truth_job="backups", mode="sync", unprofiled_min_us=1.0, unprofiled_max_us=9e9)
    manifest = {
        "environment": {"gpu": "NVIDIA H200", "torch": "2.11.0+cu130", "cuda": "13.0", "driver": "580"},
        "rows": [
            {**row, "program": "inline", "recording": "recordings/inline-sync.json.gz", "unprofiled_median_us": 38246.0},
            {**row, "program": "async", "recording": "recordings/async-sync.json.gz", "unprofiled_median_us": 35316.0},
        ],
        "again": {"backups": {"program": "inline", "mode": "sync", "recording": "recordings/inline-sync-again.json.gz"}},
        "after_profiler": {"backups": {"inline": 0.29, "async": 0.25}},
    }
    (corpus / "manifest.json").write_text(json.dumps(manifest))
    corpus_table.main(["--corpus", str(corpus)])
    text = capsys.readouterr().out
    assert (corpus / "recordings" / "inline-sync.parquet").exists()  # imported once, beside the recording
    pairs = pd.read_parquet(corpus / "pairs.parquet")
    assert list(pairs["pair"]) == ["p1"] and pairs["real_change_unprofiled"].iloc[0] == pytest.approx(35316 / 38246 - 1)
    effects = pd.read_parquet(corpus / "effects.parquet")
    assert effects["again_vs_first"].iloc[0] == pytest.approx(50357 / 47988 - 1, abs=0.002)  # the no-sync recording
    assert effects["unprofiled_after_profiling_median"].iloc[0] == pytest.approx(0.27)
    assert "| p1 | sync | async_d2h |" in text and "## The profiler's after-effects" in text
    assert "provenance_recorded_on" in pd.read_parquet(corpus / "programs.parquet").columns


def test_rounds_pair_each_changed_run_with_its_base_in_the_same_round_and_split_them_by_order(capsys):
    import corpus_rounds

    # the run order alternates: A B C in even rounds, C B A in odd ones
    assert corpus_rounds.round_order(["a", "b", "c"], 0, "a", "b") == "changed right after base"
    assert corpus_rounds.round_order(["a", "b", "c"], 1, "a", "b") == "base right after changed"
    assert corpus_rounds.round_order(["a", "b", "c"], 0, "a", "c") == "apart"
    manifest = {"samples": {"job": {"a": [100.0, 100.0, 200.0, 100.0], "b": [120.0, 101.0, 240.0, 99.0]}}}
    rounds = corpus_rounds.pair_rounds(manifest, "p", "a", "b")
    assert rounds.changes == pytest.approx((0.2, 0.01, 0.2, -0.01))  # per round, not a ratio of medians
    assert rounds.of("changed right after base") == pytest.approx([0.2, 0.2])
    assert rounds.of("base right after changed") == pytest.approx([0.01, -0.01])
    assert corpus_rounds.pair_rounds(manifest, "p", "a", "missing") is None
    # the committed corpus: p05's change depends on which of its programs ran first (issue 24)
    assert corpus_rounds.main(["--pair", "p04_prefetch_pinned", "p05_prefetch_pageable"]) == 0
    table = capsys.readouterr().out
    p05 = next(line for line in table.splitlines() if line.startswith("| p05"))
    assert "+14.1% (-6.8% to +19.4%, n=6) | +0.6% (-0.2% to +1.5%, n=5)" in p05
    assert corpus_rounds.main(["--pair", "p99"]) == 2


def test_rounds_copies_show_the_pageable_prefetch_programs_copies_slower_from_the_first_one_on(capsys):
    # Issue 24, p05: the changed recording's copies ran 3.1% longer on average, and its first copy (issued with
    # nothing before it on the GPU, where no prefetch mechanism is at work) 7.1% longer than the base's first
    import corpus_rounds

    assert corpus_rounds.main(["--pair", "p05_prefetch_pageable", "--copies"]) == 0
    lines = capsys.readouterr().out.splitlines()
    base = next(line for line in lines if line.startswith("| layers_pageable |"))
    changed = next(line for line in lines if line.startswith("| layers_pageable_prefetch |"))
    assert "| 16 | 12,656 (12,344-13,022) | 12,504 |" in base
    assert "| 16 | 13,049 (12,586-13,490) | 13,387 |" in changed
