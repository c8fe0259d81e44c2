"""Mode connectivity: sign convention, planted barriers, and the trained curve lowering a barrier."""
import pytest
import torch
from torch import nn
from torch.func import functional_call

from analysis.kernels.connectivity import (
    BezierStep,
    McReading,
    _profile,
    bezier_curve,
    bezier_point,
    garipov_lr,
    linear_path,
    mc_from_profile,
)
from data.tasks.objectives import CLASSIFICATION


def test_mc_sign_convention():
    t = (0.0, 0.25, 0.5, 0.75, 1.0)
    assert mc_from_profile(t, (10, 10, 10, 10, 10)) == McReading(0.0, 0.5, False)  # flat: nothing to flag
    assert mc_from_profile(t, (10, 20, 40, 20, 10)) == McReading(-30.0, 0.5, False)  # a barrier of 30 points
    assert mc_from_profile(t, (30, 20, 5, 20, 30)) == McReading(25.0, 0.5, False)  # better than the ends
    # ends differ and the whole interior sits at the better end: +10, flagged as the ends' difference
    assert mc_from_profile(t, (10, 10, 10, 10, 30)) == McReading(10.0, 0.5, True)


def old_rule(error):
    """The rule before version 2 (and PTMZ's compute_mc): argmax over all points, the first index wins."""
    ends = 0.5 * (error[0] + error[-1])
    gaps = [ends - e for e in error]
    return gaps[max(range(len(gaps)), key=lambda j: abs(gaps[j]))]


QUOTED = (9.85, 0.15, 0.25, 0.40, 0.00)  # default zoo, width128-batch_size0032 s0–s1, epoch 150, Bézier


def test_t_star_is_interior_on_the_quoted_profile():
    """One poor end: the old rule stored the end-point half-difference as a barrier (−4.925); the whole
    interior lies far below the ends' mean, so mc > 0, and the flag says the ends' difference bounds it."""
    t = (0.0, 0.25, 0.5, 0.75, 1.0)
    assert old_rule(QUOTED) == pytest.approx(-4.925)  # what the zoo stored
    r = mc_from_profile(t, QUOTED)
    assert r.mc == pytest.approx(9.85 / 2 - 0.15) and r.t_star == 0.25 and r.endpoint_dominated
    assert mc_from_profile(t, QUOTED[::-1]).mc == r.mc  # the old rule gives +4.925 reversed


def profiles():
    """Seeded profiles on a grid of 0.25 % steps (as 100 · k / 400), so ties of every kind occur."""
    g = torch.Generator().manual_seed(0)
    out = [QUOTED, (10, 5, 10, 15, 10), (89.4, 89.15, 89.15, 89.15, 89.15), (0, 5, 0, 5, 0)]
    for n in (3, 5, 11):
        for _ in range(300):
            out.append(tuple(100.0 * k / 400 for k in torch.randint(0, 12, (n,), generator=g).tolist()))
    return out


def test_mc_is_symmetric_under_reversal_and_sign_neutral():
    """Reversing the path (swapping θ and θ′) leaves mc and the flag exactly as they were; reflecting the
    errors about a constant negates mc (no sign wins a tie). The old rule breaks the first on ties."""
    broken = 0
    for e in profiles():
        t = tuple(i / (len(e) - 1) for i in range(len(e)))
        r, rev = mc_from_profile(t, e), mc_from_profile(t, e[::-1])
        assert (rev.mc, rev.endpoint_dominated) == (r.mc, r.endpoint_dominated), e
        assert (r.t_star is None) == (rev.t_star is None)
        flipped = mc_from_profile(t, tuple(50.0 - x for x in e))
        assert flipped.mc == pytest.approx(-r.mc, abs=1e-9) and flipped.endpoint_dominated == r.endpoint_dominated
        broken += old_rule(e) != old_rule(e[::-1])
    assert broken > 50  # the check has teeth: the old rule fails it on many of these profiles


def test_interior_ties():
    t = (0.0, 0.25, 0.5, 0.75, 1.0)
    # a dip and a barrier of the same size: no sign wins, mc = 0, no single t*
    assert mc_from_profile(t, (10, 5, 10, 15, 10)) == McReading(0.0, None, False)
    # ties of one sign: that gap, at the tied point nearest the middle (the earlier of two equidistant ones)
    assert mc_from_profile(t, (0, 5, 5, 5, 0)) == McReading(-5.0, 0.5, False)
    assert mc_from_profile(t, (0, 5, 0, 5, 0)) == McReading(-5.0, 0.25, False)
    # equal on paper, not in floats (float32 errors): still a tie, and the flag sees the band
    e = tuple(float(torch.tensor(x, dtype=torch.float32)) for x in (89.4, 89.15, 89.15, 89.15, 89.15))
    r = mc_from_profile(t, e)
    assert r.mc == pytest.approx(0.125, abs=1e-5) and r.endpoint_dominated
    # a step from one end's level to the other's: gaps ±½ difference tie with both signs, flagged
    step = (90.45, 90.45, 90.45, 89.4, 89.4, 89.4, 89.4, 89.4, 89.4, 89.4, 89.4)
    r = mc_from_profile(tuple(i / 10 for i in range(11)), step)
    assert r.mc == 0.0 and r.t_star is None and r.endpoint_dominated


