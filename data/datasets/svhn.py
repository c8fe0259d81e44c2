"""SVHN's cropped digits as torchvision stores them (Netzer et al. 2011, http://ufldl.stanford.edu/housenumbers/):
`train_32x32.mat` and `test_32x32.mat`, MATLAB v5 files with X ([32, 32, 3, N] uint8: height, width, RGB,
image) and y ([N, 1], the digit with 10 meaning 0), read as torchvision's SVHN reads them (scipy.io.loadmat,
which parses data only: no code runs), X transposed to [N, 3, 32, 32] and label 10 mapped to 0.

They are looked for in `<root>/svhn/`, then in `<root>/` itself (torchvision's SVHN(root) keeps them there).
Memory: each variable's declared shape is read first (scipy.io.whosmat parses headers only) and checked against
the expected layout and root.MAX_BYTES before loadmat allocates it: a compressed .mat (v5 allows zlib elements)
may declare far more than its file size, so the file size alone does not bound it.
"""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from data.datasets.root import Arrays, DatasetError, check_bytes, check_labels, layout_error

FILES = ("train_32x32.mat", "test_32x32.mat")
DIRS = ("svhn", "")


def _dir(root: Path) -> Path | None:
    return next((root / d for d in DIRS if all((root / d / f).is_file() for f in FILES)), None)


def has_layout(root: Path) -> bool:
    return _dir(root) is not None


def read(root: Path) -> Arrays:
    d = _dir(root)
    if d is None:
        where = root / "svhn" if (root / "svhn").is_dir() else root
        raise layout_error(f"SVHN's {' and '.join(FILES)} (in svhn/ or the root itself)", where)
    (x, y), (xt, yt) = (_split(d / f) for f in FILES)
    return Arrays(x, y, xt, yt)


def _split(path: Path) -> tuple[np.ndarray, np.ndarray]:
    import scipy.io

    try:
        declared = {name: (shape, cls) for name, shape, cls in scipy.io.whosmat(path)}
    except NotImplementedError:  # scipy's answer to a v7.3 (HDF5) file
        raise DatasetError(f"{path}: expected a MATLAB v5 file (as torchvision's SVHN): found MATLAB v7.3 (HDF5); "
                           "re-save it with savemat(..., format='5') or scipy.io.savemat") from None
    except Exception as e:
        raise DatasetError(f"{path}: expected a MATLAB v5 file: found an unreadable one ({str(e)[:80]})") from None
    if "X" not in declared or "y" not in declared:
        raise DatasetError(f"{path}: expected the variables X and y: found {sorted(declared)[:6]}")
    (xs, xc), (ys, _) = declared["X"], declared["y"]
    if len(xs) != 4 or tuple(xs[:3]) != (32, 32, 3) or xc != "uint8":
        raise DatasetError(f"{path}: expected X as a 32×32×3×N uint8 array: found {'×'.join(map(str, xs))} {xc}")
    n = xs[3]
    if tuple(ys) not in ((n, 1), (1, n), (n,)):
        raise DatasetError(f"{path}: expected y as {n}×1 (one label per image): found {'×'.join(map(str, ys))}")
    check_bytes(math.prod(xs), path, "X")
    try:
        m = scipy.io.loadmat(path, variable_names=["X", "y"])
    except Exception as e:  # a truncated or damaged data element
        raise DatasetError(f"{path}: expected a MATLAB v5 file: found a damaged one ({str(e)[:80]})") from None
    x, y = m["X"], np.asarray(m["y"]).reshape(-1)
    if x.shape != tuple(xs) or x.dtype != np.uint8 or y.shape != (n,):
        raise DatasetError(f"{path}: its data does not match its declared shapes (X {x.shape}, y {y.shape})")
    bad = np.flatnonzero(~((y >= 1) & (y <= 10)))
    if bad.size:
        raise DatasetError(f"{path}: y label {y[bad[0]]} at index {bad[0]} is outside SVHN's range 1–10 (10 stands "
                           f"for the digit 0; {bad.size} such label{'s' if bad.size > 1 else ''})")
    y = check_labels(y % 10, 10, path, "y")  # also refuses a non-integer label; 10 → the digit 0
    return np.ascontiguousarray(x.transpose(3, 2, 0, 1)), y
