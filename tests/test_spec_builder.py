"""data.zoo.spec_builder: drafts write TOML that data.zoo.spec reads back as asked, every named spec parses,
the tiny zoos are the ones the tests always trained, and the committed specs survive a round trip."""
import tomllib

import pytest

from data.zoo.spec import Axis, load_spec, parse_spec
from data.zoo.spec_builder import SpecDraft, mnist1d_width_batch, tiny_mlp_spec, tiny_pinn_spec, tiny_seq_spec
from tests.conftest import ROOT, TINY_PINN_SPEC, TINY_SEQ_SPEC, TINY_SPEC

# The tiny zoos' specs as tests/conftest.py pasted them before the builder (issue 15), kept as the record the
# builder's drafts must equal: the tests' assertions (grids, epochs, model ids) depend on exactly these zoos.
PASTED_TINY = """
name = "tiny"
description = "a tiny test zoo"
task = "mnist1d"
arch = "mlp"
seeds = [0, 1]
[task_params]
n_train = 500
label_noise = 0.1
[arch_params]
depth = 2
[training]
epochs = 3
lr = 0.05
momentum = 0.9
weight_decay = 5e-4
batch_size = 32
checkpoint_epochs = [1]
analysis_epochs = [2]
[grid]
width = [4, 16, 64]
batch_size = [16, 64]
[axes.load]
knob = "width"
increases = false
[axes.temperature]
knob = "batch_size"
increases = false
"""
PASTED_SEQ = """
name = "tiny-seq"
task = "modular_add"
arch = "transformer"
seeds = [0, 1]
[task_params]
p = 7
[arch_params]
width = 8
heads = 2
[training]
optimizer = "adamw"
weight_decay = 1.0
epochs = 30
lr = 1e-2
batch_size = 64
eval_every = 5
checkpoint_epochs = [10, 20]
analysis_epochs = [30]
[grid]
train_fraction = [0.5, 0.9]
lr = [3e-3, 3e-2]
[axes.load]
knob = "train_fraction"
increases = true
[axes.temperature]
knob = "lr"
increases = true
"""
PASTED_PINN = """
name = "tiny-pinn"
task = "convection"
arch = "mlp"
seeds = [0, 1]
[task_params]
n_train = 100
[arch_params]
width = 8
depth = 2
activation = "tanh"
[training]
optimizer = "adam"
epochs = 20
lr = 1e-2
batch_size = 512
eval_every = 5
checkpoint_epochs = [10, 15]
analysis_epochs = [20]
[grid]
beta = [1.0, 30.0]
lr = [1e-3, 1e-2]
[axes.load]
knob = "beta"
increases = true
[axes.temperature]
knob = "lr"
increases = true
"""


def same_zoo(a, b) -> bool:
    """Same parsed spec, same models in the same order, same metric parameters (not part of ZooSpec ==)."""
    return a == b and a.models() == b.models() and a.metric_params == b.metric_params


@pytest.mark.parametrize("draft, pasted", [(tiny_mlp_spec(), PASTED_TINY), (tiny_seq_spec(), PASTED_SEQ),
                                           (tiny_pinn_spec(), PASTED_PINN)], ids=["tiny", "tiny-seq", "tiny-pinn"])
def test_tiny_specs_are_the_zoos_the_tests_trained(draft, pasted):
    assert same_zoo(parse_spec(draft.toml()), parse_spec(pasted))


def test_tiny_spec_texts_are_the_pasted_ones():
    """Tests edit these texts into variants and bad specs by replacing lines (test_spec, test_generate,
    test_task_kinds, ...): the builder writes the pasted lines, but for 0.05 in its exponent form."""
    assert (TINY_SPEC, TINY_SEQ_SPEC, TINY_PINN_SPEC) == (tiny_mlp_spec().toml(), tiny_seq_spec().toml(),
                                                          tiny_pinn_spec().toml())
    assert TINY_SPEC == PASTED_TINY.lstrip("\n").replace("lr = 0.05", "lr = 5e-2")
    assert (TINY_SEQ_SPEC, TINY_PINN_SPEC) == (PASTED_SEQ.lstrip("\n"), PASTED_PINN.lstrip("\n"))


@pytest.mark.parametrize("value, text", [(0.05, "5e-2"), (1e-3, "1e-3"), (5e-4, "5e-4"), (1e-5, "1e-5"),
                                         (-0.01, "-1e-2"), (0.1, "0.1"), (0.25, "0.25"), (1 / 3, repr(1 / 3)),
                                         (0.0, "0.0"), (1.0, "1.0"), (30.0, "30.0"), (1e16, "1e+16"),
                                         (float("inf"), "inf")])
