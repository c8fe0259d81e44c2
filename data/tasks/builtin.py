"""Offline tasks, generated locally (nothing downloads at run time).

Each task returns a frozen `TaskData`: inputs, targets and the objective that says what the loss is.

- Classification (`mnist1d`, `digits`, …): float32 inputs and int64 labels. Label noise is applied to the
  training split only (Yang et al. 2021 used random labels to expose the under-fitted phases), with its
  own seed so every model of a zoo sees the same noisy labels.
- `modular_add`: the sequence task of the grokking literature (Power et al. 2022): token sequences
  (a, b, =) labelled (a + b) mod p; a seeded `train_fraction` of the p² pairs is the training split.
- `convection`: a PINN task (science.md §5): collocation points for u_t + β u_x = 0 and the exact
  solution sin(x − βt) on a 256 × 100 grid as the test split.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from data import datasets
from data.params import Param, SpecError, resolve
from data.tasks.objectives import BOUNDARY, CLASSIFICATION, INITIAL, INTERIOR, ConvectionPINN, Objective


@dataclass(frozen=True)
class TaskData:
    x_train: torch.Tensor  # [N_train, *input_shape] float32 (int64 tokens for sequence tasks)
    y_train: torch.Tensor  # [N_train] int64 labels, possibly noisy (PINN: the kind of each point)
    x_test: torch.Tensor  # [N_test, *input_shape]
    y_test: torch.Tensor  # [N_test] int64 clean labels (PINN: float32 exact solution)
    n_classes: int  # the model's outputs: classes, or 1 for a scalar regression
    objective: Objective = CLASSIFICATION

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> TaskData:
        return TaskData(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)),
                        self.n_classes, self.objective)


COMMON_PARAMS = {
    "n_train": Param(int, 0, lambda v: v >= 0, "0 (all) or a positive count"),
    "label_noise": Param(float, 0.0, lambda v: 0.0 <= v < 1.0, "a fraction in [0, 1)"),
    "data_seed": Param(int, 0),
}


def _mnist1d(**overrides) -> tuple[np.ndarray, ...]:
    # make_dataset generates locally (~2 s, deterministic); get_dataset() would try to download.
    from mnist1d.data import get_dataset_args, make_dataset

    args = get_dataset_args()
    for k, v in overrides.items():
        setattr(args, k, v)
    d = make_dataset(args)
    return d["x"], d["y"], d["x_test"], d["y_test"]


def _mnist1d_shift() -> tuple[np.ndarray, ...]:
    """MNIST-1D's ten templates under a shifted corruption (1.4× the correlated and 2.5× the i.i.d. noise,
    more shear) and other samples: a related task for transfer (same inputs and classes, another domain;
    500 examples: a trained width-256 model's features reach 0.37 test accuracy where training from
    scratch reaches 0.26)."""
    return _mnist1d(corr_noise_scale=0.35, iid_noise_scale=0.05, shear_scale=0.9, seed=7)


def _digits() -> tuple[np.ndarray, ...]:
    from sklearn.datasets import load_digits

    x, y = load_digits(return_X_y=True)
    x = (x - x.mean(0)) / (x.std(0) + 1e-8)  # standardise each pixel; 8×8 flattened to 64
    rng = np.random.default_rng(0)  # a fixed 80/20 split
    idx = rng.permutation(len(y))
    cut = int(0.8 * len(y))
    return x[idx[:cut]], y[idx[:cut]], x[idx[cut:]], y[idx[cut:]]


def _from_root(name: str) -> Callable[[], tuple[np.ndarray, ...]]:
    """A published zoo's dataset read from the data root ($PHASEZOO_DATA; docs/datasets.md), preprocessed as the
    zoo's test-time transforms (data.datasets.preprocess); without it a one-line DatasetError says what is missing."""
    def load(root: str | None = None) -> tuple[np.ndarray, ...]:
        return datasets.load_normalised(name, root)
    return load


def _modular_add(p: int, train_fraction: float, data_seed: int) -> TaskData:
    """Every pair (a, b) ∈ [0, p)² as the tokens (a, b, p) — p is the "=" token — labelled (a + b) mod p.
    A seeded `train_fraction` of the p² pairs is the training split, the rest the test split; at 1 every
    pair is trained on and the test split is the training split (there is nothing left to generalise to)."""
    a, b = np.divmod(np.arange(p * p), p)
    x = np.stack([a, b, np.full_like(a, p)], 1)
    y = (a + b) % p
    order = np.random.default_rng(data_seed).permutation(p * p)
    # at least one training pair; below a fraction of 1, at least one held-out pair
    cut = min(max(1, round(train_fraction * p * p)), p * p if train_fraction == 1.0 else p * p - 1)
    tr, te = order[:cut], (order[cut:] if cut < p * p else order)
    t = lambda v: torch.as_tensor(v, dtype=torch.int64)
    return TaskData(t(x[tr]), t(y[tr]), t(x[te]), t(y[te]), p)


