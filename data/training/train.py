"""Training kernels: one model at a time (the reference), and many models in one batched computation.

`train_batched` stacks M models of one architecture — different seeds, and different values of paddable
parameters such as width, zero-padded to the largest — into tensors with a leading model dimension. Each
model keeps its own initialisation and its own data order; its loss is its own batch mean of the task's
objective (`data.tasks.objectives`). A step is either written out (`data.models.stacked_mlp`, for SGD on cross-entropy
Linear/activation stacks) or autograd over `torch.func.vmap(functional_call)` with one torch optimiser
(any architecture, any objective): the summed loss gives every model exactly its own gradient, and SGD,
Adam and AdamW are elementwise, so the stacked update is every model's own. The result equals `train_one`
up to float summation order.

Both kernels log a clean eval-mode re-evaluation of the full train and test splits after every
`eval_every`-th epoch, each checkpoint epoch and the last (epoch 0 = the initialisation), and return CPU
copies of the weights at the requested epochs.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.func import functional_call, vmap

from data.models.stacked_mlp import StackedMLPStep, layer_plan
from data.tasks.builtin import TaskData
from data.tasks.objectives import CLASSIFICATION, Classification, Objective, Scores

StateDict = dict[str, torch.Tensor]
EVAL_CHUNK = 8192  # examples per eval forward pass, bounds memory at M × chunk × width floats


OPTIMIZERS = ("sgd", "adam", "adamw")  # adam: L2 weight decay in the gradient; adamw: decoupled


@dataclass(frozen=True)
class TrainConfig:
    epochs: int
    lr: float
    batch_size: int
    momentum: float = 0.0
    weight_decay: float = 0.0
    optimizer: str = "sgd"  # one of OPTIMIZERS; Adam's beta1 is 0.9
    beta2: float = 0.999
    eval_every: int = 1  # epochs between logged evaluations (checkpoint epochs and the last: always)

    @classmethod
    def from_training(cls, tr: Mapping) -> TrainConfig:
        """From a spec's resolved [training] section."""
        return cls(tr["epochs"], tr["lr"], tr["batch_size"], tr["momentum"], tr["weight_decay"], tr["optimizer"],
                   tr["beta2"], tr["eval_every"])

    def optimiser(self, params) -> torch.optim.Optimizer:
        """The torch optimiser: elementwise rules, so on stacked models every model gets its own update."""
        if self.optimizer == "sgd":
            return torch.optim.SGD(params, lr=self.lr, momentum=self.momentum, weight_decay=self.weight_decay)
        kind = torch.optim.Adam if self.optimizer == "adam" else torch.optim.AdamW
        return kind(params, lr=self.lr, betas=(0.9, self.beta2), weight_decay=self.weight_decay)

    def logs(self, epoch: int, checkpoint_epochs: Sequence[int]) -> bool:
        return epoch % self.eval_every == 0 or epoch == self.epochs or epoch in checkpoint_epochs


@dataclass(frozen=True)
class EpochLog:
    epoch: int
    train_loss: float  # the objective's loss over the full training split, eval mode (cross-entropy: nats)
    train_acc: float | None  # fraction in [0, 1]; None for regression
    test_loss: float
    test_acc: float | None


@dataclass(frozen=True)
class TrainResult:
    history: tuple[EpochLog, ...]  # the logged epochs of 0..E (every `eval_every`-th, checkpoints, the last)
    checkpoints: Mapping[int, StateDict]  # epoch -> CPU state dict


def order_seed(seed: int) -> int:
    """Seed of a model's data-order generator, distinct from its initialisation seed."""
    return 1_000_003 * (seed + 1)


def _log(epoch: int, tr: tuple[float, float | None], te: tuple[float, float | None]) -> EpochLog:
    return EpochLog(epoch, tr[0], tr[1], te[0], te[1])


def _pairs(scores: Scores) -> list[tuple[float, float | None]]:
    """(loss, accuracy or None) per model, from scores with a leading model dimension."""
    accs = scores.acc.tolist() if scores.acc is not None else [None] * len(scores.loss)
    return list(zip(scores.loss.tolist(), accs))


