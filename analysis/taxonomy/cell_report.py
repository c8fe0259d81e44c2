"""What the rules know about one cell (or one upload) and how sure they are: each taxonomy quantity against its
threshold, its margin, and the phase a crossing of that one threshold would give (science.md §1).

The phase and the margins are those of analysis.taxonomy.phases.classify (one source); the phase beyond a
threshold is `label` with that quantity moved just across it and the others unchanged, so "would be III with a
barrier" is the rules' own answer, not a paraphrase of them.
"""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import polars as pl

from analysis.taxonomy.cells import QUANTITIES
from analysis.taxonomy.phases import NEAR, NEEDED, Thresholds, classify, label

SYMBOLS = {"train_loss": "τ_L", "mc": "−ε", "cka": "τ_C"}  # the boundary each quantity is compared with
THRESHOLDS = {"train_loss": "τ_L", "mc": "ε", "cka": "τ_C"}  # the thresholds' own names (Thresholds' fields)
_MARGIN = {"train_loss": "margin_loss", "mc": "margin_mc", "cka": "margin_cka"}  # classify's margin columns
# (the rule's side above the boundary, below it): what the cell is on each side, in words
_SIDES = {"train_loss": ("if under-fitted", "if fitted"), "mc": ("without the barrier", "with a barrier"),
          "cka": ("with similar seeds", "with dissimilar seeds")}


@dataclass(frozen=True)
class ThresholdCheck:
    """One taxonomy quantity against its threshold. `margin` is classify's, in the threshold's own scale
    (`margin_unit`: decades of the ratio to τ_L, the task's mc unit, CKA units), signed: above the boundary
    > 0. `flips_to` is the phase with this quantity just across the boundary (None without a value)."""

    quantity: str  # train_loss, mc, cka
    label: str  # its human name (analysis.taxonomy.cells.QUANTITIES)
    unit: str  # its value's unit on the task
    value: float | None
    symbol: str  # τ_L, −ε, τ_C
    boundary: float | None  # where the rule switches: τ_L, −ε, τ_C
    margin: float | None
    margin_unit: str
    used: bool  # whether the rules used it for this phase (CKA splits phase IV only)
    near: bool  # used and within analysis.taxonomy.phases.NEAR of the boundary
    flips_to: str | None

    @property
    def side(self) -> str | None:
        """"above" or "below" the boundary (on it counts as the side the rule puts it: a train loss equal to
        τ_L is fitted, a CKA equal to τ_C is IV-B)."""
        if self.margin is None:
            return None
        return "above" if (self.margin > 0 if self.quantity == "train_loss" else self.margin >= 0) else "below"

    def sentence(self) -> str:
        """"mc −2.1 % points, −ε = −1: 1.1 % points below → would be IV-A without the barrier"."""
        unit = f" {self.unit}" if self.unit and self.value is not None else ""
        head = f"{self.label} {_num(self.value)}{unit}, {self.symbol} = {_num(self.boundary)}"
        if self.value is None:
            return head + ": no value"
        if self.boundary is None:
            return head + ": the threshold is undefined for this zoo"
        if self.margin is None:  # a train loss of 0 has no ratio to τ_L in decades
            return head + ": no margin"
        words = _SIDES[self.quantity][0 if self.side == "below" else 1]  # the side it would cross to
        margin_unit = f" {self.margin_unit}" if self.margin_unit else ""
        tail = f"{_num(abs(self.margin))}{margin_unit} {self.side}"
        if not self.used:
            return f"{head}: {tail} (not used outside phase IV)"
        return f"{head}: {tail} → would be {self.flips_to} {words}"


def _num(v: float | None) -> str:
    return "—" if v is None or not math.isfinite(v) else f"{v:.3g}".replace("-", "−")  # a minus sign, not a hyphen


def _finite(v) -> bool:
    return v is not None and math.isfinite(v)


def _across(quantity: str, value: float, boundary: float) -> float:
    """A value just on the other side of `boundary` than `value`, as the rule decides sides."""
    if quantity == "train_loss":  # under-fitted iff loss > τ_L
        return boundary if value > boundary else math.nextafter(boundary, math.inf)
    if quantity == "mc":  # a barrier iff mc < −ε
        return boundary if value < boundary else math.nextafter(boundary, -math.inf)
    return math.nextafter(boundary, -math.inf) if value >= boundary else boundary  # IV-B iff cka ≥ τ_C


@dataclass(frozen=True)
class CellEvidence:
    """A cell's phase under thresholds `th`, with each quantity's check."""

    phase: str
    checks: tuple[ThresholdCheck, ...]
    provenance: Mapping[str, str]  # threshold -> where its value comes from

    @property
    def near_boundary(self) -> bool:
        return any(c.near for c in self.checks)

    def provenance_text(self) -> str:
        """"τ_L: 10 × the grid's smallest …; ε: …; τ_C: …"."""
        return "; ".join(f"{THRESHOLDS.get(k, k)}: {v}" for k, v in self.provenance.items())

    def check(self, quantity: str) -> ThresholdCheck:
        return next(c for c in self.checks if c.quantity == quantity)


def evidence(values: Mapping[str, float | None], th: Thresholds, task: str) -> CellEvidence:
    """The rules on one cell's (or one model's) `values` of train_loss, mc and cka (None or NaN: missing) on
    `task` (for the units), with thresholds `th`."""
    v = {q: (float(values[q]) if _finite(values.get(q)) else None) for q in NEEDED}
    ruled = classify(pl.DataFrame({q: [v[q]] for q in NEEDED}, schema={q: pl.Float64 for q in NEEDED}), th)
    row = ruled.row(0, named=True)
    boundaries = {"train_loss": th.train_loss, "mc": -th.mc, "cka": th.cka}
    checks = []
    for q in NEEDED:
        b, margin = boundaries[q], row[_MARGIN[q]]
        margin = margin if _finite(margin) else None
        used = q != "cka" or row["phase"] in ("IV-A", "IV-B")
        flips = None
        if v[q] is not None and _finite(b):
            flips = label(**{**v, q: _across(q, v[q], b)}, th=th)
        quantity = QUANTITIES[q]
        checks.append(ThresholdCheck(
            q, quantity.label, quantity.unit(task), v[q], SYMBOLS[q], b if _finite(b) else None, margin,
            "decades" if q == "train_loss" else quantity.unit(task), used,
            used and margin is not None and abs(margin) < NEAR[q], flips))
    return CellEvidence(row["phase"], tuple(checks), dict(th.provenance))
