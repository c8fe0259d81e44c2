"""The committed default zoo: complete, valid, and its checkpoints reproduce the catalog."""
import polars as pl
import pytest

from data.training.train import evaluate
from data.zoo.store import Zoo
from tests.conftest import DEFAULT_ZOO


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo.open(DEFAULT_ZOO)


def test_complete_grid(zoo):
    spec, cat = zoo.spec, zoo.catalog
    assert spec.n_models >= 192 and len(spec.grid["width"]) >= 8 and len(spec.grid["batch_size"]) >= 8
    assert cat["model_id"].n_unique() == spec.n_models
    per_model = cat.group_by("model_id").agg(pl.len(), pl.col("checkpoint").is_not_null().sum().alias("ckpts"))
    assert (per_model["len"] == spec.training["epochs"] + 1).all()
    assert (per_model["ckpts"] == len(spec.checkpoint_epochs)).all() and len(spec.checkpoint_epochs) >= 3
    assert all((DEFAULT_ZOO / p).is_file() for p in zoo.checkpoints()["checkpoint"])


def test_spans_the_phase_structure(zoo):
    """Narrow models under-fit, the hottest row has not converged, wide cold models fit the training set."""
    final = zoo.catalog.filter(pl.col("epoch") == zoo.spec.training["epochs"])
    cell = final.group_by("width", "batch_size").agg(pl.col("train_loss").mean(), pl.col("test_acc").mean())
    at = lambda w, b: cell.filter((pl.col("width") == w) & (pl.col("batch_size") == b)).row(0, named=True)
    widths, batches = sorted(zoo.spec.grid["width"]), sorted(zoo.spec.grid["batch_size"])
    assert all(at(widths[0], b)["train_loss"] > 1.0 for b in batches)  # narrowest: under-fitted everywhere
    assert all(at(w, batches[0])["train_loss"] > 1.0 for w in widths)  # hottest row: not converged
    assert all(at(widths[-1], b)["train_loss"] < 0.05 for b in batches[2:])  # wide and cold: fits
    best = cell.sort("test_acc").row(-1, named=True)
    assert best["width"] >= 64 and batches[0] < best["batch_size"] < batches[-1]  # best: wide, medium batch


def test_checkpoints_rebuild_and_match_the_catalog(zoo):
    """Rebuild a spread of stored models and re-evaluate them one at a time (not batched)."""
    task = zoo.task
    sample = zoo.checkpoints().filter(pl.col("epoch") > 0).sort("model_id", "epoch").gather_every(23)
    assert sample.height >= 15
    for row in sample.iter_rows(named=True):
        model = zoo.build_model(row["model_id"], row["epoch"])
        train_loss, train_acc = evaluate(model, task.x_train, task.y_train)
        test_loss, test_acc = evaluate(model, task.x_test, task.y_test)
        assert train_loss == pytest.approx(row["train_loss"], rel=1e-4, abs=1e-6)
        assert test_loss == pytest.approx(row["test_loss"], rel=1e-4, abs=1e-6)
        # the batched evaluation may break a near-tie differently: allow one example
        assert abs(train_acc - row["train_acc"]) <= 1 / len(task.y_train) + 1e-12
        assert abs(test_acc - row["test_acc"]) <= 1 / len(task.y_test) + 1e-12
