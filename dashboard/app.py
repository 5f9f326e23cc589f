"""Entry point of the results dashboard: ``harness dashboard [RESULTS_DIR...]``.

Run directly with ``streamlit run dashboard/app.py``; the folders come from
``HARNESS_DASHBOARD_DIRS`` (``harness dashboard`` sets it), else ``results/``.
"""

import os
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# Streamlit puts the entry point's folder first on sys.path while a page runs: there `import fidelity` would find
# dashboard/fidelity.py, not the fidelity package (every page importing dashboard.fidelity failed in a real server).
for entry in [p for p in sys.path if p and os.path.abspath(p) == os.path.abspath(HERE)]:
    sys.path.remove(entry)

import streamlit as st  # noqa: E402

from dashboard import ui  # noqa: E402

st.set_page_config(page_title="GPU policy harness", page_icon=":material/bar_chart:", layout="wide")
page = st.navigation(
    [
        st.Page(HERE / "views" / "runs.py", title="Runs", icon=":material/table:", default=True),
        st.Page(HERE / "views" / "compare.py", title="Compare policies", icon=":material/bar_chart:"),
        st.Page(HERE / "views" / "timeline.py", title="Timeline", icon=":material/timeline:"),
        st.Page(HERE / "views" / "requests.py", title="Requests", icon=":material/list:"),
        st.Page(HERE / "views" / "fidelity.py", title="Fidelity", icon=":material/target:"),
        st.Page(HERE / "views" / "sweep.py", title="Sweep", icon=":material/show_chart:"),
    ]
)
ui.sidebar(ui.catalog())
page.run()
