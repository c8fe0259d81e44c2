"""Curves: spectral densities, training curves per seed, and a study's mean curve per phase."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboard.charts.style import PHASE_COLOURS, framed


def density_chart(curves: pl.DataFrame, label: str = "label", *, log_density: bool = True,
                  title: str = "") -> go.Figure:
    """Spectral densities (eigenvalue, density, <label>) as one line per label; log density axis by default
    (the bulk near zero and the outliers differ by orders of magnitude)."""
    fig = go.Figure()
    for (name,), g in curves.group_by(label, maintain_order=True):
        d = g["density"].to_numpy()
        if log_density:  # the Gaussian smoothing's far tails (≪ 1e-6 of the peak) would swamp the log axis
            d = np.where(d > 1e-6 * d.max(), d, np.nan)
        fig.add_trace(go.Scatter(x=g["eigenvalue"].to_numpy(), y=d, mode="lines", name=str(name)))
    framed(fig, title, 420, legend=dict(orientation="h"))
    fig.update_xaxes(title="Hessian eigenvalue λ")
    fig.update_yaxes(title="density", type="log" if log_density else "linear")
    return fig


def line_chart(frame: pl.DataFrame, x: str, y: str, color: str, *, title: str = "", dash: str | None = None,
               log_y: bool = False) -> go.Figure:
    """One line per value of `color` (× `dash`: its first value solid, the others dotted, e.g. train/test)."""
    styles = {v: "solid" if i == 0 else "dot" for i, v in enumerate(sorted(frame[dash].unique()))} if dash else {}
    fig = go.Figure()
    for names, g in frame.sort(x).group_by([color] + ([dash] if dash else []), maintain_order=True):
        fig.add_trace(go.Scatter(x=g[x].to_numpy(), y=g[y].to_numpy(), mode="lines", name=" ".join(map(str, names)),
                                 line=dict(dash=styles.get(names[-1], "solid") if dash else "solid")))
    framed(fig, title, 360, legend=dict(orientation="h"))
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y, type="log" if log_y else "linear")
    return fig


def phase_curves(mean: pl.DataFrame, *, x_title: str, y_title: str = "", title: str) -> go.Figure:
    """A mean curve per phase (phase, coord, value), in the phase colours."""
    fig = go.Figure([go.Scatter(x=g["coord"].to_numpy(), y=g["value"].to_numpy(), name=p, mode="lines+markers",
                                line=dict(color=PHASE_COLOURS.get(p)))
                     for (p,), g in mean.group_by("phase", maintain_order=True)])
    framed(fig, title, 360, legend=dict(orientation="h"))
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title)
    return fig
