"""A restricted unpickler for checkpoint pickles: it builds inert stand-ins, never a tensor, and calls nothing.

Python's own unpickler with find_class limited to a table of stand-ins ("Restricting Globals",
https://docs.python.org/3/library/pickle.html#restricting-globals): each storage a pickle refers to becomes a
StorageDecl and each tensor a TensorDecl (storage, offset, shape, strides), checked to lie inside its storage. The
table is a subset of torch's weights-only allowlist, and the entries that would allocate on the pickle's say-so
(bytearray(n), quantized and converted tensors) are refused, so what passes here makes torch.load run nothing new.
_Encoder writes such a declared object back as a protocol-2 pickle, the only protocol torch's unpickler reads.
"""
from __future__ import annotations

import _compat_pickle
import functools
import io
import math
import pickle
from collections import Counter, OrderedDict
from dataclasses import dataclass, replace

import torch

CORRUPT = "is not a readable PyTorch checkpoint (truncated or corrupt)"
STATE_DICT_ADVICE = "save a state dict (model.state_dict(), ideally with safetensors) instead"
TORCH_PROTOCOL = 2  # the pickle protocol torch.save writes by default and torch's weights-only unpickler reads


class Refusal(Exception):
    """Why a file is not loaded, as a phrase to follow its name: "refused: ...", "is not ..."."""


@dataclass(frozen=True, eq=False)
class StorageDecl:
    key: str
    dtype: torch.dtype
    numel: int  # elements of `dtype` the pickle says the storage holds
    pid: tuple  # the persistent id to write when re-encoding, with torch's real storage class in it

    def __setstate__(self, state):
        raise Refusal(f"{CORRUPT}: its pickle sets attributes on a storage")


@dataclass(frozen=True, eq=False)
class TensorDecl:
    storage: StorageDecl
    offset: int  # in elements of dtype
    size: tuple[int, ...]
    stride: tuple[int, ...]  # in elements; 0 repeats one element along that dimension
    dtype: torch.dtype
    requires_grad: bool = False
    parameter: bool = False

    @property
    def numel(self) -> int:
        return math.prod(self.size)

    @property
    def nbytes(self) -> int:
        """Bytes once materialised (contiguous): what a stride-0 or aliasing tensor really costs."""
        return self.numel * self.dtype.itemsize

    def __setstate__(self, state):
        raise Refusal("refused: its pickle sets Python state on a tensor, which a state dict never has")


class _Ref:
    """An allowed global that is only ever an argument (a storage class, torch.Tensor, a layout): inert."""
    __slots__ = ("name", "dtype", "value")

    def __init__(self, name: str, dtype: torch.dtype | None = None, value: object = None):
        self.name, self.dtype, self.value = name, dtype, value

    def __setstate__(self, state):
        raise Refusal(f"{CORRUPT}: its pickle sets attributes on {self.name}")

    def __repr__(self) -> str:
        return self.name


def nonneg_int(x: object, what: str) -> int:
    if type(x) is not int or x < 0:  # bool is not a size, and negative strides/offsets are not torch.save output
        raise Refusal(f"{CORRUPT}: {what} is {short(repr(x)) if type(x) is int else type(x).__name__}, not a "
                      "non-negative integer")
    if x >= 2**63:  # torch's sizes are int64; Python's would go on to numbers too long to print
        raise Refusal(f"{CORRUPT}: {what} has more than 63 bits")
    return x


def _ints(xs: object, what: str) -> tuple[int, ...]:
    if not isinstance(xs, (tuple, list)):
        raise Refusal(f"{CORRUPT}: {what} is a {type(xs).__name__}, not a tuple of integers")
    return tuple(nonneg_int(x, what) for x in xs)


def short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _args(fn: str, args: tuple, lo: int, hi: int) -> tuple:
    if not lo <= len(args) <= hi:
        raise Refusal(f"{CORRUPT}: its pickle calls {fn} with {len(args)} arguments")
    return args


