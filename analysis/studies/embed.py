"""Weight-space embeddings: PCA and UMAP of a zoo's weights, one 2-D map per stored epoch.

    phasezoo embed data/zoos/mnist1d-mlp [--epochs 150,300] [--methods pca,umap]

Each model is its flattened parameters (BatchNorm statistics excluded), zero-padded to the widest model
of the zoo exactly as the batched trainer pads them (data.training.train.stack_padded): a narrower model is the
wider one with its extra units switched off, so padded models share one space. PCA (scikit-learn) gives
the linear view; UMAP (McInnes, Healy & Melville 2018; umap-learn) runs on the first 50 principal
components, seeded. The result is written to <zoo>/embeddings.parquet; the dashboard never fits on a rerun.
The share of the weights' variance along each of the first principal axes (EXPLAINED, per epoch) rides in
that file's key-value metadata, so the embeddings table keeps its columns; a file written before it has none.
"""
from __future__ import annotations

import argparse
import io
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow.parquet as pq
import torch
from tqdm import tqdm

from data.cli import run_cli
from data.zoo.paths import MAX_TABLE_BYTES, open_regular, read_parquet  # regular files of bounded size only
from data.zoo.schema import EMBEDDINGS, Schema
from data.zoo.store import Zoo, ZooError, atomic_write, writer_lock

EMBEDDINGS_FILE = "embeddings.parquet"
BUFFERS = ("running_mean", "running_var", "num_batches_tracked")

# Per stored epoch, the fraction of the total variance of the (padded, flattened) weights along principal
# component 1, 2, …, COMPONENTS (the fractions of all components sum to 1).
EXPLAINED = Schema("explained_variance", {"epoch": pl.Int64, "component": pl.Int64, "fraction": pl.Float64})
EXPLAINED_KEY = "phasezoo.explained_variance"  # the parquet metadata key of EXPLAINED's rows (JSON)
COMPONENTS = 10


def weights_only(state: dict) -> dict:
    """A state dict without its BatchNorm statistics: the embedded space is the parameters'."""
    return {k: v for k, v in state.items() if not k.endswith(BUFFERS)}


def padded_shapes(states) -> dict[str, tuple[int, ...]]:
    """Per tensor, the largest shape over the models: the common space they are zero-padded into."""
    return {k: tuple(max(d) for d in zip(*(s[k].shape for s in states))) for k in states[0]}


def flatten_padded(state: dict, shapes: dict[str, tuple[int, ...]]) -> np.ndarray:
    """One model's parameters zero-padded at each tensor's trailing end to `shapes` (as
    data.training.train.stack_padded pads them) and flattened, in `shapes`' key order. [sum of prod(shape)]"""
    if set(state) != set(shapes):
        raise ValueError(f"keys differ from the zoo's: {sorted(set(state) ^ set(shapes))[:3]}")
    too_big = [k for k in shapes if any(a > b for a, b in zip(state[k].shape, shapes[k]))]
    if too_big:
        raise ValueError(f"{too_big[0]} {tuple(state[too_big[0]].shape)} is larger than any zoo model's "
                         f"{shapes[too_big[0]]}: it has no place in the zoo's weight space")
    parts = []
    for k, shape in shapes.items():
        padded = torch.zeros(shape, dtype=torch.float64)
        padded[tuple(slice(0, d) for d in state[k].shape)] = state[k].detach().cpu()
        parts.append(padded.reshape(-1).numpy())
    return np.concatenate(parts)


def weight_matrix(zoo: Zoo, epoch: int) -> tuple[list[str], np.ndarray, dict[str, tuple[int, ...]]]:
    """(model ids, [models, features], padded shapes) of the checkpoints stored at `epoch`."""
    ids = sorted(zoo.checkpoints().filter(pl.col("epoch") == epoch)["model_id"].unique())
    if len(ids) < 3:
        raise ZooError(f"{zoo.name}: {len(ids)} checkpoint(s) at epoch {epoch}; an embedding needs at least 3")
    states = [weights_only(zoo.load_state_dict(m, epoch)) for m in ids]
    shapes = padded_shapes(states)
    return ids, np.stack([flatten_padded(s, shapes) for s in states]), shapes


def embed(features: np.ndarray, method: str, seed: int = 0) -> np.ndarray:
    """[n, 2] coordinates by `pca` or `umap` (on at most 50 principal components)."""
    from sklearn.decomposition import PCA

    n = len(features)
    if method == "pca":
        return PCA(n_components=2, random_state=seed).fit_transform(features)
    if method == "umap":
        os.environ.setdefault("NUMBA_CACHE_DIR", str(Path(__file__).resolve().parents[2] / ".numba_cache"))
        import umap

        reduced = PCA(n_components=min(50, n - 1), random_state=seed).fit_transform(features)
        return umap.UMAP(n_neighbors=min(15, n - 1), random_state=seed, n_jobs=1).fit_transform(reduced)
    raise ValueError(f"unknown embedding method {method!r}; available: pca, umap")


