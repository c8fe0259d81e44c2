"""A learned phase classifier: one model's phase from single-model features, with probabilities.

The taxonomy (analysis.taxonomy.phases) labels *cells* and needs pair metrics (mode connectivity and CKA between
seeds). A single uploaded checkpoint has no seeds of its own, so this module learns the cell labels from
what one model does have: its fit (train/test loss and accuracy), the sharpness of its minimum (Hessian
trace and top eigenvalue) and data-free weight statistics (heavy-tail α, stable rank, spectral norm;
Martin & Mahoney 2021), plus its size. Every model of a zoo at every analysis epoch is one example,
labelled with its cell's phase at that epoch.

The estimator is a scikit-learn pipeline (median imputation, standardisation, multinomial logistic
regression with balanced class weights): any estimator with the same contract can replace it. Honest
validation holds out whole cells (leave-one-cell-out: the cell's seeds and epochs never train the model
that predicts them) or whole seeds.

    phasezoo classifier data/zoos/mnist1d-mlp      # validation: accuracy, confusion matrix
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.taxonomy.cells import CELL_QUANTITIES, unit_values
from analysis.taxonomy.phases import UNCLASSIFIED, classify, default_thresholds, zoo_cells
from data.cli import run_cli

# feature -> candidate (metric, split, coord) rows, as analysis.taxonomy.cells.CELL_QUANTITIES
QUANTITIES = {
    "train_loss": [("train_loss", "train", None)],
    "test_loss": [("test_loss", "test", None)],
    "train_acc": [("train_acc", "train", None)],
    "test_acc": [("test_acc", "test", None)],
    "hessian_trace": CELL_QUANTITIES["hessian_trace"],
    "hessian_top_eigenvalue": CELL_QUANTITIES["hessian_top_eigenvalue"],
    "alpha": [("alpha", None, None)],
    "alpha_ks": [("alpha_ks", None, None)],
    "stable_rank": [("stable_rank", None, None)],
    "spectral_norm": [("spectral_norm", None, None)],  # already the mean log σ₁ over layers
}
class ClassifierError(ValueError):
    """A zoo the classifier cannot learn from (no phase labels yet); the message says what to run."""


LOGGED = ("train_loss", "test_loss", "hessian_trace", "hessian_top_eigenvalue")  # span decades: log10
FEATURES = (*QUANTITIES, "n_params")


def model_features(rows: pl.DataFrame, n_params: dict[str, int]) -> pl.DataFrame:
    """model_id and one Float64 column per feature (null where a model lacks it) from metrics-schema rows
    of one epoch; `n_params` maps model ids to parameter counts. Losses and Hessian quantities enter as log10."""
    units = unit_values(rows, QUANTITIES)
    wide = units.pivot(on="quantity", index="model_id", values="value", aggregate_function="first")
    ids = pl.DataFrame({"model_id": list(n_params), "n_params": [math.log10(n) for n in n_params.values()]})
    out = ids.join(wide, on="model_id", how="left")
    cols = [(pl.col(f).clip(1e-12).log10() if f in LOGGED else pl.col(f)).cast(pl.Float64).alias(f)
            if f in out.columns else pl.lit(None, pl.Float64).alias(f) for f in QUANTITIES]
    return out.select("model_id", *cols, "n_params")


def training_set(root, epochs: Sequence[int] | None = None) -> pl.DataFrame:
    """Every model of a zoo at its analysis epochs with its features and its cell's phase (default
    thresholds, as `phasezoo phases` writes them): model_id, epoch, seed, cell, phase, features."""
    from data.zoo.store import Zoo, read_metrics

    zoo = Zoo.open(root)
    metrics = read_metrics(zoo.root)
    xk, yk = zoo.spec.load.knob, zoo.spec.temperature.knob
    frames = []
    for epoch in epochs or zoo.spec.analysis_epochs:
        cells = zoo_cells(zoo.root, epoch)[2]
        if cells["mc"].is_null().all():
            continue
        phases = classify(cells, default_thresholds(cells)).select(xk, yk, "phase")
        at = zoo.catalog.filter(pl.col("epoch") == epoch).select("model_id", "seed", xk, yk, "n_params")
        feats = model_features(metrics.filter(pl.col("epoch") == epoch), dict(at.select("model_id", "n_params").rows()))
        frames.append(at.drop("n_params").join(phases, on=[xk, yk]).join(feats, on="model_id").with_columns(
            epoch=pl.lit(epoch, pl.Int64), cell=pl.format("{}={} · {}={}", pl.lit(xk), xk, pl.lit(yk), yk)))
    if not frames:
        raise ClassifierError(f"{zoo.name}: no analysis epoch has phase labels yet (run `phasezoo run`)")
    table = pl.concat(frames).filter(pl.col("phase") != UNCLASSIFIED)
    return table.select("model_id", "epoch", "seed", "cell", "phase", *FEATURES)


def make_classifier():
    """The default estimator (scikit-learn contract: fit, predict, predict_proba, classes_)."""
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return make_pipeline(SimpleImputer(strategy="median", keep_empty_features=True), StandardScaler(),
                         LogisticRegression(C=1.0, max_iter=5000, class_weight="balanced"))


RANGE_MARGIN = 0.05  # a feature beyond the training range by more than this fraction of it is outside it


@dataclass(frozen=True)
class Fitted:
    """A classifier fitted on a zoo's labelled models, with what it takes to tell whether it has seen the like
    of a new model: the training models in its standardised feature space, their typical nearest-neighbour
    distance and each feature's range."""

    estimator: object
    features: tuple[str, ...]
    Z: np.ndarray  # [training models, features], imputed and standardised as the final estimator sees them
    typical: float  # 99th percentile of the training models' distances to their nearest other training model
    lo: tuple[float, ...]  # per feature: the training minimum and maximum (log10 units where LOGGED)
    hi: tuple[float, ...]
    n_train: int


