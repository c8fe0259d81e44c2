"""Importer of the published Phase-Transition Model Zoo layout, on fixtures written in exactly that layout."""
import json
import math
import os
import re
import subprocess
import sys

import polars as pl
import pytest
import torch
from streamlit.testing.v1 import AppTest

from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, zoo_cells
from data.importers.ptmz import ImportError_, import_zoo
from data.models.resnet import resnet18_width
from data.zoo.store import Zoo, read_metrics
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
    assert "model_width=8" in problems and "params.json: missing key 'model::width' — trial skipped" in problems
    assert "result.json line 1: skipped" in problems
    # the checkpoint reader's words (data.checkpoint.load), behind the file's path
    assert re.search(r"checkpoint_000002/checkpoints: refused: [^\n]*os\.system[^\n]* — checkpoint skipped", problems)
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


@pytest.mark.slow
def test_bad_import_directories(published, tmp_path):
    root, _ = published
    existing = tmp_path / "exists"
    existing.mkdir()
    with pytest.raises(ImportError_, match="exists"):
        import_zoo(root, existing)
    with pytest.raises(ImportError_, match="no trial directories"):
        import_zoo(tmp_path, tmp_path / "new")
    r = subprocess.run([sys.executable, "-m", "data.importers.ptmz", str(root), "--out", str(tmp_path / "cli")],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0 and "imported 9 of 10 trials" in r.stdout and "warning:" in r.stderr


def test_nothing_partial_is_written(published, tmp_path, monkeypatch):
    import data.importers.ptmz as imp

    root, _ = published

    def boom(*a, **k):
        raise OSError("disk full")
    monkeypatch.setattr(imp, "write_checkpoint", boom)
    with pytest.raises(OSError, match="disk full"):
        import_zoo(root, tmp_path / "zoo")
    assert list(tmp_path.iterdir()) == []  # neither the zoo nor its temporary directory


# --- hostile and unusual trials ------------------------------------------------------------------------------
APP = str(ROOT / "dashboard" / "app.py")
PARAMS = {"model::type": "Resnet18_width", "model::width": 2, "model::o_dim": 10, "training::batchsize": 32,
          "seed": 0, "optim::lr": 0.1, "optim::wd": 5e-4, "training::epochs_train": 2}


def bare_trial(root, name, *, params=None, params_text=None, config="params.json", lines=None, result_text=None):
    """A trial without checkpoints: `params` (a dict, or the raw `params_text`) and result `lines` (dicts)."""
    d = root / f"NN_tune_trainable_{name}_2024-05-01_12-00-00"
    d.mkdir(parents=True)
    (d / config).write_text(params_text if params_text is not None else json.dumps({**PARAMS, **(params or {})}))
    if lines is None:
        lines = [{"train_loss": 2.0 - 0.5 * k, "train_acc": 0.2 * k, "test_loss": 2.1 - 0.4 * k, "test_acc": 0.2 * k}
                 for k in range(3)]
    (d / "result.json").write_text(result_text if result_text is not None
                                   else "\n".join(json.dumps(r) for r in lines) + "\n")
    return d


def one_line_each(report, *names):
    """Every problem is one line naming its trial directory, in our words (no exception text or type names)."""
    for p in report.problems:
        assert "\n" not in p and "Traceback" not in p and "Error" not in p, p
    for n in names:
        assert any(n in p for p in report.problems), (n, report.problems)


def metric(out, mid, name, split=None):
    m = read_metrics(out).filter((pl.col("model_id") == mid) & (pl.col("metric") == name))
    if split:
        m = m.filter(pl.col("split") == split)
    return sorted(zip(m["coord"].to_list(), m["value"].to_list()), key=lambda cv: (cv[0] is not None, cv[0] or 0))


def test_hessian_metric_keys_of_the_published_code_are_read(tmp_path):
    root = tmp_path / "pub"
    # what ptmz/loss_landscape/hessian_metric.py writes for a one-model run, plus a key nobody knows
    hess = {"hessian_top_eigenvalues_train_list": [[4.0, 3.0]], "hessina_trace_train_list": [60.0],
            "hessian_top_eigenvalues_train_mean": 3.5, "hessian_trace_train_mean": 60.0,
            "hessian_top_eigenvalues_val_list": [[5.0]], "hessina_trace_val_list": [70.0],
            "hessian_top_eigenvalues_val_mean": 5.0, "hessian_trace_val_mean": 70.0, "dataloader_val": "test",
            "hessian_mystery": 1.0}
    perf = {"train_loss": 0.5, "train_acc": 0.9, "test_loss": 0.7, "test_acc": 0.8}
    bare_trial(root, "a", lines=[perf, {**perf, **hess}])
    # means of a several-model run cannot be assigned to one trial; only the mean is there for the other split
    bare_trial(root, "b", params={"seed": 1}, lines=[perf, {**perf, "hessina_trace_train_list": [1.0, 2.0],
                                                            "hessian_trace_train_mean": 1.5, "hessian_mystery": 2,
                                                            "hessian_trace_val_mean": 9.0}])
    report = import_zoo(root, tmp_path / "zoo")
    out = tmp_path / "zoo"
    assert report.imported == 2
    assert metric(out, "width2-batch_size32-s0", "hessian_trace_hutchinson", "train") == [(None, 60.0)]
    assert metric(out, "width2-batch_size32-s0", "hessian_trace_hutchinson", "test") == [(None, 70.0)]
    assert metric(out, "width2-batch_size32-s0", "hessian_top_eigenvalue", "train") == [(1.0, 4.0), (2.0, 3.0)]
    assert metric(out, "width2-batch_size32-s0", "hessian_top_eigenvalue", "test") == [(1.0, 5.0)]
    assert metric(out, "width2-batch_size32-s1", "hessian_trace_hutchinson", "train") == []
    assert metric(out, "width2-batch_size32-s1", "hessian_trace_hutchinson", "test") == [(None, 9.0)]
    one_line_each(report, "hessina_trace_train_list holds 2 models' values",
                  "hessian_trace_train_mean is a mean over 2 models")
    mystery = [p for p in report.problems if "hessian_mystery" in p]
    assert len(mystery) == 1 and "not understood" in mystery[0] and "also in 1 other trial" in mystery[0]
    zoo, epoch, cells = zoo_cells(out)
    assert epoch == 1 and cells.filter(pl.col("width") == 2)["hessian_trace"].is_not_null().all()


def test_a_trial_with_config_json_is_read(tmp_path):
    root = tmp_path / "pub"
    (root / "config.json").parent.mkdir()
    (root / "config.json").write_text("{}")  # the zoo root's own config is not a trial
    nested = {"model": {"type": "Resnet18_width", "width": 4, "o_dim": 10}, "training": {"batchsize": 64},
              "seed": 0}
    bare_trial(root, "nested", params_text=json.dumps(nested), config="config.json")
    report = import_zoo(root, tmp_path / "zoo")
    assert report.trials == 1 and report.imported == 1 and report.problems == ()
    assert Zoo.open(tmp_path / "zoo").catalog["model_id"].unique().to_list() == ["width4-batch_size64-s0"]


def test_non_finite_values_are_null_and_reported_and_the_overview_draws(tmp_path, monkeypatch):
    root = tmp_path / "pub"
    lines = [{"train_loss": 2.0, "train_acc": 0.1, "test_loss": 2.0, "test_acc": 0.1},
             {"train_loss": 1.0, "train_acc": 0.5, "test_loss": 1.2, "test_acc": float("nan"),
              "log_hessian_trace_train": float("inf"), "curve_mc_train_error": -1.0},
             {"train_loss": float("inf"), "train_acc": 0.5, "test_loss": 1.2, "test_acc": 0.4,
              "log_hessian_trace_train": 1.0}]
    bare_trial(root, "diverged", lines=lines)
    bare_trial(root, "fine", params={"model::width": 4})
    assert "Infinity" in (next(root.glob("*diverged*")) / "result.json").read_text()  # as Python's json writes it
    report = import_zoo(root, tmp_path / "zoo")
    one_line_each(report, "diverged_2024-05-01_12-00-00/result.json line 2: skipped (train_loss not finite)",
                  "result.json line 1: test_acc not finite — stored as null",
                  "result.json line 1: log_hessian_trace_train not finite — stored as null")
    zoo = Zoo.open(tmp_path / "zoo")
    diverged = zoo.catalog.filter(pl.col("width") == 2).sort("epoch")
    assert diverged["epoch"].to_list() == [0, 1] and diverged["test_acc"].to_list() == [0.1, None]
    m = read_metrics(tmp_path / "zoo").filter(pl.col("metric") == "hessian_trace_hutchinson")
    assert m["value"].to_list() == [None] and "not finite" in m["error"][0]
    for col in ("train_loss", "train_acc", "test_loss", "test_acc"):
        assert zoo.catalog[col].drop_nulls().is_finite().all()
    monkeypatch.setenv("PHASEZOO_ZOO", str(tmp_path / "zoo"))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception


def test_overview_draws_a_catalog_with_inf_nan_and_null(imported, tmp_path, monkeypatch):
    import shutil

    out, _ = imported
    zoo = tmp_path / "zoo"
    shutil.copytree(out, zoo)
    cat = pl.read_parquet(zoo / "catalog.parquet")
    at2 = pl.col("epoch") == 2
    cat = cat.with_columns(
        train_loss=pl.when(at2 & (pl.col("model_id") == "width2-batch_size032-s0")).then(float("inf"))
        .when(at2 & (pl.col("model_id") == "width4-batch_size032-s0")).then(float("nan")).otherwise("train_loss"),
        test_acc=pl.when(at2 & (pl.col("model_id") == "width4-batch_size128-s0")).then(float("-inf"))
        .when(at2 & (pl.col("model_id") == "width2-batch_size128-s0")).then(None).otherwise("test_acc"))
    cat.write_parquet(zoo / "catalog.parquet")
    monkeypatch.setenv("PHASEZOO_ZOO", str(zoo))
    at = AppTest.from_file(APP, default_timeout=60).run()
    assert not at.exception, at.exception
    assert any("non-finite values" in w.value.lower() for w in at.warning)
    assert {"overview_test_acc", "overview_train_loss"} <= {c.key for c in at.get("plotly_chart")}


@pytest.mark.parametrize("field, text, says", [
    ("model::width", "1e999", "model::width = inf is not a finite number"),
    ("model::width", str(10**12), "model::width = 1e+12 is out of range (1 to 4096)"),
    ("model::width", "2.5", "model::width = 2.5 is not a whole number"),
    ("training::batchsize", "-8", "training::batchsize = -8 is out of range"),
    ("seed", '"zero"', "seed = 'zero' is not a number"),
    ("optim::lr", "NaN", "optim::lr = nan is not a finite number"),
    ("model::o_dim", "100", "model::o_dim = 100 but task cifar10 has 10 classes"),
])
def test_absurd_knob_values_skip_their_trial_only(tmp_path, field, text, says):
    root = tmp_path / "pub"
    bare_trial(root, "good")
    params = json.dumps({**PARAMS, "seed": 1})[:-1] + f', "{field}": {text}}}'  # the later duplicate key wins
    bare_trial(root, "bad", params_text=params)
    report = import_zoo(root, tmp_path / "zoo")
    assert report.trials == 2 and report.imported == 1
    one_line_each(report, f"bad_2024-05-01_12-00-00/params.json: {says}")


def test_deep_huge_and_malformed_json_skip_their_trial_only(tmp_path):
    root = tmp_path / "pub"
    bare_trial(root, "good")
    bare_trial(root, "deep-params", params_text="[" * 200_000 + "]" * 200_000)
    bare_trial(root, "deep-line", params={"seed": 1}, result_text='{"train_loss": ' + "[" * 200_000 + "\n")
    bare_trial(root, "long-number", params_text=json.dumps(PARAMS).replace('"seed": 0', '"seed": ' + "9" * 50_000))
    bare_trial(root, "list", params_text="[1, 2]")
    bare_trial(root, "big", params_text=json.dumps({**PARAMS, "pad": "x" * (2**20 + 10)}))
    report = import_zoo(root, tmp_path / "zoo")
    assert report.trials == 6 and report.imported == 1
    one_line_each(report, "deep-params_2024-05-01_12-00-00/params.json: is nested deeper than 16 levels",
                  "deep-line_2024-05-01_12-00-00/result.json line 0: skipped (is nested deeper",
                  "deep-line_2024-05-01_12-00-00/result.json: no readable epoch line — trial skipped",
                  "long-number_2024-05-01_12-00-00/params.json: holds a number too long to read",
                  "list_2024-05-01_12-00-00/params.json: holds a JSON list, not an object",
                  "big_2024-05-01_12-00-00/params.json: is 1,048,")


@pytest.mark.slow
def test_fifos_are_refused_without_hanging(published, tmp_path):
    import shutil

    root, _ = published
    src = tmp_path / "pub"
    shutil.copytree(root, src)
    trial = sorted(src.glob("*model_width=4,seed=0,training_batchsize=32_*"))[0]
    (trial / "checkpoint_000002" / "checkpoints").unlink()
    os.mkfifo(trial / "checkpoint_000002" / "checkpoints")  # a reader would wait forever for a writer
    for name, file in (("fifo-params", "params.json"), ("fifo-result", "result.json")):
        d = bare_trial(src, name, params={"seed": 5})
        (d / file).unlink()
        os.mkfifo(d / file)
    r = subprocess.run([sys.executable, "-m", "data.importers.ptmz", str(src), "--out", str(tmp_path / "zoo")],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    fifo = "is not a regular file (a FIFO)"
    assert f"{trial.name}/checkpoint_000002/checkpoints: {fifo} — checkpoint skipped" in r.stderr
    assert "fifo-params_2024-05-01_12-00-00/params.json: is not a regular file (a FIFO) — trial skipped" in r.stderr
    assert "fifo-result_2024-05-01_12-00-00/result.json: is not a regular file (a FIFO) — trial skipped" in r.stderr
    cat = Zoo.open(tmp_path / "zoo").catalog
    fifo_row = cat.filter((pl.col("model_id") == "width4-batch_size032-s0") & (pl.col("epoch") == 2))
    assert fifo_row["checkpoint"][0] is None and cat["model_id"].n_unique() == 9


def _deflated_bomb(path, n_floats):
    """A valid torch.save zip whose tensor entry is deflated: `n_floats` zeros inflate from a few kilobytes."""
    import zipfile

    raw = path.with_suffix(".raw")
    torch.save({"conv1.weight": torch.zeros(n_floats)}, raw)
    with zipfile.ZipFile(raw) as zin, zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED, compresslevel=1) as zout:
        for info in zin.infolist():
            zout.writestr(info.filename, zin.read(info.filename))
    raw.unlink()


def test_a_deflated_checkpoint_bomb_is_refused_before_inflating(published, tmp_path):
    import shutil

    root, _ = published
    src = tmp_path / "pub"
    shutil.copytree(root, src)
    trial = sorted(src.glob("*model_width=4,seed=0,training_batchsize=32_*"))[0]
    bomb = trial / "checkpoint_000002" / "checkpoints"
    _deflated_bomb(bomb, 16 * 2**20)  # 64 MiB of zeros; torch.load would inflate all of it
    assert bomb.stat().st_size < 2**20
    report = import_zoo(src, tmp_path / "zoo")
    one_line_each(report, f"{trial.name}/checkpoint_000002/checkpoints: refused: ")
    cat = Zoo.open(tmp_path / "zoo").catalog.filter(pl.col("model_id") == "width4-batch_size032-s0")
    assert cat.filter(pl.col("epoch") == 0)["checkpoint"][0] is not None  # the trial's other checkpoint stays


def test_trials_of_another_architecture_are_skipped_not_fatal(tmp_path):
    root = tmp_path / "pub"
    bare_trial(root, "r18a")
    bare_trial(root, "r18b", params={"seed": 1})
    bare_trial(root, "r50", params={"seed": 2, "model::type": "Resnet50_width"})
    report = import_zoo(root, tmp_path / "zoo")
    assert report.imported == 2
    one_line_each(report, "r50_2024-05-01_12-00-00: a resnet50_width, not the zoo's resnet18_width — trial skipped")


def test_an_existing_output_is_never_touched(published, tmp_path, monkeypatch):
    import data.importers.ptmz as imp

    root, _ = published
    out = tmp_path / "zoo"
    out.mkdir()
    (out / "catalog.parquet").write_bytes(b"precious")
    with pytest.raises(ImportError_, match="exists"):
        import_zoo(root, out)
    out.rename(tmp_path / "later")  # now the output appears while the import runs
    real = imp._write_trial

    def appear(*a, **k):
        if not out.exists():
            (tmp_path / "later").rename(out)
        return real(*a, **k)
    monkeypatch.setattr(imp, "_write_trial", appear)
    with pytest.raises(ImportError_, match="appeared during the import"):
        import_zoo(root, out)
    assert (out / "catalog.parquet").read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["zoo"]  # no temporary directory left


def test_integer_literals_beyond_the_float_range_are_not_finite(tmp_path):
    root = tmp_path / "pub"
    huge = "1" + "0" * 400  # a valid JSON integer that no float holds
    text = "\n".join([json.dumps({"train_loss": 2.0, "train_acc": 0.1, "test_loss": 2.0, "test_acc": 0.1}),
                      f'{{"train_loss": {huge}, "train_acc": 0.5, "test_loss": 1.0, "test_acc": 0.5}}',
                      f'{{"train_loss": 1.0, "train_acc": {huge}, "test_loss": 1.0, "test_acc": 0.5, '
                      f'"curve_mc_train_error": -{huge}}}'])
    bare_trial(root, "overflow", result_text=text + "\n")
    wide = json.dumps({**PARAMS, "seed": 1})[:-1] + f', "model::width": {huge}}}'
    bare_trial(root, "width-overflow", params_text=wide)
    report = import_zoo(root, tmp_path / "zoo")
    assert report.imported == 1
    one_line_each(report, "overflow_2024-05-01_12-00-00/result.json line 1: skipped (train_loss not finite)",
                  "result.json line 2: train_acc not finite — stored as null",
                  "width-overflow_2024-05-01_12-00-00/params.json: model::width = 1000")
    cat = Zoo.open(tmp_path / "zoo").catalog
    assert cat["epoch"].to_list() == [0, 2] and cat["train_acc"].to_list() == [0.1, None]
    assert read_metrics(tmp_path / "zoo").filter(pl.col("metric") == "mc_bezier")["value"].to_list() == [None]
