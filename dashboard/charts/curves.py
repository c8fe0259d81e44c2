"""Curves: spectral densities, training curves per seed, and a study's mean curve per phase."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboard.charts.style import LOG_AXIS, PHASE_COLOURS, axis_format, framed, hover_format, series_colours


def density_chart(curves: pl.DataFrame, label: str = "label", *, log_density: bool = True,
                  title: str = "", colours: Mapping[str, str] | None = None) -> go.Figure:
    """Spectral densities (eigenvalue, density, <label>) as one line per label; log density axis by default
    (the bulk near zero and the outliers differ by orders of magnitude). `colours` maps a label to its
    colour (e.g. each phase's curve in its phase colour); other labels take the series colours in order."""
    fig = go.Figure()
    labels = curves[label].cast(pl.String).unique(maintain_order=True).to_list()
    colour = {**series_colours(labels), **(colours or {})}
    for (name,), g in curves.group_by(label, maintain_order=True):
        d = g["density"].to_numpy()
        if log_density:  # the Gaussian smoothing's far tails (≪ 1e-6 of the peak) would swamp the log axis
            d = np.where(d > 1e-6 * d.max(), d, np.nan)
        fig.add_trace(go.Scatter(x=g["eigenvalue"].to_numpy(), y=d, mode="lines", name=str(name),
                                 line=dict(color=colour[str(name)]),
                                 hovertemplate="λ=%{x:.3g}<br>density=%{y:.3g}<extra>%{fullData.name}</extra>"))
    framed(fig, title, 420, legend_above=True)
    fig.update_xaxes(title="Hessian eigenvalue λ", exponentformat="power")
    fig.update_yaxes(title="spectral density", **(LOG_AXIS if log_density else axis_format("")))
    return fig


def line_chart(frame: pl.DataFrame, x: str, y: str, color: str, *, title: str = "", dash: str | None = None,
               log_y: bool = False, unit: str = "", y_title: str = "") -> go.Figure:
    """One line per value of `color`, each in its series colour (e.g. one per seed), × `dash`: its first value
    solid, the others dotted (e.g. test / train, one legend group per `color` value). `unit` is y's declared
    unit ("fraction": axis and hover in %); `y_title` names the y axis (default `y`)."""
    styles = {v: "solid" if i == 0 else "dot" for i, v in enumerate(sorted(frame[dash].unique()))} if dash else {}
    colours = series_colours(sorted(frame[color].unique()))
    fig = go.Figure()
    for names, g in frame.sort(x).group_by([color] + ([dash] if dash else []), maintain_order=True):
        # a number means nothing without its column ("seed 0"); an id names itself
        own = f"{color} {names[0]}" if isinstance(names[0], int | float) else str(names[0])
        name = own + (f" ({names[1]})" if dash else "")
        fig.add_trace(go.Scatter(x=g[x].to_numpy(), y=g[y].to_numpy(), mode="lines", name=name,
                                 legendgroup=str(names[0]),
                                 line=dict(color=colours[names[0]], dash=styles[names[1]] if dash else "solid"),
                                 hovertemplate=f"{x}=%{{x}}<br>{y_title or y}=%{{y:{hover_format(unit)}}}"
                                               "<extra>%{fullData.name}</extra>"))
    framed(fig, title, 360, legend_above=True)
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y_title or y, **(LOG_AXIS if log_y else axis_format(unit)))
    return fig


def phase_curves(mean: pl.DataFrame, *, x_title: str, y_title: str = "", title: str, unit: str = "") -> go.Figure:
    """A mean curve per phase (phase, coord, value), in the phase colours; `unit` is the value's declared
    unit ("fraction": axis and hover in %)."""
    fig = go.Figure([go.Scatter(x=g["coord"].to_numpy(), y=g["value"].to_numpy(), name=p, mode="lines+markers",
                                line=dict(color=PHASE_COLOURS[p]),
                                hovertemplate=f"{x_title}=%{{x:.3g}}<br>%{{y:{hover_format(unit)}}}"
                                              "<extra>%{fullData.name}</extra>")
                     for (p,), g in mean.group_by("phase", maintain_order=True)])
    framed(fig, title, 360, legend_above=True)
    fig.update_xaxes(title=x_title)
    fig.update_yaxes(title=y_title, **axis_format(unit))
    return fig
