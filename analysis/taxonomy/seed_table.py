"""A cell's metrics seed by seed, for reading: one row per metric (human name and unit from its declaration,
analysis.metrics.outputs), one column per seed, and the mean over seeds with its standard error; the per-layer
data-free metrics with layers named by their module path (data.models.layers).

Fractions are shown as percentages; a seed's own standard error (a stochastic estimate, Hutch++) follows its
value; a seed with no value at all gets no column, a metric with none no row.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from analysis.metrics.catalog import find_output
from analysis.metrics.outputs import Output
from analysis.taxonomy.cells import scalar_rows

MEAN_COLUMN = "mean ± stderr"


def _declared(name: str) -> Output:
    """A metric output's declaration; a name nobody declares (an ad-hoc import) gets a plain one."""
    return find_output(name) or Output(name, "")


def shown_unit(out: Output) -> tuple[str, float]:
    """(unit, factor) a value is shown in: a fraction as % (×100), any other unit as declared."""
    return ("%", 100.0) if out.unit == "fraction" else (out.unit, 1.0)


def _fmt(v: float | None, err: float | None = None) -> str:
    if v is None or not math.isfinite(v):
        return "—"
    return f"{v:.4g}" + (f" ± {err:.2g}" if err is not None and math.isfinite(err) and err > 0 else "")


@dataclass(frozen=True)
class SeedRow:
    """One metric (and split) across a cell's seeds, on the shown scale (`unit`: % for a fraction)."""

    metric: str
    split: str | None
    name: str  # its human name, with the split where the metric has several
    unit: str
    values: tuple[float | None, ...]  # per seed (SeedTable.seeds order)
    stderrs: tuple[float | None, ...]  # each seed's own estimator error, where it has one
    mean: float
    stderr: float | None  # of the mean over seeds: std / √n (n ≥ 2), None for one seed

    def cells(self) -> list[str]:
        return [_fmt(v, e) for v, e in zip(self.values, self.stderrs)]


@dataclass(frozen=True)
class SeedTable:
    seeds: tuple[int, ...]
    rows: tuple[SeedRow, ...]

    def frame(self) -> pl.DataFrame:
        """The table as shown: metric, unit, seed <s>…, mean ± stderr (text: each row has its own unit)."""
        cols = {"metric": [r.name for r in self.rows], "unit": [r.unit for r in self.rows]}
        for i, s in enumerate(self.seeds):
            cols[f"seed {s}"] = [r.cells()[i] for r in self.rows]
        cols[MEAN_COLUMN] = [_fmt(r.mean, r.stderr) for r in self.rows]
        return pl.DataFrame(cols, schema={k: pl.String for k in cols})


def seed_table(rows: pl.DataFrame, seeds: Mapping[str, int]) -> SeedTable:
    """The scalar model-level rows (analysis.taxonomy.cells.scalar_rows; failed rows dropped) of the models
    in `seeds` (model_id -> seed) as a SeedTable, rows sorted by name."""
    ok = rows.filter(scalar_rows() & pl.col("other_id").is_null() & pl.col("error").is_null()
                     & pl.col("model_id").is_in(list(seeds)))
    present = tuple(sorted({seeds[m] for m in ok["model_id"].unique()}))
    n_splits = dict(ok.group_by("metric").agg(pl.col("split").n_unique()).rows())
    out = []
    for (metric, split), g in ok.group_by("metric", "split"):
        out_decl = _declared(metric)
        unit, factor = shown_unit(out_decl)
        # one row per seed (a cell's models have distinct seeds); a null value reads as a missing seed
        by_seed = {seeds[r["model_id"]]: r for r in g.iter_rows(named=True) if r["value"] is not None}
        values = tuple(by_seed[s]["value"] * factor if s in by_seed else None for s in present)
        errs = tuple(by_seed[s]["stderr"] * factor if s in by_seed and by_seed[s]["stderr"] is not None else None
                     for s in present)
        have = [v for v in values if v is not None and math.isfinite(v)]
        mean = sum(have) / len(have) if have else float("nan")
        sem = (math.sqrt(sum((v - mean) ** 2 for v in have) / (len(have) - 1) / len(have))
               if len(have) > 1 else None)
        name = out_decl.human + (f" ({split})" if split and n_splits[metric] > 1 else "")
        out.append(SeedRow(metric, split, name, unit, values, errs, mean, sem))
    return SeedTable(present, tuple(sorted(out, key=lambda r: (r.name.lower(), r.split or ""))))


def layer_table(rows: pl.DataFrame, seeds: Mapping[str, int], names: Mapping[str, str],
                metrics: Sequence[str]) -> pl.DataFrame:
    """Per-layer rows of `metrics` (one column each, by human name) per seed and layer, layers named by
    `names` (stored key -> readable name, in the model's order) and sorted in that order; the stored key
    (the module path) beside the name where they differ."""
    order = {k: i for i, k in enumerate(names)}
    per = rows.filter(pl.col("layer").is_not_null() & pl.col("metric").is_in(list(metrics))
                      & pl.col("error").is_null() & pl.col("model_id").is_in(list(seeds)))
    if per.is_empty():
        return pl.DataFrame()
    wide = per.pivot(on="metric", index=["model_id", "layer"], values="value", aggregate_function="first")
    present = [m for m in metrics if m in wide.columns]
    wide = wide.with_columns(
        seed=pl.col("model_id").replace_strict(dict(seeds), return_dtype=pl.Int64),
        name=pl.col("layer").replace_strict(dict(names), default=pl.col("layer")),
        order=pl.col("layer").replace_strict(order, default=len(order), return_dtype=pl.Int64))
    return (wide.sort("seed", "order", "layer")
            .select("seed", pl.col("name").alias("layer"), pl.col("layer").alias("module path"),
                    *[pl.col(m).alias(_declared(m).axis_title) for m in present]))
