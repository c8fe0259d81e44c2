"""data.models.smallcnn and data.importers.smallcnn: the Small CNN Zoo (Unterthiner et al. 2020) in its exact published
layout -> a zoo; every bad input one line, nothing written."""
import gzip
import io
import math

import numpy as np
import polars as pl
import pytest
import torch

from data.importers.smallcnn import MODELS_FILE, ImportError_, import_smallcnn, main
from data.importers.smallcnn_format import flat_layout, flatten, read_layout, unflatten
from data.models.archs import build_model, match_shapes
from data.models.smallcnn import SmallCNN
from data.zoo.store import Zoo

# layout.csv of the published zoo, byte for byte in content: each layer's bias, then its Keras kernel
# (H × W × C_in × C_out; dense C_in × C_out); the boundaries are those of the authors' notebook
# (dnn_predict_accuracy.ipynb, extract_per_layer_features): (0, 16), (16, 160), ..., (4810, 4970).
LAYOUT = """varname,start_idx,end_idx,size,shape
sequential/conv2d/bias:0,0,16,16,"(16,)"
sequential/conv2d/kernel:0,16,160,144,"(3, 3, 1, 16)"
sequential/conv2d_1/bias:0,160,176,16,"(16,)"
sequential/conv2d_1/kernel:0,176,2480,2304,"(3, 3, 16, 16)"
sequential/conv2d_2/bias:0,2480,2496,16,"(16,)"
sequential/conv2d_2/kernel:0,2496,4800,2304,"(3, 3, 16, 16)"
sequential/dense/bias:0,4800,4810,10,"(10,)"
sequential/dense/kernel:0,4810,4970,160,"(16, 10)"
"""
P = 4970
STEPS = (0, 1, 86)
# six models: train_fraction 0.1 / 0.5, learning rates drawn per model (log-uniform), relu
MODELS = [(0.1, 1e-3), (0.1, 2e-3), (0.1, 0.05), (0.5, 1.5e-3), (0.5, 0.04), (0.5, 0.08)]


def write_zoo_folder(folder, *, weights=None, layout=LAYOUT, extra_rows=0, activations=("relu",)):
    """weights.npy, layout.csv and metrics.csv.gz as published: a leading unnamed index column (the checkpoint's
    path), the config.* columns, modeldir, step and the four performance columns. Returns the weights."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    n = len(MODELS) * len(STEPS)
    w = rng.standard_normal((n + extra_rows, P)).astype(np.float32) * 0.1 if weights is None else weights
    w[5, 100] = np.nan  # model 1 diverged at step 86
    np.save(folder / "weights.npy", w)
    (folder / "layout.csv").write_text(layout)
    rows = []
    for m, (tf, lr) in enumerate(MODELS):
        for s in STEPS:
            d = f"/cns/zoo/cifar10/{m:05d}"
            rows.append({"": f"{d}/permanent_ckpt-{s}", "config.activation": activations[m % len(activations)],
                         "config.b_init": "zeros", "config.dataset": "cifar10", "config.dnn_architecture": "cnn",
                         "config.dropout": 0.0, "config.epochs": 86, "config.epochs_between_checkpoints": 20,
                         "config.init_std": 0.05, "config.l2reg": 1e-4, "config.learning_rate": lr,
                         "config.num_layers": 3, "config.num_units": 16, "config.optimizer": "adam",
                         "config.random_seed": 42, "config.train_fraction": tf, "config.w_init": "he_normal",
                         "modeldir": d, "step": s, "test_accuracy": 0.1 + 0.01 * m, "test_loss": 2.3 - 0.01 * s,
                         "train_accuracy": 0.2 + 0.001 * s, "train_loss": 2.2 - 0.01 * s})
    buf = io.BytesIO()
    pl.DataFrame(rows).write_csv(buf)
    (folder / "metrics.csv.gz").write_bytes(gzip.compress(buf.getvalue()))
    return w


def test_the_network_has_the_published_4970_parameters():
    for shape in ((1, 28, 28), (3, 32, 32)):  # MNIST; CIFAR-10 (averaged to grayscale first, as the zoo did)
        m = build_model("smallcnn", shape, 10, {})
        assert sum(p.numel() for p in m.parameters()) == P
        assert m(torch.randn(2, *shape)).shape == (2, 10)
    x = torch.randn(2, 3, 32, 32)
    m = SmallCNN((3, 32, 32), 10)
    assert torch.allclose(m(x), m(x.mean(1, keepdim=True)))
    shapes = {k: tuple(v.shape) for k, v in m.state_dict().items()}
    assert match_shapes("smallcnn", shapes, (3, 32, 32), 10).ok
    with pytest.raises(ValueError, match="image inputs"):
        SmallCNN((40,), 10)


def test_unflatten_is_the_keras_layout(tmp_path):
    """Oracle: element [o, i, h, w] of a torch conv weight is element ((h·3 + w)·C_in + i)·C_out + o of the Keras
    kernel's C-order block; dense [o, i] is i·10 + o; biases are the blocks as they are."""
    (tmp_path / "layout.csv").write_text(LAYOUT)
    vars_ = read_layout(tmp_path / "layout.csv", P)
    row = np.arange(P, dtype=np.float32)
    sd = unflatten(row, vars_)
    assert torch.equal(sd["convs.0.bias"], torch.arange(16.0))
    assert sd["convs.1.weight"].shape == (16, 16, 3, 3) and sd["head.weight"].shape == (10, 16)
    o, i, h, w = 5, 7, 2, 1
    assert sd["convs.1.weight"][o, i, h, w] == 176 + ((h * 3 + w) * 16 + i) * 16 + o
    assert sd["convs.0.weight"][3, 0, 1, 2] == 16 + ((1 * 3 + 2) * 1 + 0) * 16 + 3
    assert sd["head.weight"][4, 9] == 4810 + 9 * 10 + 4 and sd["head.bias"][2] == 4802
    SmallCNN((1, 32, 32), 10).load_state_dict(sd, strict=True)
    assert flat_layout(sd, keras=True) == vars_  # the export writes the same layout ...
    assert np.array_equal(flatten(sd, vars_), row)  # ... and the same row


