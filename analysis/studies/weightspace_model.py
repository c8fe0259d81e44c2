"""The data-free phase model: a checkpoint's phase from its weights alone, for an upload whose zoo's task data
is not on this machine (analysis.upload.verdict then has no metrics of its own to measure).

For one zoo, both baselines of the weight-space benchmark (analysis.studies.weightspace: StatNN's per-tensor
statistics, Unterthiner et al. 2020, and the stored data-free metrics) are validated by 5-fold cross-validation
over grid cells at the zoo's last analysis epoch (no seed of a held-out cell is trained on); the one with the
higher held-out balanced accuracy (StatNN on a tie) is then fitted on every labelled model of the zoo at that
epoch and predicts the upload's phase with probabilities. Its held-out balanced accuracy is the figure to
read the answer with: the classifier sees no fit, no sharpness and no seeds, only the weights.

The validation costs seconds to tens of seconds per zoo (10 fits per baseline and target): it is kept on disk
under <cache>/weightspace/, keyed by the zoo's directory and its tables' modification times; the final fit (one
model, ~1 s) is kept in memory per zoo state, as analysis.upload.zoo_side keeps the classifier's.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import polars as pl
import torch

from analysis.studies.weightspace import BASELINES, Score, benchmark_zoo, design, examples, feature_columns, make_model
from analysis.studies.weightspace_features import datafree_wide, statnn_features
from data.tasks.builtin import cache_dir
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo, atomic_write

__all__ = ["PhaseModel", "WeightsPhase", "phase_model", "predict", "weights_phase", "datafree_features"]
PHASES_FILE = "phases.parquet"


@dataclass(frozen=True)
class PhaseModel:
    """A zoo's fitted weights-only phase classifier and how it does on cells it never saw."""

    zoo: str
    epoch: int  # the analysis epoch it was trained at
    baseline: str  # "StatNN" or "data-free": the better validated
    estimator: object  # a fitted scikit-learn pipeline; None when the zoo has a single labelled phase
    features: tuple[str, ...]
    classes: tuple[str, ...]
    n_train: int  # labelled models
    n_cells: int
    validation: Score  # by-cell 5-fold balanced accuracy of `baseline`
    validations: tuple[Score, ...]  # of every baseline (the choice's evidence)


@dataclass(frozen=True)
class WeightsPhase:
    """One state dict's phase from its weights alone, with the model's held-out figures."""

    phase: str
    probabilities: Mapping[str, float]  # phase -> p (sums to 1)
    model: PhaseModel


def _state(zoo: Zoo) -> tuple:
    """What the model depends on: the zoo's directory and its tables' modification times."""
    return (str(zoo.root.resolve()), *((zoo.root / f).stat().st_mtime if (zoo.root / f).exists() else 0.0
                                       for f in (CATALOG_FILE, METRICS_FILE, PHASES_FILE)))


def _validations(state: tuple, frame: pl.DataFrame) -> tuple[Score, ...]:
    """Every baseline's by-cell balanced accuracy on the phase, from the disk cache or computed (and stored)."""
    path = _cached(state, "phase")
    try:
        return tuple(Score(**d) for d in json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):  # absent or damaged: computed again
        pass
    scores = tuple(s for b in BASELINES for s in benchmark_zoo(frame, b, "phase"))
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps([dataclasses.asdict(s) for s in scores])),
                     durable=False)
    except OSError:
        pass  # a read-only cache only costs the fits again
    return scores


def _cached(state: tuple, what: str) -> Path:
    key = hashlib.sha256(json.dumps([f"weightspace-{what}-v1", list(state)]).encode()).hexdigest()[:32]
    return cache_dir() / "weightspace" / f"{key}.{'parquet' if what == 'examples' else 'json'}"


def _examples(state: tuple) -> tuple[pl.DataFrame, int]:
    """The zoo's labelled examples (analysis.studies.weightspace.examples), from the disk cache or computed and
    stored: an imported zoo of large checkpoints is read once per zoo state."""
    path = _cached(state, "examples")
    try:
        frame = pl.read_parquet(path)
        return frame.drop("epoch"), int(frame["epoch"][0])
    except Exception:  # absent or damaged: computed again
        pass
    frame, epoch = examples(state[0], labelled_only=True)
    try:
        atomic_write(path, lambda tmp: frame.with_columns(pl.lit(epoch, pl.Int64).alias("epoch")).write_parquet(tmp),
                     durable=False)
    except OSError:
        pass
    return frame, epoch


@lru_cache(maxsize=8)
def _fitted(state: tuple) -> PhaseModel:
    frame, epoch = _examples(state)
    labelled = frame.filter(pl.col("phase").is_not_null())
    scores = _validations(state, labelled)
    if not scores:
        raise ValueError(f"{Path(state[0]).name}: too few labelled models ({labelled.height}) to validate a phase model")
    best = max(scores, key=lambda s: (s.value, s.baseline == "StatNN"))
    cols = feature_columns(labelled, best.baseline, across=False)
    y = labelled["phase"].to_numpy()
    classes = tuple(sorted(set(y)))
    estimator = None
    if len(classes) > 1:
        from sklearn.utils.class_weight import compute_sample_weight

        estimator = make_model("classifier")
        estimator.fit(design(labelled, cols), y,
                      gradientboostingclassifier__sample_weight=compute_sample_weight("balanced", y))
        classes = tuple(str(c) for c in estimator.classes_)
    return PhaseModel(frame["zoo"][0], epoch, best.baseline, estimator, tuple(cols), classes, labelled.height,
                      labelled["cell"].n_unique(), best, scores)


def phase_model(zoo: Zoo) -> PhaseModel:
    """The zoo's weights-only phase model (cached per zoo state). ValueError when the zoo has no labels."""
    return _fitted(_state(zoo))


def datafree_features(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """The `datafree:` columns of a state dict, computed by the zoo's own `weights` metric
    (analysis.metrics.definitions.weights: the rows `phasezoo run` stores), so that an upload's features are
    those the model was trained on."""
    from analysis.metrics.definitions import weights
    from analysis.metrics.registry import ModelInput

    module = SimpleNamespace(state_dict=lambda: dict(state))  # the metric reads only the state dict
    values = weights(ModelInput("upload", module, None))
    rows = pl.DataFrame([{"model_id": "upload", "metric": v.metric, "layer": v.layer, "value": float(v.value)}
                         for v in values if v.split is None and v.coord is None],
                        schema={"model_id": pl.String, "metric": pl.String, "layer": pl.String, "value": pl.Float64})
    if rows.is_empty():
        return {}
    return datafree_wide(rows).drop("model_id").row(0, named=True)


def predict(model: PhaseModel, state: Mapping[str, torch.Tensor]) -> WeightsPhase:
    """The phase of `state` (a state dict of the zoo's architecture family) and its probabilities."""
    feats = statnn_features(state)
    if model.baseline == "data-free":
        feats = {**datafree_features(state), "log10_n_params": feats["log10_n_params"]}
    if model.estimator is None:
        return WeightsPhase(model.classes[0], {model.classes[0]: 1.0}, model)
    row = pl.DataFrame([{c: feats.get(c) for c in model.features}],
                       schema={c: pl.Float64 for c in model.features})
    p = model.estimator.predict_proba(design(row, model.features))[0]
    probs = {c: float(v) for c, v in zip(model.classes, p)}
    return WeightsPhase(model.classes[int(np.argmax(p))], probs, model)


def weights_phase(zoo: Zoo, state: Mapping[str, torch.Tensor]) -> WeightsPhase:
    """`predict` with the zoo's (cached) phase model."""
    return predict(phase_model(zoo), state)
