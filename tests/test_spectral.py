"""Spectral algorithms on plain matrices against dense linear algebra."""
import math

import pytest
import torch

from analysis.kernels.spectral import hutchinson, hutchpp, lanczos_topk, slq_density


def sym(n: int, seed: int = 0, spread: float = 1.0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=g, dtype=torch.float64))
    # a Hessian-like spectrum: a few large outliers, a bulk near zero, some negative values
    eig = torch.cat([torch.tensor([50.0, 20.0, 8.0]), torch.randn(n - 3, generator=g, dtype=torch.float64) * spread])
    return q @ torch.diag(eig) @ q.T


@pytest.mark.parametrize("k", [1, 3])
def test_lanczos_topk_matches_eigvalsh(k):
    A = sym(200)
    res = lanczos_topk(lambda v: A @ v, 200, k, tol=1e-10)
    exact = torch.linalg.eigvalsh(A).flip(0)[:k]
    assert res.converged
    torch.testing.assert_close(res.values, exact, rtol=1e-8, atol=0)
    for i in range(k):  # residuals are honest: ‖A y − θ y‖ equals the reported bound
        y = res.vectors[:, i]
        assert (A @ y - res.values[i] * y).norm() == pytest.approx(res.residuals[i].item(), abs=1e-8)
    assert res.matvecs < 60  # far fewer than n


def test_lanczos_from_a_start_vector():
    A = sym(200)
    exact = torch.linalg.eigvalsh(A).flip(0)[:2]
    start = torch.linalg.eigh(A)[1][:, -1] + 0.1 * torch.randn(200, dtype=torch.float64,
                                                                generator=torch.Generator().manual_seed(9))
    res = lanczos_topk(lambda v: A @ v, 200, 2, tol=1e-10, start=start)
    torch.testing.assert_close(res.values, exact, rtol=1e-8, atol=0)
    zero = lanczos_topk(lambda v: A @ v, 200, 1, tol=1e-10, start=torch.zeros(200, dtype=torch.float64))
    assert zero.values[0].item() == pytest.approx(exact[0].item(), rel=1e-8)  # falls back to a random start


def test_lanczos_reports_non_convergence():
    A = sym(300, spread=5.0)
    res = lanczos_topk(lambda v: A @ v, 300, 3, tol=1e-14, max_iter=5)
    assert not res.converged and res.matvecs == 5


def test_hutchinson_unbiased_within_stderr():
    A = sym(100)
    exact = torch.trace(A).item()
    res = hutchinson(lambda v: A @ v, 100, 400, seed=1)
    assert abs(res.value - exact) < 3 * res.stderr


def test_hutchpp_beats_hutchinson_and_is_honest():
    A = sym(300, spread=0.3)
    exact = torch.trace(A).item()
    errs_pp, errs_h = [], []
    for seed in range(5):
        pp = hutchpp(lambda v: A @ v, 300, sketch=10, rtol=1e-9, max_probes=40, seed=seed)
        h = hutchinson(lambda v: A @ v, 300, pp.matvecs, seed=seed)
        assert abs(pp.value - exact) < 4 * pp.stderr + 1e-9
        errs_pp.append(abs(pp.value - exact))
        errs_h.append(abs(h.value - exact))
    assert sum(errs_pp) < sum(errs_h) / 2  # same matvec budget, much smaller error


def test_hutchpp_exact_on_low_rank():
    g = torch.Generator().manual_seed(0)
    u = torch.randn(80, 5, generator=g, dtype=torch.float64)
    A = u @ u.T
    res = hutchpp(lambda v: A @ v, 80, sketch=10, seed=0)
    assert res.value == pytest.approx(torch.trace(A).item(), rel=1e-9)


def test_slq_density_integrates_to_one_and_covers_the_spectrum():
    A = sym(150)
    d = slq_density(lambda v: A @ v, 150, probes=4, steps=60)
    integral = torch.trapezoid(d.density, d.grid).item()
    assert integral == pytest.approx(1.0, abs=1e-3)
    exact = torch.linalg.eigvalsh(A)
    assert d.nodes.max().item() == pytest.approx(exact[-1].item(), rel=1e-6)  # extremes converge first
    assert d.nodes.min().item() == pytest.approx(exact[0].item(), rel=1e-3)
    assert torch.allclose(d.weights.sum(1), torch.ones(4, dtype=torch.float64))
    # mass of the three outliers ≈ 3/150
    mass = d.weights[d.nodes > 5].sum().item() / 4
    assert mass == pytest.approx(3 / 150, abs=0.015)
    assert math.isfinite(d.sigma) and d.sigma > 0


def test_lanczos_basis_holds_only_the_rows_it_made():
    """n = 300,000 with max_iter = n: a basis allocated up front would be 720 GB; one that grows holds the few
    rows a fast-converging run makes (a spectrum with three distinct values: exact after 3 steps)."""
    n = 300_000
    d = torch.ones(n, dtype=torch.float64)
    d[:10], d[10:20] = 4.0, 2.0
    res = lanczos_topk(lambda v: d * v, n, 1, tol=1e-10, max_iter=n, start=torch.ones(n, dtype=torch.float64))
    assert res.converged and res.matvecs <= 4
    assert res.values[0].item() == pytest.approx(4.0, rel=1e-10)
