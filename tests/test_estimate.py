"""Cost estimates before a run: the generator's (every group's steps timed) and the metric runner's (each
metric measured once, its rows kept), their record in costs.json, and the upload page's prediction."""
import json
import shutil

import polars as pl
import pytest

from analysis.run import COSTS_FILE, predicted_seconds, read_costs, resolve_metrics, run
from analysis.verdict import upload_estimate
from data.generate import generate, plan_groups
from data.spec import load_spec
from data.store import Zoo, read_metrics

METRICS = ["performance", "weights", "cka_logits_test", "mc_linear"]


def test_generation_estimate_counts_every_step_and_trains_nothing(tiny_spec, tmp_path):
    spec = load_spec(tiny_spec)
    rep = generate(tiny_spec, tmp_path / "zoo", workers=2, progress=False, estimate_only=True)
    est = rep.estimate
    assert rep.trained == 0 and not list((tmp_path / "zoo").rglob("*.safetensors"))
    assert est.models == spec.n_models and est.epochs == spec.training["epochs"]
    assert est.steps == sum(g.steps for g in plan_groups(spec, spec.models()))
    assert 0 < est.step_seconds[0] <= est.step_seconds[1] and est.seconds > 0 and est.workers == 2
    assert f"{spec.n_models} models × {spec.training['epochs']} epochs" in str(est)


def test_metric_estimate_keeps_its_rows_and_records_costs(tiny_zoo, tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, root)
    (root / "metrics.parquet").unlink(missing_ok=True)
    rep = run(root, resolve_metrics(METRICS), workers=1, progress=False, estimate_only=True)
    measured = rep.estimate.per_metric
    assert set(measured) == set(METRICS) and all(s > 0 for s, _, _ in measured.values())
    rows = read_metrics(root)
    assert set(rows["metric"].unique()) >= {"train_loss", "cka_logits_test", "mc_linear"}  # measured rows kept
    costs = read_costs(root)
    assert set(costs) == set(METRICS) and costs["mc_linear"]["n_params"] > 0
    # the rest of the run computes what is left, and nothing twice
    full = run(root, resolve_metrics(METRICS), workers=2, progress=False)
    again = read_metrics(root)
    assert again.select("model_id", "other_id", "epoch", "metric", "split", "layer", "coord").is_unique().all()
    assert full.tasks > 0 and again.height > rows.height
    # on a complete zoo, --estimate measures a full recompute and writes no rows
    before = read_metrics(root)
    rep2 = run(root, resolve_metrics(METRICS), workers=1, progress=False, estimate_only=True)
    assert rep2.estimate is not None and read_metrics(root).equals(before)


def test_predicted_seconds_scale_with_parameters():
    costs = {"hessian": {"seconds": 2.0, "n_params": 1000}}
    assert predicted_seconds(costs, "hessian", 500) == pytest.approx(1.0)
    assert predicted_seconds(costs, "mc_bezier", 500) is None


def test_upload_estimate_needs_measured_costs(tiny_zoo, tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, root)
    zoo = Zoo.open(root)
    assert upload_estimate(zoo) is None
    names = ["performance", "weights", "hessian", "cka_logits_test", "mc_linear", "mc_bezier"]
    (root / COSTS_FILE).write_text(json.dumps({n: {"seconds": 1.0, "n_params": 1000, "host": "h"} for n in names}))
    lo, hi, host = upload_estimate(zoo)
    sizes = zoo.catalog["n_params"]
    per = lambda n: 3 * n / 1000 + len(zoo.spec.seeds) * 3 * n / 1000  # 3 own + 3 pair metrics per seed pair
    assert lo == pytest.approx(per(sizes.min())) and hi == pytest.approx(per(sizes.max())) and host == "h"
    assert pl.Series(sizes).min() < pl.Series(sizes).max()
