"""Per-cell views of a catalog: one row per (load, temperature) grid cell, aggregated over seeds.

Per-seed values stay in the catalog; these frames aggregate for display (mean, spread, count).
"""
from __future__ import annotations

import polars as pl

from data.spec import ZooSpec


def cell_stats(catalog: pl.DataFrame, spec: ZooSpec, epoch: int, column: str) -> pl.DataFrame:
    """Seed statistics of `column` at `epoch` for every cell of the load × temperature plane.

    Knobs other than the two axes (if a grid has more) are pooled with the seeds.
    Returns columns: <load knob>, <temperature knob>, mean, std, min, max, n_seeds.
    """
    axes = [spec.load.knob, spec.temperature.knob]
    if column not in catalog.columns:
        raise KeyError(f"catalog has no column {column!r}; columns: {catalog.columns}")
    at = catalog.filter(pl.col("epoch") == epoch)
    return (at.group_by(axes)
            .agg(mean=pl.col(column).mean(), std=pl.col(column).std(), min=pl.col(column).min(),
                 max=pl.col(column).max(), n_seeds=pl.len())
            .sort(axes))


def coverage(catalog: pl.DataFrame, spec: ZooSpec) -> pl.DataFrame:
    """Models present per cell against the number the spec asks for (full grid, zeros included)."""
    axes = [spec.load.knob, spec.temperature.knob]
    expected = spec.n_models // (len(spec.grid[axes[0]]) * len(spec.grid[axes[1]]))
    full = pl.DataFrame({axes[0]: list(spec.grid[axes[0]])}, schema={axes[0]: spec.knob_dtypes[axes[0]]}).join(
        pl.DataFrame({axes[1]: list(spec.grid[axes[1]])}, schema={axes[1]: spec.knob_dtypes[axes[1]]}), how="cross")
    present = catalog.group_by(axes).agg(n_models=pl.col("model_id").n_unique())
    return (full.join(present, on=axes, how="left")
            .with_columns(pl.col("n_models").fill_null(0).cast(pl.Int64), expected=pl.lit(expected, pl.Int64))
            .sort(axes))
