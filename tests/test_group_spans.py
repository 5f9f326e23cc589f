"""build_program's per-group spans through the groups' codes (arrays) are those of the frame group-bys."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from workloads.recorded.program import TEXT_CODE, _group_spans, _shared_strings


def _frames(seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(seed)
    names = np.array([f"layer{k}" for k in range(12)] + [None], dtype=object)
    calls = pd.DataFrame(
        {
            "group": names[rng.integers(0, len(names), 300)],
            "start_us": rng.integers(0, 40, 300).astype(float),  # ties among the groups' first starts
        }
    )
    ops = pd.DataFrame(
        {
            "group": names[rng.integers(0, len(names) - 3, 200)],  # some groups have no ops
            "start_us": rng.random(200) * 100,
            "duration_us": rng.random(200) * 10,
        }
    )
    return calls, ops


def _with_codes(frame: pd.DataFrame, categories: list) -> pd.DataFrame:
    """The frame as build_program has it: groups as Python strings, their codes beside them."""
    values, codes = _shared_strings(pd.Series(pd.Categorical(frame["group"], categories=categories)))
    return frame.assign(group=pd.Series(values, dtype=object), **{TEXT_CODE.format("group"): codes})


@pytest.mark.parametrize("seed", range(6))
def test_spans_by_code_are_the_frames(seed):
    calls, ops = _frames(seed)
    categories = sorted({g for g in calls["group"].tolist() + ops["group"].tolist() if isinstance(g, str)}, reverse=True)
    by_code = _group_spans(_with_codes(calls, categories), _with_codes(ops, categories))
    by_frame = _group_spans(calls, ops)
    assert by_code == by_frame and len(by_frame) > 3


@pytest.mark.parametrize("order", ["increasing", "shuffled", "duplicates", "missing"])
def test_each_correlations_latest_end_is_the_group_by_max(order: str):
    from workloads.recorded.program import _ends_by_correlation

    rng = np.random.default_rng(7)
    correlation = np.arange(10, 210, 2, dtype=np.int64)
    if order == "shuffled":
        rng.shuffle(correlation)
    elif order == "duplicates":
        correlation[5:9] = correlation[4]
    calls = pd.DataFrame(
        {"correlation": correlation, "start_us": rng.random(100) * 50, "duration_us": rng.random(100) * 5}
    )
    if order == "missing":  # correlations as floats, some NaN: those calls belong to no correlation
        calls["correlation"] = calls["correlation"].astype(float).where(rng.random(100) > 0.2)
    expected = (calls["start_us"] + calls["duration_us"]).groupby(calls["correlation"]).max()
    keys, ends = _ends_by_correlation(calls)
    assert keys.dtype == expected.index.dtype and ends.dtype == np.float64
    np.testing.assert_array_equal(keys, expected.index.to_numpy())
    np.testing.assert_array_equal(ends, expected.to_numpy())  # bit for bit: the same sums
