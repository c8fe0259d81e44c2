"""Threshold sensitivity (analysis.taxonomy.sensitivity) against brute force: relabel every cell with `label`
at finely shifted thresholds and find the first shift, each way, that changes its label."""
import math

import numpy as np
import polars as pl
import pytest

from analysis.taxonomy.phases import Thresholds, classify, label
from analysis.taxonomy.sensitivity import (
    THRESHOLDS,
    Flip,
    flip,
    relabelled,
    sensitivity,
    shift_grid,
    shifted,
)

TH = Thresholds(train_loss=0.1, mc=1.0, cka=0.7)


def cells() -> pl.DataFrame:
    """One cell per phase, cells near each threshold, and cells missing values."""
    return pl.DataFrame({
        "width": list(range(10)), "batch_size": [16] * 10,
        "train_loss": [1.5, 1.5, 0.01, 0.01, 0.05, 0.3, 0.099, 0.01, None, 0.02],
        "mc": [-20.0, 2.0, -20.0, -0.2, 0.0, -0.5, -1.2, 0.5, 0.0, -0.3],
        "cka": [0.5, 0.5, 0.5, 0.3, 0.9, 0.9, 0.71, None, 0.9, 0.69]})


def brute_force(loss, mc, cka, name: str, step: float, reach: float) -> float | None:
    """The smallest |shift| on a grid of `step` (up to `reach`) of one threshold that changes the label,
    signed; ε kept ≥ 0."""
    now = label(loss, mc, cka, TH)
    for k in range(1, int(reach / step) + 1):
        for s in (k * step, -k * step):
            th = shifted(TH, name, s)
            if name == "mc" and th.mc < 0:
                continue
            if label(loss, mc, cka, th) != now:
                return s
    return None


@pytest.mark.parametrize("name, step, reach", [("train_loss", 0.001, 4.0), ("mc", 0.01, 25.0), ("cka", 0.001, 1.0)])
def test_moves_match_brute_force_relabelling(name, step, reach):
    sens = sensitivity(classify(cells(), TH), TH)
    k = THRESHOLDS.index(name)
    for i, (loss, mc, cka) in enumerate(cells().select("train_loss", "mc", "cka").iter_rows()):
        f, brute = sens.flips[i][k], brute_force(loss, mc, cka, name, step, reach)
        if brute is None:
            assert f.move is None and f.distance == math.inf, (name, i, f)
        else:  # the first grid point past the boundary lies within one step of it, on its side
            assert f.move is not None and np.sign(brute) == f.direction, (name, i, f, brute)
            assert abs(f.move) - 1e-9 <= abs(brute) <= abs(f.move) + step + 1e-9, (name, i, f, brute)
            assert f.flips_to == label(loss, mc, cka, shifted(TH, name, brute)), (name, i)


def test_hand_computed_moves():
    # under-fitted by a decade (loss 1.0 vs τ_L 0.1): τ_L up 1 decade makes it fitted, III behind its barrier
    f = flip(1.0, -5.0, 0.5, TH, "train_loss")
    assert f == Flip("train_loss", pytest.approx(1.0), "III", 1)
    assert f.sentence() == "τ_L: 1 decades up → III"
    # a barrier of −3 points with ε = 1: ε up 2 points connects it
    assert flip(0.01, -3.0, 0.9, TH, "mc") == Flip("mc", pytest.approx(2.0), "IV-B", 1)
    # connected with mc −0.2: ε down 0.8 (to just below 0.2) puts up the barrier
    assert flip(0.01, -0.2, 0.9, TH, "mc") == Flip("mc", pytest.approx(-0.8), "III", -1)
    # connected with mc ≥ 0: no ε ≥ 0 makes a barrier
    assert flip(0.01, 0.5, 0.9, TH, "mc").move is None
    # τ_C matters in phase IV only, and only with a CKA
    assert flip(0.01, 0.0, 0.6, TH, "cka") == Flip("cka", pytest.approx(-0.1), "IV-B", -1)
    assert flip(1.0, 0.0, 0.6, TH, "cka").move is None and flip(0.01, 0.0, None, TH, "cka").move is None
    assert flip(None, 0.0, 0.9, TH, "train_loss").flips_to is None  # unclassified whatever τ_L is
    assert "no move alone changes it" in flip(1.0, 0.0, 0.6, TH, "cka").sentence()
    # exactly at a threshold: the move is 0 and the flip lies on one side
    at = flip(0.1, 0.0, 0.9, TH, "train_loss")
    assert at.move == 0 and at.direction == -1 and at.flips_to == "II"
    with pytest.raises(ValueError, match="threshold 'tau'"):
        flip(0.1, 0.0, 0.9, TH, "tau")


