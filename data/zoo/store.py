"""The zoo directory: the one place that knows file names and how they are written.

    <zoo>/spec.toml                               the spec the zoo was generated from (data.zoo.spec)
    <zoo>/catalog.parquet                         one row per model per logged epoch (data.zoo.schema.CATALOG)
    <zoo>/checkpoints/<model_id>/epoch_NNNN.safetensors
    <zoo>/metrics.parquet, embeddings.parquet     added by the analysis package

Every file is written to a temporary name in the same directory and renamed into place (atomic on POSIX),
so a killed writer leaves either the old file or the new one, never half of one. The catalog is written
after the checkpoints it names: a model is part of the zoo exactly when its rows are in the catalog.
"""
from __future__ import annotations

import fcntl
import os
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import cached_property, lru_cache
from pathlib import Path

import polars as pl
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from data.models.archs import build_model
from data.tasks.builtin import TASKS, TaskData, load_task
from data.zoo.paths import (
    MAX_CHECKPOINT_BYTES,
    MAX_TABLE_BYTES,
    MAX_TEXT_BYTES,
    PathError,
    check_zoo_dir,
    read_parquet,
    read_text,
    regular_file,
    zoo_file,
)
from data.zoo.schema import CATALOG, METRICS, Schema, SchemaError
from data.zoo.spec import ModelConfig, ZooSpec, parse_spec

SPEC, CATALOG_FILE, CHECKPOINTS, METRICS_FILE = "spec.toml", "catalog.parquet", "checkpoints", "metrics.parquet"
BUILTIN_ZOOS = Path(__file__).resolve().parents[1] / "zoos"  # committed zoos, one directory each


class ZooError(ValueError):
    """A zoo directory is missing, incomplete or corrupt; the message names the file."""


class WriteError(ZooError, OSError):
    """Writing a file of the zoo failed (disk full, quota, permissions, a vanished mount). Both a ZooError
    and an OSError, so callers catching either keep working; the message is one line naming the file."""

    def __init__(self, path: Path, cause: BaseException):
        errno_ = getattr(cause, "errno", None)
        reason = os.strerror(errno_) if errno_ else (str(cause).splitlines() or [type(cause).__name__])[0]
        hint = " (disk full: free some space)" if errno_ in (28, 122) or "space" in reason.lower() else ""
        super().__init__(errno_, reason)
        self.errno, self.strerror, self.path = errno_, reason, path  # as callers catching OSError read them
        self.message = f"cannot write {path}: {reason}{hint}; finished work is kept — rerun to resume"

    def __str__(self) -> str:
        return self.message


# What a failing write raises: the OS (ENOSPC, EDQUOT, EIO ...), safetensors and polars wrap the OS error
# in their own types, so all three become one WriteError.
WRITE_ERRORS = (OSError, SafetensorError, pl.exceptions.PolarsError)


def atomic_write(path: Path, write: Callable[[Path], None], durable: bool = True) -> None:
    """Call `write(tmp)` on a temporary file beside `path`, fsync it (if `durable`), then rename it over `path`.

    The rename alone makes the write atomic against a killed process; the fsync also against power loss.
    A failing write (disk full ...) leaves the old file, removes the temporary and raises WriteError.
    """
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
        os.close(fd)
        write(Path(tmp))
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; a zoo is meant to be shared
        if durable:
            with open(tmp, "rb+") as f:
                os.fsync(f.fileno())
        os.replace(tmp, path)
        if durable:  # the rename itself reaches the disk only with its directory
            dir_fd = os.open(path.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
    except BaseException as e:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)
        if isinstance(e, WRITE_ERRORS) and not isinstance(e, WriteError):
            raise WriteError(path, e) from e
        raise


