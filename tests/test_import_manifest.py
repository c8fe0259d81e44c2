"""data.importers.manifest: a folder of checkpoints + a manifest + a description -> a zoo; every bad row one line,
nothing written."""
import shutil
from pathlib import Path

import polars as pl
import pytest
import torch
from safetensors.torch import load_file

from data.importers.manifest import ImportError_, import_manifest, main
from data.zoo.store import Zoo, read_metrics

DESCRIBE = """name = "my-runs"
task = "mnist1d"
arch = "mlp"
[task_params]
n_train = 500
label_noise = 0.1
[arch_params]
depth = 2
[training]
lr = 0.05
batch_size = 32
[axes.load]
knob = "width"
increases = false
column = "w"
[axes.temperature]
knob = "batch_size"
increases = false
"""


@pytest.fixture
def runs(tmp_path, tiny_zoo) -> tuple[Path, Path, pl.DataFrame]:
    """A user's folder: the tiny zoo's checkpoints under their own names (one as a .pt file), a manifest.csv
    naming them (knob `width` in a column `w`, an extra metric column) and a zoo.toml."""
    zoo = Zoo.open(tiny_zoo)
    folder = tmp_path / "runs"
    (folder / "ckpt").mkdir(parents=True)
    rows = []
    for i, r in enumerate(zoo.checkpoints().sort("model_id", "epoch").iter_rows(named=True)):
        if i == 0:  # a PyTorch file, read through torch.load(weights_only=True) by the safe loader
            rel = f"ckpt/run{i}.pt"
            torch.save(zoo.load_state_dict(r["model_id"], r["epoch"]), folder / rel)
        else:
            rel = f"ckpt/run{i}.safetensors"
            shutil.copy(tiny_zoo / r["checkpoint"], folder / rel)
        rows.append({"checkpoint": rel, "w": r["width"], "batch_size": r["batch_size"], "seed": r["seed"],
                     "epoch": r["epoch"], "train_loss": r["train_loss"], "test_acc": r["test_acc"],
                     "sharpness": float(i), "orig": r["model_id"]})
    manifest = pl.DataFrame(rows)
    manifest.write_csv(folder / "manifest.csv")
    (folder / "zoo.toml").write_text(DESCRIBE)
    return folder, tiny_zoo, manifest


def test_import_round_trip(runs, tmp_path):
    folder, tiny, manifest = runs
    out = tmp_path / "zoos" / "my-runs"
    rep = import_manifest(folder / "manifest.csv", folder / "zoo.toml", out)
    assert (rep.rows, rep.checkpoints) == (len(manifest), len(manifest))
    assert rep.models == manifest.select("w", "batch_size", "seed").n_unique()
    zoo, orig = Zoo.open(out), Zoo.open(tiny)
    assert zoo.spec.grid == orig.spec.grid and zoo.spec.seeds == orig.spec.seeds
    assert zoo.spec.checkpoint_epochs == orig.spec.checkpoint_epochs
    assert zoo.spec.load.knob == "width" and zoo.spec.temperature.knob == "batch_size"
    assert zoo.catalog.height == len(manifest)
    for r in manifest.iter_rows(named=True):
        mid = r["orig"]  # same knobs and seed: the same model id as the generated zoo's
        got, want = zoo.load_state_dict(mid, r["epoch"]), orig.load_state_dict(mid, r["epoch"])
        assert got.keys() == want.keys() and all(torch.equal(got[k], want[k]) for k in want)
        row = zoo.catalog.filter((pl.col("model_id") == mid) & (pl.col("epoch") == r["epoch"])).row(0, named=True)
        assert row["train_loss"] == r["train_loss"] and row["test_acc"] == r["test_acc"]
        assert row["test_loss"] != row["test_loss"]  # absent from the manifest: NaN, "not measured"
        assert row["n_params"] == sum(t.numel() for t in want.values())
    zoo.build_model(manifest["orig"][0], manifest["epoch"][0])  # rebuilds strictly
    met = read_metrics(out)
    assert met["metric"].unique().to_list() == ["sharpness"] and met.height == len(manifest)
    assert sorted(met["value"].to_list()) == [float(i) for i in range(len(manifest))]
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]  # no temporary left


def _fails(folder: Path, tmp_path: Path, match: str, **kw) -> str:
    out = tmp_path / "zoos" / "bad"
    with pytest.raises(ImportError_, match=match) as e:
        import_manifest(folder / "manifest.csv", folder / "zoo.toml", out, **kw)
    assert not out.exists()
    assert not (out.parent.exists() and any(out.parent.iterdir()))  # nothing partial, no temporary
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def test_missing_checkpoint_names_row(runs, tmp_path):
    folder, _, manifest = runs
    (folder / manifest["checkpoint"][2]).unlink()
    msg = _fails(folder, tmp_path, "no such file")
    assert msg.startswith("manifest.csv row 3 (ckpt/run2.safetensors)")


