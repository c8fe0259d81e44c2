"""analysis.studies.export: any zoo -> weights.npy + layout.csv + metrics (Small CNN Zoo convention) with phase labels
and a split by cell; read back the Small CNN Zoo way, the weights are the zoo's."""
import gzip
import json
import shutil

import numpy as np
import polars as pl
import pytest
import torch

from analysis.studies.export import ExportError, export_zoo, main, split_cells
from data.importers.smallcnn import import_smallcnn
from data.importers.smallcnn_format import open_weights, read_layout, unflatten
from data.zoo.schema import METRICS
from data.zoo.store import Zoo
from tests.test_smallcnn import LAYOUT, write_zoo_folder


def _read_back(folder):
    w = open_weights(folder / "weights.npy")
    return w, read_layout(folder / "layout.csv", w.shape[1])


@pytest.fixture
def labelled_zoo(tmp_path, tiny_zoo):
    """A copy of the tiny zoo with a phases.parquet and a few scalar metrics (per model, per cell, a pair)."""
    root = tmp_path / "tiny"
    shutil.copytree(tiny_zoo, root)
    zoo = Zoo.open(root)
    cells = zoo.catalog.select("width", "batch_size").unique().sort("width", "batch_size")
    phases = ["I", "II", "III", "IV-A", "IV-B", "I"]
    cells.with_columns(pl.Series("phase", phases), pl.lit(2).alias("epoch")).write_parquet(root / "phases.parquet")
    mids = zoo.catalog["model_id"].unique().sort().to_list()
    rows = [{"model_id": m, "other_id": None, "epoch": 2, "metric": "hessian_trace", "split": "train", "layer": None,
             "coord": None, "value": float(i), "stderr": None, "params_hash": "h", "error": None}
            for i, m in enumerate(mids)]
    rows += [{"model_id": mids[0], "other_id": "cell", "epoch": 2, "metric": "cka", "split": "test", "layer": None,
              "coord": None, "value": 0.5, "stderr": None, "params_hash": "h", "error": None},
             {"model_id": mids[0], "other_id": mids[1], "epoch": 2, "metric": "mc", "split": "train", "layer": None,
              "coord": None, "value": 9.0, "stderr": None, "params_hash": "h", "error": None}]
    METRICS.validate(pl.DataFrame(rows, schema=METRICS.columns)).write_parquet(root / "metrics.parquet")
    return root


def test_round_trip_padded_mlp(labelled_zoo, tmp_path):
    out = tmp_path / "exp"
    rep = export_zoo(labelled_zoo, out, seed=3)
    zoo = Zoo.open(labelled_zoo)
    ck = zoo.checkpoints().sort("model_id", "epoch")
    w, vars_ = _read_back(out)
    assert w.shape == (ck.height, rep.width) and rep.rows == ck.height
    widest = zoo.build_model(ck.filter(pl.col("width") == 64)["model_id"][0], 0)
    assert rep.width == sum(p.numel() for p in widest.parameters())  # padded to the widest model
    x = torch.randn(5, 40)
    for i, (mid, epoch) in enumerate(zip(ck["model_id"], ck["epoch"])):
        want = zoo.load_state_dict(mid, epoch)
        got = unflatten(w[i], vars_)  # read back exactly as a Small CNN Zoo row is read
        for k, t in want.items():
            lead = tuple(slice(0, d) for d in t.shape)
            assert torch.equal(got[k][lead], t)
            rest = got[k].clone()
            rest[lead] = 0
            assert not rest.any()  # the padding is zeros
        if i % 5 == 0:  # the padded network computes the same function
            widest.load_state_dict(got)
            assert torch.allclose(widest(x), zoo.build_model(mid, epoch)(x), atol=1e-6)
    t = pl.read_csv(gzip.decompress((out / "metrics.csv.gz").read_bytes()))
    assert t.height == ck.height and t["row"].to_list() == list(range(ck.height))
    assert t["modeldir"].to_list() == ck["model_id"].to_list() and t["step"].to_list() == ck["epoch"].to_list()
    assert t["config.width"].to_list() == ck["width"].to_list()
    assert pl.read_parquet(out / "metrics.parquet").height == ck.height
    # phase labels are the cells' (phases.parquet), on every row of the cell
    labels = pl.read_parquet(labelled_zoo / "phases.parquet")
    joined = t.join(labels, left_on=["config.width", "config.batch_size"], right_on=["width", "batch_size"])
    assert (joined["phase"] == joined["phase_right"]).all() and rep.phase_source == "phases.parquet"
    assert set(t["phase_epoch"]) == {2}
    # metrics wide: per-model scalar; cell-scope value spread over its cell; pair metrics left out
    at2 = t.filter(pl.col("epoch") == 2)
    assert at2["hessian_trace:train"].null_count() == 0 and "mc:train" not in t.columns
    first_cell = at2.filter(pl.col("model_id") == sorted(ck["model_id"].unique())[0])["cell"][0]
    assert (at2.filter(pl.col("cell") == first_cell)["cell:cka:test"] == 0.5).all()
    assert at2.filter(pl.col("cell") != first_cell)["cell:cka:test"].null_count() == at2.filter(
        pl.col("cell") != first_cell).height


