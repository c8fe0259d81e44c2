"""The committed zoos beyond the default one (mnist1d-cnn, convection-pinn, modadd-transformer): complete,
their checkpoints reproduce their catalogs, every landscape metric, label and embedding is there, the
physics each was built to show is visible, and all committed zoos fit the size budget."""
import polars as pl
import pytest

from analysis.studies.embed import read_embeddings
from data.tasks.builtin import TASKS
from data.training.train import TrainConfig, scores
from data.zoo.store import Zoo, builtin_zoos, read_metrics
from tests.conftest import ROOT

NEW = ("mnist1d-cnn", "convection-pinn", "modadd-transformer")
ZOOS = ROOT / "data" / "zoos"


@pytest.fixture(scope="module", params=NEW)
def zoo(request) -> Zoo:
    return Zoo.open(ZOOS / request.param)


def last(zoo: Zoo) -> int:
    return zoo.spec.analysis_epochs[-1]


def test_every_spec_has_its_zoo():
    """Each spec under data/specs/ is a committed zoo, generated from exactly that spec."""
    specs = sorted(p.stem for p in (ROOT / "data" / "specs").glob("*.toml"))
    assert specs == sorted(p.name for p in builtin_zoos())
    for name in specs:
        assert (ROOT / "data" / "specs" / f"{name}.toml").read_text() == (ZOOS / name / "spec.toml").read_text()


def test_complete(zoo):
    spec, cat = zoo.spec, zoo.catalog
    assert cat["model_id"].n_unique() == spec.n_models
    cfg = TrainConfig.from_training(spec.training)
    logged = [e for e in range(spec.training["epochs"] + 1) if e == 0 or cfg.logs(e, spec.checkpoint_epochs)]
    per_model = cat.group_by("model_id").agg(pl.col("epoch").sort())
    assert all(list(eps) == logged for eps in per_model["epoch"])
    assert zoo.checkpoints().height == spec.n_models * len(spec.checkpoint_epochs)
    assert all((zoo.root / p).is_file() for p in zoo.checkpoints()["checkpoint"])
    regression = TASKS[spec.task].kind == "regression"
    assert cat["test_acc"].is_null().all() == regression and cat["test_acc"].is_null().any() == regression


def test_checkpoints_reproduce_the_catalog(zoo):
    """Rebuilt one at a time from their files and re-evaluated with the task's objective (training batched)."""
    sample = zoo.checkpoints().filter(pl.col("epoch") > 0).sort("model_id", "epoch").gather_every(29)
    assert sample.height >= 5
    for row in sample.iter_rows(named=True):
        task = zoo.task_of(row["model_id"])
        model = zoo.build_model(row["model_id"], row["epoch"])
        for split, x, y in (("train", task.x_train, task.y_train), ("test", task.x_test, task.y_test)):
            s = scores(model, x, y, task.objective)
            assert s.loss.item() == pytest.approx(row[f"{split}_loss"], rel=1e-3, abs=1e-6)
            if s.acc is not None:  # a near-tie may break differently batched: allow one example
                assert abs(s.acc.item() - row[f"{split}_acc"]) <= 1 / len(y) + 1e-12


def test_metrics_labels_and_embeddings_are_complete(zoo):
    spec = zoo.spec
    m = read_metrics(zoo.root)
    # the only failures: CKA of collapsed models (dead ReLUs: the same output for every input), undefined
    errors = m.filter(pl.col("error").is_not_null())
    assert errors["metric"].str.starts_with("cka_").all(), errors["error"].head(3).to_list()
    assert errors["error"].str.contains("CKA is undefined for a constant representation").all()
    acc = {(mid, e): a for mid, e, a in zoo.catalog.select("model_id", "epoch", "test_acc").iter_rows()}
    for r in errors.iter_rows(named=True):  # one of the pair at chance level (10 classes)
        assert min(acc[r["model_id"], r["epoch"]], acc[r["other_id"], r["epoch"]]) < 0.15
    seeds = len(spec.seeds)
    for epoch in spec.analysis_epochs:
        at = m.filter(pl.col("epoch") == epoch)
        per_model = at.filter(pl.col("metric") == "train_loss")["model_id"].n_unique()
        assert per_model == spec.n_models
        pairs = at.filter(pl.col("metric") == "mc_bezier").select("model_id", "other_id").unique().height
        assert pairs == spec.n_models // seeds * seeds * (seeds - 1) // 2
        assert at.filter(pl.col("metric") == "cka_logits_test").height == pairs
    phases = pl.read_parquet(zoo.root / "phases.parquet")
    cells = spec.n_models // seeds
    assert phases.group_by("epoch").len()["len"].to_list() == [cells] * len(spec.analysis_epochs)
    emb = read_embeddings(zoo.root)
    assert emb.select("model_id", "epoch").unique().height == spec.n_models * len(spec.checkpoint_epochs)


