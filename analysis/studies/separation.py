"""How well a 2-D map separates phases: the leave-one-out k-nearest-neighbour phase accuracy of its points.

Each point's phase is predicted by the majority phase of its k nearest other points (Euclidean distance in
the map's own coordinates, as drawn); the score is the fraction predicted right. Its uncertainty is the
binomial standard error √(p(1 − p)/n) — an approximation, since leave-one-out predictions share neighbours
and are not independent. The chance level is the majority phase's share: the accuracy of always guessing
the commonest phase, which a map that carries no phase information scores on average.

Seeds of one cell share its phase label, so a map that only keeps seeds together already scores above
chance; the score says how far apart the *phases* lie, not that the map found them unaided.
"""
from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

NEIGHBOURS = 5  # odd: two phases can never tie


@dataclass(frozen=True)
class Separation:
    accuracy: float  # fraction of points whose neighbours' majority phase is their own, in [0, 1]
    stderr: float  # binomial standard error of `accuracy`
    chance: float  # the majority phase's share of the points
    n: int  # points scored
    k: int  # neighbours each vote used (min(k asked, n − 1))


def knn_separation(xy: np.ndarray, labels: Sequence[str], k: int = NEIGHBOURS) -> Separation:
    """Leave-one-out k-NN phase accuracy of the points `xy` [n, 2] labelled `labels` [n].

    A tie between phases goes to the tied phase with the nearest neighbour (distance ties: the lower index)."""
    xy = np.asarray(xy, dtype=float)
    labels = list(labels)
    n = len(labels)
    if xy.shape != (n, 2):
        raise ValueError(f"xy has shape {xy.shape}, expected ({n}, 2)")
    if n < 2:
        raise ValueError(f"{n} point(s): leave-one-out needs at least 2")
    k = min(k, n - 1)
    dist = np.linalg.norm(xy[:, None, :] - xy[None, :, :], axis=-1)  # [n, n]
    np.fill_diagonal(dist, np.inf)  # a point never votes for itself
    nearest = np.argsort(dist, axis=1, kind="stable")[:, :k]  # [n, k], nearest first
    right = 0
    for i in range(n):
        votes = [labels[j] for j in nearest[i]]
        counts = Counter(votes)
        top = max(counts.values())
        guess = next(v for v in votes if counts[v] == top)  # the nearest among the tied phases
        right += guess == labels[i]
    p = right / n
    return Separation(p, float(np.sqrt(p * (1 - p) / n)), max(Counter(labels).values()) / n, n, k)
