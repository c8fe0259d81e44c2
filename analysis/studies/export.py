"""Export a zoo as a dataset for weight-space learning, in the files of the Small CNN Zoo (Unterthiner et al. 2020,
arXiv:2002.11448; the format NFN and ScaleGMN read), with PhaseZoo's phase labels and a split by grid cell.

    python -m analysis.studies.export data/zoos/mnist1d-mlp --out exports/mnist1d-mlp [--epochs 150] [--seed 0]
        [--fractions 0.7 0.15 0.15]

    <out>/weights.npy      N × P float32: one row per stored checkpoint (the catalog's order: model, epoch)
    <out>/layout.csv       varname, start_idx, end_idx, size, shape (data.importers.smallcnn_format): a SmallCNN
                           zoo in the published Keras names and kernel layouts; any other architecture under its
                           torch state-dict keys and shapes
    <out>/metrics.csv.gz   one row per weights row (and metrics.parquet, the same table typed):
                           row, model_id, modeldir (= model_id), seed, epoch, step (= epoch), config.<knob> for each
                           grid knob (lr as config.learning_rate, weight_decay as config.l2reg = weight_decay / 2,
                           as the Small CNN Zoo names them), train_loss, test_loss, train_accuracy, test_accuracy,
                           checkpoint, cell, split, phase, phase_epoch, then one column per scalar metric output
                           of that model at that epoch ("<metric>" or "<metric>:<split>"; a cell-scope value as
                           "cell:<metric>…"; pair metrics, curves and per-layer values are left out)
    <out>/splits.json      the split: seed, fractions, and the cells of train / val / test

Split by cell: the grid cells (one setting of the knobs, all its seeds and epochs) are shuffled with
numpy.random.default_rng(seed) and cut into train / val / test by `fractions` (rounded, at least one test and,
with three or more cells, one validation cell), so a model trained on the train split never sees any seed of a
test cell. The phase of a row is its cell's label (phases.parquet when the zoo has one; else computed with the
default thresholds of analysis.taxonomy.phases when the metrics allow; else null); phase_epoch says at which epoch.

Models of different widths (a width knob) are zero-padded to the widest: for a paddable architecture
(data.models.archs: a narrower model is a leading slice of a wider one) the padded network computes the same
function, and `config.width` keeps the true width. Other shape differences are refused. Everything is written
to a temporary directory and renamed: nothing partial appears; memory holds one checkpoint at a time.
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import torch

from data.cli import run_cli
from data.importers.smallcnn_format import LAYOUT, METRICS, WEIGHTS, flat_layout, flatten, layout_csv
from data.models.archs import arch_def, build_model
from data.tasks.builtin import TASKS
from data.zoo.store import Zoo, atomic_write, read_metrics

__all__ = ["ExportError", "ExportReport", "export_zoo", "split_cells", "main"]
SPLITS = "splits.json"
# our knob -> (Small CNN Zoo column, factor): the names a WSL loader of that zoo already reads
ZOO_NAMES = {"lr": ("config.learning_rate", 1.0), "weight_decay": ("config.l2reg", 0.5),
             "train_fraction": ("config.train_fraction", 1.0), "dropout": ("config.dropout", 1.0),
             "init_std": ("config.init_std", 1.0)}


class ExportError(ValueError):
    """A zoo that cannot be exported as asked (the message says why, on one line)."""


@dataclass(frozen=True)
class ExportReport:
    rows: int  # weights rows (checkpoints)
    width: int  # P
    cells: dict[str, int]  # split -> number of cells
    phase_source: str  # "phases.parquet", "computed (default thresholds)" or "none"


def split_cells(cells: Sequence[str], seed: int, fractions: tuple[float, float, float]) -> dict[str, list[str]]:
    """Whole cells to train / val / test: a seeded shuffle of the sorted cell ids, cut by `fractions`."""
    if len(fractions) != 3 or min(fractions) < 0 or abs(sum(fractions) - 1) > 1e-9:
        raise ExportError(f"split fractions {list(fractions)}: need three non-negative numbers summing to 1")
    order = sorted(cells)
    order = [order[i] for i in np.random.default_rng(seed).permutation(len(order))]
    n = len(order)
    n_test = max(1, round(fractions[2] * n)) if n >= 2 else 0
    n_val = max(1 if n >= 3 and fractions[1] > 0 else 0, round(fractions[1] * n))
    n_val = min(n_val, n - n_test - 1) if n - n_test >= 1 else 0
    n_train = n - n_test - n_val
    return {"train": order[:n_train], "val": order[n_train:n_train + n_val], "test": order[n_train + n_val:]}


def _cell_id(knobs: dict) -> str:
    return "-".join(f"{k}={v!r}" for k, v in knobs.items())


def _phases(zoo: Zoo) -> tuple[pl.DataFrame | None, str]:
    """The zoo's cell labels [knobs..., phase, phase_epoch] and where they come from."""
    axes = list(zoo.spec.grid)
    path = zoo.root / "phases.parquet"
    if path.exists():
        t = pl.read_parquet(path)
        if {"phase", *axes} <= set(t.columns):
            ep = t["epoch"] if "epoch" in t.columns else pl.Series([None] * t.height, dtype=pl.Int64)
            return t.select(*axes, "phase").with_columns(ep.alias("phase_epoch")), "phases.parquet"
    try:
        from analysis.taxonomy.phases import classify, default_thresholds, zoo_cells

        _, epoch, cells = zoo_cells(zoo.root)
        t = classify(cells, default_thresholds(cells))
        if t["phase"].null_count() == t.height or not set(axes) <= set(t.columns):
            return None, "none"
        return t.select(*axes, "phase").with_columns(pl.lit(epoch, pl.Int64).alias("phase_epoch")), \
            "computed (default thresholds)"
    except Exception:  # no metrics yet, or too few for the taxonomy: the export simply has no labels
        return None, "none"


