"""Import the Small CNN Zoo (Unterthiner et al. 2020, "Predicting Neural Network Accuracy from Weights",
arXiv:2002.11448; used by NFN and ScaleGMN) as a zoo: every row of weights.npy unflattened into the zoo's CNN
(data.models.smallcnn), its hyperparameters as knobs.

    python -m data.importers.smallcnn <folder with weights.npy, layout.csv, metrics.csv.gz> --out data/zoos/cnnzoo-cifar10 \
        [--task cifar10] [--load config.train_fraction] [--temperature config.learning_rate] [--bins 4] \
        [--where config.activation=relu ...] [--max-per-cell 8]

The files are read by data.importers.smallcnn_format (bounded, checked: a layout.csv that does not add up to the
width of weights.npy, a header that declares more than the file holds, metrics that do not match the weights row
for row — each one line naming the file). A model is a `modeldir` of metrics.csv.gz (without that column: one
setting of all config.* columns); its rows are its checkpoints, `step` their epoch (0, 1, 2, 3, 20, 40, 60, 80, 86).

Knobs (docs/own-models.md). The grid is two hyperparameters: load (default config.train_fraction, the zoo's four
data fractions: more data per parameter = more load) and temperature (default config.learning_rate: hotter as it
rises). The zoo drew learning rate, L2 and init std log-uniformly — a value per model — so a knob with more than
`bins` values is cut into `bins` quantile bins, each named by its median (3 significant digits); a cell is then
every model in one bin pair and its models are the cell's "seeds" 0, 1, … (in modeldir order; the zoo itself
used seed 42 throughout). Each model's exact hyperparameters stay in `smallcnn_models.parquet` beside the catalog.
config.l2reg becomes weight_decay = 2 × l2reg (Keras' l2(λ) adds λ·Σw² to the loss). One zoo has one activation:
a folder with several is imported one activation at a time (`--where config.activation=relu`), as ScaleGMN does.
Checkpoints with NaN/Inf weights (diverged runs) keep their catalog row without a stored checkpoint.
"""
from __future__ import annotations

import argparse
import gzip
import io
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data.cli import run_cli
from data.importers.manifest import fit_state
from data.importers.ptmz_layout import ImportError_, printable
from data.importers.smallcnn_format import LAYOUT, METRICS, WEIGHTS, open_weights, read_layout, unflatten
from data.importers.zoo_writer import check_new_output, model_of, write_zoo
from data.params import SpecError
from data.tasks.builtin import TASKS
from data.training.train import OPTIMIZERS
from data.zoo.paths import MAX_TABLE_BYTES
from data.zoo.spec import MAX_MODELS, Axis, ZooSpec
from data.zoo.spec_builder import SpecDraft
from data.zoo.store import write_checkpoint

__all__ = ["ImportError_", "SmallCNNReport", "import_smallcnn", "main"]
MODELS_FILE = "smallcnn_models.parquet"
# metrics.csv.gz column -> (knob, factor to our parameter, does the quantity rise with the knob?)
KNOBS = {
    "config.train_fraction": ("train_fraction", 1.0, True),  # more data per parameter: more load
    "config.learning_rate": ("lr", 1.0, True),  # hotter
    "config.l2reg": ("weight_decay", 2.0, True),  # Keras l2(λ): loss + λ·Σw², i.e. SGD weight decay 2λ
    "config.dropout": ("dropout", 1.0, True),
    "config.init_std": ("init_std", 1.0, True),
}
PERF = {"train_loss": "train_loss", "test_loss": "test_loss", "train_acc": "train_accuracy", "test_acc": "test_accuracy"}
TASK_OF_DATASET = {"cifar10": "cifar10", "svhn_cropped": "svhn", "mnist": "mnist", "fashion_mnist": "fashion_mnist"}
BATCH_SIZE, EPOCHS = 512, 86  # train_network.py --batchsize 512; the released zoo trained 86 epochs


@dataclass(frozen=True)
class SmallCNNReport:
    models: int  # models in the zoo
    rows: int  # checkpoints (weights.npy rows) in its catalog
    stored: int  # checkpoints written (rows with finite weights)
    problems: tuple[str, ...]  # one line each: what was left out and why


