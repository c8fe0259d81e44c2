"""analysis.upload.verdict: one checkpoint's phase, evidence and place, end to end against the committed zoo.

Oracles: the zoo's own tables (phases.parquet, metrics.parquet, embeddings.parquet) for a checkpoint taken
from the zoo itself, the zoo's grid for knobs, and the file system for the safety properties. Everything
that runs the full analysis uses width ≤ 16 models, in this process (executor=None). Every report cache
goes to a temporary directory (PHASEZOO_CACHE), never to the user's.
"""
from __future__ import annotations

import io
import json
import math
import os
import pickle
import shlex
import shutil
from concurrent.futures import Executor, Future
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import load_file, save, save_file

import analysis.upload.verdict as V
from analysis.taxonomy.classifier import FEATURES, training_set, validate
from analysis.taxonomy.phases import Thresholds, label
from analysis.upload.recognise import nearest_value, recognise
from analysis.upload.report import KnobValue
from data.models.archs import build_model, match_shapes
from data.zoo.store import Zoo, builtin_zoos, read_metrics
from tests.conftest import DEFAULT_ZOO, Recorder, private_cache

EPOCH = 300  # the default zoo's last analysis epoch: what the verdict compares against
W16 = "width016-batch_size0016-s1"  # phase II with wide margins on every rule quantity
W8 = "width008-batch_size0064-s0"


def ckpt(model_id: str) -> Path:
    return DEFAULT_ZOO / "checkpoints" / model_id / f"epoch_{EPOCH:04d}.safetensors"


def perturbed(state: dict, seed: int, scale: float = 1e-3) -> dict:
    """Each tensor plus scale · its std · N(0, 1) noise (deterministic in `seed`)."""
    g = torch.Generator().manual_seed(seed)
    return {k: (v + scale * v.float().std() * torch.randn(v.shape, generator=g)).contiguous()
            for k, v in state.items()}


def mlp_state(width: int, depth: int = 2, inputs: int = 40, seed: int = 0) -> dict:
    return {k: v.contiguous() for k, v in
            build_model("mlp", (inputs,), 10, {"width": width, "depth": depth}, seed=seed).state_dict().items()}


def write(path: Path, state: dict) -> Path:
    save_file(state, str(path))
    return path


def shapes(state) -> dict:
    return {k: tuple(v.shape) for k, v in state.items()}


def meta_shapes(arch: str, input_shape, params) -> dict:
    with torch.device("meta"):  # shapes only: free even for a ResNet
        return shapes(build_model(arch, input_shape, 10, params).state_dict())


def snapshot(root: Path) -> dict:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}


def stub_report(name: str = "stub") -> V.Report:
    return V.Report(file=name, sha256="0" * 64, n_params=1, notes=["stub"], data_free=[], matches=[])


def _no_recompute(*_a, **_k):
    raise AssertionError("recomputed: the cache was not used")


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    yield from private_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo.open(DEFAULT_ZOO)


@pytest.fixture(scope="module")
def phases300() -> pl.DataFrame:
    return pl.read_parquet(DEFAULT_ZOO / "phases.parquet").filter(pl.col("epoch") == EPOCH)


@pytest.fixture(scope="module")
def zoo_metrics() -> pl.DataFrame:
    return pl.read_parquet(DEFAULT_ZOO / "metrics.parquet").filter(pl.col("epoch") == EPOCH)


# ----------------------------------------------------------------------------- 1. match_shapes
@pytest.mark.parametrize("arch, input_shape, params", [
    ("mlp", (40,), {"width": 16, "depth": 2}),
    ("mlp", (40,), {"width": 3, "depth": 5}),
    ("cnn1d", (40,), {"width": 4, "depth": 3}),
    ("resnet18_width", (3, 32, 32), {"width": 8}),
])
def test_match_shapes_exact_for_built_models(arch, input_shape, params):
    m = match_shapes(arch, meta_shapes(arch, input_shape, params), input_shape, 10)
    assert m.ok and m.problems == ()
    assert m.params == params


def test_match_shapes_resnet18_is_not_a_resnet50():
    m = match_shapes("resnet50_width", meta_shapes("resnet18_width", (3, 32, 32), {"width": 8}), (3, 32, 32), 10)
    assert not m.ok
    assert any(p.startswith("missing key(s) 'layer1.0.conv3.weight'") for p in m.problems)
    assert any(p.startswith("shape(s) differ: layer1.0.conv1.weight (8, 8, 3, 3) ≠ (8, 8, 1, 1)") for p in m.problems)


def test_match_shapes_names_the_offending_key_or_shape():
    base = meta_shapes("mlp", (40,), {"width": 16})
    extra = base | {"extra.weight": (3, 3)}
    assert match_shapes("mlp", extra, (40,), 10).problems == ("unexpected key(s) 'extra.weight'",)
    missing = {k: s for k, s in base.items() if k != "5.bias"}
    assert match_shapes("mlp", missing, (40,), 10).problems == ("missing key(s) '5.bias'",)
    wrong_input = meta_shapes("mlp", (64,), {"width": 16})
    assert match_shapes("mlp", wrong_input, (40,), 10).problems == ("shape(s) differ: 1.weight (16, 64) ≠ (16, 40)",)
    wrong_classes = match_shapes("mlp", base, (40,), 7)
    assert wrong_classes.problems == ("shape(s) differ: 5.weight (10, 16) ≠ (7, 16); 5.bias (10,) ≠ (7,)",)
    assert match_shapes("mlp", meta_shapes("cnn1d", (40,), {"width": 4}), (40,), 10).problems == (
        "its keys are not those of a mlp",)


# ----------------------------------------------------------------------------- 2. recognise
def test_recognise_a_zoo_checkpoint(zoo):
    [m] = recognise(load_file(str(ckpt(W16))), [zoo])
    assert m.ok and m.on_grid
    assert (m.zoo, m.root, m.arch) == ("mnist1d-mlp", str(zoo.root), "mlp")
    assert dict(m.arch_params) == {"width": 16, "depth": 2, "activation": "relu"}  # the zoo's, unseen in shapes
    assert dict(m.knobs) == {"width": 16} and dict(m.nearest) == {"width": 16}  # batch size leaves no trace


