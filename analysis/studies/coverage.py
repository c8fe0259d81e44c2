"""A zoo's phase coverage against the literature's: how many cells each phase holds, whether IV-A is a
region, and how far the phases' accuracy order is from IV-B > IV-A > II ≈ III > I.

Yang et al. 2021 (*Taxonomizing local versus global structure in neural network loss landscapes*, Fig. 1
and Table 2) and Schürholt et al. 2025 (*A Model Zoo on Phase Transitions in Neural Networks*) order the
phases' test accuracy IV-B (fitted, connected, similar: generalising) > IV-A (fitted, connected, dissimilar:
over-fitted) > II ≈ III > I. This module compares labelled cell tables of several zoos (variants of one spec,
docs/coverage.md) with that order:

- per zoo: cells per phase, the median test accuracy of each phase's cells (with its bootstrap error), the
  observed order, the IV-A cells and their 4-neighbour regions on the load × temperature grid;
- the order's **Kendall distance** to the target: the share of phase pairs the target orders strictly (II–III
  is a tie there, so that pair never counts) whose medians are in the other order (an exact tie of medians
  counts half, as in Kendall's τ-b); 0 = the literature's order, 1 = reversed; its uncertainty is the
  standard deviation over bootstrap resamples of each phase's cells;
- the issue's acceptance test of a variant against a baseline: the largest IV-A region has ≥ 3 cells, the
  distance is strictly smaller than the baseline's, and no phase the baseline has is lost.

    phasezoo coverage --zoo default=data/zoos/mnist1d-mlp --zoo lr0.02=/tmp/coverage/lr0.02 --maps [--seeds 0,1]
    phasezoo coverage --table a=a.csv --table b=b.csv --load width --temperature batch_size   # labelled tables
"""
from __future__ import annotations

import argparse
import itertools
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl

from data.cli import run_cli

# The literature's order as ranks (1 = best test accuracy); II and III share a rank: "II ≈ III".
TARGET_RANK: Mapping[str, int] = {"IV-B": 1, "IV-A": 2, "II": 3, "III": 3, "I": 4}
TARGET_TEXT = "IV-B > IV-A > II ≈ III > I"
MIN_REGION = 3  # the bar: IV-A a region of at least this many cells
BOOTSTRAP = 1000  # resamples of each phase's cells for the distance's uncertainty
SEED = 0  # the bootstrap's generator: the same tables give the same numbers


@dataclass(frozen=True)
class PhaseStat:
    phase: str
    cells: int
    median_test_acc: float  # median over the phase's cells of the cell's seed-mean test accuracy (0–1)
    stderr: float  # bootstrap standard deviation of that median over resampled cells (0 with one cell)


@dataclass(frozen=True)
class OrderDistance:
    discordant: float  # phase pairs in the other order than the target's (exact ties of medians count 0.5)
    comparable: int  # phase pairs present that the target orders strictly (II–III excluded)
    distance: float  # discordant / comparable, in [0, 1]; NaN with no comparable pair
    stderr: float  # bootstrap standard deviation of `distance`
    wrong_pairs: tuple[str, ...]  # "IV-A > IV-B" for each pair the medians put in the other order


@dataclass(frozen=True)
class ZooCoverage:
    name: str
    n_cells: int
    unclassified: int
    phases: tuple[PhaseStat, ...]  # in the target's order, phases with no cell left out
    order: tuple[str, ...]  # phases by median test accuracy, best first
    order_distance: OrderDistance
    iv_a_cells: int
    iv_a_regions: tuple[int, ...]  # sizes of the 4-neighbour connected IV-A regions, largest first
    iv_a_connected: bool  # all IV-A cells form one region (False with none)

    @property
    def largest_iv_a_region(self) -> int:
        return self.iv_a_regions[0] if self.iv_a_regions else 0

    def cells_of(self, phase: str) -> int:
        return next((p.cells for p in self.phases if p.phase == phase), 0)


@dataclass(frozen=True)
class Acceptance:
    name: str
    baseline: str
    passed: bool
    iv_a_region: bool  # the largest IV-A region has ≥ MIN_REGION cells
    order_moved: bool  # order distance strictly below the baseline's
    phases_kept: bool  # every phase the baseline has is present
    reasons: tuple[str, ...]  # one sentence per condition, with its numbers


