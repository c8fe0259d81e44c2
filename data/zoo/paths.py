"""Path policy for zoo directories a user names: where they may be, and which of their files may be read.

A zoo directory named on a public dashboard (the sidebar's "Other directory…", the Compare page, PHASEZOO_ZOO)
is hostile input. Three rules, in one place so that every reader applies the same ones:

1. Resolution. A path is compared only after `os.path.realpath` (symlinks and `..` resolved, in that order,
   as the kernel does); a symbolic-link loop is refused, never followed until RecursionError.
2. Roots. $PHASEZOO_ZOO_ROOTS (os.pathsep-separated directories) restricts which directories the dashboard
   opens: a resolved path must lie inside one of them, or be a trusted directory (the built-in zoos and
   $PHASEZOO_ZOO, both chosen by whoever runs the server). Unset: no restriction, as for `make run` on a
   laptop. Set but empty: only the trusted directories. The Procfile sets it, so a deployment is restricted
   unless its operator names roots.
3. Regular files. A zoo's files are opened only if `os.stat` says they are regular files (a FIFO would block
   the page forever, a device would be read without end), within a size bound; the descriptor is opened
   non-blocking and checked again with `fstat`, so a file swapped for a FIFO after the check cannot block.

Every refusal is a PathError (a ValueError) with a one-line message naming the path and the problem.
"""
from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import BinaryIO

import polars as pl
import pyarrow.parquet as pq

ROOTS_ENV = "PHASEZOO_ZOO_ROOTS"
MAX_TABLE_BYTES = 512 * 2**20  # a parquet table on disk (the default zoo's largest, metrics, is 2.8 MB)
MAX_TABLE_ROWS = 10_000_000  # rows a table may declare (default zoo's metrics: 2e5 rows, ~19 MB in memory)
MAX_TEXT_BYTES = 1 * 2**20  # a text file of the zoo (spec.toml, costs.json: ~2 kB)
MAX_CHECKPOINT_BYTES = 2 * 2**30  # one stored checkpoint (the built-in zoos' are < 1 MB)
MAX_ENTRIES = 1000  # entries of a zoo directory's top level (a zoo has ~10; checkpoints live one level down)
DATA_SUFFIXES = (".parquet", ".toml", ".json")  # the zoo's own files, checked when the zoo is opened


class PathError(ValueError):
    """A path the policy refuses: a loop, outside the allowed roots, not a regular file, too large."""


def _why(path: str | Path, e: OSError) -> str:
    if e.errno == errno.ELOOP:
        return f"{path}: a symbolic-link loop"
    return f"{path}: {e.strerror or type(e).__name__}"


def resolve(path: str | Path) -> Path:
    """`path` made absolute with symlinks and `..` resolved; the part that does not exist is kept as written."""
    try:
        return Path(os.path.realpath(path, strict=True))
    except FileNotFoundError:  # a missing zoo is the reader's to report ("spec.toml is missing")
        return Path(os.path.realpath(path))
    except OSError as e:
        raise PathError(_why(path, e)) from None


def zoo_roots() -> tuple[Path, ...] | None:
    """The resolved $PHASEZOO_ZOO_ROOTS, or None if it is unset (no restriction)."""
    raw = os.environ.get(ROOTS_ENV)
    if raw is None:
        return None
    return tuple(resolve(r) for r in raw.split(os.pathsep) if r.strip())


def allowed_zoo_dir(path: str | Path, trusted: Iterable[str | Path] = ()) -> Path:
    """The resolved `path` if the dashboard may open it (see rule 2), else PathError."""
    roots = zoo_roots()
    try:
        real = resolve(path)
    except PathError:  # a loop (or no permission) outside the roots: say no more than for any outside path
        if roots is not None and not any(Path(os.path.abspath(path)).is_relative_to(r) for r in roots):
            raise PathError(f"{path}: not allowed on this server (see {ROOTS_ENV})") from None
        raise
    if roots is None or real in {resolve(t) for t in trusted} or any(real.is_relative_to(r) for r in roots):
        return real
    where = "only the built-in zoos are" if not roots else "only directories under its zoo roots are"
    raise PathError(f"{path}: not allowed on this server ({where} opened; see {ROOTS_ENV})")


