"""Distributions and shares: per-phase boxes and bars, a classifier's probabilities, a quantity's evidence."""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import plotly.graph_objects as go
import polars as pl

from dashboard.charts.scatter import mark
from dashboard.charts.style import (
    LOG_AXIS,
    NEUTRAL,
    PHASE_COLOURS,
    SERIES_COLOURS,
    axis_format,
    framed,
    hover_format,
    series_colours,
)


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


ZOO_CELLS = "zoo cells"  # the strip's one row: the zoo's cells and the upload's star


def evidence_strip(values: np.ndarray, mine: float | None, threshold: float | None, *, title: str,
                   log_x: bool = False, unit: str = "", phases: Sequence[str] | None = None) -> go.Figure:
    """The zoo's distribution of one quantity over its cells (box and points), its threshold (dashed) and
    the uploaded model's value (star). `phases` (one per value: each zoo cell's phase) colours each point in
    its phase colour. `unit` titles the axis ("fraction": in %)."""
    fmt = hover_format(unit)
    fig = go.Figure(go.Box(x=values, y=[ZOO_CELLS] * len(values), orientation="h", name=ZOO_CELLS,
                           boxpoints="all" if phases is None else False, jitter=0.4, pointpos=0,
                           marker=dict(size=5, color=NEUTRAL), line=dict(color=NEUTRAL),
                           hovertemplate=f"%{{x:{fmt}}}<extra>zoo cell</extra>"))
    if phases is not None:
        by_phase = pl.DataFrame({"value": values, "phase": list(phases)})
        for p in [p for p in PHASE_COLOURS if p in by_phase["phase"]]:
            x = by_phase.filter(pl.col("phase") == p)["value"].to_numpy()
            # a box drawing only its points: the same row and jitter as the zoo's box, in the phase's colour
            fig.add_trace(go.Box(x=x, y=[ZOO_CELLS] * len(x), orientation="h", name=p, boxpoints="all",
                                 jitter=0.4, pointpos=0, marker=dict(size=6, color=PHASE_COLOURS[p]),
                                 line=dict(width=0), fillcolor="rgba(0,0,0,0)", hoveron="points",
                                 hovertemplate=f"%{{x:{fmt}}}<extra>zoo cell, {p}</extra>"))
    if threshold is not None and threshold == threshold:
        fig.add_vline(x=threshold, line_dash="dash", line_color=NEUTRAL, annotation_text="threshold")
    if mine is not None and mine == mine:
        mark(fig, mine, ZOO_CELLS, "upload", hover=f"upload: {mine:.4g}", label=False)
    framed(fig, title, 200, showlegend=False, boxmode="overlay")
    fig.update_xaxes(title="%" if unit == "fraction" else unit, **(LOG_AXIS if log_x else axis_format(unit)))
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
    framed(fig, title, 140 + 60 * n_zoos, legend_above=True, barmode="stack")
    fig.update_xaxes(tickformat=".0%", range=[0, 1])
    return fig


def zoo_boxes(dist: pl.DataFrame, *, title: str, y_title: str = "", unit: str = "") -> go.Figure:
    """Per phase, one box per zoo (dist: zoo, phase, value; one point per cell), phases in the taxonomy's order,
    each zoo in its series colour (never a phase colour). `unit` is the value's declared unit ("fraction": %)."""
    colours = series_colours(dist["zoo"].unique(maintain_order=True))
    fig = go.Figure([go.Box(x=g["phase"].to_list(), y=g["value"].to_list(), name=name, boxpoints="all",
                            marker_color=colours[name],
                            hovertemplate=f"%{{x}}: %{{y:{hover_format(unit)}}}<extra>%{{fullData.name}}</extra>")
                     for (name,), g in dist.group_by("zoo", maintain_order=True)])
    framed(fig, title, 420, legend_above=True, boxmode="group")
    fig.update_xaxes(categoryorder="array", categoryarray=list(PHASE_COLOURS))
    fig.update_yaxes(title=y_title, **axis_format(unit))
    return fig


def phase_boxes(by_phase: pl.DataFrame, *, title: str, y_title: str = "", unit: str = "") -> go.Figure:
    """One box per phase (by_phase: phase, value; one point per cell) in the phase colours, in the taxonomy's
    order. `unit` is the value's declared unit ("fraction": axis and hover in %)."""
    phases = [p for p in PHASE_COLOURS if p in by_phase["phase"]]
    fig = go.Figure([go.Box(y=by_phase.filter(pl.col("phase") == p)["value"].to_numpy(), name=p, boxpoints="all",
                            marker_color=PHASE_COLOURS[p],
                            hovertemplate=f"%{{y:{hover_format(unit)}}}<extra>{p}</extra>") for p in phases])
    framed(fig, title, 420, showlegend=False)
    fig.update_yaxes(title=y_title, **axis_format(unit))
    return fig


# (column prefix in analysis.studies.phase_ensembles.compare, legend, colour): two series, not phases, so the
# series colours (the x axis names the phase)
ENSEMBLE_KINDS = (("consistent", "members of one phase", SERIES_COLOURS[1]),
                  ("across", "members of different phases (one of this phase)", SERIES_COLOURS[0]))


def ensemble_bars(cmp: pl.DataFrame, measure: str, *, title: str, y_title: str = "", unit: str = "") -> go.Figure:
    """Per phase, the phase-consistent against the phase-crossing ensembles' mean `measure` (columns
    phase, consistent_<measure>, across_<measure>); `unit` is the measure's declared unit ("fraction": %)."""
    fig = go.Figure([go.Bar(x=cmp["phase"].to_list(), y=cmp[f"{kind}_{measure}"].to_list(), name=label,
                            marker_color=colour, hovertemplate=f"%{{x}}: %{{y:{hover_format(unit)}}}<extra>{label}</extra>")
                     for kind, label, colour in ENSEMBLE_KINDS])
    framed(fig, title, 360, legend_above=True, barmode="group")
    fig.update_yaxes(title=y_title, **axis_format(unit))
    return fig
