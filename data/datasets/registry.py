"""Datasets by name: which reader, which layout under the data root, how many classes, which input shape and
which normalisation — the one table data.tasks' published tasks (cifar10, cifar100, svhn, tinyimagenet) and a
user's own data (imagefolder, npz) are read through."""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np

from data.datasets import arrays, cifar, imagefolder, parquet, svhn
from data.datasets.preprocess import NORMALISATION, Normalisation, tensors
from data.datasets.root import Arrays, DatasetError, check_labels, data_root
from data.params import Param, resolve


@dataclass(frozen=True)
class Dataset:
    read: Callable[..., Arrays]  # (root, **params) → arrays as stored (uint8 pixels for image layouts)
    has: Callable[..., bool]  # (root, **params) → whether the layout is there (reads no file)
    layout: str  # what is expected under the data root, for messages and docs
    n_classes: int | None  # None: a parameter (0 = 1 + the largest label)
    input_shape: tuple[int, ...] | None  # [C, H, W]; None: from the parameters or the data
    normalisation: Normalisation | None  # None: the `normalisation` parameter's
    params: Mapping[str, Param] = field(default_factory=dict)  # besides input_shape ([C, H, W], image trees)


def _norm_param() -> Param:
    names = sorted(NORMALISATION) + ["none"]
    return Param(str, "none", lambda v: v in names, f"one of {names}")


DATASETS: Mapping[str, Dataset] = {
    "cifar10": Dataset(lambda r: cifar.read(r, "cifar10"), lambda r: cifar.has_layout(r, "cifar10"),
                       "cifar-10-batches-py/ or cifar-10-batches-bin/", 10, (3, 32, 32), NORMALISATION["cifar10"], {}),
    "cifar100": Dataset(lambda r: cifar.read(r, "cifar100"), lambda r: cifar.has_layout(r, "cifar100"),
                        "cifar-100-python/ or cifar-100-binary/", 100, (3, 32, 32), NORMALISATION["cifar100"], {}),
    "svhn": Dataset(svhn.read, svhn.has_layout, "svhn/ (or the root) with train_32x32.mat and test_32x32.mat", 10,
                    (3, 32, 32), NORMALISATION["svhn"], {}),
    "tinyimagenet": Dataset(imagefolder.read_tiny, imagefolder.has_tiny, "tiny-imagenet-200/", 200, (3, 64, 64),
                            NORMALISATION["tinyimagenet"], {}),
    "imagefolder": Dataset(imagefolder.read, lambda r, path="": imagefolder.has_layout(r, path),
                           "<path>/train/<class>/ and <path>/val/<class>/ (or test/)", None, None, None, {
                               "path": Param(str, ""), "n_classes": Param(int, 0, lambda v: v >= 0, ">= 0"),
                               "normalisation": _norm_param()}),
    "npz": Dataset(arrays.read, lambda r, file="dataset.npz": arrays.has_layout(r, file),
                   "<file>.npz with x_train, y_train, x_test, y_test", None, None, None, {
                       "file": Param(str, "dataset.npz"), "n_classes": Param(int, 0, lambda v: v >= 0, ">= 0"),
                       "normalisation": _norm_param()}),
    "parquet": Dataset(parquet.read, lambda r, path="": parquet.has_layout(r, path),
                       "<path>/train-*.parquet and <path>/test-*.parquet (Hugging Face datasets' layout)", None, None,
                       None, {"path": Param(str, ""), "image_column": Param(str, ""), "label_column": Param(str, ""),
                              "n_classes": Param(int, 0, lambda v: v >= 0, ">= 0"), "normalisation": _norm_param()}),
}
IMAGE_TREES = ("imagefolder", "parquet")  # decoded images: the input shape is a parameter


def dataset(name: str) -> Dataset:
    if name not in DATASETS:
        raise DatasetError(f"dataset: unknown dataset {name!r}; known: {sorted(DATASETS)}")
    return DATASETS[name]


def _shape(name: str, params: dict) -> tuple[int, int, int] | None:
    shape = params.pop("input_shape", None)
    if shape is None:
        return (3, 32, 32) if name in IMAGE_TREES else None
    if name not in IMAGE_TREES:
        raise DatasetError(f"dataset {name}: input_shape is fixed by the layout; only {' and '.join(IMAGE_TREES)} "
                           "take it")
    if not (isinstance(shape, (list, tuple)) and len(shape) == 3
            and all(type(v) is int and v > 0 for v in shape)):
        raise DatasetError(f"dataset {name}.input_shape: expected [C, H, W] (3 positive integers), got {shape!r}")
    return tuple(shape)


def _resolve(name: str, params: Mapping) -> tuple[Dataset, dict, tuple | None]:
    ds, params = dataset(name), dict(params)
    shape = _shape(name, params)
    return ds, resolve(f"dataset {name}", ds.params, params), shape


def available(name: str, root: str | os.PathLike | None = None, **params) -> bool:
    """Whether the data root exists and holds `name`'s layout (no file is read: cheap enough for a page)."""
    try:
        ds, p, _ = _resolve(name, params)
        r = data_root(root)
    except DatasetError:
        return False
    return ds.has(r, **{k: v for k, v in p.items() if k in ("path", "file")})


def load_arrays(name: str, root: str | os.PathLike | None = None, **params) -> Arrays:
    """`name`'s arrays as stored under the data root (`root`, else $PHASEZOO_DATA), checked against the
    registry: input shape [C, H, W] and labels in [0, n_classes). Every failure is a one-line DatasetError."""
    ds, p, shape = _resolve(name, params)
    r = data_root(root)
    if name == "imagefolder":
        a = ds.read(r, p["path"], shape)
    elif name == "parquet":
        a = ds.read(r, p["path"], shape, p["image_column"], p["label_column"], p["n_classes"] or None)
    elif name == "npz":
        a = ds.read(r, p["file"], p["n_classes"] or None)
    else:
        a = ds.read(r)
    n = n_classes(name, a, **p)
    expected = ds.input_shape or shape
    for split, x, y in (("train", a.x_train, a.y_train), ("test", a.x_test, a.y_test)):
        if expected is not None and tuple(x.shape[1:]) != expected:
            raise DatasetError(f"dataset {name} under {r}: {split} inputs are [N, {', '.join(map(str, x.shape[1:]))}], "
                               f"expected [N, {', '.join(map(str, expected))}]")
        check_labels(y, n, f"dataset {name} under {r}", f"{split}")
    return a


def n_classes(name: str, arrays: Arrays, **params) -> int:
    """The model outputs `name` needs: fixed by the registry, else the parameter, else 1 + the largest label."""
    ds = dataset(name)
    return ds.n_classes or params.get("n_classes") or 1 + max(int(arrays.y_train.max(initial=0)),
                                                              int(arrays.y_test.max(initial=0)))


def normalisation(name: str, **params) -> Normalisation | None:
    ds = dataset(name)
    if ds.normalisation is not None:
        return ds.normalisation
    choice = params.get("normalisation", "none")
    return None if choice == "none" else NORMALISATION[choice]


def load_normalised(name: str, root: str | os.PathLike | None = None, **params) -> tuple[np.ndarray, ...]:
    """(x_train, y_train, x_test, y_test) as float32 [N, C, H, W] inputs preprocessed as the published zoos were
    (data.datasets.preprocess) and int64 labels: what a data.tasks TaskDef's `load_raw` returns."""
    a = load_arrays(name, root, **params)
    return tuple(t.numpy() for t in tensors(a, normalisation(name, **params)))

