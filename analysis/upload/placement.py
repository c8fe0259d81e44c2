"""An uploaded model's place in a zoo's weight space, and whether it is a near-copy of a zoo model or of
another upload.

A copy saved in lower precision (a zoo model's fp16 or bf16 round trip) is not bit-identical to its source,
yet it is the same model to within what its file can hold: every weight is its source's rounded to the
file's precision, |w̃ − w| ≤ u·|w| with u the format's unit roundoff (Higham, *Accuracy and Stability of
Numerical Algorithms*, 2002, §2.1), so ‖w̃ − w‖₂ ≤ u·‖w‖₂. A file's precision is that of its dtype, or the
coarser one of fp16/bf16 where every tensor round-trips through it exactly (a half-precision copy saved again
as float32). Such a near-copy takes its source's knobs and is never paired with it as an independent seed.
"""
from __future__ import annotations

import hashlib
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import torch

from analysis.studies.embed import flatten_padded, weights_only
from analysis.upload.report import Neighbour, Placement, Point
from data.tasks.builtin import cache_dir
from data.zoo.store import Zoo, atomic_write

NEIGHBOURS = 5
# Unit roundoff (half the relative spacing of representable numbers): fp16 and bf16 keep 10 and 7 mantissa bits.
UNIT_ROUNDOFF = {torch.float16: 2.0**-11, torch.bfloat16: 2.0**-8, torch.float32: 2.0**-24, torch.float64: 2.0**-53}
# fp16's subnormals (|w| < 2⁻¹⁴) are spaced 2⁻²⁴ apart: an absolute rounding of up to 2⁻²⁵ per weight.
FP16_ABSOLUTE = 2.0**-25
# The floor of any tolerance, relative to the norm: float32 files re-saved through other tools, summation order.
FLOOR = 1e-6


def precision(state: Mapping[str, torch.Tensor]) -> tuple[float, float]:
    """(unit roundoff, absolute rounding per weight) of the coarsest floating tensor: its dtype's, or fp16's
    or bf16's when it round-trips through that format exactly. (0, 0) without floating tensors."""
    u, absolute = 0.0, 0.0
    for t in state.values():
        if not t.is_floating_point() or t.numel() == 0:
            continue
        mine, floor = UNIT_ROUNDOFF.get(t.dtype, 2.0**-24), FP16_ABSOLUTE if t.dtype == torch.float16 else 0.0
        for half in (torch.bfloat16, torch.float16):  # coarsest first
            if UNIT_ROUNDOFF[half] > mine and torch.equal(t.to(half).to(t.dtype), t):
                mine, floor = UNIT_ROUNDOFF[half], FP16_ABSOLUTE if half == torch.float16 else 0.0
                break
        u, absolute = max(u, mine), max(absolute, floor)
    return u, absolute


def tolerance(u: float, absolute: float, norm: float, n: int) -> float:
    """The largest ‖difference‖₂ between a model of norm `norm` (n weights) and its rounding: u·‖w‖ + √n·absolute."""
    return max(u, FLOOR) * norm + math.sqrt(n) * absolute