# ----------------------------------------------------------------------------- kernels
def phase_stats(phase_acc: Mapping[str, Sequence[float]], rng: np.random.Generator | None = None,
                n_boot: int = BOOTSTRAP) -> tuple[PhaseStat, ...]:
    """Each phase's cell count and median test accuracy with its bootstrap error (phases in the target's
    order; those without cells left out)."""
    rng = rng if rng is not None else np.random.default_rng(SEED)
    out = []
    for phase in TARGET_RANK:
        acc = np.asarray(phase_acc.get(phase, ()), dtype=float)
        if acc.size == 0:
            continue
        boots = np.median(rng.choice(acc, size=(n_boot, acc.size)), axis=1) if acc.size > 1 else np.zeros(1)
        out.append(PhaseStat(phase, int(acc.size), float(np.median(acc)), float(np.std(boots))))
    return tuple(out)


def _discordance(medians: Mapping[str, float]) -> tuple[float, int, tuple[str, ...]]:
    discordant, comparable, wrong = 0.0, 0, []
    for a, b in itertools.combinations([p for p in TARGET_RANK if p in medians], 2):
        if TARGET_RANK[a] == TARGET_RANK[b]:
            continue  # II ≈ III: either order agrees with the target
        better, worse = (a, b) if TARGET_RANK[a] < TARGET_RANK[b] else (b, a)
        comparable += 1
        if medians[better] < medians[worse]:
            discordant += 1.0
            wrong.append(f"{worse} > {better}")
        elif medians[better] == medians[worse]:
            discordant += 0.5
            wrong.append(f"{worse} = {better}")
    return discordant, comparable, tuple(wrong)


def order_distance(phase_acc: Mapping[str, Sequence[float]], rng: np.random.Generator | None = None,
                   n_boot: int = BOOTSTRAP) -> OrderDistance:
    """Kendall distance of the phases' median-accuracy order to TARGET_RANK (Kendall 1938; ties as in τ-b),
    from each phase's per-cell test accuracies; its error from resampling each phase's cells."""
    rng = rng if rng is not None else np.random.default_rng(SEED)
    accs = {p: np.asarray(v, dtype=float) for p, v in phase_acc.items() if p in TARGET_RANK and len(v)}
    discordant, comparable, wrong = _discordance({p: float(np.median(v)) for p, v in accs.items()})
    if comparable == 0:
        return OrderDistance(0.0, 0, float("nan"), float("nan"), ())
    med = {p: np.median(rng.choice(v, size=(n_boot, v.size)), axis=1) for p, v in accs.items()}  # [n_boot] each
    boots = np.zeros(n_boot)
    for a, b in itertools.combinations([p for p in TARGET_RANK if p in med], 2):
        if TARGET_RANK[a] != TARGET_RANK[b]:
            better, worse = (a, b) if TARGET_RANK[a] < TARGET_RANK[b] else (b, a)
            boots += (med[better] < med[worse]) + 0.5 * (med[better] == med[worse])
    return OrderDistance(discordant, comparable, discordant / comparable, float(np.std(boots / comparable)), wrong)


def regions(cells: Sequence[tuple[int, int]]) -> tuple[int, ...]:
    """Sizes of the 4-neighbour connected regions of a set of grid cells (integer (column, row) indices),
    largest first."""
    left, sizes = set(cells), []
    while left:
        stack, size = [left.pop()], 0
        while stack:
            x, y = stack.pop()
            size += 1
            for n in ((x + 1, y), (x - 1, y), (x, y + 1), (x, y - 1)):
                if n in left:
                    left.remove(n)
                    stack.append(n)
        sizes.append(size)
    return tuple(sorted(sizes, reverse=True))


def zoo_coverage(name: str, labelled: pl.DataFrame, load: str, temperature: str, n_boot: int = BOOTSTRAP
                 ) -> ZooCoverage:
    """The coverage of one labelled cell table (columns `load`, `temperature`, phase, test_acc). Grid indices
    are the positions of a cell's knob values among the table's sorted distinct values."""
    missing = [c for c in (load, temperature, "phase", "test_acc") if c not in labelled.columns]
    if missing:
        raise ValueError(f"{name}: labelled table lacks column(s) {missing}; has {labelled.columns}")
    xs = {v: i for i, v in enumerate(sorted(labelled[load].unique().to_list()))}
    ys = {v: i for i, v in enumerate(sorted(labelled[temperature].unique().to_list()))}
    acc: dict[str, list[float]] = {}
    iv_a = []
    unclassified = 0
    for r in labelled.select(load, temperature, "phase", "test_acc").iter_rows(named=True):
        if r["phase"] not in TARGET_RANK:
            unclassified += 1
            continue
        if r["test_acc"] is not None and r["test_acc"] == r["test_acc"]:  # NaN != NaN: no accuracy, no vote
            acc.setdefault(r["phase"], []).append(float(r["test_acc"]))
        if r["phase"] == "IV-A":
            iv_a.append((xs[r[load]], ys[r[temperature]]))
    rng = np.random.default_rng(SEED)
    n_of = dict(labelled.group_by("phase").len().iter_rows())
    with_acc = {s.phase: s for s in phase_stats(acc, rng, n_boot)}
    # a phase whose cells have no test accuracy keeps its count, with a NaN median and no place in the order
    stats = tuple(PhaseStat(p, int(n_of[p]), with_acc[p].median_test_acc if p in with_acc else float("nan"),
                            with_acc[p].stderr if p in with_acc else float("nan"))
                  for p in TARGET_RANK if n_of.get(p, 0) > 0)
    sizes = regions(iv_a)
    return ZooCoverage(name, labelled.height, unclassified, stats,
                       tuple(s.phase for s in sorted(with_acc.values(), key=lambda s: -s.median_test_acc)),
                       order_distance(acc, rng, n_boot), len(iv_a), sizes, len(sizes) == 1)