def read_metrics_csv(path: Path, n_rows: int) -> pl.DataFrame:
    """metrics.csv.gz, decompressed to at most MAX_TABLE_BYTES (a gzip bomb stops there), one row per weights row."""
    try:
        with gzip.open(path, "rb") as f:
            data = f.read(MAX_TABLE_BYTES + 1)
    except FileNotFoundError:
        raise ImportError_(f"{path}: missing (a Small CNN Zoo folder holds {WEIGHTS}, {LAYOUT}, {METRICS})") from None
    except (OSError, EOFError) as e:
        raise ImportError_(f"{path.name}: not a readable gzip file ({printable(e, 100)})") from None
    if len(data) > MAX_TABLE_BYTES:
        raise ImportError_(f"{path.name}: more than {MAX_TABLE_BYTES} bytes once decompressed")
    try:
        df = pl.read_csv(io.BytesIO(data), infer_schema_length=None)
    except pl.exceptions.PolarsError as e:
        raise ImportError_(f"{path.name}: not a readable CSV table ({type(e).__name__})") from None
    if df.height != n_rows:
        raise ImportError_(f"{path.name}: {df.height} rows, but {WEIGHTS} has {n_rows} (one metrics row per weights row)")
    return df


def _bin(values: np.ndarray, bins: int, knob: str) -> np.ndarray:
    """Each value's knob value: itself when there are at most `bins` distinct values, else the median of its
    quantile bin (rank-based, so log-uniform draws fill the bins evenly), rounded to 3 significant digits."""
    distinct = np.unique(values)
    if len(distinct) <= bins:
        return values.copy()
    edges = np.quantile(values, np.linspace(0, 1, bins + 1)[1:-1])
    which = np.searchsorted(edges, values, side="right")
    out = np.empty_like(values)
    for b in np.unique(which):
        med = float(np.median(values[which == b]))
        out[which == b] = float(f"{med:.3g}")
    return out


