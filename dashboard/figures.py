"""Plotly figures built from the pure tables (no Streamlit here)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.express as px
import plotly.graph_objects as go
import plotly.io as pio
from plotly.subplots import make_subplots

from dashboard.fidelity import MEASURED, SIM
from dashboard.timeline import TimelineView, format_duration, lanes, min_visible_width_us, time_unit

KIND_COLOURS = {
    "kernel": "#4C78A8",
    "copy_h2d": "#F58518",
    "copy_d2h": "#54A24B",
    "copy_d2d": "#B279A2",
    "record": "#9D755D",
    "wait": "#BAB0AC",
    "host_work": "#E45756",
    "host_sync": "#72B7B2",
    "host_alloc": "#EECA3B",
    "collective": "#FF9DA6",  # an NCCL collective (issue 26)
}


# Every figure carries its own look (a white plot area, plotly's colours), and the pages hand it to the browser as
# it is (``theme=None``): Streamlit's theme re-styles each figure in the browser, which on the 2-core dev box cost
# ~0.3 s per load of a 1,500-bar timeline (two A/B rounds of six warm loads). The exported HTML looks the same.
TEMPLATE = "plotly_white"
pio.templates.default = TEMPLATE
MARK_ROW = 0.06  # a milestone label's row height, as a fraction of the figure
FLOW_NAME = "launch → start"  # the launch arrows' legend entry


def policy_colours(labels, universe=None) -> dict[str, str]:
    """One colour per policy label, so every chart agrees: by its place among ``universe`` (every loaded label,
    sorted; the same on every page) or, without one, in order of first appearance."""
    palette = list(dict.fromkeys(px.colors.qualitative.Plotly + px.colors.qualitative.Dark24))
    order = sorted(set(universe)) if universe is not None else list(dict.fromkeys(labels))
    place = {label: i for i, label in enumerate(order)}
    out: dict[str, str] = {}
    for label in dict.fromkeys(labels):
        colour = palette[place.get(label, len(place)) % len(palette)]
        if colour in out.values():  # more labels than colours: never two alike on one chart
            colour = next((c for c in palette if c not in out.values()), colour)
        out[label] = colour
    return out


def metric_bars(
    summary: pd.DataFrame, group: str = "policy_label", wrap: int = 3, colours: dict[str, str] | None = None
) -> go.Figure:
    """One panel per metric: the mean per policy, whiskers from the min to the max repetition."""
    frame = summary.assign(err_plus=summary["max"] - summary["mean"], err_minus=summary["mean"] - summary["min"])
    n_metrics = frame["metric"].nunique()
    fig = px.bar(
        frame,
        x=group,
        y="mean",
        color=group,
        color_discrete_map=colours or policy_colours(frame[group]),
        facet_col="metric",
        facet_col_wrap=wrap,
        error_y="err_plus",
        error_y_minus="err_minus",
        hover_data={"std": ":.4g", "n": True, "min": ":.4g", "max": ":.4g"},
        facet_row_spacing=0.5 / max(1, int(np.ceil(n_metrics / wrap))),
        category_orders={"metric": list(dict.fromkeys(frame["metric"])), group: list(dict.fromkeys(frame[group]))},
    )
    fig.update_yaxes(matches=None, showticklabels=True, title=None)
    fig.update_xaxes(title=None, showticklabels=True)
    fig.for_each_annotation(lambda a: a.update(text=a.text.split("=", 1)[-1]))
    fig.update_layout(height=max(340, 320 * int(np.ceil(n_metrics / wrap))), legend_title=None, margin=dict(t=40))
    return fig


def relative_bars(
    change: pd.DataFrame, baseline: str, group: str = "policy_label", colours: dict[str, str] | None = None
) -> go.Figure:
    """Per metric, each policy's change against the baseline, in percent."""
    frame = change[change[group] != baseline].assign(change_pct=100 * change["relative_change"])
    fig = px.bar(
        frame,
        x="metric",
        y="change_pct",
        color=group,
        barmode="group",
        hover_data={"mean": ":.4g", "baseline_mean": ":.4g"},
        color_discrete_map=colours or policy_colours(change[group]),
    )
    fig.update_layout(yaxis_title=f"change vs {baseline} (%)", xaxis_title=None, height=420)
    fig.add_hline(y=0, line_color="black", line_width=1)
    return fig


