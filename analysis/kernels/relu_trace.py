"""The exact Hessian trace of a ReLU perceptron's cross-entropy, from C backward passes.

For logits z_n = f(θ, x_n) and L = (1/N) Σ_n ℓ(z_n), the Hessian splits into the Gauss-Newton part and a
residual:  H = (1/N) Σ_n J_nᵀ A_n J_n + (1/N) Σ_n Σ_c (∂ℓ/∂z_nc) ∇²_θ z_nc,  A_n = ∂²ℓ/∂z² = diag(p_n) − p_n p_nᵀ.
A ReLU network is linear in each single parameter (the activation pattern is piecewise constant), so
∂²z/∂θ_i² = 0 almost everywhere: the residual has a zero diagonal, and

    Tr H = Tr G = (1/N) Σ_n Σ_c ‖∇_θ (u_ncᵀ z_n)‖²,   A_n = U_n U_nᵀ,  U_n = diag(√p_n) − p_n √p_nᵀ

(check: U Uᵀ = diag(p) − 2ppᵀ + p (Σp) pᵀ = diag(p) − ppᵀ). For a Linear layer the per-example gradient of a
scalar is δ aᵀ (δ: back-propagated vector at the layer's output, a: its input), whose squared norm is
‖δ‖² (‖a‖² + 1) with the bias (Goodfellow 2015, per-example gradient norms). So the exact trace costs one
forward pass and C batched backward passes — no probes, no variance. Cf. the GGN/Hessian diagonal
identities of Dangel, Kunstner & Hennig 2020 (BackPACK).
"""
from __future__ import annotations

import torch
from torch import nn

from data.models.stacked_mlp import layer_plan


def is_relu_mlp(model: nn.Module) -> bool:
    plan = layer_plan(model)
    return plan is not None and all(act in (None, nn.ReLU) for _, act in plan)


@torch.no_grad()
def relu_mlp_hessian_trace(model: nn.Module, x: torch.Tensor) -> float:
    """Tr of the Hessian of the mean cross-entropy at `model` on inputs x (labels do not enter: for
    cross-entropy ∂²ℓ/∂z² depends on the prediction only). Raises ValueError for other architectures."""
    if not is_relu_mlp(model):
        raise ValueError("the exact trace needs a Sequential of Linear and ReLU layers")
    layers = [model.get_submodule(name) for name, _ in layer_plan(model)]
    h = x.reshape(len(x), -1).to(layers[0].weight.dtype)
    inputs, masks = [], []
    for i, lin in enumerate(layers):
        inputs.append(h)  # [N, in]
        z = lin(h)
        if i < len(layers) - 1:
            masks.append(z > 0)
            h = z.clamp_min(0)
        else:
            h = z
    p = h.double().softmax(-1)  # [N, C]
    n, C = p.shape
    eye = torch.eye(C, dtype=p.dtype, device=p.device)
    # δ at the logits for direction c: U[n, :, c] = √p_nc (e_c − p_n)   → [C, N, C]
    delta = (p.sqrt().T[:, :, None] * (eye[:, None, :] - p[None, :, :])).to(h.dtype)
    total = torch.zeros((), dtype=torch.float64, device=p.device)
    for i in reversed(range(len(layers))):
        a2 = (inputs[i] * inputs[i]).sum(1).double() + 1.0  # ‖a_n‖² + 1 (bias)   [N]
        total += ((delta * delta).sum(-1).double() * a2).sum()  # squares summed in the model's dtype
        if i:
            delta = (delta @ layers[i].weight) * masks[i - 1]  # back through Linear i, then ReLU i−1
    return (total / n).item()
