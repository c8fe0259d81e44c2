"""Label stability: how often a cell keeps its phase when its seeds and seed pairs are resampled.

A cell's label rests on three seeds and three seed pairs. The bootstrap (Efron 1979; Efron & Tibshirani 1993,
*An Introduction to the Bootstrap*, ch. 6) redraws each cell's seeds with replacement for the per-model
quantity (train loss) and, independently, its seed pairs with replacement for the pair quantities (mc and CKA,
a pair's two values drawn together), re-aggregates every resample the way `cell_table` does (each quantity's
declared aggregate, `QUANTITIES[q].aggregate`) and relabels it with `phases.label`.

Thresholds. The observed labels use zoo-relative thresholds (τ_L from the grid's smallest loss, τ_C from the
phase-IV CKA range), which are themselves estimates from the same seeds. The honest bootstrap therefore
resamples every cell of the grid jointly and re-derives the thresholds on each resampled grid (`rule`: a
function of a cell table returning Thresholds, e.g. `default_thresholds`): the CLI and the dashboard's
default map do this. Thresholds a user fixed (the dashboard's sliders, `label_cells(thresholds=Thresholds(…))`)
stay fixed in every resample: then only the cells' own values move.

Why seeds and pairs independently: with three seeds, a seed resample such as (a, a, b) holds one distinct
pair and (a, a, a) none, so pairs induced by resampled seeds would leave most resamples without an mc.

Why B = 200 is enough: a stability is a fraction p of B resamples; its Monte-Carlo standard error
sqrt(p (1 − p) / B) is at most 0.5 / sqrt(200) ≈ 0.035, well inside the 0.2 between "stable" (1.0) and the
`UNSTABLE` line (0.8). (The bootstrap's own limits are wider: three seeds give 10 distinct seed resamples.)

A cell with fewer than two seeds or fewer than two seed pairs with an mc cannot be resampled: every resample
would be the observed cell, so "1.0" would claim a certainty no data supports; its stability is null ("cannot
resample one seed"), as are its runner-up and share.

    bootstrap(units, labelled, axes, rule)      # units: per_unit_values rows; labelled: classify's output
    .frame()                                     # <load>, <temperature>, stability, runner_up, runner_up_share
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

from analysis.metrics.outputs import Aggregate
from analysis.taxonomy.cells import QUANTITIES
from analysis.taxonomy.phases import NEEDED, PHASES, UNCLASSIFIED, Thresholds, label
from data.zoo.schema import PHASE_LABELS
from data.zoo.spec import ZooSpec

RESAMPLES = 200  # B: binomial SE of a stability ≤ 0.035 (module docstring)
SEED = 0  # the RNG seed the CLI, the API and the dashboard use: the stored stabilities are reproducible
UNSTABLE = 0.8  # a cell kept by fewer than this fraction of resamples is drawn and listed as unstable
LABELS = (*PHASES, UNCLASSIFIED)  # every label a resample can get, in the taxonomy's order (ties: the first)
COLUMNS = ("stability", "runner_up", "runner_up_share")
SCHEMA = {"stability": pl.Float64, "runner_up": pl.String, "runner_up_share": pl.Float64}

ThresholdRule = Callable[[pl.DataFrame], Thresholds]


@dataclass(frozen=True)
class CellStability:
    """One cell's stability: `stability` of `resamples` kept its `phase`; `runner_up` the most frequent other
    label (`runner_up_share` of them); all None where the cell cannot be resampled."""

    phase: str
    stability: float | None
    runner_up: str | None
    runner_up_share: float | None
    resamples: int

    @property
    def stderr(self) -> float | None:
        """Monte-Carlo standard error of `stability` (binomial, B resamples)."""
        s = self.stability
        return None if s is None else float(np.sqrt(s * (1 - s) / self.resamples))

    @property
    def unstable(self) -> bool:
        return self.stability is not None and self.stability < UNSTABLE

    def sentence(self) -> str:
        """"stable: 93 % of 200 seed resamples keep it; runner-up IV-A 7 %" (or why there is no stability)."""
        if self.stability is None:
            return "stability unknown: fewer than two seeds or seed pairs (cannot resample one seed)"
        head = (f"{'unstable' if self.unstable else 'stable'}: {100 * self.stability:.0f} % of {self.resamples} seed "
                "resamples keep it")
        return head + (f"; runner-up {self.runner_up} {100 * self.runner_up_share:.0f} %" if self.runner_up else
                       "; no resample gave another label")


@dataclass(frozen=True)
class Stability:
    """The bootstrap of a grid's labels. `counts[c, k]`: resamples that gave cell c label LABELS[k];
    `resampled[c]`: whether cell c could be resampled (≥ 2 seeds and ≥ 2 pairs with an mc)."""

    knobs: pl.DataFrame  # the cells' <load>, <temperature>, in the labelled frame's order
    phases: tuple[str, ...]  # each cell's observed label
    counts: np.ndarray  # (cells, len(LABELS)) int
    resampled: np.ndarray  # (cells,) bool
    resamples: int  # B
    rederived: bool  # thresholds re-derived on every resampled grid (else fixed)
    seed: int

    def frame(self) -> pl.DataFrame:
        """<load>, <temperature>, stability (Float64), runner_up (String), runner_up_share (Float64)."""
        rows = [self.cell(i) for i in range(self.knobs.height)]
        return self.knobs.with_columns(
            pl.Series("stability", [r.stability for r in rows], pl.Float64),
            pl.Series("runner_up", [r.runner_up for r in rows], pl.String),
            pl.Series("runner_up_share", [r.runner_up_share for r in rows], pl.Float64))

    def cell(self, i: int) -> CellStability:
        phase = self.phases[i]
        if not self.resampled[i]:
            return CellStability(phase, None, None, None, self.resamples)
        counts = self.counts[i]
        kept = counts[LABELS.index(phase)] / self.resamples
        others = [(int(n), k) for k, n in enumerate(counts) if LABELS[k] != phase and n > 0]
        # the most frequent other label; a tie goes to the first in the taxonomy's order
        best = max(others, key=lambda t: (t[0], -t[1]), default=None)
        return CellStability(phase, float(kept), LABELS[best[1]] if best else None,
                             best[0] / self.resamples if best else None, self.resamples)

    def at(self, load_value, temperature_value) -> CellStability:
        """The stability of the cell at (load, temperature)."""
        a, b = self.knobs.columns
        hits = [i for i, (x, y) in enumerate(self.knobs.iter_rows()) if x == load_value and y == temperature_value]
        if not hits:
            raise ValueError(f"no cell {a}={load_value}, {b}={temperature_value} in the bootstrap")
        return self.cell(hits[0])


def _padded(groups: list[np.ndarray], width: int) -> tuple[np.ndarray, np.ndarray]:
    """(cells, width) values padded with 0 and their (cells,) counts."""
    out = np.zeros((len(groups), max(width, 1)))
    for i, g in enumerate(groups):
        out[i, :len(g)] = g
    return out, np.array([len(g) for g in groups], dtype=np.int64)


def _draw(rng: np.random.Generator, n: np.ndarray, width: int, resamples: int) -> tuple[np.ndarray, np.ndarray]:
    """Bootstrap indices (B, cells, width) drawing from each cell's first n[c] units, and the mask of the
    positions a resample of size n[c] uses (a cell with n units draws n of them)."""
    width = max(width, 1)
    u = rng.random((resamples, len(n), width))
    idx = np.minimum((u * n[None, :, None]).astype(np.int64), np.maximum(n - 1, 0)[None, :, None])
    return idx, np.arange(width)[None, None, :] < n[None, :, None]


def _mean(values: np.ndarray, present: np.ndarray, idx: np.ndarray, used: np.ndarray) -> np.ndarray:
    """Per resample and cell, the mean of the drawn units that have a value (NaN where none has): the
    resample's cell mean, as cell_table's mean over the rows present. values, present: (cells, width)."""
    cells = np.arange(values.shape[0])[None, :, None]
    take = used & present[cells, idx]
    total = np.where(take, values[cells, idx], 0.0).sum(axis=2)
    count = take.sum(axis=2)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(count > 0, total / np.maximum(count, 1), np.nan)


def _aggregated(agg: Aggregate, mean: np.ndarray) -> np.ndarray:
    """A cell's aggregate from its seed mean: the mean itself, or ln of it (Aggregate.expr on arrays)."""
    if agg.name == "mean":
        return mean
    if agg.name == "log_mean":
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.log(mean)
    raise ValueError(f"aggregate {agg.name!r}: the bootstrap knows mean and log_mean")