def test_checkpoint_that_does_not_fit(runs, tmp_path):
    folder, _, manifest = runs
    # row 1 claims the widest model; its file holds a narrower one
    widths = sorted(manifest["w"].unique().to_list())
    first = manifest["w"][0]
    other = next(w for w in widths if w != first)
    swapped = manifest.with_columns(pl.when(pl.col("w") == first).then(other).when(pl.col("w") == other)
                                    .then(first).otherwise(pl.col("w")).alias("w"))
    swapped.write_csv(folder / "manifest.csv")
    msg = _fails(folder, tmp_path, "does not fit the mlp")
    assert msg.startswith("manifest.csv row 1 (ckpt/run0.pt)") and "shapes differ" in msg


def test_missing_columns(runs, tmp_path):
    folder, _, manifest = runs
    manifest.drop("seed").write_csv(folder / "manifest.csv")
    _fails(folder, tmp_path, r"manifest.csv: missing column\(s\) \['seed'\]")
    # a knob column named by the CLI that the manifest does not have
    manifest.write_csv(folder / "manifest.csv")
    _fails(folder, tmp_path, r"missing column\(s\) \['depth_x'\]", load_column="depth_x")


def test_unknown_arch_and_task(runs, tmp_path):
    folder, _, _ = runs
    (folder / "zoo.toml").write_text(DESCRIBE.replace('arch = "mlp"', 'arch = "lstm"'))
    _fails(folder, tmp_path, "unknown architecture 'lstm'")
    (folder / "zoo.toml").write_text(DESCRIBE.replace('task = "mnist1d"', 'task = "imagenet"'))
    _fails(folder, tmp_path, "unknown task 'imagenet'")
    (folder / "zoo.toml").write_text("seeds = [0]\n" + DESCRIBE)
    _fails(folder, tmp_path, "seeds and grid come from the manifest")


def test_duplicate_and_bad_values(runs, tmp_path):
    folder, _, manifest = runs
    pl.concat([manifest, manifest.head(1)]).write_csv(folder / "manifest.csv")
    _fails(folder, tmp_path, rf"manifest.csv row {len(manifest) + 1}: same width, batch_size, seed and epoch as row 1")
    manifest.with_columns(pl.lit(-1).alias("seed")).write_csv(folder / "manifest.csv")
    _fails(folder, tmp_path, "row 1: seed must be a non-negative integer")
    (folder / "manifest.csv").write_bytes(b"")
    _fails(folder, tmp_path, "manifest.csv")


def test_existing_output_untouched(runs, tmp_path):
    folder, _, _ = runs
    out = tmp_path / "taken"
    out.mkdir()
    (out / "keep").write_text("mine")
    with pytest.raises(ImportError_, match="exists"):
        import_manifest(folder / "manifest.csv", folder / "zoo.toml", out)
    assert [p.name for p in out.iterdir()] == ["keep"]


def test_cli(runs, tmp_path, capsys):
    folder, _, manifest = runs
    out = tmp_path / "cli-zoo"
    assert main([str(folder / "manifest.csv"), "--describe", str(folder / "zoo.toml"), "--out", str(out)]) == 0
    assert f"imported {len(manifest)} manifest rows" in capsys.readouterr().out
    (folder / manifest["checkpoint"][0]).unlink()
    assert main([str(folder / "manifest.csv"), "--describe", str(folder / "zoo.toml"), "--out", str(out) + "2"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: manifest.csv row 1 (ckpt/run0.pt): run0.pt: no such file")
    assert load_file(str(out / Zoo.open(out).checkpoints()["checkpoint"][0]))  # the first zoo is intact


def test_parquet_manifest_and_logged_epochs_without_weights(runs, tmp_path):
    folder, _, manifest = runs
    logged = manifest.head(1).with_columns(pl.lit(None, pl.String).alias("checkpoint"), pl.lit(4, pl.Int64).alias("epoch"))
    pl.concat([manifest, logged]).write_parquet(folder / "manifest.parquet")
    out = tmp_path / "pq"
    rep = import_manifest(folder / "manifest.parquet", folder / "zoo.toml", out)
    assert (rep.rows, rep.checkpoints) == (len(manifest) + 1, len(manifest))
    zoo = Zoo.open(out)
    row = zoo.catalog.filter((pl.col("model_id") == manifest["orig"][0]) & (pl.col("epoch") == 4))
    assert row["checkpoint"].to_list() == [None] and zoo.spec.training["epochs"] == 4