def _wide_metrics(root: Path) -> pl.DataFrame | None:
    """One column per scalar output: per-model rows by (model_id, epoch); cell-scope rows as `cell:` columns."""
    m = read_metrics(root).filter(pl.col("value").is_not_null() & pl.col("layer").is_null() & pl.col("coord").is_null())
    name = pl.col("metric") + pl.when(pl.col("split").is_not_null()).then(":" + pl.col("split")).otherwise(pl.lit(""))
    m = m.filter(pl.col("other_id").is_null() | (pl.col("other_id") == "cell")).with_columns(
        pl.when(pl.col("other_id") == "cell").then("cell:" + name).otherwise(name).alias("_name"))
    if m.is_empty():
        return None
    return m.sort("params_hash").pivot(on="_name", index=["model_id", "epoch"], values="value",
                                       aggregate_function="first")


def _padded(state: dict[str, torch.Tensor], target: dict[str, tuple]) -> dict[str, torch.Tensor]:
    out = {}
    for k, shape in target.items():
        t = state[k]
        if tuple(t.shape) == shape:
            out[k] = t
            continue
        z = torch.zeros(shape, dtype=t.dtype)
        z[tuple(slice(0, d) for d in t.shape)] = t  # the narrower model is the leading slice (archs: paddable)
        out[k] = z
    return out


