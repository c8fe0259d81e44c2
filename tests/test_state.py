"""The view in the URL (dashboard.state), through the real app (AppTest): a link restores every parameter and
is what the page writes back, a bad value of each is refused with one line and its default, the thresholds
appear only when changed, and each zoo opens at its own last analysis epoch (nothing carries over)."""
import math

import pytest
from streamlit.testing.v1 import AppTest

from dashboard import state
from dashboard.glossary import TERMS
from data.zoo.spec import parse_spec
from tests.conftest import ROOT, TINY_SPEC

APP = str(ROOT / "dashboard" / "app.py")


def opened(page: str = "overview", **params: str) -> AppTest:
    """The app as a pasted link opens it: /<page>?<params>."""
    at = AppTest.from_file(APP, default_timeout=60)
    at.query_params.update(params)
    at.switch_page(f"views/{page}.py")
    at.run()
    assert not at.exception, at.exception
    return at


def messages(at) -> list[str]:
    """The warnings and errors as they read (their Markdown escapes of the URL's text undone)."""
    return [m.value.replace("\\", "").replace("\u2060", "") for m in (*at.warning, *at.error)]


def test_a_link_restores_every_parameter_and_the_page_writes_it_back():
    link = {"zoo": "mnist1d-mlp", "epoch": "150", "metric": "mc_bezier:train", "tau_loss": "0.05", "eps": "2.5",
            "tau_cka": "0.6"}
    at = opened("phases", **link)
    assert not messages(at), messages(at)
    s = at.session_state
    assert s["phases_epoch"] == 150 and s["phases_metric"] == ("mc_bezier", "train", None)
    assert s["phases_tau_loss"] == round(math.log10(0.05), 2) and s["phases_eps"] == 2.5 and s["phases_tau_cka"] == 0.6
    qp = dict(at.query_params)
    assert {k: qp[k] for k in ("zoo", "epoch", "metric", "eps", "tau_cka")} == {k: link[k] for k in qp if k != "tau_loss"}
    assert float(qp["tau_loss"]) == pytest.approx(0.05, rel=0.025)  # τ_L at the slider's step of 0.01 decades
    # the sidebar's "Copy link" holds the same query string; opening it gives the same view
    copied = next(c.value for c in at.get("code") if "?zoo=" in c.value)
    assert copied.endswith("?" + "&".join(f"{k}={v}" for k, v in qp.items()))  # `:` and `,` as they are
    again = opened("phases", **qp)
    assert all(again.session_state[k] == s[k] for k in ("phases_epoch", "phases_metric", "phases_tau_loss",
                                                        "phases_eps", "phases_tau_cka"))
    # the cell as load,temperature (and a zoo other than the default, by name)
    at = opened("cell", zoo="mnist1d-cnn", epoch="50", cell="8,128")
    assert not messages(at), messages(at)
    assert (at.session_state["cell_load"], at.session_state["cell_temperature"], at.session_state["cell_epoch"]) \
        == (8, 128, 50)
    assert dict(at.query_params) == {"zoo": "mnist1d-cnn", "cell": "8,128", "epoch": "50"}
    # the overview's epoch is any logged epoch, not only an analysis epoch
    assert opened(zoo="modadd-transformer", epoch="500").session_state["overview_epoch"] == 500


def test_a_bad_value_of_each_parameter_is_one_line_and_its_default():
    at = opened("phases", zoo="mnist1d-mlp", epoch="777", metric="no_such_metric:test", tau_loss="-1", eps="99",
                tau_cka="nan")
    said = messages(at)
    assert len(said) == 5 and all("\n" not in m for m in said), said
    assert sum("outside" in m for m in said) == 3  # τ_L, ε and τ_C by their codecs; the others by their widgets
    assert any("epoch 777" in m for m in said) and any("metric no_such_metric:test" in m for m in said)
    assert at.session_state["phases_epoch"] == 300 and at.session_state["phases_eps"] == 1.0
    # the metric the zoo lacks: its select box's default (test accuracy), and the link's value is gone
    assert at.session_state["phases_metric"][0] == "test_acc" and at.query_params["metric"] == "test_acc:test"
    at = opened("cell", zoo="mnist1d-mlp", epoch="one hundred", cell="3,7")
    said = messages(at)
    assert len(said) == 2 and "not a whole number" in said[0] + said[1] and "not in this zoo's grid" in said[0] + said[1]
    assert at.session_state["cell_epoch"] == 300
    at = opened("cell", zoo="mnist1d-mlp", cell="16")
    assert "is not `width,batch_size`" in messages(at)[0]


@pytest.mark.parametrize("zoo", ["/no/such/zoo", "../../../etc", "x" * 5000])
def test_a_zoo_the_path_policy_refuses_is_one_error_and_the_default_view(zoo, monkeypatch):
    monkeypatch.setenv("PHASEZOO_ZOO_ROOTS", "")  # a deployment: only the built-in zoos
    at = opened("phases", zoo=zoo, epoch="150")
    assert len(at.error) == 1 and at.error[0].value.startswith("The link's zoo cannot be opened")
    assert "\n" not in at.error[0].value
    assert at.title[0].value == "Phase diagram: mnist1d-mlp" and at.session_state["phases_epoch"] == 300
    assert dict(at.query_params)["zoo"] == "mnist1d-mlp"


