"""A weight-space learning benchmark on the zoos: each model's test accuracy and phase from its weights alone.

    phasezoo benchmark data/zoos/*                 # per zoo and leave-one-zoo-out, both baselines
    phasezoo benchmark data/zoos/* --out bench.csv  # the tidy table (.csv or .parquet)

Examples: every model with a checkpoint at the zoo's last analysis epoch (one epoch: a model's later
checkpoints would be near-copies of it on both sides of no split, but they would weigh the seeds of long-trained
cells more). Targets: the catalog's test accuracy at that epoch; for a regression zoo (convection-pinn: no
accuracy) −rel_l2_error, the negated relative L2 error on the test grid (so that higher is better, as for an
accuracy; Kendall τ is rank-based, so τ is that of the error with its sign flipped); and the cell's phase in
phases.parquet at that epoch ("unclassified" cells left out of the phase target).

Features (analysis.studies.weightspace_features): StatNN (Unterthiner et al. 2020) and the stored data-free
metrics; per-layer columns within a zoo, architecture-agnostic ones across zoos.

Splits, so that no seed of a held-out configuration is ever trained on:
- per zoo: 5-fold cross-validation over grid cells (a cell: one setting of the grid knobs, all its seeds). The
  cells are ordered as analysis.studies.export.split_cells orders them (sorted ids, shuffled by
  numpy.random.default_rng(0)) and cut into 5 contiguous folds (numpy.array_split); each fold's cells are
  predicted by a model fitted on the other four folds' cells.
- across zoos: leave-one-zoo-out (train on three zoos, test on the fourth). The accuracy target is then each
  zoo's percentile rank of its own target (0 … 1), because accuracies and −rel_l2 are not one scale; τ on the
  held-out zoo is unaffected (it is rank-based); R² there is of that rank.

Models: scikit-learn GradientBoostingRegressor / GradientBoostingClassifier (its defaults, 100 trees of depth 3
at learning rate 0.1, with subsample 0.8 and random_state 0; median imputation; balanced sample weights for the
phase; nothing tuned on these zoos), gradient-boosted trees as Unterthiner et al. used. Metrics on the pooled held-out predictions (every model predicted by a
model that never saw its cell or its zoo): Kendall τ-b (scipy.stats.kendalltau) and R² for the accuracy,
balanced accuracy (sklearn.metrics.balanced_accuracy_score) for the phase; uncertainty: a 95 % bootstrap
interval resampling cells (1000 resamples, seed 0) and, per zoo, the standard deviation of the 5 folds' values.

Published anchors, for context (other zoos, larger and of one architecture): Kendall τ 0.934 on the Small CNN
Zoo's CIFAR-10-GS (NFN, Zhou et al. 2023, *Permutation Equivariant Neural Functionals*), R² > 0.98 from weight
statistics with GBMs (StatNN, Unterthiner et al. 2020).
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from analysis.studies.export import split_cells
from analysis.studies.weightspace_features import datafree_table, statnn_table
from data.cli import run_cli
from data.zoo.store import Zoo, read_metrics

__all__ = ["ANCHORS", "BASELINES", "SCHEMA", "Anchor", "Score", "examples", "cell_folds", "leave_one_zoo_out",
           "kendall_tau", "balanced_accuracy", "design", "benchmark_zoo", "benchmark_across", "benchmark", "main"]

K_FOLDS, SEED, N_BOOT = 5, 0, 1000
UNCLASSIFIED = "unclassified"
BASELINES = ("StatNN", "data-free")


@dataclass(frozen=True)
class Anchor:
    metric: str
    value: float
    source: str


ANCHORS = (Anchor("kendall_tau", 0.934, "NFN on the Small CNN Zoo CIFAR-10-GS (Zhou et al. 2023)"),
           Anchor("r2", 0.98, "StatNN GBM on weight statistics, > 0.98 (Unterthiner et al. 2020)"))


@dataclass(frozen=True)
class Score:
    """One benchmark figure: a baseline's held-out score on one target of one zoo."""

    scope: str  # "zoo" (k-fold over its cells) or "leave-one-zoo-out" (trained on the other zoos)
    zoo: str  # the zoo scored (across zoos: the held-out one)
    baseline: str  # "StatNN" or "data-free"
    target: str  # "accuracy" (test_acc, or −rel_l2_error for a regression zoo) or "phase"
    metric: str  # "kendall_tau", "r2" or "balanced_accuracy"
    value: float  # on the pooled held-out predictions
    ci_low: float  # 95 % bootstrap interval over cells
    ci_high: float
    fold_std: float | None  # std (ddof 1) of the per-fold values; None across zoos (one test set)
    n_models: int
    n_cells: int
    n_features: int
    chance: float | None  # balanced accuracy of a constant guess (1 / classes); None for τ and R²


