"""Scatter maps: the models' weights in two dimensions (PCA / UMAP), and the star that marks an upload."""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import plotly.graph_objects as go
import polars as pl

from analysis.metrics.outputs import ColourScale
from dashboard.charts.style import (
    PHASE_COLOURS,
    SELECTABLE,
    UPLOAD_STAR,
    axis_format,
    framed,
    hover_format,
    log_colours,
    series_colours,
)
from data.zoo.spec import ZooSpec

# what a point's hover shows besides its model id and cell, where the frame has it
HOVER_EXTRAS = ("seed", "test_acc", "train_loss", "phase")


def mark(fig: go.Figure, x, y, name: str, *, hover: str = "", label: bool = True) -> go.Figure:
    """A star marker (an uploaded model) at data coordinates (x, y) of an existing figure."""
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text" if label else "markers", name=name, text=[name],
                             textposition="top center", marker=UPLOAD_STAR,
                             hovertemplate=(hover or name) + "<extra></extra>", showlegend=False))
    return fig


def _category_order(values: list[str], colour: str) -> list[str]:
    """Phases in the taxonomy's order; knob values and seeds (as strings) in numeric order."""
    if colour == "phase":
        return [p for p in PHASE_COLOURS if p in values]
    return sorted(values, key=lambda v: (len(v), v))


def _hover_field(i: int, column: str, frame: pl.DataFrame, units: Mapping[str, str]) -> str:
    """One line of a point's hover: a float with its declared unit's format (% for fractions, else .3g)."""
    fmt = f":{hover_format(units.get(column, ''))}" if frame[column].dtype.is_float() else ""
    return f"<br>{column}=%{{customdata[{i}]{fmt}}}"


def weight_space(points: pl.DataFrame, spec: ZooSpec, colour: str = "phase", *, title: str,
                 scale: ColourScale | None = None, colour_title: str = "", height: int = 560,
                 x_title: str = "", y_title: str = "", unit: str = "",
                 hover_units: Mapping[str, str] | None = None) -> go.Figure:
    """A 2-D map of the models' weights: `points` has x, y, model_id, the two knobs and `colour` (and any of
    HOVER_EXTRAS for the hover).

    `scale` None: `colour` is categorical, one trace per value (phases in their colours, knob values and
    seeds in order in the series colours); otherwise one trace coloured by the value on that declared scale,
    in `unit` ("fraction": the colour bar in %). Each point's customdata starts with its cell's (load,
    temperature) knob values, so a selection can open the cell. `x_title`, `y_title` name the axes (e.g.
    "PC1 (42 % of variance)"); `hover_units` are the hover columns' declared units. Box and lasso select
    a group of models.
    """
    xk, yk = spec.load.knob, spec.temperature.knob
    units = {**(hover_units or {}), **({colour: unit} if scale is not None else {})}
    extras = [c for c in HOVER_EXTRAS if c in points.columns]
    fields = [xk, yk, *extras, *([colour] if scale is not None and colour not in extras else [])]
    hover = "<b>%{text}</b>" + "".join(_hover_field(i, c, points, units) for i, c in enumerate(fields))

    def trace(g: pl.DataFrame, **kw) -> go.Scatter:
        custom = np.array(g.select(fields).rows(), dtype=object).reshape(g.height, len(fields))
        return go.Scatter(x=g["x"].to_numpy(), y=g["y"].to_numpy(), mode="markers", text=g["model_id"].to_list(),
                          customdata=custom, hovertemplate=hover + "<extra>%{fullData.name}</extra>", **kw)

    fig = go.Figure()
    if scale is None:
        names = points[colour].cast(pl.String)
        order = _category_order(names.drop_nulls().unique().to_list(), colour)
        colours = PHASE_COLOURS if colour == "phase" else series_colours(order)
        for value in order:
            fig.add_trace(trace(points.filter(names == value), name=value, marker=dict(size=7, color=colours[value])))
        fig.update_layout(legend_title_text=colour)
    else:
        v = points[colour].cast(pl.Float64).to_numpy()
        shown, colorbar = log_colours(v) if scale.log else (v, axis_format(unit))
        fig.add_trace(trace(points, name=colour, showlegend=False, marker=dict(
            size=7, color=shown, colorscale=scale.colours, cmid=scale.zmid, showscale=True,
            colorbar={**colorbar, "title": colour_title or colour})))
    framed(fig, title, height, **SELECTABLE)
    fig.update_xaxes(showticklabels=False, title=x_title, zeroline=False)
    fig.update_yaxes(showticklabels=False, title=y_title, zeroline=False)
    return fig
