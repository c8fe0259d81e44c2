"""Threshold sensitivity: how far each threshold can move, the others held, before a cell's label flips.

The rules (analysis.taxonomy.phases.label) compare each cell value with one threshold at a time, so along one
threshold a cell's label is a step function with a single step, at the threshold equal to the cell's value:

    τ_L: at τ_L' = the cell's train loss        move in decades, log10(loss / τ_L) (= its margin_loss)
    ε:   at ε'   = −mc                          move in points of mc, −mc − ε (= −margin_mc); ε' ≥ 0 only
    τ_C: at τ_C' = the cell's CKA (phase IV)    move in CKA units, cka − τ_C (= margin_cka)

A move is signed (positive: raise the threshold). Where crossing that step leaves the label as it was (τ_C of a
cell outside phase IV, any threshold of a cell missing the values it needs) no move of that threshold alone
changes it: the move is null and the distance inf. ε stays ≥ 0 (the slider's floor, a tolerance): a
connected cell with mc ≥ 0 never flips by ε. Yang et al. (2021) and Schürholt et al. (2025) drew their
boundaries by eye; this says how much of a map hangs on where exactly they are drawn.

    sensitivity(labelled_cells, th).frame()      # <axes>, threshold, move, distance, flips_to
    relabelled(sens, "train_loss", shifts)       # cells relabelled at each shift of one threshold
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import polars as pl

from analysis.taxonomy.phases import NEEDED, Thresholds, label

THRESHOLDS = ("train_loss", "mc", "cka")  # Thresholds' fields, each with its own scale below
SCALE = {"train_loss": "decades", "mc": "points", "cka": "CKA units"}  # the unit of a move of each
SYMBOL = {"train_loss": "τ_L", "mc": "ε", "cka": "τ_C"}


def shifted(th: Thresholds, name: str, move: float) -> Thresholds:
    """`th` with one threshold moved by `move` in its scale (decades for τ_L: τ_L · 10^move)."""
    if name not in THRESHOLDS:
        raise ValueError(f"threshold {name!r}: expected one of {list(THRESHOLDS)}")
    value = th.train_loss * 10.0**move if name == "train_loss" else getattr(th, name) + move
    return replace(th, **{name: value})


@dataclass(frozen=True)
class Flip:
    """The smallest move of one threshold that changes one cell's label: `move` (signed, in SCALE[threshold];
    None where none does) and the label it gives (`flips_to`). The move is reached exactly when the flip
    happens at equality (raising τ_L to a loss, ε to −mc, lowering τ_C to a CKA), else it is the infimum."""

    threshold: str
    move: float | None
    flips_to: str | None
    direction: int = 0  # +1: the flip lies above the threshold, −1: below (a move of 0 still has a side)

    @property
    def distance(self) -> float:
        return math.inf if self.move is None else abs(self.move)

    def sentence(self, unit: str = "") -> str:
        """"τ_L: 0.42 decades up → IV-A", or "τ_C: no move alone changes it". `unit` names the move's unit
        where the task's differs from SCALE's (a regression zoo's mc is in decades of loss)."""
        return f"{SYMBOL[self.threshold]}: {self.words(unit)}"

    def words(self, unit: str = "") -> str:
        """The sentence without its threshold: "0.42 decades up → IV-A"."""
        if self.move is None:
            return "no move alone changes it"
        way = "up" if self.direction > 0 else "down"
        return f"{abs(self.move):.3g} {unit or SCALE[self.threshold]} {way} → {self.flips_to}"


def _finite(x) -> bool:
    return x is not None and isinstance(x, int | float) and math.isfinite(x)


def flip(train_loss, mc, cka, th: Thresholds, name: str) -> Flip:
    """The smallest move of threshold `name` (τ_L, ε or τ_C) that changes the label of a cell with these values."""
    now = label(train_loss, mc, cka, th)
    if name == "train_loss":
        if not (_finite(train_loss) and train_loss > 0 and th.train_loss > 0):
            return Flip(name, None, None)
        # under-fitted (loss > τ_L): raising τ_L to the loss fits it; fitted: τ_L just below the loss
        to = train_loss if train_loss > th.train_loss else float(np.nextafter(train_loss, 0.0))
        move, new = math.log10(train_loss / th.train_loss), replace(th, train_loss=to)
    elif name == "mc":
        if not _finite(mc):
            return Flip(name, None, None)
        # a barrier (mc < −ε): ε raised to −mc connects it; connected: ε just below −mc, if that is ≥ 0
        to = -mc if mc < -th.mc else float(np.nextafter(-mc, -math.inf))
        if to < 0:
            return Flip(name, None, None)
        move, new = -mc - th.mc, replace(th, mc=to)
    elif name == "cka":
        if not (_finite(cka) and _finite(th.cka)):
            return Flip(name, None, None)
        # IV-B (cka ≥ τ_C): τ_C just above the CKA; IV-A: lowered to it
        to = float(np.nextafter(cka, math.inf)) if cka >= th.cka else cka
        move, new = cka - th.cka, replace(th, cka=to)
    else:
        raise ValueError(f"threshold {name!r}: expected one of {list(THRESHOLDS)}")
    after = label(train_loss, mc, cka, new)
    side = 1 if getattr(new, name) > getattr(th, name) else -1
    return Flip(name, move, after, side) if after != now else Flip(name, None, None)


@dataclass(frozen=True)
class Sensitivity:
    """Per cell (the labelled frame's order) and threshold, the smallest label-changing move."""

    knobs: pl.DataFrame  # <load>, <temperature>
    phases: tuple[str, ...]
    flips: tuple[tuple[Flip, ...], ...]  # [cell][THRESHOLDS index]
    thresholds: Thresholds
    values: np.ndarray  # (cells, 3): train_loss, mc, cka (NaN: missing), what each threshold is compared with

    def frame(self) -> pl.DataFrame:
        """Tidy: <axes>, threshold, move (Float64, null: none), distance (Float64, inf: none), flips_to."""
        rows = [(i, f) for i, fs in enumerate(self.flips) for f in fs]
        idx = pl.Series([i for i, _ in rows], dtype=pl.UInt32)
        return self.knobs[idx].with_columns(
            pl.Series("phase", [self.phases[i] for i, _ in rows], pl.String),
            pl.Series("threshold", [f.threshold for _, f in rows], pl.String),
            pl.Series("move", [f.move for _, f in rows], pl.Float64),
            pl.Series("distance", [f.distance for _, f in rows], pl.Float64),
            pl.Series("flips_to", [f.flips_to for _, f in rows], pl.String))

    def at(self, load_value, temperature_value) -> tuple[Flip, ...]:
        """The flips of the cell at (load, temperature), one per threshold (THRESHOLDS' order)."""
        for i, (x, y) in enumerate(self.knobs.iter_rows()):
            if x == load_value and y == temperature_value:
                return self.flips[i]
        a, b = self.knobs.columns
        raise ValueError(f"no cell {a}={load_value}, {b}={temperature_value}")

    def moves(self, name: str) -> tuple[np.ndarray, np.ndarray]:
        """(cells,) distances of one threshold's flips (NaN where none changes the label) and their sides
        (+1 above, −1 below, 0 none)."""
        k = THRESHOLDS.index(name)
        return (np.array([np.nan if f[k].move is None else abs(f[k].move) for f in self.flips]),
                np.array([f[k].direction for f in self.flips]))


def sensitivity(labelled: pl.DataFrame, th: Thresholds, axes: Sequence[str] | None = None) -> Sensitivity:
    """Every cell's flips under `th`. `labelled`: a cell table (train_loss, mc, cka and the two axis columns,
    `axes`, default its first two columns) with `phase`."""
    axes = list(axes or labelled.columns[:2])
    missing = [c for c in (*axes, *NEEDED) if c not in labelled.columns]
    if missing:
        raise ValueError(f"cell table lacks column(s) {missing} needed for the threshold sensitivity")
    flips = tuple(tuple(flip(loss, mc, cka, th, name) for name in THRESHOLDS)
                  for loss, mc, cka in labelled.select(NEEDED).iter_rows())
    phases = tuple(labelled["phase"]) if "phase" in labelled.columns else tuple(
        label(*r, th) for r in labelled.select(NEEDED).iter_rows())
    values = labelled.select(pl.col(q).cast(pl.Float64) for q in NEEDED).to_numpy()
    return Sensitivity(labelled.select(axes), phases, flips, th, values)


def relabelled(sens: Sensitivity, name: str, shifts: Sequence[float] | np.ndarray) -> pl.DataFrame:
    """Cells relabelled when threshold `name` alone moves by each shift (its scale): shift, cells (Int64).
    A cell whose label this threshold can change (a flip exists) is relabelled exactly when the shifted
    threshold puts its value on the other side of the rule's comparison (loss > τ_L, mc < −ε, cka ≥ τ_C).
    Shifts that would make ε negative count no cell."""
    k = THRESHOLDS.index(name)
    applies = ~np.isnan(sens.moves(name)[0])[None, :]
    x = sens.values[:, k][None, :]
    s = np.asarray(shifts, dtype=float)[:, None]
    now = getattr(sens.thresholds, name)
    new = now * 10.0**s if name == "train_loss" else now + s  # as `shifted` moves it
    side = {"train_loss": lambda t: x > t, "mc": lambda t: x < -t, "cka": lambda t: x >= t}[name]
    with np.errstate(invalid="ignore"):
        hit = applies & (side(new) != side(now))
    if name == "mc":  # ε' = ε + shift stays ≥ 0
        hit &= new >= 0
    return pl.DataFrame({"shift": s[:, 0], "cells": hit.sum(axis=1).astype(np.int64)})


def shift_grid(name: str, th: Thresholds, steps: int = 81) -> np.ndarray:
    """Shifts a sensitivity chart spans: ±2 decades of τ_L, ε from 0 to ε + 10 points, ±0.5 of τ_C."""
    lo, hi = {"train_loss": (-2.0, 2.0), "mc": (-th.mc, 10.0), "cka": (-0.5, 0.5)}[name]
    return np.unique(np.concatenate([np.linspace(lo, hi, steps), [0.0]]))
