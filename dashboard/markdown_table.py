"""Small tables as GitHub-flavoured Markdown: drawn by the Markdown element a page already loads.

``st.dataframe`` makes the browser fetch and compile its data grid (about 1.7 MB of JavaScript over 30 files,
Arrow decoding included) on every page load; a table of a few dozen formatted cells needs none of it
(issue 25: the Compare page's cost over a bare Streamlit page).
"""

from __future__ import annotations

import pandas as pd

MAX_MARKDOWN_ROWS = 200  # a longer table goes to the data grid (scrolling, sorting): Markdown draws every row


def _cell(value: object) -> str:
    """A cell's text with what would break the table escaped: pipes, backslashes, line breaks, Markdown marks."""
    text = "" if value is None or (isinstance(value, float) and pd.isna(value)) else str(value)
    text = text.replace("\\", "\\\\").replace("|", "\\|")
    for mark in ("*", "_", "`", "[", "]", "<", ">", "~", "$"):
        text = text.replace(mark, "\\" + mark)
    return " ".join(text.split())  # a line break or tab would end the row


def markdown_table(frame: pd.DataFrame, index: bool = False) -> str:
    """``frame`` as a Markdown table, cells as ``str`` gives them (format them first); numbers right-aligned.

    ``index``: the index as the first column (named by the index's name). An empty frame gives its header alone.
    """
    if index:
        frame = frame.reset_index()
    header = [_cell(c) for c in frame.columns]
    align = ["---:" if pd.api.types.is_numeric_dtype(frame[c]) else ":---" for c in frame.columns]
    rows = [[_cell(v) for v in row] for row in frame.itertuples(index=False, name=None)]
    lines = [header, align, *rows]
    return "\n".join("| " + " | ".join(line) + " |" for line in lines)
