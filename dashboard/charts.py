"""Pure chart builders: a frame and a spec in, a Plotly figure out (no Streamlit)."""
from __future__ import annotations

import math

import numpy as np
import plotly.graph_objects as go
import polars as pl

from data.zoo.spec import ZooSpec


def axis_orders(spec: ZooSpec) -> tuple[list, list]:
    """Knob values in display order: x with capacity growing to the right (load falling), y listed
    bottom-to-top with temperature rising, so the hottest row is on top (the papers' convention)."""
    x = sorted(spec.grid[spec.load.knob], reverse=spec.load.increases)
    y = sorted(spec.grid[spec.temperature.knob], reverse=not spec.temperature.increases)
    return x, y


def grid_heatmap(cells: pl.DataFrame, spec: ZooSpec, value: str = "mean", *, title: str = "",
                 colorscale: str = "Viridis", log_color: bool = False, zrange: tuple[float, float] | None = None,
                 hover_label: str = "value", zmid: float | None = None,
                 labels: pl.DataFrame | None = None) -> go.Figure:
    """Heatmap of `cells[value]` over the load × temperature grid; empty cells stay blank.

    Knob values are categorical on the axes: the grids are geometric, so equal steps are log spacing.
    `log_color` colours by log10 of the value while the hover shows the value itself; `zmid` centres a
    diverging scale; `labels` (the knob columns and `phase`) writes each cell's phase over it.
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
    colorbar: dict = {}
    shown = z
    if log_color:  # colour by log10, label the colour bar in the value's own units
        shown = np.log10(np.clip(z, 1e-12, None))
        decades = np.arange(np.floor(np.nanmin(shown, initial=0)), np.ceil(np.nanmax(shown, initial=0)) + 1)
        colorbar = dict(tickvals=decades, ticktext=[f"{10 ** d:g}" for d in decades])
    text = np.full(z.shape, "", dtype=object)
    if labels is not None:
        for row in labels.iter_rows(named=True):
            if row[xk] in xi and row[yk] in yi:
                text[yi[row[yk]], xi[row[xk]]] = row["phase"]
    fig = go.Figure(go.Heatmap(
        z=shown, x=[str(v) for v in xs], y=[str(v) for v in ys], colorscale=colorscale, zmid=zmid,
        customdata=np.dstack([z, n]), zmin=zrange[0] if zrange else None, zmax=zrange[1] if zrange else None,
        colorbar=colorbar, text=text, texttemplate="%{text}",
        hovertemplate=f"{xk}=%{{x}}<br>{yk}=%{{y}}<br>{hover_label}=%{{customdata[0]:.4g}}"
                      "<br>seeds=%{customdata[1]}<extra></extra>"))
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=420)
    fig.update_xaxes(title=f"{xk}  (capacity →)", type="category")
    fig.update_yaxes(title=f"{yk}  (hotter ↑)", type="category")
    return fig


PHASE_COLOURS = {"I": "#b2182b", "II": "#ef8a62", "III": "#fddbc7", "IV-A": "#67a9cf", "IV-B": "#2166ac",
                 "unclassified": "#bdbdbd"}


def phase_map(labelled: pl.DataFrame, spec: ZooSpec, *, title: str = "") -> go.Figure:
    """Categorical heatmap of the phase labels over the grid; hover shows each metric and its margin.

    A cell near a threshold is marked with '·' in its centre."""
    xk, yk = spec.load.knob, spec.temperature.knob
    xs, ys = axis_orders(spec)
    names = list(PHASE_COLOURS)
    z = np.full((len(ys), len(xs)), np.nan)
    text = np.full((len(ys), len(xs)), "", dtype=object)
    hover = np.full((len(ys), len(xs)), "", dtype=object)
    xi, yi = {v: i for i, v in enumerate(xs)}, {v: i for i, v in enumerate(ys)}
    fmt = lambda v: "—" if v is None or v != v else f"{v:.3g}"
    for r in labelled.iter_rows(named=True):
        i, j = yi.get(r[yk]), xi.get(r[xk])
        if i is None or j is None:
            continue
        z[i, j] = names.index(r["phase"])
        text[i, j] = r["phase"] + (" ·" if r["near_boundary"] else "")
        hover[i, j] = (f"<b>{r['phase']}</b>  {xk}={r[xk]}, {yk}={r[yk]}<br>"
                       f"train loss {fmt(r['train_loss'])} (margin {fmt(r['margin_loss'])} decades)<br>"
                       f"mc {fmt(r['mc'])} (margin {fmt(r['margin_mc'])} points)<br>"
                       f"CKA {fmt(r['cka'])} (margin {fmt(r['margin_cka'])})<br>"
                       f"test acc {fmt(r.get('test_acc'))}")
    k = len(names)
    scale = [[edge, PHASE_COLOURS[n]] for idx, n in enumerate(names) for edge in (idx / k, (idx + 1) / k)]
    fig = go.Figure(go.Heatmap(z=z, x=[str(v) for v in xs], y=[str(v) for v in ys], zmin=-0.5, zmax=k - 0.5,
                               colorscale=scale, text=text, texttemplate="%{text}", customdata=hover,
                               hovertemplate="%{customdata}<extra></extra>",
                               colorbar=dict(tickvals=list(range(k)), ticktext=names, title="phase")))
    # Heatmaps emit no selection events: an invisible marker per cell makes a click select the cell.
    # It carries the cells' hover text too, since near a cell's centre it is the marker that is hovered.
    cells = [(str(x), str(y), hover[i, j]) for i, y in enumerate(ys) for j, x in enumerate(xs)]
    fig.add_trace(go.Scatter(x=[c[0] for c in cells], y=[c[1] for c in cells], customdata=[c[2] for c in cells],
                             mode="markers", marker=dict(size=24, opacity=0.01), showlegend=False,
                             hovertemplate="%{customdata}<extra></extra>"))
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=460, clickmode="event+select")
    fig.update_xaxes(title=f"{xk}  (capacity →)", type="category")
    fig.update_yaxes(title=f"{yk}  (hotter ↑)", type="category")
    return fig


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
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=420, legend=dict(orientation="h"))
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
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=360, legend=dict(orientation="h"))
    fig.update_xaxes(title=x)
    fig.update_yaxes(title=y, type="log" if log_y else "linear")
    return fig


def mark(fig: go.Figure, x, y, name: str, *, hover: str = "", label: bool = True) -> go.Figure:
    """A star marker (an uploaded model) at data coordinates (x, y) of an existing figure."""
    fig.add_trace(go.Scatter(x=[x], y=[y], mode="markers+text" if label else "markers", name=name, text=[name],
                             textposition="top center",
                             marker=dict(symbol="star", size=22, color="#ffd700", line=dict(color="black", width=2)),
                             hovertemplate=(hover or name) + "<extra></extra>", showlegend=False))
    return fig


def phase_probabilities(probabilities: dict[str, float], *, title: str = "") -> go.Figure:
    """Horizontal bars of a classifier's phase probabilities in the phase colours."""
    names = [p for p in PHASE_COLOURS if p in probabilities]
    fig = go.Figure(go.Bar(x=[probabilities[p] for p in names], y=names, orientation="h",
                           marker_color=[PHASE_COLOURS[p] for p in names],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=260)
    fig.update_xaxes(title="probability", range=[0, 1])
    fig.update_yaxes(autorange="reversed")
    return fig


def evidence_strip(values: np.ndarray, mine: float | None, threshold: float | None, *, title: str,
                   log_x: bool = False, unit: str = "") -> go.Figure:
    """The zoo's distribution of one quantity over its cells (box and points), its threshold (dashed) and
    the uploaded model's value (star)."""
    fig = go.Figure(go.Box(x=values, name="zoo cells", boxpoints="all", jitter=0.4, pointpos=0,
                           marker=dict(size=5, color="#7f7f7f"), line=dict(color="#7f7f7f"),
                           hovertemplate="%{x:.4g}<extra>zoo cell</extra>"))
    if threshold is not None and threshold == threshold:
        fig.add_vline(x=threshold, line_dash="dash", line_color="black", annotation_text="threshold")
    if mine is not None and mine == mine:
        mark(fig, mine, "zoo cells", "upload", hover=f"upload: {mine:.4g}", label=False)
    fig.update_layout(title=title, margin=dict(l=10, r=10, t=40, b=10), height=200, showlegend=False)
    fig.update_xaxes(type="log" if log_x else "linear", title=unit)
    fig.update_yaxes(showticklabels=False)
    return fig
