"""Linear centered kernel alignment (CKA) between two representations of the same n inputs.

Kornblith, Norouzi, Lee & Hinton 2019, *Similarity of Neural Network Representations Revisited*, in the
feature-space form (never building the n × n Gram matrices: O(n d²) instead of O(n² d)):

    CKA(X, Y) = ‖X̃ᵀỸ‖²_F / (‖X̃ᵀX̃‖_F ‖ỸᵀỸ‖_F),   X̃, Ỹ column-centred, X [n, d1], Y [n, d2]

1 for identical representations up to an orthogonal transform and isotropic scaling. The debiased variant
replaces each HSIC by the unbiased estimator of Song et al. 2012 (as in Kornblith's reference code), which
removes the upward bias of the plain estimator at small n.
"""
from __future__ import annotations

import torch


def _centre(x: torch.Tensor) -> torch.Tensor:
    x = x.to(torch.float64).reshape(len(x), -1)
    return x - x.mean(0, keepdim=True)


def _hsic_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Unbiased HSIC (up to a constant factor) of linear kernels, from features [n, d]."""
    n = x.shape[0]
    dx, dy = (x * x).sum(1), (y * y).sum(1)  # Gram diagonals ‖x_i‖², ‖y_i‖²
    tr_kl = (x.T @ y).pow(2).sum() - (dx * dy).sum()  # Σ_{i≠j} K_ij L_ij
    k1 = x @ x.sum(0) - dx  # K̃ 1 (K̃: Gram matrix with zeroed diagonal)
    l1 = y @ y.sum(0) - dy
    return (tr_kl + k1.sum() * l1.sum() / ((n - 1) * (n - 2)) - 2 * (k1 @ l1) / (n - 2)) / (n * (n - 3))


def linear_cka(x: torch.Tensor, y: torch.Tensor, debiased: bool = False) -> float:
    """CKA between representations x [n, ...] and y [n, ...] of the same n inputs (float64 inside)."""
    if x.shape[0] != y.shape[0]:
        raise ValueError(f"CKA needs the same inputs: {x.shape[0]} vs {y.shape[0]} rows")
    if x.shape[0] < (4 if debiased else 2):
        raise ValueError(f"CKA needs at least {4 if debiased else 2} inputs, got {x.shape[0]}")
    x, y = _centre(x), _centre(y)
    if debiased:
        xy, xx, yy = _hsic_unbiased(x, y), _hsic_unbiased(x, x), _hsic_unbiased(y, y)
    else:
        xy, xx, yy = (x.T @ y).pow(2).sum(), (x.T @ x).pow(2).sum(), (y.T @ y).pow(2).sum()
    denom = (xx * yy).sqrt()
    if not denom > 0:  # also NaN: a negative debiased self-HSIC at tiny n
        raise ValueError("CKA is undefined for a constant representation")
    return (xy / denom).item()
