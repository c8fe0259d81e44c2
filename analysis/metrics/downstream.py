"""The downstream studies as registered metrics (science.md §4), stored beside the landscape metrics so the
phase diagram can show them. Kernels in analysis.kernels.downstream; accuracies are fractions of the test split.

    phasezoo run ZOO --metrics 'ensemble,average_*,transfer,prune'     (make downstream)
"""
from __future__ import annotations

import copy

import torch
from torch import nn

from analysis.kernels.connectivity import linear_path
from analysis.kernels.downstream import (
    accuracy,
    apply_masks,
    average_states,
    ensemble,
    fine_tune,
    magnitude_masks,
    predict_proba,
    recalibrate_batchnorm,
    reset_head,
    weight_matching,
)
from analysis.metrics.registry import ModelInput, Output, Value, register
from data.models.stacked_mlp import layer_plan
from data.tasks.builtin import load_task

SPARSITIES = (0.5, 0.8, 0.9, 0.95)


def is_stack(model: nn.Module) -> bool:
    """Linear/activation stacks (MLPs): where weight matching is implemented."""
    return layer_plan(model) is not None


def _with_state(m: ModelInput, state) -> nn.Module:
    """A copy of m's model holding `state`, BatchNorm statistics re-estimated on the training inputs."""
    model = copy.deepcopy(m.model)
    model.load_state_dict(state)
    recalibrate_batchnorm(model, m.task.x_train)
    return model.eval()


def _test_acc(m: ModelInput, model: nn.Module | None = None) -> float:
    return accuracy(model if model is not None else m.model, m.task.x_test, m.task.y_test)


# ----------------------------------------------------------------------------- ensembles
@register("ensemble", scope="cell", needs_data=True, kinds=["classification", "sequence"], outputs=[
    Output("ensemble_test_acc", "accuracy of the seeds' averaged probabilities", unit="fraction",
           label="ensemble test accuracy"),
    Output("ensemble_test_nll", "NLL of the seeds' averaged probabilities; lower = better", unit="nats",
           label="ensemble test NLL"),
    Output("ensemble_acc_gain", "ensemble − mean seed accuracy; higher = the seeds err differently", unit="fraction",
           signed=True, label="ensemble accuracy gain"),
    Output("ensemble_nll_gain", "mean seed NLL − ensemble NLL; higher = more gained", unit="nats",
           signed=True, label="ensemble NLL gain"),
    Output("ensemble_disagreement", "fraction of test inputs two seeds label differently (pair mean)",
           unit="fraction", label="seed disagreement"),
])
def ensemble_metric(*members: ModelInput) -> list[Value]:
    """The seeds of a cell as one ensemble (averaged probabilities) on the test split."""
    if len(members) < 2:
        raise ValueError(f"cell of {members[0].model_id} has {len(members)} seed: an ensemble needs at least 2")
    x, y = members[0].task.x_test, members[0].task.y_test
    r = ensemble([predict_proba(m.model, x) for m in members], y)
    return [Value("ensemble_test_acc", r.acc, split="test"), Value("ensemble_test_nll", r.nll, split="test"),
            Value("ensemble_acc_gain", r.acc - r.member_acc, split="test"),
            Value("ensemble_nll_gain", r.member_nll - r.nll, split="test"),
            Value("ensemble_disagreement", r.disagreement, split="test")]


