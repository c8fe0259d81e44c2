"""What a torch or safetensors file declares — storages, tensor views, dtypes, shapes — read before anything is built.

torch.load(weights_only=True) runs no code from a file, but it trusts the sizes the file states. A tensor of stride 0
over 3·10⁸ elements costs 4 bytes on disk and 1.2 GB once made contiguous; a thousand names for one tensor cost a
thousand copies; a legacy (non-zip) file's storages are allocated at the size its pickle states before a byte of them
is read; and some allowlisted rebuilds (bytearray(n), dtype conversion of a stride-0 tensor) allocate whatever the
pickle asks. So each pickle in the file is first read by data.checkpoint.unpickler's unpickler, which builds nothing and
records every storage and every view of one; this module checks those against the file's own bytes (zip entries, the
legacy storage section) and data.checkpoint.load checks them against its memory budget before torch.load builds the real
tensors. Files of a pickle protocol other than torch.save's default (2), which torch's weights-only unpickler cannot
read, are re-encoded from the vetted declarations (`reencode`) rather than refused. safetensors headers are parsed
by safetensors' Rust core, which builds no tensor either.

Everything here raises Refusal (a phrase that follows the file name) or returns; data.checkpoint.load turns it into its
CheckpointError.
"""
from __future__ import annotations

import io
import re
import struct
import zipfile
from dataclasses import dataclass

import torch
from safetensors import deserialize as deserialize_safetensors

from data.checkpoint.unpickler import (
    CORRUPT,
    STATE_DICT_ADVICE,
    TORCH_PROTOCOL,
    Refusal,
    StorageDecl,
    describe_global,
    encode_pickle,
    load_pickle,
    nonneg_int,
    short,
    storage_pid,
)

LEGACY_MAGIC = 0x1950A86A20F9469CFC6C  # torch.serialization.MAGIC_NUMBER, first pickle of a legacy file
LEGACY_VERSION = 1001  # torch.serialization.PROTOCOL_VERSION, its second pickle
MAX_MB_ENV = "PHASEZOO_MAX_CHECKPOINT_MB"
ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTO = b"\x80"  # the PROTO opcode every pickle of protocol >= 2 (torch's legacy format) starts with
# PyTorch stores zip entries uncompressed (ratio 1); a legitimate archive never comes near this.
MAX_ZIP_RATIO = 100


@dataclass(frozen=True)
class Declared:
    """A torch file's pickled object with TensorDecl in place of each tensor."""
    obj: object
    format: str  # "torch-zip" | "torch-legacy"
    protocols: frozenset[int]  # of every pickle in the file (0 stands for 0 or 1: those have no PROTO opcode)
    prefix: str = ""  # zip: the archive's record directory, "archive/"; legacy: unused
    legacy_header: tuple = ()  # legacy: (sys_info, storage keys, offset of the raw storage section)

    @property
    def torch_readable(self) -> bool:
        return self.protocols <= {TORCH_PROTOCOL}


def size_text(n: int) -> str:
    if n >= 2**20:
        return f"{n / 2**20:.1f} MB"
    return f"{n / 2**10:.1f} KB" if n >= 2**10 else f"{n} bytes"


def _name(text: str) -> str:
    return short(repr(text)).replace("\n", "?")


# --- torch zip files (torch.save's default since 1.6) -----------------------------------------------------------


def _record(z: zipfile.ZipFile, entry: str) -> bytes:
    try:
        return z.read(entry)
    except Exception:  # BadZipFile (bad CRC, bad local header), EOFError, a negative seek, ...: a damaged archive
        raise Refusal(f"{CORRUPT}: its zip entry {short(entry)!r} cannot be read") from None


