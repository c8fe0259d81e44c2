"""Cost estimates before a run: the generator's (every group's steps timed) and the metric runner's (each
metric measured once, its rows kept), their record in costs.json, and the upload page's prediction."""
import json
import shutil

import polars as pl
import pytest

from analysis.runner.costs import COSTS_FILE, predicted_seconds, read_costs
from analysis.runner.run import resolve_metrics, run
from analysis.upload.verdict import upload_estimate
from data.training.generate import generate, plan_groups
from data.zoo.spec import load_spec
from data.zoo.store import Zoo, read_metrics

METRICS = ["performance", "weights", "cka_logits_test", "mc_linear"]


def test_generation_estimate_counts_every_step_and_trains_nothing(tiny_spec, tmp_path):
    spec = load_spec(tiny_spec)
    rep = generate(tiny_spec, tmp_path / "zoo", workers=2, progress=False, estimate_only=True)
    est = rep.estimate
    assert rep.trained == 0 and not (tmp_path / "zoo").exists()  # an estimate writes nothing
    assert est.models == spec.n_models and est.epochs == spec.training["epochs"]
    assert est.steps == sum(g.steps for g in plan_groups(spec, spec.models()))
    assert 0 < est.step_seconds[0] <= est.step_seconds[1] and est.seconds > 0 and est.workers == 2
    assert f"{spec.n_models} models × {spec.training['epochs']} epochs" in str(est)


@pytest.mark.slow
def test_metric_estimate_records_costs_and_its_rows_count_once(tiny_zoo, tmp_path):
    root, reference = tmp_path / "zoo", tmp_path / "reference"
    for d in (root, reference):
        shutil.copytree(tiny_zoo, d)
        (d / "metrics.parquet").unlink(missing_ok=True)
    # --estimate: each metric measured once, costs recorded, no rows written
    rep = run(root, resolve_metrics(METRICS), workers=1, progress=False, estimate_only=True)
    measured = rep.estimate.per_metric
    assert set(measured) == set(METRICS) and all(s > 0 for pts in measured.values() for s, _, _ in pts)
    sizes = Zoo.open(root).catalog["n_params"]
    assert all(len(pts) == 2 and pts[0][2] == sizes.max() and pts[1][2] == sizes.min() for pts in measured.values())
    assert rep.estimate.seconds > 0 and read_metrics(root).is_empty()
    costs = read_costs(root)
    assert set(costs) == set(METRICS) and [n for n, _ in costs["mc_linear"]["points"]] == [sizes.min(), sizes.max()]
    # a run measures first (keeping those rows), then computes the rest: the same rows as the estimate-free
    # reference, each once
    run(root, resolve_metrics(METRICS), workers=2, progress=False)
    run(reference, resolve_metrics(METRICS), workers=2, progress=False)
    key = ["model_id", "other_id", "epoch", "metric", "split", "layer", "coord"]
    ours, theirs = read_metrics(root).sort(key, nulls_last=True), read_metrics(reference).sort(key, nulls_last=True)
    assert ours.select(key).is_unique().all() and ours.equals(theirs)


def test_predicted_seconds_interpolate_in_parameters():
    costs = {"hessian": {"points": [[100, 0.5], [1000, 2.3]]}, "cka": {"points": [[1000, 2.0]]}}
    assert predicted_seconds(costs, "hessian", 550) == pytest.approx(1.4)  # on the line
    assert predicted_seconds(costs, "hessian", 10) == pytest.approx(0.5)  # never below the cheapest
    assert predicted_seconds(costs, "hessian", 2000) == pytest.approx(4.3)
    assert predicted_seconds(costs, "cka", 500) == pytest.approx(1.0)  # one point: proportional
    assert predicted_seconds(costs, "mc_bezier", 500) is None


def test_upload_estimate_needs_measured_costs(tiny_zoo, tmp_path):
    root = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, root)
    zoo = Zoo.open(root)
    assert upload_estimate(zoo) is None
    names = ["performance", "weights", "hessian", "cka_logits_test", "mc_linear", "mc_bezier"]
    (root / COSTS_FILE).write_text(json.dumps({n: {"points": [[1000, 1.0]], "host": "h"} for n in names}))
    lo, hi, host = upload_estimate(zoo)
    sizes = zoo.catalog["n_params"]
    per = lambda n: 3 * n / 1000 + len(zoo.spec.seeds) * 3 * n / 1000  # 3 own + 3 pair metrics per seed pair
    assert lo == pytest.approx(per(sizes.min())) and hi == pytest.approx(per(sizes.max())) and host == "h"
    assert pl.Series(sizes).min() < pl.Series(sizes).max()
