"""Entry point of the results dashboard: ``harness dashboard [RESULTS_DIR...]``.

Run directly with ``streamlit run dashboard/app.py``; the folders come from
``HARNESS_DASHBOARD_DIRS`` (``harness dashboard`` sets it), else ``results/``.
"""

from pathlib import Path

import streamlit as st

from dashboard import ui

HERE = Path(__file__).parent

st.set_page_config(page_title="GPU policy harness", page_icon=":material/bar_chart:", layout="wide")
page = st.navigation(
    [
        st.Page(HERE / "views" / "runs.py", title="Runs", icon=":material/table:", default=True),
        st.Page(HERE / "views" / "compare.py", title="Compare policies", icon=":material/bar_chart:"),
        st.Page(HERE / "views" / "timeline.py", title="Timeline", icon=":material/timeline:"),
        st.Page(HERE / "views" / "fidelity.py", title="Fidelity", icon=":material/target:"),
        st.Page(HERE / "views" / "sweep.py", title="Sweep", icon=":material/show_chart:"),
    ]
)
ui.sidebar(ui.catalog())
page.run()
