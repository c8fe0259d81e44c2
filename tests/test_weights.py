"""Data-free weight metrics against direct computations, a planted power law and WeightWatcher 0.7.7."""
import numpy as np
import pytest
import torch
from torch import nn

from analysis.kernels.weights import (
    fit_power_law,
    fit_power_law_ww,
    layer_weights,
    scan_weights,
    weight_report,
    ww_eigenvalues,
)
from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import ModelInput


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


# ----------------------------------------------------------------------------- WeightWatcher-compatible α
def test_ww_fit_differs_from_clauset_where_the_methods_differ():
    """Noise with two strong directions: the one-sided D of WeightWatcher's fit and the two-sided D of
    Clauset's choose different tails, and the exponents differ by far more than either fit's noise."""
    w = np.random.default_rng(8).standard_normal((50, 25))
    w[:, :2] *= 4
    w = torch.as_tensor(w)
    ww = fit_power_law_ww(ww_eigenvalues(w))
    clauset = fit_power_law(torch.linalg.svdvals(w) ** 2 / 50)
    assert (ww.n_tail, clauset.n_tail) == (11, 21) and ww.alpha - clauset.alpha > 0.8


def test_ww_fit_recovers_a_planted_exponent():
    u = torch.rand(4000, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    fit = fit_power_law_ww((1 - u) ** (-1 / (3.0 - 1)))  # Pareto, α = 3, xmin = 1
    assert fit.alpha == pytest.approx(3.0, abs=0.2) and fit.ks_distance < 0.05


def test_ww_degenerate_inputs_give_no_fit():
    assert fit_power_law_ww(torch.tensor([1.0])) is None  # one eigenvalue
    assert fit_power_law_ww(torch.full((10,), 2.0)) is None  # WW's "pathological" flat spectrum
    assert fit_power_law_ww(torch.full((30,), 1e-6)) is None  # all below WW_EVALS_THRESH


def test_ww_layer_esd():
    """WW skips layers whose smaller side is < 8 and tensors of rank 3; a Conv2d's kernel slices are pooled
    (× ½, its conv2d_norm)."""
    assert ww_eigenvalues(torch.randn(40, 7)) is None and ww_eigenvalues(torch.randn(7, 40)) is None
    assert ww_eigenvalues(torch.randn(16, 8, 3)) is None
    w = torch.randn(16, 8, 3, 3, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    taps = torch.cat([torch.linalg.svdvals(w[:, :, i, j]) ** 2 for i in range(3) for j in range(3)])
    assert torch.allclose(ww_eigenvalues(w).sort()[0], 0.5 * taps.sort()[0])
    assert layer_weights("fc", torch.randn(30, 20)).alpha_ww is not None


# ----------------------------------------------------------------------------- layers that cannot be measured
def test_zero_size_layers_are_skipped_with_a_reason():
    state = {"0.weight": torch.randn(8, 4), "1.weight": torch.zeros(0, 5), "2.weight": torch.zeros(3, 0, 2)}
    measured, skipped = scan_weights(state)
    assert [lw.layer for lw in measured] == ["0"]
    assert [(s.layer, s.reason) for s in skipped] == [("1", "zero-size weight matrix (shape (0, 5))"),
                                                      ("2", "zero-size weight matrix (shape (3, 0, 2))")]
    assert [lw.layer for lw in weight_report(state)] == ["0"]


def test_weights_metric_on_a_model_with_a_zero_size_layer():
    """The registered metric measures the real layers and skips the empty one (it used to raise
    IndexError); a model with nothing measurable gets no rows rather than a division by zero."""
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 0))
    rows = get_metric("weights")(ModelInput("m", model, None))
    assert {r.layer for r in rows} == {"0", None}
    per_model = {r.metric: r.value for r in rows if r.layer is None}
    assert set(per_model) >= {"spectral_norm", "stable_rank", "alpha_ww"}
    assert get_metric("weights")(ModelInput("empty", nn.Sequential(nn.Linear(3, 0)), None)) == []


