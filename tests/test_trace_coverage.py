"""Do the trace estimators' standard errors mean what they say? Coverage over many seeds against exact traces.

For each matrix, z = (estimate − Tr A)/stderr over SEEDS independent runs: the ±2·stderr interval must cover
Tr A in ~95 % of them (within a binomial tolerance) and z must have a spread near 1. The adaptive Hutch++
of old (sequential stopping on its running stderr, pilot reused) failed this on real Hessians: 13 % of
|z| > 2 and a z spread of 1.4 on a network's last-layer block (docs/trace-estimators.md).
"""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from analysis.kernels.hessian import HessianOperator, dense_hessian
from analysis.kernels.relu_trace import relu_mlp_hessian_trace
from analysis.kernels.spectral import hutchinson, hutchpp

SEEDS = 300
# Student-t with 29 degrees of freedom (the fewest Hutch++ probes) covers 94.5 % within ±2; allow 3 binomial
# standard deviations of the coverage measured over SEEDS runs around it
COVERAGE, TOL = 0.945, 3 * math.sqrt(0.95 * 0.05 / SEEDS)


def rotated(eigenvalues: torch.Tensor, seed: int) -> torch.Tensor:
    n = eigenvalues.numel()
    q, _ = torch.linalg.qr(torch.randn(n, n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    return q @ torch.diag(eigenvalues) @ q.T


def flat(n: int = 200) -> torch.Tensor:
    """Eigenvalues spread evenly over [0.5, 1.5]: plain Hutchinson needs few probes; no deflation."""
    return rotated(torch.linspace(0.5, 1.5, n, dtype=torch.float64), 1)


def outliers(n: int = 300) -> torch.Tensor:
    """Three dominant eigenvalues over a small bulk of both signs: deflation pays."""
    g = torch.Generator().manual_seed(2)
    bulk = torch.randn(n - 3, generator=g, dtype=torch.float64) * 0.3
    return rotated(torch.cat([torch.tensor([50.0, 20.0, 8.0], dtype=torch.float64), bulk]), 3)


def relu_net() -> tuple[nn.Module, torch.Tensor, torch.Tensor]:
    """A small ReLU MLP trained a little on a noisy 4-class problem (its Hessian is not a random matrix)."""
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(4)
    x = torch.randn(256, 8, generator=g, dtype=torch.float64)
    y = ((x[:, 0] > 0).long() * 2 + (x[:, 1] > 0).long() + torch.randint(0, 2, (256,), generator=g)) % 4
    model = nn.Sequential(nn.Linear(8, 10), nn.ReLU(), nn.Linear(10, 16), nn.ReLU(), nn.Linear(16, 4)).double()
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(150):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


@pytest.fixture(scope="module")
def matrices() -> dict[str, torch.Tensor]:
    model, x, y = relu_net()
    H = dense_hessian(model, x, y)
    # the last layer's block, as `hessian_layers` sees it (the case the old estimator failed worst)
    with HessianOperator(model, x, y, names=["4.weight", "4.bias"]) as op:
        last = torch.stack([op.matvec(e) for e in torch.eye(op.n, dtype=torch.float64)], 1)
    return {"flat": flat(), "outliers": outliers(), "relu_net": (H + H.T) / 2, "relu_last_layer": (last + last.T) / 2}


@pytest.mark.slow
def test_the_network_hessian_is_the_exact_one(matrices):
    model, x, _ = relu_net()  # a ReLU net's Hessian trace has a closed form: the dense Hessian must match it
    assert torch.trace(matrices["relu_net"]).item() == pytest.approx(relu_mlp_hessian_trace(model, x), rel=1e-9)


def z_scores(estimate, A: torch.Tensor) -> tuple[torch.Tensor, int]:
    """z over SEEDS runs of estimate(matvec, n, seed) -> TraceResult, and the runs that were exact."""
    exact, zs, n_exact = torch.trace(A).item(), [], 0
    for seed in range(SEEDS):
        r = estimate(lambda v: A @ v, A.shape[0], seed)
        if r.stderr == 0:
            assert r.value == pytest.approx(exact, rel=1e-10, abs=1e-10)  # exact means exact
            n_exact += 1
            continue
        zs.append((r.value - exact) / r.stderr)
    return torch.tensor(zs, dtype=torch.float64), n_exact


def assert_calibrated(z: torch.Tensor, name: str) -> None:
    assert len(z) >= 200, f"{name}: only {len(z)} stochastic runs"
    coverage = (z.abs() <= 2).double().mean().item()
    assert abs(coverage - COVERAGE) <= TOL, f"{name}: ±2σ covers the exact trace in {coverage:.1%} of runs"
    assert 0.85 <= z.std().item() <= 1.15, f"{name}: z spread {z.std().item():.2f}, not ≈ 1"
    assert abs(z.mean().item()) <= 4 / math.sqrt(len(z)), f"{name}: z mean {z.mean().item():.2f} (biased)"


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flat", "outliers", "relu_net", "relu_last_layer"])
def test_hutchpp_stderr_covers_the_exact_trace(matrices, name):
    z, n_exact = z_scores(lambda mv, n, s: hutchpp(mv, n, sketch=10, rtol=0.02, seed=s), matrices[name])
    assert n_exact == 0  # these matrices are large enough for probes to be cheaper than the exact trace
    assert_calibrated(z, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["flat", "outliers", "relu_last_layer"])
def test_hutchinson_stderr_covers_the_exact_trace(matrices, name):
    z, _ = z_scores(lambda mv, n, s: hutchinson(mv, n, 30, seed=s), matrices[name])
    assert_calibrated(z, name)


def test_hutchpp_is_exact_where_probes_would_cost_more():
    A = flat(36)  # pilot + 30 fresh probes ≥ n: the n matvecs of Σ eᵢᵀAeᵢ are cheaper
    r = hutchpp(lambda v: A @ v, 36, sketch=10)
    assert (r.stderr, r.probes, r.matvecs) == (0.0, 0, 36)
    assert r.value == pytest.approx(torch.trace(A).item(), rel=1e-12)


def test_hutchpp_probe_count_is_fixed_before_the_probes_it_reports():
    A = outliers()
    r = hutchpp(lambda v: A @ v, 300, sketch=10, rtol=0.02, seed=0)
    assert r.probes >= 30
    assert r.matvecs == 10 + 2 * 10 + 10 + r.probes  # plain pilot, sketch, deflated pilot, fresh probes
    tight = hutchpp(lambda v: A @ v, 300, sketch=10, rtol=1e-6, max_probes=50, seed=0)
    assert tight.probes == 50  # the cap binds: an honest, larger stderr rather than a stopping rule's


@pytest.mark.slow
def test_the_coverage_bench_runs_and_prints_its_table():
    """bench/trace_coverage.py's quick mode (fewer seeds still): it runs and prints one row per matrix and
    estimator — a bench that can no longer break silently. No timing is asserted."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    out = subprocess.run([sys.executable, "bench/trace_coverage.py", "--quick", "--seeds", "12"], cwd=root,
                         env={**os.environ, "OMP_NUM_THREADS": "1"},
                         capture_output=True, text=True, timeout=600, check=True).stdout
    rows = [line for line in out.splitlines() if "hutchpp" in line or "hutchinson" in line]
    assert len(rows) >= 4 and all(len(r.split()) >= 6 for r in rows), out
