"""What every chart shares: the palettes, the frame around a figure (title, legend, toolbar), how values are
written (one label per decade on log axes, fractions as percentages), colouring by log10."""
from __future__ import annotations

import textwrap
from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go

from analysis.taxonomy.phases import PHASES, UNCLASSIFIED

# Streamlit's light and dark page backgrounds: every colour below keeps a WCAG contrast ≥ 3 (graphics) on both,
# so its relative luminance lies between 0.12 and 0.30 and the palettes differ by hue and chroma, not lightness.
BACKGROUNDS = ("#ffffff", "#0e1117")
# strokes, threshold lines, box outlines, "unclassified": a mid grey, never black or white (one vanishes in
# each theme)
NEUTRAL = "#808080"
# Phases in the taxonomy's order (also the order of legends and categorical axes): I crimson, II ochre, III
# purple, IV-A green, IV-B blue. Chosen by search to keep every pair ≥ 14 CIEDE2000 apart under normal vision
# and simulated protanopia, deuteranopia and tritanopia (tests/test_charts.py checks ≥ 12).
PHASE_COLOURS = dict(zip((*PHASES, UNCLASSIFIED), ("#e01060", "#b08000", "#8050a0", "#307050", "#8080ff", NEUTRAL)))
# Everything categorical that is not a phase — zoos, seeds, cells, group members — in this order: a separate
# palette, as visible and as colour-blind safe (every pair ≥ 13 CIEDE2000 apart), each ≥ 10 from every phase
# colour; in farthest-point order (each colour the most distinct from those before it), so any first few differ most.
SERIES_COLOURS = ("#f06000", "#307090", "#806050", "#b070ff", "#d00000", "#8090b0", "#9000ff", "#b08060")
# an uploaded model: a gold star (no palette colour) outlined in grey, which keeps it visible on white
UPLOAD_STAR = dict(symbol="star", size=22, color="#ffd700", line=dict(color=NEUTRAL, width=2))

# a figure whose points a box or lasso selects (a group for the comparison page) and a click picks one
SELECTABLE = dict(clickmode="event+select", modebar_add=["select2d", "lasso2d"])

TITLE_TOP = 28  # px between the figure's top edge and its title: the Plotly toolbar (top right) is ≈ 25 px tall
LINE = 22  # px per line of a title or of a horizontal legend
MARGIN = dict(l=10, r=10, t=TITLE_TOP + LINE + 8, b=10)


def series_colours(values: Iterable) -> dict:
    """Each distinct value (in first-seen order) → its series colour, cycling after len(SERIES_COLOURS)."""
    distinct = list(dict.fromkeys(values))
    return {v: SERIES_COLOURS[i % len(SERIES_COLOURS)] for i, v in enumerate(distinct)}


def framed(fig: go.Figure, title: str, height: int, *, legend_above: bool = False, title_chars: int = 50,
           **layout) -> go.Figure:
    """Title, height, margins and legend, the same on every chart.

    The title is left-aligned below the toolbar and wrapped at `title_chars` (Plotly never wraps, so a long
    title in a narrow column would be cut; 50 characters of the 15 px title font fit a half-width column).
    `legend_above` puts a horizontal legend right below the title, in the figure's (container) coordinates:
    Plotly then pushes the plot area down by as many rows as a narrow column wraps it into, so it never
    covers the title, the plot or an axis title."""
    lines = textwrap.wrap(title, title_chars) or [""]
    head = TITLE_TOP + LINE * len(lines) if title else 0  # px from the top edge to the title's last line
    # Plotly draws a title of several lines half a line higher than its anchor: pad that back
    pad = TITLE_TOP + (LINE // 2 if len(lines) > 1 else 0)
    frame = {"title": dict(text="<br>".join(lines), x=0, xref="container", xanchor="left", y=1, yref="container",
                           yanchor="top", pad=dict(t=pad, l=MARGIN["l"]), font=dict(size=15)),
             "margin": {**MARGIN, "t": head + (LINE + 6 if legend_above else 0) + 8}, "height": height}
    if legend_above:
        frame["legend"] = dict(orientation="h", x=0, xanchor="left", y=1 - (head + 4) / height, yref="container",
                               yanchor="top", traceorder="normal")
    fig.update_layout(**{**frame, **layout})
    return fig


def decade(d: float) -> str:
    """A power of ten as a tick label: 0.01, 0.1, 1, 10, 100, and 10⁻³ / 10³ style beyond (Plotly's "power")."""
    if -2 <= d <= 2:
        return f"{10.0 ** d:g}"
    return "10" + str(int(d)).translate(str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹"))


# a log axis: one label per decade, written as powers of ten (never "100µ" or minor 2, 5 labels)
LOG_AXIS = dict(type="log", dtick=1, exponentformat="power", minorloglabels="none")


def axis_format(unit: str) -> dict:
    """Tick format of a value axis or colour bar in `unit`: percentages for fractions, else powers of ten."""
    return dict(tickformat=".0%") if unit == "fraction" else dict(exponentformat="power")


def hover_format(unit: str) -> str:
    """d3 format of a value in hovers: a fraction as a percentage with one decimal, else 3 significant digits."""
    return ".1%" if unit == "fraction" else ".3g"


def log_colours(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """log10 of positive values for a colour scale, and a colour bar labelled in the values' own units (one
    tick a decade). Non-positive values are clipped to 1e-12: a log scale cannot place them."""
    shown = np.log10(np.clip(values, 1e-12, None))
    decades = np.arange(np.floor(np.nanmin(shown, initial=0)), np.ceil(np.nanmax(shown, initial=0)) + 1)
    return shown, dict(tickvals=decades, ticktext=[decade(d) for d in decades])
