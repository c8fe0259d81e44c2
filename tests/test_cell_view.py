"""Cell detail says what the rules know and how sure: each taxonomy quantity against its threshold with its margin
and the phase across it (analysis.taxonomy.cell_report), a metric × seed table with human names, units and
mean ± stderr (analysis.taxonomy.seed_table), and layers named by their module path (data.models.layers).

Oracles: the decision order of science.md §1 worked by hand on hand-built cells; the standard error of a mean
(std / √n) by NumPy; the stored per-layer keys of every built-in zoo for the layer names."""
import json
import math

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest
from torch import nn

from analysis.taxonomy.cell_report import evidence
from analysis.taxonomy.phases import Thresholds, label
from analysis.taxonomy.seed_table import MEAN_COLUMN, layer_table, seed_table
from data.models.layers import layer_names, model_layer_names
from data.zoo.schema import METRICS
from data.zoo.store import Zoo, builtin_zoos
from tests.conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")
TH = Thresholds(train_loss=0.1, mc=1.0, cka=0.8)


# ----------------------------------------------------------------------------- 1. margins and the phase across
def test_a_barrier_cell_names_its_margin_and_the_phase_without_it():
    ev = evidence({"train_loss": 0.01, "mc": -2.1, "cka": 0.9}, TH, "mnist1d")
    assert ev.phase == "III" and not ev.near_boundary  # fitted (0.01 ≤ 0.1), barrier (−2.1 < −1)
    mc = ev.check("mc")
    assert mc.margin == pytest.approx(-1.1) and mc.side == "below" and mc.boundary == -1.0
    assert mc.flips_to == "IV-B"  # without the barrier: IV, and CKA 0.9 ≥ 0.8
    assert mc.sentence() == ("mode connectivity mc (Bézier) −2.1 % points, −ε = −1: 1.1 % points below → "
                             "would be IV-B without the barrier")
    loss = ev.check("train_loss")
    assert loss.margin == pytest.approx(-1.0) and loss.margin_unit == "decades"  # log10(0.01 / 0.1)
    assert loss.flips_to == "I" and loss.sentence().endswith("→ would be I if under-fitted")
    cka = ev.check("cka")
    assert not cka.used and not cka.near and cka.flips_to == "III"  # CKA splits phase IV only
    assert "not used outside phase IV" in cka.sentence()


def test_a_cell_near_tau_c_is_flagged_with_the_other_iv_phase():
    ev = evidence({"train_loss": 0.05, "mc": 0.3, "cka": 0.78}, TH, "mnist1d")
    assert ev.phase == "IV-A" and ev.near_boundary
    cka = ev.check("cka")
    assert cka.near and cka.margin == pytest.approx(-0.02) and cka.flips_to == "IV-B"
    assert [c.quantity for c in ev.checks if c.near] == ["cka"]  # mc 1.3 points and loss 0.3 decades away


def test_values_on_a_threshold_are_on_the_rules_side():
    """train loss = τ_L is fitted, CKA = τ_C is IV-B, mc = −ε is no barrier: the crossing goes the other way."""
    ev = evidence({"train_loss": 0.1, "mc": -1.0, "cka": 0.8}, TH, "mnist1d")
    assert ev.phase == "IV-B"
    assert ev.check("train_loss").side == "below" and ev.check("train_loss").flips_to == "II"
    assert ev.check("mc").side == "above" and ev.check("mc").flips_to == "III"
    assert ev.check("cka").side == "above" and ev.check("cka").flips_to == "IV-A"


def test_a_missing_value_has_no_margin_and_no_crossing():
    ev = evidence({"train_loss": 0.01, "mc": float("nan"), "cka": None}, TH, "mnist1d")
    assert ev.phase == "unclassified"
    mc = ev.check("mc")
    assert mc.value is None and mc.margin is None and mc.flips_to is None and mc.sentence().endswith(": no value")
    assert ev.check("train_loss").flips_to == "unclassified"  # the rules still lack mc across τ_L


