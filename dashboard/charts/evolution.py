"""Phases over training: the phase map at every analysis epoch as one animated figure (an epoch slider and a
play button over Plotly frames), a cell's phase-versus-epoch strip, and how many cells changed phase
between consecutive epochs."""
from __future__ import annotations

import plotly.graph_objects as go
import polars as pl

from dashboard.charts.grid import phase_map
from dashboard.charts.style import PHASE_COLOURS, framed
from data.zoo.spec import ZooSpec

FRAME_MS = 900  # how long the play button shows each epoch's map


def _padded(traces: tuple, n: int) -> list:
    """`traces` followed by empty ones up to `n`: every frame must address the same trace indices, and the
    number of traces (e.g. a legend entry per phase present) differs between epochs."""
    return [*traces, *(go.Scatter(x=[], y=[], showlegend=False, hoverinfo="skip") for _ in range(n - len(traces)))]


def phase_map_frames(labelled: pl.DataFrame, spec: ZooSpec, *, title: str, **map_options) -> go.Figure:
    """The phase map (grid.phase_map, with `map_options` such as its orientation) of each epoch of `labelled`
    (the cells of every analysis epoch with `epoch` and `phase` columns), one Plotly frame per epoch in
    order, an epoch slider and play/pause buttons; it opens on the last epoch."""
    epochs = sorted(labelled["epoch"].unique().to_list())
    maps = [phase_map(labelled.filter(pl.col("epoch") == e), spec, title=f"{title}, epoch {e}", **map_options)
            for e in epochs]
    n = max(len(m.data) for m in maps)
    frames = [go.Frame(data=_padded(m.data, n), name=str(e), traces=list(range(n)),
                       layout=go.Layout(title=m.layout.title)) for e, m in zip(epochs, maps)]
    fig = go.Figure(data=frames[-1].data, layout=maps[-1].layout, frames=frames)
    still = {"mode": "immediate", "frame": {"duration": 0, "redraw": True}, "transition": {"duration": 0}}
    fig.update_layout(
        sliders=[dict(active=len(epochs) - 1, currentvalue=dict(prefix="epoch "), pad=dict(t=40),
                      steps=[dict(label=str(e), method="animate", args=[[str(e)], still]) for e in epochs])],
        updatemenus=[dict(type="buttons", direction="left", x=0, y=0, xanchor="left", yanchor="top",
                          pad=dict(t=70), showactive=False, buttons=[
                              dict(label="▶ play", method="animate",
                                   args=[None, {**still, "frame": {"duration": FRAME_MS, "redraw": True}}]),
                              dict(label="❚❚ pause", method="animate", args=[[None], still])])],
        height=(maps[-1].layout.height or 460) + 110)  # room for the slider and the buttons below the map
    return fig


def phase_strip(history: pl.DataFrame, *, title: str) -> go.Figure:
    """One cell's phase at each analysis epoch (`epoch`, `phase`): a marker per epoch in its phase's colour on
    a categorical phase axis in the taxonomy's order."""
    h = history.sort("epoch")
    phases = h["phase"].to_list()
    fig = go.Figure(go.Scatter(
        x=[str(e) for e in h["epoch"]], y=phases, mode="lines+markers+text", text=phases,
        textposition="top center", line=dict(color="#888888", width=1),
        marker=dict(size=16, color=[PHASE_COLOURS.get(p, PHASE_COLOURS["unclassified"]) for p in phases],
                    line=dict(color="#888888", width=1)),
        hovertemplate="epoch %{x}: phase %{y}<extra></extra>", showlegend=False))
    framed(fig, title, 260)
    fig.update_xaxes(title="analysis epoch", type="category")
    fig.update_yaxes(title="phase", type="category", categoryorder="array", categoryarray=list(PHASE_COLOURS))
    return fig


def changes_chart(changes: pl.DataFrame, *, title: str) -> go.Figure:
    """Cells that changed phase between consecutive analysis epochs (`previous_epoch`, `epoch`, `cells`,
    `changed`), one bar per pair of epochs."""
    pairs = [f"{a} → {b}" for a, b in zip(changes["previous_epoch"], changes["epoch"])]
    fig = go.Figure(go.Bar(x=pairs, y=changes["changed"].to_list(), customdata=changes["cells"].to_list(),
                           marker_color="#888888", text=changes["changed"].to_list(),
                           hovertemplate="%{x}: %{y} of %{customdata} cells changed phase<extra></extra>"))
    framed(fig, title, 300)
    fig.update_xaxes(title="between analysis epochs", type="category")
    fig.update_yaxes(title="cells that changed phase", rangemode="tozero")
    return fig
