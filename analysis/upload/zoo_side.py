"""What an upload is compared with, read once per zoo state: the zoo's cells and default thresholds at an
epoch, its cells' phases, and the classifier's training set, fits and their validation — leave-one-cell-out
on the zoo, and leave-one-zoo-out (trained on the other built-in zoos), each with the calibration of its
held-out probabilities. Every upload against the same zoo state shares them (a server analyses many uploads
against the same committed zoos)."""
from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Callable
from functools import lru_cache
from pathlib import Path

import polars as pl

from analysis.taxonomy.classifier import (
    ClassifierError,
    Fitted,
    Validation,
    fit,
    leave_one_zoo_out,
    training_set,
    validate,
)
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, zoo_cells
from data.tasks.builtin import cache_dir
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo, atomic_write, builtin_zoos


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


# bumped whenever Validation's stored form changes, so that an older cache file is recomputed, never misread
# (2: with the calibration of the held-out probabilities)
CACHE_VERSION = 2


def _on_disk(key_parts: list, compute: Callable[[], Validation | None]) -> Validation | None:
    """A Validation kept under <cache>/validation/, keyed by `key_parts` (JSON) and CACHE_VERSION (None, when
    `compute` has nothing to validate, is not kept)."""
    key = hashlib.sha256(json.dumps([CACHE_VERSION, *key_parts]).encode()).hexdigest()[:32]
    path = cache_dir() / "validation" / f"{key}.json"
    try:
        return Validation.from_dict(json.loads(path.read_text()))
    except (OSError, ValueError, TypeError, KeyError):  # absent or damaged: computed again
        pass
    v = compute()
    if v is None:
        return None
    try:
        atomic_write(path, lambda tmp: tmp.write_text(json.dumps(dataclasses.asdict(v))), durable=False)
    except OSError:
        pass  # a read-only cache only costs the fits again
    return v


@lru_cache(maxsize=16)
def validation(state: tuple, features: tuple[str, ...]) -> Validation:
    """How the classifier with `features` does on zoo models it never saw: leave-one-cell-out (each cell's
    seeds and epochs held out together), the honest figure for a model from an unseen configuration, with the
    calibration of its out-of-fold probabilities.

    64 fits on the default zoo (seconds): kept on disk under <cache>/validation/, keyed by the zoo's state and
    the features, so a cold command line pays them once per zoo state, not once per upload."""
    return _on_disk([list(state), list(features)], lambda: validate(training(state), "cell", features=features))


def other_zoos(state: tuple) -> tuple[tuple, ...]:
    """The states of the built-in zoos (data/zoos) other than the one of `state` (labelled or not: reading
    their tables to tell is what the disk cache below saves)."""
    return tuple(zoo_state(Zoo.open(root)) for root in builtin_zoos()
                 if root.resolve() != Path(state[0]).resolve())


@lru_cache(maxsize=16)
def across_zoos(state: tuple, features: tuple[str, ...]) -> Validation | None:
    """How the classifier with `features`, trained on the other built-in zoos' models (those with phase
    labels), does on this zoo's: leave-one-zoo-out, the figure for a model unlike anything the classifier
    learned from. None without another labelled zoo. Kept on disk like `validation`, keyed by every zoo's
    state (a state fixes whether that zoo has labels) and the features: a hit reads no other zoo's tables."""
    others = other_zoos(state)

    def compute() -> Validation | None:
        tables = {}
        for o in others:
            try:
                tables[o[0]] = training(o)
            except ClassifierError:  # no phase labels yet: nothing to learn from
                continue
        if not tables:
            return None
        v = leave_one_zoo_out(tables | {state[0]: training(state)}, state[0], features)
        return dataclasses.replace(v, trained_on=tuple(Path(r).name for r in tables))

    return _on_disk(["leave-one-zoo-out", list(state), [list(o) for o in others], list(features)], compute) \
        if others else None


@lru_cache(maxsize=8)
def scored_cells(state: tuple, epoch: int) -> pl.DataFrame:
    """The zoo's cells at `epoch` labelled by the default thresholds, with the test score advice reports
    (analysis.taxonomy.advice.scored_labels: a regression zoo's from its metrics)."""
    from analysis.taxonomy.advice import scored_labels
    from data.zoo.store import read_metrics

    zoo = Zoo.open(state[0])
    return scored_labels(cells(state, epoch)[0], read_metrics(zoo.root), zoo.catalog, zoo.spec, epoch)
