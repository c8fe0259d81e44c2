"""How sure the phase map is, for the pages: the label bootstrap (analysis.taxonomy.stability), computed live and
cached per zoo state, epoch and thresholds. The Phase diagram and Cell detail pages read the same cache, so a
cell's stability is the one its map shows.

With the zoo's default thresholds the bootstrap re-derives them on every resampled grid (as `phasezoo
phases` does: the stored phases.parquet holds the same numbers); with thresholds a user set on the sliders
they stay fixed at those values in every resample.
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from analysis.taxonomy.cells import per_unit_values
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds
from analysis.taxonomy.stability import Stability, bootstrap
from dashboard.picker import load_cells, load_metrics, load_zoo
from data.zoo.store import CATALOG_FILE, METRICS_FILE


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


@st.cache_data(show_spinner="Resampling seeds and seed pairs…", max_entries=32)
def _stability(path: str, epoch: int, fixed: tuple[float, float, float] | None,
               mtimes: tuple[float, float]) -> Stability:  # mtimes in the key: new metrics recompute
    zoo = load_zoo(path)
    cells = load_cells(zoo.root, epoch)
    th = default_thresholds(cells) if fixed is None else Thresholds(*fixed)
    axes = [zoo.spec.load.knob, zoo.spec.temperature.knob]
    units = per_unit_values(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch)
    return bootstrap(units, classify(cells, th), axes, default_thresholds if fixed is None else th)


def load_stability(root: Path, epoch: int, thresholds: Thresholds | None = None) -> Stability:
    """The bootstrap of the zoo's labels at `epoch`: with the default thresholds re-derived per resample
    (`thresholds` None), else with `thresholds` fixed (only τ_L, ε and τ_C matter)."""
    fixed = None if thresholds is None else (thresholds.train_loss, thresholds.mc, thresholds.cka)
    return _stability(str(root), epoch, fixed, (_mtime(Path(root) / CATALOG_FILE), _mtime(Path(root) / METRICS_FILE)))
