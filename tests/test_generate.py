"""The generator CLI: end to end, resume after a kill, determinism, and bad input."""
import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from data.training.generate import generate, plan_groups
from data.zoo.spec import parse_spec
from data.zoo.spec_builder import tiny_mlp_spec
from data.zoo.store import CATALOG_FILE, Zoo
from tests.conftest import ROOT, TINY_SPEC

ENV = {**os.environ, "OMP_NUM_THREADS": "1"}
# Slower groups than the tiny zoo, so that a kill lands between them.
RESUME_SPEC = tiny_mlp_spec(n_train=2000, batch_sizes=(8, 16, 64)).toml()


def cli(*args, timeout=300):
    return subprocess.run([sys.executable, "-m", "data.training.generate", *map(str, args), "--quiet"], env=ENV,
                          cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_tiny_zoo_is_complete(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    cat = zoo.catalog
    assert sorted(cat["model_id"].unique()) == sorted(c.model_id for c in zoo.spec.models())
    assert set(cat["epoch"].unique()) == {0, 1, 2, 3}
    assert cat.filter(pl.col("epoch") == 3)["train_loss"].mean() < cat.filter(pl.col("epoch") == 0)["train_loss"].mean()
    assert all((tiny_zoo / p).is_file() for p in zoo.checkpoints()["checkpoint"])
    from data.models.archs import n_params

    row = cat.row(0, named=True)
    assert row["n_params"] == n_params(zoo.build_model(row["model_id"], 0))


def test_one_writer_per_zoo(tiny_zoo):
    from data.zoo.store import ZooError, writer_lock

    with writer_lock(tiny_zoo):
        with pytest.raises(ZooError, match="being written by another process"):
            with writer_lock(tiny_zoo):
                pass
    with writer_lock(tiny_zoo):  # released
        pass


def test_groups_pad_small_widths_together():
    spec = parse_spec(TINY_SPEC)
    groups = plan_groups(spec, spec.models())
    assert sorted(m.model_id for g in groups for m in g.configs) == sorted(m.model_id for m in spec.models())
    for g in groups:  # a group shares everything but width and seed
        assert len({c.get("training")["batch_size"] for c in g.configs}) == 1
    assert max(len(g.configs) for g in groups) > 2  # several widths in one group
    assert all(len(g.configs) == 1 for g in plan_groups(spec, spec.models(), batched=False))


@pytest.mark.slow
def test_deterministic_across_runs(tiny_spec, tiny_zoo, tmp_path):
    generate(tiny_spec, tmp_path / "again", workers=1, progress=False)
    assert tree_digest(tmp_path / "again") == tree_digest(tiny_zoo)


def test_rerun_of_a_finished_zoo_trains_nothing(tiny_spec, tiny_zoo):
    before = tree_digest(tiny_zoo)
    report = generate(tiny_spec, tiny_zoo, workers=1, progress=False)
    assert report.trained == 0 and report.skipped == 12
    assert tree_digest(tiny_zoo) == before


@pytest.mark.slow
def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    spec = tmp_path / "resume.toml"
    spec.write_text(RESUME_SPEC)
    killed, clean = tmp_path / "killed", tmp_path / "clean"
    proc = subprocess.Popen([sys.executable, "-m", "data.training.generate", str(spec), "--out", str(killed), "--workers",
                             "1", "--flush-every", "0", "--quiet"], env=ENV, cwd=ROOT, start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 240
    while not (killed / CATALOG_FILE).exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)  # the main process and its workers, mid-run
    proc.wait()
    partial = Zoo.open(killed).catalog["model_id"].n_unique()
    assert 0 < partial < 18, "the kill should land after the first group and before the last"

    assert cli(spec, "--out", killed).returncode == 0
    assert cli(spec, "--out", clean).returncode == 0
    assert Zoo.open(killed).catalog.height == 18 * 4
    # A resume trains exactly the groups an uninterrupted run plans, each written whole: bit for bit
    # (more kill points: tests/test_resume_kill.py).
    assert tree_digest(killed) == tree_digest(clean)


@pytest.mark.slow
def test_bad_inputs_exit_nonzero_and_damage_nothing(tiny_zoo, tmp_path):
    before = tree_digest(tiny_zoo)
    bad = tmp_path / "bad.toml"
    for text, message in [(TINY_SPEC.replace('arch = "mlp"', 'arch = "transformer9"'), "unknown architecture"),
                          (TINY_SPEC.replace("width = [4, 16, 64]", "width = [4, 0]"), "width: 0 is out of range"),
                          (TINY_SPEC.replace('name = "tiny"\n', ""), "missing field 'name'")]:
        bad.write_text(text)
        r = cli(bad, "--out", tiny_zoo)
        assert r.returncode == 2 and message in r.stderr, r.stderr
    bad.write_text(TINY_SPEC.replace("epochs = 3", "epochs = 5"))
    r = cli(bad, "--out", tiny_zoo)
    assert r.returncode == 2 and "different spec" in r.stderr
    assert tree_digest(tiny_zoo) == before

    blocker = tmp_path / "a_file"
    blocker.write_text("")
    r = cli(tmp_path / "nope.toml", "--out", tmp_path / "z")
    assert r.returncode == 2 and "cannot read spec" in r.stderr
    bad.write_text(TINY_SPEC)
    r = cli(bad, "--out", blocker / "zoo")
    assert r.returncode == 2 and "cannot write to output directory" in r.stderr


@pytest.mark.slow
def test_corrupt_catalog_is_reported_not_overwritten(tiny_spec, tmp_path):
    root = tmp_path / "z"
    root.mkdir()
    (root / "spec.toml").write_text(TINY_SPEC)
    (root / CATALOG_FILE).write_bytes(b"not parquet at all")
    r = cli(tiny_spec, "--out", root)
    assert r.returncode == 2 and "cannot read the catalog" in r.stderr
    assert (root / CATALOG_FILE).read_bytes() == b"not parquet at all"


@pytest.mark.slow
@pytest.mark.parametrize("device", ["cuda:7"])
def test_absent_cuda_is_a_clear_error(tiny_spec, tmp_path, device):
    import torch

    if torch.cuda.device_count() > 7:
        pytest.skip("this machine has that GPU")
    r = cli(tiny_spec, "--out", tmp_path / "z", "--device", device)
    assert r.returncode == 2 and ("not available" in r.stderr or "invalid device" in r.stderr.lower()), r.stderr


def test_models_with_batchnorm_train_one_at_a_time(monkeypatch):
    """Stacking cannot carry per-model BatchNorm statistics: such groups fall back to the ordinary loop."""
    import torch
    from torch import nn

    from data.models.archs import ARCHS, ArchDef
    from data.params import positive
    from data.training.generate import train_group

    class BNMLP(nn.Sequential):
        def __init__(self, input_shape, n_classes, width):
            super().__init__(nn.Linear(input_shape[0], width), nn.BatchNorm1d(width), nn.ReLU(),
                             nn.Linear(width, n_classes))

    monkeypatch.setitem(ARCHS, "bnmlp", ArchDef(BNMLP, {"width": positive(int)}, frozenset({"width"})))
    spec = parse_spec(tiny_mlp_spec().replace(arch="bnmlp").merged(arch_params={"depth": None}).toml())
    configs = [c for c in spec.models() if dict(c.knobs)["batch_size"] == 64][:3]
    results = train_group(spec, configs, "cpu")
    assert len(results) == 3 and all(r.history[-1].train_loss < r.history[0].train_loss for r in results)
    assert all("1.running_mean" in r.checkpoints[3] for r in results)
    assert not torch.equal(results[0].checkpoints[3]["1.running_mean"], results[1].checkpoints[3]["1.running_mean"])
