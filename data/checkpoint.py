"""Load an uploaded model checkpoint into a flat state dict without ever running code from it.

A `.pt` file is a pickle, and unpickling can call any function (os.system, exec): loading a stranger's file the
usual way hands them the machine. So safetensors files go through safetensors (no code at all) and PyTorch files
only through torch.load(weights_only=True), which accepts tensors and plain containers and refuses every other
global. Around that sit the checks weights_only does not make — size limits, zip bombs, wrappers, prefixes,
non-finite values — and one error type, CheckpointError, whose one-line message starts with the file name so a
dashboard can show it as is.
"""
from __future__ import annotations

import hashlib
import io
import math
import os
import re
import stat
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load as load_safetensors

SUFFIXES = (".safetensors", ".pt", ".pth", ".bin", ".ckpt")
DEFAULT_MAX_BYTES = 256 * 2**20
MAX_MB_ENV = "PHASEZOO_MAX_CHECKPOINT_MB"

# Keys under which training scripts commonly nest the state dict beside metadata (epoch, optimizer, ...).
WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "module", "net")
# Prefixes added by nn.DataParallel / DistributedDataParallel and by torch.compile; a plain model has neither.
STRIP_PREFIXES = ("module.", "_orig_mod.")
# PyTorch stores zip entries uncompressed (ratio 1); a legitimate archive never comes near this.
MAX_ZIP_RATIO = 100

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # the PROTO opcode every pickle of protocol >= 2 (torch's legacy format) starts with
STATE_DICT_ADVICE = "save a state dict (model.state_dict(), ideally with safetensors) instead"

_PLAIN_FLOATS = frozenset({torch.float16, torch.bfloat16, torch.float32, torch.float64})
_FLOAT8 = frozenset(getattr(torch, n) for n in ("float8_e4m3fn", "float8_e4m3fnuz", "float8_e5m2", "float8_e5m2fnuz")
                    if hasattr(torch, n))
_INTS = frozenset({torch.bool, torch.uint8, torch.int8, torch.int16, torch.int32, torch.int64,
                   torch.uint16, torch.uint32, torch.uint64})


class CheckpointError(ValueError):
    """A file that is not a usable checkpoint; the message names the file and the problem."""


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
        raise CheckpointError(f"{name}: cannot be read: {_reason(e)}") from e


def _load(path: Path, name: str, limit: int | None) -> Checkpoint:
    try:
        st = path.stat()
    except FileNotFoundError:
        raise CheckpointError(f"{name}: no such file ({_printable(str(path))})") from None
    except OSError as e:
        raise CheckpointError(f"{name}: cannot be read: {e.strerror or e}") from None
    if stat.S_ISDIR(st.st_mode):
        raise CheckpointError(f"{name}: is a directory, not a checkpoint file ({_printable(str(path))})")
    if not stat.S_ISREG(st.st_mode):  # a FIFO or device may never end, and its st_size means nothing
        raise CheckpointError(f"{name}: is not a regular file ({_printable(str(path))})")
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
        raise CheckpointError(f"{name}: could not be loaded: {_reason(e)}") from e


def _read(data: bytes, name: str, limit: int | None) -> Checkpoint:
    suffix = _check_suffix(name)
    limit = _limit(name, limit)
    _check_size(name, len(data), limit)
    if suffix == ".safetensors":
        fmt, obj = "safetensors", _load_safetensors(data, name)
    else:
        fmt = "torch-zip" if data.startswith(ZIP_MAGIC) else "torch-legacy"
        obj = _load_torch(data, name, limit)
    state, notes = _state_dict(obj, name)
    state, strip_notes = _strip_prefixes(state)
    state = _clean_tensors(state, name)
    return Checkpoint(name=name, sha256=hashlib.sha256(data).hexdigest(), n_bytes=len(data), format=fmt,
                      state=state, notes=tuple(notes + strip_notes))


# --- names, sizes, formats ------------------------------------------------------------------------------------


def _base_name(name: str) -> str:
    # Browsers and clients may send a full client-side path, with either separator; only the file name is ours.
    return _printable(str(name).replace("\\", "/").rsplit("/", 1)[-1]) or "<unnamed>"


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


def _size(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**10:.1f} KB" if n >= 2**10 else f"{n} bytes"


