"""A published zoo, measured (issue 16 §3): an imported fixture in the exact Phase-Transition Model Zoo layout
(tests/test_import_ptmz.py's builder: ResNet-18 of widths 2 and 4, batch size 32, seeds 0 and 1 — 2 cells × 2
seeds) and a tiny CIFAR-10 root in torchvision's layout (tests/test_datasets.py's Python-2 batches, 8 images a
batch) plus a tiny SVHN as the transfer target → import with --data-root → every metric that applies runs on
the real data → the phases read the recomputed values and say so, the published ones kept beside them → the
verdict of a perturbed zoo model is full (cell, quantities, CKA, mc). Bad data roots: one line, zoo untouched.

The probe sets and training budgets are made tiny through the zoo's own [metrics.<name>] tables (the mechanism
a real zoo uses). A Hessian-vector product of a ResNet-18 costs ~0.1 s on one CPU thread whatever its width (the
backward pass's overhead dominates), so hessian_layers (Hutch++ per parameter group: ~25 s a model even so) runs on
one model; every other metric on all four. The file takes about a minute and a half on one core."""
from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import polars as pl
import pytest
import torch
from safetensors.torch import save_file
from streamlit.testing.v1 import AppTest

from analysis.runner.run import main as run_main
from analysis.runner.run import resolve_metrics, run, supersedes
from analysis.taxonomy.cells import ANNOTATED, QuantitySource, quantity_sources, unit_values
from analysis.taxonomy.phases import zoo_cells
from analysis.upload.report import Report
from analysis.upload.verdict import analyse, missing_data, task_data
from data.datasets import DatasetError
from data.importers.ptmz import PARAMS_HASH, ImportError_, import_zoo
from data.zoo.spec import data_root_for
from data.zoo.store import METRICS_FILE, Zoo, read_metrics
from tests.conftest import ROOT
from tests.test_datasets import _py2, make_svhn
from tests.test_import_ptmz import LANDSCAPE, write_trial

pytestmark = pytest.mark.slow
PER_BATCH = 8  # CIFAR images per batch file: 5 × 8 training images, 8 test images
# Tiny budgets for the fixture (docs/import.md, "Measuring a published zoo", gives the published defaults).
CHEAP = """
[metrics.hessian]
splits = ["train"]
n_batches = 1
batch_size = 4
k = 1
max_iter = 5
sketch = 2
hutchinson_probes = 2
slq_probes = 1
slq_steps = 3
rtol = 3.0

[metrics.hessian_layers]
n_batches = 1
batch_size = 4
max_iter = 3
sketch = 1
rtol = 1.0

[metrics.mc_bezier]
epochs = 2

[metrics.cka_softmax_mixup]
n = 32

[metrics.prune]
finetune_epochs = 1

[metrics.transfer]
target = "svhn"
n_train = 5
probe_epochs = 2
finetune_epochs = 1
"""
# every registered metric that applies to a ResNet on a classification task (not average_aligned: weight
# matching for MLPs only; not hessian_trace_exact: ReLU MLPs only; not grokking: sequence tasks only)
APPLIES = {"performance", "weights", "hessian", "hessian_layers", "cka_logits_test", "cka_softmax_mixup",
           "mc_linear", "mc_bezier", "ensemble", "average_seeds", "average_epochs", "prune", "transfer"}


