"""Write a whole zoo directory at once, or nothing: what every importer (data.importers.manifest,
data.importers.smallcnn) shares with data.importers.ptmz.

The zoo is built in a temporary directory beside `out` (same file system) — checkpoints first, then the spec, the
catalog (which names them) and any metrics and side tables — synced, and renamed to `out` in one step. Any error
removes the temporary directory; an existing `out` is never touched. Tables are validated against data.zoo.schema
before they are written, so a zoo that appears is a zoo that opens.
"""
from __future__ import annotations

import errno
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

import polars as pl

from data.checkpoint.load import CheckpointError, max_bytes
from data.importers.ptmz_layout import ImportError_
from data.models.archs import build_model
from data.params import SpecError
from data.tasks.builtin import TASKS
from data.zoo.schema import CATALOG, METRICS
from data.zoo.spec import ZooSpec, parse_spec
from data.zoo.store import CATALOG_FILE, METRICS_FILE, SPEC, atomic_write

__all__ = ["ImportError_", "check_new_output", "new_zoo_dir", "write_zoo"]


def model_of(spec: ZooSpec, cfg, cache: dict, where: str):
    """The model of `cfg` (one of `spec.models()`), built once per model id into `cache`; parameters its
    architecture refuses are one ImportError_ line naming `where` (the file and row)."""
    if cfg.model_id not in cache:
        input_shape, n_out = TASKS[spec.task].shapes(cfg.get("task_params"))
        try:
            cache[cfg.model_id] = build_model(spec.arch, input_shape, n_out, cfg.get("arch_params"))
        except (SpecError, ValueError) as e:
            raise ImportError_(f"{where}: no {spec.arch} for task {spec.task} with these parameters: {e}") from None
    return cache[cfg.model_id]


def check_new_output(out: Path) -> None:
    """Refuse an output that exists (nothing is written) and a bad $PHASEZOO_MAX_CHECKPOINT_MB, up front."""
    if os.path.lexists(out):
        raise ImportError_(f"{out} exists; choose a new output directory (nothing was written)")
    try:
        max_bytes()
    except CheckpointError as e:
        raise ImportError_(str(e)) from None


@contextmanager
def new_zoo_dir(out: Path) -> Iterator[Path]:
    """A temporary directory beside `out` (same file system) to build a zoo in; on leaving the block it is
    synced and renamed to `out` in one step, or removed on any error — an `out` that appeared meanwhile is
    never written over."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        yield tmp
        os.sync()
        os.rename(tmp, out)  # the zoo appears whole or not at all
    except OSError as e:
        shutil.rmtree(tmp, ignore_errors=True)
        if e.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR) and os.path.lexists(out):
            raise ImportError_(f"{out} appeared during the import; it was left as it is (nothing written)") from None
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def write_zoo(out: Path, spec_text: str, fill: Callable[[Path, ZooSpec], list[dict]],
              metrics: Callable[[], list[dict]] = list, tables: Mapping[str, Callable[[], pl.DataFrame]] = {},
              source: str = "generated spec") -> ZooSpec:
    """Create zoo `out` from `spec_text`: `fill(tmp_root, spec)` writes the checkpoints (data.zoo.store.
    write_checkpoint) and returns the catalog rows; `metrics()` the metrics rows; `tables` extra parquet files
    (name -> frame) such as the hyperparameters an importer keeps beside the catalog."""
    out = Path(out)
    check_new_output(out)
    spec = parse_spec(spec_text, source)  # a SpecError here names the field; nothing has been created yet
    with new_zoo_dir(out) as tmp:
        rows = fill(tmp, spec)
        catalog = pl.DataFrame(rows, schema={**CATALOG.columns, **spec.knob_dtypes})
        catalog = CATALOG.validate(catalog.sort("model_id", "epoch"), spec.knob_dtypes)
        met = METRICS.validate(pl.DataFrame(metrics(), schema=METRICS.columns))
        atomic_write(tmp / SPEC, lambda p: p.write_text(spec_text))
        atomic_write(tmp / CATALOG_FILE, lambda p: catalog.write_parquet(p))
        atomic_write(tmp / METRICS_FILE, lambda p: met.write_parquet(p))
        for name, table in tables.items():
            frame = table()
            atomic_write(tmp / name, lambda p: frame.write_parquet(p))
    return spec