def acceptance(variant: ZooCoverage, baseline: ZooCoverage) -> Acceptance:
    """The issue's test: IV-A a region of ≥ 3 cells, the order moved toward the target, no phase lost."""
    region = variant.largest_iv_a_region >= MIN_REGION
    d, d0 = variant.order_distance.distance, baseline.order_distance.distance
    moved = bool(d < d0)  # False when either is NaN
    lost = [p.phase for p in baseline.phases if variant.cells_of(p.phase) == 0]
    reasons = (
        f"largest IV-A region {variant.largest_iv_a_region} cell(s) of {variant.iv_a_cells} IV-A "
        f"({'≥' if region else '<'} {MIN_REGION})",
        f"order distance {d:.3f} ± {variant.order_distance.stderr:.3f} against the baseline's {d0:.3f} "
        f"({'moved toward' if moved else 'not closer to'} {TARGET_TEXT})",
        "no phase lost" if not lost else f"lost phase(s) {', '.join(lost)}",
    )
    return Acceptance(variant.name, baseline.name, region and moved and not lost, region, moved, not lost, reasons)


COMPARISON_SCHEMA = {"zoo": pl.String, "cells": pl.Int64, "I": pl.Int64, "II": pl.Int64, "III": pl.Int64,
                     "IV-A": pl.Int64, "IV-B": pl.Int64, "unclassified": pl.Int64, "iv_a_region": pl.Int64,
                     "iv_a_connected": pl.Boolean, "order": pl.String, "order_distance": pl.Float64,
                     "order_distance_stderr": pl.Float64, "passes": pl.Boolean}


def comparison(zoos: Sequence[ZooCoverage], baseline: ZooCoverage) -> pl.DataFrame:
    """One row per zoo (COMPARISON_SCHEMA): cells per phase, the largest IV-A region, the observed order
    (with each phase's median test accuracy), its distance to the target, and whether it passes against
    `baseline` (null for the baseline itself)."""
    rows = []
    for z in zoos:
        med = {p.phase: p.median_test_acc for p in z.phases}
        rows.append({"zoo": z.name, "cells": z.n_cells, **{p: z.cells_of(p) for p in TARGET_RANK},
                     "unclassified": z.unclassified, "iv_a_region": z.largest_iv_a_region,
                     "iv_a_connected": z.iv_a_connected,
                     "order": " > ".join(f"{p} {med[p]:.3f}" for p in z.order),
                     "order_distance": z.order_distance.distance, "order_distance_stderr": z.order_distance.stderr,
                     "passes": None if z is baseline else acceptance(z, baseline).passed})
    return pl.DataFrame(rows, schema=COMPARISON_SCHEMA)


def table_text(zoos: Sequence[ZooCoverage], baseline: ZooCoverage) -> str:
    """The comparison as a Markdown table, then each variant's acceptance reasons."""
    head = ("| zoo | I | II | III | IV-A | IV-B | largest IV-A region | order by median test accuracy "
            "| distance to target | passes |\n|---|---|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in comparison(zoos, baseline).iter_rows(named=True):
        passes = "baseline" if r["passes"] is None else "yes" if r["passes"] else "no"
        lines.append(f"| {r['zoo']} | {r['I']} | {r['II']} | {r['III']} | {r['IV-A']} | {r['IV-B']} "
                     f"| {r['iv_a_region']} | {r['order']} | {r['order_distance']:.3f} ± "
                     f"{r['order_distance_stderr']:.3f} | {passes} |")
    for z in zoos:
        if z is not baseline:
            a = acceptance(z, baseline)
            lines.append(f"{z.name}: {'PASSES' if a.passed else 'fails'} — " + "; ".join(a.reasons))
    return "\n".join(lines)


# ----------------------------------------------------------------------------- the CLI
def _named(pairs: Sequence[str], flag: str) -> list[tuple[str, Path]]:
    out = []
    for p in pairs:
        name, sep, path = p.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"{flag} {p!r}: expected NAME=PATH")
        out.append((name, Path(path)))
    return out


