"""Data-free weight metrics: need only a state dict, so they work on any uploaded checkpoint.

Per layer (every weight tensor of rank ≥ 2, reshaped to [out, in·k]):
- weight statistics: mean, variance and the 1/25/50/75/99th percentiles;
- spectral norm σ₁ and stable rank ‖W‖²_F / ‖W‖²₂;
- heavy-tailed self-regularisation (Martin & Mahoney 2021, *Implicit self-regularization in deep neural
  networks*): the eigenvalues λ of WᵀW/N (N = the larger dimension) and the power-law exponent α of their
  tail, fitted two ways (docs/power-law-alpha.md):
  * `fit_power_law`, the textbook Clauset–Shalizi–Newman (2009) estimator: α = 1 + n / Σ ln(λ_i / λ_min)
    over the n ≥ 5 eigenvalues ≥ λ_min, λ_min minimising the two-sided Kolmogorov–Smirnov distance D;
  * `fit_power_law_ww`, WeightWatcher 0.7.7's (Martin, Peng & Mahoney 2021, *Predicting trends in the
    quality of state-of-the-art neural networks without access to training or testing data*): the same
    MLE with a one-sided D, tails down to 2 eigenvalues, and below 20 eigenvalues a bias-corrected MLE
    on tails of ≥ 8; on WeightWatcher's layer ESD (`ww_eigenvalues`). The bands α ≈ 2–4 well
    trained, > 6 random-like or under-trained, < 2 over-trained are WeightWatcher's calibration: they hold
    for this α, not for the Clauset one (the two differ by > 5 % on 56 % of the default zoo's fitted layers).
A layer with no entries (a zero-size dimension) or complex weights is skipped with its reason, never a crash.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

PERCENTILES = (1, 25, 50, 75, 99)
MIN_TAIL = 5  # fewer tail eigenvalues make the Clauset α fit meaningless

# WeightWatcher 0.7.7's constants (weightwatcher/constants.py, WW_powerlaw.py), with their names there
WW_EVALS_THRESH = 1e-5  # EVALS_THRESH: eigenvalues of the unnormalised WᵀW at or below it are dropped
WW_MIN_EVALS = 8  # DEFAULT_MIN_EVALS: a layer whose smaller dimension M is below it is not analysed
WW_MAX_EVALS, WW_MAX_N = 15000, 50000  # DEFAULT_MAX_EVALS (on M), DEFAULT_MAX_N (on the larger dimension)
WW_SMALL_N = 20  # SMALL_N_CUTOFF: fewer eigenvalues take the small-sample estimator
WW_SMALL_N_MIN_TAIL = 8  # fit_powerlaw_smallN's k_min


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
    alpha: PowerLawFit | None  # Clauset; None when the layer has too few eigenvalues for a tail fit
    alpha_ww: PowerLawFit | None = None  # WeightWatcher's; None where WeightWatcher reports no fit


@dataclass(frozen=True)
class SkippedLayer:
    layer: str
    shape: tuple[int, ...]
    reason: str


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


def fit_power_law_ww(evals: torch.Tensor) -> PowerLawFit | None:
    """WeightWatcher 0.7.7's power-law fit (`WW_powerlaw.WWFit`, its default `pl_package="ww"`) of the
    eigenvalues of WᵀW above WW_EVALS_THRESH, reproducing the α, λ_min and D it reports.

    Each eigenvalue but the largest is a candidate λ_min; on the n eigenvalues ≥ it, α = 1 + n / Σ ln(λ_i/λ_min)
    and the one-sided D = max_i |F_fit(λ_i) − i/n| (i = 0 … n−1, the CDF just below each point; Clauset's
    D also compares i+1/n). The first candidate of smallest D wins (D = 1 where α ≤ 1). Below WW_SMALL_N
    eigenvalues only tails of ≥ 8 count and α = 1 + (n−1) / Σ ln(λ_i/λ_min) (bias-corrected); with no such
    tail, all eigenvalues. (WW's small-sample code ranks tails by J = D − 0.868/√n, but its WWFit constructor
    then re-selects by smallest D, overriding J for α, λ_min and D; only the length of its `fit.data` keeps
    J's cut. `n_tail` here is the tail α was fitted on.) None where WW's fit fails or degenerates (fewer
    than 2 eigenvalues, a flat spectrum, α ≤ 1 or infinite)."""
    data = np.sort(evals.detach().to("cpu", torch.float64).numpy())
    data = data[data > WW_EVALS_THRESH]
    n_all = len(data)
    if n_all < 2:
        return None
    logs = np.log(data)
    small = n_all < WW_SMALL_N
    alphas, ds = np.zeros(n_all - 1), np.ones(n_all - 1)  # as WW initialises them: skipped candidates keep D = 1
    with np.errstate(divide="ignore", over="ignore", invalid="ignore"):  # a flat tail gives α = ∞, as in WW
        for i in range(n_all - 1):
            n = n_all - i
            s = logs[i:].sum() - n * logs[i]  # Σ ln(λ_j / λ_min) over the tail
            if small and (n < WW_SMALL_N_MIN_TAIL or s <= 1e-12):
                continue
            alphas[i] = 1.0 + (n - 1.0 if small else n) / s
            if alphas[i] > 1.0:
                ds[i] = np.max(np.abs(1.0 - (data[i:] / data[i]) ** (1.0 - alphas[i]) - np.arange(n) / n))
        if small and not (alphas > 1.0).any():  # no valid tail of 8: WW fits all eigenvalues
            s = logs.sum() - n_all * logs[0]
            if s <= 1e-12:
                return None  # WW's "pathological case"
            alphas[0] = 1.0 + (n_all - 1.0) / s
            ds[0] = np.max(np.abs(np.arange(n_all) / n_all - (1.0 - (data / data[0]) ** (1.0 - alphas[0]))))
    i = int(np.argmin(ds))
    if not (np.isfinite(alphas[i]) and alphas[i] > 1.0):
        return None
    return PowerLawFit(float(alphas[i]), float(data[i]), float(ds[i]), int((data >= data[i]).sum()))


def ww_eigenvalues(w: torch.Tensor) -> torch.Tensor | None:
    """The layer ESD WeightWatcher 0.7.7 analyses: eigenvalues of WᵀW, unnormalised (normalisation would
    move only WW_EVALS_THRESH: α is scale-free). A matrix [out, in] as it is; a Conv2d [out, in, kh, kw] as
    its kh·kw kernel slices W[:, :, i, j] (out × in each) with their eigenvalues pooled, scaled by ½ (its
    conv2d_norm, W · √½). None where WW reports no α: smaller side M < WW_MIN_EVALS (or beyond its size
    limits), and every other rank — WW reads a state dict's 3-D tensor as an unknown layer type and a torch
    Conv1d as one matrix whose smaller side is its kernel size (skipped for kernels < 8)."""
    if w.ndim not in (2, 4):
        return None
    w = w.detach().to("cpu", torch.float64)
    taps = w.reshape(w.shape[0], w.shape[1], -1).permute(2, 0, 1)  # [kh·kw, out, in]; a matrix is one tap
    big, small = max(taps.shape[1:]), min(taps.shape[1:])
    if small < WW_MIN_EVALS or small > WW_MAX_EVALS or big > WW_MAX_N:
        return None
    evals = torch.linalg.svdvals(taps).reshape(-1) ** 2
    return evals * 0.5 if w.ndim == 4 else evals


def layer_weights(name: str, w: torch.Tensor) -> LayerWeights:
    w = w.detach().to("cpu", torch.float64)  # a small SVD per layer: the CPU is fine, numpy needs it
    flat = w.reshape(-1)
    q = np.percentile(flat.numpy(), PERCENTILES)  # torch.quantile refuses tensors over 2**24 elements
    m = w.reshape(w.shape[0], -1)
    sv = torch.linalg.svdvals(m)
    frob2 = (sv ** 2).sum().item()
    s1 = sv[0].item()
    eigs = sv ** 2 / max(m.shape)  # eigenvalues of WᵀW / N
    ww = ww_eigenvalues(w)
    return LayerWeights(name, tuple(w.shape), flat.mean().item(), flat.var(unbiased=False).item(),
                        dict(zip(PERCENTILES, q.tolist())), s1, frob2 / s1 ** 2 if s1 > 0 else 0.0,
                        fit_power_law(eigs), fit_power_law_ww(ww) if ww is not None else None)


def skip_reason(t: torch.Tensor) -> str | None:
    """Why a weight tensor cannot be measured (None: it can)."""
    if t.numel() == 0:
        return f"zero-size weight matrix (shape {tuple(t.shape)})"
    if t.is_complex():
        return f"complex weights ({t.dtype})"
    return None


def scan_weights(state: Mapping[str, torch.Tensor]) -> tuple[list[LayerWeights], list[SkippedLayer]]:
    """Every weight matrix (rank ≥ 2) of a state dict, in state-dict order: measured, or skipped with its
    reason. Non-finite weights are an error (the model is broken, not the layer unmeasurable)."""
    measured, skipped = [], []
    for name, t in state.items():
        if name.endswith("weight") and t.ndim >= 2:
            layer = name.removesuffix(".weight")
            if reason := skip_reason(t):
                skipped.append(SkippedLayer(layer, tuple(t.shape), reason))
                continue
            if not torch.isfinite(t).all():
                raise ValueError(f"layer {name!r} has non-finite weights")
            measured.append(layer_weights(layer, t))
    return measured, skipped


def weight_report(state: Mapping[str, torch.Tensor]) -> list[LayerWeights]:
    """Data-free metrics of every measurable weight matrix (rank ≥ 2) of a state dict, in state-dict order
    (`scan_weights` also names the skipped ones)."""
    return scan_weights(state)[0]
