"""Mode connectivity: sign convention, planted barriers, and the trained curve lowering a barrier."""
import pytest
import torch
from torch import nn

from analysis.connectivity import bezier_curve, garipov_lr, linear_path, mc_from_profile


def test_mc_sign_convention():
    t = (0.0, 0.25, 0.5, 0.75, 1.0)
    assert mc_from_profile(t, (10, 10, 10, 10, 10)) == (0.0, 0.0, True)
    mc, t_star, ends = mc_from_profile(t, (10, 20, 40, 20, 10))  # a barrier of 30 points
    assert (mc, t_star, ends) == (-30.0, 0.5, False)
    mc, t_star, _ = mc_from_profile(t, (30, 20, 5, 20, 30))  # better than the ends: not converged
    assert (mc, t_star) == (25.0, 0.5)
    mc, t_star, ends = mc_from_profile(t, (10, 10, 10, 10, 30))  # ends differ: flagged
    assert ends and abs(mc) == pytest.approx(10.0) and t_star in (0.0, 1.0)  # ±(L(θ) − L(θ′))/2


def test_garipov_schedule():
    assert garipov_lr(0.1, 0.2) == 0.1 and garipov_lr(0.1, 0.95) == pytest.approx(0.001)
    assert garipov_lr(0.1, 0.7) == pytest.approx(0.1 * (1 - 0.99 * 0.5))


def xor_data(n=400, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 2, generator=g)
    return x, ((x[:, 0] > 0) ^ (x[:, 1] > 0)).long()


def trained(seed, x, y, width=16):
    torch.manual_seed(seed)
    m = nn.Sequential(nn.Linear(2, width), nn.ReLU(), nn.Linear(width, 2))
    opt = torch.optim.Adam(m.parameters(), 0.02)
    for _ in range(400):
        opt.zero_grad()
        nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return m


def params(m):
    return {k: v.detach() for k, v in m.named_parameters()}


def test_identical_endpoints_have_zero_mc():
    x, y = xor_data()
    m = trained(0, x, y)
    prof = linear_path(m, params(m), params(m), x, y)
    assert prof.mc == 0.0 and len(prof.t) == 11 and len(set(prof.error)) == 1


def test_planted_barrier_is_negative_and_bezier_lowers_it():
    """Two XOR solutions whose hidden units are permuted and sign-flipped: the straight line between them
    crosses a region of high error (a barrier); the trained Bézier curve finds a way around it."""
    x, y = xor_data()
    a = trained(0, x, y)
    b = trained(1, x, y)
    lin = linear_path(a, params(a), params(b), x, y)
    assert lin.error[0] < 5 and lin.error[-1] < 5
    assert lin.mc < -10 and not lin.endpoint_dominated
    bez = bezier_curve(a, params(a), params(b), x, y, epochs=60, lr=0.05, batch_size=64, weight_decay=0.0)
    assert bez.mc > lin.mc + 5  # a smaller barrier
    assert bez.error[0] == lin.error[0] and bez.error[-1] == lin.error[-1]  # ends fixed


def test_batchnorm_is_re_estimated_and_restored():
    x, y = xor_data()
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(2, 8), nn.BatchNorm1d(8), nn.ReLU(), nn.Linear(8, 2))
    m.train()
    m(x * 5)  # running statistics from other data
    before = m[1].running_mean.clone()
    prof = linear_path(m, params(m), params(m), x, y, points=3)
    assert torch.equal(m[1].running_mean, before) and m.training
    assert len(prof.loss) == 3


def test_different_architectures_are_refused():
    x, y = xor_data()
    a, b = trained(0, x, y, width=8), trained(1, x, y, width=16)
    with pytest.raises(ValueError, match="same architecture"):
        linear_path(a, params(a), params(b), x, y)
