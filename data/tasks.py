"""Offline classification tasks, generated locally (nothing downloads at run time).

Each task returns a frozen `TaskData` of float32 inputs and int64 labels. Label noise is applied to the
training split only (Yang et al. 2021 used random labels to expose the under-fitted phases), with its own
seed so every model of a zoo sees the same noisy labels.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from importlib import metadata
from pathlib import Path

import numpy as np
import torch

from data.params import Param, SpecError, resolve


@dataclass(frozen=True)
class TaskData:
    x_train: torch.Tensor  # [N_train, *input_shape] float32
    y_train: torch.Tensor  # [N_train] int64, possibly noisy
    x_test: torch.Tensor  # [N_test, *input_shape] float32
    y_test: torch.Tensor  # [N_test] int64, clean
    n_classes: int

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])

    def to(self, device: torch.device) -> "TaskData":
        return TaskData(*(t.to(device) for t in (self.x_train, self.y_train, self.x_test, self.y_test)),
                        self.n_classes)


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


def _external(name: str) -> Callable[[], tuple[np.ndarray, ...]]:
    def load() -> tuple[np.ndarray, ...]:
        raise SpecError(f"task {name!r} is not available offline: zoos imported from it carry their "
                        "catalog and landscape metrics, but computing new metrics on them needs its data")
    return load


@dataclass(frozen=True)
class TaskDef:
    load_raw: Callable[[], tuple[np.ndarray, ...]]  # (x_train, y_train, x_test, y_test)
    n_classes: int
    package: str  # the package that generates or ships the data (its version keys the cache); "" = no data here
    input_shape: tuple[int, ...]

    @property
    def available(self) -> bool:
        """Whether this machine can produce the task's data (the published zoos' tasks it cannot)."""
        return bool(self.package)


TASKS: Mapping[str, TaskDef] = {
    "mnist1d": TaskDef(_mnist1d, 10, "mnist1d", (40,)),
    "mnist1d_shift": TaskDef(_mnist1d_shift, 10, "mnist1d", (40,)),  # transfer target of mnist1d zoos
    "digits": TaskDef(_digits, 10, "scikit-learn", (64,)),
    # the published zoos' tasks: known shapes, no data here (imported zoos only)
    "cifar10": TaskDef(_external("cifar10"), 10, "", (3, 32, 32)),
    "cifar100": TaskDef(_external("cifar100"), 100, "", (3, 32, 32)),
    "svhn": TaskDef(_external("svhn"), 10, "", (3, 32, 32)),
    "tinyimagenet": TaskDef(_external("tinyimagenet"), 200, "", (3, 64, 64)),
}


def task_params(task: str, given: Mapping) -> dict:
    if task not in TASKS:
        raise SpecError(f"task: unknown task {task!r}; available: {sorted(TASKS)}")
    return resolve("task_params", COMMON_PARAMS, given)


def cache_dir() -> Path:
    return Path(os.environ.get("PHASEZOO_CACHE", Path.home() / ".cache" / "phasezoo"))


@lru_cache(maxsize=4)
def _raw(task: str) -> tuple[np.ndarray, ...]:
    """The task's arrays, generated once per machine and then read from a cache file (ms instead of
    seconds: every worker process needs them). The key carries the generating package's version."""
    package = TASKS[task].package
    if not package:  # an external task: its loader says why there is no data
        return TASKS[task].load_raw()
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


def load_task(task: str, n_train: int = 0, label_noise: float = 0.0, data_seed: int = 0) -> TaskData:
    """Build a task's data; `n_train` > 0 keeps a seeded subset of the training split."""
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
