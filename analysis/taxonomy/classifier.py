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
that predicts them) or whole seeds, or whole zoos (leave-one-zoo-out: trained on the other zoos); each scheme's
out-of-fold probabilities get their reliability bins and expected calibration error
(analysis.taxonomy.calibration).

    phasezoo classifier data/zoos/mnist1d-mlp      # validation: accuracy, confusion matrix, calibration
    phasezoo classifier data/zoos/*                # also leave-one-zoo-out: each zoo by the others' classifier
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.taxonomy.calibration import Calibration, calibration, top_class
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
    """How well the classifier predicts models it never saw: its cross-validated figures (`validate`), or a
    classifier trained on other zoos predicting this one (`leave_one_zoo_out`), with the calibration of its
    held-out probabilities (analysis.taxonomy.calibration)."""

    scheme: str  # "leave-one-cell-out", "held-out seed" or "leave-one-zoo-out"
    n: int  # predictions (models × epochs)
    folds: int
    accuracy: float
    baseline: float  # accuracy of always predicting the most common phase (of the training zoos: leave-one-zoo-out)
    labels: tuple[str, ...]
    confusion: tuple[tuple[int, ...], ...]  # rows: true phase, columns: predicted (in `labels` order)
    calibration: Calibration | None = None  # None: the estimator gives no probabilities
    trained_on: tuple[str, ...] = ()  # leave-one-zoo-out: the zoos the classifier was trained on

    def words(self) -> str:
        """"held-out accuracy 0.81 (leave-one-cell-out, 64 folds, n = 384; always the most common phase: 0.38)"."""
        how = (f"trained on {len(self.trained_on)} other zoo(s)" if self.scheme == ZOO_SCHEME
               else f"{self.folds} folds")
        return (f"held-out accuracy {self.accuracy:.2f} ({self.scheme}, {how}, n = {self.n}; "
                f"always the most common phase: {self.baseline:.2f})")

    @classmethod
    def from_dict(cls, d) -> Validation:
        cal = d.get("calibration")
        return cls(d["scheme"], d["n"], d["folds"], d["accuracy"], d["baseline"], tuple(d["labels"]),
                   tuple(tuple(r) for r in d["confusion"]), Calibration.from_dict(cal) if cal is not None else None,
                   tuple(d.get("trained_on", ())))

    def markdown(self) -> str:
        head = "| true \\ predicted | " + " | ".join(self.labels) + " | recall |"
        rows = [head, "|" + "---|" * (len(self.labels) + 2)]
        for lab, row in zip(self.labels, self.confusion):
            recall = f"{row[self.labels.index(lab)] / sum(row):.2f}" if sum(row) else "—"  # a phase it never holds
            rows.append(f"| **{lab}** | " + " | ".join(str(v) for v in row) + f" | {recall} |")
        return "\n".join(rows)


ZOO_SCHEME = "leave-one-zoo-out"


def _fold(estimator, x_train, y_train, x_held, labels: Sequence[str]) -> tuple[np.ndarray, np.ndarray | None]:
    """One fold's predictions on `x_held` and their probabilities [held, labels] (columns in `labels` order, a
    phase the fold never saw at 0); None where the estimator gives no probabilities."""
    from sklearn.base import clone

    seen = np.unique(y_train)
    proba = np.zeros((len(x_held), len(labels)))
    if len(seen) == 1:  # the other cells hold one phase; a fit needs two, the answer is that one, surely
        proba[:, labels.index(seen[0])] = 1.0
        return np.full(len(x_held), seen[0], dtype=object), proba
    est = clone(estimator or make_classifier()).fit(x_train, y_train)
    if not hasattr(est, "predict_proba"):
        return est.predict(x_held), None
    p = est.predict_proba(x_held)
    for j, c in enumerate(est.classes_):
        proba[:, labels.index(c)] = p[:, j]
    return est.predict(x_held), proba


def _validation(scheme: str, y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, labels: tuple[str, ...],
                folds: int, majority: str, trained_on: tuple[str, ...] = ()) -> Validation:
    from sklearn.metrics import confusion_matrix

    cm = confusion_matrix(y, pred, labels=list(labels))
    cal = calibration(*top_class(proba, labels, y), scheme) if proba is not None else None
    return Validation(scheme, len(y), folds, float((pred == y).mean()), float((y == majority).mean()), labels,
                      tuple(tuple(int(v) for v in r) for r in cm), cal, trained_on)


def validate(table: pl.DataFrame, scheme: str = "cell", estimator=None,
             features: Sequence[str] = FEATURES) -> Validation:
    """Cross-validated predictions with whole cells (`cell`) or whole seeds (`seed`) held out, on `features`,
    and the calibration of their out-of-fold probabilities."""
    from sklearn.model_selection import LeaveOneGroupOut

    groups = table["cell" if scheme == "cell" else "seed"].to_numpy()
    y = table["phase"].to_numpy()
    x = design(table, features)
    labels = tuple(sorted(set(y)))
    pred = np.empty_like(y)
    proba: np.ndarray | None = np.zeros((len(y), len(labels)))
    for train, held in LeaveOneGroupOut().split(x, y, groups):
        pred[held], p = _fold(estimator, x[train], y[train], x[held], labels)
        proba = None if p is None or proba is None else proba
        if proba is not None:
            proba[held] = p
    majority = max(labels, key=lambda lab: (y == lab).sum())
    return _validation("leave-one-cell-out" if scheme == "cell" else "held-out seed", y, pred, proba, labels,
                       len(set(groups)), majority)


def leave_one_zoo_out(tables: Mapping[str, pl.DataFrame], held: str, features: Sequence[str] = FEATURES,
                      estimator=None) -> Validation:
    """The classifier trained on every zoo of `tables` (name -> training_set) but `held`, predicting `held`'s
    models: how its probabilities hold up on a zoo it never saw (other task, architecture, loss scale). The
    features are the same names in every zoo; one a zoo lacks is null there, and the imputer fills it. The
    baseline is the training zoos' most common phase (all that a classifier learning nothing would say)."""
    if held not in tables:
        raise ValueError(f"no zoo {held!r} among {sorted(tables)}")
    others = tuple(name for name in tables if name != held)
    if not others:
        raise ValueError(f"leave-one-zoo-out needs a zoo besides {held!r}")
    train = pl.concat([tables[name].select("phase", *features) for name in others])
    target = tables[held]
    y, y_train = target["phase"].to_numpy(), train["phase"].to_numpy()
    labels = tuple(sorted(set(y) | set(y_train)))
    pred, proba = _fold(estimator, design(train, features), y_train, design(target, features), labels)
    majority = max(sorted(set(y_train)), key=lambda lab: (y_train == lab).sum())
    return _validation(ZOO_SCHEME, y, np.asarray(pred, dtype=object), proba, labels, 1, majority, others)


def _scheme_lines(v: Validation) -> str:
    cal = f"; calibration: {v.calibration.words()}" if v.calibration else ""
    how = f"trained on {', '.join(v.trained_on)}" if v.scheme == ZOO_SCHEME else f"{v.folds} folds"
    return (f"\n{v.scheme} ({how}): accuracy {v.accuracy:.3f} (always the most common phase: {v.baseline:.3f}){cal}"
            f"\n{v.markdown()}" + (f"\n\nreliability ({v.scheme}):\n{v.calibration.markdown()}" if v.calibration else ""))


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.taxonomy.classifier") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", nargs="+", help="a zoo directory; several (e.g. data/zoos/*): each validated on its "
                    "own, then each predicted by a classifier trained on the others (leave-one-zoo-out)")
    args = ap.parse_args(argv)

    def body() -> int:
        from pathlib import Path

        names = [Path(z).resolve().name for z in args.zoo]
        if len(set(names)) < len(names):
            raise ValueError(f"a zoo is named twice among {args.zoo}")
        tables, ece = {}, {}
        for name, root in zip(names, args.zoo):
            table = tables[name] = training_set(root)
            counts = dict(table.group_by("phase").len().sort("phase").rows())
            print(f"{root}: {table.height} labelled models (models × analysis epochs); per phase: {counts}")
            for scheme in ("cell", "seed"):
                v = validate(table, scheme)
                ece[name, v.scheme] = v.calibration
                print(_scheme_lines(v))
            print()
        if len(tables) > 1:
            print(f"{ZOO_SCHEME}: each zoo predicted by the classifier trained on the {len(tables) - 1} others")
            for name in tables:
                v = leave_one_zoo_out(tables, name)
                ece[name, v.scheme] = v.calibration
                print(f"\n{name}:" + _scheme_lines(v))
        schemes = list(dict.fromkeys(s for _, s in ece))
        print("\nexpected calibration error (top-class probability; 95 % bootstrap interval):\n"
              "| zoo | " + " | ".join(schemes) + " |\n|" + "---|" * (len(schemes) + 1))
        for name in tables:
            print(f"| {name} | " + " | ".join(f"{c.ece:.3f} ({c.ece_low:.3f}–{c.ece_high:.3f})"
                                               if (c := ece.get((name, s))) else "—" for s in schemes) + " |")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
