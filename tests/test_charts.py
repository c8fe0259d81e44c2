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
from analysis.taxonomy.phases import PHASES as PHASE_ORDER
from analysis.taxonomy.phases import UNCLASSIFIED
from dashboard.charts import (
    PHASE_COLOURS,
    SERIES_COLOURS,
    axis_orders,
    axis_titles,
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
    series_colours,
    similarity_matrix,
    weight_space,
    zoo_boxes,
)
from dashboard.charts.style import BACKGROUNDS, NEUTRAL, TITLE_TOP, UPLOAD_STAR, decade
from dashboard.widgets import declared
from data.zoo.spec import parse_spec
from tests.colour_vision import DEFICIENCIES, contrast, delta_e, min_difference, seen
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
    assert np.nanmax(h.z) == pytest.approx(2.0) and list(h.colorbar.ticktext)[:4] == ["10⁻³", "0.01", "0.1", "1"]  # log10, in nats
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


def labelled_grid(phases=("I", "II", "III", "IV-A", "IV-B", "unclassified"),
                  near=(True, False, False, False, False, False)) -> pl.DataFrame:
    """SPEC's cells (width 4, 16, 64 × batch_size 16, 64 in row-major order) with phase labels and margins."""
    return grid([0] * 6).with_columns(
        phase=pl.Series(list(phases)), near_boundary=pl.Series(list(near)), train_loss=pl.lit(0.1),
        margin_loss=pl.lit(1.0), mc=pl.lit(0.0), margin_mc=pl.lit(1.0), cka=pl.lit(0.9), margin_cka=pl.lit(0.1))


def legend(fig: go.Figure) -> list[str]:
    return [t.name for t in fig.data if t.showlegend]


def test_phase_map_and_its_compact_form():
    labelled = labelled_grid()
    full = phase_map(labelled, SPEC, title="a")
    compact = phase_map(labelled, SPEC, title="mnist1d-mlp, epoch 3000, the zoo's default thresholds", compact=True)
    heat, cells, ring = full.data[:3]
    assert (heat.type, cells.type, ring.type) == ("heatmap", "scatter", "scatter")
    # a click selects a cell; box and lasso are in the toolbar (a select drag mode would swallow the click)
    assert full.layout.clickmode == "event+select" and full.layout.dragmode is None
    assert {"select2d", "lasso2d"} <= set(full.layout.modebar.add)
    assert {"select2d", "lasso2d"} <= set(full.layout.modebar.add)
    # a categorical legend (no colour bar) of the phases present, in their colours, and the ring's entry
    assert not heat.showscale and legend(full) == [*PHASES, "near a threshold"]
    assert {t.name: t.marker.color for t in full.data if t.showlegend and t.name in PHASE_COLOURS} == PHASE_COLOURS
    assert heat.textfont.size >= 12 and heat.text[1][0] == "I"  # (width 4, batch 16) is the top row: hottest
    # the near-threshold ring: on that cell only, in the legend as a ring
    assert (list(ring.x), list(ring.y), ring.marker.symbol) == (["4"], ["16"], "circle-open")
    assert full.data[-1].marker.symbol == "circle-open" and full.data[-1].marker.line.width >= 2
    hover = heat.customdata[0][0]  # the quantities by their declared names, mc in the task's unit
    assert "train loss 0.1 (margin 1 decades)" in hover and "mode connectivity mc (Bézier) 0 (margin 1 % points)" in hover
    assert "near a threshold" in heat.customdata[1][0] and "near" not in heat.customdata[0][0]
    # compact: smaller, no legend, tick labels kept, the title in short lines
    assert compact.layout.height < full.layout.height and compact.layout.showlegend is False
    assert compact.layout.xaxis.showticklabels is not False and compact.layout.yaxis.showticklabels is not False
    lines = compact.layout.title.text.split("<br>")
    assert len(lines) > 1 and max(map(len, lines)) <= 32 and compact.layout.margin.t >= TITLE_TOP + 22 * len(lines)


