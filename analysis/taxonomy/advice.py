"""What to change: from a cell (or an upload's estimated cell) to the nearest phase IV-B cells of the zoo's own map,
the knob change that reaches each ("2× wider", "4× larger batch") and the test score there — the practical
reading of the taxonomy. Yang et al. 2021 (*Taxonomizing local versus global structure in neural network loss
landscapes*) find the best test accuracy in phase IV-B, well fitted, connected and with similar seeds; here the
map says how far a cell is from it, in which knob, and what the zoo measured there.

Distance: the L1 norm of grid-index steps, Σ over the two axes of |Δ index| along each knob's sorted grid values.
One step is one notch of one knob, so the distance counts the notches to turn; a diagonal move (both knobs) costs
two, and a change of one knob beats an equally far change of two. Ties: the better test score first (higher test
accuracy; for a regression zoo without accuracy, the lower relative L2 error), then fewer knobs changed, then
grid order. A step is a notch of the zoo's grid, not a physical scale: "1 step" is 2× width in mnist1d-mlp and
0.1 of the training fraction in modadd-transformer.

    phasezoo advise --zoo data/zoos/mnist1d-mlp --cell 32,64            # from width 32, batch size 64
    phasezoo advise --zoo data/zoos/modadd-transformer --cell 0.5,0.01 --epoch 1000 -k 5

An upload (analysis.upload.report.Report `r`, compared at epoch `r.epoch`) is advised from its estimated cell, its
own phase and, where it was measured, its own test accuracy, against the zoo's map at that epoch:

    labelled = scored_labels(cell_table(metrics, catalog, spec, r.epoch), metrics, catalog, spec, r.epoch)
    own = next((m.value for m in r.metrics if m.metric == "test_acc" and m.layer is None), None)
    advise_cell(labelled, spec, {knob: v.grid for knob, v in r.cell.items()}, phase=r.phase, score=own)

Its own phase may differ from its cell's: an upload that is IV-A in a cell whose zoo models are IV-B gets the
move "no knob change" (its recipe, not its knobs, differs from the zoo's).
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analysis.taxonomy.cells import CELL_QUANTITIES, cell_table
from analysis.taxonomy.phases import UNCLASSIFIED, label_by_default
from data.cli import run_cli
from data.zoo.spec import ZooSpec

TARGET = "IV-B"  # the generalising phase (analysis.taxonomy.phases decision order, step 3)
METRIC = "grid steps (L1)"  # the module docstring says what it counts
MOVE, ALREADY, NONE = "move", "already", "none"  # Advice.status: not IV-B / IV-B already / no IV-B on the map


# ----------------------------------------------------------------------------- knob changes in words
@dataclass(frozen=True)
class KnobWords:
    """How a change of one knob is said. `style`: "factor" — "2× wider" (the grow / shrink word after the
    ratio); "scaled" — "lr ×3 (1e-3 → 3e-3)"; "values" — "train fraction 0.3 → 0.5". `sci`: values in short
    scientific notation (1e-3), for knobs spanning decades."""

    noun: str
    grow: str = ""  # "wider": the knob's value rises (factor style only)
    shrink: str = ""  # "narrower": it falls
    style: str = "values"
    sci: bool = False


# The built-in zoos' knobs (data/specs/*.toml), declared once; any other knob: "<knob> a → b (×r)".
KNOB_WORDS: Mapping[str, KnobWords] = {
    "width": KnobWords("width", "wider", "narrower", "factor"),
    "batch_size": KnobWords("batch size", "larger batch", "smaller batch", "factor"),
    "lr": KnobWords("lr", style="scaled", sci=True),
    "train_fraction": KnobWords("train fraction"),
    "beta": KnobWords("β"),
}


def _value(v, sci: bool = False) -> str:
    """A knob value: 32, 0.3, 10 (not 10.0), or with `sci` 3e-3."""
    if isinstance(v, float) and sci and v != 0:
        mantissa, exponent = f"{v:.2e}".split("e")
        return f"{mantissa.rstrip('0').rstrip('.')}e{int(exponent)}"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _at(load: str, temperature: str, cell: tuple) -> str:
    """A cell as analysis.taxonomy.cells.cell_label names it, a knob spanning decades in short notation:
    "width=128 · batch_size=64", "train_fraction=0.8 · lr=3e-2"."""
    return " · ".join(f"{knob}={_value(v, knob in KNOB_WORDS and KNOB_WORDS[knob].sci)}"
                      for knob, v in zip((load, temperature), cell))


def _ratio(r: float) -> str:
    return f"{r:.3g}"


@dataclass(frozen=True)
class Change:
    """One knob turned from `before` to `after`, `steps` notches along its sorted grid values (signed)."""

    knob: str
    before: object
    after: object
    steps: int

    def words(self) -> str:
        """"2× wider", "4× smaller batch", "lr ×3 (1e-3 → 3e-3)", "train fraction 0.3 → 0.5", "β 10 → 5",
        an undeclared knob "depth 2 → 4 (×2)"."""
        w = KNOB_WORDS.get(self.knob)
        a, b = float(self.before), float(self.after)
        ratio = b / a if a != 0 else math.inf
        if w is None:
            tail = f" (×{_ratio(ratio)})" if a != 0 and b != 0 else ""
            return f"{self.knob} {_value(self.before)} → {_value(self.after)}{tail}"
        values = f"{_value(self.before, w.sci)} → {_value(self.after, w.sci)}"
        if w.style == "factor" and a > 0 and b > 0:
            return f"{_ratio(max(ratio, 1 / ratio))}× {w.grow if b > a else w.shrink}"
        if w.style == "scaled" and a > 0 and b > 0:
            return f"{w.noun} {'×' if b > a else '÷'}{_ratio(max(ratio, 1 / ratio))} ({values})"
        return f"{w.noun} {values}"


# ----------------------------------------------------------------------------- the score at a cell
@dataclass(frozen=True)
class ScoreKind:
    """A per-cell test score advice reports: its cell-table column (seed std in <column>_std, seed count in
    <column>_n), the metric rows it is aggregated from, and which way is better."""

    column: str
    label: str
    higher_is_better: bool
    percent: bool  # a fraction shown as a percentage
    candidates: tuple[tuple[str, str | None, float | None], ...]


# In order of preference: a classifier's test accuracy; a regression zoo has none, then its relative L2 error
# against the exact solution (analysis.metrics.definitions.performance).
SCORES = (ScoreKind("test_acc", "test accuracy", True, True, tuple(CELL_QUANTITIES["test_acc"])),
          ScoreKind("rel_l2_error", "relative L2 error", False, False, (("rel_l2_error", "test", None),)))


@dataclass(frozen=True)
class Score:
    """A cell's test score: the seed mean ± the seed standard deviation (ddof 1; None for one seed)."""

    kind: ScoreKind
    mean: float
    std: float | None
    n: int

    def better_than(self, other: Score) -> bool:
        return self.mean > other.mean if self.kind.higher_is_better else self.mean < other.mean

    def words(self, seeds: bool = True) -> str:
        """"test accuracy 71.2 ± 1.5 % over 3 seeds", "relative L2 error 0.0657 ± 0.012 over 3 seeds";
        without `seeds` (one model's own value, an upload's) just "test accuracy 50.8 %"."""
        k, spread = self.kind, self.std is not None and math.isfinite(self.std)
        if k.percent:
            body = f"{100 * self.mean:.1f}" + (f" ± {100 * self.std:.1f}" if spread else "") + " %"
        else:
            body = f"{self.mean:.3g}" + (f" ± {self.std:.2g}" if spread else "")
        return f"{k.label} {body}" + (f" over {self.n} seed{'s' if self.n != 1 else ''}" if seeds else "")

    def gain(self, start: Score) -> tuple[float, bool]:
        """(its gain over `start`, better > 0; whether the gain is clear of the seeds' noise: more than two
        standard errors of the difference of the means, √(s₁²/n₁ + s₂²/n₂) — a rough two-σ rule, not a test
        of three seeds' means)."""
        d = (self.mean - start.mean) * (1 if self.kind.higher_is_better else -1)
        var = sum((s.std ** 2) / s.n for s in (self, start) if s.std is not None and math.isfinite(s.std))
        return d, abs(d) > 2 * math.sqrt(var)

    def gain_words(self, start: Score) -> str:
        """Its difference from `start`: "+7.3 points" (of a percentage), "−0.012", then ", within the seeds'
        noise" where the gain is not clear of it (`gain`)."""
        raw = self.mean - start.mean
        text = f"{100 * raw:+.1f} points" if self.kind.percent else f"{raw:+.2g}"
        return text.replace("-", "−") + ("" if self.gain(start)[1] else ", within the seeds' noise")