@pytest.mark.parametrize("width, nearest", [(100, 128), (92, 128), (12, 16), (11, 8), (300, 256), (1, 2)])
def test_recognise_off_grid_width_nearest_in_log_scale(zoo, width, nearest):
    [m] = recognise(mlp_state(width), [zoo])
    assert m.ok and not m.on_grid
    assert dict(m.knobs) == {"width": width} and dict(m.nearest) == {"width": nearest}


def test_nearest_value_is_logarithmic():
    assert nearest_value(11.5, [8, 16]) == 16  # linear would say 8
    assert nearest_value(92, [64, 128]) == 128  # linear would say 64
    assert nearest_value(11, [8, 16]) == 8
    assert nearest_value("b", ["a", "b"]) == "b" and nearest_value("z", ["a", "b"]) == "a"


def test_recognise_wrong_depth_or_architecture(zoo):
    [deep] = recognise(mlp_state(16, depth=3), [zoo])
    assert not deep.ok and not deep.on_grid
    assert deep.problems == ("a mlp but with depth=3 (the zoo has 2)",)
    cnn = build_model("cnn1d", (40,), 10, {"width": 4}, seed=0).state_dict()
    [c] = recognise(cnn, [zoo])
    assert not c.ok and c.knobs == {}
    assert len(c.problems) == 1 and c.problems[0].endswith("its keys are not those of a mlp")
    [wide_input] = recognise(mlp_state(16, inputs=64), [zoo])
    assert not wide_input.ok and "1.weight (16, 64) ≠ (16, 40)" in wide_input.problems[0]


# ----------------------------------------------------------------------------- 3. the classifier's training set
@pytest.fixture(scope="module")
def table() -> pl.DataFrame:
    return training_set(DEFAULT_ZOO)


def test_training_set_labels_every_model_twice_with_the_zoo_phases(table, zoo):
    assert table.height == 384 and table.columns == ["model_id", "epoch", "seed", "cell", "phase", *FEATURES]
    assert set(table["epoch"]) == {150, 300}
    assert table.group_by("model_id").len()["len"].to_list() == [2] * 192
    assert "unclassified" not in set(table["phase"])
    assert table["cell"].n_unique() == 64
    # n_params is log10 of the catalog's parameter count
    cat = zoo.catalog.select("model_id", "epoch", "n_params", "width", "batch_size")
    joined = table.join(cat, on=["model_id", "epoch"], suffix="_raw")
    assert joined.height == 384
    assert 2 < joined["n_params"].min() and joined["n_params"].max() < 6
    np.testing.assert_allclose(joined["n_params"].to_numpy(), np.log10(joined["n_params_raw"].to_numpy()), rtol=1e-12)
    # every label is its cell's phase in phases.parquet at that epoch
    ph = pl.read_parquet(DEFAULT_ZOO / "phases.parquet").select("width", "batch_size", "epoch", "phase")
    both = joined.join(ph, on=["width", "batch_size", "epoch"], suffix="_zoo")
    assert both.height == 384 and (both["phase"] == both["phase_zoo"]).all()
    # the cell string names the cell's knobs
    expected = both.select(pl.format("width={} · batch_size={}", "width", "batch_size").alias("c"))["c"]
    assert (both["cell"] == expected).all()


@pytest.mark.slow
def test_validate_leave_one_cell_out_beats_the_majority(table):
    v = validate(table, "cell")
    assert v.scheme == "leave-one-cell-out" and v.n == 384 and v.folds == 64
    assert v.labels == tuple(sorted(set(table["phase"])))
    cm = np.array(v.confusion)
    assert cm.shape == (len(v.labels), len(v.labels)) and cm.sum() == v.n
    assert cm.sum(1).tolist() == [int((table["phase"] == lab).sum()) for lab in v.labels]  # rows: true phase
    assert math.isclose(np.trace(cm) / v.n, v.accuracy)
    counts = table["phase"].value_counts()
    assert math.isclose(v.baseline, counts["count"].max() / v.n)
    assert v.accuracy > v.baseline + 0.2
    s = validate(table, "seed")
    assert s.scheme == "held-out seed" and s.folds == 3 and np.array(s.confusion).sum() == 384


def test_leave_one_cell_out_never_trains_on_the_held_out_cell(table):
    from analysis.taxonomy.classifier import design

    X = np.nan_to_num(design(table), nan=-12345.0)
    key = {r.tobytes(): c for r, c in zip(X, table["cell"].to_list())}
    assert len(key) == table.height  # every row identifiable by its features
    Recorder.fits = []
    validate(table, "cell", estimator=Recorder())
    assert len(Recorder.fits) == 64
    cells = set(table["cell"])
    held_out = []
    for rows in Recorder.fits:
        seen = [key[r.tobytes()] for r in np.nan_to_num(rows, nan=-12345.0)]
        missing = cells - set(seen)
        assert len(missing) == 1  # exactly one cell absent, all of its rows
        (cell,) = missing
        assert len(seen) == table.height - int((table["cell"] == cell).sum())
        held_out.append(cell)
    assert sorted(held_out) == sorted(cells)  # each cell held out once


# ----------------------------------------------------------------------------- 4. a zoo checkpoint, end to end
@pytest.fixture(scope="module")
def w16() -> V.Report:
    [r] = V.analyse([ckpt(W16)], executor=None, cache=False)  # zoos=None: the committed zoos
    assert isinstance(r, V.Report), r
    return r


@pytest.mark.slow
def test_zoo_checkpoint_names_its_zoo_and_cell(w16):
    assert Path(w16.zoo).resolve() == DEFAULT_ZOO.resolve() and w16.epoch == EPOCH
    assert w16.file == "epoch_0300.safetensors" and w16.n_params == 1098
    assert w16.cell["width"] == KnobValue(16, 16, "weights")
    assert w16.cell["batch_size"] == KnobValue(16, 16, "identical zoo model")
    # every built-in zoo was tried; only the default zoo holds a 2-layer ReLU MLP on MNIST-1D
    assert [m.ok for m in w16.matches] == [True] + [False] * (len(builtin_zoos()) - 1)
    assert all(m.problems for m in w16.matches[1:])
    assert w16.errors == ()
    assert any(n.startswith(f"identical to zoo model {W16}") for n in w16.notes)


