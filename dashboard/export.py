"""What the download buttons hand out: CSV for tables, standalone HTML for figures."""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go

from harness.perfetto_export import export_perfetto

# The chart toolbar's camera button saves a PNG in the browser (no server-side renderer).
PLOTLY_CONFIG = {"displaylogo": False, "toImageButtonOptions": {"format": "png", "scale": 2}}
PLOTLY_THEME = None  # the figures' own template (dashboard.figures.TEMPLATE), not Streamlit's re-styling


def csv_bytes(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


def figure_html(fig: go.Figure) -> bytes:
    """A self-contained HTML page (plotly.js inlined, so it opens offline)."""
    return fig.to_html(include_plotlyjs=True, full_html=True, config=PLOTLY_CONFIG).encode()


PERFETTO_MAX_OPS = 200_000  # a trace of more ops is written op by op for tens of seconds: narrow the window first


def perfetto_bytes(ops: pd.DataFrame, title: str) -> bytes:
    """One run's ops (OPS_SCHEMA columns) as a gzipped Chrome/Kineto trace that ui.perfetto.dev opens."""
    text = {c: str for c in ops.columns if isinstance(ops[c].dtype, pd.CategoricalDtype)}
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "trace.json.gz"
        export_perfetto(ops.astype(text), path, title=title)
        return path.read_bytes()


def file_stem(*parts: str) -> str:
    """A safe file name from labels: ``layer-streaming-demo_makespan_us``."""
    text = "_".join(p for p in parts if p)
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-") or "export"