def import_smallcnn(src: str | Path, out: str | Path, *, task: str | None = None,
                    load: str = "config.train_fraction", temperature: str = "config.learning_rate", bins: int = 4,
                    where: Sequence[str] = (), max_per_cell: int | None = None, name: str | None = None) -> SmallCNNReport:
    src, out = Path(src), Path(out)
    check_new_output(out)
    for col in (load, temperature):
        if col not in KNOBS:
            raise ImportError_(f"knob column {col!r}: not one the importer maps; choose from {sorted(KNOBS)}")
    if load == temperature:
        raise ImportError_(f"load and temperature are the same column {load!r}")
    if bins < 1 or (max_per_cell is not None and max_per_cell < 1):
        raise ImportError_("--bins and --max-per-cell must be at least 1")
    weights = open_weights(src / WEIGHTS)
    n, p = weights.shape
    layout = read_layout(src / LAYOUT, p)
    df = read_metrics_csv(src / METRICS, n).with_row_index("_row")
    need = ["step", load, temperature, *PERF.values()]
    if missing := [c for c in need if c not in df.columns]:
        raise ImportError_(f"{METRICS}: missing column(s) {missing} (found {[printable(c, 40) for c in df.columns[:10]]})")
    for cond in where:
        col, sep, value = cond.partition("=")
        if not sep or col not in df.columns:
            raise ImportError_(f"--where {printable(cond, 60)}: expected COLUMN=VALUE with a column of {METRICS}")
        df = df.filter(pl.col(col).cast(pl.String) == value)
    if df.is_empty():
        raise ImportError_(f"{METRICS}: no rows left after --where {list(where)}")
    problems: list[str] = []
    acts = df["config.activation"].unique().sort().to_list() if "config.activation" in df.columns else ["relu"]
    if len(acts) != 1:
        raise ImportError_(f"{METRICS}: the models use several activations {acts}; import one at a time with "
                           f"--where config.activation={acts[0]}")
    if task is None:
        ds = df["config.dataset"].unique().to_list() if "config.dataset" in df.columns else []
        task = TASK_OF_DATASET.get(ds[0], ds[0]) if len(ds) == 1 else None
        if task is None:
            raise ImportError_(f"{METRICS}: no single config.dataset ({ds[:4]}); name the task with --task")
    if task not in TASKS:
        raise ImportError_(f"task {task!r} is not registered here; available: {sorted(TASKS)} (name one with --task)")
    for col in (*need,):
        if not df[col].dtype.is_numeric():
            raise ImportError_(f"{METRICS}: column {col!r} holds {df[col].dtype}, expected numbers")
    key = ["modeldir"] if "modeldir" in df.columns else sorted(c for c in df.columns if c.startswith("config."))
    if not key:
        raise ImportError_(f"{METRICS}: neither modeldir nor config.* columns: cannot tell models apart")
    models = df.group_by(key, maintain_order=True).agg(pl.col(load).first(), pl.col(temperature).first(),
                                                       pl.col("_row").first().alias("_first")).sort(key)
    (lk, lf, linc), (tk, tf, tinc) = KNOBS[load], KNOBS[temperature]
    models = models.with_columns(
        pl.Series("_load", _bin(models[load].cast(pl.Float64).to_numpy() * lf, bins, lk)),
        pl.Series("_temp", _bin(models[temperature].cast(pl.Float64).to_numpy() * tf, bins, tk)))
    models = models.with_columns(pl.int_range(pl.len()).over("_load", "_temp").alias("_seed"))
    if max_per_cell is not None and (models["_seed"] >= max_per_cell).any():
        dropped = int((models["_seed"] >= max_per_cell).sum())
        problems.append(f"{dropped} model(s) beyond --max-per-cell {max_per_cell} left out")
        models = models.filter(pl.col("_seed") < max_per_cell)
    n_cells = models.select("_load", "_temp").n_unique()
    n_seeds = int(models["_seed"].max()) + 1
    if n_cells * n_seeds > MAX_MODELS:
        raise ImportError_(f"{len(models)} models in {n_cells} cells need {n_seeds} seeds a cell: more than the "
                           f"{MAX_MODELS} models a zoo may have; import a part (--where config.optimizer=…, "
                           f"--max-per-cell {max(1, MAX_MODELS // n_cells)})")
    rows = df.join(models.select(*key, "_load", "_temp", "_seed"), on=key, how="inner").sort("_row")
    if (dup := rows.select(*key, "step").is_duplicated()).any():
        r = rows.filter(dup)["_row"][0]
        raise ImportError_(f"{METRICS} row {r + 1}: a second checkpoint of one model at step {rows['step'][int(dup.arg_max())]}")
    first = unflatten(weights[int(rows["_row"][0])], layout)
    depth = sum(1 for k in first if k.startswith("convs.") and k.endswith(".weight"))
    if "head.weight" not in first or not depth:
        raise ImportError_(f"{LAYOUT}: not the Small CNN's variables (conv2d kernels and biases, then one dense layer)")
    width, in_ch = first["convs.0.weight"].shape[:2]
    steps = sorted({int(s) for s in rows["step"]})
    text = _spec_text(name or src.name, task, df, acts[0], (lk, linc), (tk, tinc), models, n_seeds, steps,
                      {"width": int(width), "depth": depth, "in_channels": int(in_ch)}, load, temperature, problems)
    stored = {"n": 0, "bad": 0}

    def fill(root: Path, spec: ZooSpec) -> list[dict]:
        ids = {(dict(c.knobs)[lk], dict(c.knobs)[tk], c.seed): c for c in spec.models()}
        built: dict[str, object] = {}
        out_rows = []
        for r in rows.iter_rows(named=True):
            cfg = ids[r["_load"], r["_temp"], r["_seed"]]
            model, epoch = model_of(spec, cfg, built, f"{METRICS} row {r['_row'] + 1}"), int(r["step"])
            row = weights[r["_row"]]  # one row of the memory map: bounded memory whatever N is
            ckpt = None
            if np.isfinite(row).all():
                state = fit_state(model, unflatten(row, layout), f"{WEIGHTS} row {r['_row'] + 1}", spec.arch)
                ckpt = write_checkpoint(root, cfg.model_id, epoch, state)
                stored["n"] += 1
            else:
                stored["bad"] += 1
            perf = {c: (None if r[src_col] is None else float(r[src_col])) for c, src_col in PERF.items()}
            for c in ("train_loss", "test_loss"):
                perf[c] = math.nan if perf[c] is None else perf[c]
            for c in ("train_acc", "test_acc"):  # accuracies: fractions or null
                perf[c] = perf[c] if perf[c] is not None and math.isfinite(perf[c]) else None
            out_rows.append({"model_id": cfg.model_id, "arch": spec.arch, "seed": cfg.seed, "epoch": epoch,
                             "n_params": p, **perf, "checkpoint": ckpt, lk: r["_load"], tk: r["_temp"]})
        if stored["bad"]:
            problems.append(f"{stored['bad']} checkpoint(s) with NaN/Inf weights (diverged runs): catalog rows kept, "
                            "weights not stored")
        ids_of = {(r["_load"], r["_temp"], r["_seed"]): ids[r["_load"], r["_temp"], r["_seed"]].model_id
                  for r in models.iter_rows(named=True)}
        hp.append(models.with_columns(pl.Series("model_id", [ids_of[k] for k in
                                                             zip(models["_load"], models["_temp"], models["_seed"])]))
                  .join(df.drop("_row").unique(key, keep="first", maintain_order=True), on=key, how="left")
                  .select("model_id", *key, *[c for c in df.columns if c.startswith("config.") and c not in key]))
        return out_rows

    hp: list[pl.DataFrame] = []
    try:
        write_zoo(out, text, fill, tables={MODELS_FILE: lambda: hp[0]}, source="generated spec")
    except SpecError as e:
        raise ImportError_(f"{src.name}: the models do not make a zoo spec: {e}") from None
    return SmallCNNReport(len(models), rows.height, stored["n"], tuple(problems))


