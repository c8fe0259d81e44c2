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

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
import polars as pl
import torch

from analysis.studies.embed import flatten_padded, weights_only
from analysis.upload.report import Neighbour, Placement, Point
from data.zoo.store import Zoo

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
def weight_space(state: tuple, epoch: int):
    """The zoo's padded weights at `epoch`, their PCA (the same deterministic call as analysis.studies.embed, so
    an upload projects into the stored map) and the stored embeddings. `state`: zoo_side.zoo_state(zoo)."""
    from sklearn.decomposition import PCA

    from analysis.studies.embed import read_embeddings, weight_matrix

    zoo = Zoo.open(state[0])
    ids, X, shapes = weight_matrix(zoo, epoch)
    emb = read_embeddings(zoo.root).filter(pl.col("epoch") == epoch)
    return ids, X, shapes, emb, PCA(n_components=2, random_state=0).fit(X)


def placement(zoo: Zoo, zoo_state: tuple, epoch: int, state: Mapping[str, torch.Tensor],
              labels: pl.DataFrame) -> Placement:
    """Its nearest zoo models in weight space (with their knobs and `labels`' phases of their cells), the zoo
    model it is a copy of within its precision (`identical_to`), its PCA position (exact) and UMAP position
    (approximate). Its weights are flattened into the zoo's padded layout once."""
    stored = set(zoo.checkpoints()["epoch"].unique())
    if epoch not in stored:
        return Placement(note=f"no checkpoints at epoch {epoch}")
    ids, X, shapes, emb, pca = weight_space(zoo_state, epoch)
    try:
        v = flatten_padded(weights_only(dict(state)), shapes)
    except ValueError as e:
        return Placement(note=f"no place in the zoo's weight space: {e}")
    dist = np.linalg.norm(X - v, axis=1)
    order = np.argsort(dist)[:NEIGHBOURS]
    spec = zoo.spec
    knobs = zoo.catalog.filter(pl.col("epoch") == epoch).select("model_id", *spec.grid, "seed")
    info = {r["model_id"]: r for r in knobs.join(labels, on=[spec.load.knob, spec.temperature.knob], how="left")
            .iter_rows(named=True)}
    neighbours = tuple(Neighbour(ids[i], float(dist[i]), info[ids[i]].get("phase"),
                                 {k: info[ids[i]][k] for k in spec.grid}, info[ids[i]]["seed"]) for i in order)
    u, absolute = precision(weights_only(dict(state)))
    nearest = order[0]
    tol = tolerance(u, absolute, max(float(np.linalg.norm(v)), float(np.linalg.norm(X[nearest]))), v.size)
    x, y = pca.transform(v[None])[0]
    umap = emb.filter(pl.col("method") == "umap")
    near_umap = None
    if not umap.is_empty():  # UMAP has no cheap exact projection: inverse-distance mean of the neighbours
        pos = dict(zip(umap["model_id"], zip(umap["x"], umap["y"])))
        w = np.array([1.0 / max(dist[i], 1e-12) for i in order])
        pts = np.array([pos[ids[i]] for i in order])
        near_umap = Point(float((w @ pts[:, 0]) / w.sum()), float((w @ pts[:, 1]) / w.sum()), approximate=True)
    return Placement(epoch, neighbours, ids[nearest] if dist[nearest] <= tol else None, u,
                     Point(float(x), float(y)), near_umap)


def distinct(mine: Mapping[str, torch.Tensor], others: Sequence) -> list:
    """The `others` (objects with a `.state`) that can pair with `mine` as independent seeds: none a near-copy
    of `mine`, and of several near-copies of one another only the first."""
    kept: list = []
    for o in others:
        if not near_copies(mine, o.state) and not any(near_copies(k.state, o.state) for k in kept):
            kept.append(o)
    return kept
