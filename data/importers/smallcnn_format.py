"""The files of the Small CNN Zoo (Unterthiner et al. 2020, arXiv:2002.11448; google-research/google-research
dnn_predict_accuracy, the data NFN and ScaleGMN train on), read and written exactly, untrusted and bounded.

    weights.npy      N × P float32 (.npy, C order): row i is one checkpoint, all parameters flattened
    layout.csv       one row per variable: varname, start_idx, end_idx, size, shape — columns
                     [start_idx, end_idx) of weights.npy hold the variable, in the TF layout `shape`
                     (a Python tuple, "(3, 3, 1, 16)"); readers use the names (NFN/ScaleGMN: pandas, eval(shape))
    metrics.csv.gz   one row per row of weights.npy: config.* hyperparameters, modeldir, step, accuracies, losses

The published varnames are Keras' — `sequential/conv2d/bias:0`, `sequential/conv2d/kernel:0`, `conv2d_1`, `conv2d_2`,
`sequential/dense/…` — each layer's bias before its kernel (P = 4,970 on one-channel inputs: 16 + 144, 16 + 2304,
16 + 2304, 10 + 160). Conv kernels are H × W × C_in × C_out and dense kernels C_in × C_out; torch's are C_out × C_in ×
H × W and C_out × C_in, so a kernel is permuted (3, 2, 0, 1) or transposed on the way in and back on the way out
(ScaleGMN's NFNZooDataset makes the same conversion). A varname that is not a Keras name is a torch state-dict key
whose `shape` is the torch shape: that is how analysis.studies.export writes zoos of other architectures, in the
same files.
"""
from __future__ import annotations

import ast
import csv
import io
import math
import os
import re
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from data.importers.ptmz_layout import ImportError_, printable

WEIGHTS, LAYOUT, METRICS = "weights.npy", "layout.csv", "metrics.csv.gz"
LAYOUT_COLUMNS = ("varname", "start_idx", "end_idx", "size", "shape")
MAX_LAYOUT_BYTES = 1 * 2**20  # the published layout.csv is < 1 kB
MAX_VARIABLES = 100_000
_KERAS = re.compile(r"(?:.*/)?(conv2d|dense)(?:_(\d+))?/(kernel|bias):0")


@dataclass(frozen=True)
class Var:
    """One variable of the flat vector: columns [start, end) of a weights.npy row, in `shape` (the file's layout)."""

    varname: str
    start: int
    end: int
    shape: tuple[int, ...]

    @property
    def size(self) -> int:
        return self.end - self.start


def keras_name(key: str, n_convs: int) -> str | None:
    """The published Keras varname of a SmallCNN state-dict key (convs.<i>.* / head.*), None for other keys."""
    m = re.fullmatch(r"convs\.(\d+)\.(weight|bias)|head\.(weight|bias)", key)
    if m is None:
        return None
    layer, what = (f"conv2d{'' if m[1] == '0' else '_' + m[1]}", m[2]) if m[1] is not None else ("dense", m[3])
    return f"sequential/{layer}/{'kernel' if what == 'weight' else 'bias'}:0"


def torch_key(varname: str) -> tuple[str, str]:
    """(state-dict key, kind) of a varname: kind "conv", "dense" (kernels to permute) or "plain"."""
    m = _KERAS.fullmatch(varname)
    if m is None:
        return varname, "plain"
    i = int(m[2] or 0)
    if m[1] == "dense":
        if i:
            raise ImportError_(f"{LAYOUT}: {printable(varname, 80)}: the Small CNN has one dense layer")
        return f"head.{'weight' if m[3] == 'kernel' else 'bias'}", "dense" if m[3] == "kernel" else "plain"
    return f"convs.{i}.{'weight' if m[3] == 'kernel' else 'bias'}", "conv" if m[3] == "kernel" else "plain"


