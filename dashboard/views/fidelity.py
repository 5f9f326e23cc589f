"""Simulated against measured for every metric both backends report."""

import streamlit as st

from dashboard import ui
from dashboard.fidelity import (
    error_summary,
    fidelity_headline,
    machines,
    measured_side,
    measurement_labels,
    number_text,
    signed_errors,
    stored_fidelity,
    within_band,
)
from dashboard.figures import fidelity_scatter, signed_error_figure

VALUE_COLUMNS = ("simulated", "measured", "measured_min", "measured_max")

DERIVED = "derived from the loaded runs"

st.title("Fidelity: simulated vs measured")
cat = ui.catalog()
stored = stored_fidelity(cat)
derived = ui.fidelity_pairs()
sources = {DERIVED: derived.table}
if stored is not None:
    for path, table in stored.groupby("folder", sort=True):
        sources[f"stored: {path}"] = table.drop(columns="folder")
if derived.table.empty:
    st.info(
        f"Nothing to derive: {derived.message}. "
        "Runs are matched by spec name and policy label across every loaded folder."
    )
available = [name for name, table in sources.items() if not table.empty]
if not available:
    st.stop()

if derived.message and not derived.table.empty:
    st.warning(f"Some runs could not be paired: {derived.message}")
ui.from_query("source", "fidelity-source", available)
source = st.selectbox("Pairs", available, key="fidelity-source")
pairs = sources[source]
gpus = machines(pairs)
if len(gpus) > 1:  # replays of different GPUs are separate experiments, never pooled
    ui.from_query("machine", "fidelity-machine", gpus)
    machine = st.selectbox("Measured on (each GPU, and replay or recording, apart)", gpus, key="fidelity-machine")
    pairs = pairs[measurement_labels(pairs) == machine]
    ui.to_query(source=source, machine=machine)
else:
    ui.to_query(source=source)
st.caption(
    "One row per (spec, policy, metric): the median over each backend's repetitions, as `harness compare` computes it; "
    "whiskers: the measured min to max. Log axes leave out zero values."
)
c1, c2, c3 = st.columns(3)
metrics = sorted(pairs["metric"].unique())
preferred = [m for m in metrics if m.endswith("_us")] or metrics
chosen = c1.multiselect("Metrics", metrics, default=preferred, key=f"fidelity-metrics-{source}")
band = c2.slider("error band (±%)", 1, 50, 10, key="fidelity-band") / 100
log_axes = c3.checkbox("log axes", value=True, key="fidelity-log")
shown = pairs[pairs["metric"].isin(chosen)]
st.markdown(fidelity_headline(shown))
inside = int(within_band(shown, band).sum())
st.markdown(f"**{inside} of {len(shown)} pairs** within ±{band:.0%}")
fig = fidelity_scatter(shown, band, log_axes, measured_by=measured_side(shown))
ui.show_figure(fig, key="fidelity-scatter")

st.subheader("Signed error per pair")
errors = signed_errors(shown)
error_fig = signed_error_figure(errors, band)
ui.show_figure(error_fig, key="fidelity-signed")

st.subheader("Error per metric")
summary = error_summary(shown)
st.dataframe(summary.style.format({"median_abs_rel_error": "{:.2%}", "max_abs_rel_error": "{:.2%}"}), hide_index=True)
st.subheader("Every pair")
formats = {"rel_error": "{:+.2%}", **{c: number_text for c in VALUE_COLUMNS}}
st.dataframe(
    shown.style.format(formats),
    hide_index=True,
    column_config={c: st.column_config.Column(c, width="medium") for c in VALUE_COLUMNS},
)
with st.popover("Download"):  # drawn only when opened: a page load mounts fewer elements (issue 14)
    ui.download_table(shown, "fidelity", key="fidelity-csv")
    ui.download_figure(fig, "fidelity", key="fidelity-html")
