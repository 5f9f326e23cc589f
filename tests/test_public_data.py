"""The public data slices in tests/data/public/: each has its provenance and licence, and the cutter
(tools/cut_test_data.py) keeps a Kineto window consistent: every kept GPU op has its launch, and the reverse."""

from __future__ import annotations

import gzip
import importlib.util
import json
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PUBLIC = ROOT / "tests" / "data" / "public"


@pytest.fixture(scope="module")
def cutter():
    spec = importlib.util.spec_from_file_location("cut_test_data", ROOT / "tools" / "cut_test_data.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up there
    spec.loader.exec_module(module)
    yield module
    del sys.modules[spec.name]


def test_every_slice_is_listed_with_its_source_and_every_folder_has_a_licence(cutter):
    readme = (PUBLIC / "README.md").read_text()
    files = sorted(p.relative_to(PUBLIC).as_posix() for p in PUBLIC.rglob("*") if p.is_file())
    slices = [f for f in files if not f.endswith(("README.md", "LICENSE"))]
    expected = [f"kineto_hta/{n}" for n in cutter.KINETO_COPIED + tuple(w.name for w in cutter.KINETO_WINDOWS)]
    expected += [f"azure2023/{r.name}" for r in cutter.AZURE]
    assert sorted(slices) == sorted(expected)  # the cutter makes every committed slice, and nothing else is here
    for f in slices:
        assert f"`{f}`" in readme, f"{f} has no row in tests/data/public/README.md"
        assert (PUBLIC / f).parent.joinpath("LICENSE").is_file(), f"{f}: no LICENSE beside it"
    assert sum((PUBLIC / f).stat().st_size for f in slices) < 400 * 1024  # small: a few hundred KB at most


def _x(cat: str, ts: float, dur: float = 1.0, **args) -> dict:
    gpu = cat in ("kernel", "gpu_user_annotation")
    return {"ph": "X", "cat": cat, "name": cat, "pid": 0 if gpu else 10, "tid": 7 if gpu else 11, "ts": ts, "dur": dur,
            "args": args}  # fmt: skip


def test_a_kineto_window_keeps_launches_and_their_gpu_ops_together(cutter):
    step = {**_x("user_annotation", 1000.0, 900.0), "name": "ProfilerStep#7"}
    early, late = _x("cuda_runtime", 1010.0, correlation=1), _x("cuda_runtime", 1150.0, correlation=2)
    early_kernel, late_kernel = _x("kernel", 1400.0, 30.0, correlation=1), _x("kernel", 1160.0, correlation=2)
    flows = [
        {"ph": "s", "cat": "ac2g", "id": 1, "ts": 1010.0},
        {"ph": "f", "cat": "ac2g", "id": 1, "ts": 1400.0},
        {"ph": "s", "cat": "ac2g", "id": 2, "ts": 1150.0},
    ]
    meta = {"ph": "M", "name": "process_name", "pid": 0, "args": {"name": "GPU 0"}}
    gpu_annotations = [_x("gpu_user_annotation", 1420.0), _x("gpu_user_annotation", 1431.0)]
    trace = {
        "schemaVersion": 1,
        "traceEvents": [meta, step, early, late, early_kernel, late_kernel, *flows, *gpu_annotations],
    }
    cut = cutter.cut_kineto(trace, host_cut_us=100.0)
    kept = cut["traceEvents"]
    # host events before 1000 + 100; the kernel of the kept launch, though it runs after the cut; its flows;
    # the GPU annotation that starts before that kernel ends (at 1430), not the one after
    assert kept == [meta, step, early, early_kernel, flows[0], flows[1], gpu_annotations[0]]
    assert cut["schemaVersion"] == 1 and len(trace["traceEvents"]) == 11  # the source is left as it was
    with pytest.raises(ValueError, match="no ProfilerStep"):
        cutter.cut_kineto({"traceEvents": [early, early_kernel]}, 100.0)


def test_csv_rows_are_copied_verbatim_and_every_nth_keeps_the_last(cutter):
    text = "H\n" + "".join(f"r{i}\n" for i in range(45))
    assert cutter._csv_slice(text, cutter.CsvRows("x", first_rows=3)) == "H\nr0\nr1\nr2\n"
    assert cutter._csv_slice(text, cutter.CsvRows("x", every=20)) == "H\nr0\nr20\nr40\nr44\n"
    assert cutter._csv_slice(text[:-1], cutter.CsvRows("x", every=22)) == "H\nr0\nr22\nr44"  # last is a 22nd


def test_the_vendored_kineto_slices_are_gzipped_chrome_traces():
    for path in sorted((PUBLIC / "kineto_hta").glob("*.json.gz")):
        trace = json.loads(gzip.decompress(path.read_bytes()))
        assert trace["traceEvents"], path.name