def inspect_zip(data: bytes) -> Declared:
    """The declarations in a torch zip archive (already checked by the caller to open and not to be a bomb)."""
    with zipfile.ZipFile(io.BytesIO(data)) as z:
        entries = {e.filename: e for e in z.infolist()}
        first = next(iter(entries), "")
        prefix = first.split("/", 1)[0] + "/" if "/" in first else ""  # torch reads records under the first dir
        if f"{prefix}constants.pkl" in entries or any(n.startswith(f"{prefix}code/") for n in entries):
            raise Refusal(f"is a TorchScript archive (torch.jit.save), not a state dict — {STATE_DICT_ADVICE}")
        if f"{prefix}data.pkl" not in entries:
            raise Refusal("is a zip archive but not a torch.save checkpoint: it has no data.pkl")
        stray = next((n for n in entries if not (prefix and n.startswith(prefix))), None)
        if stray is not None:  # torch's reader requires every record under the first one's directory
            raise Refusal(f"{CORRUPT}: its zip entry {short(stray)!r} is outside the archive's directory")
        if f"{prefix}version" not in entries and f"{prefix}.data/version" not in entries:  # torch needs one
            raise Refusal(f"{CORRUPT}: its archive has no version record")
        for record, ok in ((f"{prefix}byteorder", lambda b: b in (b"little", b"big")),
                           (f"{prefix}.storage_alignment", lambda b: b.strip().isdigit()),
                           (f"{prefix}.format_version", lambda b: b.strip().isdigit()),
                           (f"{prefix}version", lambda b: b.strip().isdigit()),
                           (f"{prefix}.data/version", lambda b: b.strip().isdigit()),
                           (f"{prefix}.data/serialization_id", lambda b: b.isascii())):
            if record in entries and not ok(_record(z, record)):  # torch parses these; say so before it fails inside
                raise Refusal(f"{CORRUPT}: its record {short(record[len(prefix):])!r} is not one "
                              "torch.save writes")
        storages: dict[str, StorageDecl] = {}

        def persistent_load(pid):
            storage_type, key, location, numel = storage_pid(pid, 5)
            if key not in storages:  # like torch: the first declaration of a key is the storage
                entry = entries.get(f"{prefix}data/{key}")
                nbytes = numel * storage_type.dtype.itemsize
                if entry is None or entry.file_size < nbytes:
                    held = "is missing" if entry is None else f"holds only {entry.file_size:,} bytes"
                    raise Refusal(f"{CORRUPT}: storage {short(key)!r} of {nbytes:,} bytes {held} in the archive")
                storages[key] = StorageDecl(key, storage_type.dtype, numel,
                                            ("storage", storage_type.value, key, location, numel))
            return storages[key]

        protocols: set[int] = set()
        obj = load_pickle(io.BytesIO(_record(z, f"{prefix}data.pkl")), protocols, persistent_load)
    return Declared(obj, "torch-zip", frozenset(protocols), prefix=prefix)


# --- torch legacy files (_use_new_zipfile_serialization=False) ---------------------------------------------------


def inspect_legacy(data: bytes) -> Declared:
    """The declarations in a legacy torch file: magic, version, sys_info and the object, each a pickle, then the
    list of storage keys and, per key, an int64 element count followed by the raw elements."""
    if len(data) > 262 and data[257:262] == b"ustar":
        raise Refusal("is a tar archive: PyTorch's pre-1.0 tar format (or not a checkpoint at all), which cannot be "
                      f"loaded without running code — re-save it with a current PyTorch, or {STATE_DICT_ADVICE}")
    f, protocols = io.BytesIO(data), set()
    try:
        magic = load_pickle(f, protocols)
    except Refusal as r:
        if str(r).startswith("refused:"):  # a pickle that calls code is refused as such, whatever else it is
            raise
        raise Refusal("is not a readable PyTorch checkpoint: it is neither a torch.save zip archive nor a legacy "
                      "torch.save file") from None
    if magic != LEGACY_MAGIC:
        raise Refusal("is not a readable PyTorch checkpoint: it is a plain Python pickle, not a torch.save file")
    version = load_pickle(f, protocols)
    if version != LEGACY_VERSION:
        raise Refusal(f"is a legacy PyTorch file of an unknown format version ({short(repr(version))})")
    sys_info = load_pickle(f, protocols, what="its header")
    roots: dict[str, StorageDecl] = {}
    views: dict[str, StorageDecl] = {}

    def persistent_load(pid):
        if isinstance(pid, tuple) and pid[:1] in (("module",), (b"module",)):
            raise Refusal(f"refused: it holds a whole model object rather than its state dict — {STATE_DICT_ADVICE}")
        storage_type, key, location, numel, view = storage_pid(pid, 6)
        if key not in roots:  # like torch: the first declaration of a key is the storage
            roots[key] = StorageDecl(key, storage_type.dtype, numel,
                                     ("storage", storage_type.value, key, location, numel, None))
        root = roots[key]
        if view is None:
            return root
        if not (isinstance(view, tuple) and len(view) == 3 and isinstance(view[0], str)):
            raise Refusal(f"{CORRUPT}: a storage view is declared in a way torch.save never does")
        view_key, offset, size = view[0], nonneg_int(view[1], "a view offset"), nonneg_int(view[2], "a view size")
        if offset + size > root.numel:
            raise Refusal(f"{CORRUPT}: a storage view reaches element {offset + size:,} of a storage holding "
                          f"{root.numel:,}")
        if view_key not in views:
            views[view_key] = StorageDecl(view_key, root.dtype, size,
                                          ("storage", storage_type.value, key, location, numel, view))
        return views[view_key]

    obj = load_pickle(f, protocols, persistent_load)
    keys = load_pickle(f, protocols, what="its list of storages")
    if not (isinstance(keys, list) and all(isinstance(k, str) for k in keys)):
        raise Refusal(f"{CORRUPT}: its list of storages is not a list of names")
    section = pos = f.tell()
    for key in keys:  # torch reads each storage's element count, then its elements, in this order
        if key not in roots:
            raise Refusal(f"{CORRUPT}: it stores data for a storage {short(key)!r} its pickle never declares")
        if pos + 8 > len(data):
            raise Refusal(f"{CORRUPT}: it ends before the data of storage {short(key)!r}")
        (count,) = struct.unpack_from("<q", data, pos)
        if count != roots[key].numel:
            raise Refusal(f"{CORRUPT}: storage {short(key)!r} holds {count:,} elements where its pickle "
                          f"declares {roots[key].numel:,}")
        pos += 8 + count * roots[key].dtype.itemsize
        if pos > len(data):
            raise Refusal(f"{CORRUPT}: it ends inside the data of storage {short(key)!r}")
    missing = sorted(set(roots) - set(keys))
    if missing:  # torch would hand out such a storage uninitialised: whatever was in that memory before
        raise Refusal(f"{CORRUPT}: storage {short(missing[0])!r} has no data in the file")
    return Declared(obj, "torch-legacy", frozenset(protocols), legacy_header=(sys_info, keys, section))