SCHEMA = {"scope": pl.String, "zoo": pl.String, "baseline": pl.String, "target": pl.String, "metric": pl.String,
          "value": pl.Float64, "ci_low": pl.Float64, "ci_high": pl.Float64, "fold_std": pl.Float64,
          "n_models": pl.Int64, "n_cells": pl.Int64, "n_features": pl.Int64, "chance": pl.Float64}


def table(scores: Sequence[Score]) -> pl.DataFrame:
    """The tidy table, one row per Score, with the declared SCHEMA."""
    return pl.DataFrame([asdict(s) for s in scores], schema=SCHEMA)


# ----------------------------------------------------------------------------- data
def examples(root: str | Path, epoch: int | None = None, labelled_only: bool = False) -> tuple[pl.DataFrame, int]:
    """One zoo's examples at `epoch` (default: its last analysis epoch) and that epoch: zoo, model_id, seed,
    cell, accuracy (test_acc, or −rel_l2_error), phase (null: unclassified or no label), then the feature
    columns (`statnn:`, `pooled:`, `datafree:`, log10_n_params). `labelled_only`: only the models with a phase
    (their checkpoints alone are read; ValueError when there is none)."""
    zoo = Zoo.open(root)
    epoch = max(zoo.spec.analysis_epochs) if epoch is None else epoch
    knobs = list(zoo.spec.grid)
    at = zoo.checkpoints().filter(pl.col("epoch") == epoch)
    if at.is_empty():
        raise ValueError(f"{zoo.name}: no checkpoint at epoch {epoch}")
    metrics = read_metrics(zoo.root)
    acc = at.select("model_id", pl.col("test_acc").cast(pl.Float64).alias("accuracy"))
    if acc["accuracy"].is_null().all():  # a regression zoo: the negated relative L2 error
        err = metrics.filter((pl.col("metric") == "rel_l2_error") & (pl.col("epoch") == epoch)
                             & pl.col("layer").is_null() & pl.col("other_id").is_null() & pl.col("value").is_not_null())
        acc = at.select("model_id").join(err.group_by("model_id").agg((-pl.col("value").first()).alias("accuracy")),
                                         on="model_id", how="left")
    cell = pl.concat_str([pl.format("{}={}", pl.lit(k), pl.col(k).cast(pl.String)) for k in knobs], separator="-")
    frame = at.select("model_id", "seed", *knobs).with_columns(cell.alias("cell"), pl.lit(zoo.name).alias("zoo"))
    phases = _phases(zoo, epoch)
    frame = frame.join(phases, on=knobs, how="left") if phases is not None else frame.with_columns(
        pl.lit(None, pl.String).alias("phase"))
    frame = frame.with_columns(pl.when(pl.col("phase") == UNCLASSIFIED).then(None).otherwise(pl.col("phase"))
                               .alias("phase"))
    if labelled_only:
        frame = frame.filter(pl.col("phase").is_not_null())
        if frame.is_empty():
            raise ValueError(f"{zoo.name}: no labelled cell at epoch {epoch} (run `phasezoo phases`)")
    feats = statnn_table(zoo, epoch, frame["model_id"].to_list())
    try:
        df = datafree_table(metrics, zoo.catalog, epoch).drop("log10_n_params")
        feats = feats.join(df, on="model_id", how="left")
    except ValueError:  # no stored data-free metrics: that baseline has no columns for this zoo
        pass
    out = frame.join(acc, on="model_id", how="left").join(feats, on="model_id", how="inner")
    return out.select("zoo", "model_id", "seed", "cell", "accuracy", "phase",
                      *[c for c in feats.columns if c != "model_id"]).sort("model_id"), epoch


def _phases(zoo: Zoo, epoch: int) -> pl.DataFrame | None:
    path = zoo.root / "phases.parquet"
    if not path.exists():
        return None
    t = pl.read_parquet(path)
    t = t.filter(pl.col("epoch") == epoch) if "epoch" in t.columns else t
    return t.select(*zoo.spec.grid, "phase").unique(subset=list(zoo.spec.grid), keep="first")


