"""Spectral algorithms on symmetric linear operators given only as `matvec` (no matrix needed).

Kept apart from *which* operator (a Hessian: analysis.hessian), so each algorithm is tested on plain
matrices against `torch.linalg.eigvalsh`. All recurrences run in float64 whatever the operator's dtype
(in float32 a Lanczos basis loses orthogonality and settles ~1e-4 off while its residual claims
convergence). Every result is a frozen dataclass carrying its uncertainty and its cost in matvecs.

- Lanczos with full reorthogonalisation for the top-k eigenvalues (Golub & Van Loan, *Matrix
  Computations*, §10.1); residual r = ‖Ay − θy‖ = |β_m s_m| for each Ritz pair, and the eigenvalue error
  estimate min(r, r²/gap) (Parlett, *The Symmetric Eigenvalue Problem*, §11.7): the error of a Ritz value
  falls as the square of its residual. r alone is a rigorous bound; r²/gap is one once the gap (taken from
  the Ritz values) is, i.e. when the neighbouring Ritz value has converged too.
- Hutchinson's trace estimator with Rademacher probes (Hutchinson 1989).
- Hutch++ (Meyer, Musco, Musco & Woodruff 2021): exact trace on a sketched top subspace plus Hutchinson
  on the deflated rest; here with adaptive stopping on the standard error (cf. Persson et al. 2022).
- Stochastic Lanczos quadrature for the spectral density (Ghorbani, Krishnan & Xiao 2019; Lin, Saad &
  Yang 2016), Gaussian-smoothed.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch

MatVec = Callable[[torch.Tensor], torch.Tensor]  # [n] float64 -> [n] float64
F64 = torch.float64


@dataclass(frozen=True)
class EigResult:
    values: torch.Tensor  # [k] largest algebraic eigenvalues, descending
    residuals: torch.Tensor  # [k] ‖A y − θ y‖ for unit Ritz vectors y
    error_bounds: torch.Tensor  # [k] estimate of |θ − λ|: min(r, r²/gap), gap to the nearest other Ritz value
    vectors: torch.Tensor  # [n, k] unit Ritz vectors
    matvecs: int
    converged: bool


@dataclass(frozen=True)
class TraceResult:
    value: float
    stderr: float  # standard error of the stochastic part (0 if exact)
    matvecs: int


@dataclass(frozen=True)
class Density:
    grid: torch.Tensor  # [g] eigenvalue axis
    density: torch.Tensor  # [g] smoothed spectral density, integrates to ~1 over the grid
    nodes: torch.Tensor  # [probes, m] Ritz values of each probe's Lanczos run
    weights: torch.Tensor  # [probes, m] quadrature weights (each row sums to 1)
    sigma: float  # Gaussian smoothing width, in eigenvalue units
    matvecs: int


def _rademacher(n: int, count: int, gen: torch.Generator) -> torch.Tensor:  # [n, count] of ±1
    return torch.randint(0, 2, (n, count), generator=gen, dtype=F64).mul_(2).sub_(1)


def _lanczos_basis(matvec: MatVec, v0: torch.Tensor, steps: int,
                   stop: Callable[[torch.Tensor, torch.Tensor, float, int], bool] | None = None):
    """Run up to `steps` Lanczos iterations from v0 with full reorthogonalisation.

    Returns (Q [n, m], alpha [m], beta [m]) where beta[j] couples q_j and q_{j+1} (beta[-1]: the next one).
    `stop(alpha, beta, beta_next, m)` may end the run early (it sees the tridiagonal so far).
    """
    n = v0.numel()
    Q = torch.empty(steps, n, dtype=F64, device=v0.device)  # basis as rows: each one contiguous
    alpha = torch.zeros(steps, dtype=F64)
    beta = torch.zeros(steps, dtype=F64)
    q = v0 / v0.norm()
    m = 0
    for j in range(steps):
        Q[j] = q
        w = matvec(q)
        alpha[j] = torch.dot(q, w).item()
        B = Q[:j + 1]
        w = w - B.T @ (B @ w)  # full reorthogonalisation, twice is enough
        w = w - B.T @ (B @ w)
        b = w.norm().item()
        beta[j] = b
        m = j + 1
        if b < 1e-12 * max(1.0, abs(alpha[j].item())) or (stop is not None and stop(alpha[:m], beta[:m], b, m)):
            break
        q = w / b
    return Q[:m].T, alpha[:m], beta[:m]


def _tridiag_eig(alpha: torch.Tensor, beta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    m = alpha.numel()
    T = torch.diag(alpha)
    if m > 1:
        off = beta[:m - 1]
        T += torch.diag(off, 1) + torch.diag(off, -1)
    return torch.linalg.eigh(T)  # ascending


def _ritz_bounds(theta: torch.Tensor, res: torch.Tensor, idx: torch.Tensor) -> torch.Tensor:
    """min(r, r²/gap) for the Ritz values theta[idx] (theta ascending, res [m] the residuals of all)."""
    res = res[idx]
    if theta.numel() == 1:
        return res
    others = (theta[idx, None] - theta[None, :]).abs()
    others[torch.arange(len(idx)), idx] = float("inf")
    gap = others.min(1).values
    return torch.minimum(res, res ** 2 / gap.clamp_min(1e-300))


def lanczos_topk(matvec: MatVec, n: int, k: int = 1, *, tol: float = 1e-6, max_iter: int = 100, seed: int = 0,
                 device: torch.device | str = "cpu", start: torch.Tensor | None = None) -> EigResult:
    """Top-k (largest algebraic) eigenvalues of a symmetric operator.

    Stops when the error estimate of each of the top k Ritz values is below tol × |θ|. `start` (default: a
    seeded Gaussian vector) is the Krylov space's first vector; one rich in the top eigenvectors converges
    in fewer matvecs.
    """
    if not 1 <= k <= n:
        raise ValueError(f"k must be in [1, {n}], got {k}")
    if start is not None and start.norm() > 0:
        v0 = start.to(device=device, dtype=F64)
    else:
        v0 = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=F64).to(device)

    def top_bounds(alpha, beta, b_next):
        theta, S = _tridiag_eig(alpha, beta)
        m = theta.numel()
        top = torch.arange(m - 1, max(m - k, 0) - 1, -1)
        res = (b_next * S[-1, top]).abs()
        return theta, S, top, res, _ritz_bounds(theta, (b_next * S[-1]).abs(), top)

    def stop(alpha, beta, b_next, m):
        if m < k + 1:  # at least one Ritz value beyond the k wanted, for a gap
            return False
        theta, _, top, _, bound = top_bounds(alpha, beta, b_next)
        return bool((bound <= tol * theta[top].abs().clamp_min(1e-30)).all())

    Q, alpha, beta = _lanczos_basis(matvec, v0, min(max_iter, n), stop)
    theta, S, top, res, bound = top_bounds(alpha, beta, beta[-1].item())
    values = theta[top]
    converged = bool((bound <= tol * values.abs().clamp_min(1e-30)).all()) or alpha.numel() == n
    return EigResult(values, res, bound, Q @ S[:, top].to(Q.device), alpha.numel(), converged)


def hutchinson(matvec: MatVec, n: int, probes: int, *, seed: int = 0, device: torch.device | str = "cpu") -> TraceResult:
    """Tr A ≈ mean of zᵀAz over Rademacher z; stderr = sample std / √probes."""
    if probes < 2:
        raise ValueError("hutchinson needs at least 2 probes for a standard error")
    gen = torch.Generator().manual_seed(seed)
    probe = lambda: _rademacher(n, 1, gen).to(device)[:, 0]  # one at a time: n × probes could be GBs
    samples = torch.stack([torch.dot(z, matvec(z)) for z in (probe() for _ in range(probes))])
    return TraceResult(samples.mean().item(), (samples.std() / math.sqrt(probes)).item(), probes)


def hutchpp(matvec: MatVec, n: int, *, sketch: int = 20, rtol: float = 0.02, min_probes: int = 10,
            max_probes: int = 1000, seed: int = 0, device: torch.device | str = "cpu") -> TraceResult:
    """Adaptive Hutch++ with a standard-error stopping rule.

    Hutch++ splits Tr A = Tr(QᵀAQ) + Tr((I−QQᵀ)A(I−QQᵀ)), Q an orthonormal basis of A·S (S: `sketch`
    Rademacher columns): the first term is exact (2·sketch matvecs), the second is estimated by Hutchinson on
    deflated probes, which pays when a few eigenvalues carry most of ‖A‖_F. It first spends `min_probes`
    plain Hutchinson probes to measure the variance; if plain Hutchinson would reach `rtol` (standard error
    ≤ rtol × |estimate|) in fewer matvecs than deflation costs, it simply continues them — so it is never
    much worse than Hutchinson and far better on spectra dominated by outliers.
    """
    gen = torch.Generator().manual_seed(seed)
    quad = lambda g: torch.dot(g, matvec(g)).item()
    max_probes = min(max_probes, n)  # beyond n matvecs the exact trace (Σ eᵢᵀAeᵢ) would be cheaper

    def sequential(samples: list[float], offset: float, project, matvecs: int) -> TraceResult:
        while True:
            t = torch.tensor(samples, dtype=F64)
            est = offset + t.mean().item()
            se = (t.std() / math.sqrt(len(t))).item() if len(t) > 1 else float("inf")
            if (len(t) >= min_probes and se <= rtol * abs(est)) or len(t) >= max_probes:
                return TraceResult(est, se, matvecs)
            samples.append(quad(project(_rademacher(n, 1, gen).to(device)[:, 0])))
            matvecs += 1

    plain = [quad(_rademacher(n, 1, gen).to(device)[:, 0]) for _ in range(min_probes)]
    t = torch.tensor(plain, dtype=F64)
    needed = (t.std() / (rtol * abs(t.mean()) + 1e-300)).item() ** 2  # probes plain Hutchinson would need
    sketch = min(sketch, n)
    if needed <= min_probes + 2 * sketch:
        return sequential(plain, 0.0, lambda g: g, min_probes)
    S = _rademacher(n, sketch, gen).to(device)
    Q, _ = torch.linalg.qr(torch.stack([matvec(S[:, i]) for i in range(sketch)], 1))
    exact = sum(quad(Q[:, i]) for i in range(sketch))
    if sketch == n:
        return TraceResult(exact, 0.0, min_probes + 2 * sketch)
    project = lambda g: g - Q @ (Q.T @ g)
    first = [quad(project(_rademacher(n, 1, gen).to(device)[:, 0])) for _ in range(2)]
    return sequential(first, exact, project, min_probes + 2 * sketch + 2)


def slq_density(matvec: MatVec, n: int, *, probes: int = 5, steps: int = 60, grid_points: int = 400,
                sigma_frac: float = 0.01, seed: int = 0, device: torch.device | str = "cpu") -> Density:
    """Stochastic Lanczos quadrature: each Gaussian probe's Lanczos tridiagonal gives nodes θ_j and weights
    τ_j = (first component of its eigenvector)²; the density is the probe-averaged sum of Gaussians
    N(θ_j, σ²) weighted by τ_j, with σ = `sigma_frac` × the spread of all nodes."""
    gen = torch.Generator().manual_seed(seed)
    steps = min(steps, n)
    nodes = torch.zeros(probes, steps, dtype=F64)
    weights = torch.zeros(probes, steps, dtype=F64)
    matvecs = 0
    for p in range(probes):
        v0 = torch.randn(n, generator=gen, dtype=F64).to(device)
        _, alpha, beta = _lanczos_basis(matvec, v0, steps)
        theta, S = _tridiag_eig(alpha, beta)
        m = theta.numel()
        nodes[p, :m], weights[p, :m] = theta, S[0] ** 2
        if m < steps:  # invariant subspace found early: pad with zero-weight copies of a real node
            nodes[p, m:] = theta[-1]
        matvecs += m
    lo, hi = nodes.min().item(), nodes.max().item()
    sigma = sigma_frac * max(hi - lo, 1e-12)
    grid = torch.linspace(lo - 6 * sigma, hi + 6 * sigma, grid_points, dtype=F64)
    gauss = torch.exp(-0.5 * ((grid[:, None, None] - nodes[None]) / sigma) ** 2) / (sigma * math.sqrt(2 * math.pi))
    density = (gauss * weights[None]).sum(-1).mean(-1)  # [g]
    return Density(grid, density, nodes, weights, sigma, matvecs)