# --- re-encoding for torch's weights-only unpickler ----------------------------------------------------------------


def reencode(data: bytes, declared: Declared) -> bytes:
    """The same file with every pickle rewritten in protocol 2 from the declarations; the stored bytes unchanged."""
    if declared.format == "torch-legacy":
        sys_info, keys, section = declared.legacy_header
        pickles = (LEGACY_MAGIC, LEGACY_VERSION, sys_info, declared.obj, keys)
        return b"".join(map(encode_pickle, pickles)) + data[section:]  # then the storages, byte for byte
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst:
        for entry in src.infolist():
            payload = (encode_pickle(declared.obj) if entry.filename == f"{declared.prefix}data.pkl"
                       else _record(src, entry.filename))
            dst.writestr(entry.filename, payload)
    return out.getvalue()


# --- safetensors ---------------------------------------------------------------------------------------------------

SAFETENSORS_DTYPES = {"F64": torch.float64, "F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16,
                      "I64": torch.int64, "I32": torch.int32, "I16": torch.int16, "I8": torch.int8,
                      "U64": torch.uint64, "U32": torch.uint32, "U16": torch.uint16, "U8": torch.uint8,
                      "BOOL": torch.bool, "F8_E4M3": torch.float8_e4m3fn, "F8_E5M2": torch.float8_e5m2,
                      "F8_E4M3FNUZ": torch.float8_e4m3fnuz, "F8_E5M2FNUZ": torch.float8_e5m2fnuz,
                      "C64": torch.complex64}  # read, then refused by name as complex


def looks_like_safetensors(data: bytes) -> bool:
    # 8-byte little-endian header length, then a JSON object that fits in the file.
    return len(data) > 9 and data[8:9] == b"{" and int.from_bytes(data[:8], "little") <= len(data) - 8


