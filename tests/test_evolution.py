"""Phases over training: each epoch labelled by its own thresholds, the transitions between epochs, and the
animated phase map (one frame per analysis epoch)."""
import polars as pl
import pytest

from analysis.taxonomy.evolution import changes, histories, label_epochs, transitions
from dashboard.charts.evolution import changes_chart, phase_map_frames, phase_strip
from data.zoo.spec import parse_spec
from tests.conftest import TINY_SPEC

NAN = float("nan")
KNOBS = {"width": [4, 4, 64, 64], "batch_size": [16, 64, 16, 64]}


def cells(loss, mc, cka):
    return pl.DataFrame({**KNOBS, "train_loss": loss, "mc": mc, "cka": cka},
                        schema_overrides={"mc": pl.Float64, "cka": pl.Float64})


def test_each_epoch_is_labelled_by_its_own_thresholds():
    labelled = label_epochs({
        # τ_L = max(10 × 0.001, 0.01) = 0.01; τ_C = midpoint of 0.9 and 0.1 over the phase-IV cells
        1: cells([1.0, 0.001, 0.001, 0.001], [-5.0, -5.0, 0.0, 0.0], [0.5, 0.5, 0.9, 0.1]),
        2: cells([1.0, 1.0, 1.0, 1.0], [None] * 4, [None] * 4),  # no mode connectivity yet: unclassified
        # every loss ×100: τ_L = 1.0 is this epoch's, so the labels are epoch 1's (epoch 1's τ_L would say I/II)
        3: cells([100.0, 0.1, 0.1, 0.1], [-5.0, -5.0, 0.0, 0.0], [0.5, 0.5, 0.9, 0.1]),
    })
    phase = {e: labelled.filter(pl.col("epoch") == e).sort("width", "batch_size")["phase"].to_list()
             for e in (1, 2, 3)}
    assert phase[1] == ["I", "III", "IV-B", "IV-A"]
    assert phase[2] == ["unclassified"] * 4
    assert phase[3] == phase[1]
    assert label_epochs({}).is_empty()


def history(rows):
    """(width, batch_size, epoch, phase) rows as a labelled table."""
    return pl.DataFrame(rows, schema=["width", "batch_size", "epoch", "phase"], orient="row")


def test_transitions_are_dated_by_the_first_epoch_of_the_new_phase():
    labelled = history([
        (4, 16, 10, "I"), (4, 16, 20, "II"), (4, 16, 30, "IV-A"),  # two changes
        (64, 16, 10, "IV-B"), (64, 16, 20, "IV-B"), (64, 16, 30, "IV-B"),  # none
        (4, 64, 10, "III"), (4, 64, 30, "IV-A"),  # missing at 20: one change, from 10 to 30
    ])
    t = transitions(labelled, "width", "batch_size")
    assert t.rows() == [(4, 16, 20, 10, "I", "II"), (4, 16, 30, 20, "II", "IV-A"), (4, 64, 30, 10, "III", "IV-A")]
    c = changes(labelled, "width", "batch_size")
    # 10 → 20: cells (4,16) and (64,16) labelled at both, one changed; 20 → 30: the same two, one changed
    # (the (4,64) change spans 10 → 30 and is counted in neither pair)
    assert c.rows() == [(10, 20, 2, 1), (20, 30, 2, 1)]


@pytest.fixture(scope="module")
def three_epochs():
    per_epoch = {1: cells([1.0, 1.0, 0.001, 0.001], [-5.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.9, 0.1]),
                 2: cells([1.0, 0.001, 0.001, 0.001], [-5.0, -5.0, 0.0, 0.0], [0.5, 0.5, 0.9, 0.1]),
                 3: cells([0.001] * 4, [0.0] * 4, [0.1, 0.2, 0.9, 0.8])}
    return label_epochs(per_epoch)


