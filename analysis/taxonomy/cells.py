"""Per-cell views of a catalog: one row per (load, temperature) grid cell, aggregated over seeds.

Per-seed values stay in the catalog; these frames aggregate for display (mean, spread, count).

A quantity's value comes from the rows computed here (*recomputed*) where a model has them, else from the rows an
importer carried over from a published zoo's own files (*annotated*: their params_hash is an importer's, `ANNOTATED`);
`quantity_sources` says which each quantity of a cell table came from.
"""
from __future__ import annotations

from dataclasses import dataclass

import polars as pl

from analysis.metrics.outputs import LOG_MEAN, MEAN, Aggregate
from data.importers import manifest, ptmz
from data.tasks.builtin import TASKS
from data.zoo.spec import ZooSpec


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


@dataclass(frozen=True)
class Quantity:
    """A per-model (or per-pair) scalar the taxonomy uses, declared once: where its rows come from, how a cell
    aggregates it, and how views name and scale it.

    `candidates` are (output name, split, coord) rows of metrics.parquet; the first one a model has wins (e.g.
    the exact Hessian trace where it exists, else a stochastic one; imported zoos carry PyHessian's Hutchinson
    traces). `aggregate` and `log_scale` are those of its candidate outputs (tests/test_declarations.py).
    """

    name: str
    candidates: tuple[tuple[str, str | None, float | None], ...]
    label: str  # human name, for captions and axes
    aggregate: Aggregate = MEAN
    log_scale: bool = False  # its values span decades: log axes
    task_unit: str = ""  # which of the task's units it is in ("loss", "mc": TaskDef.units), "" = none
    rule: str = ""  # what its threshold says, in words

    def unit(self, task: str) -> str:
        """Its unit on `task` (a classifier's loss is in nats, a PINN's has none of its own)."""
        return TASKS[task].units[self.task_unit] if self.task_unit else ""

    def axis_title(self, task: str) -> str:
        unit = self.unit(task)
        return self.label + (f" [{unit}]" if unit else "")

    def caption(self, task: str) -> str:
        """Label, unit and rule in one line: the title of its evidence chart ("train loss [nats]: above τ_L =
        under-fitted")."""
        return self.axis_title(task) + (f": {self.rule}" if self.rule else "")


QUANTITIES = {q.name: q for q in (
    Quantity("train_loss", (("train_loss", "train", None),), "train loss", log_scale=True, task_unit="loss",
             rule="above τ_L = under-fitted"),
    Quantity("test_acc", (("test_acc", "test", None),), "test accuracy"),
    Quantity("hessian_trace", (("hessian_trace_exact", "train", None), ("hessian_trace_hutchpp", "train", None),
                               ("hessian_trace_hutchinson", "train", None)), "Hessian trace (train)", LOG_MEAN,
             log_scale=True, rule="sharpness, no threshold"),
    Quantity("hessian_top_eigenvalue", (("hessian_top_eigenvalue", "train", 1.0),),
             "top Hessian eigenvalue (train)", LOG_MEAN, log_scale=True, rule="sharpness, no threshold"),
    Quantity("mc", (("mc_bezier", "train", None),), "mode connectivity mc (Bézier)", task_unit="mc",
             rule="below −ε = barrier"),
    Quantity("mc_linear", (("mc_linear", "train", None),), "mode connectivity mc (linear)", task_unit="mc"),
    Quantity("cka", (("cka_logits_test", "test", None),), "CKA (logits, test)", rule="in IV, above τ_C = IV-B"),
)}
# name -> candidates, the form the row selectors below take (also for ad-hoc quantities of one metric)
CELL_QUANTITIES = {name: list(q.candidates) for name, q in QUANTITIES.items()}

# The params_hash of rows an importer carried over from a zoo's own files (a published zoo's result.json, a
# manifest's metric columns): values measured elsewhere, by the publishers' protocol. Every other row was computed
# here by a registered metric. Declared by the importers themselves: no rule reads a metric's name.
ANNOTATED = frozenset({ptmz.PARAMS_HASH, manifest.PARAMS_HASH})
RECOMPUTED, ANNOTATED_SOURCE = "recomputed", "annotated"
SOURCES = {RECOMPUTED: "computed here", ANNOTATED_SOURCE: "annotated (published)"}  # source -> words for captions


