"""The Hessian-spectra, Compare and Ensembles pages: every chart's "copy as Python" snippet, run as a user
would run it, loads exactly what the chart draws (compared with the figure's own data, not with the page's
table), and the pages name quantities by their declarations."""
import json
import math

import numpy as np
import polars as pl
import pytest
import torch
from streamlit.testing.v1 import AppTest

from dashboard.charts import PHASE_COLOURS
from dashboard.widgets import LOAD_RIGHT_KEY
from tests.test_dashboard import APP, array, figures

torch.set_num_threads(1)


def run_snippet(code: str) -> pl.DataFrame:
    """What a user gets pasting the snippet into a notebook (the same exec as dashboard.notebook.Slice.load)."""
    scope: dict = {}
    exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
    return scope["frame"]


def page(name: str) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page(f"views/{name}.py").run()
    assert not at.exception, at.exception
    return at


def snippets(at: AppTest) -> list[str]:
    """The page's "copy as Python" snippets in the order drawn (other code blocks, e.g. the sidebar's link, not)."""
    return [c.value for c in at.code if c.language == "python"]


def heatmap_cells(fig: dict) -> dict[tuple[str, str], tuple[float, int]]:
    """(x label, y label) -> (value, seeds) from a grid_heatmap's customdata (the values the hover shows)."""
    h = fig["data"][0]
    data = array(h["customdata"]).reshape(len(h["y"]), len(h["x"]), 2)
    return {(x, y): (data[i, j, 0], int(data[i, j, 1])) for i, y in enumerate(h["y"]) for j, x in enumerate(h["x"])
            if not math.isnan(data[i, j, 0])}


def assert_grid(frame: pl.DataFrame, fig: dict, xk: str, yk: str, value: str, seeds: str) -> None:
    want = {(str(r[xk]), str(r[yk])): (r[value], r[seeds]) for r in frame.iter_rows(named=True)
            if r[value] is not None and math.isfinite(r[value])}
    got = heatmap_cells(fig)
    assert got.keys() == want.keys() and want
    for k, (v, n) in want.items():
        assert got[k][0] == pytest.approx(v, rel=1e-12) and got[k][1] == n, k


@pytest.mark.slow
def test_spectra_snippets_load_what_each_chart_draws():
    at = page("spectra")
    density, trace, top = figures(at)
    # one curve per phase, in the taxonomy's order and in its phase colour
    assert [t["name"].split()[0] for t in density["data"]] == ["I", "II", "III", "IV-A", "IV-B"]
    assert all(t["line"]["color"] == PHASE_COLOURS[t["name"].split()[0]] for t in density["data"])
    codes = snippets(at)
    assert len(codes) == 4  # the densities, two sharpness maps, the per-layer table
    curves = run_snippet(codes[0])
    assert [t["name"] for t in density["data"]] == curves["label"].unique(maintain_order=True).to_list()
    for t in density["data"]:
        g = curves.filter(pl.col("label") == t["name"])
        assert np.array_equal(array(t["x"]), g["eigenvalue"].to_numpy())
        y = array(t["y"])  # the log axis drops the far tails (NaN): every drawn point is the snippet's
        assert np.allclose(y[~np.isnan(y)], g["density"].to_numpy()[~np.isnan(y)], rtol=0, atol=0)
    for fig, code, q in ((trace, codes[1], "hessian_trace"), (top, codes[2], "hessian_top_eigenvalue")):
        frame = run_snippet(code)
        assert_grid(frame, fig, "width", "batch_size", q, f"{q}_n")
        assert fig["data"][0]["colorbar"]["title"]["text"].startswith("ln ")
    # the sidebar's "load increases to the right" flips the maps' load axis (width is a load that falls as it grows)
    at.toggle(key=LOAD_RIGHT_KEY).set_value(True).run()
    assert not at.exception and figures(at)[1]["data"][0]["x"] == trace["data"][0]["x"][::-1]
    layers = run_snippet(codes[3])
    table = pl.from_pandas(at.dataframe[0].value)
    assert layers.height > 0 and table.columns == layers.columns
    assert table.equals(layers, null_equal=True)