def test_the_animation_has_one_frame_per_analysis_epoch(three_epochs):
    spec = parse_spec(TINY_SPEC)
    fig = phase_map_frames(three_epochs, spec, title="tiny").to_plotly_json()
    assert [f["name"] for f in fig["frames"]] == ["1", "2", "3"]
    assert len({len(f["data"]) for f in fig["frames"]}) == 1  # every frame addresses the same traces
    (slider,) = fig["layout"]["sliders"]
    assert [s["label"] for s in slider["steps"]] == ["1", "2", "3"] and slider["active"] == 2
    assert [s["args"][0] for s in slider["steps"]] == [["1"], ["2"], ["3"]]
    play = fig["layout"]["updatemenus"][0]["buttons"][0]
    assert play["method"] == "animate" and play["args"][0] is None  # None: play every frame in order
    # it opens on the last epoch, and each frame's map is that epoch's: epoch 1's (64, 16) cell is IV-B
    assert fig["data"][0]["z"] == fig["frames"][-1]["data"][0]["z"]
    text = [f["data"][0]["text"] for f in fig["frames"]]
    assert any("I" == t.split(" ")[0] for row in text[0] for t in row)  # a phase-I cell at epoch 1 ...
    assert not any(t.split(" ")[0] in ("I", "II", "III") for row in text[2] for t in row if t)  # ... none at 3
    assert "epoch 3" in fig["layout"]["title"]["text"] and "epoch 1" in fig["frames"][0]["layout"]["title"]["text"]


def test_the_strip_and_the_changes_chart(three_epochs):
    one = three_epochs.filter((pl.col("width") == 4) & (pl.col("batch_size") == 64))
    strip = phase_strip(one, title="cell").to_plotly_json()
    assert list(strip["data"][0]["x"]) == ["1", "2", "3"] and list(strip["data"][0]["y"]) == ["II", "III", "IV-A"]
    assert strip["layout"]["yaxis"]["categoryarray"][:5] == ["I", "II", "III", "IV-A", "IV-B"]
    c = changes(three_epochs, "width", "batch_size")
    bars = changes_chart(c, title="changes").to_plotly_json()["data"][0]
    assert list(bars["x"]) == ["1 → 2", "2 → 3"] and list(bars["y"]) == c["changed"].to_list()


def page_at(root):
    from streamlit.testing.v1 import AppTest

    from tests.conftest import ROOT

    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "training.py"), default_timeout=120)
    at.session_state["zoo_current"] = str(root)
    return at.run()


def test_the_training_page_on_the_default_zoo():
    import json
    from collections import Counter

    from data.zoo.store import Zoo
    from tests.conftest import DEFAULT_ZOO

    at = page_at(DEFAULT_ZOO)
    assert not at.exception, at.exception
    spec = Zoo.open(DEFAULT_ZOO).spec
    animated, bars, strip = (json.loads(el.proto.spec) for el in at.get("plotly_chart"))
    assert [f["name"] for f in animated["frames"]] == [str(e) for e in spec.analysis_epochs]
    assert list(strip["data"][0]["x"]) == [str(e) for e in spec.analysis_epochs]
    # "copy as Python" relabels the same cells the frames show
    scope: dict = {}
    exec(at.code[0].value, scope)  # noqa: S102
    frame = scope["frame"]
    for f in animated["frames"]:
        shown = Counter(t.split(" ")[0] for row in f["data"][0]["text"] for t in row if t)
        assert shown == Counter(frame.filter(pl.col("epoch") == int(f["name"]))["phase"].to_list())
    summary, moved = at.dataframe[0].value, at.dataframe[1].value  # per cell, then every change
    assert sum(bars["data"][0]["y"]) == len(moved)  # two analysis epochs: every transition is in the one bar
    assert summary["changes"].sum() == len(moved) and len(summary) == len(frame.select("width", "batch_size").unique())
    at.selectbox(key="training_load").set_value(moved["width"][0]).run()
    at.selectbox(key="training_temperature").set_value(moved["batch_size"][0]).run()
    strip = json.loads(at.get("plotly_chart")[2].proto.spec)
    assert list(strip["data"][0]["y"]) == [moved["from_phase"][0], moved["to_phase"][0]]