def cdf_figure(
    cdf: pd.DataFrame, label: str, group: str = "policy_label", colours: dict[str, str] | None = None
) -> go.Figure:
    fig = px.line(
        cdf,
        x="value",
        y="fraction",
        color=group,
        line_shape="hv",
        markers=len(cdf) <= 200,
        color_discrete_map=colours or policy_colours(cdf[group]),
    )
    fig.update_layout(xaxis_title=label, yaxis_title="fraction of samples ≤ x", yaxis_range=[0, 1.02], height=420)
    return fig


def _hover_lines(bars: pd.DataFrame) -> list[str]:
    """One hover text per bar: name, lane, times in fitting units, busy fraction, bytes and GB/s, launch latency."""
    out = []
    for b in bars.itertuples(index=False):
        lines = [f"<b>{b.name}</b>", b.lane]
        lines.append(
            f"{format_duration(b.start_us)} → {format_duration(b.end_us)} ({format_duration(b.end_us - b.start_us)})"
        )
        if b.n_ops > 1:
            lines.append(f"{b.n_ops:,} ops, busy {b.busy_frac:.0%} ({format_duration(b.busy_us)}): {b.kinds}")
        if b.bytes > 0:
            rate = f", {b.bytes / b.busy_us / 1e3:,.2f} GB/s" if b.busy_us > 0 else ""
            lines.append(f"{b.bytes / 1e9:,.3f} GB{rate}")
        if np.isfinite(b.launch_us):
            lines.append(f"launch latency {format_duration(b.launch_us)}" + (" (mean)" if b.n_ops > 1 else ""))
        out.append("<br>".join(lines))
    return out


def _timeline_traces(view: TimelineView, unit_us: float, min_width_us: float, legend: set[str]) -> list[go.Bar]:
    traces = []
    for kind, part in view.bars.groupby("kind", sort=True):
        duration = (part["end_us"] - part["start_us"]).to_numpy()
        # Names only on single ops wide enough to hold one (text measuring is what slows plotly down).
        named = (part["n_ops"].to_numpy() == 1) & (duration >= 0.03 * (view.end_us - view.start_us))
        traces.append(
            go.Bar(
                y=part["lane"],
                x=np.maximum(duration, min_width_us) / unit_us,
                base=part["start_us"] / unit_us,
                orientation="h",
                name=kind,
                legendgroup=kind,
                showlegend=kind not in legend,
                marker=dict(
                    color=KIND_COLOURS.get(kind, "#888888"),
                    opacity=0.3 + 0.7 * part["busy_frac"].to_numpy(),
                    line_width=0,
                ),
                text=np.where(named, part["name"], "") if named.any() else None,
                textposition="inside" if named.any() else "none",
                insidetextanchor="start",
                hovertext=_hover_lines(part),
                hovertemplate="%{hovertext}<extra>" + kind + "</extra>",
            )
        )
        legend.add(kind)
    return traces


def _flow_trace(flows: pd.DataFrame, unit_us: float, showlegend: bool) -> go.Scatter:
    """Launch arrows as one trace: a thin line from each call (its thread's lane) to the op's start (its stream
    lane), an arrow head at the start; the pairs apart by gaps."""
    n = len(flows)
    x = np.full(3 * n, np.nan)
    x[0::3], x[1::3] = flows["issue_us"].to_numpy() / unit_us, flows["start_us"].to_numpy() / unit_us
    y = np.full(3 * n, None, dtype=object)
    y[0::3], y[1::3] = flows["from_lane"].to_numpy(), flows["to_lane"].to_numpy()
    text = [
        f"<b>{f.name}</b> launched at {format_duration(f.issue_us)}, started {format_duration(f.start_us)} "
        f"(launch latency {format_duration(f.start_us - f.issue_us)})"
        for f in flows.itertuples(index=False)
    ]
    hover = np.full(3 * n, "", dtype=object)
    hover[0::3], hover[1::3] = text, text
    size = np.zeros(3 * n)
    size[1::3] = 8
    return go.Scatter(
        x=x,
        y=y,
        mode="lines+markers",
        line=dict(color="rgba(40,40,40,0.55)", width=1),
        marker=dict(symbol="arrow", angleref="previous", size=size, color="rgba(40,40,40,0.8)", line_width=0),
        connectgaps=False,
        name=FLOW_NAME,
        legendgroup=FLOW_NAME,
        showlegend=showlegend,
        hovertext=hover,
        hovertemplate="%{hovertext}<extra>launch</extra>",
    )