def test_phase_map_legend_lists_only_what_is_drawn():
    fig = phase_map(labelled_grid(("I", "I", "IV-B", "IV-B", "IV-A", "IV-A"), (False,) * 6), SPEC, title="m")
    assert legend(fig) == ["I", "IV-A", "IV-B"]  # no "unclassified", no "near a threshold" entry
    assert len(fig.data[2].x) == 0  # no ring


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
    assert fig.layout.xaxis.title.text == "t" and fig.layout.yaxis.title.text == out.axis_title and "[nats]" in out.axis_title


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
    assert t.marker.colorbar.title.text == "train loss" and list(t.marker.colorbar.ticktext)[0] == "10⁻³"
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


# ---- one visual language: the palettes --------------------------------------------------------------------

def test_colour_vision_oracles():
    """WCAG's own examples, CIELAB of sRGB red, CIEDE2000 on Sharma, Wu & Dalal's (2005) test pairs, and what
    dichromacy does: greys stay grey, protanopia and deuteranopia lose one dimension, red and green of
    similar luminance merge for a deuteranope."""
    assert contrast("#000000", "#ffffff") == pytest.approx(21) and contrast("#767676", "#ffffff") == pytest.approx(4.54, abs=0.01)
    assert seen("#ff0000") == pytest.approx([53.24, 80.09, 67.20], abs=0.01)
    sharma = [((50, 2.6772, -79.7751), (50, 0, -82.7485), 2.0425), ((50, 0, 0), (50, -1, 2), 2.3669),
              ((50, 2.49, -0.001), (50, -2.49, 0.0009), 7.1792), ((50, 2.5, 0), (73, 25, -18), 27.1492),
              ((50, 2.5, 0), (56, -27, -3), 31.9030), ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644)]
    assert [round(delta_e(a, b), 4) for a, b, _ in sharma] == [e for *_, e in sharma]
    for name in DEFICIENCIES:
        assert seen("#808080", name) == pytest.approx(seen("#808080"), abs=1e-3), name
    assert all(abs(np.linalg.det(DEFICIENCIES[d])) < 1e-5 for d in ("protanopia", "deuteranopia"))
    red, green = "#ff0000", "#00a000"
    assert delta_e(seen(red), seen(green)) > 60 and delta_e(seen(red, "deuteranopia"), seen(green, "deuteranopia")) < 10


# ΔE00 ≈ 1 is just noticeable between large patches side by side; small marks (scatter points, thin lines, a
# legend swatch) need several times more (Stone, Szafir & Setlur 2014): phases must stay ≥ 12 apart for every
# viewer. The old palette (light peach and grey 12.6 apart for a protanope) failed on contrast, not on this.
MIN_DELTA_E = 12


def test_phase_palette_is_visible_and_colour_blind_safe():
    colours = list(PHASE_COLOURS.values())
    assert list(PHASE_COLOURS) == [*PHASE_ORDER, UNCLASSIFIED] and len(set(colours)) == len(colours)
    for c in colours:
        assert all(contrast(c, bg) >= 3 for bg in BACKGROUNDS), c  # WCAG 1.4.11, graphics
    grey = PHASE_COLOURS[UNCLASSIFIED]
    assert grey[1:3] == grey[3:5] == grey[5:7] and grey == NEUTRAL  # unclassified is a neutral grey
    worst = min_difference(colours)
    assert worst[0] >= MIN_DELTA_E, worst
    assert min(contrast(c, "#ffffff") for c in ("#fddbc7", "#bdbdbd")) < 3  # the old peach and grey: it can fail
    # the near-threshold ring is white: it is drawn on a phase colour, never on the page background
    assert all(contrast("#ffffff", c) >= 3 for c in colours)


