from pathlib import Path

import pytest

from data.zoo.store import CATALOG_FILE, Zoo, ZooError, atomic_write, init_zoo_dir, remove_stale_temporaries
from tests.conftest import TINY_SPEC


def test_atomic_write_keeps_old_file_when_writer_fails(tmp_path):
    target = tmp_path / "f.txt"
    target.write_text("old")

    def failing(tmp: Path):
        tmp.write_text("half of the new cont")
        raise RuntimeError("killed mid-write")

    with pytest.raises(RuntimeError):
        atomic_write(target, failing)
    assert target.read_text() == "old"
    assert list(tmp_path.iterdir()) == [target]  # no temporary left behind


def test_atomic_write_replaces(tmp_path):
    atomic_write(tmp_path / "a" / "f.txt", lambda tmp: tmp.write_text("new"))
    assert (tmp_path / "a" / "f.txt").read_text() == "new"


def test_stale_temporaries_are_removed(tmp_path):
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / ".epoch_0001.safetensors.abc.tmp").write_bytes(b"partial")
    (tmp_path / "keep.txt").write_text("x")
    assert remove_stale_temporaries(tmp_path) == 1
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == ["keep.txt"]


def test_zoo_open_errors_name_the_file(tmp_path):
    with pytest.raises(ZooError, match="spec.toml is missing"):
        Zoo.open(tmp_path)
    init_zoo_dir(tmp_path, TINY_SPEC)
    with pytest.raises(ZooError, match="catalog.parquet is missing"):
        Zoo.open(tmp_path)
    (tmp_path / CATALOG_FILE).write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(ZooError, match="cannot read the catalog"):
        Zoo.open(tmp_path)


def test_init_refuses_a_different_spec(tmp_path):
    init_zoo_dir(tmp_path, TINY_SPEC)
    init_zoo_dir(tmp_path, TINY_SPEC)  # same spec: resume is fine
    with pytest.raises(ZooError, match="different spec"):
        init_zoo_dir(tmp_path, TINY_SPEC.replace("epochs = 3", "epochs = 4"))
    assert (tmp_path / "spec.toml").read_text() == TINY_SPEC


def test_tiny_zoo_round_trip(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    assert zoo.catalog["model_id"].n_unique() == 12
    assert zoo.catalog.height == 12 * 4  # epochs 0..3
    assert zoo.checkpoints().height == 12 * 4
    mid = zoo.catalog["model_id"][0]
    with pytest.raises(ZooError, match="no checkpoint"):
        zoo.load_state_dict(mid, 99)
    with pytest.raises(ZooError, match="unknown model"):
        zoo.build_model("nope", 0)


def test_corrupt_checkpoint_is_reported(tiny_zoo, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(tiny_zoo, copy)
    zoo = Zoo.open(copy)
    row = zoo.checkpoints().row(0, named=True)
    (copy / row["checkpoint"]).write_bytes(b"garbage")
    with pytest.raises(ZooError, match="cannot read checkpoint"):
        zoo.load_state_dict(row["model_id"], row["epoch"])