def test_endpoint_flag_means_the_interior_stays_between_the_ends():
    t = (0.0, 0.5, 1.0)
    assert mc_from_profile(t, (10, 15, 30)).endpoint_dominated  # inside the band: |mc| = 5 < 10
    assert mc_from_profile(t, (10, 10, 30)).endpoint_dominated  # on its edge
    assert not mc_from_profile(t, (10, 35, 30)).endpoint_dominated  # above the worse end: a real barrier
    assert not mc_from_profile(t, (10, 5, 30)).endpoint_dominated  # below the better end
    assert not mc_from_profile(t, (10, 10, 10)).endpoint_dominated  # equal ends: nothing to dominate


@pytest.mark.parametrize("t, e, match", [
    ((0.0, 1.0), (1.0, 2.0), "interior point"),
    ((0.0, 0.5, 0.9), (1.0, 2.0, 3.0), "from 0 to 1"),
    ((0.0, 0.6, 0.4, 1.0), (1.0, 2.0, 3.0, 4.0), "increase"),
    ((0.0, 0.5, 1.0), (1.0, 2.0), "3 t values but 2 errors"),
    ((0.0, 0.5, 1.0), (1.0, float("nan"), 2.0), "non-finite"),
])
def test_malformed_profiles_are_refused(t, e, match):
    with pytest.raises(ValueError, match=match):
        mc_from_profile(t, e)


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


@pytest.mark.slow
def test_identical_endpoints_have_zero_mc():
    x, y = xor_data()
    m = trained(0, x, y)
    prof = linear_path(m, params(m), params(m), x, y)
    assert prof.mc == 0.0 and len(prof.t) == 11 and len(set(prof.error)) == 1


@pytest.mark.slow
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


def curve_objective(model, a, phi, b, t, x, y, wd):
    """The Bézier objective written out (the kernel's definition): L(γ(t)) + ½·wd·‖γ(t)‖², γ through φ."""
    point = bezier_point(a, phi, b, t)
    loss = nn.functional.cross_entropy(functional_call(model, point, (x,), strict=False), y)
    return loss + 0.5 * wd * sum((p ** 2).sum() for p in point.values())


@pytest.mark.parametrize("batchnorm", [False, True])
def test_bezier_step_gradient_is_autograd_through_the_curve(batchnorm):
    """Oracle: BezierStep's analytic gradient 2t(1−t)·(∇L(γ) + wd·γ) equals autograd of the objective through
    the curve's arithmetic (float64, 1e-12), at several t, with BatchNorm in training mode; the model it was
    given keeps its weights and statistics."""
    torch.manual_seed(0)
    layers = [nn.Linear(5, 7), *([nn.BatchNorm1d(7)] if batchnorm else []), nn.Tanh(), nn.Linear(7, 3)]
    model = nn.Sequential(*layers).double().train()
    a = {k: v.detach().clone() for k, v in model.named_parameters()}
    b = {k: v + torch.randn_like(v) for k, v in a.items()}
    phi = {k: (0.5 * (a[k] + b[k]) + 0.1 * torch.randn_like(v)).requires_grad_(True) for k, v in a.items()}
    x, y = torch.randn(16, 5, dtype=torch.float64), torch.randint(0, 3, (16,))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    step = BezierStep(model, a, phi, b, weight_decay=0.03, objective=CLASSIFICATION)
    for t in (0.0, 0.13, 0.5, 0.91):
        step(t, x, y)
        want = torch.autograd.grad(curve_objective(model, a, phi, b, t, x, y, 0.03), list(phi.values()),
                                   allow_unused=True, materialize_grads=True)
        for (k, p), w in zip(phi.items(), want):
            assert torch.allclose(p.grad, w, rtol=1e-12, atol=1e-12), (k, t)
        model.load_state_dict(before)  # the reference's functional_call ran BatchNorm's statistics forward
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_bezier_curve_trains_as_the_written_out_objective(dtype):
    """Twenty SGD steps of bezier_curve against the same steps taken by autograd on the written-out objective
    (the implementation before BezierStep): the same arithmetic in the same order, so the profiles are equal
    bit for bit, in float64 and in float32 — the zoo's stored mc_bezier rows reproduce exactly."""
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(2, 64), nn.ReLU(), nn.Linear(64, 2)).to(dtype)
    a = {k: v.detach().clone() for k, v in model.named_parameters()}
    b = {k: v + 0.5 * torch.randn_like(v) for k, v in a.items()}
    x, y = torch.randn(40, 2, dtype=dtype), torch.randint(0, 2, (40,))
    ts = tuple(i / 20 for i in range(21))
    got = bezier_curve(model, a, b, x, y, epochs=4, lr=0.1, batch_size=8, weight_decay=5e-4, seed=3, ts=ts)

    phi = {k: (0.5 * (a[k] + b[k])).clone().requires_grad_(True) for k in a}
    opt = torch.optim.SGD(phi.values(), lr=0.1, momentum=0.9)
    gen, steps, step = torch.Generator().manual_seed(3), 4 * 5, 0
    model.train()
    for _ in range(4):
        perm = torch.randperm(40, generator=gen)
        for i in range(0, 40, 8):
            t = torch.rand((), generator=gen).item()
            for g in opt.param_groups:
                g["lr"] = garipov_lr(0.1, step / steps)
            opt.zero_grad()
            curve_objective(model, a, phi, b, t, x[perm[i:i + 8]], y[perm[i:i + 8]], 5e-4).backward()
            opt.step()
            step += 1
    phi = {k: v.detach() for k, v in phi.items()}
    ref = _profile(model, lambda t: bezier_point(a, phi, b, t), got.t, x, y, CLASSIFICATION)
    assert got.loss == ref.loss and got.error == ref.error