def test_import(tmp_path):
    w = write_zoo_folder(tmp_path / "cifar10")
    out = tmp_path / "zoos" / "cnnzoo"
    rep = import_smallcnn(tmp_path / "cifar10", out, bins=2)
    assert (rep.models, rep.rows, rep.stored) == (6, 18, 17)
    assert any("NaN/Inf" in p for p in rep.problems)
    zoo = Zoo.open(out)
    s = zoo.spec
    assert (s.task, s.arch, s.load.knob, s.temperature.knob) == ("cifar10", "smallcnn", "train_fraction", "lr")
    assert s.load.increases and s.temperature.increases
    assert s.grid["train_fraction"] == (0.1, 0.5)
    lo, hi = s.grid["lr"]  # two quantile bins, named by their medians (3 significant digits)
    assert lo == float(f"{np.median([1e-3, 1.5e-3, 2e-3]):.3g}") and hi == float(f"{np.median([0.04, 0.05, 0.08]):.3g}")
    assert s.seeds == (0, 1) and s.checkpoint_epochs == STEPS and s.analysis_epochs == (86,)
    assert s.training["optimizer"] == "adam" and s.training["weight_decay"] == 2e-4 and s.training["batch_size"] == 512
    assert zoo.catalog.height == 18 and zoo.catalog["n_params"].unique().to_list() == [P]
    hp = pl.read_parquet(out / MODELS_FILE)
    assert hp.height == 6 and set(hp["config.learning_rate"]) == {lr for _, lr in MODELS}
    for m, (tf, _) in enumerate(MODELS):
        mid = hp.filter(pl.col("modeldir") == f"/cns/zoo/cifar10/{m:05d}")["model_id"][0]
        cat = zoo.catalog.filter(pl.col("model_id") == mid).sort("epoch")
        assert cat["train_fraction"].unique().to_list() == [tf] and cat["epoch"].to_list() == list(STEPS)
        assert cat["test_acc"].to_list() == pytest.approx([0.1 + 0.01 * m] * 3)
        for j, step in enumerate(STEPS):
            r = m * len(STEPS) + j
            if r == 5:
                assert cat["checkpoint"][j] is None  # the diverged checkpoint: a row, no weights
                continue
            model = zoo.build_model(mid, step)
            assert np.array_equal(flatten(model.state_dict(), read_layout(tmp_path / "cifar10" / "layout.csv", P)),
                                  w[r])
    x = torch.randn(4, 3, 32, 32)  # the imported network computes: finite logits for CIFAR-shaped inputs
    assert torch.isfinite(zoo.build_model(zoo.catalog["model_id"][0], 0)(x)).all()


def test_knob_choices(tmp_path):
    write_zoo_folder(tmp_path / "z")
    out = tmp_path / "o"
    import_smallcnn(tmp_path / "z", out, load="config.l2reg", temperature="config.learning_rate", bins=8,
                    max_per_cell=1)
    zoo = Zoo.open(out)
    assert zoo.spec.grid["weight_decay"] == (2e-4,) and len(zoo.spec.grid["lr"]) == 6
    assert zoo.spec.seeds == (0,) and zoo.spec.arch_params["train_fraction"] == 1.0