@pytest.mark.slow
def test_zoo_checkpoint_placement(w16, zoo):
    p = w16.placement
    assert p.identical_to == W16 and p.epoch == EPOCH
    assert p.neighbours[0].model_id == W16 and p.neighbours[0].distance == 0
    assert len(p.neighbours) == 5
    assert [n.distance for n in p.neighbours] == sorted(n.distance for n in p.neighbours)
    assert p.neighbours[0].to_dict() | {"distance": 0.0} == {"model_id": W16, "distance": 0.0, "phase": "II",
                                                      "width": 16, "batch_size": 16, "seed": 1}
    emb = pl.read_parquet(DEFAULT_ZOO / "embeddings.parquet").filter(
        (pl.col("model_id") == W16) & (pl.col("epoch") == EPOCH))
    pca = emb.filter(pl.col("method") == "pca").row(0, named=True)
    assert p.pca.x == pytest.approx(pca["x"], abs=1e-6) and p.pca.y == pytest.approx(pca["y"], abs=1e-6)
    assert p.umap.approximate is True  # inverse-distance mean: distance 0 makes it the model's own spot
    umap = emb.filter(pl.col("method") == "umap").row(0, named=True)
    assert p.umap.x == pytest.approx(umap["x"], abs=1e-6) and p.umap.y == pytest.approx(umap["y"], abs=1e-6)


@pytest.mark.slow
def test_zoo_checkpoint_rule_verdict_reproduces_the_zoo(w16, phases300, zoo_metrics):
    cell = phases300.filter((pl.col("width") == 16) & (pl.col("batch_size") == 16)).row(0, named=True)
    r = w16.rule
    assert r.phase == cell["phase"] == "II" and w16.phase == "II"
    assert r.reason is None and r.pairs_with == "zoo seeds" and r.n_pairs == 2
    assert (r.tau_loss, r.eps_mc, r.tau_cka) == pytest.approx(
        (cell["tau_loss"], cell["eps_mc"], cell["tau_cka"]), rel=1e-12)
    mine = zoo_metrics.filter((pl.col("model_id") == W16) & pl.col("other_id").is_null())
    train_loss = mine.filter(pl.col("metric") == "train_loss")["value"][0]
    assert r.train_loss == pytest.approx(train_loss, abs=1e-6)
    # paired with the cell's two other seeds, not with itself
    others = {p.other for p in w16.pairs}
    assert others == {"width016-batch_size0016-s0", "width016-batch_size0016-s2"}
    # the s1–s2 pair is stored by the zoo in the same orientation: the same numbers
    stored = zoo_metrics.filter((pl.col("model_id") == W16) & (pl.col("other_id") == "width016-batch_size0016-s2")
                                & pl.col("coord").is_null())
    stored = dict(zip(stored["metric"], stored["value"]))
    mine_pairs = {p.metric: p.value for p in w16.pairs if p.other == "width016-batch_size0016-s2"}
    for metric in ("cka_logits_test", "mc_linear"):
        assert mine_pairs[metric] == pytest.approx(stored[metric], abs=1e-4), metric
    assert r.mc == pytest.approx(cell["mc"], abs=1.0)  # 2 of the cell's 3 pairs
    assert min(cell["cka_min"], cell["cka_max"]) - 1e-6 <= r.cka <= cell["cka_max"] + 1e-6
    # the report's own metric rows carry the same training loss
    own = {(m.metric, m.split): m.value for m in w16.metrics if m.coord is None and m.layer is None}
    assert own[("train_loss", "train")] == r.train_loss
    # each threshold checked: classify's margins, nothing near (wide margins), the phase across each
    checks = {c.quantity: c for c in r.checks}
    assert checks["train_loss"].margin == pytest.approx(math.log10(r.train_loss / r.tau_loss))
    assert checks["mc"].margin == pytest.approx(r.mc + r.eps_mc) and not r.near_boundary and r.near == ()
    assert checks["train_loss"].flips_to in {"IV-A", "IV-B"}  # fitted and without a barrier: phase IV
    assert checks["mc"].flips_to == "I" and not checks["cka"].used  # II with a barrier is I; CKA splits IV only


