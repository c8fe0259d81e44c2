"""Downstream kernels (science.md §4): ensembles, weight averaging over epochs and over seeds with
permutation alignment, transfer by fine-tuning, and global magnitude pruning. Pure functions of models,
state dicts and data; the registered metrics that use them are in analysis.metrics.definitions.

- Ensembles average the members' predicted probabilities (Lakshminarayanan et al. 2017).
- Weight matching (Ainsworth, Hayase & Srinivasa 2023, *Git Re-Basin*, Alg. 1): the hidden units of
  model B are permuted to maximise Σ_ℓ ⟨W_ℓ^A, P_ℓ W_ℓ^B P_{ℓ−1}ᵀ⟩_F (+ biases), one layer at a time by a
  linear assignment, until no permutation changes; the permuted B computes exactly what B computed.
- Pruning removes the weights of smallest magnitude over all weight matrices together (global magnitude
  pruning; Han et al. 2015); biases are kept.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from data.models.stacked_mlp import layer_plan

State = dict[str, torch.Tensor]
BN_BUFFERS = ("running_mean", "running_var", "num_batches_tracked")


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Softmax probabilities [N, C] in eval mode."""
    model.eval()
    return torch.cat([model(x[i:i + chunk]).softmax(-1) for i in range(0, len(x), chunk)])


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    return (predict_proba(model, x).argmax(-1) == y).double().mean().item()


@dataclass(frozen=True)
class EnsembleResult:
    acc: float  # accuracy of the averaged probabilities
    nll: float  # mean negative log-likelihood of the averaged probabilities (nats)
    member_acc: float  # mean accuracy of the members
    member_nll: float
    disagreement: float  # mean over member pairs of the fraction of inputs they label differently
    n: int  # members


def ensemble(probs: Sequence[torch.Tensor], y: torch.Tensor) -> EnsembleResult:
    """Probability-averaging ensemble of members' [N, C] predictions of labels y [N]."""
    if len(probs) < 2:
        raise ValueError(f"an ensemble needs at least 2 members, got {len(probs)}")
    p = torch.stack([q.double() for q in probs])  # [M, N, C]
    nll = lambda q: -q.gather(-1, y.view(-1, 1)).clamp_min(1e-12).log().mean().item()  # noqa: E731
    pred = p.argmax(-1)  # [M, N]
    pairs = [(i, j) for i in range(len(p)) for j in range(i + 1, len(p))]
    return EnsembleResult(
        acc=(p.mean(0).argmax(-1) == y).double().mean().item(), nll=nll(p.mean(0)),
        member_acc=(pred == y).double().mean().item(), member_nll=float(np.mean([nll(q) for q in p])),
        disagreement=float(np.mean([(pred[i] != pred[j]).double().mean().item() for i, j in pairs])), n=len(p))


def average_states(states: Sequence[Mapping[str, torch.Tensor]]) -> State:
    """The uniform average of state dicts of one architecture (integer buffers such as BatchNorm's batch
    count are taken from the first). Different keys or shapes: a ValueError naming the first difference."""
    if not states:
        raise ValueError("nothing to average")
    first = states[0]
    for i, s in enumerate(states[1:], 1):
        if s.keys() != first.keys():
            diff = sorted(set(s) ^ set(first))
            raise ValueError(f"cannot average models of different architectures: key {diff[0]!r} is in one "
                             f"model only (model 0 vs model {i})")
        bad = next((k for k in first if s[k].shape != first[k].shape), None)
        if bad is not None:
            raise ValueError(f"cannot average models of different architectures: {bad!r} is "
                             f"{tuple(first[bad].shape)} in model 0 and {tuple(s[bad].shape)} in model {i}")
    return {k: torch.stack([s[k].double() for s in states]).mean(0).to(v.dtype) if v.is_floating_point()
            else v.clone() for k, v in first.items()}


@torch.no_grad()
def recalibrate_batchnorm(model: nn.Module, x: torch.Tensor, chunk: int = 256) -> bool:
    """Re-estimate BatchNorm statistics on x (an average of weights has no statistics of its own);
    returns whether the model has BatchNorm."""
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return False
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # a cumulative average over the passes below
    model.train()
    for i in range(0, len(x), chunk):
        model(x[i:i + chunk])
    model.eval()
    return True


# ----------------------------------------------------------------------------- weight matching
def _linear_names(model: nn.Module) -> list[str]:
    plan = layer_plan(model)
    if plan is None:
        raise ValueError(f"weight matching is implemented for Linear/activation stacks (MLPs), not "
                         f"{type(model).__name__}")
    return [name for name, _ in plan]


