"""isin_ids: pandas' isin of integer ids, by a bitmap (harness.id_membership)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from hypothesis import given, settings
from hypothesis import strategies as st

from harness.id_membership import isin_ids

IDS = st.one_of(
    st.integers(-5, 40).map(float),
    st.just(float("nan")),
    st.sampled_from([0.5, 2.0**60, float("inf"), -0.0]),  # not whole, a range too wide, infinite, signed zero
)


@settings(max_examples=200, deadline=None)
@given(values=st.lists(IDS, max_size=30), wanted=st.lists(IDS, max_size=30), as_int=st.booleans())
def test_the_same_as_pandas_isin(values, wanted, as_int) -> None:
    v, w = np.array(values, dtype=np.float64), np.array(wanted, dtype=np.float64)
    if as_int:  # whole numbers stored as int64
        v, w = v[np.isfinite(v) & (v == np.floor(v))].astype(np.int64), w[np.isfinite(w)].astype(np.int64)
    got = isin_ids(v, w)
    assert got.dtype == bool
    assert got.tolist() == pd.Series(v).isin(w).tolist()


def test_series_and_a_long_range() -> None:
    ids = pd.Series(np.arange(0, 3_000_000, 3, dtype=np.float64))
    wanted = pd.Series([3.0, 2_999_997.0, np.nan, 7.0])
    got = isin_ids(ids, wanted)
    assert np.flatnonzero(got).tolist() == [1, 999_999]