# ----------------------------------------------------------------------------- averaging
@register("average_epochs", scope="model", needs_data=True, kinds=["classification", "sequence"], outputs=[
    Output("average_epochs_test_acc", "accuracy of the uniform average of the last k checkpoints", unit="fraction",
           label="test accuracy of the epoch average"),
    Output("average_epochs_acc_delta", "averaged − final model accuracy; higher = averaging helps", unit="fraction",
           signed=True, label="accuracy change by averaging epochs"),
])
def average_epochs(m: ModelInput, *, k: int = 3) -> list[Value]:
    """The uniform average of the model's last k stored checkpoints up to this epoch (PTMZ: the last 5
    epochs; BatchNorm statistics re-estimated), against the model itself."""
    if m.at_epoch is None:
        raise ValueError("averaging over epochs needs the model's stored checkpoints (run it through analysis.runner.run)")
    epochs = [e for e in m.stored_epochs if e <= m.epoch][-k:]
    if len(epochs) < 2:
        raise ValueError(f"{m.model_id}: {len(epochs)} checkpoint(s) stored up to epoch {m.epoch} "
                         f"({list(m.stored_epochs)}); averaging needs at least 2")
    avg = average_states([m.at_epoch(e).state_dict() for e in epochs])
    acc = _test_acc(m, _with_state(m, avg))
    return [Value("average_epochs_test_acc", acc, split="test"),
            Value("average_epochs_acc_delta", acc - _test_acc(m), split="test")]


@register("average_seeds", scope="pair", needs_data=True, kinds=["classification", "sequence"], outputs=[
    Output("average_seeds_acc_delta", "accuracy of the plain weight average − mean of the two seeds'",
           unit="fraction", signed=True, label="accuracy change by averaging seeds"),
])
def average_seeds(a: ModelInput, b: ModelInput) -> list[Value]:
    """The plain average of two seeds' weights (no alignment), against their mean accuracy."""
    avg = average_states([a.model.state_dict(), b.model.state_dict()])
    mean = 0.5 * (_test_acc(a) + _test_acc(b))
    return [Value("average_seeds_acc_delta", _test_acc(a, _with_state(a, avg)) - mean, split="test")]


@register("average_aligned", scope="pair", needs_data=True, applies=is_stack, kinds=["classification"],
          outputs=[
    Output("average_aligned_acc_delta", "accuracy of the average after weight matching − mean of the seeds'",
           unit="fraction", signed=True, label="accuracy change by averaging aligned seeds"),
    Output("average_aligned_mc", "mc on the straight line after alignment (points): < 0 barrier, ≈ 0 connected",
           unit="% points", signed=True, label="mc after alignment (straight line)"),
    Output("average_aligned_path_loss", "training loss along the line between aligned seeds", coord="t",
           unit="nats", label="training loss between aligned seeds"),
    Output("average_aligned_path_error", "training error (%) along the line between aligned seeds", coord="t",
           unit="%", label="training error between aligned seeds"),
])
def average_aligned(a: ModelInput, b: ModelInput, *, points: int = 11) -> list[Value]:
    """Git Re-Basin (Ainsworth et al. 2023): b's hidden units permuted to match a (weight matching), then
    the average and the loss profile of the straight line between a and the aligned b."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    aligned, _ = weight_matching(a.model, sa, sb)
    moved = _with_state(b, aligned)
    with torch.no_grad():  # a permutation changes no function: check it, it is cheap
        x = b.task.x_test[:256]
        gap = (moved(x) - b.model(x)).abs().max().item()
    if gap > 1e-3:
        raise RuntimeError(f"weight matching changed the function of {b.model_id} (max |Δ logit| {gap:.2g})")
    mean = 0.5 * (_test_acc(a) + _test_acc(b))
    acc = _test_acc(a, _with_state(a, average_states([sa, aligned])))
    params = lambda s: {k: v for k, v in s.items() if k in dict(a.model.named_parameters())}  # noqa: E731
    prof = linear_path(a.model, params(sa), params(aligned), a.task.x_train, a.task.y_train, points)
    return [Value("average_aligned_acc_delta", acc - mean, split="test"),
            Value("average_aligned_mc", prof.mc, split="train"),
            *[Value("average_aligned_path_loss", lo, split="train", coord=t) for t, lo in zip(prof.t, prof.loss)],
            *[Value("average_aligned_path_error", e, split="train", coord=t) for t, e in zip(prof.t, prof.error)]]


# ----------------------------------------------------------------------------- transfer
@register("transfer", scope="model", needs_data=True, kinds=["classification"], outputs=[
    Output("transfer_probe_test_acc", "target-task accuracy of a new head trained on frozen features",
           unit="fraction", label="transfer accuracy (linear probe)"),
    Output("transfer_finetune_test_acc", "target-task accuracy after fine-tuning every weight (new head)",
           unit="fraction", label="transfer accuracy (fine-tuned)"),
])
def transfer(m: ModelInput, *, target: str = "mnist1d_shift", n_train: int = 500, probe_epochs: int = 50,
             finetune_epochs: int = 20, lr: float = 0.02, batch_size: int = 50, seed: int = 0) -> list[Value]:
    """Fine-tune on a related offline task (default: MNIST-1D under a shifted corruption, 500 examples):
    a linear probe (new head, features frozen) and a full fine-tune with a fixed budget (new head, all
    weights); test accuracy on the target's test split."""
    dev = m.task.x_test.device
    t = load_task(target, n_train=n_train, data_seed=seed).to(dev)
    if t.input_shape != m.task.input_shape or t.n_classes != m.task.n_classes:
        raise ValueError(f"transfer target {target!r} has inputs {t.input_shape} and {t.n_classes} classes; this "
                         f"zoo's task has {m.task.input_shape} and {m.task.n_classes}: choose a related target")
    out = []
    for name, epochs, only in (("transfer_probe_test_acc", probe_epochs, True),
                               ("transfer_finetune_test_acc", finetune_epochs, False)):
        model = copy.deepcopy(m.model)
        head = reset_head(model, seed)
        fine_tune(model, t.x_train, t.y_train, epochs=epochs, lr=lr, batch_size=batch_size, seed=seed,
                  only=head if only else None)
        out.append(Value(name, accuracy(model, t.x_test, t.y_test), split="test"))
    return out