def explained_variance(features: np.ndarray, components: int = COMPONENTS) -> np.ndarray:
    """[min(components, rank bound)] fractions of the total variance of `features` [models, features] along
    its first principal axes, largest first (scikit-learn's explained_variance_ratio_)."""
    centred = features - features.mean(axis=0)
    var = np.linalg.svd(centred, compute_uv=False) ** 2  # singular values squared: variance per axis (× n − 1)
    total = var.sum()
    return (var / total if total > 0 else np.zeros_like(var))[:components]


def embed_zoo(root: str | Path, epochs: Sequence[int] | None = None, methods: Sequence[str] = ("pca", "umap"),
              progress: bool = True) -> pl.DataFrame:
    zoo = Zoo.open(root)
    stored = sorted(zoo.checkpoints()["epoch"].unique())
    epochs = list(epochs) if epochs else stored
    missing = [e for e in epochs if e not in stored]
    if missing:
        raise ZooError(f"{zoo.name}: no checkpoints at epoch(s) {missing}; stored: {stored}")
    frames, explained = [], []
    for epoch in tqdm(epochs, desc=f"{zoo.name} embeddings", disable=not progress, file=sys.stderr):
        ids, features, _ = weight_matrix(zoo, epoch)
        share = explained_variance(features)
        explained.append(pl.DataFrame({"epoch": [epoch] * len(share), "component": range(1, len(share) + 1),
                                       "fraction": share.astype(float)}, schema=EXPLAINED.columns))
        for method in methods:
            xy = embed(features, method)
            frames.append(pl.DataFrame({"model_id": ids, "epoch": [epoch] * len(ids), "method": [method] * len(ids),
                                        "x": xy[:, 0].astype(float), "y": xy[:, 1].astype(float)}))
    table = EMBEDDINGS.validate(pl.concat(frames).sort("method", "epoch", "model_id"))
    metadata = {EXPLAINED_KEY: EXPLAINED.validate(pl.concat(explained)).write_json()}
    with writer_lock(zoo.root):
        atomic_write(zoo.root / EMBEDDINGS_FILE, lambda tmp: table.write_parquet(tmp, metadata=metadata))
    return table


def read_embeddings(root: str | Path) -> pl.DataFrame:
    path = Path(root) / EMBEDDINGS_FILE
    return EMBEDDINGS.validate(read_parquet(path)) if path.exists() else EMBEDDINGS.empty()


def read_explained_variance(root: str | Path) -> pl.DataFrame:
    """The EXPLAINED rows stored with the zoo's embeddings; empty without embeddings or from an older file."""
    path = Path(root) / EMBEDDINGS_FILE
    if not path.exists():
        return EXPLAINED.empty()
    with open_regular(path, MAX_TABLE_BYTES) as f:
        stored = (pq.read_metadata(f).metadata or {}).get(EXPLAINED_KEY.encode())
    if stored is None:
        return EXPLAINED.empty()
    return EXPLAINED.validate(pl.read_json(io.BytesIO(stored), schema=EXPLAINED.columns))


def axis_titles(method: str, explained: pl.DataFrame, epoch: int) -> tuple[str, str]:
    """The map's axis titles: "PC1 (41.7 % of variance)" from `explained` (EXPLAINED rows) for PCA — the bare
    component when the file predates the stored variance — and "UMAP 1" (no units) for UMAP."""
    if method != "pca":
        return f"{method.upper()} 1", f"{method.upper()} 2"
    share = dict(explained.filter(pl.col("epoch") == epoch).select("component", "fraction").iter_rows())
    return tuple(f"PC{c}" + (f" ({100 * share[c]:.3g} % of variance)" if c in share else "") for c in (1, 2))


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.embed") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--epochs", default="", help="comma-separated stored epochs (default: all stored)")
    ap.add_argument("--methods", default="pca,umap", help="comma-separated: pca, umap")
    args = ap.parse_args(argv)

    def body() -> int:
        table = embed_zoo(args.zoo, [int(e) for e in args.epochs.split(",") if e],
                          [m for m in args.methods.split(",") if m])
        print(f"{args.zoo}: {table.height} embedded points ({', '.join(sorted(table['method'].unique()))}) "
              f"-> {EMBEDDINGS_FILE}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
