"""Load an uploaded model checkpoint into a flat state dict without ever running code from it.

A `.pt` file is a pickle, and unpickling can call any function (os.system, exec): loading a stranger's file the
usual way hands them the machine. So safetensors files go through safetensors (no code at all) and PyTorch files
only through torch.load(weights_only=True), which accepts tensors and plain containers and refuses every other
global. Around that sit the checks weights_only does not make — size limits, zip bombs, wrappers, prefixes,
non-finite values, and the memory a file's tensors take once built: data.checkpoint.declared (with the restricted
unpickler of data.checkpoint.unpickler) reads what a file declares, and the tensors it would build are counted (numel ×
element size, each alias and stride-0 view in full) against MAX_EXPANSION × the size limit before anything is
allocated. One error type, CheckpointError, carries a one-line message (at most MAX_MESSAGE characters, no control
characters, the file's base name first) that a dashboard can show as is.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import stat
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch

from data.checkpoint.declared import (
    CORRUPT,
    MAX_MB_ENV,
    MAX_ZIP_RATIO,  # noqa: F401  (public here before the inspection moved out)
    ZIP_MAGIC,
    Declared,
    Refusal,
    check_zip,
    inspect_legacy,
    inspect_zip,
    looks_like_safetensors,
    reencode,
    safetensors_views,
    torch_failure,
)
from data.checkpoint.declared import size_text as _size
from data.checkpoint.unpickler import TensorDecl

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
DEFAULT_MAX_BYTES = 256 * 2**20

# Keys under which training scripts commonly nest the state dict beside metadata (epoch, optimizer, ...).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile; a plain model has neither.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# The tensors of a file may take at most this many times the size limit in memory once built (sum over tensors of
# numel × element size, every alias and stride-0 broadcast counted in full): room for tied weights, which a file
# stores once and a state dict holds twice; none for 1,000 names of one tensor or a stride-0 view of 3·10⁸ elements.
MAX_EXPANSION = 2
MAX_MESSAGE = 300  # characters: a message is one line for a dashboard, whatever the file puts in its names
FINITE_CHUNK = 2**22  # elements checked for NaN/Inf at a time: the check's own temporaries stay a few MB

_PLAIN_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_FLOAT8 = frozenset(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
                    if hasattr(torch, n))
_INTS = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                   torch.uint16, torch.uint32, torch.uint64})


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and the problem, on one line."""

    def __init__(self, message: str):
        super().__init__(_short(_printable(str(message)), MAX_MESSAGE))


@dataclass(frozen=True)
class Checkpoint:
    name: str  # the file name as given (no directories)
    sha256: str  # hex digest of the raw bytes
    n_bytes: int
    format: str  # "safetensors" | "torch-zip" | "torch-legacy"
    state: dict[str, torch.Tensor]  # flat, CPU, contiguous, dtype as stored, wrapper prefixes stripped
    notes: tuple[str, ...]  # human-readable things done to get `state`


def max_bytes() -> int:
    """The size limit in bytes: $PHASEZOO_MAX_CHECKPOINT_MB (read now, so a running app can be reconfigured), else
    DEFAULT_MAX_BYTES."""
    raw = os.environ.get(MAX_MB_ENV, "").strip()
    if not raw:
        return DEFAULT_MAX_BYTES
    try:
        mb = float(raw)
    except ValueError:
        mb = math.nan
    if not (math.isfinite(mb) and mb > 0):
        raise CheckpointError(f"{MAX_MB_ENV}={raw!r} is not a positive number of megabytes")
    return int(mb * 2**20)


def load_checkpoint(path: str | Path, *, limit: int | None = None) -> Checkpoint:
    """Read and check the checkpoint at `path`; its size is checked with stat before a byte is read."""
    path = Path(path)
    name = _base_name(path.name or str(path))
    try:
        return _load(path, name, limit)
    except CheckpointError:
        raise
    except Exception as e:  # e.g. ValueError for a path with a NUL byte: still this path's problem, not a crash
        reason = "its path contains a null byte" if "null byte" in str(e) else f"{type(e).__name__} while opening it"
        raise CheckpointError(f"{name}: cannot be read: {reason}") from e