def test_split_is_by_cell_and_seeded(labelled_zoo, tmp_path):
    export_zoo(labelled_zoo, tmp_path / "a", seed=1)
    export_zoo(labelled_zoo, tmp_path / "b", seed=1)
    t = pl.read_parquet(tmp_path / "a" / "metrics.parquet")
    assert t.group_by("cell").agg(pl.col("split").n_unique())["split"].max() == 1  # a cell is in one split only
    meta = json.loads((tmp_path / "a" / "splits.json").read_text())
    assert meta == json.loads((tmp_path / "b" / "splits.json").read_text())  # seeded: reproducible
    assert sorted(meta["train"] + meta["val"] + meta["test"]) == sorted(t["cell"].unique())
    assert (len(meta["train"]), len(meta["val"]), len(meta["test"])) == (4, 1, 1)
    for s in ("train", "val", "test"):
        assert set(t.filter(pl.col("split") == s)["cell"]) == set(meta[s])
    # the test cells' seeds never appear in training
    test_models = set(t.filter(pl.col("split") == "test")["model_id"])
    assert not test_models & set(t.filter(pl.col("split") == "train")["model_id"])
    splits = {tuple(sorted(split_cells([str(i) for i in range(20)], s, (0.6, 0.2, 0.2))["test"])) for s in range(5)}
    assert len(splits) > 1  # another seed, another cut
    assert [len(v) for v in split_cells([str(i) for i in range(20)], 0, (0.6, 0.2, 0.2)).values()] == [12, 4, 4]


def test_smallcnn_zoo_round_trip(tmp_path):
    """Small CNN Zoo -> zoo -> export: the published layout.csv and the stored rows of weights.npy come back exactly,
    and the export imports again into the same weights."""
    w0 = write_zoo_folder(tmp_path / "cifar10")
    import_smallcnn(tmp_path / "cifar10", tmp_path / "z1", bins=2)
    rep = export_zoo(tmp_path / "z1", tmp_path / "exp")
    assert (tmp_path / "exp" / "layout.csv").read_text() == LAYOUT
    w, vars_ = _read_back(tmp_path / "exp")
    rows = [r for r in range(18) if r != 5]  # the diverged checkpoint was never stored
    t = pl.read_parquet(tmp_path / "exp" / "metrics.parquet")
    hp = pl.read_parquet(tmp_path / "z1" / "smallcnn_models.parquet")
    order = {d: i for i, d in enumerate(sorted(hp["modeldir"]))}
    expect = [order[hp.filter(pl.col("model_id") == m)["modeldir"][0]] * 3 + (0, 1, 86).index(e)
              for m, e in zip(t["model_id"], t["epoch"])]
    assert sorted(expect) == rows and np.array_equal(np.asarray(w), w0[expect])
    assert rep.phase_source == "none" and t["phase"].null_count() == t.height
    assert {"config.train_fraction", "config.learning_rate", "step", "test_accuracy"} <= set(t.columns)
    again = import_smallcnn(tmp_path / "exp", tmp_path / "z2", task="cifar10", bins=2)
    assert again.models == 6 and again.stored == 17
    z1, z2 = Zoo.open(tmp_path / "z1"), Zoo.open(tmp_path / "z2")
    assert z1.spec.grid == z2.spec.grid
    for m, e in zip(t["model_id"], t["epoch"]):
        a, b = z1.load_state_dict(m, e), z2.load_state_dict(m, e)
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_bad_requests_write_nothing(labelled_zoo, tmp_path):
    out = tmp_path / "x"
    with pytest.raises(ExportError, match="no stored checkpoints at epoch"):
        export_zoo(labelled_zoo, out, epochs=[99])
    with pytest.raises(ExportError, match="split fractions"):
        export_zoo(labelled_zoo, out, fractions=(0.5, 0.5, 0.5))
    assert not out.exists() and not [p for p in tmp_path.iterdir() if p.name.startswith(".")]
    out.mkdir()
    with pytest.raises(ExportError, match="exists"):
        export_zoo(labelled_zoo, out)


def test_cli(labelled_zoo, tmp_path, capsys):
    assert main([str(labelled_zoo), "--out", str(tmp_path / "e"), "--epochs", "2", "3"]) == 0
    assert "phases: phases.parquet" in capsys.readouterr().out
    assert set(pl.read_parquet(tmp_path / "e" / "metrics.parquet")["epoch"]) == {2, 3}
    assert main([str(labelled_zoo), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and "exists" in err[0]