@pytest.mark.slow
def test_zoo_checkpoint_classifier_and_evidence(w16):
    c = w16.classifier
    assert set(c.probabilities) == {"I", "II", "III", "IV-A", "IV-B"}
    assert sum(c.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert all(0 <= p <= 1 for p in c.probabilities.values())
    assert c.phase == max(c.probabilities, key=c.probabilities.get)
    assert c.n_train == 384
    second = sorted(c.probabilities.items(), key=lambda kv: -kv[1])[1]
    assert c.runner_up == second and c.words() == f"{c.phase} {c.probabilities[c.phase]:.2f}, runner-up " \
                                                  f"{second[0]} {second[1]:.2f}"
    # its held-out figures, carried from where it is trained: leave-one-cell-out over the zoo's 384 models × epochs
    v = c.validation
    assert v.scheme == "leave-one-cell-out" and v.n == 384 and v.folds == 64
    assert v.baseline < v.accuracy <= 1 and sum(map(sum, v.confusion)) == 384
    assert c.features["n_params"] == pytest.approx(math.log10(1098))
    assert c.features["train_loss"] == pytest.approx(math.log10(w16.rule.train_loss))
    ev = {e.quantity: e for e in w16.evidence}
    assert set(ev) == {"train_loss", "mc", "cka", "hessian_trace"}
    assert all(e.zoo_cells == 64 for e in ev.values())
    assert ev["mc"].threshold == -w16.rule.eps_mc and ev["cka"].threshold == w16.rule.tau_cka
    assert ev["train_loss"].value == w16.rule.train_loss
    for e in ev.values():
        assert e.zoo_min <= e.zoo_q25 <= e.zoo_median <= e.zoo_q75 <= e.zoo_max
    assert len(w16.data_free) == 3 and {d.layer for d in w16.data_free} == {"1", "3", "5"}


@pytest.mark.slow
def test_summary_of_a_zoo_checkpoint(w16):
    text = V.summary(w16)
    assert text.startswith(f"epoch_0300.safetensors  (sha256 {w16.sha256[:12]}…, 1,098 parameters)")
    assert "  cell: width=16 [weights], batch_size=16 [identical zoo model]" in text
    assert "  PHASE (taxonomy rules): II\n" in text
    assert f"  identical to zoo model {W16}" in text
    assert "(2 pair(s) with zoo seeds" in text
    assert f"classifier validated on the zoo: {w16.classifier.validation.words()}" in text
    assert w16.classifier.words() in text and ", runner-up " in text


@pytest.mark.slow
def test_an_mlp_upload_skips_the_stochastic_traces_its_exact_trace_replaces(w16, zoo_metrics):
    names = {m.metric for m in w16.metrics}
    assert {"hessian_trace_exact", "hessian_top_eigenvalue", "hessian_esd"} <= names
    assert not names & {"hessian_trace_hutchpp", "hessian_trace_hutchinson"}
    exact = next(m.value for m in w16.metrics if m.metric == "hessian_trace_exact")
    assert next(e.value for e in w16.evidence if e.quantity == "hessian_trace") == pytest.approx(exact)
    # the added parameter at its default leaves the stored rows' hash, so the zoo's rows stay current
    from analysis.metrics.catalog import get_metric

    stored = zoo_metrics.filter(pl.col("metric") == "hessian_top_eigenvalue")["params_hash"].unique().to_list()
    assert stored == [get_metric("hessian").params_hash]
    assert get_metric("hessian").with_params(stochastic_traces=False).params_hash not in stored


@pytest.mark.slow
def test_an_upload_is_told_what_to_change(w16):
    """Its advice is the zoo map's own (analysis.taxonomy.advice) from its cell, with its own phase and score."""
    from analysis.taxonomy.advice import advise, scored_labels
    from analysis.taxonomy.cells import cell_table

    zoo = Zoo.open(DEFAULT_ZOO)
    metrics = read_metrics(zoo.root)
    labelled = scored_labels(cell_table(metrics, zoo.catalog, zoo.spec, EPOCH), metrics, zoo.catalog, zoo.spec, EPOCH)
    own = next(m.value for m in w16.metrics if m.metric == "test_acc" and m.split == "test" and m.layer is None)
    expected = advise(labelled, zoo.spec, 16, 16, phase=w16.phase, score=own)
    assert w16.advice == expected.words() and expected.moves  # phase II: the nearest IV-B cells, nearest first
    assert all(m.phase_to == "IV-B" for m in expected.moves)
    assert "  what to change: " + w16.advice.splitlines()[0] in V.summary(w16)


@pytest.mark.slow
def test_report_json_round_trip(w16):
    again = V.Report.from_json(w16.to_json())
    assert again.to_json() == w16.to_json()
    assert again.rule == w16.rule and again.placement == w16.placement and again.cell == w16.cell
    assert again.advice == w16.advice


# ----------------------------------------------------------------------------- 5. a perturbed copy, batch size given
@pytest.fixture(scope="module")
def given_w8(tmp_path_factory) -> V.Report:
    path = write(tmp_path_factory.mktemp("given") / "noisy.safetensors", perturbed(load_file(str(ckpt(W8))), 0))
    [r] = V.analyse([path], [Zoo.open(DEFAULT_ZOO)], given={"batch_size": "64"}, executor=None, cache=False)
    assert isinstance(r, V.Report), r
    return r


@pytest.mark.slow
def test_perturbed_copy_with_given_batch_size(given_w8, zoo_metrics):
    r = given_w8
    assert r.cell["width"] == KnobValue(8, 8, "weights")
    assert r.cell["batch_size"] == KnobValue(64, 64, "given")  # "64" parsed as the grid's int
    assert r.placement.identical_to is None
    nb = r.placement.neighbours
    assert nb[0].model_id == W8 and 0 < nb[0].distance < 0.01 * nb[1].distance
    assert r.rule.pairs_with == "zoo seeds" and r.rule.n_pairs == 3
    assert {p.other for p in r.pairs} == {f"width008-batch_size0064-s{s}" for s in range(3)}
    assert not any("identical" in n for n in r.notes)
    loss = zoo_metrics.filter((pl.col("model_id") == W8) & (pl.col("metric") == "train_loss")
                              & pl.col("other_id").is_null())["value"][0]
    assert r.rule.train_loss == pytest.approx(loss, rel=0.02)


# ----------------------------------------------------------------------------- 6. between grid values
@pytest.fixture(scope="module")
def off_grid() -> V.Report:
    [r] = V.analyse([("w12.safetensors", save(mlp_state(12)))], [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)
    assert isinstance(r, V.Report), r
    return r


@pytest.mark.slow
def test_off_grid_width(off_grid, phases300):
    r = off_grid
    assert r.zoo is not None and r.n_params == 40 * 12 + 12 + 12 * 12 + 12 + 12 * 10 + 10
    assert r.cell["width"] == KnobValue(12, 16, "weights")
    bs = r.cell["batch_size"]
    assert bs.source == "estimated" and bs.value == bs.grid and bs.value in (8, 16, 32, 64, 128, 256, 512, 1024)
    assert len(bs.estimated_from) == 5 and all(m.startswith("width016-") for m in bs.estimated_from)  # same grid width
    # every batch size it could have had, scored, with the rules' answer there: its own train loss (untrained:
    # above τ_L) and that cell's seed-pair mc and CKA
    e = bs.estimate
    assert [c.value for c in e.candidates][0] == bs.value and len(e.candidates) == 8
    assert sum(c.votes for c in e.candidates) == 5 and all(c.nearest is not None for c in e.candidates)
    th = Thresholds(r.rule.tau_loss, r.rule.eps_mc, r.rule.tau_cka)
    for c in e.candidates:
        cell = phases300.filter((pl.col("width") == 16) & (pl.col("batch_size") == c.value)).row(0, named=True)
        assert c.zoo_phase == cell["phase"] and c.phase == label(r.rule.train_loss, cell["mc"], cell["cka"], th)
        assert c.phase in {"I", "II"}  # under-fitted wherever it is put
    assert f"batch_size estimated ({e.candidates[0].votes}/5 votes)" in V.summary(r)
    assert r.rule.phase == "unclassified" and r.rule.reason == "lacks mc, cka"
    assert r.rule.n_pairs == 0 and r.rule.pairs_with is None and r.pairs == ()
    assert r.rule.mc is None and r.rule.cka is None and r.rule.train_loss > 2.0  # untrained: ~ln 10
    assert sum(r.classifier.probabilities.values()) == pytest.approx(1.0, abs=1e-9)
    assert r.classifier.phase in r.classifier.probabilities
    assert any("between grid values" in n for n in r.notes)
    assert r.placement.identical_to is None and len(r.placement.neighbours) == 5
    assert "PHASE (taxonomy rules): unclassified — lacks mc, cka" in V.summary(r)
    assert r.phase == r.classifier.phase  # the rules cannot decide: the classifier's phase stands
    # an untrained model is unlike every trained zoo model: the classifier says it extrapolates
    assert r.classifier.extrapolating and r.classifier.nearest_distance > r.classifier.typical_distance
    assert any("extrapolate" in n for n in r.notes)


@pytest.mark.slow
def test_a_zoo_model_is_within_the_classifiers_experience(w16):
    # its recomputed features are the stored ones up to float rounding (seen: 0 to 5e-9 across runs of the
    # suite), against a typical nearest-neighbour distance of order 0.1–1
    assert not w16.classifier.extrapolating and w16.classifier.nearest_distance < 1e-6
    assert w16.classifier.typical_distance > 1e-2


@pytest.mark.slow
def test_a_given_knob_beats_the_identical_zoo_models(zoo):
    [r] = V.analyse([ckpt(W8)], [zoo], given={"batch_size": 1024}, executor=None, cache=False)
    assert r.placement.identical_to == W8
    assert r.cell["batch_size"] == KnobValue(1024, 1024, "given")
    assert {p.other for p in r.pairs} == {f"width008-batch_size1024-s{s}" for s in range(3)}


# ----------------------------------------------------------------------------- 7. an architecture no zoo has
def test_unrecognised_architectures_get_the_data_free_report_only(zoo):
    cnn = {k: v.contiguous() for k, v in build_model("cnn1d", (40,), 10, {"width": 4}, seed=0).state_dict().items()}
    files = [("cnn.safetensors", save(cnn)), ("mlp64.pt", _torch_bytes(mlp_state(16, inputs=64)))]
    reports = V.analyse(files, [zoo], executor=None, cache=False)
    assert [r.file for r in reports] == ["cnn.safetensors", "mlp64.pt"]
    for r in reports:
        assert isinstance(r, V.Report)
        assert r.zoo is None and r.epoch is None and r.cell == {} and r.rule is None and r.classifier is None
        assert r.data_free and all({"alpha", "stable_rank", "spectral_norm", "shape"} <= set(d.to_dict())
                                   for d in r.data_free)
        assert len(r.matches) == 1 and r.matches[0].ok is False and r.matches[0].problems
        assert r.notes[-1] == "no zoo matches this architecture: data-free report only"
        assert "  matches no zoo:" in V.summary(r)
    cnn_r, mlp_r = reports
    assert {d.layer for d in cnn_r.data_free} == {"features.0", "features.2", "features.4", "head"}
    assert cnn_r.matches[0].problems[0].endswith("its keys are not those of a mlp")
    assert "1.weight (16, 64) ≠ (16, 40)" in mlp_r.matches[0].problems[0]
    layer1 = next(d for d in mlp_r.data_free if d.layer == "1")
    assert {"layer": "1", "shape": [16, 64]}.items() <= layer1.to_dict().items()


def _torch_bytes(obj) -> bytes:
    buf = io.BytesIO()
    torch.save(obj, buf)
    return buf.getvalue()


# ----------------------------------------------------------------------------- 8. two uploads of one configuration
@pytest.fixture(scope="module")
def two_uploads(tmp_path_factory):
    """Two noisy copies of one width-8 model, analysed together, with a report cache of their own."""
    cache = tmp_path_factory.mktemp("uploads-cache")
    base = load_file(str(ckpt(W8)))
    a, b = ("a.safetensors", save(perturbed(base, 1))), ("b.safetensors", save(perturbed(base, 2)))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASEZOO_CACHE", str(cache))
        reports = V.analyse([a, b], [Zoo.open(DEFAULT_ZOO)], executor=None)
    return cache, a, b, reports


@pytest.mark.slow
def test_two_uploads_of_one_configuration_pair_with_each_other(two_uploads):
    _, _, _, (ra, rb) = two_uploads
    for r, other in ((ra, "b.safetensors"), (rb, "a.safetensors")):
        assert isinstance(r, V.Report)
        assert r.rule.pairs_with == "uploads" and r.rule.n_pairs == 1
        assert {p.other for p in r.pairs} == {other}
        assert f"paired with the 1 other upload(s) of this configuration: {other}" in r.notes
        cka = next(p.value for p in r.pairs if p.metric == "cka_logits_test")
        assert cka > 0.99  # 1e-3 noise: functionally the same model
        assert r.placement.identical_to is None and r.placement.neighbours[0].model_id == W8
        assert r.cell["batch_size"].source == "estimated"
        assert all(m.startswith("width008-") for m in r.cell["batch_size"].estimated_from)


@pytest.mark.slow
def test_cached_report_does_not_depend_on_a_past_companion(two_uploads, monkeypatch):
    cache, a, _, _ = two_uploads
    monkeypatch.setenv("PHASEZOO_CACHE", str(cache))
    [alone] = V.analyse([a], [Zoo.open(DEFAULT_ZOO)], executor=None)
    assert alone.rule.pairs_with != "uploads"
    assert not any("b.safetensors" in n for n in alone.notes)


@pytest.mark.slow
def test_a_duplicate_upload_is_not_its_own_seed(zoo):
    path = ckpt(W8)
    first, second = V.analyse([path, path], [zoo], executor=None, cache=False)
    assert first.rule.pairs_with == "zoo seeds" and first.placement.identical_to == W8
    assert {p.other for p in first.pairs} == {"width008-batch_size0064-s1", "width008-batch_size0064-s2"}


# ----------------------------------------------------------------------------- 9. hostile and broken files
@pytest.mark.slow
def test_bad_files_are_refused_and_the_zoo_is_untouched(tmp_path):
    copy = tmp_path / "zoo"
    shutil.copytree(DEFAULT_ZOO, copy)
    before = snapshot(copy)
    marker = tmp_path / "pwned"
    legacy = pickle.dumps({"w": _Touch(marker)}, protocol=2)
    zipped = _torch_bytes({"w": _Touch(marker)})
    live = tmp_path / "live"  # the same payload, unpickled the unsafe way, does run (so the test can fail)
    pickle.loads(pickle.dumps({"w": _Touch(live)}, protocol=2))
    assert live.exists()
    good = tmp_path / "good.safetensors"
    shutil.copy(ckpt("width008-batch_size0064-s1"), good)
    (tmp_path / "empty.pt").write_bytes(b"")
    (tmp_path / "legacy.pt").write_bytes(legacy)
    (tmp_path / "zipped.pth").write_bytes(zipped)
    (tmp_path / "random.bin").write_bytes(np.random.default_rng(0).bytes(1000))
    (tmp_path / "notes.txt").write_text("hello")
    files = [tmp_path / n for n in ("empty.pt", "legacy.pt", "good.safetensors", "zipped.pth", "random.bin",
                                    "notes.txt")] + [tmp_path / "absent.pt"]
    results = V.analyse(files, [Zoo.open(copy)], executor=None, cache=False)
    assert [r.file for r in results] == [f.name for f in files]
    kinds = [type(r).__name__ for r in results]
    assert kinds == ["Refused", "Refused", "Report", "Refused", "Refused", "Refused", "Refused"]
    err = {r.file: r.error for r in results if isinstance(r, V.Refused)}
    assert err["empty.pt"] == "empty.pt: is empty (0 bytes)"
    for n in ("legacy.pt", "zipped.pth"):
        assert err[n].startswith(f"{n}: refused: the pickle calls os.system, which a weights-only load does not allow")
    assert err["random.bin"].startswith("random.bin: is not a readable PyTorch checkpoint")
    assert err["notes.txt"].startswith("notes.txt: its suffix '.txt' is not a checkpoint suffix")
    assert err["absent.pt"].startswith("absent.pt: no such file")
    assert not marker.exists()
    ok = results[2]
    assert ok.zoo == str(copy) and ok.placement.identical_to == "width008-batch_size0064-s1"
    assert ok.rule.phase in {"I", "II", "III", "IV-A", "IV-B"}
    assert snapshot(copy) == before  # nothing under the zoo written, touched or added
    assert V.summary(results[0]) == "empty.pt: REFUSED — empty.pt: is empty (0 bytes)"


class _Touch:
    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(self.path)}",))


def test_the_zoos_own_width2_checkpoint_is_accepted(zoo, monkeypatch):
    path = ckpt("width002-batch_size0008-s0")
    assert path.read_bytes()[:8] == (384).to_bytes(8, "little")  # the precondition: header length 0x180
    monkeypatch.setattr(V, "_analyse_one", lambda ck, *a: stub_report(ck.name))
    [r] = V.analyse([path], [zoo], executor=None, cache=False)
    assert isinstance(r, V.Report), r


# ----------------------------------------------------------------------------- 10. the report cache
@pytest.fixture(scope="module")
def cache_run(tmp_path_factory):
    """One width-8 checkpoint analysed twice with the cache on; the second time recomputing is an error."""
    cache = tmp_path_factory.mktemp("report-cache")
    path = ckpt("width008-batch_size0064-s2")
    zoos = [Zoo.open(DEFAULT_ZOO)]
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("PHASEZOO_CACHE", str(cache))
        [first] = V.analyse([path], zoos, executor=None)
        mp.setattr(V, "_analyse_one", _no_recompute)
        [second] = V.analyse([path], zoos, executor=None)
    return cache, path, first, second


@pytest.mark.slow
def test_second_analysis_comes_from_the_cache(cache_run):
    cache, _, first, second = cache_run
    assert isinstance(first, V.Report) and isinstance(second, V.Report)
    files = list((cache / "reports").glob("*.json"))
    assert len(files) == 1 and len(files[0].stem) == 32
    assert second.to_json() == first.to_json()
    assert json.loads(files[0].read_text()) == json.loads(first.to_json())
    rebuilt = V.Report.from_json(files[0].read_text())
    assert rebuilt == second and rebuilt.phase == first.phase
    assert second.seconds == first.seconds > 0


@pytest.mark.slow
def test_cached_report_equals_the_fresh_one(cache_run):
    _, _, first, second = cache_run
    assert second == first


@pytest.mark.slow
def test_cache_key_depends_on_given_knobs_and_epoch(cache_run, tmp_path, monkeypatch):
    cache, path, *_ = cache_run
    shutil.copytree(cache, tmp_path / "c")  # the stubs below are cached too: not in the shared cache
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "c"))
    computed = []
    monkeypatch.setattr(V, "_analyse_one", lambda ck, *a: computed.append(ck.name) or stub_report(ck.name))
    [same] = V.analyse([path], [Zoo.open(DEFAULT_ZOO)], executor=None)
    assert computed == [] and same.notes != ["stub"]  # the same options: the cached report
    for kw in ({"given": {"batch_size": 64}}, {"epoch": 150}):
        [r] = V.analyse([path], [Zoo.open(DEFAULT_ZOO)], executor=None, **kw)
        assert r.notes == ["stub"]  # recomputed: the cached report (other options) was not used
    assert len(computed) == 2