def _load(path: Path, name: str, limit: int | None) -> Checkpoint:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file") from None
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{name}: is a directory, not a checkpoint file")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device may never end, and its st_size means nothing
        raise CheckpointError(f"{name}: is not a regular file")
    _check_suffix(name)
    limit = _limit(name, limit)
    _check_size(name, st.st_size, limit)
    try:
        with open(path, "rb") as f:
            data = f.read(limit + 1)  # the file may have grown since stat: never read more than the limit allows
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read: {e.strerror or e}") from None
    return read_checkpoint(data, name, limit=limit)


def read_checkpoint(data: bytes, name: str, *, limit: int | None = None) -> Checkpoint:
    """Check and load the raw bytes of a checkpoint file called `name` (only its suffix decides the reader).

    Raises CheckpointError, and nothing else, for every file that is not a usable state dict.
    """
    name = _base_name(name)
    try:
        return _read(bytes(data), name, limit)
    except CheckpointError:
        raise
    except Exception as e:  # a reader failing in a way not foreseen below is still the file's fault
        raise CheckpointError(f"{name}: could not be loaded: the reader failed on it ({type(e).__name__})") from e


def _read(data: bytes, name: str, limit: int | None) -> Checkpoint:
    suffix = _check_suffix(name)
    limit = _limit(name, limit)
    _check_size(name, len(data), limit)
    budget = MAX_EXPANSION * limit
    if suffix == ".safetensors":
        fmt, obj = "safetensors", _load_safetensors(data, name, budget)
    else:
        fmt = "torch-zip" if data.startswith(ZIP_MAGIC) else "torch-legacy"
        obj = _load_torch(data, name, limit, budget)
    state, notes = _state_dict(obj, name)
    state, strip_notes = _strip_prefixes(state)
    state = _clean_tensors(state, name, budget)
    return Checkpoint(name=name, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data), format=fmt,
                      state=state, notes=tuple(notes + strip_notes))


# --- names, sizes, formats ------------------------------------------------------------------------------------


def base_name(name: object) -> str:
    """The file name as shown anywhere (messages, page, CLI, JSON): browsers and clients may send a full
    client-side path, with either separator (`../../etc/x.pt` is `x.pt`); one line, no control characters."""
    return _printable(str(name).replace("\\", "/").rsplit("/", 1)[-1]) or "<unnamed>"


def _base_name(name: str) -> str:
    # In a message, a name of thousands of characters keeps its start and its suffix.
    name = base_name(name)
    return name if len(name) <= 80 else name[:60] + "…" + name[-19:]


def _check_suffix(name: str) -> str:
    suffix = Path(name).suffix.lower()
    if suffix not in SUFFIXES:
        what = f"its suffix {suffix!r} is not" if suffix else "it has no suffix, which is not"
        raise CheckpointError(f"{name}: {what} a checkpoint suffix; accepted: {', '.join(SUFFIXES)}")
    return suffix


def _limit(name: str, limit: int | None) -> int:
    if limit is not None:
        return limit
    try:
        return max_bytes()
    except CheckpointError as e:
        raise CheckpointError(f"{name}: cannot check its size: {e}") from None


def _check_size(name: str, n_bytes: int, limit: int) -> None:
    if n_bytes == 0:
        raise CheckpointError(f"{name}: is empty (0 bytes)")
    if n_bytes > limit:
        raise CheckpointError(f"{name}: is {_size(n_bytes)}, over the limit of {_size(limit)} "
                              f"(set {MAX_MB_ENV} to raise it)")


def _printable(text: str) -> str:
    # Names and reasons can come from the file itself; keep control characters out of a one-line message.
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def _short(text: str, n: int = 60) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _key(key: object) -> str:
    return _short(_printable(repr(key)))


# --- readers ---------------------------------------------------------------------------------------------------


def _check_budget(name: str, sizes: list[int], budget: int, stored: int) -> None:
    """Refuse tensors that would take more than `budget` bytes once built; `stored` is what their storages hold."""
    total = sum(sizes)
    if total > budget:
        how = (f": they view only {_size(stored)} of stored data, by aliasing or stride-0 broadcasting"
               if total > MAX_EXPANSION * stored else f"; set {MAX_MB_ENV} to raise it")
        raise CheckpointError(f"{name}: refused: its tensors would take {_size(total)} in memory, over the limit of "
                              f"{_size(budget)} ({MAX_EXPANSION}× the size limit){how}")