def _looks_like_safetensors(data: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object that fits in the file.
    return len(data) > 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") <= len(data) - 8


def _printable(text: str) -> str:
    # Names and reasons can come from the file itself; keep control characters out of a one-line message.
    return "".join(c if c.isprintable() else "?" for c in " ".join(text.split()))


def _reason(e: BaseException, n: int = 160) -> str:
    """One short line from an exception: its first sentence, whitespace collapsed, else its type."""
    text = _printable(str(e))
    text = re.split(r"(?<=[a-z)])\. ", text, maxsplit=1)[0].rstrip(".")  # drop torch's boilerplate that follows
    if not text:
        return {"EOFError": "unexpected end of file"}.get(type(e).__name__, type(e).__name__)
    if isinstance(e, LookupError):  # str(KeyError(159)) is a bare "159": say what kind of failure it was
        text = f"{type(e).__name__}: {text}"
    return text if len(text) <= n else text[: n - 1] + "…"


# --- readers ---------------------------------------------------------------------------------------------------


def _load_safetensors(data: bytes, name: str) -> dict[str, torch.Tensor]:
    # A header length whose low byte is 0x80 (e.g. 384) starts like a pickle: trust the header's own shape first.
    if not _looks_like_safetensors(data) and (data.startswith(ZIP_MAGIC) or data.startswith(PICKLE_PROTO)):
        raise CheckpointError(f"{name}: is not a safetensors file: it looks like a PyTorch file; rename it .pt")
    if len(data) < 8:
        raise CheckpointError(f"{name}: is not a readable safetensors file: {len(data)} bytes, too short for a header")
    header = int.from_bytes(data[:8], "little")
    if header > len(data) - 8:  # checked here for a clearer message than safetensors' "header too large"
        raise CheckpointError(f"{name}: is not a readable safetensors file: its header length field says "
                              f"{header} bytes but only {len(data) - 8} follow (truncated or not safetensors)")
    try:
        return load_safetensors(data)
    except Exception as e:  # SafetensorError for bad headers; anything else is just as much the file's fault
        reason = re.sub(r"^Error while deserializing( header)?: ", "", _reason(e))
        raise CheckpointError(f"{name}: is not a readable safetensors file: {reason}") from None


def _load_torch(data: bytes, name: str, limit: int) -> object:
    if _looks_like_safetensors(data):
        raise CheckpointError(f"{name}: is not a PyTorch file: it looks like a safetensors file; "
                              "rename it .safetensors")
    if data.startswith(ZIP_MAGIC):
        _check_zip(data, name, limit)
    try:
        # weights_only=True is the whole point: only tensors and plain containers are rebuilt, no global is
        # called except torch's own allowlist. Passed explicitly, so TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD cannot undo it.
        return torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:
        raise _torch_error(e, name) from None


def _check_zip(data: bytes, name: str, limit: int) -> None:
    """Refuse an archive that is unreadable or would inflate past the limit, before torch decompresses anything."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            entries = z.infolist()
    except Exception as e:  # BadZipFile mostly; a mangled directory can also raise struct/Value/OSError
        # zipfile says "File is not a zip file" when the directory at the end is gone, as in a cut-short upload.
        reason = "its zip directory is missing" if str(e) == "File is not a zip file" else _reason(e)
        raise CheckpointError(f"{name}: is not a readable PyTorch checkpoint (truncated or corrupt): "
                              f"its zip archive cannot be read: {reason}") from None
    for entry in entries:
        if entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1):
            raise CheckpointError(f"{name}: refused: zip entry {entry.filename!r} decompresses to "
                                  f"{_size(entry.file_size)} from {_size(entry.compress_size)} (a zip bomb; "
                                  "PyTorch writes its entries uncompressed)")
    total = sum(entry.file_size for entry in entries)
    if total > limit:
        raise CheckpointError(f"{name}: refused: its zip archive decompresses to {_size(total)}, over the limit of "
                              f"{_size(limit)} (a zip bomb, or set {MAX_MB_ENV} to raise the limit)")


def _torch_error(e: Exception, name: str) -> CheckpointError:
    """Turn a torch.load failure into a message: code refused by weights_only, or a damaged file."""
    text = str(e)
    refused_global = re.search(r"GLOBAL (\S+)", text)
    if refused_global:
        return CheckpointError(f"{name}: refused: {_describe_global(refused_global.group(1))}, which a weights-only "
                               f"load does not allow (only tensors and plain containers) — {STATE_DICT_ADVICE}")
    # Random bytes and non-torch pickles fail on an opcode; the weights-only unpickler raises this for those too.
    if "Unsupported operand" not in text and ("Weights only load failed" in text or "WeightsUnpickler" in text):
        return CheckpointError(f"{name}: refused: it holds objects beyond tensors and plain containers "
                               f"({_weights_only_reason(text)}), which a weights-only load does not allow — "
                               f"{STATE_DICT_ADVICE}")
    opcode = re.search(r"Unsupported operand (\d+)", text)
    reason = f"not a pickle torch.save writes (unsupported opcode {opcode.group(1)})" if opcode else _reason(e)
    return CheckpointError(f"{name}: is not a readable PyTorch checkpoint (truncated or corrupt): {reason}")


def _describe_global(path: str) -> str:
    module, _, attr = path.rpartition(".")
    if not module:  # torch strips "builtins." from the names it reports ("GLOBAL exec")
        module = "builtins"
    if module in ("posix", "nt"):  # os.system pickles under the platform module's name
        module = "os"
    path = _printable(f"{module}.{attr}")
    if module.startswith("torch.nn.modules"):
        return f"it holds a whole model object ({path}) rather than its state dict"
    if attr[:1].isupper():  # a class: an object saved whole rather than as tensors
        return f"the pickle needs the class {path}"
    return f"the pickle calls {path}"


def _weights_only_reason(text: str) -> str:
    # torch wraps the unpickler's own one-line reason in paragraphs of advice; keep only that reason.
    text = text.rsplit("WeightsUnpickler error:", 1)[-1]
    skip = ("Weights only load failed", "In PyTorch 2.6", "Check the documentation", "(1)", "(2)", "Please file")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith(skip)]
    return _reason(ValueError(lines[0] if lines else text))


# --- structure -------------------------------------------------------------------------------------------------


def _state_dict(obj: object, name: str) -> tuple[Mapping, list[str]]:
    """The mapping of names to tensors inside `obj`, unwrapping one common {"state_dict": ..., "epoch": ...}."""
    if isinstance(obj, torch.Tensor):
        raise CheckpointError(f"{name}: holds a single tensor, not a state dict (a mapping of parameter names to "
                              "tensors)")
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{name}: holds a {type(obj).__name__}, not a state dict (a mapping of parameter "
                              "names to tensors)")
    if any(isinstance(v, torch.Tensor) for v in obj.values()):
        return obj, []
    wrapped = [k for k in WRAPPER_KEYS if isinstance(obj.get(k), Mapping)
               and any(isinstance(v, torch.Tensor) for v in obj[k].values())]
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
    shown = ", ".join(repr(k) for k in keys[:n])
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


def _clean_tensors(state: Mapping, name: str) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    seen_storage: set[int] = set()
    for key, value in state.items():
        if not isinstance(key, str):
            raise CheckpointError(f"{name}: has a non-string key {key!r} ({type(key).__name__}); a state dict maps "
                                  "parameter names to tensors")
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{name}: key {key!r} holds a {type(value).__name__}, not a tensor")
        _check_tensor(value, key, name)
        t = value.detach().cpu().contiguous()
        # Tensors that share memory (tied weights, views of one buffer) get their own copy: the state dict is then
        # independent of the file's layout and can be saved again with safetensors, which refuses shared memory.
        storage = t.untyped_storage()
        if t.numel() and (storage.data_ptr() in seen_storage or storage.nbytes() != t.numel() * t.element_size()):
            t = t.clone()
        seen_storage.add(t.untyped_storage().data_ptr())
        out[key] = t
    return out


def _check_tensor(t: torch.Tensor, key: str, name: str) -> None:
    if t.layout != torch.strided:
        raise CheckpointError(f"{name}: tensor {key!r} is {t.layout} (not dense); only dense tensors are supported")
    if t.dtype.is_complex:
        raise CheckpointError(f"{name}: tensor {key!r} is complex ({t.dtype}); only real-valued tensors are supported")
    if t.dtype not in _PLAIN_FLOATS | _FLOAT8 | _INTS:
        raise CheckpointError(f"{name}: tensor {key!r} has the unsupported dtype {t.dtype}")
    if t.dtype.is_floating_point and t.numel():
        finite = torch.isfinite(t if t.dtype in _PLAIN_FLOATS else t.float())  # isfinite lacks some float8 kernels
        bad = int(finite.numel() - finite.sum())
        if bad:
            raise CheckpointError(f"{name}: tensor {key!r} has {bad} NaN/Inf value{'s' if bad != 1 else ''} "
                                  f"(of {t.numel()})")
