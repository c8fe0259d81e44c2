"""Phase labels: one case per row of the taxonomy, boundaries, missing metrics, and the CLI."""
import math
import subprocess
import sys

import polars as pl
import pytest

from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, grid_text, label
from tests.conftest import ROOT

TH = Thresholds(train_loss=0.1, mc=1.0, cka=0.7)


@pytest.mark.parametrize("loss, mc, cka, phase", [
    (1.5, -20.0, 0.5, "I"),      # under-fitted, barrier
    (1.5, 2.0, 0.5, "II"),       # under-fitted, connected (hot, not converged)
    (0.01, -20.0, 0.5, "III"),   # fitted, barrier (under-sized)
    (0.01, -0.2, 0.3, "IV-A"),   # fitted, connected, dissimilar seeds
    (0.01, 0.0, 0.9, "IV-B"),    # fitted, connected, similar seeds
])
def test_one_case_per_taxonomy_row(loss, mc, cka, phase):
    assert label(loss, mc, cka, TH) == phase


@pytest.mark.parametrize("loss, mc, cka, phase", [
    (0.1, -1.0, 0.7, "IV-B"),           # exactly at every threshold: not above τ_L, not below −ε, cka ≥ τ_C
    (0.1000001, -1.0, 0.7, "II"),
    (0.1, -1.0000001, 0.7, "III"),
    (0.05, 0.0, 0.6999999, "IV-A"),
    (1.5, float("nan"), 0.9, "unclassified"),
    (None, 0.0, 0.9, "unclassified"),
    (0.01, 0.0, float("nan"), "unclassified"),  # phase IV needs CKA
    (1.5, -5.0, None, "I"),                      # … phases I–III do not
])
def test_boundaries_and_missing_values(loss, mc, cka, phase):
    assert label(loss, mc, cka, TH) == phase


def cells():
    return pl.DataFrame({"width": [2, 2, 64, 64, 256, 256], "batch_size": [8, 512, 8, 512, 64, 1024],
                         "train_loss": [1.9, 1.8, 1.7, 0.012, 0.01, 0.011],
                         "mc": [-9.0, -12.0, 3.0, -30.0, -0.1, 0.2],
                         "cka": [0.8, 0.9, 0.2, 0.4, 0.9, 0.6]})


def test_classify_margins_and_near_flags():
    out = classify(cells(), TH)
    assert out["phase"].to_list() == ["I", "I", "II", "III", "IV-B", "IV-A"]
    row = out.row(4, named=True)
    assert row["margin_loss"] == pytest.approx(math.log10(0.01 / 0.1))
    assert row["margin_mc"] == pytest.approx(0.9) and row["margin_cka"] == pytest.approx(0.2)
    assert row["near_boundary"]  # mc within a point of −ε
    assert not out.row(0, named=True)["near_boundary"]
    voted = classify(cells().with_columns(hessian_trace=pl.Series([5.0, 5.0, 1.0, 4.0, 2.0, 2.5])),
                     Thresholds(0.1, 1.0, 0.7, hessian=3.0))
    assert voted["hessian_vote"].to_list() == ["sharp", "sharp", "flat", "sharp", "flat", "flat"]
    assert voted["phase"].to_list() == out["phase"].to_list()  # a vote, not a decision
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['cka'\]"):
        classify(cells().drop("cka"), TH)


def test_zoo_relative_defaults():
    th = default_thresholds(cells())
    assert th.train_loss == pytest.approx(0.1)  # 10 × the smallest cell loss
    assert th.cka == pytest.approx(0.75)  # midpoint of the CKA of the two fitted, connected cells
    assert set(th.provenance) == {"train_loss", "mc", "cka"}


def test_grid_text_orientation():
    text = grid_text(classify(cells(), TH), "width", "batch_size")
    lines = text.splitlines()
    assert lines[1].split()[0] == "8"  # hottest row first (top)
    assert lines[0].split()[-3:] == ["2", "64", "256"]  # capacity grows to the right


@pytest.mark.slow
def test_cli_on_a_foreign_table(tmp_path):
    table = cells().rename({"train_loss": "loss", "mc": "conn", "cka": "sim", "width": "w", "batch_size": "b"})
    table.write_csv(tmp_path / "cells.csv")
    cmd = [sys.executable, "-m", "analysis.taxonomy.phases", str(tmp_path / "cells.csv"), "--col", "train_loss=loss",
           "--col", "mc=conn", "--col", "cka=sim", "--col", "load=w", "--col", "temperature=b",
           "--tau-cka", "0.7", "--out", str(tmp_path / "out.parquet")]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    assert "IV-B" in r.stdout and "cells per phase" in r.stdout
    out = pl.read_parquet(tmp_path / "out.parquet")
    assert out["phase"].to_list() == ["I", "I", "II", "III", "IV-B", "IV-A"] and "sim" in out.columns
    bad = subprocess.run(cmd[:6] + ["--col", "mc=conn", "--col", "load=w", "--col", "temperature=b"],
                         capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no column for 'cka'" in bad.stderr
    bad = subprocess.run(cmd[:4] + ["--col", "mc=nope"], capture_output=True, text=True, cwd=ROOT)
    assert bad.returncode == 2 and "no column(s) ['mc=nope']" in bad.stderr


def test_validation_when_a_held_out_cell_leaves_one_phase():
    """Leave-one-cell-out on a small zoo: holding out the only cell of a phase leaves one phase to train on
    (no classifier can be fitted): the fold predicts that phase, and the other folds fit as usual."""
    import numpy as np

    from analysis.taxonomy.classifier import validate

    rng = np.random.default_rng(0)
    cells = ["a", "b", "b", "c", "c", "d", "d"]  # cell a alone is phase I; b, c, d are II or III
    phase = ["I", "II", "II", "III", "III", "II", "II"]
    x = [-5.0, 1.0, 1.1, 5.0, 5.2, 0.9, 1.2]
    table = pl.DataFrame({"cell": cells, "seed": list(range(7)), "phase": phase, "f": x,
                          "g": rng.normal(size=7)})
    v = validate(table, "cell", features=("f", "g"))
    assert v.folds == 4 and v.n == 7
    # a's fold trains on II and III only, so it cannot say I: row I of the confusion matrix has no hit
    assert v.confusion[v.labels.index("I")][v.labels.index("I")] == 0
    only_two = pl.DataFrame({"cell": ["a", "b"], "seed": [0, 1], "phase": ["I", "II"], "f": [0.0, 1.0]})
    assert validate(only_two, "cell", features=("f",)).accuracy == 0.0  # each fold sees the other phase only
