"""Data-free weight metrics against direct computations and a planted power law."""
import pytest
import torch

from analysis.weights import fit_power_law, layer_weights, weight_report


def test_layer_statistics():
    w = torch.randn(30, 20, generator=torch.Generator().manual_seed(0))
    lw = layer_weights("fc", w)
    sv = torch.linalg.svdvals(w.double())
    assert lw.spectral_norm == pytest.approx(sv[0].item(), rel=1e-10)
    assert lw.stable_rank == pytest.approx((sv ** 2).sum().item() / sv[0].item() ** 2, rel=1e-10)
    assert lw.mean == pytest.approx(w.double().mean().item(), abs=1e-12)
    assert lw.percentiles[50] == pytest.approx(w.double().median().item(), abs=0.05)
    assert lw.alpha is not None and lw.alpha.n_tail >= 5


def test_power_law_recovers_planted_exponent():
    g = torch.Generator().manual_seed(0)
    u = torch.rand(4000, generator=g, dtype=torch.float64)
    samples = (1 - u) ** (-1 / (3.0 - 1))  # Pareto with α = 3, xmin = 1
    fit = fit_power_law(samples)
    assert fit.alpha == pytest.approx(3.0, abs=0.15)
    assert fit.ks_distance < 0.05


def test_too_few_eigenvalues_give_no_fit():
    assert fit_power_law(torch.tensor([1.0, 2.0, 3.0])) is None
    assert layer_weights("tiny", torch.randn(2, 40)).alpha is None


def test_report_skips_biases_and_refuses_nan():
    state = {"0.weight": torch.randn(8, 4), "0.bias": torch.randn(8), "1.weight": torch.randn(3, 8)}
    assert [lw.layer for lw in weight_report(state)] == ["0", "1"]
    state["1.weight"][0, 0] = float("nan")
    with pytest.raises(ValueError, match="'1.weight' has non-finite"):
        weight_report(state)


def test_layers_beyond_torch_quantile_limit():
    """Percentiles of a layer with more than 2**24 weights (torch.quantile's limit), against a sort."""
    w = torch.linspace(-1, 1, 2**24 + 3).reshape(-1, 1)
    lw = layer_weights("big", w)
    assert lw.percentiles[50] == pytest.approx(0.0, abs=1e-6)
    assert lw.percentiles[1] == pytest.approx(-0.98, abs=1e-6) and lw.percentiles[99] == pytest.approx(0.98, abs=1e-6)