def test_floats_are_written_as_hyperparameters_are_and_read_back_exactly(value, text):
    written = SpecDraft("n", "t", "a", (0,), {"x": value}, {}, Axis("x", True), Axis("y", False)).toml()
    assert f"x = {text}\n" in written and tomllib.loads(written)["training"]["x"] == value


def test_a_draft_reads_back_as_asked():
    draft = SpecDraft(
        "odd-zoo", "mnist1d", "cnn1d", (3, 1), {"epochs": 4, "lr": 1e-5, "batch_size": 16, "optimizer": "adam",
                                                 "analysis_epochs": [4]},
        {"width": (2, 8), "label_noise": (0.0, 0.25)}, Axis("width", False), Axis("label_noise", True),
        description='quotes " and \\ backslash, a tab\t, a newline\n and β', task_params={"n_train": 300},
        metrics={"mc_bezier": {"lr": 1e-3, "epochs": 2}, "odd name": {}})
    spec = parse_spec(draft.toml())
    assert (spec.name, spec.task, spec.arch, spec.seeds, spec.description) == \
        ("odd-zoo", "mnist1d", "cnn1d", (3, 1), draft.description)
    assert spec.grid == {"width": (2, 8), "label_noise": (0.0, 0.25)} and list(spec.grid) == ["width", "label_noise"]
    assert spec.training["lr"] == 1e-5 and spec.training["optimizer"] == "adam" and spec.analysis_epochs == (4,)
    assert spec.task_params["n_train"] == 300 and spec.arch_params["depth"] == 3  # the default, none given
    assert (spec.load, spec.temperature) == (Axis("width", False), Axis("label_noise", True))
    assert spec.metric_params == {"mc_bezier": {"lr": 1e-3, "epochs": 2}, "odd name": {}}
    assert "[task_params]" in draft.toml() and "[arch_params]" not in draft.toml()  # empty sections left out


@pytest.mark.parametrize("value", ["", "plain", 'a "quoted" \\ word', "\x00\x1f\x7f\u00e9\u20ac\U0001f600", "line\r\n"])
def test_strings_and_keys_survive_toml(value):
    text = SpecDraft("n", "t", "a", (0,), {value or "k": value}, {}, Axis("x", True), Axis("y", False),
                     description=value).toml()
    raw = tomllib.loads(text)
    assert raw.get("description", "") == value and raw["training"] == {value or "k": value}


def test_overrides_and_merges():
    assert parse_spec(tiny_mlp_spec(epochs=5).toml()).training["epochs"] == 5
    variant = tiny_mlp_spec(n_train=2000, seeds=(0,), widths=(4, 16), batch_sizes=(4, 8, 16, 32))
    spec = parse_spec(variant.toml())
    assert spec.task_params["n_train"] == 2000 and spec.n_models == 8 and spec.grid["batch_size"] == (4, 8, 16, 32)
    base = tiny_mlp_spec()
    cnn = base.replace(arch="cnn1d").merged(arch_params={"depth": None}, training={"epochs": 40}, grid={"width": [4, 8]})
    assert "depth" not in cnn.arch_params and cnn.training["epochs"] == 40 and cnn.grid["width"] == (4, 8)
    spec = parse_spec(cnn.toml())
    assert spec.arch == "cnn1d" and spec.arch_params["depth"] == 3  # cnn1d's default, the mlp's 2 removed
    assert base == tiny_mlp_spec()  # drafts are values: replacing and merging made new ones


def test_mnist1d_width_batch_has_the_default_zoos_axes():
    draft = mnist1d_width_batch("w", widths=range(1, 4), batch_sizes=[8], seeds=range(2),
                                training={"epochs": 2, "lr": 0.1, "batch_size": 8, "analysis_epochs": [2]})
    spec = parse_spec(draft.toml())
    default = load_spec(ROOT / "data" / "specs" / "mnist1d-mlp.toml")
    assert (spec.load, spec.temperature) == (default.load, default.temperature)
    assert spec.n_models == 6 and spec.grid["width"] == (1, 2, 3)


@pytest.mark.parametrize("path", sorted((ROOT / "data" / "specs").glob("*.toml")), ids=lambda p: p.stem)
def test_committed_specs_round_trip(path, tmp_path):
    draft = SpecDraft.from_toml(path.read_text())
    assert same_zoo(parse_spec(draft.write(tmp_path / "spec.toml").read_text()), load_spec(path))
    assert SpecDraft.from_toml(draft.toml()) == draft
