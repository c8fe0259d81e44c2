"""Hessian spectral densities (the `hessian_esd` rows of metrics.parquet) as curves for plotting.

Each model's density lives on its own eigenvalue grid; a cell's density is the seed average after linear
interpolation onto a common grid spanning all its seeds (zero outside a seed's support).
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import polars as pl


def esd_curves(metrics: pl.DataFrame, model_ids: Sequence[str], epoch: int, split: str = "train") -> pl.DataFrame:
    """Per-model density curves: model_id, eigenvalue, density (sorted by eigenvalue)."""
    return (metrics.filter((pl.col("metric") == "hessian_esd") & (pl.col("epoch") == epoch)
                           & (pl.col("split") == split) & pl.col("model_id").is_in(list(model_ids))
                           & pl.col("error").is_null())
            .select("model_id", pl.col("coord").alias("eigenvalue"), pl.col("value").alias("density"))
            .sort("model_id", "eigenvalue"))


def mean_esd(curves: pl.DataFrame, points: int = 400) -> pl.DataFrame:
    """The seed-average density of the given per-model curves on one common grid: eigenvalue, density."""
    if curves.is_empty():
        return pl.DataFrame(schema={"eigenvalue": pl.Float64, "density": pl.Float64})
    grid = np.linspace(curves["eigenvalue"].min(), curves["eigenvalue"].max(), points)
    dens = [np.interp(grid, g["eigenvalue"].to_numpy(), g["density"].to_numpy(), left=0.0, right=0.0)
            for _, g in curves.group_by("model_id", maintain_order=True)]
    return pl.DataFrame({"eigenvalue": grid, "density": np.mean(dens, axis=0)})
