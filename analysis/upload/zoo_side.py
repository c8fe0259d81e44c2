"""What an upload is compared with, read once per zoo state: the zoo's cells and default thresholds at an
epoch, its cells' phases, and the classifier's training set, fits and their validation. Every upload against
the same zoo state shares them (a server analyses many uploads against the same committed zoos)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from functools import lru_cache

import polars as pl

from analysis.taxonomy.classifier import Fitted, Validation, fit, training_set, validate
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, zoo_cells
from data.tasks.builtin import cache_dir
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo, atomic_write


def zoo_state(zoo: Zoo) -> tuple:
    """What a cached result depends on: the zoo's directory and its tables' modification times."""
    return (str(zoo.root.resolve()),
            *((zoo.root / f).stat().st_mtime if (zoo.root / f).exists() else 0.0 for f in (CATALOG_FILE, METRICS_FILE)))


@lru_cache(maxsize=8)
def cells(state: tuple, epoch: int) -> tuple[pl.DataFrame, Thresholds]:
    """The zoo's cell table at `epoch` and its default thresholds (analysis.taxonomy.phases)."""
    _, _, table = zoo_cells(state[0], epoch)
    return table, default_thresholds(table)


def cell_phases(zoo: Zoo, epoch: int) -> pl.DataFrame:
    """<load knob>, <temperature knob>, phase: each cell's label at `epoch` under the default thresholds."""
    table, th = cells(zoo_state(zoo), epoch)
    return classify(table, th).select(zoo.spec.load.knob, zoo.spec.temperature.knob, "phase")


@lru_cache(maxsize=8)
def training(state: tuple) -> pl.DataFrame:
    """The classifier's training set: every zoo model at every analysis epoch, with its cell's phase."""
    return training_set(state[0])


@lru_cache(maxsize=16)
def classifier(state: tuple, features: tuple[str, ...]) -> Fitted:
    """The classifier fitted on the zoo's labelled models with `features` (analysis.taxonomy.classifier.fit)."""
    return fit(training(state), features)


@lru_cache(maxsize=16)
def validation(state: tuple, features: tuple[str, ...]) -> Validation:
    """How the classifier with `features` does on zoo models it never saw: leave-one-cell-out (each cell's
    seeds and epochs held out together), the honest figure for a model from an unseen configuration.

    64 fits on the default zoo (seconds): kept on disk under <cache>/validation/, keyed by the zoo's state and
    the features, so a cold command line pays them once per zoo state, not once per upload."""
    key = hashlib.sha256(json.dumps([list(state), list(features)]).encode()).hexdigest()[:32]
    path = cache_dir() / "validation" / f"{key}.json"
    try:
        return Validation.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):  # absent or damaged: computed again
        pass
    v = validate(training(state), "cell", features=features)
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(dataclasses.asdict(v))), durable=False)
    except OSError:
        pass  # a read-only cache only costs the fits again
    return v
