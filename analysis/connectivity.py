"""Mode connectivity between two models of the same architecture (Garipov et al. 2018, *Loss Surfaces,
Mode Connectivity, and Fast Ensembling of DNNs*; the mc measure of Yang et al. 2021).

A curve γ(t), t ∈ [0, 1], joins θ = γ(0) and θ′ = γ(1): the straight line γ(t) = (1−t)θ + tθ′, or a
quadratic Bézier curve γ(t) = (1−t)²θ + 2t(1−t)φ + t²θ′ whose middle point φ is trained (initialised at
the midpoint) so the curve runs through low loss. With L the 0-1 training error in percent,

    mc = ½ (L(θ) + L(θ′)) − L(γ(t*)),   t* = argmax_t | ½ (L(θ) + L(θ′)) − L(γ(t)) |

mc < 0: a barrier (poorly connected); mc > 0: the curve finds better points than the ends (ends not
converged); mc ≈ 0: well connected. If t* is an end point, mc = ±(L(θ) − L(θ′))/2 only measures how
different the ends are: `endpoint_dominated` flags it. BatchNorm statistics are re-estimated at every
point of the curve before it is evaluated.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

Params = dict[str, torch.Tensor]


@dataclass(frozen=True)
class PathProfile:
    t: tuple[float, ...]
    loss: tuple[float, ...]  # mean cross-entropy (nats) at γ(t)
    error: tuple[float, ...]  # 0-1 error in percent at γ(t)
    mc: float  # on `error`, the sign convention above
    t_star: float
    endpoint_dominated: bool


def mc_from_profile(t: tuple[float, ...], error: tuple[float, ...]) -> tuple[float, float, bool]:
    """(mc, t*, endpoint_dominated) from errors along the curve; t must start at 0 and end at 1."""
    ends = 0.5 * (error[0] + error[-1])
    gaps = [ends - e for e in error]
    i = max(range(len(gaps)), key=lambda j: abs(gaps[j]))
    return gaps[i], t[i], i in (0, len(t) - 1)


@torch.no_grad()
def _evaluate(model: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """(loss, error %) of the model at `params`; re-estimates BatchNorm statistics on x first."""
    with _kept_buffers(model):
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
        logits = functional_call(model, params, (x,), strict=False)
        loss = F.cross_entropy(logits, y).item()
        err = 100.0 * (logits.argmax(-1) != y).float().mean().item()
    return loss, err


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


def _profile(model: nn.Module, point, ts: tuple[float, ...], x: torch.Tensor, y: torch.Tensor) -> PathProfile:
    was_training = model.training
    evals = [_evaluate(model, point(t), x, y) for t in ts]
    model.train(was_training)
    loss, err = tuple(e[0] for e in evals), tuple(e[1] for e in evals)
    mc, t_star, ends = mc_from_profile(ts, err)
    return PathProfile(ts, loss, err, mc, t_star, ends)


def _check_pair(a: Params, b: Params) -> None:
    if a.keys() != b.keys() or any(a[k].shape != b[k].shape for k in a):
        raise ValueError("mode connectivity needs two models of the same architecture and size")


def linear_path(model: nn.Module, a: Params, b: Params, x: torch.Tensor, y: torch.Tensor,
                points: int = 11) -> PathProfile:
    """Straight line between a and b, evaluated at `points` evenly spaced t."""
    _check_pair(a, b)
    ts = tuple(i / (points - 1) for i in range(points))
    return _profile(model, lambda t: {k: (1 - t) * a[k] + t * b[k] for k in a}, ts, x, y)


def bezier_point(a: Params, phi: Params, b: Params, t: float) -> Params:
    return {k: (1 - t) ** 2 * a[k] + 2 * t * (1 - t) * phi[k] + t ** 2 * b[k] for k in a}


def garipov_lr(base: float, frac: float) -> float:
    """lr × 1 for the first half of training, linearly down to × 0.01 at 90 %, then × 0.01."""
    if frac <= 0.5:
        return base
    if frac <= 0.9:
        return base * (1.0 - 0.99 * (frac - 0.5) / 0.4)
    return base * 0.01


def bezier_curve(model: nn.Module, a: Params, b: Params, x: torch.Tensor, y: torch.Tensor, *, epochs: int = 10,
                 lr: float = 0.05, batch_size: int = 128, weight_decay: float = 5e-4, momentum: float = 0.9,
                 seed: int = 0, ts: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)) -> PathProfile:
    """Train the middle point φ of a quadratic Bézier curve (ends fixed) and profile the curve on (x, y).

    Each step draws t ~ U(0, 1) and minimises CE(γ(t)) + ½·wd·‖γ(t)‖² over φ (SGD with momentum,
    Garipov schedule). Float parameters only are interpolated; buffers come from the model.
    """
    _check_pair(a, b)
    phi = {k: (0.5 * (a[k] + b[k])).detach().clone().requires_grad_(True) for k in a}
    opt = torch.optim.SGD(phi.values(), lr=lr, momentum=momentum)
    gen = torch.Generator().manual_seed(seed)
    n = len(y)
    steps, step = epochs * math.ceil(n / batch_size), 0
    was_training = model.training
    model.train()
    with _kept_buffers(model):  # training passes move BatchNorm statistics; each t re-estimates its own
        for _ in range(epochs):
            perm = torch.randperm(n, generator=gen).to(x.device)
            for i in range(0, n, batch_size):
                idx = perm[i:i + batch_size]
                t = torch.rand((), generator=gen).item()
                point = bezier_point(a, phi, b, t)
                loss = F.cross_entropy(functional_call(model, point, (x[idx],), strict=False), y[idx])
                loss = loss + 0.5 * weight_decay * sum((p ** 2).sum() for p in point.values())
                for g in opt.param_groups:
                    g["lr"] = garipov_lr(lr, step / steps)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                step += 1
    model.train(was_training)
    phi = {k: v.detach() for k, v in phi.items()}
    return _profile(model, lambda t: bezier_point(a, phi, b, t), ts, x, y)