def _shape(text: str, where: str) -> tuple[int, ...]:
    try:  # literal_eval evaluates literals only: no names, no calls
        v = ast.literal_eval(text.strip()) if len(text) < 200 else None
    except (ValueError, SyntaxError, MemoryError, RecursionError):
        v = None
    v = (v,) if isinstance(v, int) else v
    if not isinstance(v, tuple | list) or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in v):
        raise ImportError_(f"{where}: shape {printable(repr(text), 60)} is not a tuple of sizes like (3, 3, 1, 16)")
    return tuple(v)


def _int(text: str, where: str, col: str) -> int:
    try:
        v = int(text.strip())
    except ValueError:
        raise ImportError_(f"{where}: {col} {printable(repr(text), 40)} is not an integer") from None
    if v < 0:
        raise ImportError_(f"{where}: {col} {v} is negative")
    return v


def read_layout(path: Path, width: int) -> tuple[Var, ...]:
    """The variables of `path`, checked to tile [0, width) exactly: in order, no gap, no overlap, each
    end_idx - start_idx = size = the product of its shape."""
    text = _read_small(path, MAX_LAYOUT_BYTES).decode("utf-8", errors="replace")
    rows = list(csv.reader(io.StringIO(text)))
    if not rows:
        raise ImportError_(f"{path.name}: empty; expected the columns {list(LAYOUT_COLUMNS)}")
    header = [h.strip() for h in rows[0]]
    if missing := [c for c in ("varname", "start_idx", "end_idx", "shape") if c not in header]:
        raise ImportError_(f"{path.name}: missing column(s) {missing}; expected {list(LAYOUT_COLUMNS)} "
                           f"(found {[printable(h, 30) for h in header[:8]]})")
    if len(rows) - 1 > MAX_VARIABLES:
        raise ImportError_(f"{path.name}: {len(rows) - 1} variables, more than the {MAX_VARIABLES} allowed")
    col = {h: i for i, h in enumerate(header)}
    out, end = [], 0
    for n, row in enumerate(rows[1:], start=2):  # n: the line of the file
        where = f"{path.name} line {n}"
        if len(row) < len(header):
            raise ImportError_(f"{where}: {len(row)} fields, the header has {len(header)}")
        v = Var(row[col["varname"]].strip(), _int(row[col["start_idx"]], where, "start_idx"),
                _int(row[col["end_idx"]], where, "end_idx"), _shape(row[col["shape"]], where))
        if v.start != end:
            raise ImportError_(f"{where}: {printable(v.varname, 60)} starts at {v.start}, but the previous variable "
                               f"ends at {end} (variables must follow each other without gaps or overlaps)")
        if v.size != math.prod(v.shape) or ("size" in col and _int(row[col["size"]], where, "size") != v.size):
            raise ImportError_(f"{where}: {printable(v.varname, 60)} spans {v.size} values, its shape {v.shape} "
                               f"has {math.prod(v.shape)}" + (f" and its size says {row[col['size']].strip()}"
                                                              if "size" in col else ""))
        out.append(v)
        end = v.end
    if end != width:
        raise ImportError_(f"{path.name}: the variables add up to {end} values, but each row of {WEIGHTS} has "
                           f"{width}")
    if len({v.varname for v in out}) != len(out):
        raise ImportError_(f"{path.name}: a varname appears twice")
    return tuple(out)


def layout_csv(vars_: tuple[Var, ...]) -> str:
    """layout.csv's text, columns LAYOUT_COLUMNS, shapes written as Python tuples ("(16,)", "(3, 3, 1, 16)")."""
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(LAYOUT_COLUMNS)
    for v in vars_:
        w.writerow([v.varname, v.start, v.end, v.size, repr(tuple(v.shape))])
    return buf.getvalue()


def _read_small(path: Path, limit: int) -> bytes:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImportError_(f"{path}: missing (a Small CNN Zoo folder holds {WEIGHTS}, {LAYOUT}, {METRICS})") from None
    except OSError as e:
        raise ImportError_(f"{path}: cannot be read: {e.strerror or e}") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImportError_(f"{path.name}: not a regular file")
    if st.st_size > limit:
        raise ImportError_(f"{path.name}: {st.st_size} bytes, more than the {limit} allowed")
    with open(path, "rb") as f:
        return f.read(limit + 1)