def timeline_figure(
    views: list[tuple[str, TimelineView]],
    highlight: pd.DataFrame | None = None,
    marks: list[tuple[str, float]] | None = None,
    flows: bool = True,
) -> go.Figure:
    """One timeline per run, stacked, on a shared time axis in the unit that fits the window.

    Merged bars are shaded by their busy fraction; ``highlight`` (ops with ``start_us``, ``end_us``, ``name``;
    the first view's) are marked with a diamond above their start; ``marks`` (label, time in µs), such as a
    request's arrival and last token, are dashed vertical lines across every run. ``flows``: each view's launch
    arrows (``TimelineView.flows``: only in a window of few single ops) from the host thread's call to the op's
    start.
    """
    heights = [max(2, len(lanes(v.bars))) for _, v in views]
    fig = make_subplots(
        rows=len(views),
        cols=1,
        shared_xaxes=True,
        subplot_titles=[t for t, _ in views],
        row_heights=heights,
        vertical_spacing=0.12 if len(views) > 1 else 0.05,
    )
    start = min((v.start_us for _, v in views), default=0.0)
    end = max((v.end_us for _, v in views), default=1.0)
    unit, scale = time_unit(end - start)
    min_width = min_visible_width_us(start, end)
    legend: set[str] = set()
    for row, (_, view) in enumerate(views, start=1):
        for trace in _timeline_traces(view, scale, min_width, legend):
            fig.add_trace(trace, row=row, col=1)
        if flows and len(view.flows):
            fig.add_trace(_flow_trace(view.flows, scale, FLOW_NAME not in legend), row=row, col=1)
            legend.add(FLOW_NAME)
        fig.update_yaxes(categoryorder="array", categoryarray=lanes(view.bars)[::-1], automargin=True, row=row, col=1)
    for i, (label, t) in enumerate(sorted(marks or [], key=lambda m: m[1])):
        fig.add_vline(x=t / scale, line=dict(color="black", dash="dash", width=1))
        # Labels inside the chart, each on its own row (arrival, admission and first token are often µs apart),
        # on the side of the line that faces the middle of the window: never over the legend or the title.
        left_half = t <= (start + end) / 2
        fig.add_annotation(
            x=t / scale,
            y=1.0 - MARK_ROW * (i % 4),
            xref="x",
            yref="paper",
            yanchor="top",
            xanchor="left" if left_half else "right",
            text=label,
            showarrow=False,
            font_size=11,
            bgcolor="rgba(255,255,255,0.85)",
        )
    fig.update_xaxes(title=f"time ({unit})", row=len(views), col=1)
    fig.update_xaxes(range=[start / scale, end / scale])
    if highlight is not None and views:
        add_highlight(fig, views, highlight)
    fig.update_layout(
        barmode="overlay",
        height=140 + 42 * sum(heights),
        bargap=0.25,
        legend_title="op kind",
        margin=dict(l=10, r=10, t=50, b=40),
        uniformtext=dict(minsize=9, mode="hide"),
        dragmode="select",
        selectdirection="h",
    )
    return fig


def add_highlight(fig: go.Figure, views: list[tuple[str, TimelineView]], highlight: pd.DataFrame) -> go.Figure:
    """Mark ``highlight`` (ops with ``start_us``, ``name``: search hits) with diamonds above the first run's lanes
    of a :func:`timeline_figure` of ``views``."""
    if highlight.empty or not views:
        return fig
    start = min(v.start_us for _, v in views)
    scale = time_unit(max(v.end_us for _, v in views) - start)[1]
    top = lanes(views[0][1].bars)[:1]
    fig.add_trace(
        go.Scatter(
            x=highlight["start_us"] / scale,
            y=top * len(highlight),
            mode="markers",
            marker=dict(symbol="diamond", size=10, color="black"),
            name="search hits",
            hovertext=[f"{n} at {format_duration(s)}" for n, s in zip(highlight["name"], highlight["start_us"])],
            hovertemplate="%{hovertext}<extra>search</extra>",
        ),
        row=1,
        col=1,
    )
    return fig