# ----------------------------------------------------------------------------- pruning
@register("prune", scope="model", needs_data=True, kinds=["classification", "sequence"], outputs=[
    Output("prune_test_acc", "accuracy after global magnitude pruning (coord = sparsity)", coord="sparsity",
           unit="fraction", label="test accuracy after pruning"),
    Output("prune_retained", "pruned / unpruned accuracy (coord = sparsity)", coord="sparsity",
           label="accuracy retained after pruning"),
    Output("prune_ft_test_acc", "accuracy after pruning and a short fine-tune (coord = sparsity)",
           coord="sparsity", unit="fraction", label="test accuracy after pruning and fine-tuning"),
    Output("prune_ft_retained", "pruned-and-fine-tuned / unpruned accuracy (coord = sparsity)", coord="sparsity",
           label="accuracy retained after pruning and fine-tuning"),
    Output("prune_retained_90", "accuracy retained at 90 % sparsity; higher = prunes better",
           label="accuracy retained at 90 % sparsity"),
    Output("prune_ft_retained_90", "accuracy retained at 90 % sparsity after the short fine-tune",
           label="accuracy retained at 90 % sparsity, fine-tuned"),
])
def prune(m: ModelInput, *, sparsities: tuple[float, ...] = SPARSITIES, finetune_epochs: int = 2, lr: float = 0.01,
          batch_size: int = 64, seed: int = 0) -> list[Value]:
    """Global magnitude pruning of the weight matrices at several sparsities, without and with a short
    fine-tune (2 epochs of SGD on the training split, pruned weights held at zero). The retained fractions
    are left out for a model with no test accuracy to retain (they would divide by zero)."""
    base = _test_acc(m)
    out: list[Value] = []
    for s in sparsities:
        model = copy.deepcopy(m.model)
        masks = magnitude_masks(model, s)
        apply_masks(model, masks)
        acc = _test_acc(m, model)
        fine_tune(model, m.task.x_train, m.task.y_train, epochs=finetune_epochs, lr=lr, batch_size=batch_size,
                  seed=seed, masks=masks)
        ft = _test_acc(m, model)
        out += [Value("prune_test_acc", acc, split="test", coord=s),
                Value("prune_ft_test_acc", ft, split="test", coord=s)]
        if base > 0:
            out += [Value("prune_retained", acc / base, coord=s), Value("prune_ft_retained", ft / base, coord=s)]
            if s == 0.9:
                out += [Value("prune_retained_90", acc / base), Value("prune_ft_retained_90", ft / base)]
    return out