def make_cifar10(root: Path, rng: np.random.Generator) -> None:
    """torchvision's cifar-10-batches-py/, written as the authors' Python 2 pickles."""
    d = root / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        x = rng.integers(0, 256, (PER_BATCH, 3072), dtype=np.uint8)
        y = [int(v) for v in rng.integers(0, 10, PER_BATCH)]
        (d / name).write_bytes(_py2({b"batch_label": name.encode(), b"labels": y, b"data": x,
                                     b"filenames": [f"img_{k}.png".encode() for k in range(PER_BATCH)]}))
    (d / "batches.meta").write_bytes(_py2({b"num_cases_per_batch": 10000, b"num_vis": 3072,
                                           b"label_names": [f"c{k}".encode() for k in range(10)]}))


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("published_measured")
    data = base / "data"
    make_cifar10(data, np.random.default_rng(0))
    make_svhn(data / "svhn")
    src = base / "resnet18_cifar10"
    src.mkdir()
    for width in (2, 4):
        for seed in (0, 1):
            write_trial(src, width, 32, seed, landscape={**LANDSCAPE, "curve_mc_train_error": -2.5 * width})
    zoo = base / "zoo"
    report = import_zoo(src, zoo, "cifar10", data_root=data)
    assert report.imported == 4 and not report.problems
    with open(zoo / "spec.toml", "a") as f:  # the zoo's own metric parameters: tiny budgets for the test
        f.write(CHEAP)
    annotated = read_metrics(zoo)
    every = [m for m in resolve_metrics(None) if m.name != "hessian_layers"]
    rep = run(zoo, every, workers=1, progress=False, flush_every=0.0)
    layers = run(zoo, resolve_metrics(["hessian_layers"]), models="width2-batch_size32-s0", workers=1,
                 progress=False, flush_every=0.0)
    rep = replace(rep, failures=rep.failures + layers.failures)
    return {"base": base, "data": data, "src": src, "zoo": zoo, "annotated": annotated, "report": rep}


def test_import_records_the_checked_data_root(world):
    spec = Zoo.open(world["zoo"]).spec
    assert spec.data_root == str(world["data"].resolve())
    # precedence: the command's flag, else the spec's (relative: to the zoo directory), else none ($PHASEZOO_DATA)
    assert data_root_for(spec, world["zoo"], "/flag") == Path("/flag")
    assert data_root_for(spec, world["zoo"]) == world["data"].resolve()
    assert data_root_for(replace(spec, data_root="../data"), world["zoo"]) == world["zoo"] / "../data"
    assert data_root_for(replace(spec, data_root=""), world["zoo"]) is None


def test_every_applicable_metric_ran_on_the_images(world):
    rep = world["report"]
    m = read_metrics(world["zoo"])
    mine = m.filter(~pl.col("params_hash").is_in(list(ANNOTATED)))
    assert rep.failures == 0, mine.filter(pl.col("error").is_not_null())["error"].to_list()
    family = mine.select(supersedes()[3].alias("family"))["family"].unique().to_list()
    assert set(family) == APPLIES
    # each of the 4 models has its own rows, each of the 2 cells' seed pairs its pair rows, each cell its ensemble
    per = lambda metric: mine.filter(pl.col("metric") == metric)
    assert per("train_loss")["model_id"].n_unique() == 4
    assert per("hessian_trace_hutchinson").filter(pl.col("split") == "train").height == 4
    assert per("hessian_layer_trace")["layer"].n_unique() > 20  # every parameter group of the ResNet
    assert per("mc_bezier").filter(pl.col("split") == "train").select("model_id", "other_id").n_unique() == 2
    assert per("cka_logits_test").height == 2 and per("ensemble_test_acc").height == 2
    assert per("transfer_probe_test_acc").height == 4  # on the SVHN root beside CIFAR-10
    # eval mode, the real inputs: performance's train loss is the cross-entropy of the stored model on the
    # normalised CIFAR-10 arrays (recomputed here, an oracle independent of the runner)
    zoo = Zoo.open(world["zoo"])
    model = zoo.build_model("width2-batch_size32-s0", 2)
    task = zoo.task
    assert task.x_train.shape == (5 * PER_BATCH, 3, 32, 32) and not model.training
    with torch.no_grad():
        want = torch.nn.functional.cross_entropy(model(task.x_train), task.y_train).item()
    got = per("train_loss").filter(pl.col("model_id") == "width2-batch_size32-s0")["value"].item()
    assert got == pytest.approx(want, rel=1e-5)
    # the published values are kept beside the recomputed ones, unchanged
    kept = m.filter(pl.col("params_hash") == PARAMS_HASH)
    assert kept.sort(kept.columns).equals(world["annotated"].sort(kept.columns))