def fit(table: pl.DataFrame, features: Sequence[str]) -> Fitted:
    """The default estimator on `table` (training_set's rows) restricted to `features`."""
    X = design(table, features)
    est = make_classifier().fit(X, table["phase"].to_numpy())
    Z = est[:-1].transform(X)
    d = np.linalg.norm(Z[:, None, :] - Z[None, :, :], axis=-1)
    np.fill_diagonal(d, np.inf)
    with np.errstate(all="ignore"):
        lo, hi = np.nanmin(X, axis=0), np.nanmax(X, axis=0)
    return Fitted(est, tuple(features), Z, float(np.quantile(d.min(axis=1), 0.99)),
                  tuple(float(v) for v in lo), tuple(float(v) for v in hi), table.height)


def predict(fitted: Fitted, values: dict[str, float | None], failed: Sequence[str] = ()) -> dict:
    """One model's phase and probabilities from its feature `values`, or none where its inputs cannot carry
    them: a measurement of it that failed (`failed`: non-finite or raising; its features would be imputed
    with the zoo's medians and the answer made up) or a non-finite feature. A model unlike every training
    model (farther from them than `typical`, or a feature outside the training range) gets an answer flagged
    `extrapolating`, with those features named in `outside`: logistic probabilities only grow more certain
    away from the data, so such a p says nothing about how sure the classifier should be."""
    x = np.array([[np.nan if values.get(f) is None else float(values[f]) for f in fitted.features]])
    out = {"phase": None, "probabilities": {}, "features": {f: values.get(f) for f in fitted.features},
           "n_train": fitted.n_train, "nearest_distance": None, "typical_distance": fitted.typical,
           "extrapolating": False, "outside": {}, "withheld": None}
    bad = [f for f in fitted.features if values.get(f) is not None and not math.isfinite(values[f])]
    if failed or bad or not fitted.features:
        out["withheld"] = (f"its {', '.join(failed)} could not be measured (non-finite or failed)" if failed else
                           f"non-finite {', '.join(bad)}" if bad else "no single-model feature to go on")
        return out
    for f, v, lo, hi in zip(fitted.features, x[0], fitted.lo, fitted.hi):
        margin = RANGE_MARGIN * (hi - lo)
        if math.isfinite(v) and math.isfinite(lo) and not lo - margin <= v <= hi + margin:
            out["outside"][f] = {"value": float(v), "min": lo, "max": hi}
    est = fitted.estimator
    proba = est.predict_proba(x)[0]
    nearest = float(np.linalg.norm(fitted.Z - est[:-1].transform(x), axis=1).min())
    out.update(phase=str(est.classes_[int(np.argmax(proba))]),
               probabilities={str(c): float(p) for c, p in zip(est.classes_, proba)}, nearest_distance=nearest,
               extrapolating=bool(nearest > fitted.typical or out["outside"]))
    return out


