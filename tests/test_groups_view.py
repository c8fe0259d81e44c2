"""Group comparison: which models a selection holds, its complement in its phases, the per-member curves and
metric points (hand-built oracles), and the page with a group preset in the session."""
import json

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from analysis.studies.groups import group_models, members, metric_points, rest_of_phases, training_curves
from dashboard.group import GROUP_KEY, Group
from data.zoo.schema import METRICS
from data.zoo.spec import parse_spec
from tests.conftest import DEFAULT_ZOO, ROOT, TINY_SPEC

SPEC = parse_spec(TINY_SPEC)  # knobs width (load) and batch_size (temperature)
CELLS = [(4, 16), (4, 64), (64, 16)]
PHASE = {(4, 16): "I", (4, 64): "I", (64, 16): "IV-B"}


def model(w, b, s):
    return f"w{w}-b{b}-s{s}"


CATALOG = pl.DataFrame([
    {"model_id": model(w, b, s), "width": w, "batch_size": b, "epoch": e, "train_loss": float(s + e),
     "test_loss": 2.0 * (s + e), "train_acc": 0.5, "test_acc": None}
    for w, b in CELLS for s in (0, 1) for e in (0, 1)], schema_overrides={"test_acc": pl.Float64})
LABELLED = pl.DataFrame([{"width": w, "batch_size": b, "phase": p} for (w, b), p in PHASE.items()])


def test_a_selection_and_the_rest_of_its_phases():
    assert group_models(CATALOG, SPEC, cells=[(4, 16)], models=[model(64, 16, 1), "not-a-model"]) == \
        [model(4, 16, 0), model(4, 16, 1), model(64, 16, 1)]
    assert group_models(CATALOG, SPEC) == []
    # phase I holds cells (4, 16) and (4, 64); IV-B holds (64, 16): the group's phases are I and IV-B
    assert rest_of_phases(LABELLED, CATALOG, SPEC, [model(4, 16, 0), model(64, 16, 1)]) == \
        [model(4, 16, 1), model(4, 64, 0), model(4, 64, 1), model(64, 16, 0)]
    assert rest_of_phases(LABELLED, CATALOG, SPEC, [model(4, 16, 0)]) == [model(4, 16, 1), model(4, 64, 0),
                                                                          model(4, 64, 1)]


def test_members_and_their_curves():
    ids = [model(4, 16, 0), model(4, 16, 1), model(64, 16, 0)]
    assert members(CATALOG, SPEC, ids) == {i: [i] for i in ids}
    per_cell = members(CATALOG, SPEC, ids, "cell", prefix="A · ")
    assert per_cell == {"A · width=4 · batch_size=16": ids[:2], "A · width=64 · batch_size=16": ids[2:]}
    curves = training_curves(CATALOG, per_cell)
    # the cell's mean over its two seeds: train loss (0 + e + 1 + e) / 2 = e + 0.5, test loss twice that
    mean = curves.filter((pl.col("member") == "A · width=4 · batch_size=16") & (pl.col("kind") == "loss"))
    assert mean.sort("split", "epoch").select("split", "epoch", "value").rows() == \
        [("test", 0, 1.0), ("test", 1, 3.0), ("train", 0, 0.5), ("train", 1, 1.5)]
    assert curves.filter((pl.col("kind") == "acc") & (pl.col("split") == "test"))["value"].is_null().all()
    with pytest.raises(ValueError, match="per 'seed'"):
        members(CATALOG, SPEC, ids, "seed")


def test_metric_points_per_model_and_per_cell():
    rows = [{"model_id": model(w, b, s), "epoch": 1, "metric": "alpha", "value": float(10 * w + s),
             "params_hash": "h"} for w, b in CELLS for s in (0, 1)]
    metrics = METRICS.validate(pl.DataFrame(rows).with_columns(
        *(pl.lit(None, METRICS.columns[c]).alias(c) for c in ("other_id", "split", "layer", "coord", "stderr",
                                                              "error"))).select(list(METRICS.columns)))
    groups = {"A": [model(4, 16, 0), model(4, 16, 1)], "B": [model(64, 16, 0)]}
    per_model = metric_points(metrics, CATALOG, SPEC, 1, ("alpha", None, None), groups, LABELLED)
    assert per_model.select("group", "phase", "value").rows() == [("A", "I", 40.0), ("A", "I", 41.0),
                                                                  ("B", "IV-B", 640.0)]
    per_cell = metric_points(metrics, CATALOG, SPEC, 1, ("alpha", None, None), groups, LABELLED, "cell")
    assert per_cell.select("group", "width", "value").rows() == [("A", 4, 40.5), ("B", 64, 640.0)]


def figures(at):
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def preset_page() -> AppTest:
    """The groups page with two cells of the default zoo selected on the phase map."""
    root = str(DEFAULT_ZOO.resolve())
    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "groups.py"), default_timeout=120)
    at.session_state["zoo_current"] = root
    at.session_state[GROUP_KEY] = Group(root, cells=((16, 16), (32, 16)), origin="phase map")
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_page_compares_a_preset_group_with_the_rest_of_its_phase():
    at = preset_page()
    assert any("2 cells and 0 models selected in phase map" in c.value for c in at.caption)
    loss, acc, spectra, boxes = figures(at)
    assert len({t["name"].rsplit(" ", 1)[0] for t in loss["data"]}) == len(loss["data"]) // 2  # a colour per model
    assert {t["line"]["dash"] for t in loss["data"]} == {"solid", "dot"}  # line style per split
    assert spectra["data"] and {t["name"] for t in boxes["data"]} == {"A"}
    at.radio(key="groups_versus").set_value("the rest of its phases").run()
    at.radio(key="groups_per").set_value("cell").run()
    assert not at.exception, at.exception
    loss, *_, boxes = figures(at)
    assert {t["name"] for t in boxes["data"]} == {"A", "B"}
    assert any(t["name"].startswith("A · width=16 · batch_size=16") for t in loss["data"])
    assert any(t["name"].startswith("B · ") for t in loss["data"])


def test_every_chart_snippet_loads_what_it_draws():
    """Each chart's "copy as Python" run as a user would: the curves, spectra and metric points of the group."""
    import numpy as np

    from tests.test_dashboard import array

    at = preset_page()
    at.radio(key="groups_versus").set_value("the rest of its phases").run()
    assert not at.exception, at.exception
    figs = figures(at)
    codes = [c.value for c in at.code if c.language == "python"]
    assert len(codes) == len(figs) == 4
    scope: dict = {}
    frames = []
    for code in codes:
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
        frames.append(scope["frame"])
    loss, _, spectra, boxes = figs
    for t in loss["data"]:  # a trace per (member, split)
        member, split = t["name"].rsplit(" (", 1)
        g = frames[0].filter((pl.col("member") == member) & (pl.col("split") == split.rstrip(")"))).sort("epoch")
        assert np.allclose(array(t["y"]), g["value"])
    for t in spectra["data"]:
        g = frames[2].filter(pl.col("member") == t["name"])
        assert np.allclose(array(t["x"]), g["eigenvalue"])
    for t in boxes["data"]:
        assert sorted(array(t["y"])) == pytest.approx(sorted(frames[3].filter(pl.col("group") == t["name"])["value"]))