def test_phases_prefer_recomputed_and_say_so(world, monkeypatch):
    zoo = Zoo.open(world["zoo"])
    m = read_metrics(zoo.root)
    at2 = m.filter(pl.col("epoch") == 2)
    u = unit_values(at2)
    loss = u.filter(pl.col("quantity") == "train_loss")
    assert loss.height == 4 and set(loss["source"]) == {"recomputed"}
    recomputed = at2.filter((pl.col("metric") == "train_loss") & (pl.col("params_hash") != PARAMS_HASH))
    assert sorted(loss["value"]) == sorted(recomputed["value"])
    # mc: the two recomputed pairs stand for all four models (a pair's second seed is not read from the import)
    mc = u.filter(pl.col("quantity") == "mc")
    assert mc.height == 2 and set(mc["source"]) == {"recomputed"} and mc["other_id"].null_count() == 0
    sources = {s.quantity: s for s in quantity_sources(m, zoo.catalog, zoo.spec, 2)}
    for q in ("train_loss", "hessian_trace", "mc", "cka", "mc_linear"):
        assert sources[q].source == "recomputed", sources[q]
    # without the recomputed rows the same quantities come from the import, and say so
    only = world["annotated"]
    before = {s.quantity: s for s in quantity_sources(only, zoo.catalog, zoo.spec, 2)}
    assert before["mc"].source == "annotated" and before["mc"].annotated == 4
    assert before["mc"].words() == "mode connectivity mc (Bézier): annotated (published)"
    assert QuantitySource("train_loss", 3, 1).words() == "train loss: mixed (3 recomputed, 1 annotated)"
    _, _, cells = zoo_cells(zoo.root, 2)
    assert cells.height == 2 and cells["mc"].null_count() == 0 and cells["train_loss"].null_count() == 0
    # the Phase diagram page says it
    monkeypatch.setenv("PHASEZOO_ZOO", str(zoo.root))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/phases.py").run()
    assert not at.exception, at.exception
    caption = next(c.value for c in at.caption if c.value.startswith("Sources of the phase quantities"))
    assert "train loss: recomputed" in caption and "mode connectivity mc (Bézier): recomputed" in caption


def _perturbed(world, tmp_path) -> Path:
    zoo = Zoo.open(world["zoo"])
    state = zoo.load_state_dict("width2-batch_size32-s0", 2)
    g = torch.Generator().manual_seed(0)
    state = {k: (v + 0.05 * v.std().nan_to_num(0) * torch.randn(v.shape, generator=g)
                 if v.is_floating_point() and v.ndim > 1 else v.clone()) for k, v in state.items()}
    path = tmp_path / "mine.safetensors"
    save_file(state, str(path))
    return path


def test_full_verdict_of_a_perturbed_model(world, tmp_path, monkeypatch):
    monkeypatch.delenv("PHASEZOO_DATA", raising=False)
    zoo = Zoo.open(world["zoo"])
    path = _perturbed(world, tmp_path)
    [r] = analyse([path], [zoo], given={"batch_size": 32}, cache=False)
    assert isinstance(r, Report), r
    assert r.zoo == str(zoo.root) and r.placement.identical_to is None
    assert {k: v.grid for k, v in r.cell.items()} == {"width": 2, "batch_size": 32}
    assert r.rule is not None and r.classifier is not None and not r.errors, r.errors
    assert r.rule.train_loss is not None and r.rule.mc is not None and r.rule.cka is not None
    assert r.rule.n_pairs == 2 and r.rule.pairs_with == "zoo seeds"  # against both seeds of its cell
    pairs = {(p.other, p.metric) for p in r.pairs}
    for seed in (0, 1):
        for metric in ("cka_logits_test", "mc_bezier", "mc_linear"):
            assert (f"width2-batch_size32-s{seed}", metric) in pairs
    assert {e.quantity for e in r.evidence} >= {"train_loss", "mc", "cka"}
    assert any(row.metric == "hessian_top_eigenvalue" for row in r.metrics)


