"""Column names and dtypes of every table in a zoo directory, declared once.

Frames are validated when they are written and when they are read; an error names the table and the
offending column. Knob columns (the grid axes: `width`, `batch_size`, `beta`, `lr`, ...) differ per zoo,
so their dtypes come from the zoo spec and are passed in as `knobs`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

import polars as pl


class SchemaError(ValueError):
    """A table does not match its declared schema (the message names table and column)."""


@dataclass(frozen=True)
class Schema:
    name: str
    columns: Mapping[str, pl.DataType]
    nullable: frozenset[str] = field(default_factory=frozenset)

    def empty(self, knobs: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
        return pl.DataFrame(schema={**self.columns, **(knobs or {})})

    def validate(self, df: pl.DataFrame, knobs: Mapping[str, pl.DataType] | None = None) -> pl.DataFrame:
        """Return `df` with columns in canonical order, or raise SchemaError naming the problem."""
        expected = {**self.columns, **(knobs or {})}
        for col, dtype in expected.items():
            if col not in df.columns:
                raise SchemaError(f"{self.name}: missing column {col!r} (expected {dtype})")
            if df.schema[col] != dtype:
                raise SchemaError(
                    f"{self.name}: column {col!r} has dtype {df.schema[col]}, expected {dtype}"
                )
            if col not in self.nullable and df[col].null_count():
                raise SchemaError(f"{self.name}: column {col!r} has {df[col].null_count()} null values")
        unknown = [c for c in df.columns if c not in expected]
        if unknown:
            raise SchemaError(f"{self.name}: unexpected column(s) {unknown}")
        return df.select(list(expected))


# One row per model per logged epoch. Accuracies are fractions in [0, 1] (null for regression tasks);
# losses are the task objective's (mean cross-entropy in nats for classification; the PINN loss on the
# training points and the MSE against the exact solution on the test grid for `convection`), all
# re-evaluated in eval mode on the full split (not the running training average).
# `checkpoint` is the path of the stored weights relative to the zoo directory, null for epochs that
# were logged but not stored.
CATALOG = Schema(
    "catalog",
    {
        "model_id": pl.String,
        "arch": pl.String,
        "seed": pl.Int64,
        "epoch": pl.Int64,
        "n_params": pl.Int64,
        "train_loss": pl.Float64,
        "train_acc": pl.Float64,
        "test_loss": pl.Float64,
        "test_acc": pl.Float64,
        "checkpoint": pl.String,
    },
    nullable=frozenset({"checkpoint", "train_acc", "test_acc"}),
)

KNOB_DTYPES = {int: pl.Int64, float: pl.Float64}

# Long format, one row per value, so new metrics never change the schema. `other_id` is set for pair
# metrics (the second model; "cell" for cell-scope metrics, computed over all seeds of the cell of
# `model_id`), `split` for data metrics ("train"/"test"), `layer` for per-layer values
# (the module path, e.g. "1"), `coord` for curves (t along a path, λ on a spectral-density grid).
# `params_hash` identifies the metric's parameters, so reruns with other settings never collide.
# A failed computation is kept as a row with a null value and the reason in `error`.
METRICS = Schema(
    "metrics",
    {
        "model_id": pl.String,
        "other_id": pl.String,
        "epoch": pl.Int64,
        "metric": pl.String,
        "split": pl.String,
        "layer": pl.String,
        "coord": pl.Float64,
        "value": pl.Float64,
        "stderr": pl.Float64,
        "params_hash": pl.String,
        "error": pl.String,
    },
    nullable=frozenset({"other_id", "split", "layer", "coord", "value", "stderr", "error"}),
)

# Weight-space embeddings: 2-D coordinates of every stored checkpoint, per method (pca, umap) and epoch.
EMBEDDINGS = Schema(
    "embeddings",
    {"model_id": pl.String, "epoch": pl.Int64, "method": pl.String, "x": pl.Float64, "y": pl.Float64},
)

# Ensembles drawn by phase (analysis.studies.phase_ensembles): one row per drawn ensemble of test-set members.
# `kind` is "consistent" (every member from one phase) or "across" (every member from another phase);
# `phases` the members' phases joined by "+", `members` their model ids joined by ",".
PHASE_ENSEMBLES = Schema(
    "phase_ensembles",
    {"epoch": pl.Int64, "kind": pl.String, "phases": pl.String, "members": pl.String, "acc": pl.Float64,
     "nll": pl.Float64, "acc_gain": pl.Float64, "nll_gain": pl.Float64, "disagreement": pl.Float64},
)

# Phase labels (`phasezoo phases`, analysis.taxonomy.phases and .stability): one row per grid cell per analysis
# epoch, the two axis knobs passed in as `knobs`. Per taxonomy quantity (analysis.taxonomy.cells.QUANTITIES, in
# its order: tests/test_stability.py) the cell aggregate and its spread over seeds or seed pairs (null where a
# cell has no value); then the label, the signed margins to the thresholds (decades of loss, points of mc, CKA
# units), the thresholds used, and the bootstrap's label stability (the fraction of seed/pair resamples keeping
# the label, null where a cell has fewer than two seeds or pairs) with the most frequent other label and its
# share (null where no resample gave another). With a Hessian threshold the table also has `hessian_vote`
# (String), passed in with the knobs.
PHASE_QUANTITIES = ("train_loss", "test_acc", "hessian_trace", "hessian_top_eigenvalue", "mc", "mc_linear", "cka")
PHASE_LABELS = Schema(
    "phases",
    {
        **{f"{q}{s}": pl.Int64 if s == "_n" else pl.Float64 for q in PHASE_QUANTITIES
           for s in ("", "_std", "_min", "_max", "_n")},
        "phase": pl.String,
        "margin_loss": pl.Float64,
        "margin_mc": pl.Float64,
        "margin_cka": pl.Float64,
        "near_boundary": pl.Boolean,
        "epoch": pl.Int64,
        "tau_loss": pl.Float64,
        "eps_mc": pl.Float64,
        "tau_cka": pl.Float64,
        "stability": pl.Float64,
        "runner_up": pl.String,
        "runner_up_share": pl.Float64,
    },
    nullable=frozenset({*(f"{q}{s}" for q in PHASE_QUANTITIES for s in ("", "_std", "_min", "_max", "_n")),
                        "margin_loss", "margin_mc", "margin_cka", "stability", "runner_up", "runner_up_share"}),
)