def export_zoo(root: str | Path, out: str | Path, *, epochs: Sequence[int] | None = None, seed: int = 0,
               fractions: tuple[float, float, float] = (0.7, 0.15, 0.15)) -> ExportReport:
    root, out = Path(root), Path(out)
    if os.path.lexists(out):
        raise ExportError(f"{out} exists; choose a new output directory (nothing was written)")
    zoo = Zoo.open(root)
    ck = zoo.checkpoints().sort("model_id", "epoch")
    if epochs:
        ck = ck.filter(pl.col("epoch").is_in(list(epochs)))
    if ck.is_empty():
        raise ExportError(f"{zoo.name}: no stored checkpoints" + (f" at epoch(s) {list(epochs)}" if epochs else ""))
    knobs = list(zoo.spec.grid)
    # shapes first (meta device: no memory), so a zoo of incompatible shapes is refused before a byte is written
    shapes = {mid: _meta_shapes(zoo, mid) for mid in ck["model_id"].unique(maintain_order=True)}
    target = {}
    for s in shapes.values():
        if s.keys() != next(iter(shapes.values())).keys():
            raise ExportError(f"{zoo.name}: its models have different parameter names; export one architecture at a time")
        for k, shape in s.items():
            target[k] = tuple(max(a, b) for a, b in zip(target.get(k, shape), shape))
            if len(shape) != len(target[k]):
                raise ExportError(f"{zoo.name}: {k} has different ranks across models")
    if any(s != target for s in shapes.values()) and not arch_def(zoo.spec.arch).paddable:
        raise ExportError(f"{zoo.name}: its models differ in shape and the {zoo.spec.arch} is not paddable; "
                          "export models of one shape (--epochs does not help: split the zoo by that knob)")
    meta_state = {k: torch.empty(s) for k, s in target.items()}
    vars_ = flat_layout(meta_state, keras=zoo.spec.arch == "smallcnn")
    width = vars_[-1].end

    table = ck.with_row_index("row").with_columns(
        pl.col("model_id").alias("modeldir"), pl.col("epoch").alias("step"),
        pl.col("train_acc").alias("train_accuracy"), pl.col("test_acc").alias("test_accuracy"))
    table = table.with_columns(pl.struct(knobs).map_elements(_cell_id, return_dtype=pl.String).alias("cell"))
    split = split_cells(table["cell"].unique().to_list(), seed, tuple(fractions))
    where = {c: s for s, cells in split.items() for c in cells}
    table = table.with_columns(pl.col("cell").replace_strict(where).alias("split"))
    labels, source = _phases(zoo)
    if labels is not None:
        table = table.join(labels, on=knobs, how="left")
    else:
        table = table.with_columns(pl.lit(None, pl.String).alias("phase"), pl.lit(None, pl.Int64).alias("phase_epoch"))
    renamed = {k: (ZOO_NAMES[k][0] if k in ZOO_NAMES else f"config.{k}") for k in knobs}
    table = table.with_columns(*[(pl.col(k) * ZOO_NAMES[k][1] if k in ZOO_NAMES else pl.col(k)).alias(renamed[k])
                                 for k in knobs])
    wide = _wide_metrics(zoo.root)
    if wide is not None:
        table = table.join(wide, on=["model_id", "epoch"], how="left")
    cell_cols = [c for c in table.columns if c.startswith("cell:")]
    if cell_cols:  # cell-scope values were stored on one model of the cell: spread them over the whole cell
        table = table.with_columns(*[pl.col(c).drop_nulls().first().over("cell", "epoch").alias(c) for c in cell_cols])
    front = ["row", "model_id", "modeldir", "seed", "epoch", "step", *renamed.values(), "train_loss", "test_loss",
             "train_accuracy", "test_accuracy", "checkpoint", "cell", "split", "phase", "phase_epoch"]
    table = table.select(*front, *[c for c in table.columns if c not in front and c not in knobs
                                   and c not in ("arch", "n_params", "train_acc", "test_acc")]).sort("row")

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        w = np.lib.format.open_memmap(tmp / WEIGHTS, mode="w+", dtype=np.float32, shape=(ck.height, width))
        for i, (mid, epoch) in enumerate(zip(ck["model_id"], ck["epoch"])):
            w[i] = flatten(_padded(zoo.load_state_dict(mid, epoch), target), vars_)  # one checkpoint at a time
        w.flush()
        del w
        atomic_write(tmp / LAYOUT, lambda p: p.write_text(layout_csv(vars_)))
        atomic_write(tmp / METRICS, lambda p: p.write_bytes(gzip.compress(table.write_csv().encode(), mtime=0)))
        atomic_write(tmp / "metrics.parquet", lambda p: table.write_parquet(p))
        meta = {"zoo": zoo.name, "seed": seed, "fractions": list(fractions), "phase_source": source,
                "padded_to": {k: list(s) for k, s in target.items()} if any(s != target for s in shapes.values()) else None,
                **split}
        atomic_write(tmp / SPLITS, lambda p: p.write_text(json.dumps(meta, indent=1) + "\n"))
        os.sync()
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return ExportReport(ck.height, width, {s: len(c) for s, c in split.items()}, source)


def _meta_shapes(zoo: Zoo, model_id: str) -> dict[str, tuple]:
    """The model's parameter shapes, built on the meta device (no memory, no initialisation)."""
    cfg = zoo.configs[model_id]
    input_shape, n_out = TASKS[zoo.spec.task].shapes(cfg.get("task_params"))
    with torch.device("meta"):
        model = build_model(zoo.spec.arch, input_shape, n_out, cfg.get("arch_params"))
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.export") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", help="zoo directory")
    ap.add_argument("--out", required=True, help="new export directory (must not exist)")
    ap.add_argument("--epochs", type=int, nargs="+", help="only these epochs' checkpoints (default: all stored)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the cell split (default 0)")
    ap.add_argument("--fractions", type=float, nargs=3, default=(0.7, 0.15, 0.15), metavar=("TRAIN", "VAL", "TEST"),
                    help="fractions of the cells in train / val / test (default 0.7 0.15 0.15)")
    args = ap.parse_args(argv)

    def body() -> int:
        rep = export_zoo(args.zoo, args.out, epochs=args.epochs, seed=args.seed, fractions=tuple(args.fractions))
        print(f"{args.out}: {rep.rows} checkpoints × {rep.width} weights; cells {rep.cells}; phases: {rep.phase_source}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
