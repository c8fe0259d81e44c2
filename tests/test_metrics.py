"""The registry's contract (every metric, on a tiny zoo) and the runner: resume, failures, bad input."""
import shutil
import subprocess
import sys

import polars as pl
import pytest
import torch
from safetensors.torch import save_file

from analysis.metrics.catalog import get_metric, list_metrics
from analysis.metrics.registry import SCOPES, MetricError, ModelInput
from analysis.runner.run import Task, cell_pairs, compute, resolve_metrics, run
from data.zoo.schema import METRICS
from data.zoo.store import Zoo, read_metrics
from tests.conftest import ROOT

FAST = {"hessian": dict(hutchinson_probes=10, slq_probes=2, slq_steps=20, max_iter=40),
        "mc_bezier": dict(epochs=2), "transfer": dict(probe_epochs=3, finetune_epochs=2)}


def fast(m):
    return m.with_params(**FAST.get(m.name, {}))


@pytest.fixture(scope="module")
def zoo(tiny_zoo) -> Zoo:
    return Zoo.open(tiny_zoo)


def inputs(zoo, *ids, epoch=3):
    """As the runner builds them: each model with its stored checkpoints (for averaging over epochs) and
    its logged training curve."""
    stored = tuple(sorted(zoo.checkpoints()["epoch"].unique()))
    return [ModelInput(i, zoo.build_model(i, epoch), zoo.task_of(i), epoch, lambda e, i=i: zoo.build_model(i, e),
                       stored, zoo.catalog.filter(pl.col("model_id") == i).sort("epoch")) for i in ids]


# (zoo fixture, two seeds of one cell, the epoch) per task kind
KIND_ZOOS = {"classification": ("tiny_zoo", ("width16-batch_size16-s0", "width16-batch_size16-s1"), 3),
             "sequence": ("tiny_seq_zoo", ("train_fraction0.9-lr0.03-s0", "train_fraction0.9-lr0.03-s1"), 30),
             "regression": ("tiny_pinn_zoo", ("beta30.0-lr0.01-s0", "beta30.0-lr0.01-s1"), 20)}


# The sequence and regression zoos take ~10 s each to train: their kinds are `slow` (not in `make test-fast`).
@pytest.mark.parametrize("name,kind", [pytest.param(m.name, k, marks=() if k == "classification" else pytest.mark.slow)
                                       for m in list_metrics() for k in sorted(m.kinds)])
def test_every_metric_contract(request, name, kind):
    """Runs on a tiny zoo of each task kind it declares, emits only its declared outputs, finite values, and
    is deterministic."""
    fixture, pair, epoch = KIND_ZOOS[kind]
    zoo = Zoo.open(request.getfixturevalue(fixture))
    metric = fast(get_metric(name))
    if not metric.applies(zoo.build_model(pair[0], epoch)):
        pytest.skip(f"{name} does not apply to the {zoo.spec.arch} of the {kind} zoo")
    ids = pair[: 1 if metric.scope == "model" else 2]
    first = metric(*inputs(zoo, *ids, epoch=epoch))
    assert first, f"{name} emitted nothing"
    declared = {o.name for o in metric.outputs}
    assert {v.metric for v in first} <= declared
    assert all(torch.isfinite(torch.tensor(v.value)) for v in first)
    assert all(v.stderr is None or v.stderr >= 0 for v in first)
    assert first == metric(*inputs(zoo, *ids, epoch=epoch))  # deterministic under its seed
    rows = pl.DataFrame([{"model_id": ids[0], "other_id": None, "epoch": epoch, "metric": v.metric, "split": v.split,
                          "layer": v.layer, "coord": v.coord, "value": v.value, "stderr": v.stderr,
                          "params_hash": metric.params_hash, "error": None} for v in first], schema=METRICS.columns)
    METRICS.validate(rows)


def test_registry_declarations():
    for m in list_metrics():
        assert m.scope in SCOPES and m.outputs and m.doc
        assert all(o.sign for o in m.outputs)
    assert {o.role for m in list_metrics() for o in m.outputs} >= {"fit", "sharpness", "connectivity", "similarity"}
    h = get_metric("hessian")
    assert h.with_params(k=5).params_hash != h.params_hash
    with pytest.raises(MetricError, match="unknown parameter"):
        h.with_params(nope=1)
    with pytest.raises(MetricError, match="unknown metric 'hessain'.*available"):
        get_metric("hessain")
    assert [m.name for m in resolve_metrics(["cka_*"])] == ["cka_logits_test", "cka_softmax_mixup"]
    exact = get_metric("hessian_trace_exact")
    assert exact.applies(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2)))
    assert not exact.applies(torch.nn.Sequential(torch.nn.Linear(2, 3), torch.nn.Tanh(), torch.nn.Linear(3, 2)))


def test_hessian_values_are_consistent(zoo):
    (m,) = inputs(zoo, "width16-batch_size64-s0")
    vals = fast(get_metric("hessian"))(m)
    by = lambda name, split: [v for v in vals if v.metric == name and v.split == split]
    for split in ("train", "test"):
        top = [v.value for v in by("hessian_top_eigenvalue", split)]
        assert top == sorted(top, reverse=True) and top[0] > 0
        pp = by("hessian_trace_hutchpp", split)[0]
        hu = by("hessian_trace_hutchinson", split)[0]
        assert abs(pp.value - hu.value) < 4 * (pp.stderr + hu.stderr)
        (exact,) = [v for v in get_metric("hessian_trace_exact")(m) if v.split == split]
        assert abs(pp.value - exact.value) < 4 * pp.stderr and abs(hu.value - exact.value) < 4 * hu.stderr
        esd = by("hessian_esd", split)
        grid = torch.tensor([v.coord for v in esd])
        dens = torch.tensor([v.value for v in esd])
        assert torch.trapezoid(dens, grid).item() == pytest.approx(1.0, abs=0.01)