def unit_values(rows: pl.DataFrame, quantities: dict[str, list[tuple]] = CELL_QUANTITIES) -> pl.DataFrame:
    """quantity, model_id, other_id, value, source from metrics-schema rows (one epoch): model-level rows only
    (layer = null), failed rows dropped, for each quantity the first candidate a model has among the recomputed
    rows, and only where a model has none of them (neither as a model nor as a pair's partner), the first among the
    annotated ones (`ANNOTATED`). `source` is RECOMPUTED or ANNOTATED_SOURCE."""
    ok = rows.filter(pl.col("layer").is_null() & pl.col("error").is_null())
    annotated = pl.col("params_hash").is_in(list(ANNOTATED))
    frames = []
    for name, candidates in quantities.items():
        found = pl.DataFrame(schema={"model_id": pl.String, "other_id": pl.String, "value": pl.Float64,
                                     "source": pl.String})
        for source, rows_of in ((RECOMPUTED, ok.filter(~annotated)), (ANNOTATED_SOURCE, ok.filter(annotated))):
            # a model measured here in a pair as its second model has its recomputed value there
            covered = (pl.concat([found["model_id"], found["other_id"].drop_nulls()]).unique()
                       if source == ANNOTATED_SOURCE else None)
            for metric, split, coord in candidates:
                q = rows_of.filter((pl.col("metric") == metric)
                                   & (pl.col("split") == split if split is not None else pl.col("split").is_null())
                                   & (pl.col("coord") == coord if coord is not None else pl.col("coord").is_null()))
                q = q.select("model_id", "other_id", "value", pl.lit(source).alias("source"))
                q = q.join(found, on="model_id", how="anti")
                if covered is not None:
                    q = q.filter(~pl.col("model_id").is_in(covered.implode()))
                found = pl.concat([found, q])
        frames.append(found.select(pl.lit(name).alias("quantity"), "model_id", "other_id", "value", "source"))
    return pl.concat(frames)


def per_unit_values(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int,
                    quantities: dict[str, list[tuple]] = CELL_QUANTITIES) -> pl.DataFrame:
    """Tidy per-model / per-pair values: quantity, model_id, other_id, <load>, <temperature>, value, source.

    This is the per-seed view behind every cell aggregate.
    """
    axes = [spec.load.knob, spec.temperature.knob]
    knobs = catalog.select("model_id", *axes).unique()
    units = unit_values(metrics.filter(pl.col("epoch") == epoch), quantities)
    return units.join(knobs, on="model_id").select("quantity", "model_id", "other_id", *axes, "value", "source")


@dataclass(frozen=True)
class QuantitySource:
    """Where a taxonomy quantity's values at one epoch came from: how many models (or pairs) have a recomputed
    value and how many an annotated (imported, published) one."""

    quantity: str
    recomputed: int
    annotated: int

    @property
    def source(self) -> str:
        """RECOMPUTED, ANNOTATED_SOURCE, "mixed" (some of each) or "none" (no value at all)."""
        if self.recomputed and self.annotated:
            return "mixed"
        return RECOMPUTED if self.recomputed else ANNOTATED_SOURCE if self.annotated else "none"

    def words(self) -> str:
        """For a caption: "train loss: recomputed", "mc (Bézier): annotated (published)", "… mixed (3 recomputed,
        1 annotated)"."""
        label = QUANTITIES[self.quantity].label if self.quantity in QUANTITIES else self.quantity
        what = {RECOMPUTED: "recomputed", ANNOTATED_SOURCE: SOURCES[ANNOTATED_SOURCE], "none": "no values",
                "mixed": f"mixed ({self.recomputed} recomputed, {self.annotated} annotated)"}[self.source]
        return f"{label}: {what}"


