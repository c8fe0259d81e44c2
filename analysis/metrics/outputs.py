"""What a metric's output declares — sign convention, unit, human name, scale, taxonomy role, how cells
aggregate it — and the colour scale that follows from it (`colour_scale`), read by the runner, the taxonomy
and every view instead of being re-derived from its name.

Torch-free on purpose: the dashboard's views and `analysis.taxonomy.cells` import it at start-up.
"""
from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import polars as pl


@dataclass(frozen=True)
class Aggregate:
    """How a cell combines its seeds' (or seed pairs') values into the one number its maps show.

    `log_mean` is ln(seed mean), PTMZ's convention for Hessian quantities (Schürholt et al. 2025): the mean is
    taken on the seeds' own scale, then logged. Whoever needs a cell value back on the seeds' scale (to set an
    upload's value among the cells) calls `to_seed_scale`, never its own exp().
    """

    name: str  # "mean" or "log_mean"

    def expr(self, v: pl.Expr) -> pl.Expr:
        return v.mean().log() if self.name == "log_mean" else v.mean()

    def to_seed_scale(self, cell_value):
        """The inverse of the aggregate's last step, elementwise (a float, a NumPy array or a Polars Series)."""
        if self.name != "log_mean":
            return cell_value
        return cell_value.exp() if isinstance(cell_value, pl.Series) else np.exp(cell_value)

    def prefix(self) -> str:
        """What a chart title puts before the quantity's name ("ln " for log_mean)."""
        return "ln " if self.name == "log_mean" else ""


MEAN, LOG_MEAN = Aggregate("mean"), Aggregate("log_mean")


@dataclass(frozen=True)
class ColourScale:
    """How a heatmap (or a scatter coloured by a value) colours a quantity.

    `colours` is a Plotly named scale; `zmid` centres a diverging scale (a signed value: 0 = no difference);
    `log` colours by log10 of the value while hovers show the value itself (values spanning decades);
    `bounds` is the range the values can take, which a fixed scale spans (a fraction: 0–1).
    """

    colours: str
    zmid: float | None = None
    log: bool = False
    bounds: tuple[float, float] | None = None


SEQUENTIAL = ColourScale("Viridis")
DIVERGING = ColourScale("RdBu", zmid=0.0)  # barrier / loss red, no difference white, gain blue
LOG = ColourScale("Plasma", log=True)
COUNT = ColourScale("Blues")  # how many models a cell holds (coverage), not a metric


@dataclass(frozen=True)
class Output:
    name: str
    sign: str  # what a larger value means, in words
    log_scale: bool = False
    role: str = ""  # its role in the phase taxonomy (science.md §1), "" if none
    unit: str = ""
    coord: str = ""  # what `coord` holds for curve outputs ("t", "eigenvalue", "rank"), "" for scalars
    per_layer: bool = False
    aggregate: Aggregate = MEAN  # how a grid cell combines its seeds' values
    label: str = ""  # human name for axes and hovers; "" = the name itself
    signed: bool = False  # a difference whose sign is the point (a gain, a delta): diverging colours around 0
    bounds: tuple[float, float] | None = None  # the range its values can take, where not implied by `unit`

    @property
    def human(self) -> str:
        return self.label or self.name

    @property
    def axis_title(self) -> str:
        """Its human name with its unit, for an axis or a colour bar (a fraction is drawn as a percentage)."""
        unit = "%" if self.unit == "fraction" else self.unit
        return self.human + (f" [{unit}]" if unit else "")


def colour_scale(out: Output, cell_value: bool = True) -> ColourScale:
    """The one place a colour scale is chosen, from the output's declaration.

    Signed values and mode connectivity (< 0 barrier, > 0 ends not converged) diverge around 0; log-scale
    values are coloured by log10, unless `cell_value` is a `log_mean` aggregate (already ln of the seed
    mean: colouring its log again would be wrong); fractions (and declared `bounds`) may be fixed to their
    range. `cell_value=False` for raw per-seed values (a cell's min or max).
    """
    if out.signed or out.role == "connectivity":
        return DIVERGING
    if out.log_scale and not (cell_value and out.aggregate == LOG_MEAN):
        return LOG
    bounds = out.bounds or ((0.0, 1.0) if out.unit == "fraction" else None)
    return replace(SEQUENTIAL, bounds=bounds) if bounds else SEQUENTIAL


# Outputs of the published zoos (PTMZ) that no metric of ours computes: imported rows carry their names
# (data.importers.ptmz_layout.KEY_MAP), and the views read their declarations like any other.
PUBLISHED = {o.name: o for o in (
    Output("wiseft_acc_test_delta", "test accuracy change by WiSE-FT, as published", unit="fraction",
           label="WiSE-FT accuracy delta", signed=True),
    Output("gitrebasin_acc_test_delta", "test accuracy change by Git Re-Basin averaging, as published",
           unit="fraction", label="Git Re-Basin accuracy delta", signed=True),
)}
