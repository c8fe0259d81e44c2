"""The dashboard: the app opens on the default zoo, charts follow the papers' orientation, bad zoos are errors."""
import json
import urllib.request

import pytest
from streamlit.testing.v1 import AppTest

from analysis.taxonomy.cells import cell_stats
from dashboard.charts import axis_orders, grid_heatmap
from dashboard.server import streamlit_server
from data.zoo.spec import parse_spec
from data.zoo.store import Zoo, builtin_zoos
from tests.conftest import DEFAULT_ZOO, ROOT, TINY_SPEC, code_running_pickle

APP = str(ROOT / "dashboard" / "app.py")


def figures(at):
    return [json.loads(el.proto.spec) for el in at.get("plotly_chart")]


def array(v):
    """A Plotly JSON array: a list, or a typed array {"dtype", "bdata" (base64), "shape"}."""
    import base64

    import numpy as np

    if isinstance(v, dict) and "bdata" in v:
        a = np.frombuffer(base64.b64decode(v["bdata"]), dtype=v["dtype"])
        return a.reshape([int(n) for n in str(v.get("shape", len(a))).split(",")]) if "shape" in v else a
    return np.asarray(v)


def test_overview_on_default_zoo():
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert at.title[0].value == "Zoo: mnist1d-mlp"
    figs = figures(at)
    assert len(figs) == 2  # complete zoo: no coverage chart; test accuracy and train loss
    acc = figs[0]["data"][0]
    assert acc["x"] == ["2", "4", "8", "16", "32", "64", "128", "256"]  # capacity grows to the right
    assert acc["y"][-1] == "8" and acc["y"][0] == "1024"  # hottest (smallest batch) on top
    # every chart: the camera button saves the chosen format, and its table downloads as CSV and Parquet
    assert len(at.get("download_button")) == 4
    chart_el = at.get("plotly_chart")[0].proto
    assert json.loads(chart_el.config)["toImageButtonOptions"]["format"] == "png"
    at.radio(key="image_format").set_value("svg").run()
    assert json.loads(at.get("plotly_chart")[0].proto.config)["toImageButtonOptions"]["format"] == "svg"
    # the slider reclassifies nothing yet, but it changes the epoch shown
    at.select_slider(key="overview_epoch").set_value(0).run()
    assert not at.exception
    assert "epoch 0" in figures(at)[0]["layout"]["title"]["text"]


