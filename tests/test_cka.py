"""Linear CKA: invariances and agreement with the naive Gram-matrix formulas."""
import pytest
import torch

from analysis.kernels.cka import linear_cka


def feats(n=60, d=7, seed=0):
    return torch.randn(n, d, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def naive_hsic(K, L, debiased):
    n = K.shape[0]
    if not debiased:
        H = torch.eye(n, dtype=K.dtype) - 1.0 / n
        return torch.trace(K @ H @ L @ H)
    K, L = K.clone(), L.clone()
    K.fill_diagonal_(0)
    L.fill_diagonal_(0)
    one = torch.ones(n, dtype=K.dtype)
    return (torch.trace(K @ L) + (one @ K @ one) * (one @ L @ one) / ((n - 1) * (n - 2))
            - 2 / (n - 2) * (one @ K @ L @ one)) / (n * (n - 3))


def naive_cka(x, y, debiased=False):
    x, y = x - x.mean(0), y - y.mean(0)  # as the feature form does, before the Gram matrices
    K, L = x @ x.T, y @ y.T
    return (naive_hsic(K, L, debiased) / (naive_hsic(K, K, debiased) * naive_hsic(L, L, debiased)).sqrt()).item()


@pytest.mark.parametrize("debiased", [False, True])
def test_equals_naive_gram_computation(debiased):
    x, y = feats(), feats(d=4, seed=1) + 0.5 * feats(d=4, seed=2)
    assert linear_cka(x, y, debiased) == pytest.approx(naive_cka(x, y, debiased), rel=1e-10)


@pytest.mark.parametrize("debiased", [False, True])
def test_identity_rotation_and_scale_invariance(debiased):
    x = feats()
    q, _ = torch.linalg.qr(torch.randn(7, 7, generator=torch.Generator().manual_seed(3), dtype=torch.float64))
    assert linear_cka(x, x, debiased) == pytest.approx(1.0, abs=1e-12)
    assert linear_cka(x, 3.7 * x @ q, debiased) == pytest.approx(1.0, abs=1e-10)
    y = feats(seed=5)
    assert linear_cka(x, y, debiased) == pytest.approx(linear_cka(x @ q * 0.2, y, debiased), rel=1e-10)
    assert linear_cka(x, y + 10.0, debiased) == pytest.approx(linear_cka(x, y, debiased), rel=1e-10)  # centring


def test_independent_features_have_low_cka_and_debiasing_lowers_it():
    x, y = feats(n=200, d=10, seed=0), feats(n=200, d=10, seed=1)
    biased, unbiased = linear_cka(x, y), linear_cka(x, y, debiased=True)
    assert 0 < biased < 0.2 and abs(unbiased) < biased


def test_bad_input():
    with pytest.raises(ValueError, match="same inputs"):
        linear_cka(feats(n=10), feats(n=11))
    with pytest.raises(ValueError, match="constant"):
        linear_cka(feats(), torch.ones(60, 3, dtype=torch.float64))
