"""Importer of the published Phase-Transition Model Zoo layout, on fixtures written in exactly that layout."""
import json
import math
import os
import subprocess
import sys

import polars as pl
import pytest
import torch

from analysis.phases import Thresholds, classify, default_thresholds, zoo_cells
from data.import_ptmz import ImportError_, import_zoo
from data.resnet import resnet18_width
from data.store import Zoo, read_metrics
from tests.conftest import ROOT

EPOCHS = 3  # lines 0..3; checkpoints at 0 and 2; landscape values at epoch 2


def trial_dir(root, width, batch, seed):
    return root / (f"NN_tune_trainable_{width}{batch}{seed}_00{seed}_model_width={width},"
                   f"seed={seed},training_batchsize={batch}_2024-05-01_12-00-00")


def write_trial(root, width, batch, seed, *, prefix="", corrupt_line=None, landscape=None, params_drop=None,
                evil_checkpoint=False):
    d = trial_dir(root, width, batch, seed)
    (d / "checkpoint_000000").mkdir(parents=True)
    (d / "checkpoint_000002").mkdir()
    params = {"model::type": "Resnet18_width", "model::width": width, "model::o_dim": 10,
              "training::batchsize": batch, "seed": seed, "optim::lr": 0.1, "optim::wd": 5e-4,
              "training::epochs_train": EPOCHS}
    if params_drop:
        params.pop(params_drop)
    (d / "params.json").write_text(json.dumps(params))
    lines = []
    for k in range(EPOCHS + 1):
        row = {"train_loss": 2.3 - 0.2 * k - 0.001 * width, "train_acc": 0.1 + 0.1 * k, "test_loss": 2.3 - 0.1 * k,
               "test_acc": 0.1 + 0.05 * k, "training_iteration": k, "config": {"training::batchsize": batch // 2}}
        if k == 2 and landscape:
            row.update(landscape)
        lines.append(json.dumps(row))
    if corrupt_line is not None:
        lines[corrupt_line] = lines[corrupt_line][: len(lines[corrupt_line]) // 2]  # a cut-off line
    (d / "result.json").write_text("\n".join(lines) + "\n")
    torch.manual_seed(seed * 100 + width)
    model = resnet18_width((3, 32, 32), 10, width)
    states = {}
    for epoch in (0, 2):
        sd = {f"{prefix}{k}": v.clone() for k, v in model.state_dict().items()}
        if evil_checkpoint and epoch == 2:
            torch.save({"weights": sd, "payload": os.system}, d / f"checkpoint_{epoch:06d}" / "checkpoints")
        else:
            torch.save(sd, d / f"checkpoint_{epoch:06d}" / "checkpoints")
        states[epoch] = {k: v.clone() for k, v in model.state_dict().items()}
        with torch.no_grad():
            for p in model.parameters():
                p.add_(0.01)
    return states


LANDSCAPE = {"log_hessian_trace_train": math.log(50.0), "log_hessian_top_ev": math.log(4.0),
             "curve_mc_train_error": -2.5, "representation_similarity": 0.8}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("published") / "resnet18_cifar10"
    root.mkdir()
    (root / "config.json").write_text(json.dumps({"dataset": "cifar10"}))
    states = {}
    for width in (2, 4):
        for batch in (32, 128):
            for seed in (0, 1):
                kw = {"landscape": {**LANDSCAPE, "curve_mc_train_error": -2.5 * width}}
                if (width, batch, seed) == (2, 32, 0):
                    kw["prefix"] = "module."  # saved from DataParallel
                if (width, batch, seed) == (2, 32, 1):
                    kw["corrupt_line"] = 1
                if (width, batch, seed) == (4, 128, 1):  # raw misspelled key instead of the log one
                    kw["landscape"] = {k: v for k, v in LANDSCAPE.items() if k != "log_hessian_trace_train"}
                    kw["landscape"]["hessina_trace_train"] = 60.0
                if (width, batch, seed) == (4, 32, 1):
                    kw["landscape"] = {"curve_mc_train_error": -9.0}  # most keys missing
                states[width, batch, seed] = write_trial(root, width, batch, seed, **kw)
    write_trial(root, 8, 32, 0, params_drop="model::width")  # unreadable params: skipped
    write_trial(root, 4, 128, 0 + 2, evil_checkpoint=True)   # a pickle that would run code
    return root, states


@pytest.fixture(scope="module")
def imported(published, tmp_path_factory):
    root, _ = published
    out = tmp_path_factory.mktemp("imp") / "ptmz"
    report = import_zoo(root, out, task="cifar10")
    return out, report


def test_import_reads_the_layout(published, imported):
    _, states = published
    out, report = imported
    assert report.trials == 10 and report.imported == 9
    problems = "\n".join(report.problems)
    assert "model_width=8" in problems and "params.json: missing key(s) ['model::width']" in problems
    assert "result.json line 1: skipped" in problems
    assert "checkpoint_000002/checkpoints: skipped (UnpicklingError" in problems
    zoo = Zoo.open(out)
    assert zoo.spec.arch == "resnet18_width" and zoo.spec.grid == {"width": (2, 4), "batch_size": (32, 128)}
    assert zoo.spec.seeds == (0, 1, 2) and zoo.spec.analysis_epochs == (2,)
    cat = zoo.catalog
    corrupt = cat.filter(pl.col("model_id") == "width2-batch_size032-s1")
    assert corrupt["epoch"].to_list() == [0, 2, 3]  # line 1 skipped, epochs keep their line numbers
    # grid coordinates come from params.json, not the nested micro-batch config of result.json
    assert set(cat["batch_size"]) == {32, 128}
    # checkpoints: converted, prefix stripped, equal to what was saved, and they load into the ResNet
    for (w, b, s), st in states.items():
        mid = f"width{w}-batch_size{b:03d}-s{s}"
        sd = zoo.load_state_dict(mid, 2)
        assert all(torch.equal(sd[k], st[2][k]) for k in st[2])
        zoo.build_model(mid, 2)
    evil = cat.filter(pl.col("model_id") == "width4-batch_size128-s2")
    assert evil.filter(pl.col("epoch") == 2)["checkpoint"][0] is None  # refused, the rest imported
    assert evil.filter(pl.col("epoch") == 0)["checkpoint"][0] is not None


def test_landscape_keys_map_into_metrics(imported):
    out, _ = imported
    m = read_metrics(out)
    assert set(m["params_hash"]) == {"ptmz-import"} and m["error"].null_count() == m.height
    get = lambda mid, metric: m.filter((pl.col("model_id") == mid) & (pl.col("metric") == metric))["value"].to_list()
    assert get("width2-batch_size032-s0", "hessian_trace_hutchinson") == [pytest.approx(50.0)]  # exp(log)
    assert get("width4-batch_size128-s1", "hessian_trace_hutchinson") == [60.0]  # misspelled raw key
    assert get("width4-batch_size032-s1", "hessian_trace_hutchinson") == []  # missing keys tolerated
    assert get("width4-batch_size032-s1", "mc_bezier") == [-9.0]
    assert get("width2-batch_size128-s0", "cka_logits_test") == [0.8]
    assert get("width2-batch_size128-s0", "train_loss") == [pytest.approx(2.3 - 0.4 - 0.002)]


def test_imported_zoo_is_classified_without_recomputation(imported):
    out, _ = imported
    zoo, epoch, cells = zoo_cells(out)
    assert epoch == 2
    cell = cells.filter((pl.col("width") == 2) & (pl.col("batch_size") == 128)).row(0, named=True)
    assert cell["hessian_trace"] == pytest.approx(math.log(50.0))  # ln of the seed mean: the published value
    assert classify(cells, default_thresholds(cells)).height == 4
    labelled = classify(cells, Thresholds(train_loss=0.1, mc=1.0, cka=0.7))
    assert set(labelled["phase"]) == {"I"}  # every fixture cell: loss ≈ 1.7 nats and mc ≤ −5 points


def test_bad_import_directories(published, tmp_path):
    root, _ = published
    existing = tmp_path / "exists"
    existing.mkdir()
    with pytest.raises(ImportError_, match="exists"):
        import_zoo(root, existing)
    with pytest.raises(ImportError_, match="no trial directories"):
        import_zoo(tmp_path, tmp_path / "new")
    r = subprocess.run([sys.executable, "-m", "data.import_ptmz", str(root), "--out", str(tmp_path / "cli")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "imported 9 of 10 trials" in r.stdout and "warning:" in r.stderr


def test_nothing_partial_is_written(published, tmp_path, monkeypatch):
    import data.import_ptmz as imp

    root, _ = published

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(imp, "write_checkpoint", boom)
    with pytest.raises(OSError, match="disk full"):
        import_zoo(root, tmp_path / "zoo")
    assert list(tmp_path.iterdir()) == []  # neither the zoo nor its temporary directory