def test_cell_pairs(zoo):
    pairs = cell_pairs(zoo, zoo.catalog["model_id"].unique().to_list())
    assert len(pairs) == 6  # 6 cells × C(2, 2)
    assert all(a.rsplit("-", 1)[0] == b.rsplit("-", 1)[0] for a, b in pairs)


@pytest.fixture()
def zoo_copy(tiny_zoo, tmp_path):
    shutil.copytree(tiny_zoo, tmp_path / "zoo")
    return tmp_path / "zoo"


@pytest.mark.slow
def test_runner_resume_and_new_parameters(zoo_copy):
    metrics = [fast(get_metric(n)) for n in ("performance", "weights", "cka_logits_test", "mc_linear")]
    rep = run(zoo_copy, metrics, [3], models="width16*", workers=2, progress=False, flush_every=0)
    table = read_metrics(zoo_copy)
    assert rep.failures == 0 and rep.tasks == 2 * 2 + 2 * 1  # 4 models, 2 cells' pairs
    assert table.height == rep.rows and table["error"].null_count() == table.height
    assert set(table["metric"]) >= {"train_loss", "alpha", "cka_logits_test", "mc_linear", "mc_linear_error"}
    pairs = table.filter(pl.col("metric") == "mc_linear")
    assert pairs.height == 2 and pairs["other_id"].null_count() == 0
    # rerun: nothing to do, nothing lost
    again = run(zoo_copy, metrics, [3], models="width16*", workers=1, progress=False)
    assert again.tasks == 0 and read_metrics(zoo_copy).equals(table)
    # other parameters (or a new version) are recomputed and replace that metric's rows for those units, so
    # readers, which aggregate every row of an output, never mix two computations; other metrics stay
    new = get_metric("mc_linear").with_params(points=3)
    run(zoo_copy, [new], [3], models="width16*", workers=1, progress=False)
    after = read_metrics(zoo_copy)
    mc_outputs = [o.name for o in new.outputs]
    old_mc = table.filter(pl.col("metric").is_in(mc_outputs))
    assert after.height == table.height - old_mc.height + 2 * (2 + 2 * 3)
    assert set(after.filter(pl.col("metric").is_in(mc_outputs))["params_hash"]) == {new.params_hash}
    rest = table.filter(~pl.col("metric").is_in(mc_outputs))
    assert after.join(rest, on=list(table.columns), how="semi", nulls_equal=True).height == rest.height


@pytest.mark.slow
def test_failures_are_recorded_and_the_rest_computed(zoo_copy):
    zoo = Zoo.open(zoo_copy)
    ok_id, nan_id, broken_id = "width16-batch_size16-s0", "width16-batch_size16-s1", "width16-batch_size64-s0"
    sd = zoo.load_state_dict(nan_id, 3)
    sd["1.weight"][0, 0] = float("nan")
    save_file(sd, str(zoo_copy / zoo.catalog.filter((pl.col("model_id") == nan_id) & (pl.col("epoch") == 3))["checkpoint"][0]))
    (zoo_copy / zoo.catalog.filter((pl.col("model_id") == broken_id) & (pl.col("epoch") == 3))["checkpoint"][0]).write_bytes(b"x")
    metrics = [get_metric("performance"), get_metric("weights")]
    rep = run(zoo_copy, metrics, [3], models="width16*", workers=1, progress=False)
    table = read_metrics(zoo_copy)
    errors = table.filter(pl.col("error").is_not_null())
    assert rep.failures == errors.height == 4  # (nan, broken) × (performance, weights)
    msg = dict(zip(errors["model_id"] + "/" + errors["metric"], errors["error"]))
    assert "non-finite" in msg[f"{nan_id}/performance"] and nan_id in msg[f"{nan_id}/performance"]
    assert "cannot read checkpoint" in msg[f"{broken_id}/weights"]
    assert table.filter((pl.col("model_id") == ok_id) & (pl.col("metric") == "train_acc")).height == 1
    # a pair metric on models of different widths, and an empty batch set
    pair = Task("pair", 3, ("width04-batch_size16-s0", ok_id), (get_metric("mc_linear"),), 1.0)
    (row,) = compute(str(zoo_copy), pair)
    assert "same architecture" in row["error"] and "mc_linear on width04-batch_size16-s0 & " in row["error"]
    empty = Task("model", 3, (ok_id,), (get_metric("hessian").with_params(n_batches=0),), 1.0)
    (row,) = compute(str(zoo_copy), empty)
    assert "empty batch set" in row["error"]


@pytest.mark.slow
def test_cli(tiny_zoo, tmp_path):
    env = {"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}  # no PYTHONPATH: the project is installed
    r = subprocess.run([sys.executable, "-m", "analysis.runner.run", str(tiny_zoo), "--metrics", "nope"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and "unknown metric 'nope'" in r.stderr
    r = subprocess.run([sys.executable, "-m", "analysis.runner.run", str(tiny_zoo), "--epochs", "7"],
                       capture_output=True, text=True, env=env, cwd=ROOT)
    assert r.returncode == 2 and "no checkpoints at epoch(s) [7]" in r.stderr
    r = subprocess.run([sys.executable, "-m", "analysis.runner.run", "--list"], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    assert r.returncode == 0 and "mc_bezier" in r.stdout and "hessian_layers" in r.stdout
