"""The weight-space learning benchmark (analysis.studies.weightspace, _features, _model) and the weights-only
phase verdict of an upload whose zoo's task data is absent (analysis.upload.verdict).

Oracles: numpy on a hand-built state dict for the StatNN statistics; a naive O(n²) pair count for Kendall's τ-b;
scikit-learn for the balanced accuracy; the zoo's stored `weights` metric rows for the data-free features of a
checkpoint; split_cells' own order for the folds; spies on the fitting function for "never trains on a held-out
cell / zoo" (the features encode each model's cell and zoo, so the training rows name them)."""
import itertools
import json
import math

import numpy as np
import polars as pl
import pytest
import scipy.stats  # noqa: F401  (imported at collection: seconds that no test should be timed with)
import sklearn.ensemble  # noqa: F401
import torch
from sklearn.metrics import balanced_accuracy_score

import analysis.studies.weightspace as W
import analysis.upload.verdict as V
from analysis.studies.export import split_cells
from analysis.studies.weightspace_features import STATS, datafree_table, pooled_features, statnn_features
from analysis.studies.weightspace_model import datafree_features, phase_model, predict
from analysis.upload.recognise import ZooMatch
from analysis.upload.report import WeightsOnlyVerdict
from data.zoo.store import Zoo, builtin_zoos, read_metrics
from tests.conftest import private_cache

PINN = next(p for p in builtin_zoos() if p.name == "convection-pinn")
CNN = next(p for p in builtin_zoos() if p.name == "mnist1d-cnn")


def _numpy_stats(x: np.ndarray) -> list[float]:
    x = np.asarray(x, np.float64).ravel()
    return [x.mean(), ((x - x.mean()) ** 2).mean(), x.min(), *np.percentile(x, [25, 50, 75]), x.max()]


# ----------------------------------------------------------------------------- features
def test_statnn_features_of_a_hand_built_state_dict():
    g = torch.Generator().manual_seed(0)
    state = {"b.weight": torch.randn(3, 2, generator=g), "a.weight": torch.randn(2, 4, generator=g),
             "a.bias": torch.tensor([1.0, -3.0]), "bn.running_mean": torch.ones(5), "bn.num_batches_tracked":
             torch.tensor(7)}
    f = statnn_features(state)
    for name in ("a.weight", "a.bias", "b.weight"):  # weights and biases separately, buffers left out
        assert [f[f"statnn:{name}:{s}"] for s in STATS] == pytest.approx(_numpy_stats(state[name].numpy()))
    assert not any("bn." in k for k in f)
    assert f["statnn:a.bias:var"] == pytest.approx(4.0) and f["statnn:a.bias:q50"] == pytest.approx(-1.0)
    assert f["log10_n_params"] == pytest.approx(math.log10(6 + 8 + 2))


def test_pooled_features_take_first_and_last_in_module_order():
    state = {"z.weight": torch.arange(6.0).reshape(2, 3), "a.weight": torch.tensor([[10.0, 20.0]]),
             "a.bias": torch.tensor([-1.0])}
    f = pooled_features(state, order=["z.weight", "a.weight", "a.bias"])  # not alphabetical: z is the first layer
    assert [f[f"pooled:first:{s}"] for s in STATS] == pytest.approx(_numpy_stats(np.arange(6.0)))
    assert [f[f"pooled:last:{s}"] for s in STATS] == pytest.approx(_numpy_stats([10.0, 20.0]))
    assert [f[f"pooled:all:{s}"] for s in STATS] == pytest.approx(_numpy_stats([*range(6), 10, 20, -1]))
    assert pooled_features(state)["pooled:first:mean"] == pytest.approx(2.5)  # default: the dict's order


