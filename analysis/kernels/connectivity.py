"""Mode connectivity between two models of the same architecture (Garipov et al. 2018, *Loss Surfaces,
Mode Connectivity, and Fast Ensembling of DNNs*; the mc measure of Yang et al. 2021).

A curve γ(t), t ∈ [0, 1], joins θ = γ(0) and θ′ = γ(1): the straight line γ(t) = (1−t)θ + tθ′, or a
quadratic Bézier curve γ(t) = (1−t)²θ + 2t(1−t)φ + t²θ′ whose middle point φ is trained (initialised at
the midpoint) so the curve runs through low loss. With L the 0-1 training error in percent and
gap(t) = ½ (L(θ) + L(θ′)) − L(γ(t)),

    mc = gap(t*),   t* = argmax_{0 < t < 1} |gap(t)|      (the interior of the path only)

mc < 0: a barrier (poorly connected); mc > 0: the curve finds better points than the ends (ends not
converged); mc ≈ 0: well connected. Yang et al. 2021 write the argmax over all of [0, 1], but at the ends
|gap(0)| = |gap(1)| = |L(θ) − L(θ′)|/2 always: with one poor end the end points win the argmax and mc
becomes ±(L(θ) − L(θ′))/2, its sign set by which end is listed first (PTMZ's `compute_mc` takes the first
index, np.argmax). Over the interior only, mc(profile) = mc(reversed profile) exactly. Interior points
whose |gap| ties the largest (within TIE_TOL) resolve without sign bias: of one sign, that gap; of both
signs (a barrier and a dip of equal size) mc = 0 and t* = None. `endpoint_dominated` flags profiles
whose ends differ at least as much as any interior gap, L(θ) ≠ L(θ′) and |L(θ) − L(θ′)|/2 ≥ max |gap|:
every interior point lies within the band between the two end errors, so |mc| is bounded by the ends'
difference and says only which end the path stays nearer to (docs/mode-connectivity.md). BatchNorm
statistics are re-estimated at every point of the curve before it is evaluated. For a regression
objective (the PINN) there is no 0-1 error, and L is log10 of the training loss (`Scores.error` of the
task's objective): mc in decades.
"""
from __future__ import annotations

import copy
import math
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call

from data.tasks.objectives import CLASSIFICATION, Objective

Params = dict[str, torch.Tensor]


# Two |gap|s closer than this (relative to the largest |error|, floor 1) count as tied: errors are
# float sums (e.g. 100 · k / n in %), so gaps that are equal on paper can differ in the last bits.
TIE_TOL = 1e-9


@dataclass(frozen=True)
class McReading:
    """mc of one profile (the module docstring's rule)."""

    mc: float  # gap(t*), the sign convention above
    t_star: float | None  # None when interior gaps of both signs tie (mc = 0 then)
    endpoint_dominated: bool  # the ends differ and |L(θ) − L(θ′)|/2 ≥ every interior |gap|


@dataclass(frozen=True)
class PathProfile:
    t: tuple[float, ...]
    loss: tuple[float, ...]  # the objective's loss at γ(t) (mean cross-entropy in nats)
    error: tuple[float, ...]  # 0-1 error in percent at γ(t) (regression: log10 of the loss)
    mc: float  # on `error`, the sign convention above
    t_star: float | None
    endpoint_dominated: bool


def mc_from_profile(t: Sequence[float], error: Sequence[float]) -> McReading:
    """mc, t* and the end-point flag from errors along a path; t runs from 0 to 1, increasing, with at least
    one interior point (Yang et al. 2021, with t* over the interior: module docstring)."""
    if len(t) != len(error):
        raise ValueError(f"profile has {len(t)} t values but {len(error)} errors")
    if len(t) < 3 or t[0] != 0.0 or t[-1] != 1.0 or any(b <= a for a, b in zip(t, t[1:])):
        raise ValueError(f"profile t must increase from 0 to 1 through an interior point, got {tuple(t)}")
    if not all(math.isfinite(e) for e in error):
        raise ValueError(f"profile has non-finite errors: {tuple(error)}")
    ends = 0.5 * (error[0] + error[-1])  # commutative: the same for the reversed profile
    gaps = [ends - e for e in error[1:-1]]
    tol = TIE_TOL * max(1.0, *(abs(e) for e in error))
    top = max(abs(g) for g in gaps)
    tied = [i for i, g in enumerate(gaps) if abs(g) >= top - tol]
    half = 0.5 * abs(error[0] - error[-1])
    dominated = half > tol and half >= top - tol  # the whole interior within the band between the end errors
    if any(gaps[i] > tol for i in tied) and any(gaps[i] < -tol for i in tied):
        return McReading(0.0, None, dominated)  # a barrier and a dip of equal size: no sign wins
    # among same-signed ties the gap is the same; t* is the tied point nearest the middle of the path
    i = min(tied, key=lambda j: (abs(t[j + 1] - 0.5), -abs(gaps[j]), t[j + 1]))
    return McReading(gaps[i], t[i + 1], dominated)


