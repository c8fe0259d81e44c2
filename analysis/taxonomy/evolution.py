"""Phases over training: every cell's phase at every analysis epoch, and the epochs where it changes.

Each epoch is labelled by the default thresholds of its own cells (analysis.taxonomy.phases): τ_L and τ_C
are zoo-relative, so a threshold fixed at the last epoch would call most early cells under-fitted by
construction. A label change between consecutive analysis epochs is a transition, dated by the later epoch
(the first at which the new phase is seen: the change happened at some time in between).
"""
from __future__ import annotations

from collections.abc import Mapping

import polars as pl

from analysis.taxonomy.phases import label_by_default
from analysis.taxonomy.stability import UNSTABLE


def label_epochs(cells_by_epoch: Mapping[int, pl.DataFrame]) -> pl.DataFrame:
    """The cell tables of each analysis epoch, classified by that epoch's default thresholds and stacked with
    an `epoch` column. An epoch whose cells lack mode connectivity or any training loss is all unclassified."""
    frames = []
    for epoch, cells in sorted(cells_by_epoch.items()):
        if cells.is_empty():
            continue
        frames.append(label_by_default(cells).with_columns(epoch=pl.lit(epoch, pl.Int64)))
    return pl.concat(frames, how="diagonal_relaxed") if frames else pl.DataFrame()


def transitions(labelled: pl.DataFrame, load: str, temperature: str) -> pl.DataFrame:
    """One row per change of a cell's phase between consecutive analysis epochs (at which that cell has a
    label): the knobs, `epoch` (the first epoch with the new phase), `previous_epoch`, `from_phase`,
    `to_phase`; sorted by cell and epoch. Where `labelled` has the bootstrap's `stability`
    (analysis.taxonomy.stability), also `from_stability`, `to_stability` and `firm`: both labels kept by at
    least UNSTABLE of the resamples — a change between two such labels is not a resampling artefact."""
    keys = [load, temperature]
    has = "stability" in labelled.columns
    out = (labelled.select(*keys, "epoch", "phase", *(["stability"] if has else [])).sort(*keys, "epoch")
           .with_columns(pl.col("phase").shift(1).over(keys).alias("from_phase"),
                         pl.col("epoch").shift(1).over(keys).alias("previous_epoch"),
                         *([pl.col("stability").shift(1).over(keys).alias("from_stability")] if has else []))
           .filter(pl.col("from_phase").is_not_null() & (pl.col("from_phase") != pl.col("phase"))))
    if has:
        out = out.with_columns(to_stability=pl.col("stability"),
                               firm=((pl.col("from_stability") >= UNSTABLE) & (pl.col("stability") >= UNSTABLE))
                               .fill_null(False))
    return out.select(*keys, "epoch", "previous_epoch", "from_phase", pl.col("phase").alias("to_phase"),
                      *(["from_stability", "to_stability", "firm"] if has else []))


def changes(labelled: pl.DataFrame, load: str, temperature: str) -> pl.DataFrame:
    """Per pair of consecutive analysis epochs: `previous_epoch`, `epoch`, `cells` (labelled at both) and
    `changed` (how many of those changed phase)."""
    epochs = sorted(labelled["epoch"].unique().to_list())
    moved = transitions(labelled, load, temperature)
    rows = []
    for before, after in zip(epochs, epochs[1:]):
        both = (labelled.filter(pl.col("epoch") == before).select(load, temperature)
                .join(labelled.filter(pl.col("epoch") == after).select(load, temperature), on=[load, temperature]))
        changed = moved.filter((pl.col("previous_epoch") == before) & (pl.col("epoch") == after)).height
        rows.append({"previous_epoch": before, "epoch": after, "cells": both.height, "changed": changed})
    return pl.DataFrame(rows, schema={"previous_epoch": pl.Int64, "epoch": pl.Int64, "cells": pl.Int64,
                                      "changed": pl.Int64})


def histories(labelled: pl.DataFrame, load: str, temperature: str) -> pl.DataFrame:
    """The phase-transition summary: one row per cell labelled at some analysis epoch — the knobs, `path` (its
    phases in order, each with the first analysis epoch showing it: "III@100 → IV-B@500"), `changes` (how many
    times its phase changed), `first_change` and `last_change` (the first analysis epochs showing a new phase;
    null for a cell that never changed) and `final_phase` (its label at its last labelled epoch); sorted by
    the knobs. `path` leaves out a run of the same phase: III at 100, 250 and 500 is "III@100"."""
    keys = [load, temperature]
    runs = (labelled.select(*keys, "epoch", "phase").sort(*keys, "epoch")
            .with_columns(new=(pl.col("phase") != pl.col("phase").shift(1).over(keys)).fill_null(True))
            .filter(pl.col("new")))
    return (runs.group_by(keys, maintain_order=True)
            .agg(path=pl.concat_str("phase", pl.lit("@"), pl.col("epoch").cast(pl.String)).str.join(" → "),
                 changes=(pl.len() - 1).cast(pl.Int64),
                 first_change=pl.col("epoch").slice(1, 1).first(),  # null: a single run
                 last_change=pl.when(pl.len() > 1).then(pl.col("epoch").last()),
                 final_phase=pl.col("phase").last())
            .sort(keys))