def test_series_palette_is_not_the_phase_palette():
    """Zoos, seeds and any other categorical series: visible on both backgrounds, distinct for every viewer,
    never a phase colour nor close to one."""
    assert not set(SERIES_COLOURS) & set(PHASE_COLOURS.values()) and len(set(SERIES_COLOURS)) == len(SERIES_COLOURS)
    for c in SERIES_COLOURS:
        assert all(contrast(c, bg) >= 3 for bg in BACKGROUNDS), c
        assert min(delta_e(seen(c), seen(p)) for p in PHASE_COLOURS.values()) >= 10, c
    assert min_difference(list(SERIES_COLOURS))[0] >= MIN_DELTA_E
    assert list(series_colours([3, 1, 3, 2]).items()) == [(3, SERIES_COLOURS[0]), (1, SERIES_COLOURS[1]),
                                                         (2, SERIES_COLOURS[2])]


def phase_figures() -> dict[str, tuple[go.Figure, dict[str, str]]]:
    """Every builder that draws phases, each with the phase → colour mapping read back from its figure JSON."""
    labelled = labelled_grid()
    by_phase = pl.DataFrame({"phase": ["I", "II", "IV-B", "unclassified"], "value": [1.0, 2.0, 3.0, 4.0]})
    mean = pl.DataFrame({"phase": ["I", "I", "IV-A", "IV-A"], "coord": [0.0, 1.0] * 2, "value": [1.0, 2, 3, 4]})
    counts = pl.DataFrame({"zoo": ["a", "a", "b"], "phase": ["III", "IV-B", "I"], "cells": [1, 3, 2],
                           "fraction": [0.25, 0.75, 1.0]})
    curves = pl.DataFrame({"eigenvalue": [0.0, 1.0] * 3, "density": [1.0, 0.5] * 3,
                           "label": ["II", "II", "IV-A", "IV-A", "upload", "upload"]})
    proba = phase_probabilities({"I": 0.1, "III": 0.3, "IV-B": 0.6})
    figs = {
        "phase_map": phase_map(labelled, SPEC, title="m"),
        "phase_boxes": phase_boxes(by_phase, title="b"),
        "phase_curves": phase_curves(mean, x_title="t", title="c"),
        "phase_fractions": phase_fractions(counts, title="f"),
        "weight_space": weight_space(points(), SPEC, "phase", title="w"),
        "density_chart": density_chart(curves, title="d", colours={p: PHASE_COLOURS[p] for p in ("II", "IV-A")}),
        "evidence_strip": evidence_strip(np.arange(6.0), 2.5, 1.0, title="e", phases=PHASES),
    }
    def drawn(t) -> str:  # a curve's line colour, else its markers' (bars, boxes, points)
        return t.line.color if "lines" in (getattr(t, "mode", None) or "") else t.marker.color

    read = {name: {t.name: drawn(t) for t in fig.data if t.name in PHASE_COLOURS} for name, fig in figs.items()}
    read["phase_probabilities"] = dict(zip(proba.data[0].y, proba.data[0].marker.color))
    scale = figs["phase_map"].data[0].colorscale  # the heatmap's own colours: each phase's band of the scale
    read["phase_map colours"] = {p: scale[2 * i][1] for i, p in enumerate(PHASES)}
    return read


def test_the_same_phase_has_the_same_colour_in_every_chart():
    read = phase_figures()
    assert read["phase_map"].keys() == set(PHASES) and read["evidence_strip"].keys() == set(PHASES)
    assert read["density_chart"] == {"II": PHASE_COLOURS["II"], "IV-A": PHASE_COLOURS["IV-A"]}
    for name, mapping in read.items():
        assert mapping and mapping == {p: PHASE_COLOURS[p] for p in mapping}, name


def colours_drawn(fig: go.Figure) -> set[str]:
    """Every colour a figure draws with: markers, lines, fills, shapes (not its colour scales, nor the
    template's defaults: no trace is left to them)."""
    found = set()

    def walk(node, key=""):
        if isinstance(node, dict):
            for k, v in node.items():
                if k != "template":
                    walk(v, k)
        elif isinstance(node, list | tuple) and "colorscale" not in key:
            for v in node:
                walk(v, key)
        elif isinstance(node, str) and "color" in key and node != "rgba(0,0,0,0)":  # transparent: nothing drawn
            found.add(node.lower())

    walk(fig.to_plotly_json())
    return found