def _spec_text(name, task, df, activation, load, temp, models, n_seeds, steps, arch, load_col, temp_col,
               problems) -> str:
    (lk, linc), (tk, tinc) = load, temp
    training: dict = {"epochs": max(max(steps), 1), "batch_size": BATCH_SIZE, "checkpoint_epochs": steps,
                      "analysis_epochs": [max(steps)]}
    notes = []
    for col, (knob, factor, _) in KNOBS.items():
        if col not in df.columns or knob not in ("lr", "weight_decay"):
            continue
        vals = (df[col].cast(pl.Float64) * factor).unique().to_list()
        # a base value even for a knob: the spec checks each knob's values with the others' base values
        training[knob] = float(vals[0]) if len(vals) == 1 else float(f"{np.median(df[col].to_numpy()) * factor:.3g}")
        if len(vals) > 1 and knob not in (lk, tk):
            notes.append(f"{knob} varies per model (median {training[knob]:.3g} here)")
    opts = df["config.optimizer"].unique().to_list() if "config.optimizer" in df.columns else ["sgd"]
    if len(opts) == 1 and opts[0] in OPTIMIZERS:
        training["optimizer"] = opts[0]
    else:
        notes.append(f"optimizer(s) {sorted(map(str, opts))[:4]} (the spec says sgd)")
    arch_params = {**arch, "activation": activation}
    grid = {lk: tuple(sorted(set(models["_load"].to_list()))), tk: tuple(sorted(set(models["_temp"].to_list())))}
    grid = {k: tuple(float(v) for v in vals) for k, vals in grid.items()}
    about = (f"imported from the Small CNN Zoo layout ({len(models)} models; load {load_col}, temperature {temp_col}"
             + (f"; {'; '.join(notes)}" if notes else "") + f"; exact hyperparameters in {MODELS_FILE})")
    problems += [f"note: {n}" for n in notes]
    return SpecDraft(name, task, "smallcnn", tuple(range(n_seeds)), training, grid, Axis(lk, linc), Axis(tk, tinc),
                     about, {}, arch_params).toml()


def main(argv: Sequence[str] | None = None, prog: str = "python -m data.importers.smallcnn") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help=f"folder holding {WEIGHTS}, {LAYOUT} and {METRICS}")
    ap.add_argument("--out", required=True, help="new zoo directory (must not exist)")
    ap.add_argument("--task", help="the zoo's task (default: from config.dataset)")
    ap.add_argument("--load", default="config.train_fraction", help=f"load knob column (one of {sorted(KNOBS)})")
    ap.add_argument("--temperature", default="config.learning_rate", help="temperature knob column")
    ap.add_argument("--bins", type=int, default=4, help="quantile bins for a knob with more values (default 4)")
    ap.add_argument("--where", action="append", default=[], help="keep rows with COLUMN=VALUE (repeatable)")
    ap.add_argument("--max-per-cell", type=int, help="keep at most this many models a cell (in modeldir order)")
    ap.add_argument("--name", help="zoo name (default: the folder's name)")
    args = ap.parse_args(argv)

    def body() -> int:
        rep = import_smallcnn(args.src, args.out, task=args.task, load=args.load, temperature=args.temperature,
                              bins=args.bins, where=args.where, max_per_cell=args.max_per_cell, name=args.name)
        for p in rep.problems:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{args.out}: imported {rep.models} models, {rep.rows} checkpoints ({rep.stored} stored)")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