def feature_columns(frame: pl.DataFrame, baseline: str, across: bool) -> list[str]:
    """The baseline's columns: StatNN per layer (`statnn:`) within a zoo, architecture-agnostic (`pooled:`)
    across zoos; the data-free metrics per model and per layer within a zoo, per model only across; each with
    log10_n_params."""
    if baseline not in BASELINES:
        raise ValueError(f"unknown baseline {baseline!r}; baselines: {', '.join(BASELINES)}")
    prefix = ("pooled:" if across else "statnn:") if baseline == "StatNN" else "datafree:"
    cols = [c for c in frame.columns if c.startswith(prefix) and not (across and "@" in c)]  # @: a per-layer row
    return [*cols, "log10_n_params"] if cols else []


# ----------------------------------------------------------------------------- splits
def cell_folds(cells: Sequence[str], k: int = K_FOLDS, seed: int = SEED) -> list[tuple[list[str], list[str]]]:
    """k (train cells, test cells) folds: the cells in split_cells' seeded order (its train, val and test
    parts concatenated: the sorted ids permuted by numpy.random.default_rng(seed)), cut into k contiguous parts;
    every cell is tested exactly once, and never trained on in its own fold."""
    unique = sorted(set(cells))
    if not 2 <= k <= len(unique):
        raise ValueError(f"{k} folds over {len(unique)} cells: need 2 ≤ folds ≤ cells")
    parts = split_cells(unique, seed, (0.5, 0.25, 0.25))
    order = [*parts["train"], *parts["val"], *parts["test"]]
    folds = [list(f) for f in np.array_split(np.array(order, dtype=object), k)]
    return [([c for c in order if c not in set(test)], test) for test in folds]


def leave_one_zoo_out(zoos: Sequence[str]) -> list[tuple[list[str], str]]:
    """(training zoos, held-out zoo) for every zoo: the held-out zoo is never among its training zoos."""
    names = list(dict.fromkeys(zoos))
    if len(names) < 2:
        raise ValueError(f"leave-one-zoo-out needs at least two zoos, got {len(names)}")
    return [([z for z in names if z != held], held) for held in names]


# ----------------------------------------------------------------------------- metrics
def kendall_tau(x, y) -> float:
    """Kendall's τ-b (ties corrected) of two equal-length sequences (scipy.stats.kendalltau, O(n log n));
    NaN when either is constant or shorter than 2."""
    from scipy.stats import kendalltau

    x, y = np.asarray(x, float), np.asarray(y, float)
    if len(x) != len(y):
        raise ValueError(f"kendall_tau: lengths differ ({len(x)} and {len(y)})")
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(kendalltau(x, y).statistic)


def balanced_accuracy(y_true, y_pred) -> float:
    """Mean over the classes present in y_true of their recall (sklearn.metrics.balanced_accuracy_score's
    definition, vectorised for the bootstrap)."""
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    classes = np.unique(y_true)
    return float(np.mean([(y_pred[y_true == c] == c).mean() for c in classes])) if len(classes) else float("nan")


def _r2(y, p) -> float:
    y, p = np.asarray(y, float), np.asarray(p, float)
    ss = ((y - y.mean()) ** 2).sum()  # sklearn.metrics.r2_score's definition; NaN (not 1 or 0) for a constant y
    return float(1 - ((y - p) ** 2).sum() / ss) if ss > 0 else float("nan")


METRICS: dict[str, Callable] = {"kendall_tau": kendall_tau, "r2": _r2, "balanced_accuracy": balanced_accuracy}


def bootstrap_ci(cells: np.ndarray, y: np.ndarray, p: np.ndarray, metric: Callable, n: int | None = None,
                 seed: int = SEED) -> tuple[float, float]:
    """95 % percentile interval of `metric` over `n` (default N_BOOT) resamples of whole cells (with
    replacement): the models of a cell are not independent, their cell is the unit of sampling."""
    n = N_BOOT if n is None else n
    rng = np.random.default_rng(seed)
    ids, inv = np.unique(cells, return_inverse=True)
    members = [np.flatnonzero(inv == i) for i in range(len(ids))]
    vals = []
    for _ in range(n):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        v = metric(y[rows], p[rows])
        if not math.isnan(v):
            vals.append(v)
    return (float(np.percentile(vals, 2.5)), float(np.percentile(vals, 97.5))) if vals else (math.nan, math.nan)