def _view(storage, offset, size, stride, requires_grad=False, dtype=None) -> TensorDecl:
    if not isinstance(storage, StorageDecl):
        raise Refusal(f"{CORRUPT}: its pickle builds a tensor from a {type(storage).__name__}, not a stored array")
    offset, size, stride = nonneg_int(offset, "a storage offset"), _ints(size, "a shape"), _ints(stride, "a stride")
    if len(size) != len(stride):
        raise Refusal(f"{CORRUPT}: a tensor has shape {short(str(size))} but strides {short(str(stride))}")
    dtype = storage.dtype if dtype is None else dtype
    if not isinstance(dtype, torch.dtype):
        raise Refusal(f"{CORRUPT}: a tensor's dtype is a {type(dtype).__name__}")
    available = storage.numel * storage.dtype.itemsize // max(dtype.itemsize, 1)  # elements of the view's dtype
    if math.prod(size):
        extent = offset + sum((n - 1) * s for n, s in zip(size, stride)) + 1  # one past the last element reached
        if extent > available:
            raise Refusal(f"{CORRUPT}: a tensor of shape {short(str(size))} with strides {short(str(stride))} "
                          f"reaches element {extent:,} of a storage holding {available:,}")
    return TensorDecl(storage, offset, size, stride, dtype, requires_grad=bool(requires_grad))


def _no_hooks(hooks) -> None:
    if hooks:  # torch.save writes an empty OrderedDict
        raise Refusal("refused: a tensor carries backward hooks, which a state dict never has")


def _rebuild_tensor(*a):  # torch._utils._rebuild_tensor(storage, offset, size, stride)
    return _view(*_args("torch._utils._rebuild_tensor", a, 4, 4))


def _rebuild_tensor_v2(*a):  # (storage, offset, size, stride, requires_grad, backward_hooks[, metadata])
    a = _args("torch._utils._rebuild_tensor_v2", a, 6, 7)
    _no_hooks(a[5])
    return _view(*a[:5])


def _rebuild_tensor_v3(*a):  # (storage, offset, size, stride, requires_grad, backward_hooks, dtype[, metadata])
    a = _args("torch._utils._rebuild_tensor_v3", a, 7, 8)
    _no_hooks(a[5])
    return _view(*a[:5], dtype=a[6])


def _parameter(data, requires_grad, state=None) -> TensorDecl:
    if not isinstance(data, TensorDecl):
        raise Refusal(f"{CORRUPT}: its pickle makes a parameter of a {type(data).__name__}, not a tensor")
    if state:
        raise Refusal("refused: a parameter carries Python attributes, which a plain state dict never has")
    return replace(data, requires_grad=bool(requires_grad), parameter=True)


def _rebuild_parameter(*a):  # (data, requires_grad, backward_hooks)
    a = _args("torch._utils._rebuild_parameter", a, 3, 3)
    _no_hooks(a[2])
    return _parameter(a[0], a[1])


def _rebuild_parameter_with_state(*a):  # (data, requires_grad, backward_hooks, state)
    a = _args("torch._utils._rebuild_parameter_with_state", a, 4, 4)
    _no_hooks(a[2])
    return _parameter(a[0], a[1], a[3])


_TENSOR, _PARAMETER = _Ref("torch.Tensor"), _Ref("torch.nn.parameter.Parameter")
_REBUILDS = (_rebuild_tensor, _rebuild_tensor_v2, _rebuild_tensor_v3, _rebuild_parameter,
             _rebuild_parameter_with_state)


def _rebuild_from_type_v2(*a):  # torch._tensor._rebuild_from_type_v2(func, new_type, args, state)
    func, new_type, args, state = _args("torch._tensor._rebuild_from_type_v2", a, 4, 4)
    if func not in _REBUILDS or new_type not in (_TENSOR, _PARAMETER) or not isinstance(args, tuple):
        raise Refusal(f"refused: it holds a tensor subclass ({short(repr(new_type))}), not a plain tensor")
    t = func(*args)
    if state:
        raise Refusal("refused: a tensor carries Python attributes, which a plain state dict never has")
    return _parameter(t, t.requires_grad) if new_type is _PARAMETER else t


def _unsupported(what: str):
    def rebuild(*a):
        if what == "sparse" and a and isinstance(a[0], _Ref):
            raise Refusal(f"refused: it holds a tensor that is {a[0].name} (not dense); only dense tensors are "
                          "supported")
        raise Refusal(f"refused: it holds a {what} tensor; only dense tensors of real numbers are supported")
    return rebuild


def _encode(*a):  # _codecs.encode(text, "latin1"): how protocol 2 pickles bytes; no other codec is ever needed
    if len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1"):
        return a[0].encode("latin1")
    raise Refusal(f"{CORRUPT}: its pickle calls _codecs.encode in a way torch.save never does")