def test_every_used_threshold_changes_the_phase_across_it():
    """Property of the decision order: crossing a threshold the rules used always changes the phase, crossing
    CKA outside phase IV never does; `flips_to` is the rule on the crossed value (checked against `label`)."""
    rng = np.random.default_rng(0)
    for tl, mc, cka in zip(10 ** rng.uniform(-3, 1, 200), rng.uniform(-5, 5, 200), rng.uniform(0, 1, 200)):
        ev = evidence({"train_loss": tl, "mc": mc, "cka": cka}, TH, "mnist1d")
        assert ev.phase == label(tl, mc, cka, TH)
        for c in ev.checks:
            assert (c.flips_to != ev.phase) == c.used, (tl, mc, cka, c)


def test_regression_units():
    ev = evidence({"train_loss": 1e-4, "mc": -3.0, "cka": 0.5}, TH, "convection")
    assert ev.check("mc").unit == "decades of loss" and ev.check("train_loss").unit == ""


# ----------------------------------------------------------------------------- 2. metric × seed
def rows(*items) -> pl.DataFrame:
    base = {"other_id": None, "epoch": 300, "layer": None, "coord": None, "stderr": None, "params_hash": "h",
            "error": None}
    return pl.DataFrame([base | i for i in items], schema=METRICS.columns)


def test_seed_table_human_names_percentages_and_the_standard_error():
    seeds = {"m-s0": 0, "m-s1": 1, "m-s2": 2, "m-s7": 7}  # s7 has no value at all: no column
    frame = rows(*[{"model_id": m, "metric": "test_acc", "split": "test", "value": v}
                   for m, v in (("m-s0", 0.40), ("m-s1", 0.50), ("m-s2", 0.45))],
                 {"model_id": "m-s0", "metric": "hessian_trace_hutchpp", "split": "train", "value": 12.0, "stderr": 0.5},
                 {"model_id": "m-s1", "metric": "hessian_trace_hutchpp", "split": "train", "value": 14.0},
                 {"model_id": "m-s0", "metric": "hessian_top_eigenvalue", "split": "train", "value": 3.0, "coord": 1.0},
                 {"model_id": "m-s0", "metric": "hessian_top_eigenvalue", "split": "test", "value": 2.0, "coord": 1.0},
                 {"model_id": "m-s0", "metric": "hessian_top_eigenvalue", "split": "train", "value": 1.0, "coord": 2.0},
                 {"model_id": "m-s1", "metric": "test_acc", "split": "test", "value": 0.9, "error": "boom"})
    t = seed_table(frame, seeds)
    assert t.seeds == (0, 1, 2)
    by = {r.name: r for r in t.rows}
    acc = by["test accuracy"]
    assert acc.unit == "%" and acc.values == pytest.approx((40.0, 50.0, 45.0))  # the failed row is dropped
    assert acc.mean == pytest.approx(45.0)
    assert acc.stderr == pytest.approx(np.std([40, 50, 45], ddof=1) / math.sqrt(3))
    # a metric with two splits says which; its rank-2 eigenvalue is a curve point, not a scalar
    assert set(by) == {"test accuracy", "Hessian trace (Hutch++)", "top Hessian eigenvalue (train)",
                       "top Hessian eigenvalue (test)"}
    assert by["top Hessian eigenvalue (train)"].values == (3.0, None, None)
    shown = t.frame()
    assert shown.columns == ["metric", "unit", "seed 0", "seed 1", "seed 2", MEAN_COLUMN]
    assert shown.null_count().sum_horizontal().item() == 0  # no None anywhere: a missing value is a dash
    hutch = shown.filter(pl.col("metric") == "Hessian trace (Hutch++)").row(0, named=True)
    assert hutch["seed 0"] == "12 ± 0.5" and hutch["seed 1"] == "14" and hutch["seed 2"] == "—"
    assert hutch[MEAN_COLUMN] == f"13 ± {np.std([12, 14], ddof=1) / math.sqrt(2):.2g}"


def test_layer_table_in_model_order_with_module_paths():
    seeds = {"m-s0": 0}
    frame = rows(*[{"model_id": "m-s0", "metric": "stable_rank", "split": None, "layer": k, "value": float(i)}
                   for i, k in enumerate(["10", "3", "1"])])
    t = layer_table(frame, seeds, {"1": "fc1", "3": "fc2", "10": "fc3"}, ["stable_rank", "alpha"])
    assert t["layer"].to_list() == ["fc1", "fc2", "fc3"] and t["module path"].to_list() == ["1", "3", "10"]
    assert t.columns[:3] == ["seed", "layer", "module path"] and "alpha" not in t.columns


