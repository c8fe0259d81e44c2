"""What an upload is compared with, read once per zoo state: the zoo's cells and default thresholds at an
epoch, its cells' phases, and the classifier's training set and fits. Every upload against the same zoo
state shares them (a server analyses many uploads against the same committed zoos)."""
from __future__ import annotations

from functools import lru_cache

import polars as pl

from analysis.taxonomy.classifier import Fitted, fit, training_set
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, zoo_cells
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo


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