def open_weights(path: Path) -> np.ndarray:
    """weights.npy as a read-only memory map [N, P] float32. The header is checked against the file's size before
    anything is mapped: a file that declares more than it holds, or another dtype or rank, is refused."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        raise ImportError_(f"{path}: missing (a Small CNN Zoo folder holds {WEIGHTS}, {LAYOUT}, {METRICS})") from None
    if not stat.S_ISREG(st.st_mode):
        raise ImportError_(f"{path.name}: not a regular file")
    try:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, fortran, dtype = read(f)
            offset = f.tell()
    except (ValueError, OSError, SyntaxError) as e:
        raise ImportError_(f"{path.name}: not a .npy file ({printable(e, 120)})") from None
    if dtype != np.dtype("<f4") or fortran or len(shape) != 2:
        raise ImportError_(f"{path.name}: holds a {'Fortran-order ' if fortran else ''}{dtype} array of shape {shape}; "
                           "expected N × P float32 (little-endian, C order)")
    n, p = shape
    if offset + n * p * 4 != st.st_size:
        raise ImportError_(f"{path.name}: its header declares {n} × {p} float32 ({n * p * 4} bytes) but the file "
                           f"holds {st.st_size - offset} bytes after the header")
    if n == 0 or p == 0:
        raise ImportError_(f"{path.name}: empty ({n} × {p})")
    return np.load(path, mmap_mode="r", allow_pickle=False)


def unflatten(row: np.ndarray, vars_: tuple[Var, ...]) -> dict[str, torch.Tensor]:
    """One weights.npy row -> a torch state dict (Keras kernels converted to torch's layout; copies, not views)."""
    state = {}
    for v in vars_:
        key, kind = torch_key(v.varname)
        t = torch.from_numpy(np.array(row[v.start:v.end], dtype=np.float32)).reshape(v.shape)
        if kind == "conv":
            t = t.permute(3, 2, 0, 1)  # H × W × C_in × C_out -> C_out × C_in × H × W
        elif kind == "dense":
            t = t.T  # C_in × C_out -> C_out × C_in
        state[key] = t.contiguous()
    return state


def flat_layout(state: dict[str, torch.Tensor], keras: bool) -> tuple[Var, ...]:
    """The layout a state dict is flattened in: the published one (Keras names and shapes, each layer's bias before
    its kernel) when `keras` (a SmallCNN), else the state dict's own keys, order and shapes."""
    if keras:
        n_convs = sum(1 for k in state if k.startswith("convs.") and k.endswith(".weight"))
        order = [k for i in range(n_convs) for k in (f"convs.{i}.bias", f"convs.{i}.weight")] + ["head.bias", "head.weight"]
        if sorted(order) != sorted(state):
            raise ValueError("not a SmallCNN state dict")
        named = [(keras_name(k, n_convs), _keras_shape(k, tuple(state[k].shape))) for k in order]
    else:
        named = [(k, tuple(t.shape)) for k, t in state.items()]
    out, start = [], 0
    for name, shape in named:
        out.append(Var(name, start, start + math.prod(shape), shape))
        start += math.prod(shape)
    return tuple(out)


def _keras_shape(key: str, shape: tuple[int, ...]) -> tuple[int, ...]:
    if key.endswith("weight") and len(shape) == 4:
        return (shape[2], shape[3], shape[1], shape[0])  # C_out × C_in × H × W -> H × W × C_in × C_out
    if key.endswith("weight") and len(shape) == 2:
        return (shape[1], shape[0])
    return shape


def flatten(state: dict[str, torch.Tensor], vars_: tuple[Var, ...]) -> np.ndarray:
    """A state dict -> one float32 row in `vars_`'s layout (the inverse of `unflatten`)."""
    row = np.empty(vars_[-1].end if vars_ else 0, dtype=np.float32)
    for v in vars_:
        key, kind = torch_key(v.varname)
        t = state[key].detach().to(torch.float32)
        if kind == "conv":
            t = t.permute(2, 3, 1, 0)
        elif kind == "dense":
            t = t.T
        row[v.start:v.end] = t.contiguous().reshape(-1).numpy()
    return row
