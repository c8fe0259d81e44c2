"""Training objectives: what a task's loss is, and how a model is scored on a split.

Every consumer of a loss — the training kernels, the Hessian operator, mode connectivity, the
performance metric — asks the task's objective (`TaskData.objective`) rather than assuming
cross-entropy, so a regression task reuses the same code paths.

An objective works on *stacked* models as well as on one: `forward` maps inputs [*lead, B, ...] to
outputs [*lead, B, out], and losses keep the leading model dimensions (each model its own batch mean).
`evaluate` takes one shared split [N, ...] and the leading dimensions `lead` to expand it to, so that
input derivatives (PINN) are every model's own.

- `Classification`: mean cross-entropy; scored by accuracy; mode connectivity measures the 0-1 error (%).
- `ConvectionPINN`: the physics-informed loss of `u_t + β u_x = 0` (Raissi, Perdikaris & Karniadakis
  2019; the failure modes at large β: Krishnapriyan et al. 2021, *Characterizing possible failure modes in
  physics-informed neural networks*). Training points carry their kind in `y` (interior, initial,
  boundary); test points carry the exact solution, scored by the relative L2 error. Mode connectivity
  measures log10 of the loss (there is no 0-1 error, and losses span decades: mc is then in decades, and
  a barrier of one decade is a tenfold rise of the loss along the path).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

Forward = Callable[[torch.Tensor], torch.Tensor]

# PINN training point kinds, stored in the training split's `y`.
INTERIOR, INITIAL, BOUNDARY = 0, 1, 2
PINN_TERMS = ("residual", "initial", "boundary")


@dataclass(frozen=True)
class Scores:
    """Per-model evaluation of one split; tensors have the leading model dimensions (scalars for one model)."""

    loss: torch.Tensor  # the objective's loss (nats for cross-entropy; squared units for regression)
    error: torch.Tensor  # what mode connectivity compares along a path: error in % or log10 loss (see the objective)
    acc: torch.Tensor | None = None  # classification accuracy in [0, 1]; None for regression
    terms: dict[str, torch.Tensor] | None = None  # a composite loss's parts (PINN)
    rel_l2: torch.Tensor | None = None  # ‖u − u*‖₂ / ‖u*‖₂ against an exact solution (regression test split)


class Classification:
    kind = "classification"
    error_unit = "%"  # mode connectivity on the 0-1 error in percent
    loss_unit = "nats"

    def loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        out = forward(x)
        if out.dim() == 2:  # one model: the ordinary call (bit-identical to the historical training loop)
            return F.cross_entropy(out, y)
        # [*lead, B, C] with y [*lead, B] (or shared [B]): each model's own batch mean
        return F.cross_entropy(out.movedim(-1, 1), y.expand(out.shape[:-1]), reduction="none").mean(-1)

    @torch.no_grad()
    def evaluate(self, forward: Forward, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192,
                 lead: tuple[int, ...] = ()) -> Scores:
        loss = correct = 0
        for i in range(0, len(y), chunk):
            xb = x[i:i + chunk]
            out = forward(xb.expand(*lead, *xb.shape))  # [*lead, b, C]
            yb = y[i:i + chunk].expand(out.shape[:-1])
            # one model: the fused sum (bit-identical to the metrics stored before objectives existed)
            part = (F.cross_entropy(out, yb, reduction="sum") if out.dim() == 2
                    else F.cross_entropy(out.movedim(-1, 1), yb, reduction="none").sum(-1))
            loss = loss + part.double()
            correct = correct + (out.argmax(-1) == yb).sum(-1)
        loss, acc = torch.as_tensor(loss) / len(y), torch.as_tensor(correct).double() / len(y)
        return Scores(loss, 100.0 * (1.0 - acc), acc)


@dataclass(frozen=True)
class ConvectionPINN:
    """Loss = MSE(residual u_t + β u_x at interior points) + MSE(u(x, 0) − sin x) + MSE(u(0, t) − u(2π, t)).

    Inputs are points (x, t), x ∈ [0, 2π), t ∈ [0, 1]. Each term is the mean over the points of its kind
    in the batch (a batch without a kind contributes 0 for it), so a full batch gives the usual PINN loss.
    """

    beta: float
    kind = "regression"
    error_unit = "decades"  # mode connectivity on log10 of the loss
    loss_unit = "squared units"

    def terms(self, forward: Forward, x: torch.Tensor, kinds: torch.Tensor) -> dict[str, torch.Tensor]:
        with torch.enable_grad():
            x = x.detach().requires_grad_(True)
            u = forward(x)[..., 0]  # [*lead, B]
            # Each output depends on its own point only, so the gradient of the sum is every point's own.
            du = torch.autograd.grad(u.sum(), x, create_graph=True)[0]  # [*lead, B, 2]: (u_x, u_t)
            residual = du[..., 1] + self.beta * du[..., 0]
            shift = torch.tensor([2 * math.pi, 0.0], dtype=x.dtype, device=x.device)
            u_right = forward(x + shift)[..., 0]  # u(x + 2π, t): used at boundary points (x = 0) only
        kinds = kinds.expand(u.shape)
        sq = {"residual": residual ** 2, "initial": (u - torch.sin(x[..., 0])) ** 2, "boundary": (u - u_right) ** 2}
        out = {}
        for name, code in zip(PINN_TERMS, (INTERIOR, INITIAL, BOUNDARY)):
            mask = (kinds == code).to(u.dtype)
            out[name] = (sq[name] * mask).sum(-1) / mask.sum(-1).clamp(min=1)
        return out

    def loss(self, forward: Forward, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        if y.dtype.is_floating_point:  # a split with exact values: plain mean squared error
            return ((forward(x)[..., 0] - y) ** 2).mean(-1)
        return sum(self.terms(forward, x, y).values())

    def evaluate(self, forward: Forward, x: torch.Tensor, y: torch.Tensor, chunk: int = 8192,
                 lead: tuple[int, ...] = ()) -> Scores:
        if not y.dtype.is_floating_point:  # training points: the composite loss needs every point at once
            terms = {k: v.detach().double() for k, v in self.terms(forward, x.expand(*lead, *x.shape), y).items()}
            loss = sum(terms.values())
            return Scores(loss, loss.log10(), terms=terms)
        with torch.no_grad():
            u = torch.cat([forward(x[i:i + chunk].expand(*lead, *x[i:i + chunk].shape))[..., 0]
                           for i in range(0, len(y), chunk)], -1).double()
        diff = u - y.double()
        loss = (diff ** 2).mean(-1)
        return Scores(loss, loss.log10(), rel_l2=diff.norm(dim=-1) / y.double().norm())


Objective = Classification | ConvectionPINN
CLASSIFICATION = Classification()