def _bytearray(*a):  # bytearray(n) would allocate n bytes on the pickle's say-so: only bytes and text are rebuilt
    if len(a) == 1 and isinstance(a[0], (bytes, bytearray)):
        return bytearray(a[0])
    if len(a) == 2 and isinstance(a[0], str) and a[1] in ("latin1", "latin-1"):
        return bytearray(a[0].encode("latin1"))
    raise Refusal("refused: its pickle calls builtins.bytearray in a way torch.save never does")


def _device(*a):
    if not (1 <= len(a) <= 2 and all(isinstance(x, (str, int)) and not isinstance(x, bool) for x in a)):
        raise Refusal(f"{CORRUPT}: its pickle names a device oddly")
    try:
        return torch.device(*a)
    except Exception:
        raise Refusal(f"{CORRUPT}: its pickle names the unknown device {short(repr(a))}") from None


def _get_layout(*a):  # torch.serialization._get_layout(name): only sparse tensors use it, and they are refused
    layouts = {str(x): x for x in (torch.strided, torch.sparse_coo, torch.sparse_csr, torch.sparse_csc,
                                   torch.sparse_bsr, torch.sparse_bsc)}
    if len(a) == 1 and a[0] in layouts:
        return _Ref(a[0], value=layouts[a[0]])
    raise Refusal(f"{CORRUPT}: its pickle names an unknown tensor layout")


@functools.lru_cache(maxsize=1)
def _allowed() -> dict[str, object]:
    """Dotted name → stand-in, for every global a state dict (or a wrapper of plain values) pickles: a subset of
    torch's own weights-only allowlist, each entry inert or checked, so torch.load later runs nothing new."""
    rc: dict[str, object] = {
        "collections.OrderedDict": OrderedDict, "collections.Counter": Counter, "builtins.set": set,
        "builtins.complex": complex, "builtins.bytearray": _bytearray, "_codecs.encode": _encode,
        "torch.Size": torch.Size, "torch.device": _device, "torch.serialization._get_layout": _get_layout,
        "torch.Tensor": _TENSOR, "torch.nn.parameter.Parameter": _PARAMETER,
        "torch._tensor._rebuild_from_type_v2": _rebuild_from_type_v2,
    }
    rc |= {f"torch._utils.{f.__name__}": f for f in _REBUILDS}
    for what, names in {"sparse": ["_rebuild_sparse_tensor"], "quantized": ["_rebuild_qtensor"],
                        "meta (data-less)": ["_rebuild_meta_tensor_no_storage"], "nested": ["_rebuild_nested_tensor"],
                        "subclass": ["_rebuild_wrapper_subclass"],
                        "device-converted": ["_rebuild_device_tensor_from_numpy",
                                             "_rebuild_device_tensor_from_cpu_tensor"]}.items():
        rc |= {f"torch._utils.{n}": _unsupported(what) for n in names}
    rc |= {str(d): d for d in vars(torch).values() if isinstance(d, torch.dtype)}  # "torch.float32" → dtype
    rc |= {str(q): q for q in (torch.per_tensor_affine, torch.per_tensor_symmetric, torch.per_channel_affine,
                               torch.per_channel_symmetric, torch.per_channel_affine_float_qparams)}
    for cls in torch._storage_classes:
        if cls is torch.storage.TypedStorage:
            continue
        dtype = (torch.uint8 if cls is torch.UntypedStorage
                 else torch.storage._get_dtype_from_pickle_storage_type(cls.__name__))
        rc[f"{cls.__module__}.{cls.__name__}"] = _Ref(f"{cls.__module__}.{cls.__name__}", dtype, cls)
    return rc


def describe_global(path: str) -> str:
    module, _, attr = path.rpartition(".")
    if not module:  # torch strips "builtins." from the names it reports ("GLOBAL exec")
        module = "builtins"
    if module in ("posix", "nt"):  # os.system pickles under the platform module's name
        module = "os"
    path = short(f"{module}.{attr}", 80)
    if module.startswith("torch.nn.modules"):
        return f"it holds a whole model object ({path}) rather than its state dict"
    if attr[:1].isupper():  # a class: an object saved whole rather than as tensors
        return f"the pickle needs the class {path}"
    return f"the pickle calls {path}"


