"""Charts over the load × temperature grid: a value per cell, the phase map, and a seed × seed matrix."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import polars as pl

from analysis.metrics.outputs import SEQUENTIAL, ColourScale
from analysis.taxonomy.cells import QUANTITIES
from dashboard.charts.style import PHASE_COLOURS, framed, log_colours
from data.zoo.spec import ZooSpec


def axis_orders(spec: ZooSpec) -> tuple[list, list]:
    """Knob values in display order: x with capacity growing to the right (load falling), y listed
    bottom-to-top with temperature rising, so the hottest row is on top (the papers' convention)."""
    x = sorted(spec.grid[spec.load.knob], reverse=spec.load.increases)
    y = sorted(spec.grid[spec.temperature.knob], reverse=not spec.temperature.increases)
    return x, y


def _grid_axes(fig: go.Figure, spec: ZooSpec) -> go.Figure:
    fig.update_xaxes(title=f"{spec.load.knob}  (capacity →)", type="category")
    fig.update_yaxes(title=f"{spec.temperature.knob}  (hotter ↑)", type="category")
    return fig


def grid_heatmap(cells: pl.DataFrame, spec: ZooSpec, value: str = "mean", *, title: str = "",
                 scale: ColourScale = SEQUENTIAL, fixed: bool = False, hover_label: str = "value",
                 colour_title: str = "", labels: pl.DataFrame | None = None) -> go.Figure:
    """Heatmap of `cells[value]` over the load × temperature grid; empty cells stay blank.

    Knob values are categorical on the axes: the grids are geometric, so equal steps are log spacing.
    `scale` is the quantity's declared colour scale (analysis.metrics.outputs.colour_scale): a log scale
    colours by log10 of the value while the hover shows the value itself, a diverging one is centred at its
    `zmid`; `fixed` spans the scale's `bounds` (e.g. 0–1) instead of the data's range. `labels` (the knob
    columns and `phase`) writes each cell's phase over it.
    """
    xk, yk = spec.load.knob, spec.temperature.knob
    xs, ys = axis_orders(spec)
    z = np.full((len(ys), len(xs)), np.nan)
    n = np.zeros((len(ys), len(xs)), dtype=int)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    has_n = "n_seeds" in cells.columns
    for row in cells.iter_rows(named=True):
        # a non-finite value (a diverged seed's inf) is drawn blank: a colour scale cannot place it
        if row[xk] in xi and row[yk] in yi and row[value] is not None and math.isfinite(row[value]):
            z[yi[row[yk]], xi[row[xk]]] = row[value]
            n[yi[row[yk]], xi[row[xk]]] = row["n_seeds"] if has_n else 1
    shown, colorbar = log_colours(z) if scale.log else (z, {})
    if colour_title:
        colorbar["title"] = colour_title
    zrange = scale.bounds if fixed else None
    text = np.full(z.shape, "", dtype=object)
    if labels is not None:
        for row in labels.iter_rows(named=True):
            if row[xk] in xi and row[yk] in yi:
                text[yi[row[yk]], xi[row[xk]]] = row["phase"]
    fig = go.Figure(go.Heatmap(
        z=shown, x=[str(v) for v in xs], y=[str(v) for v in ys], colorscale=scale.colours, zmid=scale.zmid,
        customdata=np.dstack([z, n]), zmin=zrange[0] if zrange else None, zmax=zrange[1] if zrange else None,
        colorbar=colorbar, text=text, texttemplate="%{text}",
        hovertemplate=f"{xk}=%{{x}}<br>{yk}=%{{y}}<br>{hover_label}=%{{customdata[0]:.4g}}"
                      "<br>seeds=%{customdata[1]}<extra></extra>"))
    return _grid_axes(framed(fig, title, 420), spec)


def phase_map(labelled: pl.DataFrame, spec: ZooSpec, *, title: str = "", compact: bool = False) -> go.Figure:
    """Categorical heatmap of the phase labels over the grid; hover shows each metric and its margin.

    A cell near a threshold is marked with '·' in its centre. `compact`: smaller, without the colour bar
    (several maps side by side)."""
    xk, yk = spec.load.knob, spec.temperature.knob
    xs, ys = axis_orders(spec)
    names = list(PHASE_COLOURS)
    z = np.full((len(ys), len(xs)), np.nan)
    text = np.full((len(ys), len(xs)), "", dtype=object)
    hover = np.full((len(ys), len(xs)), "", dtype=object)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    fmt = lambda v: "—" if v is None or v != v else f"{v:.3g}"
    # the rule's quantities by their declared names; the loss margin is in decades (log10 of the ratio to τ_L)
    loss, mc, cka, acc = (QUANTITIES[q] for q in ("train_loss", "mc", "cka", "test_acc"))
    mc_unit = mc.unit(spec.task)
    for r in labelled.iter_rows(named=True):
        i, j = yi.get(r[yk]), xi.get(r[xk])
        if i is None or j is None:
            continue
        z[i, j] = names.index(r["phase"])
        text[i, j] = r["phase"] + (" ·" if r["near_boundary"] else "")
        hover[i, j] = (f"<b>{r['phase']}</b>  {xk}={r[xk]}, {yk}={r[yk]}<br>"
                       f"{loss.label} {fmt(r['train_loss'])} (margin {fmt(r['margin_loss'])} decades)<br>"
                       f"{mc.label} {fmt(r['mc'])} (margin {fmt(r['margin_mc'])} {mc_unit})<br>"
                       f"{cka.label} {fmt(r['cka'])} (margin {fmt(r['margin_cka'])})<br>"
                       f"{acc.label} {fmt(r.get('test_acc'))}")
    k = len(names)
    scale = [[edge, PHASE_COLOURS[n]] for idx, n in enumerate(names) for edge in (idx / k, (idx + 1) / k)]
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], zmin=-0.5, zmax=k - 0.5,
                               colorscale=scale, text=text, texttemplate="%{text}", customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>", showscale=not compact,
                               colorbar=dict(tickvals=list(range(k)), ticktext=names, title="phase")))
    # Heatmaps emit no selection events: an invisible marker per cell makes a click select the cell.
    # It carries the cells' hover text too, since near a cell's centre it is the marker that is hovered.
    cells = [(str(x), str(y), hover[i, j]) for i, y in enumerate(ys) for j, x in enumerate(xs)]
    fig.add_trace(go.Scatter(x=[c[0] for c in cells], y=[c[1] for c in cells], customdata=[c[2] for c in cells],
                             mode="markers", marker=dict(size=24, opacity=0.01), showlegend=False,
                             hovertemplate="%{customdata}<extra></extra>"))
    side_by_side = dict(showlegend=False) if compact else {}
    framed(fig, title, 380 if compact else 460, clickmode="event+select", **side_by_side)
    return _grid_axes(fig, spec)


def similarity_matrix(matrix: np.ndarray, names: list[str], *, title: str,
                      scale: ColourScale = SEQUENTIAL) -> go.Figure:
    """A symmetric seed × seed matrix (e.g. CKA) with each entry written in its cell, on the scale's bounds."""
    lo, hi = scale.bounds or (None, None)
    fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, zmin=lo, zmax=hi, colorscale=scale.colours,
                               zmid=scale.zmid, texttemplate="%{z:.2f}"))
    return framed(fig, title, 320)