def _cpu_state(model_state: Mapping[str, torch.Tensor]) -> StateDict:
    return {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model_state.items()}


# ----------------------------------------------------------------------------- one model at a time
def scores(model: nn.Module, x: torch.Tensor, y: torch.Tensor, objective: Objective = CLASSIFICATION) -> Scores:
    """The objective's scores of `model` in eval mode on (x, y); restores the model's mode."""
    was_training = model.training
    model.eval()
    try:
        return objective.evaluate(model, x, y, EVAL_CHUNK)
    finally:
        model.train(was_training)


def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor,
             objective: Objective = CLASSIFICATION) -> tuple[float, float | None]:
    """(loss, accuracy or None for regression) of `model` in eval mode."""
    s = scores(model, x, y, objective)
    return s.loss.item(), None if s.acc is None else s.acc.item()


def train_one(model: nn.Module, data: TaskData, cfg: TrainConfig, seed: int, checkpoint_epochs: Sequence[int],
              on_epoch: Callable[[int], None] = lambda steps: None) -> TrainResult:
    """The ordinary loop: shuffled mini-batches, the configured optimiser, the task's objective."""
    opt = cfg.optimiser(model.parameters())
    gen = torch.Generator().manual_seed(order_seed(seed))
    n, obj = len(data.y_train), data.objective
    evaluated = lambda e: _log(e, evaluate(model, data.x_train, data.y_train, obj),
                               evaluate(model, data.x_test, data.y_test, obj))
    history = [evaluated(0)]
    ckpts = {0: _cpu_state(model.state_dict())} if 0 in checkpoint_epochs else {}
    for epoch in range(1, cfg.epochs + 1):
        model.train()
        perm = torch.randperm(n, generator=gen).to(data.x_train.device)
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            loss = obj.loss(model, data.x_train[idx], data.y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        if cfg.logs(epoch, checkpoint_epochs):
            history.append(evaluated(epoch))
        if epoch in checkpoint_epochs:
            ckpts[epoch] = _cpu_state(model.state_dict())
        on_epoch(steps_per_epoch(n, cfg.batch_size))
    return TrainResult(tuple(history), ckpts)


def steps_per_epoch(n: int, batch_size: int) -> int:
    return -(-n // batch_size)


# ----------------------------------------------------------------------------- many models at once
def stack_padded(states: Sequence[Mapping[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack M state dicts into [M, *max_shape] tensors, zero-padding each tensor at its trailing end."""
    out = {}
    for name in states[0]:
        shapes = [s[name].shape for s in states]
        if len({len(sh) for sh in shapes}) != 1:
            raise ValueError(f"cannot stack {name!r}: ranks differ across models {shapes}")
        big = tuple(max(dim) for dim in zip(*shapes))
        stacked = states[0][name].new_zeros((len(states), *big))
        for m, s in enumerate(states):
            stacked[(m, *(slice(0, d) for d in s[name].shape))] = s[name]
        out[name] = stacked
    return out


def unstack(stacked: Mapping[str, torch.Tensor], m: int, shapes: Mapping[str, torch.Size]) -> StateDict:
    """Model m's own tensors, cut back to its own shapes."""
    return {k: v[(m, *(slice(0, d) for d in shapes[k]))].detach().to("cpu", copy=True).contiguous()
            for k, v in stacked.items()}


# Layers that act on a leading model dimension unchanged (Flatten only with a negative start_dim),
# plus Linear, which gets a batched matmul.
_STACKABLE = (nn.Linear, nn.ReLU, nn.Tanh, nn.GELU, nn.Identity, nn.Flatten)


class BatchedModels:
    """M models of one architecture as stacked tensors, run together (one baddbmm per Linear for plain stacks,
    vmap otherwise); evaluated stacked on the baddbmm path, model by model on the vmap path."""

    def __init__(self, models: Sequence[nn.Module]):
        if any(dict(m.named_buffers()) for m in models):
            raise ValueError("batched training does not support modules with buffers (e.g. BatchNorm) yet")
        self.shapes = [{k: v.shape for k, v in m.state_dict().items()} for m in models]
        self.models = tuple(models)  # each at its own size: the evaluation of the vmap path runs them one by one
        widest = max(range(len(models)), key=lambda i: sum(v.numel() for v in models[i].state_dict().values()))
        self.template = models[widest]  # its architecture, at the padded size, computes every model
        self.params = {k: v.detach().clone().requires_grad_(True)
                       for k, v in stack_padded([m.state_dict() for m in models]).items()}
        expected = {k: v.shape[1:] for k, v in self.params.items()}
        got = {k: v.shape for k, v in self.template.state_dict().items()}
        if expected != got:
            raise ValueError("models are not zero-padded slices of one another (check the paddable parameters)")
        self._sequential = isinstance(self.template, nn.Sequential) and all(
            isinstance(layer, _STACKABLE) and not (isinstance(layer, nn.Linear) and layer.bias is None)
            and not (isinstance(layer, nn.Flatten) and layer.start_dim >= 0)
            for layer in self.template.children())

    def __len__(self) -> int:
        return len(self.shapes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: [M, B, ...] -> outputs [M, B, C]."""
        if self._sequential:
            return self._forward_sequential(x)
        return vmap(lambda p, xb: functional_call(self.template, p, (xb,)))(self.params, x)

    def _forward_sequential(self, x: torch.Tensor) -> torch.Tensor:
        # Same maths as vmap, with one baddbmm per Linear: ~40 % less per-step overhead (measured here,
        # 18 small MLPs, batch 8), which is most of the cost of small models on a CPU.
        for name, layer in self.template.named_children():
            if isinstance(layer, nn.Linear):
                w, b = self.params[f"{name}.weight"], self.params[f"{name}.bias"]  # [M, out, in], [M, out]
                x = torch.baddbmm(b.unsqueeze(1), x, w.transpose(1, 2))  # [M, B, in] -> [M, B, out]
            else:
                x = layer(x)  # elementwise, or Flatten over trailing dims
        return x

    def state_dict(self, m: int) -> StateDict:
        return unstack(self.params, m, self.shapes[m])

    def evaluate(self, x: torch.Tensor, y: torch.Tensor, objective: Objective) -> list[tuple[float, float | None]]:
        """(loss, accuracy or None) of every model on the shared split (x, y)."""
        self.template.eval()
        if self._sequential:
            return _pairs(objective.evaluate(self.forward, x, y, EVAL_CHUNK, lead=(len(self),)))
        # The vmap path evaluates model by model, each at its own size, with its current stacked weights: an
        # evaluation is a few large passes with no per-step overhead to share, and stacked it ran slower
        # (CNN width 64, 3 models, both splits, 1 thread: 333–380 ms against 232–259 ms one by one; padded
        # groups add their padding's arithmetic on top).
        out = []
        for m, model in enumerate(self.models):
            own = {k: v[(m, *(slice(0, d) for d in self.shapes[m][k]))] for k, v in self.params.items()}
            model.eval()
            s = objective.evaluate(lambda xb, model=model, own=own: functional_call(model, own, (xb,)), x, y,
                                   EVAL_CHUNK)
            out.append((s.loss.item(), None if s.acc is None else s.acc.item()))
        return out


def _make_step(batch: BatchedModels, cfg: TrainConfig,
               objective: Objective) -> Callable[[torch.Tensor, torch.Tensor], None]:
    """One optimiser step on all models: written-out backward for SGD on cross-entropy Linear/activation
    stacks, autograd otherwise."""
    plan = layer_plan(batch.template)
    if plan is not None and cfg.optimizer == "sgd" and isinstance(objective, Classification):
        return StackedMLPStep(batch.params, plan, cfg.lr, cfg.momentum, cfg.weight_decay)
    opt = cfg.optimiser(batch.params.values())

    def step(x: torch.Tensor, y: torch.Tensor) -> None:  # x: [M, b, ...], y: [M, b]
        per_model = objective.loss(batch.forward, x, y)  # [M]
        opt.zero_grad(set_to_none=True)
        per_model.sum().backward()  # the sum gives each model exactly its own gradient
        opt.step()
    return step


def train_batched(models: Sequence[nn.Module], data: TaskData, cfg: TrainConfig, seeds: Sequence[int],
                  checkpoint_epochs: Sequence[int],
                  on_epoch: Callable[[int], None] = lambda steps: None) -> list[TrainResult]:
    """Train M models together; result m equals `train_one(models[m], ..., seeds[m])` up to rounding."""
    batch = BatchedModels(models)
    M, n, B, obj = len(batch), len(data.y_train), cfg.batch_size, data.objective
    step = _make_step(batch, cfg, obj)
    gens = [torch.Generator().manual_seed(order_seed(s)) for s in seeds]
    evaluated = lambda: zip(batch.evaluate(data.x_train, data.y_train, obj),
                            batch.evaluate(data.x_test, data.y_test, obj))
    histories = [[_log(0, tr, te)] for tr, te in evaluated()]
    ckpts: list[dict[int, StateDict]] = [{} for _ in range(M)]

    def keep(epoch: int) -> None:
        if epoch in checkpoint_epochs:
            for m in range(M):
                ckpts[m][epoch] = batch.state_dict(m)

    keep(0)
    for epoch in range(1, cfg.epochs + 1):
        batch.template.train()
        perms = torch.stack([torch.randperm(n, generator=g) for g in gens]).to(data.x_train.device)  # [M, n]
        for i in range(0, n, B):
            idx = perms[:, i:i + B]  # [M, b]
            step(data.x_train[idx], data.y_train[idx])
        if cfg.logs(epoch, checkpoint_epochs):
            for m, (tr, te) in enumerate(evaluated()):
                histories[m].append(_log(epoch, tr, te))
        keep(epoch)
        on_epoch(steps_per_epoch(n, B))
    return [TrainResult(tuple(h), c) for h, c in zip(histories, ckpts)]


def seconds_per_step(models: Sequence[nn.Module], data: TaskData, cfg: TrainConfig, steps: int = 5,
                     warmup: int = 2) -> float:
    """Measured wall seconds of one training step of these models trained together (the generator's cost
    estimate); random batches, the models' weights are moved by the steps (pass throwaway copies)."""

    batched = len(models) > 1 and not any(dict(m.named_buffers()) for m in models)
    n, B = len(data.y_train), min(cfg.batch_size, len(data.y_train))
    gen = torch.Generator().manual_seed(0)
    if batched:
        step = _make_step(BatchedModels(models), cfg, data.objective)

        def run():
            idx = torch.randint(0, n, (len(models), B), generator=gen).to(data.x_train.device)  # [M, B]
            step(data.x_train[idx], data.y_train[idx])
    else:
        opts = [cfg.optimiser(m.parameters()) for m in models]

        def run():
            for m, opt in zip(models, opts):
                idx = torch.randint(0, n, (B,), generator=gen).to(data.x_train.device)
                loss = data.objective.loss(m, data.x_train[idx], data.y_train[idx])
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
    for _ in range(warmup):
        run()
    t = time.perf_counter()
    for _ in range(steps):
        run()
    return (time.perf_counter() - t) / steps


def seconds_per_eval(models: Sequence[nn.Module], data: TaskData) -> float:
    """Measured wall seconds of one logged evaluation (both full splits) of these models, as training does."""

    batched = len(models) > 1 and not any(dict(m.named_buffers()) for m in models)
    t = time.perf_counter()
    if batched:
        batch = BatchedModels(models)
        for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
            batch.evaluate(x, y, data.objective)
    else:
        for m in models:
            for x, y in ((data.x_train, data.y_train), (data.x_test, data.y_test)):
                evaluate(m, x, y, data.objective)
    return time.perf_counter() - t