def test_nothing_is_drawn_in_a_colour_one_background_hides():
    """Black or white strokes vanish in one of the two themes: every colour drawn keeps a contrast ≥ 3 with
    both backgrounds, but for the phase map's white ring (on a phase colour, tested above) and the upload's
    gold star (outlined in grey)."""
    ring, star = {"#ffffff"}, {UPLOAD_STAR["color"]}
    seeds = pl.DataFrame({"epoch": [0, 1] * 2, "value": [1.0] * 4, "seed": [0, 0, 1, 1]})
    zoos = pl.DataFrame({"zoo": ["a", "b"], "phase": ["I", "I"], "value": [1.0, 2.0]})
    figs = {  # name: (figure, the exceptions it may draw)
        "phase_map": (phase_map(labelled_grid(), SPEC, title="m"), ring),
        "phase_boxes": (phase_boxes(labelled_grid().with_columns(value=pl.lit(1.0)), title="b"), set()),
        "evidence by phase": (evidence_strip(np.arange(6.0), 2.5, 1.0, title="e", phases=PHASES), star),
        "evidence": (evidence_strip(np.arange(3.0), 1, 1, title="e"), star),
        "weight_space": (mark(weight_space(points(), SPEC, "seed", title="w"), 0, 0, "upload"), star),
        "zoo_boxes": (zoo_boxes(zoos, title="z"), set()),
        "ensemble_bars": (ensemble_bars(pl.DataFrame({"phase": ["I"], "consistent_acc": [0.5], "across_acc": [0.4]}),
                                        "acc", title="e"), set()),
        "line_chart": (line_chart(seeds, "epoch", "value", "seed"), set()),
        "density_chart": (density_chart(pl.DataFrame({"eigenvalue": [0.0], "density": [1.0], "label": ["a"]})), set()),
    }
    assert contrast(UPLOAD_STAR["line"]["color"], "#ffffff") >= 3
    for name, (fig, exceptions) in figs.items():
        drawn = colours_drawn(fig)
        assert drawn and exceptions <= drawn, name
        for c in drawn - exceptions:
            assert re.fullmatch(r"#[0-9a-f]{6}", c), (name, c)  # a palette colour, not "black" or "white"
            assert all(contrast(c, bg) >= 3 for bg in BACKGROUNDS), (name, c)
    # zoos and seeds are series, never phase colours
    assert colours_drawn(figs["zoo_boxes"][0]) == colours_drawn(figs["line_chart"][0]) == set(SERIES_COLOURS[:2])


def test_seeds_one_colour_each_and_a_line_style_per_split():
    seeds = pl.DataFrame({"epoch": [0, 1] * 4, "value": np.linspace(0, 1, 8), "seed": [0] * 4 + [1] * 4,
                          "split": ["test", "test", "train", "train"] * 2})
    fig = line_chart(seeds, "epoch", "value", "seed", dash="split", unit="fraction", y_title="accuracy")
    style = {t.name: (t.line.color, t.line.dash) for t in fig.data}
    assert style == {"seed 0 (test)": (SERIES_COLOURS[0], "solid"), "seed 0 (train)": (SERIES_COLOURS[0], "dot"),
                     "seed 1 (test)": (SERIES_COLOURS[1], "solid"), "seed 1 (train)": (SERIES_COLOURS[1], "dot")}
    assert fig.layout.yaxis.tickformat == ".0%" and "%{y:.1%}" in fig.data[0].hovertemplate
    assert fig.layout.yaxis.title.text == "accuracy"


# ---- the axis story ---------------------------------------------------------------------------------------