def cell_means(zoo: Zoo, metric: str) -> pl.DataFrame:
    m = read_metrics(zoo.root).filter((pl.col("metric") == metric) & (pl.col("epoch") == last(zoo))
                                      & pl.col("layer").is_null())
    knobs = zoo.catalog.filter(pl.col("epoch") == 0).select("model_id", *zoo.spec.grid)
    return m.join(knobs, on="model_id").group_by(*zoo.spec.grid).agg(pl.col("value").mean())


def test_pinn_fails_at_large_beta():
    """The convection PINNs' failure transition (Krishnapriyan et al. 2021): at a working learning rate
    they solve slow waves (relative L2 error well below 1) and fail on fast ones (error near 1)."""
    err = cell_means(Zoo.open(ZOOS / "convection-pinn"), "rel_l2_error").filter(pl.col("lr") == 1e-3)
    at = dict(err.select("beta", "value").iter_rows())
    assert max(at[b] for b in (1.0, 5.0)) < 0.1
    assert min(at[b] for b in (30.0, 40.0)) > 0.5


def test_transformers_grok_and_the_delay_varies():
    """Some cells fit the training pairs long before they generalise (grokking), the delay differs across
    the grid, and the smallest training fraction does not generalise at the coldest learning rate."""
    zoo = Zoo.open(ZOOS / "modadd-transformer")
    delay = cell_means(zoo, "grokking_delay")
    assert delay["value"].max() >= 10 * zoo.spec.training["eval_every"]
    assert delay["value"].n_unique() >= 5
    gen = cell_means(zoo, "generalized")
    coldest_smallest = gen.filter((pl.col("train_fraction") == 0.3) & (pl.col("lr") == 1e-3))["value"][0]
    assert coldest_smallest < 1.0


def test_cnn_spans_under_and_over_fitting():
    """Narrow CNNs under-fit at every batch size; the widest fit far better at medium batch sizes."""
    zoo = Zoo.open(ZOOS / "mnist1d-cnn")
    loss = cell_means(zoo, "train_loss")
    widths = sorted(zoo.spec.grid["width"])
    narrow = loss.filter(pl.col("width") == widths[0])["value"]
    wide = loss.filter((pl.col("width") == widths[-1]) & pl.col("batch_size").is_in([32, 64, 128]))["value"]
    assert narrow.min() > 1.0 and wide.max() < narrow.min() / 3


def test_all_committed_zoos_fit_the_budget():
    total = sum(f.stat().st_size for f in ZOOS.rglob("*") if f.is_file())
    assert total < 150e6, f"committed zoos take {total / 1e6:.0f} MB (budget 150 MB)"


@pytest.mark.slow
def test_a_checkpoint_is_recognised_by_its_own_zoo_among_all():
    """Shapes alone send each new zoo's checkpoint to its zoo (what the weights cannot show — the PINN's
    tanh, the transformer's heads — is taken from the zoo)."""
    from safetensors.torch import load_file

    from analysis.upload.recognise import recognise

    zoos = [Zoo.open(p) for p in builtin_zoos()]
    for name in NEW:
        zoo = Zoo.open(ZOOS / name)
        row = zoo.checkpoints().filter(pl.col("epoch") == last(zoo)).sort("model_id").row(0, named=True)
        best = recognise(load_file(str(zoo.root / row["checkpoint"])), zoos)[0]
        assert best.ok and best.on_grid and best.zoo == name
        assert dict(best.arch_params) == dict(zoo.configs[row["model_id"]].arch_params)


@pytest.mark.slow
def test_a_pinn_checkpoint_is_classified_on_its_cells_beta():
    """The upload pipeline on a regression zoo: a stored PINN gets its cell back (β from the identical zoo
    model, since weights cannot show it), and its rule verdict matches the stored label of that cell, which
    needs its fit, Hessian and mode connectivity measured on that β's task."""
    import analysis.upload.verdict as V

    zoo = Zoo.open(ZOOS / "convection-pinn")
    mid = "beta30.0-lr0.001-s1"
    path = zoo.root / zoo.checkpoints().filter((pl.col("model_id") == mid) & (pl.col("epoch") == last(zoo)))[
        "checkpoint"][0]
    [r] = V.analyse([path], [zoo], executor=None, cache=False)
    assert isinstance(r, V.Report), r
    assert r.cell["beta"].grid == 30.0 and r.cell["beta"].source == "identical zoo model"
    assert r.rule.train_loss == pytest.approx(
        cell_means(zoo, "train_loss").filter((pl.col("beta") == 30.0) & (pl.col("lr") == 1e-3))["value"][0],
        rel=0.5)  # this seed against its cell's mean: the same decade
    stored = pl.read_parquet(zoo.root / "phases.parquet").filter(
        (pl.col("epoch") == last(zoo)) & (pl.col("beta") == 30.0) & (pl.col("lr") == 1e-3))["phase"][0]
    assert r.rule.phase == stored