def test_datafree_features_of_a_checkpoint_are_the_stored_metric_rows():
    zoo = Zoo.open(CNN)
    epoch = max(zoo.spec.analysis_epochs)
    mid = zoo.checkpoints().filter(pl.col("epoch") == epoch)["model_id"][7]
    stored = datafree_table(read_metrics(zoo.root), zoo.catalog, epoch).filter(pl.col("model_id") == mid).row(
        0, named=True)
    mine = datafree_features(zoo.load_state_dict(mid, epoch))
    expected = {k: v for k, v in stored.items() if k.startswith("datafree:") and v is not None}
    assert len(expected) > 20 and set(expected) == {k for k, v in mine.items() if v is not None}
    assert [mine[k] for k in expected] == pytest.approx(list(expected.values()), rel=1e-9)


# ----------------------------------------------------------------------------- metrics
def _naive_tau_b(x, y) -> float:
    conc = disc = tx = ty = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        conc += dx * dy > 0
        disc += dx * dy < 0
        tx += dx == 0
        ty += dy == 0
    n0 = len(x) * (len(x) - 1) / 2
    return (conc - disc) / math.sqrt((n0 - tx) * (n0 - ty))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kendall_tau_against_a_naive_pair_count(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 6, 40).astype(float)  # ties on both sides: τ-b's correction matters
    y = x + rng.integers(-3, 4, 40)
    assert W.kendall_tau(x, y) == pytest.approx(_naive_tau_b(x, y), abs=1e-12)
    assert W.kendall_tau(x, -x) == pytest.approx(-1.0) and math.isnan(W.kendall_tau(x, np.ones(40)))


def test_balanced_accuracy_is_sklearns():
    rng = np.random.default_rng(3)
    y = rng.choice(["I", "II", "III", "IV-A"], 60, p=[0.6, 0.2, 0.15, 0.05])
    p = np.where(rng.random(60) < 0.6, y, rng.choice(["I", "II", "V"], 60))  # a class never true: as sklearn
    with pytest.warns(UserWarning, match="not in y_true"):
        expected = balanced_accuracy_score(y, p)
    assert W.balanced_accuracy(y, p) == pytest.approx(expected)


# ----------------------------------------------------------------------------- splits
def test_cell_folds_partition_the_cells_in_split_cells_order():
    cells = [f"w={w}-b={b}" for w in (2, 4, 8, 16, 32, 64, 128) for b in (8, 16, 32)]
    folds = W.cell_folds(cells * 3, k=5, seed=0)  # three seeds each: a cell is counted once
    assert len(folds) == 5
    parts = split_cells(sorted(cells), 0, (0.7, 0.15, 0.15))
    assert [c for _, test in folds for c in test] == [*parts["train"], *parts["val"], *parts["test"]]
    for train, test in folds:
        assert not set(train) & set(test) and set(train) | set(test) == set(cells)
    assert W.cell_folds(cells, 5, 1) != folds  # the seed is the shuffle's
    with pytest.raises(ValueError, match="folds"):
        W.cell_folds(cells[:3], k=5)


def _synthetic(zoo: str, n_cells: int, seeds: int = 3, offset: float = 0.0) -> pl.DataFrame:
    """A zoo's examples whose first feature encodes (zoo offset, cell, seed): the training rows name their cells."""
    rows = []
    for c, s in itertools.product(range(n_cells), range(seeds)):
        rows.append({"zoo": zoo, "model_id": f"{zoo}-{c}-{s}", "seed": s, "cell": f"cell{c}", "accuracy": c + 0.1 * s,
                     "phase": "I" if c % 2 else "II", "statnn:x:mean": offset + c * 10 + s,
                     "pooled:first:mean": offset + c * 10 + s, "log10_n_params": 3.0})
    return pl.DataFrame(rows)


@pytest.fixture
def spy(monkeypatch):
    """Every fit's training and test rows (their encoding feature), with a constant prediction (no trees)."""
    calls = []

    def fake(kind, X, y, X_test):
        calls.append((X[:, 0].copy(), X_test[:, 0].copy()))
        return np.full(len(X_test), y[0], dtype=object if kind == "classifier" else float), None

    monkeypatch.setattr(W, "fit_predict", fake)
    monkeypatch.setattr(W, "N_BOOT", 20)  # the intervals are not what these tests check
    return calls