LOAD_FALLS = SPEC  # width: load falls as the knob grows
LOAD_RISES = parse_spec(TINY_SPEC.replace("increases = false", "increases = true", 1))  # load rises with it


@pytest.mark.parametrize("spec, load_right, xs, word", [
    (LOAD_FALLS, False, [4, 16, 64], "falls"), (LOAD_FALLS, True, [64, 16, 4], "rises"),
    (LOAD_RISES, False, [64, 16, 4], "falls"), (LOAD_RISES, True, [4, 16, 64], "rises")])
def test_axis_titles_say_what_load_and_temperature_do(spec, load_right, xs, word):
    assert spec.load.increases == (spec is LOAD_RISES) and not spec.temperature.increases
    assert axis_orders(spec, load_right) == (xs, [64, 16])  # the hottest (smallest) batch on top
    assert axis_titles(spec, load_right) == (f"width — load {word} →", "batch_size — temperature rises ↑")
    for fig in (grid_heatmap(grid(range(6)), spec, "value", load_right=load_right),
                phase_map(labelled_grid(), spec, load_right=load_right)):
        assert list(fig.data[0].x) == [str(x) for x in xs] and fig.layout.xaxis.title.text.endswith(f"load {word} →")
        assert "capacity" not in fig.layout.xaxis.title.text
    heat = grid_heatmap(grid(range(6)), spec, "value", load_right=load_right).data[0]
    assert heat.z[0][list(heat.x).index("64")] == 5  # (width 64, batch 64) keeps its value wherever it is drawn


def test_a_knob_with_one_value_has_no_direction():
    spec = parse_spec(TINY_SPEC.replace("batch_size = [16, 64]", "batch_size = [16]"))
    assert axis_titles(spec) == ("width — load falls →", "batch_size (temperature)")


# ---- labels -----------------------------------------------------------------------------------------------

def test_log_axes_label_decades_only():
    curves = pl.DataFrame({"eigenvalue": [0.0, 1.0], "density": [1e-4, 1e-2], "label": ["a", "a"]})
    for axis in (density_chart(curves).layout.yaxis,
                 line_chart(pl.DataFrame({"e": [0, 1], "v": [1e-3, 1.0], "s": [0, 0]}), "e", "v", "s", log_y=True).layout.yaxis,
                 evidence_strip(np.array([1e-3, 1.0]), None, None, title="e", log_x=True).layout.xaxis):
        assert (axis.type, axis.dtick, axis.exponentformat, axis.minorloglabels) == ("log", 1, "power", "none")
    linear = density_chart(curves, log_density=False).layout.yaxis
    assert linear.exponentformat == "power"  # 1×10⁻⁴, never Plotly's default "100µ"
    assert [decade(d) for d in (-4, -2, 0, 1, 3)] == ["10⁻⁴", "0.01", "1", "10", "10³"]


def test_fractions_are_percentages_and_every_colour_bar_is_titled():
    acc = grid_heatmap(grid([0.2, 0.4, 0.5, 0.6, 0.7, 0.9]), SPEC, "value", hover_label="test accuracy",
                       unit="fraction").data[0]
    assert acc.colorbar.tickformat == ".0%" and "test accuracy=%{customdata[0]:.1%}" in acc.hovertemplate
    assert acc.colorbar.title.text == "test accuracy"  # no colour_title: the hover's name
    plain = grid_heatmap(grid(range(6)), SPEC, "value").data[0]
    assert plain.colorbar.title.text == "value" and "%{customdata[0]:.3g}" in plain.hovertemplate
    assert similarity_matrix(np.eye(2), ["0", "1"], title="CKA").data[0].colorbar.title.text == "CKA"
    dist = pl.DataFrame({"zoo": ["a", "b"], "phase": ["I", "I"], "value": [0.5, 0.6]})
    cmp = pl.DataFrame({"phase": ["I"], "consistent_acc": [0.5], "across_acc": [0.4]})
    mean = pl.DataFrame({"phase": ["I"], "coord": [0.0], "value": [0.5]})
    for fig in (zoo_boxes(dist, title="z", unit="fraction"), phase_boxes(dist, title="p", unit="fraction"),
                ensemble_bars(cmp, "acc", title="e", unit="fraction"),
                phase_curves(mean, x_title="t", title="c", unit="fraction")):
        assert fig.layout.yaxis.tickformat == ".0%" and ":.1%}" in fig.data[0].hovertemplate, fig.layout.title.text
    strip = evidence_strip(np.array([0.5, 0.7]), 0.6, None, title="acc", unit="fraction")
    assert strip.layout.xaxis.tickformat == ".0%" and strip.layout.xaxis.title.text == "%"
    (t,) = weight_space(points(), SPEC, "test_acc", title="a", scale=colour_scale(declared("test_acc")),
                        unit="fraction").data
    assert t.marker.colorbar.tickformat == ".0%" and "test_acc=%{customdata[3]:.1%}" in t.hovertemplate