def _fails(tmp_path, match, **kw):
    out = tmp_path / "zoos" / "bad"
    with pytest.raises(ImportError_, match=match) as e:
        import_smallcnn(tmp_path / "z", out, **kw)
    assert not out.exists() and not (out.parent.exists() and any(out.parent.iterdir()))
    assert "\n" not in str(e.value)
    return str(e.value)


def test_layout_that_does_not_add_up(tmp_path):
    write_zoo_folder(tmp_path / "z", layout=LAYOUT.replace("sequential/dense/kernel:0,4810,4970,160,\"(16, 10)\"\n", ""))
    msg = _fails(tmp_path, "layout.csv: the variables add up to 4810 values, but each row of weights.npy has 4970")
    assert msg.startswith("layout.csv")


@pytest.mark.parametrize("layout,match", [
    (LAYOUT.replace("160,176,16", "161,177,16"), r"layout.csv line 4: .* starts at 161, but the previous variable ends at 160"),
    (LAYOUT.replace('2304,"(3, 3, 16, 16)"\nsequential/conv2d_2/bias', '2304,"(3, 3, 16, 15)"\nsequential/conv2d_2/bias'),
     r"layout.csv line 5: .* spans 2304 values, its shape \(3, 3, 16, 15\) has 2160"),
    (LAYOUT.replace('"(16,)"', '"__import__(\'os\')"', 1), "is not a tuple of sizes"),
    (LAYOUT.replace("varname,", "name,"), r"layout.csv: missing column\(s\) \['varname'\]"),
])
def test_bad_layout(tmp_path, layout, match):
    write_zoo_folder(tmp_path / "z", layout=layout)
    _fails(tmp_path, match)


def test_bad_weights_and_metrics(tmp_path):
    z = tmp_path / "z"
    write_zoo_folder(z, extra_rows=1)
    _fails(tmp_path, "metrics.csv.gz: 18 rows, but weights.npy has 19")
    write_zoo_folder(z)
    data = (z / "weights.npy").read_bytes()
    (z / "weights.npy").write_bytes(data[:-4])  # the header declares more than the file holds
    _fails(tmp_path, r"weights.npy: its header declares 18 × 4970 float32 \(357840 bytes\) but the file holds 357836")
    np.save(z / "weights.npy", np.zeros((18, P), dtype=np.float64))
    _fails(tmp_path, "weights.npy: holds a float64 array")
    write_zoo_folder(z)
    df = pl.read_csv(gzip.decompress((z / "metrics.csv.gz").read_bytes()))
    (z / "metrics.csv.gz").write_bytes(gzip.compress(df.drop("step").write_csv().encode()))
    _fails(tmp_path, r"metrics.csv.gz: missing column\(s\) \['step'\]")
    (z / "metrics.csv.gz").write_bytes(b"not gzip")
    _fails(tmp_path, "metrics.csv.gz: not a readable gzip file")
    (z / "layout.csv").unlink()
    _fails(tmp_path, "layout.csv: missing")


def test_bad_choices(tmp_path):
    write_zoo_folder(tmp_path / "z", activations=("relu", "tanh"))
    _fails(tmp_path, r"several activations \['relu', 'tanh'\]; import one at a time with --where config.activation=relu")
    out = tmp_path / "ok"
    assert import_smallcnn(tmp_path / "z", out, where=["config.activation=tanh"], bins=2).models == 3
    _fails(tmp_path, "not registered here", task="imagenet", where=["config.activation=relu"])
    _fails(tmp_path, "not one the importer maps", load="config.w_init")
    _fails(tmp_path, "expected COLUMN=VALUE", where=["config.nope=1"])
    _fails(tmp_path, "no rows left", where=["config.activation=selu"])


def test_cli(tmp_path, capsys):
    write_zoo_folder(tmp_path / "z")
    assert main([str(tmp_path / "z"), "--out", str(tmp_path / "o"), "--bins", "2"]) == 0
    cap = capsys.readouterr()
    assert "imported 6 models, 18 checkpoints (17 stored)" in cap.out and "NaN/Inf" in cap.err
    (tmp_path / "z" / "layout.csv").write_text(LAYOUT.replace(',4970,160,', ',4971,161,'))
    assert main([str(tmp_path / "z"), "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: layout.csv line 9:")
    assert not (tmp_path / "o2").exists() and math.isfinite(P)


def test_too_many_models_for_one_zoo(tmp_path, monkeypatch):
    import data.importers.smallcnn as S

    write_zoo_folder(tmp_path / "z")
    monkeypatch.setattr(S, "MAX_MODELS", 4)
    _fails(tmp_path, r"6 models in 4 cells need 2 seeds a cell: more than the 4 models a zoo may have; import a part "
                     r"\(--where config.optimizer=…, --max-per-cell 1\)", bins=2)
    assert import_smallcnn(tmp_path / "z", tmp_path / "ok", bins=2, max_per_cell=1).models == 4