def _units(units: pl.DataFrame, keys: pl.DataFrame, axes: Sequence[str], name: str) -> pl.DataFrame:
    """One quantity's rows of the cells in `keys`: <axes>, model_id, other_id, value."""
    got = units.filter(pl.col("quantity") == name).select(*axes, "model_id", "other_id", "value")
    return got.join(keys, on=list(axes), how="semi")


def bootstrap(units: pl.DataFrame, labelled: pl.DataFrame, axes: Sequence[str],
              thresholds: Thresholds | ThresholdRule, *, resamples: int = RESAMPLES, seed: int = SEED) -> Stability:
    """Resample every cell's seeds and seed pairs `resamples` times (jointly over the grid) and count the labels.

    `units`: per_unit_values rows (quantity, model_id, other_id, <axes>, value) at one epoch; `labelled`: the
    observed labels (classify's output: <axes>, phase). `thresholds`: fixed Thresholds, or a rule re-deriving
    them from each resampled cell table (columns <axes>, train_loss, mc, cka; missing values null)."""
    if resamples < 1:
        raise ValueError(f"resamples must be at least 1, got {resamples}")
    missing = [c for c in (*axes, "phase") if c not in labelled.columns]
    if missing:
        raise ValueError(f"labelled cells lack column(s) {missing}")
    keys = labelled.select(*axes)
    idx_of = {k: i for i, k in enumerate(keys.iter_rows())}
    units = units.sort(*axes, "model_id", "other_id", nulls_last=True)  # a fixed order: reproducible draws
    n_cells = keys.height

    def groups(frame: pl.DataFrame, cols: Sequence[str]) -> list[list[np.ndarray]]:
        out = [[np.empty(0) for _ in range(n_cells)] for _ in cols]
        for key, part in frame.group_by(list(axes), maintain_order=True):
            i = idx_of.get(tuple(key))
            if i is not None:
                for g, c in zip(out, cols):
                    g[i] = part[c].to_numpy().astype(float)
        return out

    rows_of = {q: _units(units, keys, axes, q) for q in NEEDED}
    per_pair = [q for q in NEEDED if rows_of[q]["other_id"].is_not_null().any()]
    per_seed = [q for q in NEEDED if q not in per_pair]
    rng = np.random.default_rng(seed)
    resampled_values: dict[str, np.ndarray] = {}
    n_units = {}
    for kind, names, key in (("seed", per_seed, ["model_id"]), ("pair", per_pair, ["model_id", "other_id"])):
        if not names:
            continue
        # one row per unit (seed or pair) with each quantity's value, null where that unit lacks it
        table = None
        for q in names:
            t = rows_of[q].select(*axes, *key, pl.col("value").alias(q))
            table = t if table is None else table.join(t, on=[*axes, *key], how="full", coalesce=True,
                                                       nulls_equal=True)
        table = table.sort(*axes, *key)
        present_groups = groups(table.select(*axes, *(pl.col(q).is_not_null().alias(q) for q in names)), names)
        value_groups = groups(table.select(*axes, *(pl.col(q).fill_null(0.0) for q in names)), names)
        width = max((len(g) for g in value_groups[0]), default=1)
        n = np.array([len(g) for g in value_groups[0]], dtype=np.int64)
        n_units[kind] = n if kind == "seed" else np.array(
            [int(p.sum()) for p in present_groups[names.index("mc")]] if "mc" in names else n)
        idx, used = _draw(rng, n, width, resamples)
        for q, vals, pres in zip(names, value_groups, present_groups):
            v, _ = _padded(vals, width)
            p, _ = _padded([x.astype(float) for x in pres], width)
            agg = QUANTITIES[q].aggregate if q in QUANTITIES else Aggregate("mean")
            resampled_values[q] = _aggregated(agg, _mean(v, p.astype(bool), idx, used))  # (B, cells)
    for q in NEEDED:  # a quantity no cell has: every resample lacks it
        resampled_values.setdefault(q, np.full((resamples, n_cells), np.nan))
    enough = np.ones(n_cells, dtype=bool)
    for kind in ("seed", "pair"):
        enough &= n_units.get(kind, np.zeros(n_cells, dtype=np.int64)) >= 2

    counts = np.zeros((n_cells, len(LABELS)), dtype=np.int64)
    fixed = thresholds if isinstance(thresholds, Thresholds) else None
    lab_index = {name: k for k, name in enumerate(LABELS)}
    for b in range(resamples):
        tl, mc, cka = (resampled_values[q][b] for q in NEEDED)
        th = fixed or thresholds(_resampled_cells(keys, tl, mc, cka))
        for c in range(n_cells):
            counts[c, lab_index[label(float(tl[c]), float(mc[c]), float(cka[c]), th)]] += 1
    return Stability(keys, tuple(labelled["phase"].to_list()), counts, enough, resamples, fixed is None, seed)