@contextmanager
def writer_lock(root: Path):
    """One writer per zoo: an exclusive, non-blocking lock on <zoo>/.lock, held while the block runs (the
    system releases it if the process dies). A second generator or metric runner on the zoo is refused."""
    root.mkdir(parents=True, exist_ok=True)
    fd = os.open(root / ".lock", os.O_CREAT | os.O_RDWR, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ZooError(f"{root} is being written by another process (a generator or metric runner); "
                       "wait for it to finish") from None
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


def remove_stale_temporaries(root: Path, names: Sequence[str] | None = None) -> int:
    """Delete temporaries left by a killed writer (under the zoo's writer lock: no live writer owns one);
    `names` limits it to the temporaries of those files (e.g. ["metrics.parquet"]). Returns how many."""
    patterns = [f".{n}.*.tmp" for n in names] if names is not None else [".*.tmp"]
    stale = sorted({p for pat in patterns for p in root.rglob(pat)})
    for p in stale:
        p.unlink(missing_ok=True)
    return len(stale)


def checkpoint_relpath(model_id: str, epoch: int) -> str:
    return f"{CHECKPOINTS}/{model_id}/epoch_{epoch:04d}.safetensors"


def write_checkpoint(root: Path, model_id: str, epoch: int, state: dict[str, torch.Tensor]) -> str:
    """Atomic but not individually fsynced: the writer syncs once before the catalog that names them."""
    rel = checkpoint_relpath(model_id, epoch)
    atomic_write(root / rel, lambda tmp: save_file(state, str(tmp)), durable=False)
    return rel


class TableLog:
    """A parquet table that grows by appended rows, rewritten atomically at most every `flush_s` seconds.

    The one writer of its file. Rows whose `key` (columns, or expressions of them) match appended rows are
    replaced (a rerun's result supersedes a stored failure). `before_flush` runs first (e.g. syncing files the rows name).
    """

    def __init__(self, path: Path, schema: Schema, table: pl.DataFrame, *, key: Sequence[str | pl.Expr],
                 knobs: Mapping[str, pl.DataType] | None = None, flush_s: float = 5.0,
                 before_flush: Callable[[], None] = lambda: None):
        self.path, self.schema, self.knobs, self.key = path, schema, knobs, list(key)
        self.table, self.flush_s, self.before_flush = table, flush_s, before_flush
        self.pending: list[pl.DataFrame] = []
        self.last_flush = time.monotonic()

    def add(self, rows: pl.DataFrame) -> None:
        self.pending.append(rows)
        if time.monotonic() - self.last_flush >= self.flush_s:
            self.flush()

    def flush(self) -> None:
        if not self.pending:
            return
        self.before_flush()
        new = pl.concat(self.pending)
        cols = [pl.col(k) if isinstance(k, str) else k for k in self.key]
        key = pl.concat_str([c.cast(pl.String).fill_null("\0") for c in cols], separator="\x1f")
        kept = self.table.filter(~key.is_in(new.select(key).to_series().implode()))
        table = self.schema.validate(pl.concat([kept, new]).sort(cols), self.knobs)
        atomic_write(self.path, lambda tmp: table.write_parquet(tmp))
        self.table, self.pending, self.last_flush = table, [], time.monotonic()


def read_table(path: Path, schema=None, what: str = "the table") -> pl.DataFrame | None:
    """An optional table of a zoo (validated against `schema` if given), or None if the file is absent; a bad
    file is one ZooError line that names it (`what` says which table)."""
    try:  # a regular file of bounded size (data.zoo.paths): a FIFO or a link loop is refused, not waited on
        if regular_file(path, MAX_TABLE_BYTES) is None:
            return None
        df = read_parquet(path)
        return schema.validate(df) if schema is not None else df
    except PathError as e:
        raise ZooError(str(e)) from None
    except SchemaError as e:
        raise ZooError(f"{path}: {e}") from None
    except Exception as e:  # polars raises several error types for a damaged file
        raise ZooError(f"{path}: cannot read {what} ({type(e).__name__}: {e})") from None


def read_metrics(root: Path) -> pl.DataFrame:
    """The zoo's metrics table (validated), or an empty one if none has been computed."""
    table = read_table(Path(root) / METRICS_FILE, METRICS, "the metrics table")
    return METRICS.empty() if table is None else table


def init_zoo_dir(root: Path, spec_text: str) -> ZooSpec:
    """Create `root` with its spec, or check that an existing zoo there has the same spec (resume)."""
    spec = parse_spec(spec_text)
    existing = root / SPEC
    if existing.exists():
        old_text = existing.read_text()
        if parse_spec(old_text, str(existing)) != spec:
            raise ZooError(f"{root} already holds a zoo with a different spec; choose another output directory")
        if old_text != spec_text:  # the same models; comments or metric parameters changed: keep the new text
            atomic_write(existing, lambda tmp: tmp.write_text(spec_text))
        return spec
    try:
        root.mkdir(parents=True, exist_ok=True)
        atomic_write(existing, lambda tmp: tmp.write_text(spec_text))
    except OSError as e:
        raise ZooError(f"cannot write to output directory {root}: {e.strerror}") from None
    return spec


@dataclass(frozen=True)
class Zoo:
    """A zoo directory opened for reading. `Zoo.open` validates spec and catalog up front."""

    root: Path
    spec: ZooSpec
    catalog: pl.DataFrame
    spec_text: str = ""  # spec.toml as read by `open` (pages show it without reading the file again)

    @classmethod
    def open(cls, root: str | Path) -> Zoo:
        """Read-only. A hostile directory (a link loop, a FIFO or device among its files, an oversized file)
        is refused with a one-line ZooError naming it before anything is read (data.zoo.paths)."""
        root = Path(root)
        try:
            check_zoo_dir(root)
            if regular_file(root / SPEC, MAX_TEXT_BYTES) is None:
                raise ZooError(f"{root} is not a zoo directory: {SPEC} is missing")
            text = read_text(root / SPEC, MAX_TEXT_BYTES)
        except PathError as e:
            raise ZooError(str(e)) from None
        spec = parse_spec(text, str(root / SPEC))
        return cls(root, spec, read_catalog(root, spec), text)

    @property
    def name(self) -> str:
        return self.spec.name

    @cached_property
    def configs(self) -> dict[str, ModelConfig]:
        return {c.model_id: c for c in self.spec.models()}

    @cached_property
    def task(self) -> TaskData:
        """The task with the spec's base parameters (that of every model unless a task parameter is a knob)."""
        return load_task(self.spec.task, **self.spec.task_params)

    def task_of(self, model_id: str) -> TaskData:
        """The task a model was trained on (its cell's value of a task-parameter knob such as β)."""
        params = self.configs[model_id].task_params
        if dict(params) == dict(self.spec.task_params):
            return self.task
        return _task_cached(self.spec.task, params)

    def checkpoints(self) -> pl.DataFrame:
        return self.catalog.filter(pl.col("checkpoint").is_not_null())

    def load_state_dict(self, model_id: str, epoch: int) -> dict[str, torch.Tensor]:
        row = self.catalog.filter((pl.col("model_id") == model_id) & (pl.col("epoch") == epoch))
        if row.is_empty() or row["checkpoint"][0] is None:
            raise ZooError(f"{self.name}: no checkpoint for model {model_id!r} at epoch {epoch}")
        try:  # the catalog is data: a path it names must stay inside the zoo and be a regular file
            path = zoo_file(self.root, row["checkpoint"][0])
            regular_file(path, MAX_CHECKPOINT_BYTES)
        except PathError as e:
            raise ZooError(f"{self.name}: {e}") from None
        try:
            return load_file(str(path))
        except (OSError, SafetensorError) as e:
            raise ZooError(f"{self.name}: cannot read checkpoint {path}: {e}") from None

    def build_model(self, model_id: str, epoch: int) -> torch.nn.Module:
        """Rebuild a stored model (CPU, eval mode) with its weights at `epoch`."""
        if model_id not in self.configs:
            raise ZooError(f"{self.name}: unknown model {model_id!r}")
        cfg = self.configs[model_id]
        # shapes only: imported zoos have no data here
        input_shape, n_out = TASKS[self.spec.task].shapes(cfg.get("task_params"))
        model = build_model(self.spec.arch, input_shape, n_out, cfg.get("arch_params"))
        model.load_state_dict(self.load_state_dict(model_id, epoch))
        return model.eval()


@lru_cache(maxsize=16)
def _task_cached(task: str, params: tuple) -> TaskData:
    return load_task(task, **dict(params))


def builtin_zoos() -> list[Path]:
    """Directories of the committed zoos (resolved: a zoo is identified by its path, never by its name), the
    default (mnist1d-mlp) first."""
    found = sorted(p.parent.resolve() for p in BUILTIN_ZOOS.glob(f"*/{SPEC}"))
    return sorted(found, key=lambda p: p.name != "mnist1d-mlp")


def read_catalog(root: Path, spec: ZooSpec, missing_ok: bool = False) -> pl.DataFrame:
    path = Path(root) / CATALOG_FILE
    try:  # a regular file of bounded size (data.zoo.paths): a FIFO or a link loop is refused, not waited on
        found = regular_file(path, MAX_TABLE_BYTES) is not None
    except PathError as e:
        raise ZooError(str(e)) from None
    if not found:
        if missing_ok:
            return CATALOG.empty(spec.knob_dtypes)
        raise ZooError(f"{root}: {CATALOG_FILE} is missing (generate the zoo with `phasezoo generate`)")
    try:
        df = read_parquet(path)
    except PathError as e:
        raise ZooError(str(e)) from None
    except Exception as e:  # polars raises several error types for a damaged file
        raise ZooError(f"{path}: cannot read the catalog ({type(e).__name__}: {e})") from None
    try:
        return CATALOG.validate(df, spec.knob_dtypes)
    except SchemaError as e:
        raise ZooError(f"{path}: {e}") from None
