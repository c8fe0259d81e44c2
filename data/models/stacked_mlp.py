"""One SGD step for a stack of M perceptrons, with the backward pass written out (no autograd).

For `nn.Sequential` models made of Linear layers and ReLU/Tanh activations (optionally a leading Flatten),
stacked with a leading model axis (weights [M, out, in], biases [M, out]):

    forward    z_l = h_{l-1} W_lᵀ + b_l          (one baddbmm per layer; h_0 = x, [M, B, in])
               h_l = act(z_l)                     (not after the last layer: z_L are the logits)
    loss       L_m = mean_b CE(z_L[m, b], y[m, b])   — each model's own batch mean
    backward   dz_L = (softmax(z_L) − onehot(y)) / B
               dW_l = dz_lᵀ h_{l-1},  db_l = Σ_b dz_l,  dh_{l-1} = dz_l W_l,  dz_{l-1} = dh_{l-1} ⊙ act′
    update     torch.optim.SGD's rule, elementwise:  g = dθ + wd·θ;  buf = μ·buf + g;  θ −= lr·buf

On small models the cost of a training step is dispatch overhead, not arithmetic; this step skips the
autograd graph and the optimiser's bookkeeping (measured here: ~0.44 → ~0.18 ms per step for a dozen
small MLPs at batch 8; end-to-end effect in bench/bench_generate.py).
Equality with ordinary per-model training is asserted in float64 by tests/test_train.py.
"""
from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn

_ACTS = (nn.ReLU, nn.Tanh)


def layer_plan(template: nn.Module) -> list[tuple[str, type | None]] | None:
    """[(linear layer name, activation after it or None)], or None if `template` is not such a stack."""
    if not isinstance(template, nn.Sequential):
        return None
    children = list(template.named_children())
    if children and isinstance(children[0][1], nn.Flatten) and children[0][1].start_dim < 0:
        children = children[1:]
    plan: list[tuple[str, type | None]] = []
    for name, layer in children:
        if isinstance(layer, nn.Linear) and layer.bias is not None and (not plan or plan[-1][1] is not None):
            plan.append((name, None))
        elif isinstance(layer, _ACTS) and plan and plan[-1][1] is None:
            plan[-1] = (plan[-1][0], type(layer))
        else:
            return None
    return plan if plan and plan[-1][1] is None else None


class StackedMLPStep:
    """Callable doing one SGD step on stacked parameters `params` (updated in place)."""

    def __init__(self, params: Mapping[str, torch.Tensor], plan: list[tuple[str, type | None]], lr: float,
                 momentum: float, weight_decay: float):
        self.w = [params[f"{name}.weight"] for name, _ in plan]  # [M, out, in]
        self.b = [params[f"{name}.bias"] for name, _ in plan]  # [M, out]
        self.acts = [act for _, act in plan]
        self.lr, self.momentum, self.wd = lr, momentum, weight_decay
        self.bufs: list[torch.Tensor] | None = None

    @torch.no_grad()
    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> None:
        """x: [M, B, *input_shape] inputs, y: [M, B] labels."""
        h = [x.flatten(2)]  # inputs of each layer
        for w, b, act in zip(self.w, self.b, self.acts):
            z = torch.baddbmm(b.unsqueeze(1), h[-1], w.transpose(1, 2))
            h.append(z if act is None else (z.relu() if act is nn.ReLU else z.tanh()))
        dz = h.pop().softmax(-1)  # [M, B, C]
        dz.scatter_add_(-1, y.unsqueeze(-1), torch.full_like(dz[..., :1], -1.0))
        dz.div_(y.shape[1])
        # The gradient GEMM writes into the momentum buffer (buf = μ·buf + dW in one pass over buf): no gradient
        # tensors, and two fewer passes over every parameter-sized array than gradient + torch.optim.SGD's rule —
        # at small batches a wide model's step is bound by that memory traffic, not by its matmuls.
        first = self.bufs is None
        if first:  # torch.optim.SGD: the first buffer is the gradient itself (μ·0 + g)
            self.bufs = [torch.zeros_like(p) for p in (*self.w, *self.b)]
        mu, n = (0.0 if first else self.momentum), len(self.w)
        for i in reversed(range(n)):
            dh = torch.bmm(dz, self.w[i]) if i else None  # before any weight moves
            self.bufs[i].baddbmm_(dz.transpose(1, 2), h[i], beta=mu)  # [M, out, in]
            self.bufs[n + i].mul_(mu).add_(dz.sum(1))  # [M, out]
            if i:
                dz = (torch.ops.aten.threshold_backward(dh, h[i], 0) if self.acts[i - 1] is nn.ReLU
                      else dh * (1 - h[i] * h[i]))
        params = [*self.w, *self.b]
        if self.wd:
            torch._foreach_add_(self.bufs, params, alpha=self.wd)
        torch._foreach_add_(params, self.bufs, alpha=-self.lr)