def quantity_sources(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int,
                     quantities: dict[str, list[tuple]] = CELL_QUANTITIES) -> tuple[QuantitySource, ...]:
    """Per quantity (in declaration order), the count of model / pair values of each source behind `cell_table`."""
    units = per_unit_values(metrics, catalog, spec, epoch, quantities)
    counts = {(q, s): n for q, s, n in units.group_by("quantity", "source").len().iter_rows()}
    return tuple(QuantitySource(q, counts.get((q, RECOMPUTED), 0), counts.get((q, ANNOTATED_SOURCE), 0))
                 for q in quantities)


def has_annotated(metrics: pl.DataFrame) -> bool:
    """Whether a zoo's metrics hold any imported (annotated) row: then its pages say where each quantity came from."""
    return metrics.height > 0 and metrics.select(pl.col("params_hash").is_in(list(ANNOTATED)).any()).item()


def cell_table(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int,
               quantities: dict[str, list[tuple]] = CELL_QUANTITIES) -> pl.DataFrame:
    """One row per grid cell: each quantity's aggregate (ln of the seed mean for Hessian quantities, the
    mean otherwise) and its spread over seeds or seed pairs (<q>_std, <q>_min, <q>_max, <q>_n).
    Cells of the full grid without a value get nulls."""
    axes = [spec.load.knob, spec.temperature.knob]
    units = per_unit_values(metrics, catalog, spec, epoch, quantities)
    table = coverage(catalog, spec).select(*axes)
    for name in quantities:
        v = pl.col("value")
        agg = units.filter(pl.col("quantity") == name).group_by(axes).agg(
            (QUANTITIES[name].aggregate if name in QUANTITIES else MEAN).expr(v).alias(name),
            v.std().alias(f"{name}_std"), v.min().alias(f"{name}_min"), v.max().alias(f"{name}_max"),
            pl.len().cast(pl.Int64).alias(f"{name}_n"))
        table = table.join(agg, on=axes, how="left")
    return table.sort(axes)


def cell_models(catalog: pl.DataFrame, spec: ZooSpec, load_value, temperature_value) -> list[str]:
    """The model ids (seeds, and any pooled knobs) of one grid cell, sorted."""
    return sorted(catalog.filter((pl.col(spec.load.knob) == load_value)
                                 & (pl.col(spec.temperature.knob) == temperature_value))["model_id"].unique())


def cell_label(spec: ZooSpec, load_value, temperature_value) -> str:
    return f"{spec.load.knob}={load_value} · {spec.temperature.knob}={temperature_value}"


def scalar_rows() -> pl.Expr:
    """Metrics-schema rows with one model-level value per model or pair (no layer, no curve), plus the top
    Hessian eigenvalue (coord = rank 1)."""
    top_eigenvalue = (pl.col("metric") == "hessian_top_eigenvalue") & (pl.col("coord") == 1.0)
    return pl.col("layer").is_null() & (pl.col("coord").is_null() | top_eigenvalue)


def scalar_metrics(metrics: pl.DataFrame) -> pl.DataFrame:
    """The (metric, split, coord) rows of `scalar_rows` that did not fail: what a per-cell heatmap can show."""
    ok = metrics.filter(scalar_rows() & pl.col("error").is_null())
    return ok.select("metric", "split", "coord").unique().sort("metric", "split", nulls_last=True)


def metric_cells(metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec, epoch: int, metric: str,
                 split: str | None, coord: float | None = None, how: str = "mean",
                 aggregate: Aggregate = MEAN) -> pl.DataFrame:
    """One metric per cell: <load>, <temperature>, value, n_seeds. `how` is mean (the output's declared
    `aggregate`), `seed N` (that seed only, through the same aggregate: ln of its value for a log_mean output),
    or min / max (the raw seed values)."""
    axes = [spec.load.knob, spec.temperature.knob]
    units = per_unit_values(metrics, catalog, spec, epoch, {"v": [(metric, split, coord)]})
    if how.startswith("seed "):
        seeds = catalog.select("model_id", "seed").unique()
        units = units.join(seeds, on="model_id").filter(pl.col("seed") == int(how.split()[1]))
        how = "mean"
    v = pl.col("value")
    agg = {"mean": aggregate.expr(v), "min": v.min(), "max": v.max()}[how]
    return units.group_by(axes).agg(agg.alias("value"), pl.len().cast(pl.Int64).alias("n_seeds")).sort(axes)
