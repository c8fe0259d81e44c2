"""CIFAR-10 and CIFAR-100 as their authors ship them and torchvision extracts them (Krizhevsky 2009,
https://www.cs.toronto.edu/~kriz/cifar.html).

Python version — pickled dicts (Python 2 cPickle, protocol 2; keys read back as bytes):
- `cifar-10-batches-py/`: `data_batch_1` … `data_batch_5` (training) and `test_batch`, each with b"data"
  ([N, 3072] uint8: the 1024 red, then green, then blue pixels of a 32 × 32 image, row-major) and b"labels"
  (N ints in [0, 10)); `batches.meta` with b"label_names" (10).
- `cifar-100-python/`: `train`, `test` with b"data" and b"fine_labels" (N ints in [0, 100); also
  b"coarse_labels"); `meta` with b"fine_label_names" (100).
Read by data.datasets.pickles: a restricted unpickler, never code-running.

Binary version — fixed-size records:
- `cifar-10-batches-bin/`: `data_batch_1.bin` … `data_batch_5.bin`, `test_batch.bin`: 1 label byte + 3072 pixels.
- `cifar-100-binary/`: `train.bin`, `test.bin`: 2 label bytes (coarse, fine) + 3072 pixels.

Both give x [N, 3, 32, 32] uint8 (what torchvision's CIFAR10 holds, before ToTensor) and y [N] int64.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from data.datasets import pickles
from data.datasets.root import Arrays, DatasetError, check_labels, found, layout_error

PIXELS = 3 * 32 * 32  # bytes per image: 3 planes of 32 × 32


@dataclass(frozen=True)
class Layout:
    dir: str  # under the data root
    train: tuple[str, ...]
    test: tuple[str, ...]
    meta: str | None  # python layouts: the label-names file that must be there too
    label_key: str  # python: the dict key; binary: "" (labels are in the records)
    label_bytes: int  # binary: label bytes per record (the last of them is the label used)
    n_classes: int

    def files(self) -> tuple[str, ...]:
        return self.train + self.test + ((self.meta,) if self.meta else ())


PY = {
    "cifar10": Layout("cifar-10-batches-py", tuple(f"data_batch_{i}" for i in range(1, 6)), ("test_batch",),
                      "batches.meta", "labels", 0, 10),
    "cifar100": Layout("cifar-100-python", ("train",), ("test",), "meta", "fine_labels", 0, 100),
}
BIN = {
    "cifar10": Layout("cifar-10-batches-bin", tuple(f"data_batch_{i}.bin" for i in range(1, 6)), ("test_batch.bin",),
                      None, "", 1, 10),
    "cifar100": Layout("cifar-100-binary", ("train.bin",), ("test.bin",), None, "", 2, 100),
}


def _complete(root: Path, layout: Layout) -> bool:
    return all((root / layout.dir / f).is_file() for f in layout.files())


def has_layout(root: Path, name: str) -> bool:
    """Whether the python or the binary version is complete under `root` (no file is read)."""
    return _complete(root, PY[name]) or _complete(root, BIN[name])


def read(root: Path, name: str) -> Arrays:
    """CIFAR-10 (`name` = "cifar10") or CIFAR-100 ("cifar100") from whichever version is under `root`: the python
    batches if complete, else the binary ones; neither → "expected cifar-10-batches-py under …: found …"."""
    py, bn = PY[name], BIN[name]
    if _complete(root, py):
        return _read(root / py.dir, py, _python_batch)
    if _complete(root, bn):
        return _read(root / bn.dir, bn, _binary_batch)
    for layout in (py, bn):  # a partial directory: say which files it lacks
        d = root / layout.dir
        if d.is_dir():
            missing = [f for f in layout.files() if not (d / f).is_file()]
            raise layout_error(f"{layout.dir}/ with {', '.join(layout.files())}", d,
                               f"{found(d)} (missing {', '.join(missing)})")
    raise layout_error(f"{py.dir}/ or {bn.dir}/", root)


def _read(d: Path, layout: Layout, batch) -> Arrays:
    if layout.meta:
        _check_meta(d / layout.meta, layout)
    parts = {split: [batch(d / f, layout) for f in files] for split, files in
             (("train", layout.train), ("test", layout.test))}
    (x, y), (xt, yt) = ((np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]))
                        for ps in parts.values())
    return Arrays(x, y, xt, yt)


def _key(d: dict, key: str, path: Path):
    for k in (key.encode(), key):  # b"data" as CIFAR's own files read back; "data" from a Python 3 re-save
        if k in d:
            return d[k]
    raise DatasetError(f"{path}: expected a CIFAR batch with the key {key!r}: found the keys "
                       f"{sorted(str(k) for k in d)[:6]}")


def _check_meta(path: Path, layout: Layout) -> None:
    meta = pickles.load(path)
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a dict of label names: found a {type(meta).__name__}")
    key = "label_names" if layout.n_classes == 10 else "fine_label_names"
    names = _key(meta, key, path)
    if not isinstance(names, list) or len(names) != layout.n_classes:
        raise DatasetError(f"{path}: expected {layout.n_classes} {key}: found "
                           f"{len(names) if isinstance(names, list) else type(names).__name__}")


def _python_batch(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    batch = pickles.load(path)
    if not isinstance(batch, dict):
        raise DatasetError(f"{path}: expected a CIFAR batch (a dict): found a {type(batch).__name__}")
    x, y = _key(batch, "data", path), _key(batch, layout.label_key, path)
    if not (isinstance(x, np.ndarray) and x.dtype == np.uint8 and x.ndim == 2 and x.shape[1] == PIXELS):
        what = f"{x.dtype} array of shape {x.shape}" if isinstance(x, np.ndarray) else type(x).__name__
        raise DatasetError(f"{path}: expected data as a [N, {PIXELS}] uint8 array: found a {what}")
    if not (isinstance(y, list) and all(type(v) is int for v in y)) and not (
            isinstance(y, np.ndarray) and y.ndim == 1 and y.dtype.kind in "iu"):
        raise DatasetError(f"{path}: expected {layout.label_key} as a list of integers")
    if len(y) != len(x):
        raise DatasetError(f"{path}: {len(x)} images but {len(y)} {layout.label_key}")
    y = check_labels(np.asarray(y, dtype=np.int64), layout.n_classes, path, layout.label_key)
    return x.reshape(-1, 3, 32, 32), y


def _binary_batch(path: Path, layout: Layout) -> tuple[np.ndarray, np.ndarray]:
    record = layout.label_bytes + PIXELS
    size = path.stat().st_size
    if size % record:
        labels = "1 label byte" if layout.label_bytes == 1 else "2 label bytes (coarse, fine)"
        raise DatasetError(f"{path}: {size:,} bytes is not a whole number of {record:,}-byte records "
                           f"({labels} + {PIXELS} pixel bytes)")
    rec = np.fromfile(path, dtype=np.uint8).reshape(-1, record)  # size is the file's own: bounded
    y = check_labels(rec[:, layout.label_bytes - 1].astype(np.int64), layout.n_classes, path, "label")
    return np.ascontiguousarray(rec[:, layout.label_bytes:]).reshape(-1, 3, 32, 32), y
