"""The reliability diagram: a classifier's held-out top-class probability against how often it was right, per
validation scheme (analysis.taxonomy.calibration), with the diagonal of perfect calibration and a verdict's
own probability."""
from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from dashboard.charts.style import NEUTRAL, framed, series_colours


def reliability_diagram(bins: pl.DataFrame, mine: float | None = None, *, title: str = "",
                        ece: dict[str, str] | None = None) -> go.Figure:
    """One line per scheme through its non-empty bins (bins: analysis.taxonomy.calibration.RELIABILITY_SCHEMA):
    mean probability against accuracy with its Wilson 95 % interval as error bars, each scheme in its series
    colour (a scheme is no phase); the diagonal where accuracy equals probability; `mine` (a verdict's
    top-class probability) as a dotted vertical line. `ece` maps a scheme to the words its legend adds
    (e.g. "ECE 0.06")."""
    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line=dict(color=NEUTRAL, dash="dash", width=1), hoverinfo="skip"))
    shown = bins.filter(pl.col("count") > 0)
    colours = series_colours(bins["scheme"].unique(maintain_order=True))
    for (scheme,), g in shown.group_by("scheme", maintain_order=True):
        acc = g["accuracy"].to_numpy()
        fig.add_trace(go.Scatter(
            x=g["confidence"].to_numpy(), y=acc, mode="lines+markers",
            name=scheme + (f" ({ece[scheme]})" if ece and scheme in ece else ""),
            line=dict(color=colours[scheme]), marker=dict(size=8, color=colours[scheme]),
            error_y=dict(type="data", symmetric=False, array=g["high"].to_numpy() - acc,
                         arrayminus=acc - g["low"].to_numpy(), color=colours[scheme], thickness=1),
            customdata=g.select("lo", "hi", "count", "low", "high").to_numpy(),
            hovertemplate="probability %{customdata[0]:.1f}–%{customdata[1]:.1f} (mean %{x:.2f}): right "
                          "%{y:.0%} of %{customdata[2]} (95 % %{customdata[3]:.0%}–%{customdata[4]:.0%})"
                          "<extra>%{fullData.name}</extra>"))
    if mine is not None and mine == mine:
        fig.add_vline(x=mine, line_dash="dot", line_color=NEUTRAL, annotation_text=f"this verdict {mine:.2f}",
                      annotation_position="top left")
    framed(fig, title, 380, legend_above=True)
    fig.update_xaxes(title="held-out top-class probability", range=[0, 1.02])
    fig.update_yaxes(title="fraction right", range=[0, 1.02], tickformat=".0%")
    return fig