def score_kind(labelled: pl.DataFrame) -> ScoreKind | None:
    """The first of SCORES the table has a value of, or None."""
    return next((s for s in SCORES if s.column in labelled.columns and labelled[s.column].drop_nans()
                 .drop_nulls().len()), None)


def _score(row: Mapping | None, kind: ScoreKind | None) -> Score | None:
    if row is None or kind is None or row.get(kind.column) is None or math.isnan(row[kind.column]):
        return None
    std, n = row.get(f"{kind.column}_std"), row.get(f"{kind.column}_n")
    return Score(kind, float(row[kind.column]), None if std is None else float(std), int(n) if n is not None else 1)


def with_scores(cells: pl.DataFrame, metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec,
                epoch: int) -> pl.DataFrame:
    """`cells` (a cell_table) with the first score of SCORES that has values joined on where it lacks one: the
    default cell table has test accuracy only, a regression zoo's relative L2 error comes from its metrics."""
    axes = [spec.load.knob, spec.temperature.knob]
    for kind in SCORES:
        if kind.column in cells.columns:
            if score_kind(cells.select(kind.column)) is not None:
                return cells
            continue
        extra = cell_table(metrics, catalog, spec, epoch, {kind.column: list(kind.candidates)})
        if score_kind(extra.select(kind.column)) is not None:
            return cells.join(extra, on=axes, how="left")
    return cells


