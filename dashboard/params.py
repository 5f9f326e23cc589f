"""Policy parameters (``params_json``) as columns."""

from __future__ import annotations

import json

import pandas as pd

PARAM_PREFIX = "param."


def expand_params(runs: pd.DataFrame) -> pd.DataFrame:
    """``runs`` with one ``param.<name>`` column per parameter any policy has (NaN where absent)."""
    parsed = [json.loads(text) if text else {} for text in runs["params_json"]]
    flat = pd.json_normalize(parsed, sep=".") if parsed else pd.DataFrame()
    flat.index = runs.index
    flat.columns = [PARAM_PREFIX + c for c in flat.columns]
    return pd.concat([runs, flat], axis=1)


def param_columns(frame: pd.DataFrame, numeric_only: bool = False) -> list[str]:
    cols = [c for c in frame.columns if c.startswith(PARAM_PREFIX)]
    if numeric_only:
        cols = [
            c
            for c in cols
            if pd.api.types.is_numeric_dtype(frame[c])
            and not pd.api.types.is_bool_dtype(frame[c])
            and frame[c].notna().any()
        ]
    return cols
