"""Groups of models compared side by side: which models a selection holds, its complement within its phases,
and per member (one model, or one cell's models of the group) the training curves, Hessian spectra and a
metric's values.

A selection is grid cells and/or model ids (a box on the phase map, a lasso in weight space). `members` maps
a display name to model ids: per model every model is its own member; per cell a member is the group's
models of one cell, drawn as their mean.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import polars as pl

from analysis.metrics.outputs import MEAN, Aggregate
from analysis.studies.spectra import esd_curves, mean_esd
from analysis.taxonomy.cells import cell_label, per_unit_values
from data.zoo.spec import ZooSpec

SPLITS = ("train", "test")
PER = ("model", "cell")  # how a group is split into members


def group_models(catalog: pl.DataFrame, spec: ZooSpec, cells: Sequence[tuple] = (),
                 models: Sequence[str] = ()) -> list[str]:
    """The sorted model ids of `models` and of every model in `cells` ((load value, temperature value) pairs)
    that the catalog holds."""
    xk, yk = spec.load.knob, spec.temperature.knob
    known = catalog.select("model_id", xk, yk).unique()
    in_cells = known.join(pl.DataFrame(list(cells), schema=[xk, yk], orient="row").cast(known.select(xk, yk).schema),
                          on=[xk, yk]) if cells else known.clear()
    return sorted(set(in_cells["model_id"]) | (set(models) & set(known["model_id"])))


def rest_of_phases(labelled: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, model_ids: Sequence[str]) -> list[str]:
    """The models of every cell whose phase (in `labelled`: knobs and `phase`) is one of the group's cells'
    phases, less the group's own models: "the rest of its phase"."""
    xk, yk = spec.load.knob, spec.temperature.knob
    knobs = catalog.select("model_id", xk, yk).unique().join(labelled.select(xk, yk, "phase"), on=[xk, yk])
    phases = knobs.filter(pl.col("model_id").is_in(list(model_ids)))["phase"].unique()
    rest = knobs.filter(pl.col("phase").is_in(phases.implode()) & ~pl.col("model_id").is_in(list(model_ids)))
    return sorted(rest["model_id"])


def members(catalog: pl.DataFrame, spec: ZooSpec, model_ids: Sequence[str], per: str = "model",
            prefix: str = "") -> dict[str, list[str]]:
    """Display name → model ids: each model (per "model") or the models of each cell (per "cell", named by
    its cell), in the catalog's knob order; `prefix` (e.g. "A · ") tells two groups apart."""
    if per not in PER:
        raise ValueError(f"per {per!r}: expected one of {PER}")
    xk, yk = spec.load.knob, spec.temperature.knob
    rows = catalog.filter(pl.col("model_id").is_in(list(model_ids))).select("model_id", xk, yk).unique().sort(
        xk, yk, "model_id")
    out: dict[str, list[str]] = {}
    for mid, x, y in rows.iter_rows():
        out.setdefault(prefix + (mid if per == "model" else cell_label(spec, x, y)), []).append(mid)
    return out


def _named(group: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    return pl.DataFrame([(name, m) for name, ids in group.items() for m in ids], schema=["member", "model_id"],
                        orient="row")


def training_curves(catalog: pl.DataFrame, group: Mapping[str, Sequence[str]]) -> pl.DataFrame:
    """member, split, kind (loss / acc), epoch, value: each member's mean over its models at each logged epoch
    (a model alone is its own curve). Accuracies are fractions; null for a regression task."""
    cols = [f"{split}_{kind}" for split in SPLITS for kind in ("loss", "acc")]
    return (catalog.join(_named(group), on="model_id").unpivot(index=["member", "epoch"], on=cols)
            .with_columns(split=pl.col("variable").str.split("_").list.first(),
                          kind=pl.col("variable").str.split("_").list.last())
            .group_by("member", "split", "kind", "epoch", maintain_order=True).agg(pl.col("value").mean())
            .sort("member", "split", "kind", "epoch"))


def member_densities(metrics: pl.DataFrame, group: Mapping[str, Sequence[str]], epoch: int,
                     split: str = "train") -> pl.DataFrame:
    """member, eigenvalue, density: each member's mean Hessian spectral density at `epoch` (its models' curves
    on one common grid, analysis.studies.spectra.mean_esd); members without a stored spectrum are left out."""
    frames = [mean_esd(esd_curves(metrics, ids, epoch, split)).select(pl.lit(name).alias("member"), "eigenvalue",
                                                                      "density") for name, ids in group.items()]
    frames = [f for f in frames if not f.is_empty()]
    return pl.concat(frames) if frames else pl.DataFrame(schema={"member": pl.String, "eigenvalue": pl.Float64,
                                                                 "density": pl.Float64})


def metric_points(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int,
                  metric: tuple[str, str | None, float | None], groups: Mapping[str, Sequence[str]],
                  labelled: pl.DataFrame, per: str = "model", aggregate: Aggregate = MEAN) -> pl.DataFrame:
    """group, phase, <load>, <temperature>, value: one point per model (or seed pair, for a pair metric: the
    pair belongs to its first model's group) or, per "cell", per cell — the `aggregate` of the group's values
    in that cell. `metric` is (metric, split, coord) as in the metrics table; `phase` is the cell's label."""
    xk, yk = spec.load.knob, spec.temperature.knob
    units = per_unit_values(metrics, catalog, spec, epoch, {"v": [metric]})
    named = pl.DataFrame([(g, m) for g, ids in groups.items() for m in ids], schema=["group", "model_id"],
                         orient="row")
    points = units.join(named, on="model_id").join(labelled.select(xk, yk, "phase"), on=[xk, yk], how="left")
    if per == "cell":
        points = points.group_by("group", "phase", xk, yk).agg(aggregate.expr(pl.col("value")).alias("value"))
    return points.select("group", "phase", xk, yk, "value").sort("group", xk, yk, "value")
