"""phasezoo.api: the notebook API, each function against an oracle the project already trusts.

- open_zoo: the zoo's own tables, in their declared schemas; a built-in zoo by name is its directory.
- label_cells: the default zoo's committed phases.parquet (written by `phasezoo phases`), row for row.
- compute_metrics: on a zoo, the runner's rows (on a copy of the tiny zoo); on in-memory models, exactly the
  rows the runner stored for the same models — nothing written anywhere.
- verdict: an nn.Module gets exactly the report of its saved safetensors file.
- the README's "Python API" example runs as written; `import phasezoo` stays torch-free.
Every bad input is one line. The committed zoos are only read (copied to tmp_path before anything writes).
"""
from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys

import polars as pl
import pytest
import torch
from safetensors.torch import save_file

import phasezoo
from analysis.metrics.catalog import get_metric
from analysis.upload.report import Report
from data.zoo.schema import CATALOG, EMBEDDINGS, METRICS
from data.zoo.store import Zoo, ZooError
from phasezoo.api import ApiError, VerdictError, compute_metrics, label_cells, open_zoo, verdict
from tests.conftest import DEFAULT_ZOO, ROOT, private_cache

W16 = "width016-batch_size0016-s1"  # the default zoo's phase-II model with wide margins (tests/test_verdict.py)
CHEAP = ["performance", "weights", "cka_logits_test"]  # model-scope with and without data, and a pair metric


def one_line(e: pytest.ExceptionInfo) -> str:
    text = str(e.value)
    assert text and "\n" not in text, f"not one line: {text!r}"
    return text


@pytest.fixture(scope="module", autouse=True)
def _private_cache(tmp_path_factory):
    yield from private_cache(tmp_path_factory)


@pytest.fixture(scope="module")
def default() -> phasezoo.api.ZooFrames:
    return open_zoo("mnist1d-mlp")


@pytest.fixture(scope="module")
def tiny(tiny_zoo, tmp_path_factory):
    """A private copy of the session's tiny zoo with the runner's rows of CHEAP at its analysis epoch."""
    root = tmp_path_factory.mktemp("api") / "tiny"
    shutil.copytree(tiny_zoo, root)
    rows = compute_metrics(root, metrics=CHEAP, workers=1)
    return root, rows


# ----------------------------------------------------------------------------- open_zoo
def test_open_zoo_by_name_is_the_directory_in_declared_schemas(default):
    assert default.root == DEFAULT_ZOO.resolve() and default.name == "mnist1d-mlp"
    by_path = open_zoo(DEFAULT_ZOO)
    assert by_path.catalog.equals(default.catalog) and by_path.metrics.equals(default.metrics)
    knobs = default.spec.knob_dtypes
    assert default.catalog.schema == pl.Schema({**CATALOG.columns, **knobs})
    assert default.metrics.schema == pl.Schema(METRICS.columns)
    assert default.embeddings.schema == pl.Schema(EMBEDDINGS.columns)
    assert default.phases.equals(pl.read_parquet(DEFAULT_ZOO / "phases.parquet"))
    assert default.metrics.equals(pl.read_parquet(DEFAULT_ZOO / "metrics.parquet"))
    with pytest.raises(dataclasses.FrozenInstanceError):
        default.catalog = None


@pytest.mark.slow
def test_open_zoo_without_optional_tables(tiny):
    frames = open_zoo(tiny[0])
    assert frames.phases is None and frames.catalog.height > 0
    assert set(frames.metrics["metric"]) >= {"train_loss", "stable_rank", "cka_logits_test"}


def test_open_zoo_bad_inputs(tmp_path):
    with pytest.raises(ApiError) as e:
        open_zoo("no-such-zoo")
    assert "no zoo 'no-such-zoo'" in one_line(e) and "mnist1d-mlp" in str(e.value)
    with pytest.raises(ZooError) as e:
        open_zoo(tmp_path)
    assert "spec.toml is missing" in one_line(e)
    with pytest.raises(ApiError) as e:
        label_cells(42)
    assert "got int" in one_line(e)


# ----------------------------------------------------------------------------- label_cells
def test_label_cells_reproduces_the_committed_phases(default):
    for epoch in default.spec.analysis_epochs:
        mine = label_cells(default, epoch)
        assert mine.equals(default.phases.filter(pl.col("epoch") == epoch)), epoch
    assert label_cells(DEFAULT_ZOO).equals(label_cells(default, max(default.spec.analysis_epochs)))


