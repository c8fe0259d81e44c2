"""The Hessian of a model's loss on a fixed set of examples, as a matrix-free operator.

`HessianOperator(model, x, y)` differentiates the mean cross-entropy over all given examples (a fixed,
seeded set of batches concatenated: the mean over equal-size batches is the mean over their union) with
respect to all parameters, or to one parameter group (a layer's weight and bias) for per-layer values.
`loss_fn` swaps in another objective (`data.tasks.objectives`: the PINN loss, whose input derivatives make its
Hessian-vector products third-order derivatives of the network — autograd handles them the same way).

A Hessian-vector product is `Hv = ∂/∂θ (∇θL · v)` by double back-propagation. The first-order graph is
built once (`create_graph=True`) and kept, so each product costs about two gradients instead of three
to four (stack.md, measured here). The model is put in eval mode (BatchNorm on running statistics) and
restored afterwards; `torch.autograd.grad` never touches `.grad`. Use it as a context manager.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from data.tasks.objectives import CLASSIFICATION

# (forward, x, y) -> scalar loss; `forward` maps inputs to outputs (the model, or the model at other weights)
LossFn = Callable[[Callable[[torch.Tensor], torch.Tensor], torch.Tensor, torch.Tensor], torch.Tensor]


def parameter_groups(model: nn.Module) -> dict[str, list[str]]:
    """Parameters grouped by the module that owns them: {'1': ['1.weight', '1.bias'], ...}."""
    groups: dict[str, list[str]] = {}
    for name, _ in model.named_parameters():
        groups.setdefault(name.rpartition(".")[0] or name, []).append(name)
    return groups


class HessianOperator:
    """Matrix-free Hessian of `loss_fn(model, x, y)` w.r.t. the parameters named in `names` (default: all)."""

    def __init__(self, model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, names: Sequence[str] | None = None,
                 loss_fn: LossFn = CLASSIFICATION.loss):
        if len(y) == 0:
            raise ValueError("the Hessian needs at least one example (got an empty batch set)")
        self.model, self.x, self.y, self.loss_fn = model, x, y, loss_fn
        named = dict(model.named_parameters())
        self.names = list(names) if names is not None else list(named)
        self.params = [named[n] for n in self.names]
        self.n = sum(p.numel() for p in self.params)
        self.dtype = self.params[0].dtype
        self.device = self.params[0].device
        self.matvecs = 0
        self._grad: tuple[torch.Tensor, ...] | None = None

    def __enter__(self) -> HessianOperator:
        self._was_training = self.model.training
        self.model.eval()
        with torch.enable_grad():
            loss = self.loss_fn(self.model, self.x, self.y)
            if not torch.isfinite(loss):
                raise ValueError(f"loss is {loss.item()} (non-finite weights or inputs?)")
            self._grad = torch.autograd.grad(loss, self.params, create_graph=True)
        return self

    def __exit__(self, *exc) -> None:
        self._grad = None  # frees the graph
        self.model.train(self._was_training)

    def gradient(self) -> torch.Tensor:
        return torch.cat([g.detach().reshape(-1) for g in self._grad]).to(torch.float64)

    def matvec(self, v: torch.Tensor) -> torch.Tensor:
        """H @ v for a flat float64 vector v [n]; returns float64 [n]."""
        if self._grad is None:
            raise RuntimeError("use HessianOperator as a context manager: `with HessianOperator(...) as H:`")
        parts, i = [], 0
        for p in self.params:
            parts.append(v[i:i + p.numel()].view_as(p).to(self.dtype))
            i += p.numel()
        with torch.enable_grad():
            if all(g.requires_grad for g in self._grad):
                hv = torch.autograd.grad(self._grad, self.params, grad_outputs=parts, retain_graph=True)
            else:  # a gradient constant in θ (a bias under a loss linear in the logits): its Hessian rows are 0
                live = [(g, v) for g, v in zip(self._grad, parts) if g.requires_grad]
                hv = torch.autograd.grad([g for g, _ in live], self.params, grad_outputs=[v for _, v in live],
                                         retain_graph=True, allow_unused=True, materialize_grads=True) if live \
                    else [torch.zeros_like(p) for p in self.params]
        self.matvecs += 1
        return torch.cat([h.reshape(-1) for h in hv]).to(torch.float64)


def dense_hessian(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
                  loss_fn: LossFn = CLASSIFICATION.loss) -> torch.Tensor:
    """The full [n, n] Hessian by autograd (tests and tiny models only: n² memory)."""
    names = [n for n, _ in model.named_parameters()]
    shapes = [p.shape for _, p in model.named_parameters()]
    flat0 = torch.cat([p.detach().reshape(-1) for _, p in model.named_parameters()])
    was_training = model.training
    model.eval()

    def loss_of(flat: torch.Tensor) -> torch.Tensor:
        params, i = {}, 0
        for name, shape in zip(names, shapes):
            k = shape.numel()
            params[name] = flat[i:i + k].view(shape)
            i += k
        return loss_fn(lambda xx: torch.func.functional_call(model, params, (xx,)), x, y)

    H = torch.autograd.functional.hessian(loss_of, flat0)
    model.train(was_training)
    return H
