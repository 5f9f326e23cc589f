"""What the download buttons hand out: CSV for tables, standalone HTML for figures."""

from __future__ import annotations

import re

import pandas as pd
import plotly.graph_objects as go

# The chart toolbar's camera button saves a PNG in the browser (no server-side renderer).
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML page (plotly.js inlined, so it opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=PLOTLY_CONFIG).encode()


def file_stem(*parts: str) -> str:
    """A safe file name from labels: ``layer-streaming-demo_makespan_us``."""
    text = "_".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "export"
