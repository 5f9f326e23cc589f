"""The results dashboard: a Streamlit app over results folders (``harness dashboard``).

Pages (``dashboard/views/``; not ``pages/``, which Streamlit would also serve as
legacy pages) only lay out widgets; every computation lives in the pure modules
here (sources, catalog, runs_view, compare, timeline, fidelity, sweep, figures,
export), which are tested without Streamlit.
"""