def test_label_cells_threshold_overrides(default):
    base = label_cells(default, 300)
    strict = label_cells(default, 300, thresholds={"train_loss": 1e-6})  # nothing is fitted that well
    assert set(strict["phase"]) <= {"I", "II"} and strict["tau_loss"].unique().to_list() == [1e-6]
    assert (strict["tau_cka"] == base["tau_cka"]).all()  # the others keep their zoo-relative defaults
    with pytest.raises(ApiError) as e:
        label_cells(default, 300, thresholds={"tau": 1.0})
    assert "unknown field(s) ['tau']" in one_line(e)
    with pytest.raises(ApiError) as e:
        label_cells(default, 7)
    assert "no metrics at epoch 7" in one_line(e) and "[150, 300]" in str(e.value)


# ----------------------------------------------------------------------------- compute_metrics
def _models_of(root, ids, epoch):
    zoo = Zoo.open(root)
    return zoo, {mid: zoo.build_model(mid, epoch) for mid in ids}


def _sorted(df: pl.DataFrame) -> pl.DataFrame:
    return df.sort("model_id", "other_id", "metric", "split", "layer", "coord", nulls_last=True)


@pytest.mark.slow
def test_compute_metrics_on_a_zoo_is_the_runner(tiny):
    root, rows = tiny
    zoo = Zoo.open(root)
    epoch = max(zoo.spec.analysis_epochs)
    assert rows.schema == pl.Schema(METRICS.columns) and rows["error"].is_null().all()
    assert set(rows["epoch"]) == {epoch}
    assert rows.height == pl.read_parquet(root / "metrics.parquet").height  # everything stored, nothing else
    n_models = zoo.catalog["model_id"].n_unique()
    assert rows.filter(pl.col("metric") == "test_acc").height == n_models
    assert rows.filter(pl.col("metric") == "cka_logits_test").height == n_models // 2  # one pair per 2-seed cell
    again = compute_metrics(root, metrics=CHEAP, workers=1)  # resumable: nothing recomputed
    assert _sorted(again).equals(_sorted(rows))


@pytest.mark.slow
def test_compute_metrics_on_models_equals_the_runners_rows(tiny):
    root, stored = tiny
    zoo = Zoo.open(root)
    epoch = max(zoo.spec.analysis_epochs)
    ids = sorted(zoo.catalog.filter(pl.col("seed") == 0)["model_id"].unique())[:1]
    cell = sorted(m for m, c in zoo.configs.items() if c.knobs == zoo.configs[ids[0]].knobs)  # its two seeds
    _, models = _models_of(root, cell, epoch)
    before = {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}
    mine = compute_metrics(models, metrics=CHEAP, data=zoo.task_of(cell[0]), epochs=epoch)
    oracle = stored.filter(pl.col("model_id").is_in(cell))
    assert _sorted(mine).equals(_sorted(oracle))
    assert {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()} == before  # nothing written
    # the same data as four tensors: the classes from the model's output width
    t = zoo.task_of(cell[0])
    as_tensors = compute_metrics(models, metrics=CHEAP, data=(t.x_train, t.y_train, t.x_test, t.y_test), epochs=epoch)
    assert _sorted(as_tensors).equals(_sorted(oracle))
    # data-free by default without data; the model itself is not modified (a copy is evaluated)
    model = models[cell[0]].train()
    free = compute_metrics(model)
    assert "stable_rank" in set(free["metric"]) <= {o.name for o in get_metric("weights").outputs}
    assert model.training and set(free["model_id"]) == {"model0"} and set(free["epoch"]) == {0}


@pytest.mark.slow
def test_compute_metrics_bad_inputs(tiny):
    root, _ = tiny
    zoo = Zoo.open(root)
    mid = zoo.catalog["model_id"][0]
    model = zoo.build_model(mid, max(zoo.spec.analysis_epochs))
    t = zoo.task_of(mid)
    cases = [
        (dict(models_or_zoo=model, metrics=["performance"]), "need data"),
        (dict(models_or_zoo=3), "expected an nn.Module, a list of them"),
        (dict(models_or_zoo={"a": model, "b": 3}), "'b' is a int, expected an nn.Module"),
        (dict(models_or_zoo=model, metrics="weights", epochs=[1, 2]), "one int labelling the rows"),
        (dict(models_or_zoo=model, metrics=["performance"], data=(t.x_train, t.y_train[:-1], t.x_test, t.y_test)),
         "train split has x"),
        (dict(models_or_zoo=model, metrics=["performance"], data=(t.x_train, t.y_train + 10, t.x_test, t.y_test)),
         "outside the model's 10 outputs"),
        (dict(models_or_zoo=model, metrics=["performance"], data=(t.x_train[:, :7], t.y_train, t.x_test[:, :7],
                                                                  t.y_test)), "does not take x_train's inputs"),
        (dict(models_or_zoo=model, metrics=["performance"], data={"x_train": t.x_train}), "missing ['y_train'"),
        (dict(models_or_zoo=model, metrics=["cka_logits_test"], data=t), "apply to none of the models"),
        (dict(models_or_zoo=root, metrics="weights", data=t), "a data root directory"),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ApiError) as e:
            compute_metrics(**kwargs)
        assert expected in one_line(e), (expected, str(e.value))
    with pytest.raises(ValueError) as e:  # the registry's own one-line error
        compute_metrics(model, metrics=["no_such_metric"])
    assert "unknown metric 'no_such_metric'" in one_line(e)
    with pytest.raises(ValueError) as e:  # the data root's (data.datasets.root)
        compute_metrics(root, metrics="weights", data=root / "absent")
    assert "does not exist" in one_line(e)