@pytest.mark.parametrize("target", ["accuracy", "phase"])
def test_the_per_zoo_benchmark_never_trains_on_a_held_out_cell(spy, target):
    frame = _synthetic("z", 12)
    scores = W.benchmark_zoo(frame, "StatNN", target)
    assert len(spy) == 5 and scores and all(s.n_models == 36 and s.n_cells == 12 for s in scores)
    tested = []
    for train, test in spy:
        train_cells, test_cells = {int(v // 10) for v in train}, {int(v // 10) for v in test}
        assert not train_cells & test_cells  # no seed of a held-out cell is trained on
        assert len(test) == 3 * len(test_cells)  # every model of a held-out cell is on the test side
        tested += test.tolist()
    assert sorted(tested) == sorted(frame["statnn:x:mean"].to_list())  # every model predicted exactly once


def test_leave_one_zoo_out_never_trains_on_the_held_out_zoo(spy):
    assert W.leave_one_zoo_out(["a", "b", "c"]) == [(["b", "c"], "a"), (["a", "c"], "b"), (["a", "b"], "c")]
    frames = [_synthetic(z, 6, offset=1000 * i) for i, z in enumerate("abcd")]
    scores = W.benchmark_across(frames, "StatNN", "phase")
    assert [s.zoo for s in scores] == list("abcd") and all(s.scope == "leave-one-zoo-out" for s in scores)
    for i, (train, test) in enumerate(spy):
        assert {int(v // 1000) for v in test} == {i} and i not in {int(v // 1000) for v in train}
        assert len(train) == 3 * 18


@pytest.mark.slow
def test_the_gbm_learns_an_accuracy_the_weights_determine():
    frame = _synthetic("z", 20, seeds=2)
    [tau, r2] = W.benchmark_zoo(frame, "StatNN", "accuracy")
    assert (tau.metric, r2.metric) == ("kendall_tau", "r2")
    assert tau.value > 0.8 and r2.value > 0.8 and tau.ci_low <= tau.value <= tau.ci_high and tau.fold_std is not None
    t = W.table([tau, r2])
    assert dict(t.schema) == W.SCHEMA and t.height == 2


@pytest.mark.slow
def test_examples_of_a_zoo_carry_its_cells_phases():
    zoo = Zoo.open(CNN)
    assert W.examples(CNN)[1] == max(zoo.spec.analysis_epochs)  # by default its last analysis epoch
    frame, epoch = W.examples(CNN, epoch=50)  # the first: six cells are unclassified there
    assert epoch == 50 and frame.height == zoo.catalog["model_id"].n_unique()
    phases = pl.read_parquet(CNN / "phases.parquet").filter(pl.col("epoch") == epoch)
    truth = {f"width={w}-batch_size={b}": p for w, b, p in phases.select("width", "batch_size", "phase").rows()}
    assert all(p == (truth[c] if truth[c] != "unclassified" else None) for c, p in frame.select("cell", "phase").rows())
    assert frame["phase"].null_count() == 3 * sum(p == "unclassified" for p in truth.values()) > 0
    assert frame["accuracy"].to_list() == zoo.catalog.filter(pl.col("epoch") == epoch).sort("model_id")["test_acc"].to_list()
    assert W.feature_columns(frame, "StatNN", across=True)[-1] == "log10_n_params"
    assert not any("@" in c for c in W.feature_columns(frame, "data-free", across=True))


# ----------------------------------------------------------------------------- the upload fallback
@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    yield from private_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def no_data_report(cache):
    """A convection-PINN checkpoint analysed as if its zoo's task data were absent."""
    zoo = Zoo.open(PINN)
    epoch = max(zoo.spec.analysis_epochs)
    row = zoo.checkpoints().filter(pl.col("epoch") == epoch).sort("model_id").row(4, named=True)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "task_data", lambda z, flag=None: None)
        [r] = V.analyse([PINN / row["checkpoint"]], [zoo], cache=False)
    return r, zoo, zoo.load_state_dict(row["model_id"], epoch)


@pytest.mark.slow
def test_without_task_data_an_upload_gets_its_phase_from_the_weights_alone(no_data_report):
    r, zoo, state = no_data_report
    assert r.zoo == str(zoo.root) and r.rule is None and r.classifier is None
    assert any("data-free report only" in n for n in r.notes)
    w, model = r.weights_only, phase_model(zoo)
    assert isinstance(w, WeightsOnlyVerdict)
    again = predict(model, state)
    assert (w.phase, dict(w.probabilities)) == (again.phase, pytest.approx(dict(again.probabilities)))
    assert sum(w.probabilities.values()) == pytest.approx(1.0) and w.phase == max(w.probabilities,
                                                                                   key=w.probabilities.get)
    # its held-out figure is the benchmark's, for the baseline with the better one
    held = {s.baseline: s.value for s in model.validations}  # the better validated baseline is the one used
    assert set(held) == set(W.BASELINES) and w.baseline == max(held, key=lambda b: (held[b], b == "StatNN"))
    frame = W.examples(PINN)[0]  # its figure is the benchmark's, recomputed from scratch
    assert w.balanced_accuracy == pytest.approx(W.benchmark_zoo(frame, w.baseline, "phase")[0].value)
    assert w.ci_low <= w.balanced_accuracy <= w.ci_high
    assert w.n_cells == frame.filter(pl.col("phase").is_not_null())["cell"].n_unique() and w.chance == pytest.approx(1 / 3)
    text = V.summary(r)
    assert "PHASE (from the weights alone, no task data here): " + w.words() in text
    assert f"held-out balanced accuracy {w.balanced_accuracy:.2f}" in text
    assert V.Report.from_json(r.to_json()) == r and json.loads(r.to_json())["weights_only"]["phase"] == w.phase


@pytest.mark.slow
def test_a_zoo_without_labels_keeps_the_data_free_report(cache, monkeypatch, tmp_path):
    import shutil

    root = tmp_path / "pinn"
    shutil.copytree(PINN, root)
    (root / "phases.parquet").unlink()
    zoo = Zoo.open(root)
    monkeypatch.setattr(V, "task_data", lambda z, flag=None: None)
    ck = zoo.checkpoints().filter(pl.col("epoch") == 1500)["checkpoint"][0]
    [r] = V.analyse([root / ck], [zoo], cache=False)
    assert r.weights_only is None and r.data_free
    assert any(n.startswith("no phase from the weights alone: ValueError") and "no labelled cell" in n for n in r.notes)


@pytest.mark.slow
def test_the_page_labels_the_weights_only_phase(monkeypatch, tmp_path):
    from tests.test_upload_view import upload_page

    zoo = Zoo.open(builtin_zoos()[0])
    match = ZooMatch(zoo.name, str(zoo.root), "mlp", {"width": 8, "depth": 2}, {"width": 8}, {"width": 8}, ())
    w = WeightsOnlyVerdict("II", {"II": 0.7, "I": 0.2, "III": 0.1}, "StatNN", 300, 125, 62, 0.649, 0.58, 0.88, 0.2)
    report = V.Report("mine.safetensors", "0" * 64, 490, ("its task data is not here",), (), (match,),
                      zoo=str(zoo.root), weights_only=w)
    at = upload_page(report, monkeypatch, tmp_path)
    assert {m.label: m.value for m in at.metric}["Phase (from the weights alone)"] == "II"
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any(c.startswith("From the weights alone (no task data here): held-out balanced accuracy 0.65 [0.58, 0.88]")
               for c in captions), captions
    assert any("II 0.70, runner-up I 0.20" in c for c in captions)
