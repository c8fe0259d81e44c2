"""Threshold sensitivity: cells relabelled as each threshold alone moves (analysis.taxonomy.sensitivity)."""
from __future__ import annotations

from collections.abc import Mapping

import plotly.graph_objects as go
import polars as pl
from plotly.subplots import make_subplots

from dashboard.charts.style import NEUTRAL, SERIES_COLOURS, framed


def relabelled_chart(curves: Mapping[str, pl.DataFrame], x_titles: Mapping[str, str], *, total: int,
                     title: str = "") -> go.Figure:
    """One panel per threshold: cells relabelled (y) against the threshold's shift (x, in its own scale: the
    panel's `x_titles` entry), the current threshold at shift 0 (dotted). `curves`: threshold → frame with
    shift and cells (analysis.taxonomy.sensitivity.relabelled); `total` cells in the grid (the y range)."""
    names = list(curves)
    fig = make_subplots(rows=1, cols=len(names), shared_yaxes=True, horizontal_spacing=0.04)
    for k, name in enumerate(names, start=1):
        c = curves[name]
        fig.add_trace(go.Scatter(x=c["shift"].to_list(), y=c["cells"].to_list(), mode="lines", line_shape="hv",
                                 line=dict(color=SERIES_COLOURS[0], width=2), name=x_titles[name],
                                 showlegend=False,
                                 hovertemplate="shift %{x:.3g}: %{y} cells relabelled<extra></extra>"),
                      row=1, col=k)
        fig.add_vline(x=0, line_dash="dot", line_color=NEUTRAL, row=1, col=k)
        fig.update_xaxes(title=x_titles[name], row=1, col=k)
    fig.update_yaxes(title="cells relabelled", range=[0, max(total, 1) * 1.05], row=1, col=1)
    return framed(fig, title, 300)
