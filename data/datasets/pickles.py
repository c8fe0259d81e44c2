"""A restricted unpickler for dataset pickles (CIFAR's python batches): dicts, lists, strings, bytes, numbers and
plain numpy arrays of uint8 or int64 — nothing else is ever constructed and no code named by the pickle runs.

Python's pure-Python unpickler with `find_class` limited to inert stand-ins ("Restricting Globals",
https://docs.python.org/3/library/pickle.html#restricting-globals). The globals a numpy array pickles under:
- protocols 0–4: `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b"b")` then BUILD with the state
  `([version,] shape, dtype, is_fortran, raw_bytes)` — `numpy.core…` in pickles written by numpy < 2 (CIFAR's
  own files, written by Python 2's cPickle, protocol 2), `numpy._core…` by numpy ≥ 2 (2.4 writes this);
- protocol 5: `numpy._core.numeric._frombuffer(buffer, dtype, shape, order)` (in-band buffer);
- both: `numpy.dtype(name, align, copy)` then BUILD with `(3, byteorder, None, None, None, -1, -1, 0)`;
- Python 3 protocol ≤ 2 writes bytes as `_codecs.encode(text, "latin1")`.
Every stand-in checks its arguments: dtype uint8 or int64 only, no structured dtypes, and a declared
shape × itemsize no larger than the file before the raw bytes are even compared with it. The array is then a
view of bytes the unpickler already read, so memory stays within twice the file's size.
"""
from __future__ import annotations

import _compat_pickle
import io
import math
import pickle
from pathlib import Path

import numpy as np

from data.datasets.root import MAX_BYTES, DatasetError

DTYPES = {"u1": np.dtype(np.uint8), "i8": np.dtype(np.int64)}
ALLOWED = "only dicts, lists, strings, bytes, numbers and uint8/int64 numpy arrays"


class _Refused(Exception):
    """Why the pickle is not read, as a phrase to follow the file's name."""


class _NDArrayType:  # numpy.ndarray as an argument of _reconstruct: inert
    def __setstate__(self, state):
        raise _Refused("is damaged: its pickle sets state on numpy.ndarray itself")


_NDARRAY = _NDArrayType()


def _text(x: object) -> str | None:
    if isinstance(x, bytes):  # Python 2 str under encoding="bytes"
        return x.decode("latin1")
    return x if isinstance(x, str) else None


class _DType:
    """numpy.dtype(name, align, copy) followed by BUILD (byte order, …): a plain uint8 or int64 only."""
    __slots__ = ("name", "dtype")

    def __init__(self, name: str):
        self.name, self.dtype = name, None

    def __setstate__(self, state):
        if not (isinstance(state, tuple) and len(state) == 8 and state[0] in (3, 4)):
            raise _Refused(f"is damaged: dtype {self.name} has the state {str(state)[:60]}")
        order = _text(state[1])
        if tuple(state[2:]) != (None, None, None, -1, -1, 0):
            raise _Refused(f"refused: it holds a structured or subarray dtype; a dataset pickle holds {ALLOWED}")
        if order not in ("|", "<", ">", "="):
            raise _Refused(f"is damaged: dtype {self.name} has the byte order {order!r}")
        self.dtype = DTYPES[self.name].newbyteorder(order if order != "|" else "=")


def _dtype(*a):
    name = _text(a[0]) if a else None
    if not (len(a) == 3 and name is not None and all(x in (0, 1) for x in a[1:])):
        raise _Refused(f"is damaged: its pickle calls numpy.dtype with {str(a)[:60]}")
    if name not in DTYPES:
        raise _Refused(f"refused: it holds a numpy array of dtype {name[:20]!r}; a dataset pickle holds {ALLOWED}")
    return _DType(name)


class _Array:
    """numpy's _reconstruct(ndarray, (0,), b"b") followed by BUILD (shape, dtype, fortran, raw bytes)."""
    __slots__ = ("limit", "array")

    def __init__(self, limit: int):
        self.limit, self.array = limit, None

    def __setstate__(self, state):
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise _Refused("is damaged: a numpy array's pickled state is not (version, shape, dtype, order, data)")
        shape, dtype, fortran, raw = state[-4:]
        self.array = _build(raw, dtype, shape, "F" if fortran else "C", self.limit)


