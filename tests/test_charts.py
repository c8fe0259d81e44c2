"""The chart builders (dashboard.charts), pure: a frame, a spec and declarations in, a figure out. Each builds
the right traces, takes its axis titles and colour scale from the declarations, and no view builds a figure
of its own."""
import re

import numpy as np
import plotly.graph_objects as go
import polars as pl
import pytest

from analysis.metrics.outputs import COUNT, DIVERGING, LOG, colour_scale
from analysis.taxonomy.cells import QUANTITIES
from dashboard.charts import (
    PHASE_COLOURS,
    density_chart,
    ensemble_bars,
    evidence_strip,
    grid_heatmap,
    line_chart,
    mark,
    phase_boxes,
    phase_curves,
    phase_fractions,
    phase_map,
    phase_probabilities,
    similarity_matrix,
    weight_space,
    zoo_boxes,
)
from dashboard.widgets import declared
from data.zoo.spec import parse_spec
from tests.conftest import ROOT, TINY_SPEC

SPEC = parse_spec(TINY_SPEC)  # width 4 / 16 / 64 × batch_size 16 / 64
PHASES = list(PHASE_COLOURS)


def named(scale: str):
    """A named Plotly scale as a figure stores it (expanded to its colour stops)."""
    return go.Heatmap(colorscale=scale).colorscale


def grid(values) -> pl.DataFrame:
    """A value per cell of SPEC's grid, in row-major order (width, then batch_size)."""
    cells = [(w, b) for w in (4, 16, 64) for b in (16, 64)]
    return pl.DataFrame({"width": [c[0] for c in cells], "batch_size": [c[1] for c in cells],
                         "value": [float(v) for v in values], "n_seeds": [2] * len(cells)})


def test_grid_heatmap_reads_the_declared_scale():
    loss = declared("train_loss")
    fig = grid_heatmap(grid([1e-3, 1e-2, 0.1, 1, 10, 100]), SPEC, "value", scale=colour_scale(loss),
                       hover_label=loss.human, colour_title=QUANTITIES["train_loss"].axis_title(SPEC.task))
    (h,) = fig.data
    assert h.type == "heatmap" and colour_scale(loss) == LOG and h.colorscale == named(LOG.colours)
    assert np.nanmax(h.z) == pytest.approx(2.0) and list(h.colorbar.ticktext)[0] == "0.001"  # log10, labelled in nats
    assert h.colorbar.title.text == "train loss [nats]" and "train loss=" in h.hovertemplate
    assert fig.layout.xaxis.title.text.startswith("width") and fig.layout.yaxis.title.text.startswith("batch_size")
    mc = grid([-3, -1, 0, 0.5, 1, 2])
    assert grid_heatmap(mc, SPEC, "value", scale=colour_scale(declared("mc_bezier"))).data[0].zmid == 0
    acc = colour_scale(declared("test_acc"))
    fixed = grid_heatmap(grid([0.2, 0.4, 0.5, 0.6, 0.7, 0.9]), SPEC, "value", scale=acc, fixed=True).data[0]
    assert (fixed.zmin, fixed.zmax) == (0.0, 1.0) and fixed.zmid is None
    assert grid_heatmap(mc, SPEC, "value", scale=acc).data[0].zmin is None  # not fixed: the data's range
    # a Hessian cell value is ln of the seed mean already: a sequential scale, not log10 of a logarithm
    trace = grid_heatmap(grid([-1, 0, 1, 2, 3, 4]), SPEC, "value", scale=colour_scale(declared("hessian_trace")))
    assert np.nanmin(trace.data[0].z) == -1 and not trace.data[0].colorbar.tickvals