@pytest.mark.slow
@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"file": "x"}', ""])
def test_a_damaged_cache_file_is_recomputed_and_rewritten(cache_run, tmp_path, monkeypatch, damage):
    cache, path, first, _ = cache_run
    shutil.copytree(cache, tmp_path / "c")
    [entry] = (tmp_path / "c" / "reports").glob("*.json")
    entry.write_text(damage)
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "c"))
    monkeypatch.setattr(V, "_analyse_one", lambda ck, *a: stub_report(ck.name))
    [r] = V.analyse([path], [Zoo.open(DEFAULT_ZOO)], executor=None)
    assert r.notes == ["stub"] and r.file == first.file
    assert json.loads(entry.read_text())["notes"] == ["stub"]  # the damaged entry replaced


@pytest.mark.slow
def test_cache_off_neither_reads_nor_writes(cache_run, tmp_path, monkeypatch):
    cache, path, *_ = cache_run
    monkeypatch.setenv("PHASEZOO_CACHE", str(cache))
    monkeypatch.setattr(V, "_analyse_one", lambda ck, *a: stub_report(ck.name))
    [r] = V.analyse([path], [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)
    assert r.notes == ["stub"]  # the cached entry exists but was not used
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "empty"))
    V.analyse([path], [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)
    assert not (tmp_path / "empty" / "reports").exists()


# ----------------------------------------------------------------------------- 11. the CLI
@pytest.mark.slow
def test_cli_good_and_refused_files(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "cache"))
    good = tmp_path / "good.safetensors"
    shutil.copy(ckpt("width008-batch_size0128-s0"), good)
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"")
    out = tmp_path / "both.json"
    rc = V.main([str(good), str(bad), "--json", str(out), "--workers", "0", "--quiet"])
    printed = capsys.readouterr().out
    assert rc == 1
    assert "bad.pt: REFUSED — bad.pt: is empty (0 bytes)" in printed
    assert "good.safetensors  (sha256" in printed and f"wrote {out}" in printed
    both = json.loads(out.read_text())
    assert [d["file"] for d in both] == ["good.safetensors", "bad.pt"]
    assert both[1] == {"file": "bad.pt", "error": "bad.pt: is empty (0 bytes)"}
    # the good file alone: exit 0, served from the cache the first run wrote
    monkeypatch.setattr(V, "_analyse_one", _no_recompute)
    one = tmp_path / "one.json"
    assert V.main([str(good), "--json", str(one), "--workers", "0", "--quiet"]) == 0
    [d] = json.loads(one.read_text())
    assert d["file"] == "good.safetensors" and Path(d["zoo"]).resolve() == DEFAULT_ZOO.resolve()
    assert d == both[0]
    assert V.Report.from_dict(d).cell["width"].value == 8