# The convection PINN's evaluation grid (science.md §5): 256 x-points × 100 t-points.
PINN_GRID = (256, 100)


def _convection(beta: float, n_train: int, data_seed: int) -> TaskData:
    """Collocation points for u_t + β u_x = 0 on x ∈ [0, 2π), t ∈ [0, 1], u(x, 0) = sin x, periodic in x.

    Training split: `n_train` uniform interior points, 128 initial points (t = 0: every other x of the
    grid) and 50 boundary points (x = 0, every other t; the loss compares u there with u at x = 2π), with
    their kind as the target. Test split: the exact solution sin(x − βt) on the 256 × 100 grid, in a
    seeded order (so any prefix is a uniform sample)."""
    rng = np.random.default_rng(data_seed)
    nx, nt = PINN_GRID
    xs, ts = np.arange(nx) * 2 * np.pi / nx, np.linspace(0.0, 1.0, nt)
    interior = np.stack([rng.uniform(0, 2 * np.pi, n_train), rng.uniform(0, 1, n_train)], 1)
    initial = np.stack([xs[::2], np.zeros(nx // 2)], 1)
    boundary = np.stack([np.zeros(nt // 2), ts[::2]], 1)
    x_train = np.concatenate([interior, initial, boundary])
    kinds = np.repeat([INTERIOR, INITIAL, BOUNDARY], [n_train, len(initial), len(boundary)])
    gx, gt = (g.ravel() for g in np.meshgrid(xs, ts, indexing="ij"))
    order = rng.permutation(gx.size)
    x_test = np.stack([gx, gt], 1)[order]
    u = np.sin(x_test[:, 0] - beta * x_test[:, 1])
    f = lambda v: torch.as_tensor(v, dtype=torch.float32)
    return TaskData(f(x_train), torch.as_tensor(kinds, dtype=torch.int64), f(x_test), f(u), 1, ConvectionPINN(beta))


@dataclass(frozen=True)
class TaskDef:
    load_raw: Callable[[], tuple[np.ndarray, ...]] | None  # classification arrays (x_train, y_train, x_test, y_test)
    n_classes: int | Callable[[Mapping], int]  # the model's outputs, or a function of the task's parameters
    package: str  # the package that generates or ships the data (its version keys the cache); "" = no data here
    input_shape: tuple[int, ...]
    params: Mapping[str, Param] = field(default_factory=lambda: COMMON_PARAMS)
    make: Callable[..., TaskData] | None = None  # builds a non-classification task from its parameters
    kind: str = "classification"  # one of TASK_KINDS: which metrics apply (`analysis.metrics.registry.Metric.kinds`)
    dataset: str = ""  # the data.datasets name read from the data root instead ("" = generated here)

    @property
    def available(self) -> bool:
        """Whether this machine can produce the task's data: generated here, or the data root holds its layout."""
        return bool(self.package) or (bool(self.dataset) and datasets.available(self.dataset))

    @property
    def units(self) -> dict[str, str]:
        """Units of the training loss and of mode connectivity (`data.tasks.objectives`), for labels."""
        if self.kind == "regression":
            return {"loss": "", "mc": "decades of loss"}
        return {"loss": "nats", "mc": "% points"}

    def shapes(self, params: Mapping) -> tuple[tuple[int, ...], int]:
        """(input shape, model outputs) for the given task parameters, without building the data."""
        n = self.n_classes(params) if callable(self.n_classes) else self.n_classes
        return self.input_shape, n


# "classification": float inputs, labels; "sequence": token inputs, labels; "regression": real outputs.
TASK_KINDS = ("classification", "sequence", "regression")
TASKS: Mapping[str, TaskDef] = {
    "mnist1d": TaskDef(_mnist1d, 10, "mnist1d", (40,)),
    "mnist1d_shift": TaskDef(_mnist1d_shift, 10, "mnist1d", (40,)),  # transfer target of mnist1d zoos
    "digits": TaskDef(_digits, 10, "scikit-learn", (64,)),
    "modular_add": TaskDef(None, lambda params: params["p"], "numpy", (3,), {
        "p": Param(int, 59, lambda v: v >= 2, "the modulus, must be >= 2"),
        "train_fraction": Param(float, 0.5, lambda v: 0.0 < v <= 1.0, "a fraction in (0, 1]"),
        "data_seed": Param(int, 0)}, _modular_add, "sequence"),
    "convection": TaskDef(None, 1, "numpy", (2,), {
        "beta": Param(float, 1.0, lambda v: v >= 0.0, "the convection speed β must be >= 0"),
        "n_train": Param(int, 500, lambda v: v > 0, "interior collocation points, must be > 0"),
        "data_seed": Param(int, 0)}, _convection, "regression"),
    # the published zoos' tasks: known shapes, data from the data root when it holds them (data.datasets)
    **{name: TaskDef(_from_root(name), datasets.DATASETS[name].n_classes, "", datasets.DATASETS[name].input_shape,
                     dataset=name) for name in ("cifar10", "cifar100", "svhn", "tinyimagenet")},
}


def task_def(task: str) -> TaskDef:
    if task not in TASKS:
        raise SpecError(f"task: unknown task {task!r}; available: {sorted(TASKS)}")
    return TASKS[task]


def task_params(task: str, given: Mapping) -> dict:
    return resolve("task_params", task_def(task).params, given)


def cache_dir() -> Path:
    return Path(os.environ.get("PHASEZOO_CACHE", Path.home() / ".cache" / "phasezoo"))


def _raw(task: str) -> tuple[np.ndarray, ...]:
    if TASKS[task].dataset:  # read from the data root: cached per root, so a changed $PHASEZOO_DATA is seen
        try:
            return _from_disk(task, str(datasets.data_root()))
        except datasets.DatasetError as e:
            raise datasets.DatasetError(f"task {task}: {e}") from None
    return _generated(task)


@lru_cache(maxsize=2)
def _from_disk(task: str, root: str) -> tuple[np.ndarray, ...]:
    return TASKS[task].load_raw(root)


@lru_cache(maxsize=4)
def _generated(task: str) -> tuple[np.ndarray, ...]:
    """The task's arrays, generated once per machine and then read from a cache file (ms instead of
    seconds: every worker process needs them). The key carries the generating package's version."""
    package = TASKS[task].package
    path = cache_dir() / f"{task}-{package}-{metadata.version(package)}.npz"
    try:
        with np.load(path) as f:
            return tuple(f[k] for k in ("x", "y", "x_test", "y_test"))
    except (OSError, KeyError, ValueError):
        pass  # absent or damaged: regenerate
    arrays = TASKS[task].load_raw()
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".npz")
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **dict(zip(("x", "y", "x_test", "y_test"), arrays)))
        os.replace(tmp, path)
    except OSError:  # a read-only home only costs the regeneration next time
        if tmp:
            Path(tmp).unlink(missing_ok=True)
    return arrays


def load_task(task: str, **params) -> TaskData:
    """Build a task's data from its parameters (missing ones take their defaults)."""
    tdef = task_def(task)
    params = task_params(task, params)
    if tdef.make is not None:
        return tdef.make(**params)
    return _classification(task, **params)


def _classification(task: str, n_train: int, label_noise: float, data_seed: int) -> TaskData:
    """`n_train` > 0 keeps a seeded subset of the training split; then labels are flipped at `label_noise`."""
    x, y, xt, yt = _raw(task)
    rng = np.random.default_rng(data_seed)
    if n_train:
        if n_train > len(y):
            raise SpecError(f"task_params.n_train: {n_train} exceeds the {len(y)} training examples of {task}")
        keep = np.sort(rng.choice(len(y), n_train, replace=False))
        x, y = x[keep], y[keep]
    y = y.copy()
    n_classes = TASKS[task].n_classes
    flip = rng.random(len(y)) < label_noise
    # A flipped label is drawn uniformly from the *other* classes, so `label_noise` is the expected wrong fraction.
    y[flip] = (y[flip] + rng.integers(1, n_classes, flip.sum())) % n_classes
    as_x = lambda a: torch.as_tensor(np.asarray(a, dtype=np.float32))
    as_y = lambda a: torch.as_tensor(np.asarray(a, dtype=np.int64))
    return TaskData(as_x(x), as_y(y), as_x(xt), as_y(yt), n_classes)