def test_relabelled_counts_match_brute_force():
    table = classify(cells(), TH)
    sens = sensitivity(table, TH)
    for name in THRESHOLDS:
        shifts = shift_grid(name, TH)
        got = relabelled(sens, name, shifts)
        assert got.columns == ["shift", "cells"] and got.schema["cells"] == pl.Int64
        for s, n in got.iter_rows():
            th = shifted(TH, name, s)
            if name == "mc" and th.mc < 0:
                assert n == 0
                continue
            brute = sum(label(lo, m, c, th) != p for lo, m, c, p in
                        table.select("train_loss", "mc", "cka", "phase").iter_rows())
            assert n == brute, (name, s)
        assert got.filter(pl.col("shift") == 0)["cells"].item() == 0


def test_the_frame_is_tidy():
    sens = sensitivity(classify(cells(), TH), TH)
    frame = sens.frame()
    assert frame.height == cells().height * len(THRESHOLDS)
    assert frame.columns == ["width", "batch_size", "phase", "threshold", "move", "distance", "flips_to"]
    none = frame.filter(pl.col("move").is_null())
    assert (none["distance"] == math.inf).all() and none["flips_to"].null_count() == none.height
    assert sens.at(7, 16)[THRESHOLDS.index("cka")].move is None  # fitted, connected, no CKA: unclassified
    with pytest.raises(ValueError, match="no cell width=99"):
        sens.at(99, 16)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['cka'\]"):
        sensitivity(cells().drop("cka"), TH)


def test_relabelled_chart_one_panel_per_threshold():
    from dashboard.charts import relabelled_chart

    sens = sensitivity(classify(cells(), TH), TH)
    curves = {n: relabelled(sens, n, shift_grid(n, TH)) for n in THRESHOLDS}
    fig = relabelled_chart(curves, {n: f"{n} shift" for n in THRESHOLDS}, total=10, title="r")
    assert [t.type for t in fig.data] == ["scatter"] * 3 and [t.line.shape for t in fig.data] == ["hv"] * 3
    assert [list(t.y) for t in fig.data] == [c["cells"].to_list() for c in curves.values()]
    assert fig.layout.xaxis2.title.text == "mc shift" and fig.layout.yaxis.range[1] >= 10
    assert len(fig.layout.shapes) == 3  # the current threshold (shift 0) in each panel


@pytest.mark.slow
def test_the_pages_show_stability_and_sensitivity():
    """The Phase diagram's map carries the stored stability (default thresholds), its sensitivity section
    draws on request; the cell page lists its stability and each threshold's flip."""
    import json

    from streamlit.testing.v1 import AppTest

    from tests.conftest import DEFAULT_ZOO
    from tests.test_dashboard import APP

    stored = pl.read_parquet(DEFAULT_ZOO / "phases.parquet").filter(pl.col("epoch") == 300)
    at = AppTest.from_file(APP, default_timeout=120).run()
    at.switch_page("views/phases.py").run()
    assert not at.exception, at.exception
    heat = json.loads(at.get("plotly_chart")[1].proto.spec)["data"][0]
    unstable = stored.filter(pl.col("stability") < 0.8)
    written = [t for row in heat["text"] for t in row if "<br>" in t]
    assert len(written) == unstable.height > 0  # the map's bootstrap is the stored one
    assert any("Threshold sensitivity" in s.value for s in at.subheader)
    assert len(at.get("plotly_chart")) == 2  # the charts wait for the toggle
    at.toggle(key="phases_sensitivity").set_value(True).run()
    assert not at.exception and len(at.get("plotly_chart")) == 4
    at.switch_page("views/cell.py").run()
    assert not at.exception, at.exception
    text = "\n".join(m.value for m in at.markdown)
    assert "seed resamples" in text and "before it flips: τ_L:" in text and "ε:" in text