def test_overview_on_an_incomplete_and_a_broken_zoo(tiny_zoo, tmp_path, monkeypatch):
    import shutil

    import polars as pl

    partial = tmp_path / "partial"
    shutil.copytree(tiny_zoo, partial)
    cat = pl.read_parquet(partial / "catalog.parquet")
    cat.filter(~pl.col("model_id").str.starts_with("width64")).write_parquet(partial / "catalog.parquet")
    monkeypatch.setenv("PHASEZOO_ZOO", str(partial))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("Incomplete zoo: 4 of 12" in w.value for w in at.warning)
    assert len(figures(at)) == 3  # coverage, accuracy, loss

    monkeypatch.setenv("PHASEZOO_ZOO", str(tmp_path / "does-not-exist"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception
    assert "spec.toml is missing" in at.error[0].value


@pytest.mark.parametrize("load_inc, temp_inc", [(False, False), (True, True)])
def test_axis_orientation_follows_the_spec(load_inc, temp_inc):
    spec = parse_spec(TINY_SPEC.replace("increases = false", "increases = true") if load_inc else TINY_SPEC)
    x, y = axis_orders(spec)
    # capacity (falling load) grows to the right; temperature rises bottom to top
    assert x == ([64, 16, 4] if load_inc else [4, 16, 64])
    assert y == ([16, 64] if temp_inc else [64, 16])


def test_heatmap_places_each_cell(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    cells = cell_stats(zoo.catalog, zoo.spec, 3, "test_acc")
    trace = grid_heatmap(cells, zoo.spec).data[0]
    z, xs, ys = trace.z, list(trace.x), list(trace.y)
    assert z.shape == (2, 3) and cells.height == 6
    for row in cells.iter_rows(named=True):
        assert z[ys.index(str(row["batch_size"]))][xs.index(str(row["width"]))] == pytest.approx(row["mean"])
        assert row["n_seeds"] == 2


@pytest.mark.slow
def test_real_server_serves_the_dashboard():
    """`make run`'s command, on a free port: health check (inside `streamlit_server`), then the page."""
    with streamlit_server() as url:
        page = urllib.request.urlopen(f"{url}/", timeout=5).read().decode()
    assert "<title>" in page and "streamlit" in page.lower()


def test_phases_page_on_default_zoo():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/phases.py").run()
    assert not at.exception, at.exception
    metric_map, phase = figures(at)
    trace = phase["data"][0]
    assert trace["x"][0] == "2" and trace["y"][-1] == "8"
    labels = {t.split()[0] for row in trace["text"] for t in row if t}
    assert labels == {"I", "II", "III", "IV-A", "IV-B"}
    assert metric_map["layout"]["title"]["text"].startswith("Test accuracy")  # the declared name, not test_acc
    assert {t for row in metric_map["data"][0]["text"] for t in row if t} == labels  # phases over the metric
    assert set(at.dataframe[0].value["phase"]) == labels
    columns = json.loads(at.dataframe[0].proto.columns)  # human column names, fractions as percentages
    assert columns["median_test_acc"] == {"label": "Median test accuracy",
                                          "type_config": {"type": "number", "format": "percent"}}
    # a threshold moved: reclassified at once (τ_L of 10 nats: every cell counts as fitted, no I or II)
    at.slider(key="phases_tau_loss").set_value(1.0).run()
    assert not at.exception
    moved = {t.split()[0] for row in figures(at)[1]["data"][0]["text"] for t in row if t}
    assert not moved & {"I", "II"}
    # mc is shown on a diverging scale centred at 0; one seed instead of the mean
    at.selectbox(key="phases_metric").set_value(("mc_bezier", "train", None)).run()
    at.selectbox(key="phases_how").set_value("seed 1").run()
    assert not at.exception
    fig = figures(at)[0]
    assert fig["data"][0]["zmid"] == 0 and "seed 1" in fig["layout"]["title"]["text"]


def test_phases_page_without_metrics(tiny_zoo, monkeypatch):
    monkeypatch.setenv("PHASEZOO_ZOO", str(tiny_zoo))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/phases.py").run()
    assert not at.exception
    assert "no metrics at this epoch" in at.warning[0].value


def snippets(at) -> list[str]:
    """The "Copy as Python" popovers' code, in page order (st.code blocks that load a zoo table)."""
    return [c.value for c in at.get("code") if "pl.scan_parquet(" in c.value]


def test_copy_as_python_loads_exactly_each_charts_rows():
    """Every chart of the overview and phase pages: its snippet, run as a user would, gives the chart's table."""
    import polars as pl
    from polars.testing import assert_frame_equal

    from dashboard.notebook import Slice

    def ran(code: str) -> pl.DataFrame:
        scope: dict = {}
        exec(code, scope)  # noqa: S102  (our own generated code, as Slice.load runs it)
        return scope["frame"]

    at = AppTest.from_file(APP, default_timeout=60).run()
    codes = snippets(at)
    assert len(codes) == 2  # test accuracy and train loss
    zoo = Zoo.open(DEFAULT_ZOO)
    for code, column in zip(codes, ("test_acc", "train_loss")):
        assert_frame_equal(ran(code), cell_stats(zoo.catalog, zoo.spec, 300, column))
    assert Slice.of(DEFAULT_ZOO, "catalog", {"epoch": 300}).load().height == zoo.catalog.filter(
        pl.col("epoch") == 300).height
    at.switch_page("views/phases.py").run()
    at.slider(key="phases_eps").set_value(2.5).run()  # a moved threshold is in the phase map's snippet
    values, labels = (ran(c) for c in snippets(at))
    metric_map, phase = figures(at)
    shown = {(x, y): z for y, row in zip(metric_map["data"][0]["y"], array(metric_map["data"][0]["z"]))
             for x, z in zip(metric_map["data"][0]["x"], row)}
    assert values.height == 64 and all(shown[(str(r["width"]), str(r["batch_size"]))] == pytest.approx(r["value"])
                                       for r in values.iter_rows(named=True))
    drawn = {t.split()[0] for row in phase["data"][0]["text"] for t in row if t}
    assert set(labels["phase"]) == drawn and "2.5" in snippets(at)[1]


def test_cell_detail_page():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/cell.py").run()
    assert not at.exception, at.exception
    figs = figures(at)
    assert len(figs) == 4  # loss curves, accuracy curves, mc profiles, CKA matrix
    loss = figs[0]["data"]
    assert len(loss) == 6 and array(loss[0]["x"])[0] == 0 and len(array(loss[0]["x"])) == 301  # 3 seeds × 2 splits
    cka = array(figs[3]["data"][0]["z"])
    assert cka.shape == (3, 3) and all(cka[i, i] == 1 for i in range(3)) and (cka < 1).sum() == 6
    at.selectbox(key="cell_load").set_value(2).run()
    assert not at.exception
    assert "width=2" in at.caption[0].value


def test_spectra_page_per_phase_and_chosen_cells():
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/spectra.py").run()
    assert not at.exception, at.exception
    density = figures(at)[0]
    assert {t["name"].split()[0] for t in density["data"]} == {"I", "II", "III", "IV-A", "IV-B"}
    at.radio(key="spectra_mode").set_value("chosen").run()
    assert not at.exception and len(figures(at)[0]["data"]) == 2
    at.multiselect(key="spectra_cells").set_value([]).run()
    assert not at.exception and "at least one cell" in at.info[0].value


def test_mean_esd_integrates_to_one():
    import numpy as np
    import polars as pl

    from analysis.studies.spectra import esd_curves, mean_esd
    from data.zoo.store import read_metrics

    m = read_metrics(DEFAULT_ZOO)
    ids = ["width256-batch_size0064-s0", "width256-batch_size0064-s1", "width256-batch_size0064-s2"]
    curves = esd_curves(m, ids, 300)
    assert curves["model_id"].n_unique() == 3
    mean = mean_esd(curves)
    assert np.trapezoid(mean["density"].to_numpy(), mean["eigenvalue"].to_numpy()) == pytest.approx(1.0, abs=0.01)
    assert mean_esd(curves.filter(pl.lit(False))).is_empty()


@pytest.mark.slow
def test_downstream_page_on_the_default_zoo():
    """The findings with their verdicts, consistent vs crossing ensembles per phase, a result over the grid
    with its per-phase boxes, and the pruning and aligned-path curves per phase."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/downstream.py").run()
    assert not at.exception, at.exception
    verdicts = [m.value for m in at.markdown if "**" in m.value]
    assert len(verdicts) == 4 and all(any(w in v for w in ("agrees]", "disagrees]", "cannot tell]")) for v in verdicts)
    assert any("hotter models prune better" in v for v in verdicts)
    ens, heat, box, prune, path = figures(at)
    assert [t["name"] for t in ens["data"]] == ["members of one phase",
                                                "members of different phases (one of this phase)"]
    assert ens["data"][0]["x"] == ["I", "II", "III", "IV-A", "IV-B"]
    assert {t["name"] for t in box["data"]} == {"I", "II", "III", "IV-A", "IV-B"}
    assert [float(x) for x in array(prune["data"][0]["x"])] == [0.5, 0.8, 0.9, 0.95]
    assert float(array(path["data"][0]["x"])[-1]) == 1.0
    at.selectbox(key="downstream_metric").set_value("average_epochs_acc_delta").run()
    at.radio(key="downstream_ens_measure").set_value("gain").run()
    at.toggle(key="downstream_prune_ft").set_value(True).run()
    assert not at.exception
    assert figures(at)[1]["data"][0]["zmid"] == 0  # a delta: diverging around 0


@pytest.mark.slow
def test_downstream_page_says_what_is_missing_and_shows_imported_results(tiny_zoo, tmp_path, monkeypatch):
    monkeypatch.setenv("PHASEZOO_ZOO", str(tiny_zoo))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/downstream.py").run()
    assert not at.exception and "No downstream results" in at.info[0].value
    # an imported published zoo carries WiSE-FT and git re-basin deltas: shown by phase
    from data.importers.ptmz import import_zoo
    from tests.test_import_ptmz import LANDSCAPE, write_trial

    src = tmp_path / "published"
    for width in (2, 4):
        for batch in (32, 128):
            for seed in (0, 1):
                write_trial(src, width, batch, seed, landscape={**LANDSCAPE, "wiseft_acc_test_delta": 0.01 * width})
    import_zoo(src, tmp_path / "zoo")
    monkeypatch.setenv("PHASEZOO_ZOO", str(tmp_path / "zoo"))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/downstream.py").run()
    assert not at.exception, at.exception
    heat, box = figures(at)
    assert box["data"] and heat["data"][0]["zmid"] == 0


def test_weight_space_page(tiny_zoo, monkeypatch):
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/weights.py").run()
    assert not at.exception, at.exception
    (fig,) = figures(at)
    assert {t["name"] for t in fig["data"]} == {"I", "II", "III", "IV-A", "IV-B"}  # coloured by phase
    at.radio(key="weights_method").set_value("pca").run()
    at.selectbox(key="weights_colour").set_value("test_acc").run()
    assert not at.exception and "PCA" in figures(at)[0]["layout"]["title"]["text"]
    # a lasso around three models, then "Compare this group": the group comparison page draws them
    trace = figures(at)[0]["data"][0]
    at.session_state["weights_map"] = {"selection": {
        "points": [{"curve_number": 0, "point_index": i, "customdata": trace["customdata"][i]} for i in range(3)],
        "point_indices": [0, 1, 2], "box": [], "lasso": [{"x": [0, 1, 1], "y": [0, 0, 1]}]}}
    at.run()
    at.button(key="weights_compare").click().run()
    assert not at.exception, at.exception
    assert at.title[0].value.startswith("Group comparison")
    assert any("3 models selected in weight space" in c.value for c in at.caption)
    loss = figures(at)[0]
    assert {t["name"].rsplit(" ", 1)[0] for t in loss["data"]} == set(trace["text"][:3])  # one colour per model
    monkeypatch.setenv("PHASEZOO_ZOO", str(tiny_zoo))
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/weights.py").run()
    assert not at.exception and "No embeddings" in at.warning[0].value


@pytest.mark.slow
def test_upload_page_classifies_a_checkpoint_and_refuses_bad_files(tmp_path, monkeypatch):
    """A zoo model is recognised, classified and starred on the map; a pickle that would run code, an empty
    file and a non-checkpoint are refused with their reason next to it, without a traceback."""
    from safetensors.torch import save

    from data.models.archs import build_model

    monkeypatch.setenv("PHASEZOO_UPLOAD_WORKERS", "0")  # in-process: the test needs no worker pool
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "cache"))
    marker = tmp_path / "pwned"
    evil = code_running_pickle(tmp_path / "evil.pt", marker)
    good = (DEFAULT_ZOO / "checkpoints/width008-batch_size0128-s1/epoch_0300.safetensors").read_bytes()
    # a 2-layer CNN: the CNN zoo's have 3 layers, so no zoo holds it (data-free report)
    other = save(build_model("cnn1d", (40,), 10, {"width": 8, "depth": 2}, seed=0).state_dict())
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    at.switch_page("views/upload.py").run()
    assert not at.exception and "Drop one or more checkpoints" in at.info[0].value
    # what an upload costs, from the per-metric costs measured on the zoo (costs.json), before any upload
    assert any(c.value.startswith("Estimated compute per upload:") for c in at.caption)
    at.file_uploader(key="upload_files").set_value([
        ("mine.safetensors", good, "application/octet-stream"),
        ("evil.pt", evil.read_bytes(), "application/octet-stream"),
        ("empty.pt", b"", "application/octet-stream"), ("notes.txt", b"hello", "text/plain"),
        ("conv.safetensors", other, "application/octet-stream")]).run()
    assert not at.exception, at.exception
    assert not marker.exists()
    errors = [e.value for e in at.error]
    assert any(e.startswith("evil.pt: refused") and "os.system" in e for e in errors), errors
    assert any(e.startswith("empty.pt") and "empty" in e for e in errors)
    assert any(e.startswith("notes.txt") and "suffix" in e for e in errors)
    metrics = {m.label: m.value for m in at.metric}
    assert metrics["Phase (taxonomy rules)"] in {"I", "II", "III", "IV-A", "IV-B"}
    assert metrics["Cell (width · batch_size)"] == "8 · 128"  # batch size: that of the identical zoo model
    # the classifier's probability as a plain number with its runner-up and its held-out accuracy, no delta chip
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any(", runner-up " in c for c in captions) and any("held-out accuracy" in c for c in captions)
    assert not any(m.proto.delta for m in at.metric)
    star = [t for f in figures(at) for t in f["data"] if t.get("marker", {}).get("symbol") == "star"]
    assert any(t["x"] == ["8"] and t["y"] == ["128"] for t in star)  # on the phase map, in its cell
    assert any("matches no zoo" in w.value for w in at.warning)  # the cnn1d: data-free report only
    assert any("alpha" in df.value.columns for df in at.dataframe)


@pytest.mark.slow
def test_compare_page_puts_zoos_side_by_side(tiny_zoo, tmp_path):
    """The built-in zoos beside an imported published zoo: a phase map each, the phase fractions of every
    grid, a shared metric's per-phase distribution in each zoo that has it; a zoo without labels and a bad
    path are named."""
    from data.importers.ptmz import import_zoo
    from tests.test_import_ptmz import LANDSCAPE, write_trial

    src = tmp_path / "published"
    for width in (2, 4):
        for batch in (32, 128):
            for seed in (0, 1):
                write_trial(src, width, batch, seed, landscape=LANDSCAPE)
    import_zoo(src, tmp_path / "zoo")
    at = AppTest.from_file(APP, default_timeout=60)
    at.run()
    at.switch_page("views/compare.py").run()
    assert not at.exception, at.exception
    at.text_input(key="compare_extra").set_value(f"{tmp_path / 'zoo'}, {tiny_zoo}, {tmp_path / 'nowhere'}").run()
    assert not at.exception, at.exception
    assert any("nowhere" in e.value and "spec.toml is missing" in e.value for e in at.error)
    assert any(i.value.startswith("tiny: no phase labels") for i in at.info)
    figs = figures(at)
    # a phase map per labelled zoo (the built-in ones and the imported one), the fractions, the distributions
    expected = {p.name for p in builtin_zoos()} | {Zoo.open(tmp_path / "zoo").name}
    assert len(figs) == len(expected) + 2
    names = [f["layout"]["title"]["text"].split(",")[0] for f in figs[:-2]]
    assert names[0] == "mnist1d-mlp" and set(names) == expected
    fractions, by_phase = figs[-2:]
    total = {}
    for t in fractions["data"]:
        for zoo, x in zip(t["y"], array(t["x"])):
            total[zoo] = total.get(zoo, 0) + x
    assert total.keys() == set(names) and all(abs(v - 1) < 1e-9 for v in total.values())  # each grid sums to 1
    # test accuracy: every zoo but the regression one (the PINN has none)
    assert {t["name"] for t in by_phase["data"]} == set(names) - {"convection-pinn"}
    assert by_phase["layout"]["title"]["text"].startswith("test accuracy by phase")  # the declared human name
    # a Hessian quantity: each cell's value is ln of its seed mean, as its output declares
    from analysis.metrics.outputs import LOG_MEAN
    from analysis.taxonomy.cells import metric_cells
    from data.zoo.store import read_metrics

    at.selectbox(key="compare_metric").set_value(("hessian_top_eigenvalue", "train", 1.0)).run()
    assert not at.exception, at.exception
    by_phase = figures(at)[-1]
    assert by_phase["layout"]["title"]["text"].startswith("ln top Hessian eigenvalue")
    mlp = Zoo.open(DEFAULT_ZOO)
    expected = metric_cells(read_metrics(DEFAULT_ZOO), mlp.catalog, mlp.spec, max(mlp.spec.analysis_epochs),
                            "hessian_top_eigenvalue", "train", 1.0, aggregate=LOG_MEAN)["value"]
    shown = next(t for t in by_phase["data"] if t["name"] == "mnist1d-mlp")["y"]
    assert sorted(array(shown)) == pytest.approx(sorted(expected))


@pytest.mark.slow
@pytest.mark.parametrize("zoo_name", ["mnist1d-cnn", "convection-pinn", "modadd-transformer"])
def test_every_page_on_the_other_builtin_zoos(zoo_name, monkeypatch):
    """Each page renders each built-in zoo with content and no exception: a regression zoo shows its test MSE
    and says why it has no downstream studies; the sequence zoo shows its grokking delay."""
    monkeypatch.setenv("PHASEZOO_ZOO", zoo_name)
    charts = {}
    for page in ("overview", "phases", "cell", "spectra", "weights", "compare", "downstream"):
        at = AppTest.from_file(APP, default_timeout=120)
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, at.exception)
        assert not at.get("error"), (page, [e.value for e in at.get("error")])
        charts[page] = figures(at)
        if page == "downstream" and zoo_name == "convection-pinn":
            assert "regression zoo" in at.info[0].value
    assert all(charts[p] for p in ("overview", "phases", "cell", "spectra", "weights", "compare")), \
        {p: len(f) for p, f in charts.items()}
    titles = [f["layout"]["title"]["text"] for f in charts["overview"] if "title" in f["layout"]]
    if zoo_name == "convection-pinn":
        assert any("Test MSE against the exact solution" in t for t in titles)
        assert charts["phases"][0]["layout"]["title"]["text"].startswith("Relative L2 error")  # its headline
    if zoo_name == "modadd-transformer":
        assert any("Grokking delay" in t for t in titles)