def _load_safetensors(data: bytes, name: str, budget: int) -> dict[str, torch.Tensor]:
    try:
        views = safetensors_views(data)
    except Refusal as r:
        raise CheckpointError(f"{name}: {r}") from None
    _check_budget(name, [math.prod(shape) * dtype.itemsize for _, dtype, shape, _ in views], budget, len(data))
    # frombuffer shares the bytes already copied out of the file; it cannot take an empty buffer
    return {key: torch.frombuffer(buf, dtype=dtype).reshape(shape) if len(buf) else torch.empty(shape, dtype=dtype)
            for key, dtype, shape, buf in views}


def _load_torch(data: bytes, name: str, limit: int, budget: int) -> object:
    if looks_like_safetensors(data):
        raise CheckpointError(f"{name}: is not a PyTorch file: it looks like a safetensors file; "
                              "rename it .safetensors")
    try:
        if data.startswith(ZIP_MAGIC):
            check_zip(data, limit)
            declared = inspect_zip(data)
        else:
            declared = inspect_legacy(data)
    except Refusal as r:
        raise CheckpointError(f"{name}: {r}") from None
    # What the file declares is checked before torch builds any of it: shapes, dtypes and the memory they take.
    state, _ = _state_dict(declared.obj, name)
    state, _ = _strip_prefixes(state)
    _check_declared(state, name, budget)
    payload = data if declared.torch_readable else _reencode(data, declared, name)
    try:
        return _torch_load(payload)
    except Exception as e:
        if payload is not data or "Unsupported operand" not in str(e):
            raise CheckpointError(f"{name}: {torch_failure(e)}") from e
    try:  # a protocol-2 pickle using opcodes torch's unpickler lacks: say the same thing in the ones it has
        return _torch_load(_reencode(data, declared, name))
    except Exception as e:
        raise CheckpointError(f"{name}: {torch_failure(e)}") from e


def _torch_load(payload: bytes) -> object:
    # weights_only=True is the whole point: only tensors and plain containers are rebuilt, no global is called except
    # torch's own allowlist. Passed explicitly, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot undo it.
    return torch.load(io.BytesIO(payload), map_location="cpu", weights_only=True)


def _reencode(data: bytes, declared: Declared, name: str) -> bytes:
    try:
        return reencode(data, declared)
    except Refusal as r:
        raise CheckpointError(f"{name}: {r}") from None
    except Exception as e:  # e.g. RecursionError for a deeply nested wrapper
        raise CheckpointError(f"{name}: {CORRUPT}: its pickle cannot be re-encoded ({type(e).__name__})") from None


# --- structure -------------------------------------------------------------------------------------------------


def _is_tensor(v: object) -> bool:
    return isinstance(v, (torch.Tensor, TensorDecl))  # the structure is checked on declarations, then on tensors


def _state_dict(obj: object, name: str) -> tuple[Mapping, list[str]]:
    """The mapping of names to tensors inside `obj`, unwrapping one common {"state_dict": ..., "epoch": ...}."""
    if _is_tensor(obj):
        raise CheckpointError(f"{name}: holds a single tensor, not a state dict (a mapping of parameter names to "
                              "tensors)")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a state dict (a mapping of parameter "
                              "names to tensors)")
    if any(_is_tensor(v) for v in obj.values()):
        return obj, []
    wrapped = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping) and any(map(_is_tensor, obj[k].values()))]
    if len(wrapped) > 1:
        raise CheckpointError(f"{name}: holds several state dicts ({_keys(wrapped)}); save the one you mean alone")
    if not wrapped:
        keys = f" (its keys: {_keys(list(obj))})" if obj else " (it is an empty mapping)"
        raise CheckpointError(f"{name}: holds no tensors{keys}")
    key = wrapped[0]
    notes = [f"unwrapped {key!r}"]
    others = [k for k in obj if k != key]
    if others:
        notes.append(f"ignored {len(others)} other entr{'y' if len(others) == 1 else 'ies'} beside it: {_keys(others)}")
    return obj[key], notes