def regular_file(path: str | Path, max_bytes: int) -> os.stat_result | None:
    """`os.stat(path)` if it is a regular file of at most `max_bytes`; None if it does not exist."""
    try:
        st = os.stat(path)  # follows symlinks: a link to a regular file is one
    except FileNotFoundError:
        return None
    except OSError as e:
        raise PathError(_why(path, e)) from None
    if not stat.S_ISREG(st.st_mode):
        kind = ("a directory" if stat.S_ISDIR(st.st_mode) else "a FIFO" if stat.S_ISFIFO(st.st_mode)
                else "a device" if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode) else "a socket")
        raise PathError(f"{path}: {kind}, not a regular file")
    if st.st_size > max_bytes:
        raise PathError(f"{path}: {st.st_size / 2**20:.1f} MiB, more than the {max_bytes / 2**20:.1f} MiB allowed")
    return st


def open_regular(path: str | Path, max_bytes: int) -> BinaryIO:
    """Open a regular file for reading (rule 3); PathError if it is missing or refused."""
    st = regular_file(path, max_bytes)
    if st is None:
        raise PathError(f"{path}: missing")
    try:  # O_NONBLOCK: should it have become a FIFO since the stat, opening it returns at once
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as e:
        raise PathError(_why(path, e)) from None
    now = os.fstat(fd)
    if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino) or not stat.S_ISREG(now.st_mode) \
            or now.st_size > max_bytes:
        os.close(fd)
        raise PathError(f"{path}: changed while being opened")
    return os.fdopen(fd, "rb")


def read_bytes(path: str | Path, max_bytes: int) -> bytes:
    with open_regular(path, max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:  # grew after the checks
        raise PathError(f"{path}: more than the {max_bytes / 2**20:.1f} MiB allowed")
    return data


def read_text(path: str | Path, max_bytes: int = MAX_TEXT_BYTES) -> str:
    try:
        return read_bytes(path, max_bytes).decode()
    except UnicodeDecodeError:
        raise PathError(f"{path}: not UTF-8 text") from None


def read_parquet(path: str | Path, max_bytes: int = MAX_TABLE_BYTES, max_rows: int = MAX_TABLE_ROWS) -> pl.DataFrame:
    """A parquet table, refused (PathError) before decoding if its footer declares more than `max_rows` rows: a
    small file of constant columns can decompress to gigabytes. A damaged file raises the reader's own error."""
    with open_regular(path, max_bytes) as f:
        rows = pq.read_metadata(f).num_rows
        if rows > max_rows:
            raise PathError(f"{path}: {rows} rows, more than the {max_rows} allowed")
        f.seek(0)
        return pl.read_parquet(f)


def check_zoo_dir(root: str | Path) -> None:
    """Refuse a zoo directory that is a loop or not a directory, has more than MAX_ENTRIES entries, or holds a
    data file (DATA_SUFFIXES) that is not a regular file of bounded size. A missing directory passes (the
    reader says what is missing). Only metadata is read: nothing is opened but the directory."""
    try:
        st = os.stat(root)
    except FileNotFoundError:
        return
    except OSError as e:
        raise PathError(_why(root, e)) from None
    if not stat.S_ISDIR(st.st_mode):
        raise PathError(f"{root}: not a directory")
    try:
        with os.scandir(root) as entries:
            for i, entry in enumerate(entries):
                if i >= MAX_ENTRIES:
                    raise PathError(f"{root}: more than {MAX_ENTRIES} entries, not a zoo directory")
                if entry.name.endswith(DATA_SUFFIXES) and not entry.name.startswith("."):
                    regular_file(Path(root) / entry.name, MAX_TABLE_BYTES)
    except OSError as e:
        raise PathError(_why(root, e)) from None


def zoo_file(root: str | Path, rel: str) -> Path:
    """`root / rel` for a path the zoo's own tables name (a checkpoint): relative, without `..`, so a catalog
    cannot point outside its zoo (at /etc/passwd, another user's files)."""
    p = PurePosixPath(rel)
    if not rel or p.is_absolute() or ".." in p.parts:
        raise PathError(f"{root}: the catalog names {rel!r}, a path outside the zoo")
    return Path(root) / p