def test_phase_map_and_its_compact_form():
    labelled = grid([0] * 6).with_columns(
        phase=pl.Series(["I", "II", "III", "IV-A", "IV-B", "unclassified"]), near_boundary=pl.lit(False),
        train_loss=pl.lit(0.1), margin_loss=pl.lit(1.0), mc=pl.lit(0.0), margin_mc=pl.lit(1.0), cka=pl.lit(0.9),
        margin_cka=pl.lit(0.1))
    full, compact = phase_map(labelled, SPEC, title="a"), phase_map(labelled, SPEC, title="b", compact=True)
    assert [t.type for t in full.data] == ["heatmap", "scatter"] and full.layout.clickmode == "event+select"
    assert full.data[0].showscale and not compact.data[0].showscale
    assert compact.layout.height < full.layout.height and compact.layout.showlegend is False
    hover = full.data[0].customdata[0][0]  # the quantities by their declared names, mc in the task's unit
    assert "train loss 0.1 (margin 1 decades)" in hover and "mode connectivity mc (Bézier) 0 (margin 1 % points)" in hover


def test_similarity_matrix_spans_the_declared_bounds():
    mat = np.array([[1.0, 0.8], [0.8, 1.0]])
    (h,) = similarity_matrix(mat, ["0", "1"], title="CKA", scale=colour_scale(declared("cka_logits_test"))).data
    assert h.type == "heatmap" and (h.zmin, h.zmax) == (0.0, 1.0) and h.texttemplate == "%{z:.2f}"


def test_curves():
    curves = pl.DataFrame({"eigenvalue": [0.0, 1.0, 0.0, 1.0], "density": [1.0, 0.5, 2.0, 1e-9],
                           "label": ["a", "a", "b", "b"]})
    fig = density_chart(curves, title="d")
    assert [t.name for t in fig.data] == ["a", "b"] and fig.layout.yaxis.type == "log"
    assert np.isnan(fig.data[1].y[1])  # the far tail (< 1e-6 of the peak) is not drawn on the log axis
    seeds = pl.DataFrame({"epoch": [0, 1] * 4, "value": np.arange(8.0), "seed": [0] * 4 + [1] * 4,
                          "split": ["test", "test", "train", "train"] * 2})
    lines = line_chart(seeds, "epoch", "value", "seed", dash="split")
    assert len(lines.data) == 4 and {t.line.dash for t in lines.data} == {"solid", "dot"}
    mean = pl.DataFrame({"phase": ["I", "I", "IV-B", "IV-B"], "coord": [0.0, 1.0] * 2, "value": [1.0, 2, 3, 4]})
    out = declared("average_aligned_path_loss")
    fig = phase_curves(mean, x_title="t", y_title=out.axis_title, title="path")
    assert [t.line.color for t in fig.data] == [PHASE_COLOURS["I"], PHASE_COLOURS["IV-B"]]
    assert fig.layout.xaxis.title.text == "t" and fig.layout.yaxis.title.text == "average_aligned_path_loss [nats]"


def test_distributions():
    counts = pl.DataFrame({"zoo": ["a", "a", "b"], "phase": ["I", "IV-B", "I"], "cells": [1, 3, 2],
                           "fraction": [0.25, 0.75, 1.0]})
    fig = phase_fractions(counts, title="f")
    assert fig.layout.barmode == "stack" and [t.name for t in fig.data] == ["I", "IV-B"]
    assert [t.marker.color for t in fig.data] == [PHASE_COLOURS["I"], PHASE_COLOURS["IV-B"]]
    dist = pl.DataFrame({"zoo": ["a", "a", "b"], "phase": ["I", "II", "I"], "value": [1.0, 2.0, 3.0]})
    boxes = zoo_boxes(dist, title="t", y_title="test accuracy [fraction]")
    assert [t.type for t in boxes.data] == ["box", "box"] and list(boxes.layout.xaxis.categoryarray) == PHASES
    assert boxes.layout.yaxis.title.text == "test accuracy [fraction]"
    per_phase = phase_boxes(dist, title="p", y_title="y")
    assert [t.name for t in per_phase.data] == ["I", "II"] and per_phase.data[0].marker.color == PHASE_COLOURS["I"]
    cmp = pl.DataFrame({"phase": ["I", "II"], "consistent_acc": [0.5, 0.6], "across_acc": [0.4, 0.7]})
    bars = ensemble_bars(cmp, "acc", title="e", y_title="test accuracy")
    assert [t.type for t in bars.data] == ["bar", "bar"] and list(bars.data[1].y) == [0.4, 0.7]
    proba = phase_probabilities({"I": 0.2, "IV-A": 0.8})
    assert list(proba.data[0].y) == ["I", "IV-A"] and proba.layout.xaxis.range == (0, 1)
    q = QUANTITIES["train_loss"]
    strip = evidence_strip(np.array([0.1, 1.0]), 0.5, 0.3, title=q.caption("mnist1d"), log_x=q.log_scale)
    assert strip.layout.xaxis.type == "log" and strip.data[-1].marker.symbol == "star"
    assert strip.layout.title.text == "train loss [nats]: above τ_L = under-fitted"