def scored_labels(cells: pl.DataFrame, metrics: pl.DataFrame, catalog: pl.DataFrame, spec: ZooSpec,
                  epoch: int) -> pl.DataFrame:
    """The table `advise` reads: `cells` (a cell_table at `epoch`) `with_scores`, labelled by the zoo's default
    thresholds (analysis.taxonomy.phases.label_by_default: all unclassified where there are none)."""
    return label_by_default(with_scores(cells, metrics, catalog, spec, epoch))


# ----------------------------------------------------------------------------- moves and the advice
@dataclass(frozen=True)
class Move:
    """One target cell: the knob changes from the start, its grid distance, the phase change and its score."""

    load: str  # the load knob's name
    temperature: str
    cell: tuple[object, object]  # (load value, temperature value) of the target
    changes: tuple[Change, ...]  # the knobs that differ, load first; () = the start's own cell
    steps: int  # L1 grid steps
    phase_from: str
    phase_to: str
    near_boundary: bool  # the target's phase is within a threshold's NEAR distance
    score: Score | None
    start_score: Score | None = None  # the start's, for the gain

    def change_words(self) -> str:
        return ", ".join(c.words() for c in self.changes) or "no knob change"

    def words(self) -> str:
        """"4× wider → width=128 · batch_size=64 (2 steps): I → IV-B, test accuracy 51.8 ± 0.7 % over 3 seeds
        (+7.3 points)"."""
        at = _at(self.load, self.temperature, self.cell)
        near = " (near a threshold)" if self.near_boundary else ""
        score = self.score.words() if self.score else "no test score"
        if self.score and self.start_score:
            score += f" ({self.score.gain_words(self.start_score)})"
        return (f"{self.change_words()} → {at} ({self.steps} step{'s' if self.steps != 1 else ''}): "
                f"{self.phase_from} → {self.phase_to}{near}, {score}")