# ----------------------------------------------------------------------------- models
def make_model(kind: str):
    """The gradient-boosted trees (scikit-learn), median-imputed: "regressor" or "classifier"."""
    from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import make_pipeline

    gbm = GradientBoostingRegressor if kind == "regressor" else GradientBoostingClassifier
    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True),
                         gbm(n_estimators=100, max_depth=3, learning_rate=0.1, subsample=0.8, random_state=0))


def fit_predict(kind: str, X: np.ndarray, y: np.ndarray, X_test: np.ndarray):
    """A fresh model fitted on (X, y), its predictions for X_test (and the fitted model)."""
    if kind == "classifier" and len(set(y)) == 1:  # one phase in training: that phase, whatever the weights
        return np.full(len(X_test), y[0], dtype=object), None
    model = make_model(kind)
    if kind == "classifier":
        from sklearn.utils.class_weight import compute_sample_weight

        model.fit(X, y, gradientboostingclassifier__sample_weight=compute_sample_weight("balanced", y))
    else:
        model.fit(X, y)
    return model.predict(X_test), model


def design(frame: pl.DataFrame, cols: Sequence[str]) -> np.ndarray:
    return frame.select([pl.col(c).cast(pl.Float64).fill_nan(None) for c in cols]).to_numpy().astype(float)


def _targets(frame: pl.DataFrame, target: str) -> pl.DataFrame:
    col = "accuracy" if target == "accuracy" else "phase"
    return frame.filter(pl.col(col).is_not_null() & (pl.col(col).is_not_nan() if col == "accuracy" else True))


def _scores(scope: str, zoo: str, baseline: str, target: str, cells: np.ndarray, y: np.ndarray, p: np.ndarray,
            folds: list[np.ndarray] | None, n_features: int) -> list[Score]:
    names = ("kendall_tau", "r2") if target == "accuracy" else ("balanced_accuracy",)
    out = []
    for name in names:
        f = METRICS[name]
        per_fold = [v for v in ([f(y[i], p[i]) for i in folds] if folds else []) if not math.isnan(v)]
        lo, hi = bootstrap_ci(cells, y, p, f)
        out.append(Score(scope, zoo, baseline, target, name, f(y, p), lo, hi,
                         float(np.std(per_fold, ddof=1)) if len(per_fold) > 1 else None, len(y),
                         len(set(cells)), n_features, 1 / len(set(y)) if target == "phase" else None))
    return out


def benchmark_zoo(frame: pl.DataFrame, baseline: str, target: str, k: int = K_FOLDS) -> list[Score]:
    """k-fold over cells within one zoo's examples (`examples`' frame)."""
    cols = feature_columns(frame, baseline, across=False)
    data = _targets(frame, target)
    if not cols or data.height < 4:
        return []
    cells = data["cell"].to_numpy()
    X, y = design(data, cols), data["accuracy" if target == "accuracy" else "phase"].to_numpy()
    pred = np.empty(len(y), dtype=object if target == "phase" else float)
    folds = []
    for train, test in cell_folds(cells.tolist(), min(k, len(set(cells)))):
        tr, te = np.isin(cells, train), np.isin(cells, test)
        pred[te] = fit_predict("classifier" if target == "phase" else "regressor", X[tr], y[tr], X[te])[0]
        folds.append(np.flatnonzero(te))
    return _scores("zoo", data["zoo"][0], baseline, target, cells, y, pred, folds, len(cols))


def benchmark_across(frames: Sequence[pl.DataFrame], baseline: str, target: str) -> list[Score]:
    """Leave-one-zoo-out over the zoos' examples, on the architecture-agnostic columns shared by every zoo."""
    data = [_targets(f, target) for f in frames if f.height]
    data = [d.with_columns(pl.col("accuracy").rank("average").truediv(d.height).alias("accuracy"))
            if target == "accuracy" else d for d in data]  # each zoo's own percentile rank: one scale
    shared = set.intersection(*(set(feature_columns(d, baseline, across=True)) for d in data)) if data else set()
    cols = [c for c in feature_columns(data[0], baseline, across=True) if c in shared] if data else []
    if len(data) < 2 or not cols:
        return []
    by_zoo = {d["zoo"][0]: d for d in data}
    out = []
    for train_zoos, held in leave_one_zoo_out(list(by_zoo)):
        train = pl.concat([by_zoo[z].select("zoo", "cell", "accuracy", "phase", *cols) for z in train_zoos])
        test = by_zoo[held]
        col = "accuracy" if target == "accuracy" else "phase"
        pred = fit_predict("classifier" if target == "phase" else "regressor", design(train, cols),
                           train[col].to_numpy(), design(test, cols))[0]
        out += _scores("leave-one-zoo-out", held, baseline, target, test["cell"].to_numpy(), test[col].to_numpy(),
                       np.asarray(pred), None, len(cols))
    return out


