"""Plain arrays for any other dataset: `<root>/<file>.npz` holding x_train, y_train, x_test, y_test.

x_*: [N, *input_shape] uint8 pixels (0–255, normalised later by data.datasets.preprocess) or float32/float64
values used as stored; y_*: [N] integer class indices in [0, n_classes). Written by e.g.
`np.savez("mine.npz", x_train=..., y_train=..., x_test=..., y_test=...)` (or savez_compressed).

Read with `np.load(allow_pickle=False)`, so an object array (a pickle inside the .npz) is refused rather than
unpickled. Memory: every member's .npy header (shape, dtype) is read first and checked against root.MAX_BYTES
before its data is: a compressed member may declare far more than the file's size.
"""
from __future__ import annotations

import math
import zipfile
from pathlib import Path

import numpy as np

from data.datasets.root import MAX_BYTES, Arrays, DatasetError, check_bytes, check_labels, layout_error

KEYS = ("x_train", "y_train", "x_test", "y_test")
X_DTYPES = (np.uint8, np.float32, np.float64)


def has_layout(root: Path, file: str = "dataset.npz") -> bool:
    return (root / file).is_file()


def _headers(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Each member's declared (shape, dtype), from its .npy header only."""
    out = {}
    try:
        with zipfile.ZipFile(path) as z:
            for info in z.infolist():
                name = info.filename.removesuffix(".npy")
                with z.open(info) as f:
                    version = np.lib.format.read_magic(f)
                    read = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                            else np.lib.format.read_array_header_2_0)
                    shape, _, dtype = read(f, max_header_size=10_000)
                out[name] = (shape, dtype)
    except (zipfile.BadZipFile, OSError, ValueError, EOFError) as e:
        raise DatasetError(f"{path}: expected a .npz archive of arrays: found an unreadable file "
                           f"({str(e)[:80]})") from None
    return out


def read(root: Path, file: str = "dataset.npz", n_classes: int | None = None) -> Arrays:
    """The four arrays of `root / file`; labels checked against `n_classes` (default: 1 + the largest label)."""
    path = root / file
    if not path.is_file():
        raise layout_error(f"{file} (a .npz with {', '.join(KEYS)})", path.parent)
    heads = _headers(path)
    missing = [k for k in KEYS if k not in heads]
    if missing:
        raise DatasetError(f"{path}: expected the arrays {', '.join(KEYS)}: found {', '.join(sorted(heads)) or 'none'} "
                           f"(missing {', '.join(missing)})")
    for k in KEYS:
        shape, dtype = heads[k]
        if dtype.hasobject:
            raise DatasetError(f"{path}: {k} is an object array (a pickle), which is never loaded: save plain "
                               "numeric arrays")
        check_bytes(math.prod(shape) * dtype.itemsize, path, k)
    if sum(math.prod(s) * d.itemsize for s, d in heads.values()) > 2 * MAX_BYTES:
        raise DatasetError(f"{path}: its arrays declare more than {2 * MAX_BYTES:,} bytes together")
    try:
        with np.load(path, allow_pickle=False) as z:
            a = {k: z[k] for k in KEYS}
    except Exception as e:  # a truncated member, a CRC error, …
        raise DatasetError(f"{path}: expected a .npz archive of arrays: found a damaged one ({str(e)[:80]})") from None
    for split in ("train", "test"):
        x, y = a[f"x_{split}"], a[f"y_{split}"]
        if x.dtype not in X_DTYPES or x.ndim < 2:
            raise DatasetError(f"{path}: x_{split} is {x.dtype} of shape {x.shape}: expected [N, …] uint8, float32 "
                               "or float64")
        if y.ndim != 1 or len(y) != len(x):
            raise DatasetError(f"{path}: y_{split} has shape {y.shape}: expected [{len(x)}] (one label per row of "
                               f"x_{split})")
    if a["x_train"].shape[1:] != a["x_test"].shape[1:] or a["x_train"].dtype != a["x_test"].dtype:
        raise DatasetError(f"{path}: x_train is {a['x_train'].dtype} [N, {', '.join(map(str, a['x_train'].shape[1:]))}]"
                           f" but x_test is {a['x_test'].dtype} [N, {', '.join(map(str, a['x_test'].shape[1:]))}]")
    if n_classes is None:
        top = max((int(a[k].max()) for k in ("y_train", "y_test") if a[k].size and a[k].dtype.kind in "iu"),
                  default=0)
        n_classes = top + 1
    y, yt = (check_labels(a[k], n_classes, path, k) for k in ("y_train", "y_test"))
    return Arrays(a["x_train"], y, a["x_test"], yt)
