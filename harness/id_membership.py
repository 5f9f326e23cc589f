"""Membership of integer ids (correlations, op ids) in a set of them, by a bitmap over their range (a bit per id).

``pandas.Series.isin`` hashes every value (tens of ms for half a million correlations, and a long recording's
inputs test several such columns); ids are whole numbers in a range not much wider than their count, so a lookup
table answers the same question with two passes of numpy indexing. :func:`isin_ids` gives exactly what
``pd.Series(values).isin(wanted)`` gives (a missing value, NaN, is in ``wanted`` when ``wanted`` holds one) and falls
back to it for anything else: values that are not whole numbers, or a range too wide for a table.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

MAX_TABLE_RATIO = 128
"""A bitmap (a bit per id) is made only for a range at most this many times the values' and the wanted ids' count
(or 8 Mi ids), and at most ``MAX_TABLE_IDS``: a million correlations spread over 51 million ids take 6.4 MB."""
MAX_TABLE_IDS = 1 << 28


def isin_ids(values: Any, wanted: Any) -> np.ndarray:
    """``pd.Series(values).isin(wanted).to_numpy()`` (a bool array), for numeric ``values`` and ``wanted``."""
    v = values.to_numpy() if isinstance(values, (pd.Series, pd.Index)) else np.asarray(values)
    w = wanted.to_numpy() if isinstance(wanted, (pd.Series, pd.Index)) else np.asarray(wanted)
    table = _bitmap_parts(v, w)
    if table is None:
        return pd.Series(v).isin(w).to_numpy()
    (v_ids, v_nan), (w_ids, w_nan), low, high = table
    bits = np.zeros((high - low) // 8 + 1, np.uint8)  # one bit per id of the range
    w_ids -= low
    np.bitwise_or.at(bits, w_ids >> 3, np.left_shift(1, w_ids & 7).astype(np.uint8))
    del w_ids
    v_ids -= low
    found = np.empty(len(v), bool)
    found[~v_nan] = (bits[v_ids >> 3] >> (v_ids & 7).astype(np.uint8)) & 1
    found[v_nan] = bool(w_nan.any())
    return found


def _bitmap_parts(v: np.ndarray, w: np.ndarray):
    """Each side's valid ids (int64) and its NaN mask, and the ids' range; None where a bitmap would not do."""
    if v.ndim != 1 or w.ndim != 1 or v.dtype.kind not in "iuf" or w.dtype.kind not in "iuf" or len(v) == 0:
        return None
    sides = []
    for side in (v, w):
        nan = np.isnan(side) if side.dtype.kind == "f" else np.zeros(len(side), bool)
        valid = side[~nan] if nan.any() else side
        if valid.dtype.kind == "f":
            if not np.isfinite(valid).all() or not (valid == np.floor(valid)).all() or (np.abs(valid) > 2**53).any():
                return None
        elif valid.dtype.kind == "u" and len(valid) and valid.max() > np.iinfo(np.int64).max:
            return None
        sides.append((valid.astype(np.int64), nan))
    ids = [ids for ids, _ in sides if len(ids)]
    if not ids:
        return (*sides, 0, 0)
    low = min(int(i.min()) for i in ids)
    high = max(int(i.max()) for i in ids)
    if high - low > min(max(MAX_TABLE_RATIO * (len(v) + len(w)), 1 << 23), MAX_TABLE_IDS):
        return None
    return (*sides, low, high)
