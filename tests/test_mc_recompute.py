"""Rewriting stored mc rows from their stored profiles (analysis.runner.mc_recompute), on a copy of a zoo."""
import shutil

import polars as pl
import pytest

from analysis.kernels.connectivity import mc_from_profile
from analysis.metrics.catalog import get_metric
from analysis.runner.mc_recompute import main, previous_version, recompute_rows, recompute_zoo
from analysis.runner.run import zoo_metric
from data.zoo.schema import METRICS
from data.zoo.store import Zoo, read_metrics
from tests.conftest import DEFAULT_ZOO

T5 = (0.0, 0.25, 0.5, 0.75, 1.0)
QUOTED = (9.85, 0.15, 0.25, 0.40, 0.00)  # stored as mc −4.925, flag 1 by version 1


def unit(prefix, mid, oid, epoch, errors, mc, flag, h):
    """The rows one pair-epoch of a path metric stores (as definitions._path_values)."""
    base = {"model_id": mid, "other_id": oid, "epoch": epoch, "split": "train", "layer": None, "stderr": None,
            "params_hash": h, "error": None}
    rows = [{**base, "metric": prefix, "coord": None, "value": mc},
            {**base, "metric": f"{prefix}_endpoint_dominated", "coord": None, "value": flag}]
    rows += [{**base, "metric": f"{prefix}_error", "coord": t, "value": e} for t, e in zip(T5, errors)]
    rows += [{**base, "metric": f"{prefix}_loss", "coord": t, "value": 0.1 * e} for t, e in zip(T5, errors)]
    return rows


def frame(rows):
    return METRICS.validate(pl.DataFrame(rows, schema=METRICS.columns))


def test_recompute_rows_rewrites_readings_and_carries_the_rest():
    failure = {"model_id": "c", "other_id": "d", "epoch": 1, "metric": "mc_bezier", "split": None, "layer": None,
               "coord": None, "value": None, "stderr": None, "params_hash": "old", "error": "mc_bezier on c & d: boom"}
    other = {"model_id": "a", "other_id": None, "epoch": 1, "metric": "train_loss", "split": "train", "layer": None,
             "coord": None, "value": 0.5, "stderr": None, "params_hash": "perf", "error": None}
    rows = (unit("mc_bezier", "a", "b", 1, QUOTED, -4.925, 1.0, "old")
            + unit("mc_bezier", "a", "b", 2, (10, 20, 40, 20, 10), -30.0, 0.0, "old")  # unchanged by the rule
            + unit("mc_bezier", "e", "f", 1, (5, 5, 5, 5, 5), 0.0, 1.0, "old")  # superseded by the rows below
            + unit("mc_bezier", "e", "f", 1, (6, 6, 6, 6, 6), 0.0, 0.0, "new") + [failure, other])
    table = frame(rows)
    out, rep = recompute_rows(table, "mc_bezier", "old", "new")
    assert "old" not in out["params_hash"].to_list()
    assert out.height == table.height - 12  # the superseded unit's 12 rows (2 readings, 2 × 5 profile)
    assert (rep.units, rep.superseded) == (3, 1)
    assert [(c.model_id, c.epoch, c.old_mc, c.new_mc) for c in rep.changes] == [("a", 1, -4.925, rep.changes[0].new_mc)]
    assert rep.changes[0].new_mc == pytest.approx(4.775)
    got = lambda mid, epoch, metric: out.filter((pl.col("model_id") == mid) & (pl.col("epoch") == epoch)
                                                & (pl.col("metric") == metric)).sort("coord")
    assert got("a", 1, "mc_bezier")["value"].to_list() == [mc_from_profile(T5, QUOTED).mc]
    assert got("a", 1, "mc_bezier_endpoint_dominated")["value"].to_list() == [1.0]
    assert got("a", 1, "mc_bezier_error")["value"].to_list() == list(QUOTED)  # profile carried
    assert got("a", 2, "mc_bezier")["value"].to_list() == [-30.0]
    assert got("e", 1, "mc_bezier_error")["value"].to_list() == [6.0] * 5  # the newer rows kept
    moved_failure = out.filter(pl.col("error").is_not_null()).row(0, named=True)
    assert moved_failure == {**failure, "params_hash": "new"}
    assert out.filter(pl.col("params_hash") == "perf").row(0, named=True) == other
    again, rep2 = recompute_rows(out, "mc_bezier", "old", "new")
    assert again.equals(out) and rep2.units == 0  # idempotent


@pytest.fixture
def zoo_copy(tmp_path):
    """The default zoo's spec and catalog (no checkpoints: nothing is retrained) and a metrics table holding
    version-1 rows of two pairs and a version-1 mc_linear row of one."""
    root = tmp_path / "zoo"
    root.mkdir()
    for name in ("spec.toml", "catalog.parquet"):
        shutil.copy(DEFAULT_ZOO / name, root / name)
    zoo = Zoo.open(root)
    old = {n: previous_version(zoo_metric(zoo, get_metric(n))).params_hash for n in ("mc_linear", "mc_bezier")}
    a, b, c = (f"width128-batch_size0032-s{s}" for s in range(3))
    rows = (unit("mc_bezier", a, b, 150, QUOTED, -4.925, 1.0, old["mc_bezier"])
            + unit("mc_bezier", a, c, 150, (10, 20, 40, 20, 10), -30.0, 0.0, old["mc_bezier"])
            + unit("mc_linear", a, b, 150, (10, 5, 10, 15, 10), 5.0, 0.0, old["mc_linear"]))
    frame(rows).write_parquet(root / "metrics.parquet")
    return root


def test_recompute_zoo_and_cli(zoo_copy, capsys):
    zoo = Zoo.open(zoo_copy)
    new = {n: zoo_metric(zoo, get_metric(n)).params_hash for n in ("mc_linear", "mc_bezier")}
    before = (zoo_copy / "metrics.parquet").read_bytes()
    assert main([str(zoo_copy), "--dry-run"]) == 0
    assert "mc_bezier: 2 pair-epochs" in capsys.readouterr().out
    assert (zoo_copy / "metrics.parquet").read_bytes() == before  # a dry run writes nothing
    assert main([str(zoo_copy)]) == 0
    out = capsys.readouterr().out
    assert "mc -4.925 → +4.775" in out and "mc +5 → +0" in out  # the quoted pair; a sign-neutral tie
    m = read_metrics(zoo_copy)
    assert set(m["params_hash"]) == set(new.values())
    mc = dict(m.filter(pl.col("metric") == "mc_bezier").select("other_id", "value").iter_rows())
    assert mc == {"width128-batch_size0032-s1": pytest.approx(4.775), "width128-batch_size0032-s2": -30.0}
    assert [r.units for r in recompute_zoo(zoo_copy)] == [0, 0]  # nothing of version 1 is left


def test_a_malformed_profile_stops_the_run_and_writes_nothing(zoo_copy, capsys):
    m = read_metrics(zoo_copy)
    broken = m.filter(~((pl.col("metric") == "mc_bezier_error") & (pl.col("coord") == 1.0)
                        & (pl.col("other_id") == "width128-batch_size0032-s2")))
    broken.write_parquet(zoo_copy / "metrics.parquet")
    before = (zoo_copy / "metrics.parquet").read_bytes()
    assert main([str(zoo_copy)]) == 2
    err = capsys.readouterr().err
    assert "width128-batch_size0032-s0 & width128-batch_size0032-s2 at epoch 150" in err and "from 0 to 1" in err
    assert (zoo_copy / "metrics.parquet").read_bytes() == before
    assert main([str(zoo_copy), "--metrics", "hessian"]) == 2