@pytest.mark.slow
def test_compare_snippets_load_what_each_chart_draws():
    at = page("compare")
    figs = figures(at)
    maps, fractions, boxes = figs[:-2], figs[-2], figs[-1]
    codes = snippets(at)
    n = len(maps)
    # a snippet per map, one per zoo for the fractions, one per zoo with the metric (not the PINN) for the boxes
    assert n >= 2 and len(codes) == 2 * n + len(boxes["data"]) and len(boxes["data"]) == n - 1
    for fig, code in zip(maps, codes[:n]):
        labelled = run_snippet(code)
        h = fig["data"][0]
        text = {(x, y): array(h["text"])[i][j].split()[0] for i, y in enumerate(h["y"]) for j, x in enumerate(h["x"])
                if array(h["text"])[i][j]}
        xk, yk = labelled.columns[:2]
        assert text == {(str(r[xk]), str(r[yk])): r["phase"] for r in labelled.iter_rows(named=True)}
    shares = pl.concat([run_snippet(c) for c in codes[n:2 * n]])
    drawn = {(zoo, t["name"]): x for t in fractions["data"] for zoo, x in zip(t["y"], array(t["x"]))}
    assert drawn == pytest.approx({(r["zoo"], r["phase"]): r["fraction"] for r in shares.iter_rows(named=True)})
    dist = pl.concat([run_snippet(c) for c in codes[2 * n:]])
    for t in boxes["data"]:
        g = dist.filter(pl.col("zoo") == t["name"])
        assert t["x"] == g["phase"].to_list() and np.allclose(array(t["y"]), g["value"], rtol=1e-12, atol=0)
    assert {t["name"] for t in boxes["data"]} == set(dist["zoo"])
    # zoos in the series palette: one colour each, none of them a phase colour
    zoo_colours = [t["marker"]["color"] for t in boxes["data"]]
    assert len(set(zoo_colours)) == len(zoo_colours) and not set(zoo_colours) & set(PHASE_COLOURS.values())
    # two maps to a row: each column holding a map is half the page wide and holds that map alone
    map_titles = {f["layout"]["title"]["text"] for f in maps}
    map_columns = [c for c in at.columns if any(json.loads(e.proto.spec)["layout"]["title"]["text"] in map_titles
                                                for e in c.get("plotly_chart"))]
    assert len(map_columns) == n and all(c.weight == 0.5 and len(c.get("plotly_chart")) == 1 for c in map_columns)
    # human names: the box chart and the select box read the declarations, never the raw output name
    assert "test accuracy" in boxes["layout"]["title"]["text"] and "test_acc" not in boxes["layout"]["title"]["text"]
    assert "test accuracy (test)" in at.selectbox(key="compare_metric").options


@pytest.mark.slow
def test_downstream_snippets_load_what_each_chart_draws():
    at = page("downstream")
    ens, heat, box, *curves = figures(at)
    ens_code, *codes = snippets(at)
    assert len(codes) == 2 + len(curves)
    cmp = run_snippet(ens_code)  # per phase, the consistent and the across-phase ensembles' mean accuracy
    for t, kind in zip(ens["data"], ("consistent", "across")):
        assert list(t["x"]) == cmp["phase"].to_list() and np.allclose(array(t["y"]), cmp[f"{kind}_acc"])
    values = run_snippet(codes[0])
    assert_grid(values, heat, "width", "batch_size", "value", "n_seeds")
    by_phase = run_snippet(codes[1])
    for t in box["data"]:
        assert sorted(array(t["y"])) == pytest.approx(sorted(by_phase.filter(pl.col("phase") == t["name"])["value"]))
    assert {t["name"] for t in box["data"]} == set(by_phase["phase"])
    for fig, code in zip(curves, codes[2:]):
        mean = run_snippet(code)
        for t in fig["data"]:
            g = mean.filter(pl.col("phase") == t["name"])
            assert np.allclose(array(t["x"]), g["coord"]) and np.allclose(array(t["y"]), g["value"])
    # the select box and titles by human names (the declared label, or the output's name where none is declared)
    shown = at.selectbox(key="downstream_metric")
    from analysis.metrics.catalog import find_output
    assert shown.format_func(shown.value) == find_output(shown.value).human
    assert heat["layout"]["title"]["text"].startswith(find_output(shown.value).human)
    # a fraction (an accuracy change) is written as a percentage on the colour bar and in the boxes' hover
    shown.set_value("average_epochs_acc_delta").run()
    _, heat, box, *_ = figures(at)
    assert heat["data"][0]["colorbar"]["tickformat"] == ".0%" and ".1%" in box["data"][0]["hovertemplate"]