def design(table: pl.DataFrame, features: Sequence[str] = FEATURES) -> np.ndarray:
    return table.select(features).to_numpy().astype(float)  # nulls become NaN for the imputer


@dataclass(frozen=True)
class Validation:
    """How well the classifier predicts models it never saw: its cross-validated figures (`validate`)."""

    scheme: str  # "leave-one-cell-out" or "held-out seed"
    n: int  # predictions (models × epochs)
    folds: int
    accuracy: float
    baseline: float  # accuracy of always predicting the most common phase
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true phase, columns: predicted (in `labels` order)

    def words(self) -> str:
        """"held-out accuracy 0.81 (leave-one-cell-out, 64 folds, n = 384; always the most common phase: 0.38)"."""
        return (f"held-out accuracy {self.accuracy:.2f} ({self.scheme}, {self.folds} folds, n = {self.n}; "
                f"always the most common phase: {self.baseline:.2f})")

    @classmethod
    def from_dict(cls, d) -> Validation:
        return cls(d["scheme"], d["n"], d["folds"], d["accuracy"], d["baseline"], tuple(d["labels"]),
                   tuple(tuple(r) for r in d["confusion"]))

    def markdown(self) -> str:
        head = "| true \\ predicted | " + " | ".join(self.labels) + " | recall |"
        rows = [head, "|" + "---|" * (len(self.labels) + 2)]
        for lab, row in zip(self.labels, self.confusion):
            recall = row[self.labels.index(lab)] / sum(row) if sum(row) else float("nan")
            rows.append(f"| **{lab}** | " + " | ".join(str(v) for v in row) + f" | {recall:.2f} |")
        return "\n".join(rows)


def validate(table: pl.DataFrame, scheme: str = "cell", estimator=None,
             features: Sequence[str] = FEATURES) -> Validation:
    """Cross-validated predictions with whole cells (`cell`) or whole seeds (`seed`) held out, on `features`."""
    from sklearn.base import clone
    from sklearn.metrics import confusion_matrix
    from sklearn.model_selection import LeaveOneGroupOut

    groups = table["cell" if scheme == "cell" else "seed"].to_numpy()
    y = table["phase"].to_numpy()
    x = design(table, features)
    pred = np.empty_like(y)
    for train, held in LeaveOneGroupOut().split(x, y, groups):
        seen = np.unique(y[train])
        if len(seen) == 1:  # a small zoo: the other cells hold one phase; a fit needs two, the answer is that one
            pred[held] = seen[0]
        else:
            pred[held] = clone(estimator or make_classifier()).fit(x[train], y[train]).predict(x[held])
    labels = tuple(sorted(set(y)))
    cm = confusion_matrix(y, pred, labels=list(labels))
    majority = max(labels, key=lambda lab: (y == lab).sum())
    return Validation("leave-one-cell-out" if scheme == "cell" else "held-out seed", len(y), len(set(groups)),
                      float((pred == y).mean()), float((y == majority).mean()), labels,
                      tuple(tuple(int(v) for v in r) for r in cm))


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.taxonomy.classifier") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    args = ap.parse_args(argv)

    def body() -> int:
        table = training_set(args.zoo)
        counts = dict(table.group_by("phase").len().sort("phase").rows())
        print(f"{args.zoo}: {table.height} labelled models (models × analysis epochs); per phase: {counts}")
        for scheme in ("cell", "seed"):
            v = validate(table, scheme)
            print(f"\n{v.scheme} ({v.folds} folds): accuracy {v.accuracy:.3f} "
                  f"(always the most common phase: {v.baseline:.3f})\n{v.markdown()}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