def weight_matching(model: nn.Module, a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor],
                    max_rounds: int = 100, seed: int = 0) -> tuple[State, int]:
    """B with its hidden units permuted to match A (Git Re-Basin weight matching) and the rounds it took.
    `model` gives the layer structure (an MLP); a, b are its state dicts."""
    from scipy.optimize import linear_sum_assignment

    layers = _linear_names(model)
    # the assignment problems are solved on the CPU (scipy), whatever device the weights live on
    w = lambda s, i: s[f"{layers[i]}.weight"].detach().double().cpu()  # noqa: E731  [out, in]
    bias = lambda s, i: s[f"{layers[i]}.bias"].detach().double().cpu()  # noqa: E731
    hidden = len(layers) - 1  # the outputs of every layer but the last may be permuted
    perms = [torch.arange(w(a, i).shape[0]) for i in range(hidden)]
    rng = np.random.default_rng(seed)
    rounds, changed = 0, True
    while changed and rounds < max_rounds:
        rounds, changed = rounds + 1, False
        for i in rng.permutation(hidden):
            wb = w(b, i)
            if i > 0:  # B's inputs to layer i come from its permuted layer i-1
                wb = wb[:, perms[i - 1]]
            cost = w(a, i) @ wb.T + torch.outer(bias(a, i), bias(b, i))
            nxt = w(b, i + 1)
            if i + 1 < hidden:
                nxt = nxt[perms[i + 1]]
            cost += w(a, i + 1).T @ nxt
            _, col = linear_sum_assignment(cost.numpy(), maximize=True)
            col = torch.as_tensor(col)
            if not torch.equal(col, perms[i]):
                perms[i], changed = col, True
    out = {k: v.clone() for k, v in b.items()}
    dev = b[f"{layers[0]}.weight"].device
    perms = [p.to(dev) for p in perms]
    for i in range(len(layers)):
        wk, bk = f"{layers[i]}.weight", f"{layers[i]}.bias"
        wi = b[wk]
        if i < hidden:
            wi, out[bk] = wi[perms[i]], b[bk][perms[i]]
        if i > 0:
            wi = wi[:, perms[i - 1]]
        out[wk] = wi.contiguous()
    return out, rounds


# ----------------------------------------------------------------------------- fine-tuning and pruning
def head_name(model: nn.Module) -> str:
    """The last Linear layer's name (the classifier head)."""
    names = [n for n, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not names:
        raise ValueError(f"{type(model).__name__} has no Linear head")
    return names[-1]


def fine_tune(model: nn.Module, x: torch.Tensor, y: torch.Tensor, *, epochs: int, lr: float, batch_size: int,
              seed: int = 0, only: str | None = None, masks: Mapping[str, torch.Tensor] | None = None,
              momentum: float = 0.9, weight_decay: float = 5e-4) -> nn.Module:
    """SGD on (x, y) in place: all parameters, or only those under the module `only`; `masks` (name →
    0/1 tensor) keep pruned weights at zero. BatchNorm statistics are frozen (eval mode) throughout."""
    params = {n: p for n, p in model.named_parameters() if only is None or n.startswith(f"{only}.")}
    for n, p in model.named_parameters():
        p.requires_grad_(n in params)
    opt = torch.optim.SGD(params.values(), lr=lr, momentum=momentum, weight_decay=weight_decay)
    g = torch.Generator().manual_seed(seed)
    model.eval()
    for _ in range(epochs):
        order = torch.randperm(len(y), generator=g).to(y.device)
        for i in range(0, len(y), batch_size):
            idx = order[i:i + batch_size]
            opt.zero_grad(set_to_none=True)
            F.cross_entropy(model(x[idx]), y[idx]).backward()
            opt.step()
            if masks:
                with torch.no_grad():
                    for n, mk in masks.items():
                        params[n].mul_(mk)
    for p in model.parameters():
        p.requires_grad_(True)
    return model


def reset_head(model: nn.Module, seed: int = 0) -> str:
    """Re-initialise the classifier head (seeded), as a linear probe or a fine-tune from features starts.
    The new weights are drawn on the CPU, so the same seed gives the same head on every device."""
    name = head_name(model)
    head = dict(model.named_modules())[name]
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        fresh = nn.Linear(head.in_features, head.out_features, bias=head.bias is not None)
    head.load_state_dict(fresh.state_dict())
    return name


def magnitude_masks(model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
    """0/1 masks removing exactly ⌊sparsity · n⌋ of the n weights of all weight matrices (parameters of
    rank ≥ 2) together, those of smallest |w|; ties are broken by position, so equal magnitudes never
    remove more than asked."""
    if not 0.0 <= sparsity < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity}")
    weights = {n: p.detach() for n, p in model.named_parameters() if p.ndim >= 2}
    flat = torch.cat([w.abs().reshape(-1) for w in weights.values()])
    keep = torch.ones_like(flat)
    keep[flat.argsort(stable=True)[:math.floor(sparsity * flat.numel())]] = 0
    masks, start = {}, 0
    for n, w in weights.items():
        masks[n] = keep[start:start + w.numel()].view_as(w).to(w.dtype)
        start += w.numel()
    return masks


@torch.no_grad()
def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> None:
    params = dict(model.named_parameters())
    for n, mk in masks.items():
        params[n].mul_(mk)