@dataclass(frozen=True)
class Advice:
    """What to change from one start cell: `status` MOVE (not IV-B: the nearest IV-B cells), ALREADY (IV-B:
    the nearest IV-B cells that score better) or NONE (the map has no IV-B cell)."""

    load: str
    temperature: str
    start: tuple[object, object]
    phase: str  # the start's phase: its cell's, or an upload's own
    score: Score | None  # the start cell's (or the upload's own)
    status: str
    moves: tuple[Move, ...]
    n_target: int  # IV-B cells on the map
    metric: str = METRIC
    own: bool = False  # phase and score are one model's own (an upload's), not its cell's seeds'

    def headline(self) -> str:
        """"width=32 · batch_size=64 is in phase I, test accuracy 44.5 ± 1.1 % over 3 seeds. The nearest of the
        map's 9 IV-B cells, in grid steps (L1):"."""
        at = _at(self.load, self.temperature, self.start)
        who = f"It (compared at {at}) is" if self.own else f"{at} is"
        own = f"{who} in phase {self.phase}" + (f", {self.score.words(seeds=not self.own)}" if self.score else "") + "."
        if self.status == NONE:
            return f"{own} The map has no {TARGET} cell to move to."
        if self.status == ALREADY and not self.moves:
            return f"{own} It is {TARGET} already, and no {TARGET} cell of the map scores better."
        if self.status == ALREADY:
            return (f"{own} It is {TARGET} already; the nearest of the map's {TARGET} cells that score better, "
                    f"in {self.metric}:")
        cells = f"{self.n_target} {TARGET} cell" + ("s" if self.n_target != 1 else "")
        return f"{own} The nearest of the map's {cells}, in {self.metric}:"

    def words(self) -> str:
        return "\n".join([self.headline(), *(f"  {i}. {m.words()}" for i, m in enumerate(self.moves, 1))])


def grid_value(spec: ZooSpec, knob: str, value) -> object:
    """`value` (a grid value, or its text) as the grid's own value of `knob`; ValueError listing the grid's
    values otherwise."""
    grid = sorted(spec.grid[knob])
    v = value
    if isinstance(value, str):  # typed text: in the grid's type ("32.0" is no int grid's value)
        try:
            v = type(grid[0])(value.strip())
        except ValueError:
            v = None
    if v not in grid:
        raise ValueError(f"{knob} {value!r} is not a grid value; {knob} values: {', '.join(map(_value, grid))}")
    return v


def advise(labelled: pl.DataFrame, spec: ZooSpec, load_value, temperature_value, *, k: int = 3,
           phase: str | None = None, score: float | None = None) -> Advice:
    """The nearest IV-B cells of `labelled` (a classify / label_by_default table: both knobs, phase,
    near_boundary and, where it has them, the SCORES columns) to the cell (load_value, temperature_value), up
    to `k`, nearest first (module docstring: distance and ties). `phase` replaces the start cell's phase and
    `score` its score (an upload's own)."""
    if k < 1:
        raise ValueError(f"k = {k}: ask for at least one cell")
    load, temp = spec.load.knob, spec.temperature.knob
    missing = [c for c in (load, temp, "phase") if c not in labelled.columns]
    if missing:
        raise ValueError(f"the labelled table lacks column(s) {missing}; has {labelled.columns}")
    start = (grid_value(spec, load, load_value), grid_value(spec, temp, temperature_value))
    index = {knob: {v: i for i, v in enumerate(sorted(spec.grid[knob]))} for knob in (load, temp)}
    kind = score_kind(labelled)
    rows = {(r[load], r[temp]): r for r in labelled.iter_rows(named=True)
            if r[load] in index[load] and r[temp] in index[temp]}
    own = rows.get(start)
    start_phase = phase or (own["phase"] if own else UNCLASSIFIED)
    start_score = Score(kind, float(score), None, 1) if score is not None and kind else _score(own, kind)
    targets = [c for c, r in rows.items() if r["phase"] == TARGET]
    status = NONE if not targets else ALREADY if start_phase == TARGET else MOVE
    if status == ALREADY:  # only better-scoring IV-B cells are worth a move
        targets = [c for c in targets if c != start and start_score is not None
                   and (s := _score(rows[c], kind)) is not None and s.better_than(start_score)]

    def move(cell) -> Move:
        changes = tuple(Change(knob, a, b, index[knob][b] - index[knob][a])
                        for knob, a, b in ((load, start[0], cell[0]), (temp, start[1], cell[1])) if a != b)
        r = rows[cell]
        return Move(load, temp, cell, changes, sum(abs(c.steps) for c in changes), start_phase, r["phase"],
                    bool(r.get("near_boundary")), _score(r, kind), start_score)

    def rank(m: Move):
        s = m.score.mean * (-1 if m.score.kind.higher_is_better else 1) if m.score else math.inf
        return m.steps, s, len(m.changes), index[load][m.cell[0]], index[temp][m.cell[1]]

    moves = tuple(sorted((move(c) for c in targets), key=rank)[:k])
    return Advice(load, temp, start, start_phase, start_score, status, moves,
                  sum(r["phase"] == TARGET for r in rows.values()), own=phase is not None or score is not None)


