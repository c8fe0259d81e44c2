"""Weight space: the phase-separation score (oracles: a hand-computed map, a perfectly separated and a random
one), the axis titles, and the page — its scores, labelled axes, its "copy as Python" rows, a lasso group."""
import json

import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from analysis.studies.embed import EXPLAINED, axis_titles
from analysis.studies.separation import knn_separation
from dashboard.group import GROUP_KEY
from tests.conftest import DEFAULT_ZOO, ROOT

PAGE = str(ROOT / "dashboard" / "views" / "weights.py")
LINE = np.array([[0, 0], [1, 0], [2, 0], [10, 0], [11, 0], [12, 0]], dtype=float)
LABELS = ["A", "A", "B", "B", "B", "A"]


def test_separation_by_hand():
    # k = 3, nearest first (distance ties: lower index): 0 → A,B,B ✗; 1 → A,B,B ✗; 2 → A,A,B ✗;
    # 3 → B,A,B ✓; 4 → B,A,B ✓; 5 → B,B,B ✗
    s = knn_separation(LINE, LABELS, k=3)
    assert (s.accuracy, s.chance, s.n, s.k) == (pytest.approx(2 / 6), 0.5, 6, 3)
    assert s.stderr == pytest.approx(np.sqrt(2 / 6 * 4 / 6 / 6))
    # k = 2: ties go to the nearest neighbour's phase: 0 → A ✓, 1 → A ✓, 2 → A ✗, 3 → B ✓, 4 → B ✓, 5 → B ✗
    assert knn_separation(LINE, LABELS, k=2).accuracy == pytest.approx(4 / 6)
    assert knn_separation(LINE[:3], LABELS[:3], k=5).k == 2  # never more neighbours than other points
    with pytest.raises(ValueError, match="expected"):
        knn_separation(LINE, LABELS[:4])


def test_separation_of_a_perfect_and_a_random_map():
    rng = np.random.default_rng(0)
    labels = ["I"] * 30 + ["II"] * 50 + ["IV-B"] * 20
    centres = {"I": (0, 0), "II": (100, 0), "IV-B": (0, 100)}
    apart = np.array([centres[p] for p in labels]) + rng.normal(size=(100, 2))
    s = knn_separation(apart, labels)
    assert s.accuracy == 1.0 and s.stderr == 0.0 and s.chance == 0.5
    shuffled = knn_separation(rng.normal(size=(400, 2)), list(rng.choice(["I", "II"], size=400)))
    assert abs(shuffled.accuracy - 0.5) < 4 * shuffled.stderr  # no phase information: chance
    assert shuffled.stderr == pytest.approx(np.sqrt(shuffled.accuracy * (1 - shuffled.accuracy) / 400))


def test_axis_titles():
    explained = EXPLAINED.validate(pl.DataFrame({"epoch": [5, 5, 7], "component": [1, 2, 1],
                                                 "fraction": [0.4172, 0.0555, 0.9]}))
    assert axis_titles("pca", explained, 5) == ("PC1 (41.7 % of variance)", "PC2 (5.55 % of variance)")
    assert axis_titles("pca", EXPLAINED.empty(), 5) == ("PC1", "PC2")  # a file from before the variance
    assert axis_titles("umap", explained, 5) == ("UMAP 1", "UMAP 2")


def figures(at):
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


@pytest.fixture(scope="module")
def page():
    at = AppTest.from_file(PAGE, default_timeout=120)
    at.session_state["zoo_current"] = str(DEFAULT_ZOO)
    at.run()
    assert not at.exception, at.exception
    return at


def test_the_page_scores_each_map_and_labels_its_axes(page):
    scores = {m.label: m.value for m in page.metric}
    assert set(scores) == {"Phase separation, UMAP", "Phase separation, PCA"}
    assert all(v.endswith("%") and " ± " in v for v in scores.values())
    (fig,) = figures(page)
    assert fig["layout"]["xaxis"]["title"]["text"] == "UMAP 1"
    page.radio(key="weights_method").set_value("pca").run()
    (fig,) = figures(page)
    assert fig["layout"]["xaxis"]["title"]["text"].startswith("PC1 (") and "% of variance" in \
        fig["layout"]["xaxis"]["title"]["text"]
    # "copy as Python" loads exactly the points drawn
    scope: dict = {}
    exec(page.code[0].value, scope)  # noqa: S102
    frame = scope["frame"]
    drawn = {(m, t["name"]) for t in fig["data"] for m in t["text"]}
    assert drawn == set(frame.select("model_id", "phase").iter_rows())
    assert sorted(frame["model_id"]) == sorted(m for m, _ in drawn) and frame.height == len(drawn)


def test_a_lasso_offers_the_group(page):
    (fig,) = figures(page)
    trace = fig["data"][0]
    points = [{"curve_number": 0, "point_index": i, "point_number": i, "customdata": trace["customdata"][i]}
              for i in (0, 2)]
    page.session_state["weights_map"] = {"selection": {"points": points, "point_indices": [0, 2], "box": [],
                                                       "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}}
    page.run()
    assert not page.exception, page.exception
    (button,) = [b for b in page.button if b.key == "weights_compare"]
    assert button.label == "Compare this group (2 models)"
    assert GROUP_KEY not in page.session_state  # nothing is set before the click