def test_a_link_to_another_zoo_directory_opens_it_where_the_policy_allows(tmp_path, monkeypatch):
    import shutil

    own = tmp_path / "my-zoo"
    own.mkdir()
    for name in ("spec.toml", "catalog.parquet", "metrics.parquet"):  # no checkpoints: the pages only browse
        shutil.copy(ROOT / "data/zoos/mnist1d-mlp" / name, own / name)
    monkeypatch.setenv("PHASEZOO_ZOO_ROOTS", str(tmp_path))
    at = opened("phases", zoo=str(own), epoch="150")
    assert not messages(at), messages(at)
    assert at.session_state["zoo_custom_path"] == str(own) and at.session_state["phases_epoch"] == 150
    assert dict(at.query_params)["zoo"] == str(own.resolve())  # a directory, not a built-in name
    monkeypatch.setenv("PHASEZOO_ZOO_ROOTS", str(tmp_path / "elsewhere"))  # now outside the allowed roots
    at = opened("phases", zoo=str(own), epoch="150")
    assert len(at.error) == 1 and at.title[0].value == "Phase diagram: mnist1d-mlp"


def test_thresholds_are_in_the_url_only_when_changed_and_the_view_follows_to_other_pages():
    at = opened("phases")
    assert set(at.query_params) == {"zoo", "epoch", "metric"}
    at.slider(key="phases_eps").set_value(2.0).run()
    assert at.query_params["eps"] == "2"
    at.slider(key="phases_eps").set_value(1.0).run()  # back at its default
    assert "eps" not in at.query_params
    at.slider(key="phases_tau_cka").set_value(0.5).run()
    at.selectbox(key="phases_epoch").set_value(150).run()
    at.switch_page("views/cell.py").run()  # the view goes along: the cell page opens at epoch 150
    assert at.session_state["cell_epoch"] == 150
    assert at.query_params["tau_cka"] == "0.5" and at.query_params["epoch"] == "150"


def test_each_zoo_opens_at_its_own_last_analysis_epoch():
    at = opened()
    at.select_slider(key="overview_epoch").set_value(300).run()
    at.selectbox(key="zoo_choice").set_value(str(ROOT / "data/zoos/modadd-transformer")).run()
    assert at.session_state["overview_epoch"] == 3000  # the transformers' last epoch, not the MLPs' 300
    at.selectbox(key="zoo_choice").set_value(str(ROOT / "data/zoos/convection-pinn")).run()
    assert at.session_state["overview_epoch"] == 1500 and at.query_params["epoch"] == "1500"
    assert not messages(at)
    at = opened("phases", zoo="modadd-transformer")  # a link without an epoch: the zoo's own
    assert at.session_state["phases_epoch"] == 3000


def test_codecs_round_trip_and_refuse():
    spec = parse_spec(TINY_SPEC)
    for codec, value in ((state.EPOCH, 3), (state.METRIC, ("mc_bezier", "train", None)),
                         (state.METRIC, ("hessian_top_eigenvalue", "test", 1.0)), (state.METRIC, ("alpha", None, None)),
                         (state.CELL, (16, 64)), (state.EPS, 2.5), (state.TAU_CKA, 0.25)):
        assert codec.decode(codec.encode(value), spec) == value
    assert state.TAU_LOSS.decode(state.TAU_LOSS.encode(-1.37), spec) == -1.37
    for codec, text in ((state.EPOCH, "-1"), (state.EPOCH, "1e3"), (state.METRIC, ":test"), (state.CELL, "16,63"),
                        (state.CELL, "a,b"), (state.TAU_LOSS, "0"), (state.TAU_LOSS, "inf"), (state.TAU_CKA, "1.5")):
        with pytest.raises(ValueError):
            codec.decode(text, spec)


def test_glossary_page_anchors_every_term_and_help_icons_link_to_it():
    at = opened("glossary")
    anchors = {h.proto.anchor for h in at.subheader}
    assert set(TERMS) <= anchors and "science-1" in anchors
    at = opened("phases")
    assert "/glossary#tau-l" in at.slider(key="phases_tau_loss").help
    assert "(/glossary#science-1)" in " ".join(c.value for c in at.caption)


def test_the_sidebar_draws_load_increasing_to_the_right_on_every_grid_map():
    import json

    def xs(at):
        return [json.loads(c.proto.spec)["data"][0]["x"] for c in at.get("plotly_chart")]

    at = opened("phases")
    before = xs(at)
    at.toggle(key="load_right").set_value(True).run()
    assert before[0] == ["2", "4", "8", "16", "32", "64", "128", "256"]  # capacity grows to the right
    assert xs(at) == [x[::-1] for x in before]  # both maps: load (falling width) grows to the right


def test_a_link_cannot_open_an_arbitrary_directory_nor_inject_markdown(tiny_zoo, monkeypatch):
    """A link is someone else's text: without $PHASEZOO_ZOO_ROOTS it names built-in zoos only (the picker may
    still open any directory), and what it says is shown literally, never as a live link."""
    monkeypatch.delenv("PHASEZOO_ZOO_ROOTS", raising=False)
    at = opened(zoo=str(tiny_zoo))
    [error] = at.error
    assert "a link names a built-in zoo" in error.value and at.title[0].value == "Zoo: mnist1d-mlp"
    at = opened("phases", zoo="mnist1d-mlp", epoch="[Sign in](https://evil.example)")
    [warning] = at.warning
    assert "](" not in warning.value and "\\[Sign in\\]" in warning.value
    monkeypatch.setenv("PHASEZOO_ZOO_ROOTS", str(tiny_zoo.parent))
    assert not opened(zoo=str(tiny_zoo)).error  # allowed where the roots say so