def test_cli_knob_parsing(monkeypatch, capsys):
    seen = {}

    def fake(files, zoos, **kw):
        seen.update(kw, files=files, zoos=zoos)
        return []

    monkeypatch.setattr(V, "analyse", fake)
    assert V.main(["x.pt", "--knob", "batch_size=64", "--knob", "lr=a=b", "--workers", "0", "--quiet",
                   "--epoch", "150", "--no-cache"]) == 0
    assert seen["given"] == {"batch_size": "64", "lr": "a=b"} and seen["epoch"] == 150 and seen["cache"] is False
    assert seen["files"] == [Path("x.pt")] and seen["zoos"] is None and seen["executor"] is None
    for bad in ("foo", "=5", "batch_size="):
        with pytest.raises(SystemExit) as e:
            V.main(["x.pt", "--knob", bad])
        assert e.value.code == 2
        assert "expected KNOB=VALUE" in capsys.readouterr().err


def test_cli_not_a_zoo(tmp_path, capsys):
    assert V.main(["x.pt", "--zoo", str(tmp_path), "--workers", "0", "--quiet"]) == 2
    assert capsys.readouterr().err.startswith("error: ")


@pytest.mark.slow
def test_a_caller_that_leaves_half_way_breaks_nothing(zoo, tmp_path, monkeypatch):
    """A closed browser tab stops the page's script at its next progress update: the analysis stops with
    it, writes no cache entry, and the next upload of the same file is analysed in full."""
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))

    class Left(Exception):
        pass

    def leave(what, frac):
        if "Hessian and" in what:  # the slow part has been handed to the workers
            raise Left

    with pytest.raises(Left):
        V.analyse([ckpt(W8)], [zoo], executor=None, progress=leave)
    assert not list(tmp_path.rglob("*.json"))
    [r] = V.analyse([ckpt(W8)], [zoo], executor=None)
    assert isinstance(r, V.Report) and r.rule.phase and len(list(tmp_path.rglob("*.json"))) == 1