def advise_cell(labelled: pl.DataFrame, spec: ZooSpec, cell: Mapping[str, object], **kw) -> Advice:
    """`advise` from a cell given as knob -> grid value (an upload's `{knob: v.grid for knob, v in r.cell.items()}`;
    knobs other than the two axes are ignored)."""
    absent = [knob for knob in (spec.load.knob, spec.temperature.knob) if knob not in cell]
    if absent:
        raise ValueError(f"the cell lacks knob(s) {absent}; it has {list(cell)}")
    return advise(labelled, spec, cell[spec.load.knob], cell[spec.temperature.knob], **kw)


# ----------------------------------------------------------------------------- zoos and the CLI
def zoo_advice_table(zoo, epoch: int | None = None) -> tuple[int, pl.DataFrame]:
    """(epoch, labelled cell table with its score) of a zoo (data.zoo.store.Zoo) at an analysis epoch (default:
    the last); ValueError for an epoch the zoo does not analyse."""
    from data.zoo.store import read_metrics

    if epoch is not None and epoch not in zoo.spec.analysis_epochs:
        raise ValueError(f"epoch {epoch} is not an analysis epoch of {zoo.name}; its analysis epochs: "
                         f"{', '.join(map(str, zoo.spec.analysis_epochs))}")
    epoch = epoch if epoch is not None else max(zoo.spec.analysis_epochs)
    metrics = read_metrics(zoo.root)
    return epoch, scored_labels(cell_table(metrics, zoo.catalog, zoo.spec, epoch), metrics, zoo.catalog, zoo.spec,
                                epoch)


def parse_cell(spec: ZooSpec, text: str) -> tuple[object, object]:
    """"32,64" -> (32, 64) in the grid's types (load first); ValueError naming the grid values."""
    parts = [p.strip() for p in text.split(",")]
    if len(parts) != 2:
        raise ValueError(f"--cell {text!r}: expected LOAD,TEMPERATURE ({spec.load.knob},{spec.temperature.knob}), "
                         f"e.g. {_value(spec.grid[spec.load.knob][0])},{_value(spec.grid[spec.temperature.knob][0])}")
    return grid_value(spec, spec.load.knob, parts[0]), grid_value(spec, spec.temperature.knob, parts[1])


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.taxonomy.advice") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", type=Path, required=True, help="the zoo directory whose phase map is read")
    ap.add_argument("--cell", required=True, metavar="LOAD,TEMPERATURE",
                    help="the start cell's two knob values, load first (e.g. 32,64 for width 32, batch size 64)")
    ap.add_argument("--epoch", type=int, help="the analysis epoch of the map (default: the last)")
    ap.add_argument("-k", type=int, default=3, help="how many cells to list (default 3)")
    args = ap.parse_args(argv)

    def body() -> int:
        from data.zoo.store import Zoo

        zoo = Zoo.open(args.zoo)
        cell = parse_cell(zoo.spec, args.cell)  # bad input fails before the tables are read
        epoch, labelled = zoo_advice_table(zoo, args.epoch)
        advice = advise(labelled, zoo.spec, *cell, k=args.k)
        print(f"{zoo.name}, epoch {epoch}: {advice.words()}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