def safetensors_views(data: bytes) -> list[tuple[str, torch.dtype, list[int], bytearray]]:
    """(name, dtype, shape, bytes) of each tensor in a safetensors file, every dtype known to torch."""
    # A header length whose low byte is 0x80 (e.g. 384) starts like a pickle: trust the header's own shape first.
    if not looks_like_safetensors(data) and (data.startswith(ZIP_MAGIC) or data.startswith(PICKLE_PROTO)):
        raise Refusal("is not a safetensors file: it looks like a PyTorch file; rename it .pt")
    if len(data) < 8:
        raise Refusal(f"is not a readable safetensors file: {len(data)} bytes, too short for a header")
    header = int.from_bytes(data[:8], "little")
    if header > len(data) - 8:  # checked here for a clearer message than safetensors' "header too large"
        raise Refusal(f"is not a readable safetensors file: its header length field says {header} bytes but only "
                      f"{len(data) - 8} follow (truncated or not safetensors)")
    try:
        # safetensors' Rust core parses the header and checks that the tensors tile the data exactly (in bounds, no
        # overlap, so no aliasing); it copies each tensor's bytes, at most the file's size, and builds nothing else.
        flat = deserialize_safetensors(data)
    except Exception as e:  # SafetensorError for bad headers; anything else is just as much the file's fault
        reason = re.sub(r"^Error while deserializing( header)?: ", "", short(" ".join(str(e).split()), 160))
        dtype = re.search(r"unknown variant `([^`]*)`", reason)  # serde's words for a dtype it does not know
        reason = f"its header names the unknown dtype {_name(dtype.group(1))}" if dtype else reason.rstrip(".")
        raise Refusal(f"is not a readable safetensors file: {reason or type(e).__name__}") from None
    for key, view in flat:
        if view["dtype"] not in SAFETENSORS_DTYPES:  # known to safetensors, not to torch (F8_E8M0, F4, ...)
            raise Refusal(f"tensor {_name(key)} has the dtype {_name(view['dtype'])}, which this reader does not "
                          f"support (it reads {', '.join(k for k in SAFETENSORS_DTYPES if k != 'C64')})")
    return [(key, SAFETENSORS_DTYPES[v["dtype"]], v["shape"], v["data"]) for key, v in flat]


# --- the archive itself, and what is left to go wrong inside torch -------------------------------------------------


def check_zip(data: bytes, limit: int) -> None:
    """Refuse an archive that is unreadable or would inflate past the limit, before anything is decompressed."""
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            entries = z.infolist()
    except Exception as e:  # BadZipFile mostly; a mangled directory can also raise struct/Value/OSError
        # zipfile says "File is not a zip file" when the directory at the end is gone, as in a cut-short upload.
        if str(e) == "File is not a zip file":
            reason = "its zip directory is missing"
        elif isinstance(e, zipfile.BadZipFile):  # zipfile's own short phrases ("Truncated file header")
            reason = short(" ".join(str(e).split()), 80)
        else:  # UnicodeDecodeError for a mangled entry name, struct.error, ...: zipfile's words would mean little
            reason = "its directory is damaged"
        raise Refusal(f"{CORRUPT}: its zip archive cannot be read: {reason}") from None
    for entry in entries:
        if entry.file_size > MAX_ZIP_RATIO * max(entry.compress_size, 1):
            raise Refusal(f"refused: zip entry {_name(entry.filename)} decompresses to {size_text(entry.file_size)} "
                          f"from {size_text(entry.compress_size)} (a zip bomb; PyTorch writes its entries "
                          "uncompressed)")
    total = sum(entry.file_size for entry in entries)
    if total > limit:
        raise Refusal(f"refused: its zip archive decompresses to {size_text(total)}, over the limit of "
                      f"{size_text(limit)} (a zip bomb, or set {MAX_MB_ENV} to raise the limit)")


def torch_failure(e: Exception) -> str:
    """A torch.load failure (rare once a file passed inspection) as a phrase without torch's internals or advice."""
    text = str(e)
    refused_global = re.search(r"GLOBAL (\S+)", text)
    if refused_global:
        return (f"refused: {describe_global(refused_global.group(1))}, which a weights-only load does not allow "
                f"(only tensors and plain containers) — {STATE_DICT_ADVICE}")
    if "Unsupported operand" not in text and ("Weights only load failed" in text or "WeightsUnpickler" in text):
        return (f"refused: it holds objects beyond tensors and plain containers, which a weights-only load does not "
                f"allow — {STATE_DICT_ADVICE}")
    opcode = re.search(r"Unsupported operand (\d+)", text)
    entry = re.search(r"PytorchStreamReader failed \w+ (?:file|record) ([^\s:]+)", text)
    if opcode:
        reason = f"not a pickle torch.save writes (unsupported opcode {opcode.group(1)})"
    elif entry:
        reason = f"its archive entry {_name(entry.group(1))} cannot be read"
    elif "PytorchStreamReader" in text:  # miniz rejecting the archive itself: a local header, a CRC, ...
        reason = "PyTorch cannot read its zip archive"
    else:
        reason = f"torch.load failed on it ({type(e).__name__})"
    return f"{CORRUPT}: {reason}"
