"""The Hessian trace of a classifier's cross-entropy through its Gauss–Newton split.

For logits z_n = f(θ, x_n) and L = (1/N) Σ_n ℓ(z_n) (mean cross-entropy) the Hessian is H = G + R with the
Gauss–Newton part G = (1/N) Σ_n J_nᵀ A_n J_n, A_n = ∂²ℓ/∂z² = diag(p_n) − p_n p_nᵀ = U_n U_nᵀ,
U_n = diag(√p_n) − p_n √p_nᵀ (analysis.kernels.relu_trace), and the residual R = (1/N) Σ_n Σ_c (∂ℓ/∂z_nc) ∇²_θ z_nc.

- Tr G is exact from per-example gradient norms: Tr G = (1/N) Σ_n Σ_c ‖∇_θ (U_n[:, c] · z_n)‖², one forward
  and one backward pass batched over the C directions, each layer's norms from its inputs and output
  gradients (`ggn_trace`; torch.func per-example gradients for layers it does not know).
- Where the network is piecewise linear in each single parameter (Linear/Conv + ReLU + mean-pool: the
  default zoo's MLPs and the CNN1d), ∂²z/∂θ_i² = 0 almost everywhere, R has a zero diagonal and Tr H = Tr G
  exactly: no probes, no variance.
- Elsewhere (softmax attention) Hutchinson estimates only Tr R: R is itself a Hessian, of φ = Σ r·z with the
  logit gradients r = ∂L/∂z held fixed, so zᵀRz costs one Hessian-vector product (`residual_operator`). A
  trained network's Hessian is mostly its Gauss–Newton part, so zᵀRz varies far less than zᵀHz (measured on
  the transformer zoo's model: sd 0.07 against 6.9, trace 28), and a few probes give Tr R to well under the
  target error. Tr H = Tr G (exact) + Tr R (estimated); the stderr is the residual's.
"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.func import functional_call, grad, vmap

from analysis.kernels.hessian import HessianOperator, LossFn
from analysis.kernels.relu_trace import is_relu_mlp
from analysis.kernels.spectral import F64, TraceResult, _planned_probes, _rademacher
from data.models.archs import CNN1d, Transformer
from data.tasks.objectives import Classification


def piecewise_linear(model: nn.Module) -> bool:
    """Models whose logits are piecewise linear in each single parameter (so Tr H = Tr G): ReLU perceptrons
    and CNN1d (Conv1d + ReLU, global mean-pool, Linear head: data.models.archs). Recognised by type, since a
    custom forward could hide any non-linearity."""
    return is_relu_mlp(model) or (type(model) is CNN1d and all(
        isinstance(m, nn.Conv1d | nn.ReLU) for m in model.features))


def is_cross_entropy(loss_fn: LossFn) -> bool:
    """Whether a HessianOperator's `loss_fn` is a classification objective's (mean cross-entropy)."""
    return isinstance(getattr(loss_fn, "__self__", None), Classification)


def _factor(logits: torch.Tensor) -> torch.Tensor:
    """U [N, C, C] with U_n U_nᵀ = ∂²ℓ/∂z² at the logits [N, C] (float64: p can be 1e-12 where accurate)."""
    p = logits.detach().double().softmax(-1)
    return torch.diag_embed(p.sqrt()) - p[:, :, None] * p.sqrt()[:, None, :]


def _sq_norms(a: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """[k, N] ‖Σ_t d_t a_tᵀ‖²_F for a [N, T, i] (shared by the k directions), d [k, N, T, o]:
    Σ_{t,s} (a_t·a_s)(d_t·d_s) (Goodfellow 2015's per-example gradient norm, with the positions' Gram
    matrices when T > 1: T² ≤ 1,600 here, never i·o)."""
    if a.shape[1] == 1:
        return (a[:, 0] * a[:, 0]).sum(-1) * (d[:, :, 0] * d[:, :, 0]).sum(-1)
    return ((a @ a.transpose(1, 2)) * (d @ d.transpose(2, 3))).sum((2, 3))


def _layer_norms(module: nn.Module, inp: torch.Tensor, d: torch.Tensor) -> torch.Tensor:
    """[k, N] squared norm of each (direction, example)'s gradient w.r.t. `module`'s weight and bias, from
    its input [N, ...] and the k gradients at its output [k, N, ...] (float64)."""
    k, n = d.shape[:2]
    if isinstance(module, nn.Linear):
        a, d = inp.reshape(n, -1, inp.shape[-1]), d.reshape(k, n, -1, d.shape[-1])  # [N, T, i], [k, N, T, o]
    elif isinstance(module, nn.Conv1d):  # the weight sees patches [N, L', in·kernel] (padding, stride as the layer)
        a = nn.functional.unfold(inp[:, :, None, :], (1, module.kernel_size[0]), dilation=(1, module.dilation[0]),
                                 padding=(0, module.padding[0]), stride=(1, module.stride[0])).transpose(1, 2)
        d = d.transpose(2, 3)  # [k, N, L', out]
    else:  # Embedding: row t of the gradient is d_t at token tok_t; rows of equal tokens add up
        inp, d = inp.reshape(n, -1), d.reshape(k, n, -1, d.shape[-1])  # [N, T], [k, N, T, width]
        same = (inp[:, :, None] == inp[:, None, :]).to(d.dtype)  # [N, T, T]
        return (same * (d @ d.transpose(2, 3))).sum((2, 3)).double()
    bias = (d.sum(2) ** 2).sum(-1) if module.bias is not None else 0.0
    return (_sq_norms(a, d) + bias).double()


_LAYERS = (nn.Linear, nn.Conv1d, nn.Embedding)


def _hooked(model: nn.Module) -> bool:
    """Whether every parameter belongs to a layer `_layer_norms` knows (or is a Transformer's `pos`, whose
    per-example gradient is the gradient at the embedding's output: h = embed(tokens) + pos)."""
    owned = {f"{name}.{p}" for name, m in model.named_modules() if isinstance(m, _LAYERS)
             for p, _ in m.named_parameters(recurse=False)}
    extra = {"pos"} if isinstance(model, Transformer) else set()
    convs_plain = all(m.groups == 1 and m.padding_mode == "zeros" for m in model.modules() if isinstance(m, nn.Conv1d))
    return {n for n, _ in model.named_parameters()} <= owned | extra and convs_plain


def ggn_trace(model: nn.Module, x: torch.Tensor, *, max_rows: int = 8192) -> float:
    """Exact Tr G of the mean cross-entropy at `model` on inputs x (labels do not enter G).

    Tr G = (1/N) Σ_n Σ_c ‖∇_θ s_nc‖², s_nc = U_n[:, c] · z_n: one forward pass, then a backward pass batched
    over the C directions (`is_grads_batched`, ≤ `max_rows` (direction, example) rows at once) gives every
    layer's output gradient per row, and each layer's per-row gradient norm follows from its input and output
    gradient without forming the gradient (`_layer_norms`). Models with other parameters (a LayerNorm, a
    custom parameter) take per-example gradients by torch.func.vmap instead — exact too, several times slower."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            U = _factor(model(x))  # [N, C, C]
        n, C = U.shape[:2]
        W = U.permute(2, 0, 1).to(next(model.parameters()).dtype)  # [C, N, C]: W[c, n] = U_n[:, c]
        norms = _hooked_norms if _hooked(model) else _vmap_norms
        step = max(1, max_rows // n)
        total = sum(norms(model, x, W[c:c + step]).sum() for c in range(0, C, step))
    finally:
        model.train(was_training)
    return (total / n).item()


def _hooked_norms(model: nn.Module, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """[k, N] ‖∇_θ (W[j, n] · z(x_n))‖² for x [N, ...], W [k, N, C], from layer hooks (see `ggn_trace`)."""
    seen: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []

    def keep(module, args, out):
        seen.append((module, args[0].detach(), out))

    handles = [m.register_forward_hook(keep) for m in model.modules() if isinstance(m, _LAYERS)]
    try:
        with torch.enable_grad():
            z = model(x)
            deltas = torch.autograd.grad(z, [o for _, _, o in seen], grad_outputs=W, is_grads_batched=True)
    finally:
        for h in handles:
            h.remove()
    if len({id(m) for m, _, _ in seen}) < len(seen):  # a layer called twice: its gradients add before the norm
        return _vmap_norms(model, x, W)
    total = torch.zeros(W.shape[:2], dtype=F64, device=x.device)
    for (module, inp, _), d in zip(seen, deltas):
        total += _layer_norms(module, inp, d)
        if isinstance(model, Transformer) and module is model.embed:  # pos's gradient: d itself [k, N, L, width]
            total += (d.double() ** 2).sum((2, 3))
    return total


def _vmap_norms(model: nn.Module, x: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    params = {k: p.detach() for k, p in model.named_parameters()}

    def s_of(prm, xn, wn):  # w · z(x_n) for one example
        return (functional_call(model, prm, (xn[None],))[0] * wn).sum()

    k, n = W.shape[:2]
    g = vmap(grad(s_of), in_dims=(None, 0, 0))(params, x.repeat(k, *[1] * (x.dim() - 1)), W.reshape(k * n, -1))
    return sum((v.double() ** 2).flatten(1).sum(1) for v in g.values()).reshape(k, n)


def residual_operator(H: HessianOperator) -> HessianOperator:
    """The residual R = H − G of a cross-entropy Hessian as a Hessian of its own: R = ∇²_θ φ with
    φ(θ) = Σ_{n,c} r_nc z_nc(θ) and r = ∂L/∂z = (softmax(z) − onehot(y))/N held fixed at the current weights.
    Its products cost one HVP each (φ is linear in the logits) — no G product is needed for zᵀRz.
    Use it as a context manager, like H."""
    with torch.no_grad():
        z = H.model(H.x)
        r = (z.softmax(-1) - nn.functional.one_hot(H.y, z.shape[-1]).to(z.dtype)) / len(H.y)  # [N, C]
    return HessianOperator(H.model, H.x, H.y, names=H.names, loss_fn=lambda forward, x, _: (forward(x) * r).sum())


def cross_entropy_trace(H: HessianOperator, *, rtol: float = 0.02, pilot: int = 5, min_probes: int = 10,
                        max_probes: int = 1000, seed: int = 0) -> TraceResult:
    """Tr H of a cross-entropy Hessian (all parameters): Tr G exact plus, unless the model is piecewise
    linear, Hutchinson on the residual R = H − G (`residual_operator`: one HVP per probe).

    The residual's probe count is fixed by a pilot (its samples are discarded, as in spectral.hutchpp):
    N = var / (rtol·|Tr G + pilot mean|)², clamped to [min_probes, max_probes]; stderr = std/√N of the N fresh
    samples, ≈ Student-t with N − 1 degrees of freedom. `matvecs` counts the residual's HVPs (Tr G costs one
    backward pass over N·C rows: see the bench)."""
    if not is_cross_entropy(H.loss_fn):
        raise ValueError("the Gauss–Newton split here is the cross-entropy's (got another objective)")
    if len(H.names) != len(list(H.model.parameters())):
        raise ValueError("cross_entropy_trace needs the Hessian of all parameters (got a parameter group)")
    exact = ggn_trace(H.model, H.x)
    if piecewise_linear(H.model):
        return TraceResult(exact, 0.0, 0, 0)
    gen = torch.Generator().manual_seed(seed)
    with residual_operator(H) as R:
        def residuals(count: int) -> torch.Tensor:  # [count] samples zᵀRz
            out = torch.empty(count, dtype=F64)
            for i in range(count):
                z = _rademacher(R.n, 1, gen).to(R.device)[:, 0]
                out[i] = torch.dot(z, R.matvec(z)).item()
            return out

        need = min(_planned_probes(residuals(pilot), exact, rtol, min_probes), max_probes)
        fresh = residuals(need)
    return TraceResult(exact + fresh.mean().item(), fresh.std().item() / math.sqrt(need), pilot + need, need)