def near_copies(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """Whether two state dicts are one model to within the coarser of their two precisions."""
    a, b = weights_only(dict(a)), weights_only(dict(b))
    if set(a) != set(b) or any(a[k].shape != b[k].shape for k in a):
        return False
    va = np.concatenate([a[k].detach().double().reshape(-1).numpy() for k in sorted(a)]) if a else np.zeros(0)
    vb = np.concatenate([b[k].detach().double().reshape(-1).numpy() for k in sorted(a)]) if a else np.zeros(0)
    (ua, fa), (ub, fb) = precision(a), precision(b)
    norm = max(float(np.linalg.norm(va)), float(np.linalg.norm(vb)))
    return float(np.linalg.norm(va - vb)) <= tolerance(max(ua, ub), max(fa, fb), norm, va.size)


@lru_cache(maxsize=4)
def _matrix(state: tuple, epoch: int) -> tuple[list[str], np.ndarray, dict, np.ndarray]:
    """The zoo's model ids, padded weights X [models, weights], layer shapes and squared norms ‖X_i‖²
    [models] at `epoch` (analysis.studies.embed). `state`: zoo_side.zoo_state(zoo)."""
    from analysis.studies.embed import weight_matrix

    ids, X, shapes = weight_matrix(Zoo.open(state[0]), epoch)
    return ids, X, shapes, np.einsum("ij,ij->i", X, X)


def _distances(X: np.ndarray, sq: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """‖X_i − v‖ for every row, and the NEIGHBOURS nearest (ascending). All rows by ‖X_i‖² − 2 X_i·v + ‖v‖²
    (one matrix-vector product: X − v would be a second [models, weights] array, 121 MB on the default zoo),
    whose rounding is below n·ε·(‖X_i‖² + ‖v‖²) (≈ 1e-11 of it at the default zoo's 79k weights); the rows
    within 1e-10 of that of the NEIGHBOURS-th are measured again directly, so the nearest, their order and a
    near-copy's tiny distance are exact."""
    vv = float(v @ v)
    d2 = np.maximum(sq - 2.0 * (X @ v) + vv, 0.0)
    k = min(NEIGHBOURS, len(d2)) - 1
    close = np.flatnonzero(d2 <= np.partition(d2, k)[k] + 1e-10 * (float(sq.max()) + vv))
    dist = np.sqrt(d2)
    dist[close] = np.linalg.norm(X[close] - v, axis=1)
    return dist, close[np.argsort(dist[close], kind="stable")][:NEIGHBOURS]


@lru_cache(maxsize=4)
def _map(state: tuple, epoch: int) -> tuple[pl.DataFrame, np.ndarray, np.ndarray]:
    """The stored embeddings at `epoch`, and the PCA of the padded weights as its mean [weights] and its two
    components [2, weights]: the same deterministic call as analysis.studies.embed, so an upload projects into
    the stored map. The fit (seconds on the default zoo, and scikit-learn's import) is kept on disk under
    <cache>/pca/, keyed by the zoo's state and the epoch: a cold command line fits it once per zoo state."""
    from analysis.studies.embed import read_embeddings

    emb = read_embeddings(Zoo.open(state[0]).root).filter(pl.col("epoch") == epoch)
    key = hashlib.sha256(json.dumps([list(state), epoch]).encode()).hexdigest()[:32]
    path = cache_dir() / "pca" / f"{key}.npz"
    X = _matrix(state, epoch)[1]
    try:
        with np.load(path) as kept:
            mean, components = kept["mean"], kept["components"]
        if mean.shape == (X.shape[1],) and components.shape == (2, X.shape[1]):
            return emb, mean, components
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # absent or damaged: fitted again
        pass
    from sklearn.decomposition import PCA

    pca = PCA(n_components=2, random_state=0).fit(X)
    mean, components = pca.mean_, pca.components_

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, mean=mean, components=components)
    try:
        atomic_write(path, write, durable=False)
    except OSError:
        pass  # a read-only cache only costs the fit again
    return emb, mean, components


@dataclass(frozen=True)
class Located:
    """Where an upload lies among the zoo's models at `epoch`, flattened into their padded layout once: its
    weights (`v` [weights]), its distance to every zoo model (`dist` [models], in `ids`' order: `_distances`),
    the nearest NEIGHBOURS (`order`), the zoo model it is a copy of within its precision, and its file's unit
    roundoff; or only a `note` saying why it has no place there."""

    zoo_state: tuple
    epoch: int
    note: str | None = None
    ids: list[str] | None = None
    v: np.ndarray | None = None
    dist: np.ndarray | None = None
    order: np.ndarray | None = None
    identical_to: str | None = None
    unit_roundoff: float | None = None


def locate(zoo: Zoo, zoo_state: tuple, epoch: int, state: Mapping[str, torch.Tensor]) -> Located:
    """Its distances to the zoo's models and the one it is a copy of (the pairing needs that first); the map
    positions (`placement`) follow from it."""
    if epoch not in set(zoo.checkpoints()["epoch"].unique()):
        return Located(zoo_state, epoch, note=f"no checkpoints at epoch {epoch}")
    ids, X, shapes, sq = _matrix(zoo_state, epoch)
    weights = weights_only(dict(state))
    try:
        v = flatten_padded(weights, shapes)
    except ValueError as e:
        return Located(zoo_state, epoch, note=f"no place in the zoo's weight space: {e}")
    dist, order = _distances(X, sq, v)
    u, absolute = precision(weights)
    first = order[0]
    tol = tolerance(u, absolute, math.sqrt(max(float(v @ v), float(sq[first]))), v.size)
    return Located(zoo_state, epoch, None, ids, v, dist, order, ids[first] if dist[first] <= tol else None, u)


def placement(zoo: Zoo, where: Located, labels: pl.DataFrame) -> Placement:
    """Its nearest zoo models in weight space (with their knobs and `labels`' phases of their cells), the zoo
    model it is a copy of within its precision (`identical_to`), its PCA position (exact) and UMAP position
    (approximate)."""
    if where.note is not None:
        return Placement(note=where.note)
    ids, dist, order, epoch = where.ids, where.dist, where.order, where.epoch
    emb, mean, components = _map(where.zoo_state, epoch)
    spec = zoo.spec
    knobs = zoo.catalog.filter(pl.col("epoch") == epoch).select("model_id", *spec.grid, "seed")
    info = {r["model_id"]: r for r in knobs.join(labels, on=[spec.load.knob, spec.temperature.knob], how="left")
            .iter_rows(named=True)}
    neighbours = tuple(Neighbour(ids[i], float(dist[i]), info[ids[i]].get("phase"),
                                 {k: info[ids[i]][k] for k in spec.grid}, info[ids[i]]["seed"]) for i in order)
    x, y = components @ (where.v - mean)  # PCA.transform
    umap = emb.filter(pl.col("method") == "umap")
    near_umap = None
    if not umap.is_empty():  # UMAP has no cheap exact projection: inverse-distance mean of the neighbours
        pos = dict(zip(umap["model_id"], zip(umap["x"], umap["y"])))
        w = np.array([1.0 / max(dist[i], 1e-12) for i in order])
        pts = np.array([pos[ids[i]] for i in order])
        near_umap = Point(float((w @ pts[:, 0]) / w.sum()), float((w @ pts[:, 1]) / w.sum()), approximate=True)
    return Placement(epoch, neighbours, where.identical_to, where.unit_roundoff, Point(float(x), float(y)), near_umap)


def distinct(mine: Mapping[str, torch.Tensor], others: Sequence) -> list:
    """The `others` (objects with a `.state`) that can pair with `mine` as independent seeds: none a near-copy
    of `mine`, and of several near-copies of one another only the first."""
    kept: list = []
    for o in others:
        if not near_copies(mine, o.state) and not any(near_copies(k.state, o.state) for k in kept):
            kept.append(o)
    return kept