def fidelity_scatter(
    pairs: pd.DataFrame, band_frac: float, log_axes: bool = True, measured_by: str = "replay"
) -> go.Figure:
    """Simulated (x) against measured (y) with the measured range as whiskers, the y = x line and a ±band."""
    frame = pairs.assign(
        err_plus=pairs["measured_max"] - pairs[MEASURED], err_minus=pairs[MEASURED] - pairs["measured_min"]
    )
    fig = px.scatter(
        frame,
        x=SIM,
        y=MEASURED,
        color="metric",
        symbol="policy_label",
        error_y="err_plus",
        error_y_minus="err_minus",
        hover_data={"spec_name": True, "rel_error": ":+.2%", "unit": True, "err_plus": False, "err_minus": False},
        log_x=log_axes,
        log_y=log_axes,
    )
    values = pd.concat([frame[SIM], frame[MEASURED]])
    values = values[values > 0] if log_axes else values
    if not values.empty:
        lo, hi = float(values.min()) * 0.8, float(values.max()) * 1.25
        xs = np.geomspace(lo, hi, 50) if log_axes else np.linspace(lo, hi, 50)
        fig.add_trace(
            go.Scatter(
                x=xs, y=xs * (1 + band_frac), mode="lines", line=dict(width=0), showlegend=False, hoverinfo="skip"
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs,
                y=xs * (1 - band_frac),
                mode="lines",
                line=dict(width=0),
                fill="tonexty",
                fillcolor="rgba(120,120,120,0.18)",
                name=f"±{band_frac:.0%} band",
                hoverinfo="skip",
            )
        )
        fig.add_trace(
            go.Scatter(
                x=xs, y=xs, mode="lines", line=dict(color="black", dash="dash", width=1), name="y = x", hoverinfo="skip"
            )
        )
    fig.update_layout(xaxis_title="simulated", yaxis_title=f"measured ({measured_by})", height=560)
    return fig


def sweep_line_figure(line: pd.DataFrame, x: str, metric: str, series: str = "configuration") -> go.Figure:
    """Mean per configuration against ``x``; whiskers from the min to the max repetition (never below the data)."""
    frame = line.assign(err_plus=line["max"] - line["mean"], err_minus=line["mean"] - line["min"])
    fig = px.line(
        frame,
        x=x,
        y="mean",
        color=series,
        error_y="err_plus",
        error_y_minus="err_minus",
        markers=True,
        hover_data={"n": True, "min": ":.4g", "max": ":.4g", "err_plus": False, "err_minus": False},
    )
    fig.update_layout(yaxis_title=metric, xaxis_title=x, height=440)
    values = sorted(line[x].unique())
    if len(values) <= 20 and all(float(v).is_integer() for v in values):  # integer parameters: no 1.5 ticks
        fig.update_xaxes(tickmode="array", tickvals=values)
    return fig


def sweep_heatmap_figure(grid: pd.DataFrame, x: str, y: str, metric: str) -> go.Figure:
    fig = px.imshow(
        grid,
        x=[str(c) for c in grid.columns],
        y=[str(i) for i in grid.index],
        text_auto=".4g",
        aspect="auto",
        labels=dict(x=x, y=y, color=metric),
        origin="lower",
    )
    fig.update_layout(height=440)
    return fig


def signed_error_figure(errors: pd.DataFrame, band_frac: float) -> go.Figure:
    """Signed error per (spec, policy) and metric, in %: right of 0 the simulator predicts more than was measured."""
    fig = px.bar(
        errors,
        x="error_pct",
        y="pair",
        color="metric",
        orientation="h",
        barmode="group",
        hover_data={"simulated": ":,.2f", "measured": ":,.2f", "unit": True, "device_name": True, "pair": False},
    )
    for edge in (-100 * band_frac, 100 * band_frac):
        fig.add_vline(x=edge, line_dash="dot", line_color="grey", line_width=1)
    fig.add_vline(x=0, line_color="black", line_width=1)
    n_pairs = max(1, errors["pair"].nunique()) if len(errors) else 1
    fig.update_layout(
        xaxis_title="simulated vs measured (%): + over-predicts, − under-predicts",
        yaxis_title=None,
        height=min(1800, 160 + 26 * n_pairs * max(1, errors["metric"].nunique() if len(errors) else 1) ** 0.5),
        legend_title="metric",
    )
    fig.update_yaxes(automargin=True, categoryorder="array", categoryarray=list(dict.fromkeys(errors["pair"]))[::-1])
    return fig
