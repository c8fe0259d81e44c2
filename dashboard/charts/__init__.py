"""Pure chart builders, the only place the dashboard builds figures: frames, declarations and a spec in, a
Plotly figure out (no Streamlit). Colour scales, units and names come from the declarations
(analysis.metrics.outputs, analysis.taxonomy.cells.QUANTITIES), never from a view.

  grid.py           the load × temperature grid: a value per cell, the phase map, a seed × seed matrix
  curves.py         spectral densities, training curves, mean curves per phase
  scatter.py        the weight-space map and the upload's star
  distributions.py  per-phase boxes and bars, phase probabilities, an upload's evidence against the zoo
  calibration.py    the classifier's reliability diagram (held-out probability against accuracy)
  sensitivity.py    cells relabelled as each phase threshold alone moves
  style.py          the palettes (phases; every other series), frames, log and percentage formats
"""
from dashboard.charts.calibration import reliability_diagram
from dashboard.charts.curves import density_chart, line_chart, phase_curves
from dashboard.charts.distributions import (
                                            ensemble_bars,
                                            evidence_strip,
                                            phase_boxes,
                                            phase_fractions,
                                            phase_probabilities,
                                            zoo_boxes,
)
from dashboard.charts.grid import axis_orders, axis_titles, grid_heatmap, phase_map, similarity_matrix
from dashboard.charts.scatter import mark, weight_space
from dashboard.charts.sensitivity import relabelled_chart
from dashboard.charts.style import PHASE_COLOURS, SERIES_COLOURS, series_colours

__all__ = ["PHASE_COLOURS", "SERIES_COLOURS", "axis_orders", "axis_titles", "density_chart", "ensemble_bars",
           "evidence_strip", "grid_heatmap", "line_chart", "mark", "phase_boxes", "phase_curves", "phase_fractions", "phase_map",
           "phase_probabilities", "relabelled_chart", "reliability_diagram", "series_colours", "similarity_matrix", "weight_space", "zoo_boxes"]