def points() -> pl.DataFrame:
    return pl.DataFrame({"model_id": [f"m{i}" for i in range(4)], "x": [0.0, 1, 2, 3], "y": [3.0, 2, 1, 0],
                         "width": [4, 4, 64, 64], "batch_size": [16, 64, 16, 64], "seed": [0, 1, 0, 1],
                         "test_acc": [0.5, 0.6, 0.7, 0.8], "train_loss": [1e-3, 1e-2, 1e-1, 1.0],
                         "phase": ["IV-B", "I", "IV-B", None]})


def test_weight_space_by_category_and_by_value():
    """One builder for the Weight space page and the upload's place in weight space."""
    fig = weight_space(points(), SPEC, "phase", title="PCA")
    assert [t.name for t in fig.data] == ["I", "IV-B"]  # the taxonomy's order; a model without a phase is left out
    assert [t.marker.color for t in fig.data] == [PHASE_COLOURS["I"], PHASE_COLOURS["IV-B"]]
    assert [list(c[:2]) for c in fig.data[1].customdata] == [[4, 16], [64, 16]]  # its cell, to open on a click
    assert not fig.layout.xaxis.showticklabels and fig.layout.title.text == "PCA"
    by_width = weight_space(points(), SPEC, "width", title="w")
    assert [t.name for t in by_width.data] == ["4", "64"]  # numeric order, not "4" > "16" > "64" as strings
    out = declared("train_loss")
    (t,) = weight_space(points(), SPEC, "train_loss", title="l", scale=colour_scale(out), colour_title=out.axis_title).data
    assert list(t.marker.color) == pytest.approx([-3, -2, -1, 0]) and t.marker.colorscale[0][1] != ""
    assert t.marker.colorbar.title.text == "train loss" and list(t.marker.colorbar.ticktext)[0] == "0.001"
    (t,) = weight_space(points(), SPEC, "test_acc", title="a", scale=colour_scale(declared("test_acc"))).data
    assert list(t.marker.color) == [0.5, 0.6, 0.7, 0.8]
    starred = mark(fig, 1.5, 1.5, "upload")
    assert starred.data[-1].marker.symbol == "star" and len(starred.data) == 3


def test_a_declared_scale_is_drawn_as_declared():
    cov = grid([2, 2, 1, 0, 2, 2])
    for scale in (COUNT, DIVERGING, LOG):
        (h,) = grid_heatmap(cov, SPEC, "value", scale=scale).data
        assert h.colorscale == named(scale.colours) and h.zmid == scale.zmid


@pytest.mark.parametrize("view", sorted((ROOT / "dashboard" / "views").glob("*.py")), ids=lambda p: p.name)
def test_views_build_no_figures(view):
    """Every figure comes from dashboard.charts: a view imports no plotly and builds no trace."""
    text = view.read_text()
    assert not re.search(r"^\s*(import plotly|from plotly)|\bgo\.|\bpx\.|make_subplots", text, flags=re.M), view.name
