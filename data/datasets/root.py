"""The data root: the one directory under which every dataset read from disk lives (nothing downloads).

`PHASEZOO_DATA` names it; an explicit argument (the CLI's `--data-root`, a spec's `data_root`) overrides it.
Under it each dataset sits in the layout its usual tool leaves behind (docs/datasets.md): torchvision's
`cifar-10-batches-py/`, `train_32x32.mat`, `tiny-imagenet-200/`, an image-folder tree, or a `.npz`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.params import SpecError

ENV = "PHASEZOO_DATA"
# Largest array a reader allocates on a file's say-so (4 GiB: TinyImageNet's training split is 1.2 GB as
# uint8, SVHN's extra split 1.6 GB); anything declaring more is refused before it is allocated.
MAX_BYTES = 4 * 2**30


class DatasetError(SpecError):
    """A data root or a dataset file that cannot be read: one line naming the path, what was expected and found."""


@dataclass(frozen=True)
class Arrays:
    """One dataset's two splits as read from disk, before any preprocessing.

    x_*: [N, C, H, W] uint8 pixels (0–255) for image layouts, or whatever dtype a `.npz` stores;
    y_*: [N] int64 class indices in [0, n_classes)."""
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray

    def __iter__(self):  # x, y, xt, yt = arrays: what data.tasks' loaders return
        return iter((self.x_train, self.y_train, self.x_test, self.y_test))

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.x_train.shape[1:])


def data_root(explicit: str | os.PathLike | None = None) -> Path:
    """The data root: `explicit` if given, else $PHASEZOO_DATA; an existing directory, or a DatasetError."""
    if explicit is not None and str(explicit) != "":
        where, path = "the data root given", Path(explicit).expanduser()
    elif os.environ.get(ENV):
        where, path = f"${ENV}", Path(os.environ[ENV]).expanduser()
    else:
        raise DatasetError(f"no data root: set {ENV} (or pass --data-root) to the directory holding the datasets")
    if not path.exists():
        raise DatasetError(f"data root {path} ({where}) does not exist")
    if not path.is_dir():
        raise DatasetError(f"data root {path} ({where}) is not a directory")
    return path


def found(path: Path, n: int = 6) -> str:
    """What is at `path`, for "expected <layout> under <dir>: found <what>"."""
    if not path.exists():
        return "nothing (it does not exist)"
    if not path.is_dir():
        return "a file, not a directory"
    try:
        names = sorted(p.name + ("/" if p.is_dir() else "") for p in path.iterdir())
    except OSError as e:
        return f"an unreadable directory ({e.strerror})"
    if not names:
        return "an empty directory"
    more = f" and {len(names) - n} more" if len(names) > n else ""
    return ", ".join(names[:n]) + more


def layout_error(layout: str, where: Path, what: str | None = None) -> DatasetError:
    return DatasetError(f"expected {layout} under {where}: found {what if what is not None else found(where)}")


def check_bytes(n_bytes: int, path: Path, what: str) -> None:
    """Refuse an allocation of `n_bytes` a file declares, before making it."""
    if n_bytes > MAX_BYTES:
        raise DatasetError(f"{path}: {what} declares {n_bytes:,} bytes, more than the {MAX_BYTES:,} a dataset "
                           "array may take (data.datasets.root.MAX_BYTES)")


def check_labels(y: np.ndarray, n_classes: int, path: Path | str, split: str) -> np.ndarray:
    """[N] int64 labels, each in [0, n_classes)."""
    y = np.asarray(y)
    if y.ndim != 1:
        raise DatasetError(f"{path}: {split} labels have shape {y.shape}, expected [N]")
    if y.size and not np.issubdtype(y.dtype, np.integer):
        if not np.issubdtype(y.dtype, np.floating) or not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise DatasetError(f"{path}: {split} labels are {y.dtype} with non-integer values, expected class indices")
    y = y.astype(np.int64)
    bad = np.flatnonzero((y < 0) | (y >= n_classes))
    if bad.size:
        raise DatasetError(f"{path}: {split} label {y[bad[0]]} at index {bad[0]} is outside the class range "
                           f"[0, {n_classes}) ({bad.size} such label{'s' if bad.size > 1 else ''})")
    return y