def _resampled_cells(keys: pl.DataFrame, tl: np.ndarray, mc: np.ndarray, cka: np.ndarray) -> pl.DataFrame:
    """A resampled cell table for a threshold rule: a cell without a value has null there, as in cell_table
    (a NaN would pass Polars' comparisons: NaN sorts above every number)."""
    return keys.with_columns(*(pl.Series(name, v, pl.Float64, nan_to_null=True)
                               for name, v in (("train_loss", tl), ("mc", mc), ("cka", cka))))


def with_stability(labelled: pl.DataFrame, stability: Stability, axes: Sequence[str]) -> pl.DataFrame:
    """`labelled` with the stability columns (COLUMNS) joined on its cells, in its row order."""
    return labelled.join(stability.frame(), on=list(axes), how="left", maintain_order="left", nulls_equal=True)


def labels_table(labelled: pl.DataFrame, units: pl.DataFrame, spec: ZooSpec, thresholds: Thresholds | ThresholdRule,
                 *, resamples: int = RESAMPLES, seed: int = SEED) -> pl.DataFrame:
    """The phases table `phasezoo phases --zoo` writes and `label_cells` returns, for one epoch: `labelled`
    (classify's output with epoch, tau_loss, eps_mc, tau_cka) with the bootstrap's columns, validated against
    its declared schema (data.zoo.schema.PHASE_LABELS), the axis knobs first."""
    axes = [spec.load.knob, spec.temperature.knob]
    out = with_stability(labelled, bootstrap(units, labelled, axes, thresholds, resamples=resamples, seed=seed), axes)
    extra = {"hessian_vote": pl.String} if "hessian_vote" in out.columns else {}
    out = PHASE_LABELS.validate(out, {**{a: spec.knob_dtypes[a] for a in axes}, **extra})
    return out.select(*axes, pl.exclude(axes))


def stability_summary(labelled: pl.DataFrame, axes: Sequence[str], resamples: int = RESAMPLES) -> str:
    """One line for the CLI: how many cells of a labels table are unstable, and which (least stable first)."""
    a, b = axes
    bad = labelled.filter(pl.col("stability") < UNSTABLE).sort("stability")
    unknown = labelled["stability"].null_count()
    head = f"stability ({resamples} seed/pair resamples): {bad.height} of {labelled.height} cells below {UNSTABLE}"
    listed = ", ".join(f"{r[a]}/{r[b]} {r['phase']} {r['stability']:.3g} (runner-up {r['runner_up']})"
                       for r in bad.iter_rows(named=True))
    return head + (f" [{a}/{b}: {listed}]" if listed else "") + (f"; {unknown} cannot be resampled" if unknown else "")