def benchmark(roots: Sequence[str | Path], progress: Callable[[str], None] = lambda what: None
              ) -> tuple[pl.DataFrame, dict[str, float]]:
    """The whole benchmark over the zoos at `roots`: the tidy table (per zoo, then leave-one-zoo-out) and the
    seconds each stage took ("features", "per zoo", "across zoos")."""
    t0 = time.perf_counter()
    frames = []
    for r in roots:
        progress(f"features of {Path(r).name}")
        frames.append(examples(r)[0])
    t1 = time.perf_counter()
    scores, targets = [], ("accuracy", "phase")
    for f, b, target in ((f, b, t) for f in frames for b in BASELINES for t in targets):
        progress(f"{f['zoo'][0]}: {b}, {target}")
        scores += benchmark_zoo(f, b, target)
    t2 = time.perf_counter()
    for b, target in ((b, t) for b in BASELINES for t in targets if len(frames) >= 2):
        progress(f"leave-one-zoo-out: {b}, {target}")
        scores += benchmark_across(frames, b, target)
    t3 = time.perf_counter()
    return table(scores), {"features": t1 - t0, "per zoo": t2 - t1, "across zoos": t3 - t2}


# ----------------------------------------------------------------------------- CLI
def render(t: pl.DataFrame) -> str:
    """The table as text: one line per (scope, zoo, baseline), τ, R² and balanced accuracy with their intervals."""
    def cell(rows: pl.DataFrame, metric: str) -> str:
        r = rows.filter(pl.col("metric") == metric)
        if r.is_empty():
            return f"{'n/a':>22s}"
        v, lo, hi = r["value"][0], r["ci_low"][0], r["ci_high"][0]
        return f"{v:6.3f} [{lo:6.3f}, {hi:6.3f}]" if not math.isnan(v) else f"{'nan':>22s}"

    lines = [f"{'scope':18s} {'zoo':20s} {'baseline':10s} {'Kendall τ (acc.)':>22s} {'R² (acc.)':>22s} "
             f"{'balanced acc. (phase)':>22s} chance"]
    for (scope, zoo, base), rows in t.group_by("scope", "zoo", "baseline", maintain_order=True):
        chance = rows.filter(pl.col("metric") == "balanced_accuracy")["chance"]
        lines.append(f"{scope:18s} {zoo:20s} {base:10s} {cell(rows, 'kendall_tau')} {cell(rows, 'r2')} "
                     f"{cell(rows, 'balanced_accuracy')} " + (f"{chance[0]:.2f}" if len(chance) else "—"))
    lines.append("[95 % bootstrap interval over cells]. Published anchors (other zoos): "
                 + "; ".join(f"{a.metric} {a.value} — {a.source}" for a in ANCHORS))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.weightspace") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoos", nargs="+", type=Path, help="zoo directories (two or more for leave-one-zoo-out)")
    ap.add_argument("--out", type=Path, help="write the tidy table here (.parquet or .csv)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)

    def body() -> int:
        from tqdm import tqdm

        if args.out is not None and args.out.suffix not in (".parquet", ".csv"):
            raise ValueError(f"--out {args.out}: name a .parquet or .csv file")
        for z in args.zoos:  # a bad zoo is one error line before any work (and before the progress bar)
            Zoo.open(z)
        total = len(args.zoos) * (1 + 2 * len(BASELINES)) + (2 * len(BASELINES) if len(args.zoos) > 1 else 0)
        with tqdm(total=total, disable=args.quiet, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}") as bar:
            def progress(what: str) -> None:
                bar.set_description_str(what[:50])
                bar.update(1)

            t, secs = benchmark(args.zoos, progress)
        print(render(t))
        print("seconds: " + ", ".join(f"{k} {v:.1f}" for k, v in secs.items()))
        if args.out is not None:
            from data.zoo.store import atomic_write

            atomic_write(args.out, (lambda p: t.write_parquet(p)) if args.out.suffix == ".parquet"
                         else (lambda p: t.write_csv(p)))
            print(f"wrote {args.out}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