# ----------------------------------------------------------------------------- 3. layer names
EXPECTED = {
    "mnist1d-mlp": {"1": "fc1", "3": "fc2", "5": "fc3"},
    "mnist1d-cnn": {"features.0": "conv1", "features.2": "conv2", "features.4": "conv3", "head": "head"},
    "convection-pinn": {"1": "fc1", "3": "fc2", "5": "fc3", "7": "fc4", "9": "fc5"},
    "modadd-transformer": {k: k for k in ("pos", "embed", "blocks.0.qkv", "blocks.0.out", "blocks.0.up",
                                          "blocks.0.down", "unembed")},
}


@pytest.mark.parametrize("root", builtin_zoos(), ids=lambda p: p.name)
def test_layer_names_of_every_builtin_zoo(root):
    """Every per-layer key the zoo stores has a readable name, in the model's order, and no two are alike."""
    zoo = Zoo.open(root)
    model = sorted(zoo.configs)[0]
    stored = (pl.scan_parquet(root / "metrics.parquet").filter((pl.col("model_id") == model)
                                                              & pl.col("layer").is_not_null())
              .select("layer").unique().collect()["layer"])
    names = model_layer_names(zoo, model)
    assert set(names) == set(stored)
    assert names == EXPECTED[root.name] and list(names) == list(EXPECTED[root.name])
    assert len(set(names.values())) == len(names)


def test_a_name_already_taken_keeps_its_path():
    class Odd(nn.Module):  # a Sequential's first Linear would be "fc1", which a named module already is
        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Conv1d(4, 4, 3))
            self.fc1 = nn.Linear(4, 2)

    names = layer_names(Odd())
    assert names == {"body.0": "body.0", "body.2": "conv1", "fc1": "fc1"}


# ----------------------------------------------------------------------------- 4. the page
@pytest.fixture(scope="module")
def page():
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/cell.py").run()
    assert not at.exception, at.exception
    return at


def test_the_page_opens_with_the_cells_phase_and_its_margins(page):
    head = page.subheader[0].value
    assert head.startswith("Phase ") and head.split()[1] in {"I", "II", "III", "IV-A", "IV-B", "unclassified"}
    lines = page.markdown[0].value.splitlines()
    assert len(lines) == 3 and all("→ would be" in x or "not used" in x or "no value" in x for x in lines)
    assert "τ_L" in lines[0] and "−ε" in lines[1] and "τ_C" in lines[2]


def test_the_metric_table_reads_like_a_table(page):
    table = next(d.value for d in page.dataframe if "metric" in d.value.columns)
    assert [c for c in table.columns if c.startswith("seed ")] == ["seed 0", "seed 1", "seed 2"]
    assert not table.isna().any().any()  # no None: no column of them, no cell of them
    names = set(table["metric"])
    assert {"train accuracy", "test accuracy", "train loss"} <= names and not names & {"train_acc", "test_acc"}
    acc = table[table["metric"] == "test accuracy"].iloc[0]
    assert acc["unit"] == "%" and float(acc["seed 0"]) > 1  # a percentage, not a fraction


def test_layers_are_named_and_seeds_are_seeds(page):
    layers = next(d.value for d in page.dataframe if "module path" in d.value.columns)
    assert set(layers["layer"]) == {"fc1", "fc2", "fc3"} and set(layers["module path"]) == {"1", "3", "5"}
    figs = [json.loads(el.proto.spec) for el in page.get("plotly_chart")]
    assert {t["name"] for t in figs[0]["data"]} == {f"seed {s} ({split})" for s in range(3) for split in ("train", "test")}
    assert figs[0]["layout"]["yaxis"]["title"]["text"] == "loss [nats]"
    # each chart's and table's "copy as Python" loads its rows from the zoo's own files
    snippets = [c.value for c in page.code]
    assert sum("catalog.parquet" in s for s in snippets) == 2 and sum("metrics.parquet" in s for s in snippets) == 4
    scope: dict = {}
    exec(next(s for s in snippets if "layer_table" in s), scope)  # noqa: S102 — run as a user would
    assert scope["frame"].to_pandas().equals(layers)