# ----------------------------------------------------------------------------- 12. each piece of work once
@pytest.mark.slow
def test_each_step_runs_once_per_file(zoo, monkeypatch):
    """Two uploads of one configuration (batch size estimated, so the quick metrics are needed before the
    cell is known): each file is recognised once (also as the other's companion), its data-free report, its
    weight-space flattening and each of its quick metrics run once, its Hessian once, and one pair job each."""
    import analysis.upload.measure as M
    import analysis.upload.placement as P

    calls: dict = {}

    def counting(module, name, key):
        real = getattr(module, name)

        def wrapper(*a, **k):
            calls[key(*a)] = calls.get(key(*a), 0) + 1
            return real(*a, **k)
        monkeypatch.setattr(module, name, wrapper)

    counting(V, "recognise", lambda state, zoos: ("recognise", state["1.weight"].sum().item()))
    counting(V, "weight_report", lambda state: ("weight_report", state["1.weight"].sum().item()))
    counting(P, "flatten_padded", lambda w, shapes: ("flatten", w["1.weight"].sum().item()))
    counting(M, "metric_task", lambda root, epoch, params, models, metrics, *a: (
        "metric", models[0][1], tuple(m[1] for m in models[1:]), tuple(m for m, _ in metrics)))
    monkeypatch.setattr(V, "PAIRS", ("cka_logits_test",))
    base = load_file(str(ckpt(W8)))
    states = [perturbed(base, 1), perturbed(base, 2)]
    ra, rb = V.analyse([("a.safetensors", save(states[0])), ("b.safetensors", save(states[1]))], [zoo],
                       executor=None, cache=False)
    assert ra.rule.pairs_with == rb.rule.pairs_with == "uploads"
    assert ra.cell["batch_size"].source == "estimated"
    expected = {}
    for me, other, state in (("a.safetensors", "b.safetensors", states[0]), ("b.safetensors", "a.safetensors",
                                                                              states[1])):
        w = state["1.weight"].sum().item()
        expected |= {("recognise", w): 1, ("weight_report", w): 1, ("flatten", w): 1,
                     **{("metric", me, (), (m,)): 1 for m in M.QUICK}, ("metric", me, (), ("hessian",)): 1,
                     ("metric", me, (other,), ("cka_logits_test",)): 1}
    assert calls == expected


