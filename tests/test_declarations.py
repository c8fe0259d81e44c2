"""Declarations drive the views: each output and taxonomy quantity declares how cells aggregate it, its unit,
its name and its colour scale once (analysis.metrics.outputs, analysis.taxonomy.cells), and no view re-derives
them (no exp() of a cell value, no scale chosen from a metric's name, no colour-scale literal)."""
import re

import plotly.colors
import polars as pl
import pytest

from analysis.metrics.catalog import find_output, list_metrics
from analysis.metrics.outputs import DIVERGING, LOG, LOG_MEAN, MEAN, PUBLISHED, SEQUENTIAL, Output, colour_scale
from analysis.taxonomy.cells import QUANTITIES, scalar_metrics
from dashboard.widgets import declared
from data.tasks.builtin import TASKS
from data.zoo.store import builtin_zoos
from tests.conftest import ROOT

OUTPUTS = [o for m in list_metrics() for o in m.outputs] + list(PUBLISHED.values())
VIEWS = sorted((ROOT / "dashboard" / "views").glob("*.py"))


def shown_on_grids(o: Output) -> bool:
    """A model-level scalar (or the top eigenvalue, coord = rank): what a view may put on the grid."""
    return not o.per_layer and o.coord in ("", "rank")


def test_every_output_declares_a_known_aggregate_once():
    assert all(o.aggregate in (MEAN, LOG_MEAN) for o in OUTPUTS)
    names = [o.name for o in OUTPUTS]
    assert len(names) == len(set(names))  # one declaration per name: find_output is unambiguous
    # ln of the seed mean is the Hessian quantities' convention (PTMZ), and only theirs
    assert {o.name for o in OUTPUTS if o.aggregate == LOG_MEAN} == {o.name for o in OUTPUTS
                                                                    if o.name.startswith("hessian_")
                                                                    and o.log_scale}


@pytest.mark.parametrize("name", sorted(QUANTITIES))
def test_each_quantity_agrees_with_its_candidate_outputs(name):
    q = QUANTITIES[name]
    for metric, _, _ in q.candidates:
        out = find_output(metric)
        assert out is not None, metric
        assert q.aggregate == out.aggregate and q.log_scale == out.log_scale, (name, metric)
    assert declared(name) == find_output(q.candidates[0][0])
    for task in TASKS:  # a unit from the task's declaration (nats, % points, …) or none; never a guess
        assert q.unit(task) == (TASKS[task].units[q.task_unit] if q.task_unit else "")
        assert q.caption(task).startswith(q.label)


def test_every_scalar_output_has_a_colour_scale_from_the_one_function():
    for o in filter(shown_on_grids, OUTPUTS):
        scale = colour_scale(o)
        if o.signed or o.role == "connectivity":  # mc < 0 barrier, a delta < 0 loss: diverging around 0
            assert scale == DIVERGING, o.name
        elif o.log_scale and o.aggregate == MEAN:  # spans decades: coloured by log10
            assert scale == LOG, o.name
        else:  # a log_mean cell value is already a logarithm: colouring it by log again would be wrong
            assert not scale.log and scale.colours == SEQUENTIAL.colours, o.name
            assert colour_scale(o, cell_value=False) == (LOG if o.log_scale else scale)
        if o.unit == "fraction" and scale.zmid is None and not scale.log:
            assert scale.bounds == (0.0, 1.0), o.name
    # the name-derived rule the views used to apply (…_delta, …_gain, …_mc diverge) is now declared
    assert all(colour_scale(o) == DIVERGING for o in OUTPUTS if o.name.endswith(("_delta", "_gain", "_mc")))


def test_every_metric_of_the_builtin_zoos_is_declared():
    """Whatever a view can offer from a built-in zoo has a declaration (a sign, a scale, an aggregate)."""
    for root in builtin_zoos():
        metrics = pl.read_parquet(root / "metrics.parquet", columns=["metric", "split", "coord", "layer", "error"])
        for name in scalar_metrics(metrics)["metric"].unique():
            assert declared(name).sign, (root.name, name)


# what a view must not contain: the aggregate undone by hand, a scale chosen from a metric's name, or a
# colour scale written out (the keyword arguments that take one, and plotly's named scales as written:
# capitalised, so a lower-case column such as "phase" is not mistaken for the scale of that name)
FORBIDDEN = [re.escape(".exp("), re.escape("np.exp"), r"startswith\(\s*[\"']hessian", r"\bcolorscale\s*=",
             r"color_continuous_scale", r"log_color\s*=", r"\bzmid\s*="]
SCALES = set(plotly.colors.named_colorscales())


@pytest.mark.parametrize("view", VIEWS, ids=lambda p: p.name)
def test_views_read_the_declarations(view):
    text = view.read_text()
    for pattern in FORBIDDEN:
        hit = re.search(pattern, text)
        assert not hit, f"{view.name} contains {hit.group()!r}: read the declaration instead"
    literals = re.findall(r"[\"']([A-Z][A-Za-z]*?)(?:_r)?[\"']", text)
    assert not [s for s in literals if s.lower() in SCALES], f"{view.name} names a colour scale"