# WeightWatcher 0.7.7 as an outside oracle. The numbers below were produced once in a scratch venv
# (python3 -m venv /tmp/wwvenv; pip install weightwatcher-0.7.7-py3-none-any.whl, from
# `pip download --no-deps weightwatcher==0.7.7`; torch read from this project's venv, appended last to
# sys.path) on the same numpy-seeded matrices:
# FIT: `weightwatcher.WW_powerlaw.WWFit(ev)` with ev = np.linalg.svd(W, compute_uv=False)**2, ev > 1e-5
#      (α, D, λ_min as WW reports them);
# ANALYZE: `weightwatcher.WeightWatcher(model=state_dict).analyze()` (defaults) on torch tensors of them
#      (α, D, λ_min, num_evals; WW's fast SVD runs in float32, hence the looser tolerance).
WW_FIT = {  # name: (matrix, α, D, λ_min)
    "gauss_64x32": (lambda: np.random.default_rng(0).standard_normal((64, 32)),
                    3.377076965325202, 0.17583099041777228, 67.12882639044635),
    "student3_100x50": (lambda: np.random.default_rng(1).standard_t(3, size=(100, 50)),
                        3.444873173815666, 0.15288099703849056, 361.51438611187734),
    "gauss_30x12_small_n": (lambda: np.random.default_rng(2).standard_normal((30, 12)),
                            1.8469209945857106, 0.20263575272080037, 9.094524031048493),
    "student2_40x16_small_n": (lambda: np.random.default_rng(3).standard_t(2, size=(40, 16)),
                               1.8257188897368126, 0.0808479049855752, 101.75042142408701),
    "cauchy_10x7_no_tail_of_8": (lambda: np.random.default_rng(4).standard_cauchy(size=(10, 7)),
                                 1.2437087697363494, 0.09410202603547074, 9.348937992948592),
}


@pytest.mark.parametrize("name", sorted(WW_FIT))
def test_ww_fit_matches_weightwatcher(name):
    make, alpha, d, xmin = WW_FIT[name]
    fit = fit_power_law_ww(torch.linalg.svdvals(torch.as_tensor(make())) ** 2)
    assert (fit.alpha, fit.ks_distance, fit.xmin) == pytest.approx((alpha, d, xmin), rel=1e-10)


def test_ww_layers_match_weightwatcher_analyze():
    """Layer handling too: a Conv2d's pooled kernel slices, and the layers WW skips (a side < 8, 3-D)."""
    rng = np.random.default_rng(6)
    skipped = {"a": rng.standard_normal((40, 7)), "b": rng.standard_normal((16, 12, 3))}
    state = {"fc": np.random.default_rng(0).standard_normal((64, 32)),
             "conv": np.random.default_rng(5).standard_normal((16, 12, 3, 3)),
             "c": rng.standard_t(2, size=(40, 16)), "e": rng.standard_normal((113, 128))}
    analyze = {"fc": (3.3770769537590146, 0.1758309918341885, 67.12882619429688, 32),
               "conv": (8.375586631152178, 0.09725226882806204, 18.59739793915116, 108),
               "c": (2.0343613029239496, 0.08362512798758359, 180.89122625341057, 16),
               "e": (10.67822014439701, 0.13026636303027417, 368.5854970230196, 113)}
    for name, w in skipped.items():
        assert ww_eigenvalues(torch.as_tensor(w)) is None, name
    for name, (alpha, d, xmin, n) in analyze.items():
        ev = ww_eigenvalues(torch.as_tensor(state[name]))
        fit = fit_power_law_ww(ev)
        assert len(ev) == n and (fit.alpha, fit.ks_distance, fit.xmin) == pytest.approx((alpha, d, xmin), rel=1e-6)


def test_the_partial_recompute_emits_exactly_the_changed_outputs():
    """analysis.runner.recompute's weights rule (version 1 → 2) emits every changed output, declared by `weights`,
    and nothing else (the carried rows of the other outputs must not be duplicated)."""
    from analysis.metrics.definitions import WEIGHTS_V2_CHANGED, weights_ww_only

    torch.manual_seed(0)
    m = ModelInput("m", nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 10)), None)
    assert {v.metric for v in weights_ww_only(m)} == set(WEIGHTS_V2_CHANGED)
    assert set(WEIGHTS_V2_CHANGED) <= {o.name for o in get_metric("weights").outputs}
