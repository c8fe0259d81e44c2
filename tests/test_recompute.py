"""Partial recompute (analysis.runner.recompute): after a version bump that changed only some outputs, the zoo ends
up exactly as a full rerun of the metric would leave it, without rerunning the unchanged estimators."""
import dataclasses
import shutil

import polars as pl
import pytest

from analysis.metrics.catalog import get_metric
from analysis.runner.recompute import PARTIALS, plan, recompute
from analysis.runner.run import run, zoo_metric
from data.zoo.store import METRICS_FILE, Zoo, read_metrics

pytestmark = pytest.mark.slow  # both tests share a zoo with the metrics computed (module fixture)

NAMES = ["hessian", "hessian_layers"]
KEY = ["model_id", "epoch", "metric", "split", "layer", "coord"]


@pytest.fixture(scope="module")
def computed(tiny_zoo, tmp_path_factory):
    """A copy of the tiny zoo with both metrics computed by the runner for two models, as the current version."""
    root = tmp_path_factory.mktemp("recompute") / "zoo"
    shutil.copytree(tiny_zoo, root)
    cell = Zoo.open(root).catalog["model_id"].unique().sort()[0].rsplit("-s", 1)[0]  # the smallest models
    run(root, [get_metric(n) for n in NAMES], models=f"{cell}-s*", workers=1, progress=False)
    return root


def hashes(root, name):
    m = zoo_metric(Zoo.open(root), get_metric(name))
    return dataclasses.replace(m, version=PARTIALS[name].from_version).params_hash, m.params_hash


def make_stale(root, tmp_path):
    """The same zoo as if computed by the previous version: old hashes, different values for the changed outputs,
    and one unit that failed under the old version."""
    dst = tmp_path / "zoo"
    shutil.copytree(root, dst)
    t = read_metrics(dst)
    for name in NAMES:
        old, new = hashes(dst, name)
        changed = pl.col("metric").is_in(PARTIALS[name].changed)
        t = t.with_columns(
            value=pl.when((pl.col("params_hash") == new) & changed).then(pl.col("value") * 1.5).otherwise("value"),
            params_hash=pl.when(pl.col("params_hash") == new).then(pl.lit(old)).otherwise("params_hash"))
    old, _ = hashes(dst, "hessian")
    failed = t.filter(pl.col("params_hash") == old).select("model_id", "epoch").unique().sort("model_id").row(0)
    t = t.filter(~((pl.col("params_hash") == old) & (pl.col("model_id") == failed[0])))
    err = {c: None for c in t.columns} | {"model_id": failed[0], "epoch": failed[1], "metric": "hessian",
                                          "params_hash": old, "error": "hessian on it: boom"}
    t = pl.concat([t, pl.DataFrame([err], schema=t.schema)])
    t.write_parquet(dst / METRICS_FILE)
    return dst, failed


def rows(t, name, hash_):
    return t.filter(pl.col("params_hash") == hash_).drop("params_hash").sort(KEY)


def test_recompute_equals_a_full_rerun(computed, tmp_path):
    fresh = read_metrics(computed)
    stale, failed = make_stale(computed, tmp_path)
    before = read_metrics(stale)
    others = before.filter(~pl.col("params_hash").is_in([h for n in NAMES for h in hashes(stale, n)]))
    p = plan(Zoo.open(stale), before, PARTIALS["hessian"])
    assert failed in p.skipped_errors and failed not in p.units and len(p.units) >= 1

    reports = recompute(stale, NAMES, workers=1)
    assert all(not r.failures and r.recomputed == r.units for r in reports)
    after = read_metrics(stale)
    for name in NAMES:
        old, new = hashes(stale, name)
        expect = rows(fresh, name, new)
        if name == "hessian":  # the failed unit keeps its error row under the old hash: the runner redoes it
            expect = expect.filter(pl.col("model_id") != failed[0])
            assert rows(after, name, old)["error"].to_list() == ["hessian on it: boom"]
        else:
            assert rows(after, name, old).is_empty()
        got = rows(after, name, new)
        assert got.select(KEY).equals(expect.select(KEY))  # every output, the carried ones and the recomputed
        assert got["value"].to_list() == pytest.approx(expect["value"].to_list(), rel=1e-9, abs=1e-12)
        se = lambda t: t["stderr"].fill_null(-1.0).to_list()  # the density rows have none
        assert se(got) == pytest.approx(se(expect), rel=1e-9, abs=1e-12)
    kept = after.filter(~pl.col("params_hash").is_in([h for n in NAMES for h in hashes(stale, n)]))
    assert kept.sort(KEY + ["other_id", "params_hash"]).equals(others.sort(KEY + ["other_id", "params_hash"]))
    assert all(r.units == 0 for r in recompute(stale, NAMES, workers=1))  # resumable: nothing left to do


def test_staged_rows_are_merged_later_without_writing_before(computed, tmp_path):
    stale, _ = make_stale(computed, tmp_path)
    before = (stale / METRICS_FILE).read_bytes()
    recompute(stale, ["hessian_layers"], workers=1, stage=tmp_path / "stage", write=False)
    assert (stale / METRICS_FILE).read_bytes() == before  # compute-only never touches the zoo
    assert list((tmp_path / "stage").glob("tiny-hessian_layers-*.parquet"))
    old, new = hashes(stale, "hessian_layers")
    rep = recompute(stale, ["hessian_layers"], workers=1, stage=tmp_path / "stage")[0]
    assert rep.recomputed == rep.units > 0
    after = read_metrics(stale)
    assert after.filter(pl.col("params_hash") == old).is_empty()
    expect = rows(read_metrics(computed), "hessian_layers", new)
    assert rows(after, "hessian_layers", new)["value"].to_list() == pytest.approx(expect["value"].to_list(), rel=1e-9)