# ----------------------------------------------------------------------------- verdict
@pytest.mark.slow
def test_verdict_of_a_module_is_the_verdict_of_its_saved_file(default, tmp_path):
    """The module is written as the safetensors file `save_file` makes of its state dict — the same bytes,
    so the same SHA-256, which is all the pipeline sees besides the name: the saved file's verdict is then
    the cached report of the module's (computed once: the full verdict takes seconds)."""
    module = default.zoo.build_model(W16, 300)
    mine = verdict(module, zoo=default)  # a private, empty cache (the fixture above): computed here
    assert isinstance(mine, Report) and mine.phase == "II" and mine.zoo == str(DEFAULT_ZOO.resolve())
    assert mine.file == "model.safetensors" and mine.cell["batch_size"].source == "identical zoo model"
    path = tmp_path / "model.safetensors"
    save_file({k: v.contiguous() for k, v in module.state_dict().items()}, str(path))
    assert mine.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()
    assert verdict(path, zoo=DEFAULT_ZOO) == mine
    assert verdict(module.state_dict(), zoo=[DEFAULT_ZOO]) == mine
    # the zoo's own task data given as tensors: measured on them in place of the zoo's, the same numbers
    t = default.zoo.task
    given = verdict(module.state_dict(), zoo=default, data=(t.x_train, t.y_train, t.x_test, t.y_test))
    assert given.phase == mine.phase and given.cell == mine.cell
    assert sorted(map(repr, given.metrics)) == sorted(map(repr, mine.metrics)) and len(given.metrics) > 10


def test_verdict_bad_inputs(tmp_path, default):
    bad = tmp_path / "garbage.safetensors"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(VerdictError) as e:
        verdict(bad, zoo=default)
    assert one_line(e).startswith("garbage.safetensors:")
    cases = [(42, "expected an nn.Module, a state dict or a checkpoint path, got int"),
             ({"w": [1, 2]}, "entry 'w' is a list, expected a tensor"),
             ({}, "the state dict is empty")]
    for item, expected in cases:
        with pytest.raises(ApiError) as e:
            verdict(item, zoo=default)
        assert expected in one_line(e)
    with pytest.raises(ApiError) as e:
        verdict(torch.nn.Linear(2, 2), zoo=default, data=(1, 2, 3, 4))
    assert "data: x_train is a int, expected a torch.Tensor" in one_line(e)
    with pytest.raises(ValueError) as e:
        verdict(torch.nn.Linear(2, 2), zoo=default, data=tmp_path / "absent")
    assert "does not exist" in one_line(e)


# ----------------------------------------------------------------------------- the README, the package
def readme_example() -> str:
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Python API\n", 1)[1].split("\n## ", 1)[0]
    [code] = re.findall(r"```python\n(.*?)```", section, re.S)
    return code


def test_readme_example_runs(capsys):
    exec(compile(readme_example(), "README.md#python-api", "exec"), {})
    out = capsys.readouterr().out
    assert "IV-B" in out and "stable_rank" in out


def test_the_package_exports_the_api_lazily():
    assert phasezoo.open_zoo is open_zoo and phasezoo.verdict is verdict and "label_cells" in dir(phasezoo)
    with pytest.raises(AttributeError):
        phasezoo.no_such_name  # noqa: B018
    r = subprocess.run([sys.executable, "-c", "import sys, phasezoo; print('torch' in sys.modules)"],
                       capture_output=True, text=True, cwd=ROOT)
    assert r.stdout.strip() == "False", r.stderr