def _build(raw, dtype, shape, order, limit: int) -> np.ndarray:
    if not isinstance(dtype, _DType) or dtype.dtype is None:
        raise _Refused("is damaged: a numpy array's dtype is not a built numpy.dtype")
    if not (isinstance(shape, tuple) and all(type(n) is int and n >= 0 for n in shape)):
        raise _Refused(f"is damaged: a numpy array has the shape {str(shape)[:60]}")
    n_bytes = math.prod(shape) * dtype.dtype.itemsize
    if n_bytes > limit:  # before touching the data: a declaration is only believed up to what the file holds
        raise _Refused(f"is damaged: a numpy array declares shape {shape} of {dtype.name} = {n_bytes:,} bytes, "
                       f"more than the file's {limit:,}")
    if isinstance(raw, str):  # a text-encoded buffer (encoding="latin1" style pickles)
        raw = raw.encode("latin1")
    if isinstance(raw, pickle.PickleBuffer):
        raw = raw.raw()
    if not isinstance(raw, (bytes, bytearray, memoryview)):
        raise _Refused(f"refused: a numpy array's data is a {type(raw).__name__}; a dataset pickle holds {ALLOWED}")
    if len(raw) != n_bytes:
        raise _Refused(f"is damaged: a numpy array of shape {shape} ({dtype.name}) needs {n_bytes:,} bytes, "
                       f"its data has {len(raw):,}")
    if order not in ("C", "F"):
        raise _Refused(f"is damaged: a numpy array has the memory order {str(order)[:10]!r}")
    return np.frombuffer(raw, dtype.dtype).reshape(shape, order=order)


def _encode(*a):
    if len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1"):
        return a[0].encode("latin1")
    raise _Refused("refused: its pickle calls _codecs.encode in a way pickle itself never does")


class _Unpickler(pickle._Unpickler):
    """The pure-Python unpickler: the C one sizes its memo by the largest index a PUT names (6 bytes → 2 GB)."""

    def __init__(self, f, limit: int):
        super().__init__(f, encoding="bytes")  # Python 2 str → bytes: CIFAR's keys read back as b"data"
        self.limit = limit

    def find_class(self, module: str, name: str):
        if (module, name) in _compat_pickle.NAME_MAPPING:
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        path = f"{module}.{name}"
        if path in ("numpy.core.multiarray._reconstruct", "numpy._core.multiarray._reconstruct"):
            return self._reconstruct
        if path in ("numpy.core.numeric._frombuffer", "numpy._core.numeric._frombuffer"):
            return self._frombuffer
        if path == "numpy.ndarray":
            return _NDARRAY
        if path == "numpy.dtype":
            return _dtype
        if path == "_codecs.encode":
            return _encode
        if module in ("posix", "nt"):  # os.system pickles under the platform module's name
            path = f"os.{name}"
        raise _Refused(f"refused: its pickle names the global {path[:80]}; a dataset pickle holds {ALLOWED}")

    def _reconstruct(self, *a):
        if not (len(a) == 3 and a[0] is _NDARRAY and a[1] == (0,) and _text(a[2]) == "b"):
            raise _Refused("refused: its pickle calls numpy's _reconstruct for something other than a plain ndarray")
        return _Array(self.limit)

    def _frombuffer(self, *a):
        if len(a) != 4:
            raise _Refused("is damaged: its pickle calls numpy's _frombuffer with the wrong arguments")
        buf, dtype, shape, order = a
        return _build(buf, dtype, shape, _text(order), self.limit)


def _finish(obj: object) -> object:
    """Replace stand-ins by arrays, and refuse anything else that is not a plain value."""
    if isinstance(obj, dict):
        return {_finish(k): _finish(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [x if type(x) is int else _finish(x) for x in obj]  # fast path: CIFAR's label lists
    if isinstance(obj, tuple):
        return tuple(_finish(x) for x in obj)
    if isinstance(obj, _Array):
        if obj.array is None:
            raise _Refused("is damaged: a numpy array is never given its data")
        return obj.array
    if obj is None or isinstance(obj, (bool, int, float, str, bytes, np.ndarray)):
        return obj
    raise _Refused(f"refused: its pickle builds a {type(obj).__name__.lstrip('_')}; a dataset pickle holds {ALLOWED}")


def load(path: Path) -> object:
    """The plain object a dataset pickle holds, or a one-line DatasetError naming `path`."""
    try:
        size = path.stat().st_size
        if size > MAX_BYTES:
            raise _Refused(f"is {size:,} bytes, more than the {MAX_BYTES:,} a dataset file may be")
        # from memory, not the file: a length a pickle declares (BINBYTES8, FRAME) then reads at most what is there
        return _finish(_Unpickler(io.BytesIO(path.read_bytes()), size).load())
    except _Refused as e:
        raise DatasetError(f"{path} {e}") from None
    except OSError as e:
        raise DatasetError(f"{path} cannot be read: {e.strerror or e}") from None
    except (EOFError, pickle.UnpicklingError) as e:
        why = "ends early" if isinstance(e, EOFError) or "truncated" in str(e) else "is damaged"
        raise DatasetError(f"{path} is not a readable pickle: it {why}") from None
    except RecursionError:
        raise DatasetError(f"{path} refused: its pickle nests containers too deeply") from None
    except MemoryError:
        raise DatasetError(f"{path} refused: its pickle needs more memory than is available") from None
    except Exception:  # the KeyError/TypeError/IndexError a mangled opcode stream causes
        raise DatasetError(f"{path} is not a readable pickle: it is damaged") from None