def _keys(keys: list, n: int = 6) -> str:
    shown = ", ".join(_key(k) for k in keys[:n])
    return shown + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _strip_prefixes(state: Mapping) -> tuple[Mapping, list[str]]:
    """Drop a DataParallel/torch.compile prefix shared by every key (repeatedly: a compiled DataParallel model has
    both). A prefix on only some keys is part of the names and stays."""
    notes = []
    while state and all(isinstance(k, str) for k in state):
        prefix = next((p for p in STRIP_PREFIXES if all(k.startswith(p) and len(k) > len(p) for k in state)), None)
        if prefix is None:
            break
        # Removing a prefix every key has cannot make two keys equal, so no collision check is needed.
        state = {k[len(prefix):]: v for k, v in state.items()}
        notes.append(f"stripped prefix {prefix!r} from {len(state)} key{'s' if len(state) != 1 else ''}")
    return state, notes


def _check_entries(state: Mapping, name: str, tensor_type: type) -> None:
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{name}: has a non-string key {_key(key)} ({type(key).__name__}); a state dict "
                                  "maps parameter names to tensors")
        if not isinstance(value, tensor_type):
            what = type(value).__name__.lstrip("_")
            raise CheckpointError(f"{name}: key {_key(key)} holds a {what}, not a tensor")
        _check_dtype(value.dtype, key, name)


def _check_declared(state: Mapping, name: str, budget: int) -> None:
    """Check the declared tensors, and the memory they would take, before torch.load builds anything."""
    _check_entries(state, name, TensorDecl)
    stored = {id(t.storage): t.storage.numel * t.storage.dtype.itemsize for t in state.values()}
    _check_budget(name, [t.nbytes for t in state.values()], budget, sum(stored.values()))


def _clean_tensors(state: Mapping, name: str, budget: int) -> dict[str, torch.Tensor]:
    _check_entries(state, name, torch.Tensor)
    for key, t in state.items():
        if t.layout != torch.strided or t.device.type == "meta":  # refused by inspection; never copy one out
            raise CheckpointError(f"{name}: tensor {_key(key)} is {t.layout} on {t.device.type} (not dense data); "
                                  "only dense tensors are supported")
    # Counted again on what torch built, before the first copy: numel × element size, every alias counted in full.
    stored = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in state.values()}
    _check_budget(name, [t.numel() * t.element_size() for t in state.values()], budget, sum(stored.values()))
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for key, value in state.items():
        t = value.detach().cpu().contiguous()
        # Tensors that share memory (tied weights, views of one buffer) get their own copy: the state dict is then
        # independent of the file's layout and can be saved again with safetensors, which refuses shared memory.
        storage = t.untyped_storage()
        if t.numel() and (storage.data_ptr() in seen_storage or storage.nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        seen_storage.add(t.untyped_storage().data_ptr())
        _check_finite(t, key, name)
        out[key] = t
    return out


def _check_dtype(dtype: torch.dtype, key: str, name: str) -> None:
    if dtype.is_complex:
        raise CheckpointError(f"{name}: tensor {_key(key)} is complex ({dtype}); only real-valued tensors are "
                              "supported")
    if dtype not in _PLAIN_FLOATS | _FLOAT8 | _INTS:
        raise CheckpointError(f"{name}: tensor {_key(key)} has the unsupported dtype {dtype}")


def _check_finite(t: torch.Tensor, key: str, name: str) -> None:
    if not (t.dtype.is_floating_point and t.numel()):
        return
    flat, bad = t.reshape(-1), 0  # t is contiguous: a view
    for i in range(0, flat.numel(), FINITE_CHUNK):  # chunks keep the mask (and a float8 upcast) a few MB
        part = flat[i: i + FINITE_CHUNK]
        part = part if t.dtype in _PLAIN_FLOATS else part.float()  # isfinite lacks some float8 kernels
        bad += part.numel() - int(torch.isfinite(part).sum())
    if bad:
        raise CheckpointError(f"{name}: tensor {_key(key)} has {bad} NaN/Inf value{'s' if bad != 1 else ''} "
                              f"(of {t.numel()})")
