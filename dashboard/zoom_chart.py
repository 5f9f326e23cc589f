"""The Timeline page's zoomable chart: a tiny Streamlit component (``timeline_chart/index.html``, plain JavaScript,
no build step) that draws a plotly figure and reports the x range the user zoomed or panned to, so that the page
re-queries that window at its level of detail (``dashboard.timeline.window_from_relayout``).

plotly.js comes from the plotly Python package (``plotly/package_data/plotly.min.js``), copied beside
``index.html`` on first use: the component server serves only files inside the component's folder (symbolic links
out of it are refused) and the machines have no network. Where the package's folder cannot be written (a
read-only install), the component is served from a copy of its folder in the temporary directory.

The chart loads plotly.js from the app's static folder first (``dashboard/static/``, served at ``/app/static/``:
``harness dashboard`` turns Streamlit's static serving on), and from the copy beside ``index.html`` when that
fails. Streamlit serves component files with no validator and no lifetime, so the browser fetched all 4.8 MB again
(gzipped by the server) and compiled it afresh on every page load; the static route sends ``Last-Modified``, and
the copy keeps the package file's modification time, so the browser keeps it and its compiled code.

No Streamlit here: ``dashboard.ui`` declares the component over :func:`chart_folder`.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import plotly
import plotly.graph_objects as go

from dashboard.export import PLOTLY_CONFIG

SOURCE = Path(__file__).resolve().parent / "timeline_chart"
STATIC = Path(__file__).resolve().parent / "static"  # the app's static folder (app.py's sibling), /app/static/
PLOTLY_JS = Path(plotly.__file__).resolve().parent / "package_data" / "plotly.min.js"
# Wheel zoom on, the lanes fixed (zoom and pan move time only, as in Perfetto), the chart follows its frame's width.
# A double click autoranges x (the whole run, or the page's home window) in zoom and pan mode: plotly's default,
# "reset+autosize", would go back to the range of the first figure drawn in the frame, which is not the page's
# window once the page has redrawn a zoom. (In select mode the chart turns a double click into the same reset.)
CHART_CONFIG = {**PLOTLY_CONFIG, "scrollZoom": True, "responsive": True, "doubleClick": "autosize"}


def _complete(folder: Path, need_html: bool = True) -> bool:
    js = folder / "plotly.min.js"
    html = (folder / "index.html").is_file() or not need_html
    return html and js.is_file() and js.stat().st_size == PLOTLY_JS.stat().st_size


def chart_folder() -> tuple[Path | None, str]:
    """The folder to serve the component from, or None and why it cannot be served."""
    if not (SOURCE / "index.html").is_file():
        return None, f"{SOURCE / 'index.html'} is missing"
    if not PLOTLY_JS.is_file():
        return None, f"the plotly package has no {PLOTLY_JS.name} ({PLOTLY_JS})"
    _static_plotly()
    if _complete(SOURCE):
        return SOURCE, ""
    try:
        _copy_plotly(SOURCE)
        return SOURCE, ""
    except OSError:
        pass
    mirror = Path(tempfile.gettempdir()) / f"gpu-policy-harness-timeline-chart-{plotly.__version__}"
    try:
        mirror.mkdir(exist_ok=True)
        shutil.copyfile(SOURCE / "index.html", mirror / "index.html")
        if not _complete(mirror):
            _copy_plotly(mirror)
        return mirror, ""
    except OSError as err:
        return None, f"plotly.min.js could not be copied beside the chart ({err})"


def _static_plotly() -> bool:
    """plotly.min.js in the app's static folder (the cacheable route); False where it cannot be written (the chart
    then loads the copy beside its ``index.html``)."""
    if _complete(STATIC, need_html=False):
        return True
    try:
        STATIC.mkdir(exist_ok=True)
        _copy_plotly(STATIC)
        return True
    except OSError:
        return False


def _copy_plotly(folder: Path) -> None:
    """Written under a temporary name and renamed, so a concurrent server never serves half a file; with the
    package file's modification time (the browser's cache lifetime for it is reckoned from it)."""
    partial = folder / f".plotly.min.js.{id(folder)}.part"
    shutil.copy2(PLOTLY_JS, partial)
    partial.replace(folder / "plotly.min.js")


def chart_args(fig: go.Figure, unit_us: float) -> dict:
    """What the component is given: the figure as JSON with its lanes fixed, the plotly config, and how many µs
    one unit of its x axis is (echoed back with each zoom, so a zoom is read in the unit of the figure it was made
    on, even when the page has moved on since)."""
    fig.update_yaxes(fixedrange=True)  # the caller's figure (the HTML download then zooms the same way)
    return {"figure": fig.to_json(), "config": CHART_CONFIG, "unit_us": float(unit_us)}