class _Unpickler(pickle._Unpickler):
    """Python's pure-Python unpickler, not the C one: the C unpickler sizes its memo table by the largest index a
    PUT opcode names, so six bytes (LONG_BINPUT 2**28) make it zero-fill 2 GB; this one keeps its memo in a dict."""

    def __init__(self, file: io.BytesIO, persistent_load):
        super().__init__(file, encoding="utf-8")  # torch.load's default for Python 2 str
        self._persistent = persistent_load

    def find_class(self, module: str, name: str):
        if (module, name) in _compat_pickle.NAME_MAPPING:  # Python 2 names, as torch's own unpickler maps them
            module, name = _compat_pickle.NAME_MAPPING[(module, name)]
        module = _compat_pickle.IMPORT_MAPPING.get(module, module)
        found = _allowed().get(f"{module}.{name}")
        if found is None:
            raise Refusal(f"refused: {describe_global(f'{module}.{name}')}, which a weights-only load does not "
                          f"allow (only tensors and plain containers) — {STATE_DICT_ADVICE}")
        return found

    def persistent_load(self, pid):
        if self._persistent is None:
            raise Refusal(f"{CORRUPT}: a storage appears where torch.save never writes one")
        return self._persistent(pid)


def load_pickle(f: io.BytesIO, protocols: set, persistent_load=None, what: str = "its pickle") -> object:
    start = f.tell()
    head = f.getbuffer()[start: start + 2].tobytes()
    protocols.add(head[1] if head[:1] == b"\x80" and len(head) == 2 else 0)
    try:
        return _Unpickler(f, persistent_load).load()
    except Refusal:
        raise
    except EOFError:
        raise Refusal(f"{CORRUPT}: {what} ends early, at byte {f.tell():,}") from None
    except RecursionError:
        raise Refusal(f"refused: {what} nests containers too deeply") from None
    except MemoryError:
        raise Refusal(f"refused: {what} needs more memory than is available") from None
    except Exception as e:  # UnpicklingError, and the KeyError/TypeError/... a mangled opcode stream causes
        if "truncated" in str(e):
            raise Refusal(f"{CORRUPT}: {what} ends early, at byte {f.tell():,}") from None
        raise Refusal(f"{CORRUPT}: {what} is damaged near byte {f.tell():,}") from None


def storage_pid(pid: object, n: int) -> tuple:
    if isinstance(pid, str) and pid.startswith("('storage'"):  # protocol 0 writes a persistent id as its str()
        raise Refusal("was saved with pickle protocol 0, whose storage references PyTorch itself cannot read back "
                      "— re-save it with torch.save's default protocol")
    if not (isinstance(pid, tuple) and len(pid) == n and pid[0] in ("storage", b"storage")):
        raise Refusal(f"{CORRUPT}: its pickle refers to a stored object torch.save never writes")
    storage_type, key, location = pid[1], pid[2], pid[3]
    key = key.decode("ascii", "replace") if isinstance(key, bytes) else key
    location = location.decode("ascii", "replace") if isinstance(location, bytes) else location
    if not (isinstance(storage_type, _Ref) and storage_type.dtype is not None and isinstance(key, str)
            and isinstance(location, str)):
        raise Refusal(f"{CORRUPT}: its pickle refers to a storage in a way torch.save never does")
    return (storage_type, key, location, nonneg_int(pid[4], "a storage's size")) + pid[5:]

class _Encoder(pickle.Pickler):
    """Writes a declared object as torch.save would have: protocol 2, storages as persistent ids."""

    def persistent_id(self, obj):
        return obj.pid if isinstance(obj, StorageDecl) else None

    def reducer_override(self, obj):
        if isinstance(obj, TensorDecl):
            if obj.parameter:
                return torch._utils._rebuild_parameter, (replace(obj, parameter=False), obj.requires_grad,
                                                         OrderedDict())
            args = (obj.storage, obj.offset, obj.size, obj.stride, obj.requires_grad, OrderedDict())
            if obj.dtype != obj.storage.dtype:
                return torch._utils._rebuild_tensor_v3, args + (obj.dtype,)
            return torch._utils._rebuild_tensor_v2, args
        if isinstance(obj, _Ref):  # a bare storage class, layout or tensor type as a value: torch.save never writes one
            raise Refusal(f"{CORRUPT}: {obj.name} appears where torch.save never writes it")
        return NotImplemented


def encode_pickle(obj: object) -> bytes:
    buf = io.BytesIO()
    _Encoder(buf, protocol=TORCH_PROTOCOL).dump(obj)
    return buf.getvalue()