def _zoo_labelled(root: Path, epoch: int | None, seeds: Sequence[int] | None = None
                  ) -> tuple[pl.DataFrame, str, str, str]:
    """A zoo's cells labelled with its default thresholds at `epoch` (default: its last analysis epoch), from
    the models of `seeds` only (default: all) and the pairs among them: a 3-seed zoo read as a 2-seed one."""
    from analysis.taxonomy.cells import cell_table
    from analysis.taxonomy.phases import grid_text, label_by_default
    from data.zoo.store import Zoo, read_metrics

    zoo = Zoo.open(root)
    epoch = epoch if epoch is not None else max(zoo.spec.analysis_epochs)
    catalog, metrics = zoo.catalog, read_metrics(zoo.root)
    if seeds:
        catalog = catalog.filter(pl.col("seed").is_in(list(seeds)))
        if catalog.is_empty():
            raise ValueError(f"{root}: no model has a seed in {list(seeds)}; the zoo's seeds: {list(zoo.spec.seeds)}")
        keep = catalog["model_id"].unique().implode()
        metrics = metrics.filter(pl.col("model_id").is_in(keep)
                                 & (pl.col("other_id").is_null() | pl.col("other_id").is_in(keep)))
    lab = label_by_default(cell_table(metrics, catalog, zoo.spec, epoch))
    load, temp = zoo.spec.load, zoo.spec.temperature
    return lab, load.knob, temp.knob, (f"epoch {epoch}\n"
                                       + grid_text(lab, load.knob, temp.knob, load.increases, temp.increases))


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.coverage") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--zoo", action="append", default=[], metavar="NAME=DIR",
                    help="a zoo, labelled with its default thresholds at --epoch (repeatable)")
    ap.add_argument("--table", action="append", default=[], metavar="NAME=FILE",
                    help="a labelled cell table (.csv or .parquet: load, temperature, phase, test_acc; repeatable)")
    ap.add_argument("--load", help="with --table: the load knob's column")
    ap.add_argument("--temperature", help="with --table: the temperature knob's column")
    ap.add_argument("--epoch", type=int, help="with --zoo: the analysis epoch (default: each zoo's last)")
    ap.add_argument("--seeds", help="with --zoo: comma-separated seeds to keep (default: all), e.g. 0,1")
    ap.add_argument("--baseline", help="the zoo the others are tested against (default: the first)")
    ap.add_argument("--maps", action="store_true", help="print each zoo's phase map first")
    ap.add_argument("--out", type=Path, help="write the comparison table (.csv or .parquet)")
    args = ap.parse_args(argv)
    if not args.zoo and not args.table:
        ap.error("give at least one --zoo NAME=DIR or --table NAME=FILE")

    def body() -> int:
        from analysis.taxonomy.phases import read_table

        try:
            seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else None
        except ValueError:
            raise ValueError(f"--seeds {args.seeds!r}: expected comma-separated integers, e.g. 0,1") from None
        zoos, maps = [], []
        for name, root in _named(args.zoo, "--zoo"):
            lab, load, temp, text = _zoo_labelled(root, args.epoch, seeds)
            zoos.append(zoo_coverage(name, lab, load, temp))
            maps.append(f"{name}, {text}")
        if args.table and not (args.load and args.temperature):
            raise ValueError("--table needs --load and --temperature (the knob columns)")
        for name, path in _named(args.table, "--table"):
            zoos.append(zoo_coverage(name, read_table(path), args.load, args.temperature))
        names = [z.name for z in zoos]
        if len(set(names)) != len(names):
            raise ValueError(f"zoo names must be distinct; got {names}")
        if args.baseline is not None and args.baseline not in names:
            raise ValueError(f"--baseline {args.baseline!r} is none of {names}")
        baseline = zoos[names.index(args.baseline)] if args.baseline else zoos[0]
        if args.maps:
            print("\n\n".join(maps) + ("\n" if maps else ""))
        print(f"target order: {TARGET_TEXT}; baseline: {baseline.name}")
        print(table_text(zoos, baseline))
        if args.out:
            frame = comparison(zoos, baseline)
            if args.out.suffix == ".parquet":
                frame.write_parquet(args.out)
            elif args.out.suffix == ".csv":
                frame.write_csv(args.out)
            else:
                raise ValueError(f"--out {args.out}: expected a .csv or .parquet path")
            print(f"wrote {args.out}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
