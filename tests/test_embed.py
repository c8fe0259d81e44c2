"""Weight-space embeddings: padding, PCA and UMAP, the file, and bad input."""
import numpy as np
import polars as pl
import pytest

from analysis.studies.embed import embed, embed_zoo, read_embeddings, weight_matrix
from data.zoo.store import Zoo, ZooError


def test_weight_matrix_pads_narrow_models(tiny_zoo):
    zoo = Zoo.open(tiny_zoo)
    ids, X, _ = weight_matrix(zoo, 3)
    assert len(ids) == 12 and X.shape[0] == 12
    widest = max(zoo.catalog["n_params"])
    assert X.shape[1] == widest  # every model padded to the widest model's parameter count
    narrow = ids.index("width04-batch_size16-s0")
    assert np.count_nonzero(X[narrow]) <= zoo.catalog.filter(pl.col("model_id") == ids[narrow])["n_params"][0]


@pytest.mark.slow
def test_pca_is_exact_and_umap_runs(tiny_zoo):
    _, X, _ = weight_matrix(Zoo.open(tiny_zoo), 3)
    xy = embed(X, "pca")
    centred = X - X.mean(0)
    top = np.linalg.svd(centred, full_matrices=False)[2][:2]
    assert np.allclose(np.abs(xy), np.abs(centred @ top.T), atol=1e-6)
    u = embed(X, "umap")
    assert u.shape == (12, 2) and np.isfinite(u).all()
    assert np.allclose(u, embed(X, "umap"))  # seeded
    with pytest.raises(ValueError, match="unknown embedding method 'tsne'"):
        embed(X, "tsne")


def test_embed_zoo_writes_the_table(tiny_zoo, tmp_path):
    import shutil

    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, copy)
    table = embed_zoo(copy, [0, 3], ["pca"], progress=False)
    assert table.height == 24 and read_embeddings(copy).equals(table)
    with pytest.raises(ZooError, match=r"no checkpoints at epoch\(s\) \[7\]"):
        embed_zoo(copy, [7], ["pca"], progress=False)
    assert read_embeddings(tmp_path).is_empty()


def test_explained_variance_equals_sklearn():
    from sklearn.decomposition import PCA

    from analysis.studies.embed import explained_variance

    X = np.random.default_rng(0).normal(size=(9, 6)) * np.array([5.0, 3.0, 1.0, 1.0, 0.5, 0.1])
    share = explained_variance(X, components=4)
    assert np.allclose(share, PCA(n_components=4).fit(X).explained_variance_ratio_)
    assert np.isclose(explained_variance(X, components=99).sum(), 1.0)  # all components: the whole variance


def test_the_explained_variance_rides_with_the_embeddings(tiny_zoo, tmp_path):
    import shutil

    from analysis.studies.embed import EMBEDDINGS_FILE, explained_variance, read_explained_variance

    copy = tmp_path / "zoo"
    shutil.copytree(tiny_zoo, copy)
    assert read_explained_variance(copy).is_empty()  # no embeddings yet
    embed_zoo(copy, [0, 3], ["pca"], progress=False)
    stored = read_explained_variance(copy)
    assert sorted(stored["epoch"].unique()) == [0, 3] and stored.filter(pl.col("epoch") == 3)["component"][0] == 1
    expected = explained_variance(weight_matrix(Zoo.open(copy), 3)[1])
    assert np.allclose(stored.filter(pl.col("epoch") == 3).sort("component")["fraction"].to_numpy(), expected)
    # a file written before the variance was stored (no metadata) still reads, without it
    read_embeddings(copy).write_parquet(copy / EMBEDDINGS_FILE)
    assert read_embeddings(copy).height == 24 and read_explained_variance(copy).is_empty()
