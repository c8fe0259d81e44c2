"""A zoo's cells grouped by their phase: the labelled cell table, a metric's cell values with each cell's
phase, a curve output's mean per phase, and the share of a grid in each phase.

Pure (metrics-schema frames, the catalog and the spec in; frames out): the Compare and Ensembles pages draw
these frames, and their "copy as Python" snippets call the very same functions on the zoo's own files.
"""
from __future__ import annotations

import polars as pl

from analysis.metrics.outputs import Aggregate
from analysis.taxonomy.cells import cell_table
from analysis.taxonomy.phases import classify, default_thresholds, phase_counts
from data.zoo.spec import ZooSpec


def labelled_cells(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int) -> pl.DataFrame:
    """The cell table at `epoch` with each cell's phase under the zoo's default thresholds (classify's
    columns: phase, margins, near_boundary)."""
    cells = cell_table(metrics, catalog, spec, epoch)
    return classify(cells, default_thresholds(cells))


def with_phase(values: pl.DataFrame, labelled: pl.DataFrame, spec: ZooSpec) -> pl.DataFrame:
    """Per-cell `values` (<load>, <temperature>, value, …) with each cell's phase: phase, value (cells
    without a label are left out)."""
    axes = [spec.load.knob, spec.temperature.knob]
    return values.join(labelled.select(*axes, "phase"), on=axes).select("phase", "value")


def phase_mean_curve(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, labelled: pl.DataFrame,
                     epoch: int, metric: str, aggregate: Aggregate) -> pl.DataFrame:
    """A curve output's (value against coord: sparsity, t …) mean per phase at `epoch` (that of `labelled`)
    over the phase's models or pairs, through the output's declared `aggregate` at each coord: phase, coord,
    value, sorted."""
    axes = [spec.load.knob, spec.temperature.knob]
    rows = metrics.filter((pl.col("metric") == metric) & (pl.col("epoch") == epoch) & pl.col("coord").is_not_null()
                          & pl.col("error").is_null())
    knobs = catalog.select("model_id", *axes).unique()
    return (rows.join(knobs, on="model_id").join(labelled.select(*axes, "phase"), on=axes)
            .group_by("phase", "coord").agg(aggregate.expr(pl.col("value")).alias("value")).sort("phase", "coord"))


def phase_shares(labelled: pl.DataFrame, zoo: str) -> pl.DataFrame:
    """The share of the grid in each phase: zoo, phase, cells, fraction (of the grid's cells, 0–1)."""
    return phase_counts(labelled).select(pl.lit(zoo).alias("zoo"), "phase", "cells", "fraction")