def _evaluate(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor,
              objective: Objective) -> tuple[float, float]:
    """(loss, error) of the model at `params`; re-estimates BatchNorm statistics on x first."""
    with torch.no_grad(), _kept_buffers(model):
        bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        if bns:
            momenta = [m.momentum for m in bns]
            for m in bns:
                m.reset_running_stats()
                m.momentum = None  # cumulative average over the passes below
            model.train()
            for i in range(0, len(x), 256):
                functional_call(model, params, (x[i:i + 256],), strict=False)
            for m, mom in zip(bns, momenta):
                m.momentum = mom
        model.eval()
        sc = objective.evaluate(lambda xx: functional_call(model, params, (xx,), strict=False), x, y, chunk=len(y))
    return sc.loss.item(), sc.error.item()


@contextmanager
def _kept_buffers(model: nn.Module):
    """Restore the model's buffers (BatchNorm statistics) on exit: the model is left as it was found."""
    saved = {k: v.clone() for k, v in model.named_buffers()}
    try:
        yield
    finally:
        with torch.no_grad():
            for k, v in model.named_buffers():
                v.copy_(saved[k])


def _profile(model: nn.Module, point, ts: tuple[float, ...], x: torch.Tensor, y: torch.Tensor,
             objective: Objective) -> PathProfile:
    was_training = model.training
    evals = [_evaluate(model, point(t), x, y, objective) for t in ts]
    model.train(was_training)
    loss, err = tuple(e[0] for e in evals), tuple(e[1] for e in evals)
    r = mc_from_profile(ts, err)
    return PathProfile(ts, loss, err, r.mc, r.t_star, r.endpoint_dominated)


def _check_pair(a: Params, b: Params) -> None:
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("mode connectivity needs two models of the same architecture and size")


def linear_path(model: nn.Module, a: Params, b: Params, x: torch.Tensor, y: torch.Tensor,
                points: int = 11, objective: Objective = CLASSIFICATION) -> PathProfile:
    """Straight line between a and b, evaluated at `points` evenly spaced t."""
    _check_pair(a, b)
    ts = tuple(i / (points - 1) for i in range(points))
    return _profile(model, lambda t: {k: (1 - t) * a[k] + t * b[k] for k in a}, ts, x, y, objective)


def bezier_point(a: Params, phi: Params, b: Params, t: float) -> Params:
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * phi[k] + t ** 2 * b[k] for k in a}


def garipov_lr(base: float, frac: float) -> float:
    """lr × 1 for the first half of training, linearly down to × 0.01 at 90 %, then × 0.01."""
    if frac <= 0.5:
        return base
    if frac <= 0.9:
        return base * (1.0 - 0.99 * (frac - 0.5) / 0.4)
    return base * 0.01


