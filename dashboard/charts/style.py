"""What every chart shares: the phase colours, the frame around a figure, colouring by log10."""
from __future__ import annotations

import numpy as np
import plotly.graph_objects as go

from analysis.taxonomy.phases import PHASES, UNCLASSIFIED

# Phases in the taxonomy's order (also the order of legends and categorical axes), red = under-fitted /
# poorly connected to blue = the well-connected, well-trained phases.
PHASE_COLOURS = dict(zip((*PHASES, UNCLASSIFIED), ("#b2182b", "#ef8a62", "#fddbc7", "#67a9cf", "#2166ac", "#bdbdbd")))
MARGIN = dict(l=10, r=10, t=40, b=10)


def framed(fig: go.Figure, title: str, height: int, **layout) -> go.Figure:
    """Title, height and the common margins (dashboard columns are narrow: no wasted border)."""
    fig.update_layout(**{"title": title, "margin": MARGIN, "height": height, **layout})
    return fig


def log_colours(values: np.ndarray) -> tuple[np.ndarray, dict]:
    """log10 of positive values for a colour scale, and a colour bar labelled in the values' own units (one
    tick a decade). Non-positive values are clipped to 1e-12: a log scale cannot place them."""
    shown = np.log10(np.clip(values, 1e-12, None))
    decades = np.arange(np.floor(np.nanmin(shown, initial=0)), np.ceil(np.nanmax(shown, initial=0)) + 1)
    return shown, dict(tickvals=decades, ticktext=[f"{10 ** d:g}" for d in decades])
