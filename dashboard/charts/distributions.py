"""Distributions and shares: per-phase boxes and bars, a classifier's probabilities, a quantity's evidence."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboard.charts.scatter import mark
from dashboard.charts.style import MARGIN, PHASE_COLOURS, framed


def phase_probabilities(probabilities: dict[str, float], *, title: str = "") -> go.Figure:
    """Horizontal bars of a classifier's phase probabilities in the phase colours."""
    names = [p for p in PHASE_COLOURS if p in probabilities]
    fig = go.Figure(go.Bar(x=[probabilities[p] for p in names], y=names, orientation="h",
                           marker_color=[PHASE_COLOURS[p] for p in names],
                           hovertemplate="%{y}: %{x:.3f}<extra></extra>"))
    framed(fig, title, 260)
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
    framed(fig, title, 200, showlegend=False)
    fig.update_xaxes(type="log" if log_x else "linear", title=unit)
    fig.update_yaxes(showticklabels=False)
    return fig


def phase_fractions(counts: pl.DataFrame, *, title: str) -> go.Figure:
    """One stacked bar per zoo (counts: zoo, phase, cells, fraction): the share of its grid in each phase."""
    fig = go.Figure()
    for p, colour in PHASE_COLOURS.items():
        g = counts.filter(pl.col("phase") == p)
        if not g.is_empty():
            fig.add_trace(go.Bar(y=g["zoo"].to_list(), x=g["fraction"].to_list(), name=p, orientation="h",
                                 marker_color=colour, customdata=g["cells"].to_list(),
                                 hovertemplate=f"{p}: %{{x:.0%}} of the grid (%{{customdata}} cells)<extra></extra>"))
    n_zoos = counts["zoo"].n_unique()
    framed(fig, title, 140 + 60 * n_zoos, barmode="stack", margin={**MARGIN, "t": 70},  # room for the legend
           legend=dict(orientation="h", traceorder="normal", yanchor="bottom", y=1.0, xanchor="right", x=1))
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return fig


def zoo_boxes(dist: pl.DataFrame, *, title: str, y_title: str = "") -> go.Figure:
    """Per phase, one box per zoo (dist: zoo, phase, value; one point per cell), phases in the taxonomy's order."""
    fig = go.Figure([go.Box(x=g["phase"].to_list(), y=g["value"].to_list(), name=name, boxpoints="all")
                     for (name,), g in dist.group_by("zoo", maintain_order=True)])
    framed(fig, title, 420, boxmode="group", legend=dict(orientation="h"))
    fig.update_xaxes(categoryorder="array", categoryarray=list(PHASE_COLOURS))
    fig.update_yaxes(title=y_title)
    return fig


def phase_boxes(by_phase: pl.DataFrame, *, title: str, y_title: str = "") -> go.Figure:
    """One box per phase (by_phase: phase, value; one point per cell) in the phase colours."""
    fig = go.Figure([go.Box(y=g["value"].to_numpy(), name=p, boxpoints="all", marker_color=PHASE_COLOURS.get(p))
                     for (p,), g in by_phase.sort("phase").group_by("phase", maintain_order=True)])
    framed(fig, title, 420, showlegend=False)
    fig.update_yaxes(title=y_title)
    return fig


# (column prefix in analysis.studies.phase_ensembles.compare, legend, colour): phase-consistent ensembles in
# the well-trained phases' blue, phase-crossing ones in the unclassified grey
ENSEMBLE_KINDS = (("consistent", "members of one phase", PHASE_COLOURS["IV-B"]),
                  ("across", "members of different phases (one of this phase)", PHASE_COLOURS["unclassified"]))


def ensemble_bars(cmp: pl.DataFrame, measure: str, *, title: str, y_title: str = "") -> go.Figure:
    """Per phase, the phase-consistent against the phase-crossing ensembles' mean `measure` (columns
    phase, consistent_<measure>, across_<measure>)."""
    fig = go.Figure([go.Bar(x=cmp["phase"].to_list(), y=cmp[f"{kind}_{measure}"].to_list(), name=label,
                            marker_color=colour) for kind, label, colour in ENSEMBLE_KINDS])
    framed(fig, title, 360, barmode="group", legend=dict(orientation="h"))
    fig.update_yaxes(title=y_title)
    return fig