class BezierStep:
    """One training step of a quadratic Bézier curve's middle point φ, on a private copy of the model.

    The objective L(γ(t)) + ½·wd·‖γ(t)‖² depends on φ only through γ(t) = (1−t)²θ + 2t(1−t)φ + t²θ′, so its
    gradient is ∂/∂φ = 2t(1−t)·(∇L(γ(t)) + wd·γ(t)): one ordinary forward and backward pass of the copy with
    γ(t) written into its parameters, instead of an autograd graph through the curve's arithmetic, a
    functional_call per step and the weight-decay sum: ~1.3× fewer seconds per curve on the default zoo's
    widest MLP (docs/benchmarks.md#classify-a-checkpoint). The products and sums are rounded in autograd's
    order, so the curve is the same bit for bit (tests/test_connectivity.py; the default zoo's stored
    mc_bezier rows reproduce). The copy's BatchNorm statistics move as it trains; the caller's model is
    untouched."""

    def __init__(self, model: nn.Module, a: Params, phi: Params, b: Params, weight_decay: float,
                 objective: Objective):
        self.names = list(a)
        self.copy = copy.deepcopy(model).train()
        own = dict(self.copy.named_parameters())
        self.points = [own[k] for k in self.names]  # γ(t) lives here, [shape of each parameter]
        for p in self.copy.parameters():
            p.requires_grad_(False)
        for p in self.points:
            p.requires_grad_(True)
        self.a, self.b = [a[k] for k in self.names], [b[k] for k in self.names]
        self.phi = [phi[k] for k in self.names]
        self.wd, self.objective = weight_decay, objective

    def __call__(self, t: float, x: torch.Tensor, y: torch.Tensor) -> None:
        """Set φ.grad to the objective's gradient at t on the batch (x, y)."""
        c = 2 * t * (1 - t)
        with torch.no_grad():  # in bezier_point's order, (1−t)²θ + 2t(1−t)φ + t²θ′, each product rounded
            torch._foreach_copy_(self.points, torch._foreach_add(torch._foreach_mul(self.a, (1 - t) ** 2),
                                                                 torch._foreach_mul(self.phi, c)))
            torch._foreach_add_(self.points, torch._foreach_mul(self.b, t ** 2))
        for p in self.points:
            p.grad = None
        self.objective.loss(self.copy, x, y).backward()
        with torch.no_grad():  # the weight decay's gradient rounded on its own, then added (as autograd sums)
            grads = [p.grad for p in self.points]
            torch._foreach_add_(grads, torch._foreach_mul(self.points, self.wd))
            torch._foreach_mul_(grads, c)
        for f, g in zip(self.phi, grads):
            f.grad = g


def bezier_curve(model: nn.Module, a: Params, b: Params, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10,
                 lr: float = 0.05, batch_size: int = 128, weight_decay: float = 5e-4, momentum: float = 0.9,
                 seed: int = 0, ts: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0),
                 objective: Objective = CLASSIFICATION, optimizer: str = "sgd") -> PathProfile:
    """Train the middle point φ of a quadratic Bézier curve (ends fixed) and profile the curve on (x, y).

    Each step draws t ~ U(0, 1) and minimises L(γ(t)) + ½·wd·‖γ(t)‖² over φ, L the objective's loss (SGD
    with momentum, Garipov schedule; the gradient as `BezierStep` takes it). Float parameters only are
    interpolated; buffers come from the model. `optimizer="adam"` trains φ with Adam instead (same
    schedule), for models trained with Adam (PINNs): plain SGD on their ill-conditioned loss leaves the
    curve's middle decades above its ends.
    """
    _check_pair(a, b)
    phi = {k: (0.5 * (a[k] + b[k])).detach().clone().requires_grad_(True) for k in a}
    if optimizer not in ("sgd", "adam"):
        raise ValueError(f"optimizer must be 'sgd' or 'adam', got {optimizer!r}")
    # foreach: one fused update over all of φ's tensors a step, the same arithmetic as the per-tensor loop
    opt = (torch.optim.SGD(phi.values(), lr=lr, momentum=momentum, foreach=True) if optimizer == "sgd"
           else torch.optim.Adam(phi.values(), lr=lr, foreach=True))
    step_grad = BezierStep(model, a, phi, b, weight_decay, objective)
    gen = torch.Generator().manual_seed(seed)
    n = len(y)
    steps, step = epochs * math.ceil(n / batch_size), 0
    for _ in range(epochs):
        perm = torch.randperm(n, generator=gen).to(x.device)
        for i in range(0, n, batch_size):
            idx = perm[i:i + batch_size]
            t = torch.rand((), generator=gen).item()
            step_grad(t, x[idx], y[idx])
            for g in opt.param_groups:
                g["lr"] = garipov_lr(lr, step / steps)
            opt.step()
            step += 1
    phi = {k: v.detach() for k, v in phi.items()}
    return _profile(model, lambda t: bezier_point(a, phi, b, t), ts, x, y, objective)
