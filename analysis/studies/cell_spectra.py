"""The Hessian spectra of chosen grid cells: which cell stands for each phase, the cells' seed-mean spectral
densities, and their per-layer sharpness.

Pure (frames and the spec in, frames out): the Hessian-spectra page draws these frames, and its "copy as
Python" snippets call the very same functions on the zoo's own files. A cell is given as (name, load value,
temperature value): plain values, so a snippet can spell them out.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from analysis.studies.spectra import esd_curves, mean_esd
from analysis.taxonomy.cells import cell_models
from analysis.taxonomy.phases import UNCLASSIFIED
from data.zoo.spec import ZooSpec

LAYER_METRICS = ("hessian_layer_top_eigenvalue", "hessian_layer_trace")  # the per-layer sharpness outputs


def phase_representatives(labelled: pl.DataFrame, spec: ZooSpec, by: str = "test_acc") -> list[tuple]:
    """Per phase in the taxonomy's order (unclassified cells left out), the cell of median `by` among the
    phase's cells — a typical cell, not an extreme one: (phase, load value, temperature value)."""
    xk, yk = spec.load.knob, spec.temperature.knob
    picked = (labelled.filter(pl.col("phase") != UNCLASSIFIED).sort(by, xk, yk)
              .group_by("phase", maintain_order=True).agg(pl.all().get(pl.len() // 2)).sort("phase"))
    return [(r["phase"], r[xk], r[yk]) for r in picked.iter_rows(named=True)]


def cell_densities(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, cells: Sequence[tuple],
                   epoch: int, split: str) -> pl.DataFrame:
    """Each cell's seed-mean spectral density of its `split` loss's Hessian at `epoch`: label, eigenvalue,
    density; `cells` are (label, load value, temperature value), in the order given."""
    frames = [mean_esd(esd_curves(metrics, cell_models(catalog, spec, x, y), epoch, split))
              .select(pl.lit(name).alias("label"), "eigenvalue", "density") for name, x, y in cells]
    return pl.concat(frames) if frames else pl.DataFrame(schema={"label": pl.String, "eigenvalue": pl.Float64,
                                                                 "density": pl.Float64})


def layer_sharpness(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, cells: Sequence[tuple],
                    epoch: int, names: Mapping[str, str] | None = None) -> pl.DataFrame:
    """Per cell ((load value, temperature value) pairs) and layer, the seed mean of each per-layer sharpness
    output (LAYER_METRICS, training loss) at `epoch`: <load>, <temperature>, layer, then one column per output
    present, in LAYER_METRICS' order. `names` (a layer key -> its readable name, in the model's order, as
    data.models.layers gives them) names the layers and orders them as the model does; keys it lacks keep
    their key and come last."""
    xk, yk = spec.load.knob, spec.temperature.knob
    rows = (metrics.filter(pl.col("metric").is_in(LAYER_METRICS) & (pl.col("epoch") == epoch)
                           & pl.col("error").is_null())
            .join(catalog.select("model_id", xk, yk).unique(), on="model_id")
            .filter(pl.struct(xk, yk).is_in([{xk: x, yk: y} for x, y in cells])))
    wide = (rows.group_by(xk, yk, "layer", "metric").agg(pl.col("value").mean())
            .pivot(on="metric", index=[xk, yk, "layer"], values="value"))
    order = {key: i for i, key in enumerate(names or {})}
    wide = wide.sort(xk, yk, pl.col("layer").replace_strict(order, default=len(order), return_dtype=pl.Int64),
                     "layer")
    if names:
        wide = wide.with_columns(pl.col("layer").replace(dict(names)))
    return wide.select(xk, yk, "layer", *(m for m in LAYER_METRICS if m in wide.columns))
