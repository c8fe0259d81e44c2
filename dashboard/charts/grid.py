"""Charts over the load × temperature grid: a value per cell, the phase map, and a seed × seed matrix."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import polars as pl

from analysis.metrics.outputs import SEQUENTIAL, ColourScale
from analysis.taxonomy.cells import QUANTITIES
from dashboard.charts.style import (
    NEUTRAL,
    PHASE_COLOURS,
    SELECTABLE,
    axis_format,
    framed,
    hover_format,
    log_colours,
)
from data.zoo.spec import ZooSpec

CELL_TEXT = 13  # px: the phase written in each cell, legible at the default size


def axis_orders(spec: ZooSpec, load_right: bool = False) -> tuple[list, list]:
    """Knob values in display order: x with load falling to the right (capacity growing, the zoo papers'
    convention) or, `load_right`, rising (Yang et al.'s schematic); y listed bottom-to-top with temperature
    rising, so the hottest row is on top."""
    x = sorted(spec.grid[spec.load.knob], reverse=spec.load.increases != load_right)
    y = sorted(spec.grid[spec.temperature.knob], reverse=not spec.temperature.increases)
    return x, y


def _trend(shown: list, increases: bool) -> str:
    """Whether the physical quantity rises or falls along knob values in display order."""
    return "rises" if (shown[-1] > shown[0]) == increases else "falls"


def axis_titles(spec: ZooSpec, load_right: bool = False) -> tuple[str, str]:
    """The grid's axis titles: each knob with what it does to load or temperature in the display order,
    e.g. "width — load falls →", "batch_size — temperature rises ↑" (a one-value knob has no direction)."""
    (xs, ys), load, temp = axis_orders(spec, load_right), spec.load, spec.temperature
    x = f"{load.knob} — load {_trend(xs, load.increases)} →" if len(xs) > 1 else f"{load.knob} (load)"
    y = f"{temp.knob} — temperature {_trend(ys, temp.increases)} ↑" if len(ys) > 1 else f"{temp.knob} (temperature)"
    return x, y


def _grid_axes(fig: go.Figure, spec: ZooSpec, load_right: bool) -> go.Figure:
    x, y = axis_titles(spec, load_right)
    fig.update_xaxes(title=x, type="category")
    fig.update_yaxes(title=y, type="category")
    return fig


def grid_heatmap(cells: pl.DataFrame, spec: ZooSpec, value: str = "mean", *, title: str = "",
                 scale: ColourScale = SEQUENTIAL, fixed: bool = False, hover_label: str = "value",
                 colour_title: str = "", labels: pl.DataFrame | None = None, unit: str = "",
                 load_right: bool = False) -> go.Figure:
    """Heatmap of `cells[value]` over the load × temperature grid; empty cells stay blank.

    Knob values are categorical on the axes: the grids are geometric, so equal steps are log spacing.
    `scale` is the quantity's declared colour scale (analysis.metrics.outputs.colour_scale): a log scale
    colours by log10 of the value while the hover shows the value itself, a diverging one is centred at its
    `zmid`; `fixed` spans the scale's `bounds` (e.g. 0–1) instead of the data's range. `unit` is the value's
    declared unit ("fraction": colour bar and hover in %). The colour bar is titled `colour_title` (else
    `hover_label`). `labels` (the knob columns and `phase`) writes each cell's phase over it.
    """
    xk, yk = spec.load.knob, spec.temperature.knob
    xs, ys = axis_orders(spec, load_right)
    z = np.full((len(ys), len(xs)), np.nan)
    n = np.zeros((len(ys), len(xs)), dtype=int)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    has_n = "n_seeds" in cells.columns
    for row in cells.iter_rows(named=True):
        # a non-finite value (a diverged seed's inf) is drawn blank: a colour scale cannot place it
        if row[xk] in xi and row[yk] in yi and row[value] is not None and math.isfinite(row[value]):
            z[yi[row[yk]], xi[row[xk]]] = row[value]
            n[yi[row[yk]], xi[row[xk]]] = row["n_seeds"] if has_n else 1
    shown, colorbar = log_colours(z) if scale.log else (z, axis_format(unit))
    colorbar["title"] = colour_title or hover_label
    zrange = scale.bounds if fixed else None
    text = np.full(z.shape, "", dtype=object)
    if labels is not None:
        for row in labels.iter_rows(named=True):
            if row[xk] in xi and row[yk] in yi:
                text[yi[row[yk]], xi[row[xk]]] = row["phase"]
    fig = go.Figure(go.Heatmap(
        z=shown, x=[str(v) for v in xs], y=[str(v) for v in ys], colorscale=scale.colours, zmid=scale.zmid,
        customdata=np.dstack([z, n]), zmin=zrange[0] if zrange else None, zmax=zrange[1] if zrange else None,
        colorbar=colorbar, text=text, texttemplate="%{text}", textfont=dict(size=CELL_TEXT),
        hovertemplate=f"{xk}=%{{x}}<br>{yk}=%{{y}}<br>{hover_label}=%{{customdata[0]:{hover_format(unit)}}}"
                      "<br>seeds=%{customdata[1]}<extra></extra>"))
    return _grid_axes(framed(fig, title, 420), spec, load_right)


def phase_map(labelled: pl.DataFrame, spec: ZooSpec, *, title: str = "", compact: bool = False,
              load_right: bool = False) -> go.Figure:
    """Categorical heatmap of the phase labels over the grid, each cell's phase written in it; hover shows
    each metric and its margin.

    The legend names the phases present (in the taxonomy's order) and "near a threshold", the ring drawn
    on such cells. Where `labelled` has the bootstrap's columns (analysis.taxonomy.stability: stability,
    runner_up, runner_up_share) the hover gives them, and a cell kept by fewer than UNSTABLE of the resamples
    is framed, its stability written under its phase ("III" over "0.62"), with a legend entry. `compact`:
    smaller, without the legend and with short title lines (several maps side by side; the cells are
    labelled). Box and lasso select cells (a group), a click one cell."""
    from analysis.taxonomy.stability import UNSTABLE

    xk, yk = spec.load.knob, spec.temperature.knob
    xs, ys = axis_orders(spec, load_right)
    names = list(PHASE_COLOURS)
    z = np.full((len(ys), len(xs)), np.nan)
    text = np.full((len(ys), len(xs)), "", dtype=object)
    hover = np.full((len(ys), len(xs)), "", dtype=object)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    fmt = lambda v: "—" if v is None or v != v else f"{v:.3g}"
    # the rule's quantities by their declared names; the loss margin is in decades (log10 of the ratio to τ_L)
    loss, mc, cka, acc = (QUANTITIES[q] for q in ("train_loss", "mc", "cka", "test_acc"))
    mc_unit = mc.unit(spec.task)
    near, unstable = [], []
    for r in labelled.iter_rows(named=True):
        i, j = yi.get(r[yk]), xi.get(r[xk])
        if i is None or j is None:
            continue
        z[i, j] = names.index(r["phase"])
        text[i, j] = r["phase"]
        hover[i, j] = (f"<b>{r['phase']}</b>  {xk}={r[xk]}, {yk}={r[yk]}"
                       f"{' (near a threshold)' if r['near_boundary'] else ''}<br>"
                       f"{loss.label} {fmt(r['train_loss'])} (margin {fmt(r['margin_loss'])} decades)<br>"
                       f"{mc.label} {fmt(r['mc'])} (margin {fmt(r['margin_mc'])} {mc_unit})<br>"
                       f"{cka.label} {fmt(r['cka'])} (margin {fmt(r['margin_cka'])})<br>"
                       f"{acc.label} {fmt(r.get('test_acc'))}" + _stability_line(r))
        if r.get("stability") is not None and r["stability"] < UNSTABLE:
            # the phase, then the stability smaller on a line of its own (the phase stays the text's first word)
            text[i, j] = f"{r['phase']} <br><span style='font-size:{CELL_TEXT - 3}px'>{r['stability']:.3g}</span>"
            unstable.append((str(r[xk]), str(r[yk]), hover[i, j]))
        if r["near_boundary"]:
            near.append((str(r[xk]), str(r[yk]), hover[i, j]))
    k = len(names)
    scale = [[edge, PHASE_COLOURS[n]] for idx, n in enumerate(names) for edge in (idx / k, (idx + 1) / k)]
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], zmin=-0.5, zmax=k - 0.5,
                               colorscale=scale, text=text, texttemplate="%{text}", customdata=hover,
                               textfont=dict(size=CELL_TEXT), xgap=1, ygap=1,
                               hovertemplate="%{customdata}<extra></extra>", showscale=False))
    # Heatmaps emit no selection events: an invisible marker per cell makes a click select the cell.
    # It carries the cells' hover text too, since near a cell's centre it is the marker that is hovered.
    cells = [(str(x), str(y), hover[i, j]) for i, y in enumerate(ys) for j, x in enumerate(xs)]
    fig.add_trace(_cell_markers(cells, dict(size=24, opacity=0.01), showlegend=False))
    # The ring on a cell near a threshold is white: it always lies on a phase colour, and each has a contrast
    # ≥ 3 with white (the palette's test). Its legend entry, on the page background, is a grey ring.
    fig.add_trace(_cell_markers(near, dict(symbol="circle-open", size=34, color="#ffffff", line_width=3),
                                showlegend=False, legendgroup="near"))
    if unstable:  # a white frame inside the cell, for the same reason as the ring
        fig.add_trace(_cell_markers(unstable, dict(symbol="square-open", size=24 if compact else 30,
                                                   color="#ffffff", line_width=2),
                                    showlegend=False, legendgroup="unstable"))
    present = [p for p in names if (z == names.index(p)).any()]
    for p in present:
        fig.add_trace(_legend_entry(p, dict(symbol="square", size=14, color=PHASE_COLOURS[p])))
    if near:
        fig.add_trace(_legend_entry("near a threshold", dict(symbol="circle-open", size=14, color=NEUTRAL,
                                                             line_width=3), legendgroup="near"))
    if unstable:
        fig.add_trace(_legend_entry(f"unstable (< {UNSTABLE:g})",  # short: a long entry narrows the map
                                    dict(symbol="square-open", size=14, color=NEUTRAL, line_width=2),
                                    legendgroup="unstable"))
    framed(fig, title, 380 if compact else 460, title_chars=32 if compact else 70, showlegend=not compact,
           legend=dict(title_text="phase", itemclick=False, itemdoubleclick=False), **SELECTABLE)
    return _grid_axes(fig, spec, load_right)


def _stability_line(r: dict) -> str:
    """A hover line with a cell's label stability, "" where the frame has no bootstrap columns."""
    if "stability" not in r:
        return ""
    if r["stability"] is None:
        return "<br>stability — (fewer than two seeds or seed pairs to resample)"
    runner = (f"; runner-up {r['runner_up']} {r['runner_up_share']:.3g}" if r.get("runner_up") is not None
              else "; no resample gave another label")
    return f"<br>stability {r['stability']:.3g} of seed resamples keep it{runner}"


def _cell_markers(cells: list[tuple[str, str, str]], marker: dict, **kw) -> go.Scatter:
    """Markers at cell centres (x, y as category strings) hovering the cells' text."""
    return go.Scatter(x=[c[0] for c in cells], y=[c[1] for c in cells], customdata=[c[2] for c in cells],
                      mode="markers", marker=marker, hovertemplate="%{customdata}<extra></extra>", **kw)


def _legend_entry(name: str, marker: dict, **kw) -> go.Scatter:
    """A legend item with nothing drawn: a categorical legend where the figure's colours are a heatmap's."""
    return go.Scatter(x=[None], y=[None], mode="markers", marker=marker, name=name, showlegend=True,
                      hoverinfo="skip", **kw)


def similarity_matrix(matrix: np.ndarray, names: list[str], *, title: str,
                      scale: ColourScale = SEQUENTIAL, colour_title: str = "") -> go.Figure:
    """A symmetric seed × seed matrix (e.g. CKA) with each entry written in its cell, on the scale's bounds;
    the colour bar is titled `colour_title` (else the chart's title)."""
    lo, hi = scale.bounds or (None, None)
    fig = go.Figure(go.Heatmap(z=matrix, x=names, y=names, zmin=lo, zmax=hi, colorscale=scale.colours,
                               zmid=scale.zmid, texttemplate="%{z:.2f}", textfont=dict(size=CELL_TEXT),
                               colorbar=dict(title=colour_title or title)))
    return framed(fig, title, 320)
