"""Data-free weight metrics: need only a state dict, so they work on any uploaded checkpoint.

Per layer (every weight tensor of rank ≥ 2, reshaped to [out, in·k]):
- weight statistics: mean, variance and the 1/25/50/75/99th percentiles;
- spectral norm σ₁ and stable rank ‖W‖²_F / ‖W‖²₂;
- heavy-tailed self-regularisation (Martin & Mahoney 2021, *Implicit self-regularization in deep neural
  networks*): the eigenvalues λ of WᵀW/N (N = the larger dimension) and the power-law exponent α of their
  tail, fitted by the Clauset–Shalizi–Newman (2009) maximum-likelihood estimator
  α = 1 + n_tail / Σ ln(λ_i / λ_min), with λ_min chosen to minimise the Kolmogorov–Smirnov distance D
  between the empirical and fitted tail CDFs. D is the fit's quality (smaller is better). α ≈ 2–4 well
  trained, > 6 random-like or under-trained, < 2 over-trained.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

PERCENTILES = (1, 25, 50, 75, 99)
MIN_TAIL = 5  # fewer tail eigenvalues make the α fit meaningless


@dataclass(frozen=True)
class PowerLawFit:
    alpha: float
    xmin: float
    ks_distance: float  # Kolmogorov–Smirnov distance of the tail fit (0 = perfect)
    n_tail: int


@dataclass(frozen=True)
class LayerWeights:
    layer: str  # parameter name without ".weight"
    shape: tuple[int, ...]
    mean: float
    var: float
    percentiles: Mapping[int, float]
    spectral_norm: float
    stable_rank: float
    alpha: PowerLawFit | None  # None when the layer has too few eigenvalues for a tail fit


def fit_power_law(eigs: torch.Tensor, min_tail: int = MIN_TAIL) -> PowerLawFit | None:
    """Clauset MLE for a continuous power law p(λ) ∝ λ^{−α}, λ ≥ xmin, xmin by minimum KS distance."""
    lam = torch.sort(eigs.to(torch.float64).clamp_min(0))[0]
    lam = lam[lam > lam.max() * 1e-12] if lam.numel() else lam
    best = None
    for i in range(0, max(lam.numel() - min_tail + 1, 0)):
        tail = lam[i:]
        xmin = tail[0]
        logs = torch.log(tail / xmin)
        s = logs.sum()
        if s <= 0:
            continue
        n = tail.numel()
        alpha = 1 + n / s
        empirical = torch.arange(n, dtype=torch.float64) / n  # CDF just below each sorted point
        fitted = 1 - (tail / xmin) ** (1 - alpha)
        d = torch.maximum((fitted - empirical).abs(), (fitted - (empirical + 1 / n)).abs()).max().item()
        if best is None or d < best.ks_distance:
            best = PowerLawFit(alpha.item(), xmin.item(), d, n)
    return best


def layer_weights(name: str, w: torch.Tensor) -> LayerWeights:
    w = w.detach().to("cpu", torch.float64)  # a small SVD per layer: the CPU is fine, numpy needs it
    flat = w.reshape(-1)
    q = np.percentile(flat.numpy(), PERCENTILES)  # torch.quantile refuses tensors over 2**24 elements
    m = w.reshape(w.shape[0], -1)
    sv = torch.linalg.svdvals(m)
    frob2 = (sv ** 2).sum().item()
    s1 = sv[0].item()
    eigs = sv ** 2 / max(m.shape)  # eigenvalues of WᵀW / N
    return LayerWeights(name, tuple(w.shape), flat.mean().item(), flat.var(unbiased=False).item(),
                        dict(zip(PERCENTILES, q.tolist())), s1, frob2 / s1 ** 2 if s1 > 0 else 0.0,
                        fit_power_law(eigs))


def weight_report(state: Mapping[str, torch.Tensor]) -> list[LayerWeights]:
    """Data-free metrics of every weight matrix (rank ≥ 2) of a state dict, in state-dict order."""
    out = []
    for name, t in state.items():
        if name.endswith("weight") and t.ndim >= 2:
            if not torch.isfinite(t).all():
                raise ValueError(f"layer {name!r} has non-finite weights")
            out.append(layer_weights(name.removesuffix(".weight"), t))
    return out