# ----------------------------------------------------------------------------- 13. the workers start early
class Deferred(Executor):
    """An executor that records what it is given and runs it only when told (`run_all`): what was queued
    before a step, and whether leaving the analysis cancelled it."""

    def __init__(self, log: list):
        self.log, self.queued = log, []

    def submit(self, fn, *args):
        f: Future = Future()
        metrics = tuple(m for m, _ in args[5])  # in_worker(metric_task, root, epoch, params, models, metrics, ...)
        self.log.append(("submit", metrics))
        self.queued.append((f, fn, args))
        return f

    def run_all(self):
        for f, fn, args in self.queued:
            if f.set_running_or_notify_cancel():
                f.set_result(fn(*args))


@pytest.mark.slow
def test_the_hessian_is_queued_before_the_pairing_and_cancelled_with_it(zoo, monkeypatch):
    """The Hessian needs neither the cell nor the partners (no grid knob of the default zoo is a task
    parameter): it is queued before the pairing is decided, the pairs after, and the analysis collects both.
    An analysis that fails after queueing it (here the placement) leaves no job queued."""
    log: list = []
    pool = Deferred(log)
    real = V.partners

    def partners(*a, **k):
        log.append(("partners",))
        return real(*a, **k)
    monkeypatch.setattr(V, "partners", partners)
    real_collect = V.SlowJobs.collect
    monkeypatch.setattr(V.SlowJobs, "collect", lambda self, progress: (pool.run_all(), real_collect(self, progress))[1])
    state = perturbed(load_file(str(ckpt(W8))), 1)
    (r,) = V.analyse([("a.safetensors", save(state))], [zoo], executor=pool, cache=False)
    assert isinstance(r, V.Report) and r.rule.n_pairs == 3 and not r.errors
    assert log[0] == ("submit", ("hessian",)) and log[1] == ("partners",)
    assert log[2:] == [("submit", V.PAIRS)] * 3

    def broken(*a, **k):
        raise RuntimeError("placement broke")
    monkeypatch.setattr(V, "placement", broken)
    pool = Deferred(log)
    (refused,) = V.analyse([("a.safetensors", save(state))], [zoo], executor=pool, cache=False)
    assert isinstance(refused, V.Refused) and "placing it in weight space" in refused.error
    assert pool.queued and all(f.cancelled() for f, _, _ in pool.queued)


def test_distances_to_the_zoo_equal_the_direct_ones():
    """Oracle for placement._distances (the Gram expansion with the nearest re-measured): every distance
    within 1e-6 relative of ‖X_i − v‖, the NEIGHBOURS nearest and their order exactly the direct argsort's,
    and a near-copy's tiny distance exact (the expansion alone would lose it to cancellation)."""
    from analysis.upload import placement as P

    rng = np.random.default_rng(0)
    X = rng.normal(size=(40, 5000)) * rng.uniform(0.5, 2.0, size=(40, 1))
    sq = np.einsum("ij,ij->i", X, X)
    for v in (rng.normal(size=5000), X[7] + 1e-9 * rng.normal(size=5000), X[3].copy()):
        direct = np.linalg.norm(X - v, axis=1)
        dist, order = P._distances(X, sq, v)
        assert np.allclose(dist, direct, rtol=1e-6, atol=1e-9)
        assert list(order) == list(np.argsort(direct, kind="stable")[:P.NEIGHBOURS])
        assert np.array_equal(dist[order], direct[order])
    assert dist[3] == 0.0


@pytest.mark.slow
def test_the_kept_pca_is_refitted_when_damaged(zoo, tmp_path, monkeypatch):
    """The zoo's PCA kept on disk (placement._map): a second process reads it instead of fitting; a damaged
    file of any kind (empty, truncated, not an archive, wrong shapes) is fitted again and rewritten, never an
    upload's refusal."""
    from analysis.upload import placement as P
    from analysis.upload.zoo_side import zoo_state

    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))
    state, epoch = zoo_state(zoo), 300
    P._map.cache_clear()
    _, mean, components = P._map(state, epoch)
    [kept] = (tmp_path / "pca").glob("*.npz")
    good = kept.read_bytes()

    def no_fit(*a, **k):
        raise AssertionError("fitted although a kept PCA was on disk")
    with monkeypatch.context() as m:
        m.setattr("sklearn.decomposition.PCA", no_fit)
        P._map.cache_clear()
        _, m1, c1 = P._map(state, epoch)
    assert np.array_equal(m1, mean) and np.array_equal(c1, components)
    np.savez(tmp_path / "wrong.npz", mean=np.zeros(3), components=np.zeros((2, 3)))
    for damage in (b"", good[: len(good) // 2], b"not an archive" * 8, (tmp_path / "wrong.npz").read_bytes()):
        kept.write_bytes(damage)
        P._map.cache_clear()
        _, m2, c2 = P._map(state, epoch)
        assert np.array_equal(m2, mean) and np.array_equal(c2, components)
        with np.load(kept) as again:  # rewritten whole
            assert np.array_equal(again["components"], components)
    P._map.cache_clear()