def test_titles_clear_the_toolbar_and_legends_clear_the_axes():
    """Titles left-aligned below the toolbar's row; horizontal legends between title and plot area (never over
    an axis title), with the top margin for both."""
    curves = pl.DataFrame({"eigenvalue": [0.0], "density": [1.0], "label": ["a"]})
    counts = pl.DataFrame({"zoo": ["a"], "phase": ["I"], "cells": [1], "fraction": [1.0]})
    for fig in (density_chart(curves, title="d"), phase_fractions(counts, title="f"),
                zoo_boxes(pl.DataFrame({"zoo": ["a"], "phase": ["I"], "value": [1.0]}), title="z"),
                line_chart(pl.DataFrame({"e": [0], "v": [1.0], "s": [0]}), "e", "v", "s", title="l")):
        title, leg = fig.layout.title, fig.layout.legend
        assert (title.x, title.xanchor, title.xref, title.yref) == (0, "left", "container", "container")
        assert title.pad.t == TITLE_TOP
        # the legend's top edge, in px from the figure's top, lies below the title's last line
        assert (leg.orientation, leg.yref, leg.yanchor) == ("h", "container", "top")
        assert (1 - leg.y) * fig.layout.height >= TITLE_TOP + 22 * len(title.text.split("<br>"))
        assert fig.layout.margin.t >= TITLE_TOP + 2 * 22, title.text  # a title line and a legend row
    wrapped = density_chart(curves, title="Spectral density (seed mean), train loss, epoch 3000, and one more clause")
    assert "<br>" in wrapped.layout.title.text and wrapped.layout.margin.t > density_chart(curves, title="d").layout.margin.t
    assert wrapped.layout.title.pad.t > TITLE_TOP  # Plotly lifts a title of several lines by half a line


def test_weight_space_hover_axes_and_selection():
    fig = weight_space(points(), SPEC, "phase", title="PCA", x_title="PC1 (42 % of variance)",
                       y_title="PC2 (13 % of variance)", hover_units={"test_acc": "fraction"})
    hover = fig.data[0].hovertemplate
    assert "test_acc=%{customdata[3]:.1%}" in hover and "train_loss=%{customdata[4]:.3g}" in hover
    assert "width=%{customdata[0]}" in hover and "phase=%{customdata[5]}" in hover  # integers and names as they are
    assert fig.layout.xaxis.title.text == "PC1 (42 % of variance)" and fig.layout.yaxis.title.text.startswith("PC2")
    assert fig.layout.dragmode is None and {"select2d", "lasso2d"} <= set(fig.layout.modebar.add)
    by_seed = weight_space(points(), SPEC, "seed", title="s")
    assert [t.marker.color for t in by_seed.data] == list(SERIES_COLOURS[:2])
    (t,) = weight_space(points(), SPEC, "train_loss", title="l", scale=colour_scale(declared("train_loss"))).data
    assert "train_loss=%{customdata[4]:.3g}" in t.hovertemplate  # the coloured value is in the hover too