def test_without_the_data_the_verdict_is_data_free_and_says_why(world, tmp_path, monkeypatch):
    monkeypatch.delenv("PHASEZOO_DATA", raising=False)
    zoo = Zoo.open(world["zoo"])
    empty = tmp_path / "empty"
    empty.mkdir()
    assert task_data(zoo, empty) is None and task_data(zoo) == str(world["data"].resolve())
    note = missing_data(zoo, empty)
    assert "\n" not in note and "expected cifar-10-batches-py/ or cifar-10-batches-bin/ under" in note
    assert "found an empty directory" in note and "PHASEZOO_DATA" in note
    [r] = analyse([_perturbed(world, tmp_path)], [zoo], given={"batch_size": 32}, cache=False, data_root=empty)
    assert r.zoo == str(zoo.root) and r.rule is None and r.data_free
    assert any("data-free report only" in n and "found an empty directory" in n for n in r.notes)


def _untouched(zoo: Path):
    return (zoo / METRICS_FILE).read_bytes(), (zoo / "spec.toml").read_bytes()


@pytest.mark.parametrize("case", ["missing", "wrong layout"])
def test_bad_data_root_is_one_line_and_touches_nothing(world, tmp_path, case, capsys):
    zoo = tmp_path / "zoo"
    shutil.copytree(world["zoo"], zoo)
    before = _untouched(zoo)
    bad = tmp_path / "nowhere"
    if case == "wrong layout":
        (bad / "cifar-10-batches-py").mkdir(parents=True)
        (bad / "cifar-10-batches-py" / "data_batch_1").write_bytes(b"")
    with pytest.raises(DatasetError) as e:
        run(zoo, resolve_metrics(["performance"]), models="width2*", workers=1, progress=False, data_root=bad,
            flush_every=0.0)
    msg = str(e.value)
    assert "\n" not in msg
    if case == "missing":
        assert msg == f"data root {bad} (the data root given) does not exist"
    else:
        assert "expected cifar-10-batches-py/ with data_batch_1" in msg and "missing data_batch_2" in msg
    # the command line: the same line after "error: ", exit status 2
    assert run_main([str(zoo), "--metrics", "performance", "--quiet", "--data-root", str(bad)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and err.startswith("error: ") and str(bad) in err
    assert _untouched(zoo) == before
    # the importer refuses such a root before reading a trial
    out = tmp_path / "imported"
    with pytest.raises((ImportError_, DatasetError)) as e:
        import_zoo(world["src"], out, "cifar10", data_root=bad)
    assert "\n" not in str(e.value) and not out.exists()


def test_data_free_metrics_need_no_root(world, tmp_path, monkeypatch):
    """A run of data-free metrics only never reads the data: no root needed, nothing refused; a data metric is
    refused in one line; the dashboard's Classify page says what is missing."""
    monkeypatch.delenv("PHASEZOO_DATA", raising=False)
    zoo = tmp_path / "zoo"
    shutil.copytree(world["zoo"], zoo)
    text = (zoo / "spec.toml").read_text()
    (zoo / "spec.toml").write_text("\n".join(ln for ln in text.splitlines() if not ln.startswith("data_root")))
    (zoo / METRICS_FILE).unlink()
    rep = run(zoo, resolve_metrics(["weights"]), models="width2*", workers=1, progress=False, flush_every=0.0)
    assert rep.failures == 0 and rep.tasks == 2 and read_metrics(zoo)["metric"].is_in(["alpha"]).any()
    with pytest.raises(DatasetError, match="no data root: set PHASEZOO_DATA"):
        run(zoo, resolve_metrics(["performance"]), models="width2*", workers=1, progress=False)
    assert Zoo.open(zoo).spec.data_root == ""
    # the Classify page says that the picked zoo's task has no data and what gives the full verdict
    monkeypatch.setenv("PHASEZOO_ZOO", str(zoo))
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=60)
    at.run()
    at.switch_page("views/upload.py").run()
    assert not at.exception, at.exception
    warning = " ".join(w.value for w in at.warning).replace("\\", "")
    assert "task cifar10 has no data here" in warning and "no data root" in warning
    assert "set PHASEZOO_DATA" in warning and "full verdict" in warning