def test_a_zoo_with_one_analysis_epoch_says_so(tmp_path):
    import json
    import shutil

    from tests.conftest import DEFAULT_ZOO

    # the default zoo's tables under a spec that names one analysis epoch (the page reads no checkpoint)
    one = tmp_path / "one-epoch"
    one.mkdir()
    for f in ("catalog.parquet", "metrics.parquet"):
        shutil.copy(DEFAULT_ZOO / f, one / f)
    spec = (DEFAULT_ZOO / "spec.toml").read_text()
    assert "analysis_epochs = [150, 300]" in spec
    (one / "spec.toml").write_text(spec.replace("analysis_epochs = [150, 300]", "analysis_epochs = [300]"))
    at = page_at(one)
    assert not at.exception, at.exception
    assert "single analysis epoch (300)" in at.info[0].value
    (animated,) = at.get("plotly_chart")
    assert [f["name"] for f in json.loads(animated.proto.spec)["frames"]] == ["300"]


def test_the_pages_snippets_load_what_its_charts_draw():
    """Phases over training: each chart's "copy as Python", run as a user would, gives the rows it draws."""
    import json

    from streamlit.testing.v1 import AppTest

    from tests.conftest import DEFAULT_ZOO, ROOT

    at = AppTest.from_file(str(ROOT / "dashboard" / "views" / "training.py"), default_timeout=120)
    at.session_state["zoo_current"] = str(DEFAULT_ZOO.resolve())
    at.run()
    assert not at.exception, at.exception
    frames = []
    for code in [c.value for c in at.code if c.language == "python"]:
        scope: dict = {}
        exec(compile(code, "<snippet>", "exec"), scope)  # noqa: S102
        frames.append(scope["frame"])
    _, changed, strip = (json.loads(el.proto.spec) for el in at.get("plotly_chart"))
    labels, counts, history = frames
    assert sorted(labels["epoch"].unique()) == [150, 300]  # the default zoo's analysis epochs
    assert list(changed["data"][0]["y"]) == counts["changed"].to_list()
    assert list(strip["data"][0]["y"]) == history.sort("epoch")["phase"].to_list()


def test_histories_summarise_each_cell_once_with_the_epoch_of_every_change():
    labelled = history([(4, 16, 100, "III"), (4, 16, 250, "III"), (4, 16, 500, "IV-B"), (4, 16, 1000, "II"),
                        (64, 16, 100, "I"), (64, 16, 1000, "I")])
    h = histories(labelled, "width", "batch_size")
    assert h.rows() == [(4, 16, "III@100 → IV-B@500 → II@1000", 2, 500, 1000, "II"),
                        (64, 16, "I@100", 0, None, None, "I")]
    # the same changes as the transition table, cell for cell
    moved = transitions(labelled, "width", "batch_size")
    assert h["changes"].sum() == moved.height


def test_a_change_between_two_stable_labels_is_firm():
    labelled = history([(4, 16, 100, "III"), (4, 16, 250, "IV-B"), (4, 16, 500, "IV-A"),
                        (64, 16, 100, "I"), (64, 16, 250, "II")]).with_columns(
        stability=pl.Series([0.9, 0.95, 0.5, 1.0, None]))
    moved = transitions(labelled, "width", "batch_size")
    # 0.9 → 0.95: firm; 0.95 → 0.5: the new label is unstable; 1.0 → unknown (one seed): not firm
    assert moved.select("from_phase", "to_phase", "firm").rows() == [("III", "IV-B", True), ("IV-B", "IV-A", False),
                                                                     ("I", "II", False)]
    assert moved["from_stability"].to_list() == [0.9, 0.95, 1.0]
    assert "firm" not in transitions(labelled.drop("stability"), "width", "batch_size").columns
