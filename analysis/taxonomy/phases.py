"""Phase labels: a pure function of a cell table and a frozen set of thresholds (science.md §1).

Decision order (Yang et al. 2021; Schürholt et al. 2025 drew the regions by eye — no published classifier):

    1. train_loss > τ_L            → under-fitted:  I or II        (else III or IV)
    2. mc < −ε                     → poorly connected: I or III     (else II or IV)
    3. in IV: cka ≥ τ_C            → IV-B (generalising)            (else IV-A, over-fitted)

Each cell also gets its margin to every threshold it used, in the threshold's own scale — decades of
training loss, points of mc, units of CKA — so a view can show confidence and flag cells near a boundary.
A metric a cell needs but lacks (null or NaN) makes it "unclassified", never a guessed label.

    phasezoo phases --zoo data/zoos/mnist1d-mlp             # label a zoo, write phases.parquet
    phasezoo phases cells.csv --col train_loss=loss --col mc=mode_conn --col cka=sim \
        --col load=width --col temperature=batch --out labelled.parquet   # any per-cell table
"""
from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import polars as pl

from data.cli import run_cli

PHASES = ("I", "II", "III", "IV-A", "IV-B")
UNCLASSIFIED = "unclassified"
NEEDED = ("train_loss", "mc", "cka")


@dataclass(frozen=True)
class Thresholds:
    train_loss: float  # τ_L, nats: above it a cell is under-fitted
    mc: float  # ε, % points of training error (decades of training loss for regression): mc < −ε is a barrier
    cka: float  # τ_C: at or above it a phase-IV cell is IV-B
    hessian: float | None = None  # optional: ln trace above which a cell counts as sharp (a second vote)
    provenance: Mapping[str, str] = field(default_factory=dict, compare=False)


# A training loss below this counts as fitted whatever the grid's smallest: a classifier then puts ≥ 99 % of
# its probability on its labels on average (−ln 0.99 ≈ 0.01 nats). Without it a grid whose best cells reach
# ~1e-7 (full-batch AdamW transformers) would call every cell above 1e-6 under-fitted.
LOSS_FLOOR = 0.01

# Margins within these distances of a threshold flag a cell as near a boundary.
NEAR = {"train_loss": 0.25, "mc": 1.0, "cka": 0.05}  # decades, % points, CKA units


def default_thresholds(cells: pl.DataFrame, *, mc_eps: float = 1.0) -> Thresholds:
    """Zoo-relative defaults where the literature gives them:

    - τ_L = 10 × the smallest cell training loss: Yang et al. mark the transition by a > 10× fall in
      training loss (their absolute τ_L ≈ 0.02 nats holds for CIFAR without augmentation only); at least
      LOSS_FLOOR (0.01), below which a model has fitted by any standard;
    - ε = 1 point of training error (science.md §1); for regression zoos, whose mc is in decades of training
      loss, 1 decade (the same tenfold step as τ_L);
    - τ_C = the midpoint of the CKA range over the cells that are well fitted and connected (phase IV):
      CKA levels depend on the representation (logits vs softmax, which inputs), so no absolute value
      transfers (Yang: ≈ 0.7 on softmax CKA).
    """
    loss = cells["train_loss"].drop_nans().drop_nulls()
    if loss.is_empty():
        raise ValueError("cannot derive τ_L: no cell has a training loss")
    tau_l = max(10.0 * float(loss.min()), LOSS_FLOOR)
    iv = cells.filter((pl.col("train_loss") <= tau_l) & (pl.col("mc") >= -mc_eps))["cka"].drop_nans().drop_nulls()
    tau_c = 0.5 * (float(iv.min()) + float(iv.max())) if len(iv) else float("nan")
    return Thresholds(tau_l, mc_eps, tau_c, provenance={
        "train_loss": f"10 × the grid's smallest cell training loss ({loss.min():.3g}; Yang et al. 2021), "
                      f"at least {LOSS_FLOOR} (≥ 99 % probability on the labels)",
        "mc": "1 point of training error (science.md §1), or 1 decade of training loss for regression",
        "cka": f"midpoint of the CKA range over {len(iv)} fitted, connected cells (zoo-relative)"})


def _finite(x) -> bool:
    return x is not None and not (isinstance(x, float) and math.isnan(x))


def label(train_loss, mc, cka, th: Thresholds) -> str:
    """The phase of one cell (science.md §1 decision order)."""
    if not (_finite(train_loss) and _finite(mc)):
        return UNCLASSIFIED
    if train_loss > th.train_loss:
        return "I" if mc < -th.mc else "II"
    if mc < -th.mc:
        return "III"
    if not (_finite(cka) and _finite(th.cka)):
        return UNCLASSIFIED
    return "IV-B" if cka >= th.cka else "IV-A"


def classify(cells: pl.DataFrame, th: Thresholds) -> pl.DataFrame:
    """Add `phase`, the signed margins (`margin_loss` in decades above τ_L, `margin_mc` in points above −ε,
    `margin_cka` above τ_C), `near_boundary`, and with a Hessian threshold `hessian_vote`."""
    missing = [c for c in NEEDED if c not in cells.columns]
    if missing:
        raise ValueError(f"cell table lacks column(s) {missing} needed for phase labels; has {cells.columns}")
    phases = [label(r["train_loss"], r["mc"], r["cka"], th) for r in cells.select(NEEDED).iter_rows(named=True)]
    out = cells.with_columns(
        pl.Series("phase", phases, pl.String),
        (pl.col("train_loss") / th.train_loss).log10().alias("margin_loss"),
        (pl.col("mc") + th.mc).alias("margin_mc"),
        (pl.col("cka") - th.cka).alias("margin_cka"),
    )
    uses_cka = pl.col("phase").is_in(["IV-A", "IV-B"])
    near = ((pl.col("margin_loss").abs() < NEAR["train_loss"]) | (pl.col("margin_mc").abs() < NEAR["mc"])
            | (uses_cka & (pl.col("margin_cka").abs() < NEAR["cka"])))
    out = out.with_columns(near.fill_null(False).alias("near_boundary"))  # NaN comparisons are False
    if th.hessian is not None and "hessian_trace" in cells.columns:
        out = out.with_columns(pl.when(pl.col("hessian_trace") > th.hessian).then(pl.lit("sharp"))
                               .otherwise(pl.lit("flat")).alias("hessian_vote"))
    return out


def labelable(cells: pl.DataFrame) -> bool:
    """Whether the zoo-relative default thresholds exist for `cells`: mode connectivity somewhere and a finite
    training loss somewhere (an epoch not yet measured has neither)."""
    return not cells["mc"].is_null().all() and not cells["train_loss"].drop_nulls().drop_nans().is_empty()


def label_by_default(cells: pl.DataFrame) -> pl.DataFrame:
    """`classify` with the default thresholds, or — where there are none (`labelable`) — every cell
    unclassified, not near any threshold."""
    if labelable(cells):
        return classify(cells, default_thresholds(cells))
    return cells.with_columns(phase=pl.lit(UNCLASSIFIED), near_boundary=pl.lit(False))


def phase_counts(labelled: pl.DataFrame) -> pl.DataFrame:
    """Cells per phase, their fraction of the grid, and their median test accuracy where the table has one."""
    agg = [pl.len().cast(pl.Int64).alias("cells")]
    if "test_acc" in labelled.columns and labelled["test_acc"].is_not_null().any():  # regression zoos have none
        agg.append(pl.col("test_acc").median().alias("median_test_acc"))
    return (labelled.group_by("phase").agg(agg)
            .with_columns((pl.col("cells") / labelled.height).alias("fraction")).sort("phase"))


def phase_summary(labelled: pl.DataFrame) -> str:
    rows = phase_counts(labelled).iter_rows(named=True)
    return "cells per phase: " + ", ".join(
        f"{r['phase']}: {r['cells']}" + (f" (median test acc {r['median_test_acc']:.3f})" if "median_test_acc" in r
                                         and r["median_test_acc"] is not None else "") for r in rows)


def grid_text(labelled: pl.DataFrame, load: str, temperature: str, load_increases: bool = False,
              temperature_increases: bool = False) -> str:
    """The phase map as text: capacity grows to the right, the hottest row on top (the papers' layout)."""
    xs = sorted(labelled[load].unique().to_list(), reverse=load_increases)
    ys = sorted(labelled[temperature].unique().to_list(), reverse=not temperature_increases)[::-1]
    at = {(r[load], r[temperature]): r["phase"] + ("*" if r["near_boundary"] else "")
          for r in labelled.iter_rows(named=True)}
    w = max(6, *(len(str(x)) for x in xs))
    lines = [f"{temperature + ' ↓ / ' + load + ' →':>{w + 12}} " + " ".join(f"{x!s:>{w}}" for x in xs)]
    for y in ys:
        lines.append(f"{y!s:>{w + 12}} " + " ".join(f"{at.get((x, y), '—'):>{w}}" for x in xs))
    return "\n".join(lines) + "\n(* near a threshold)"


# ----------------------------------------------------------------------------- zoos and the CLI
def zoo_cells(root: str | Path, epoch: int | None = None):
    """(zoo, epoch, cell table) at an analysis epoch (default: the last)."""
    from analysis.taxonomy.cells import cell_table
    from data.zoo.store import Zoo, read_metrics

    zoo = Zoo.open(root)
    epoch = epoch if epoch is not None else max(zoo.spec.analysis_epochs)
    return zoo, epoch, cell_table(read_metrics(zoo.root), zoo.catalog, zoo.spec, epoch)


ROLES = ("train_loss", "mc", "cka", "load", "temperature", "hessian_trace")


def read_table(path: Path) -> pl.DataFrame:
    if path.suffix == ".parquet":
        return pl.read_parquet(path)
    if path.suffix in (".csv", ".tsv"):
        return pl.read_csv(path, separator="\t" if path.suffix == ".tsv" else ",", infer_schema_length=10000)
    raise ValueError(f"{path}: expected a .csv, .tsv or .parquet table")


def _mapping(pairs: Sequence[str]) -> dict[str, str]:
    out = {}
    for p in pairs:
        role, sep, name = p.partition("=")
        if not sep or role not in ROLES:
            raise ValueError(f"--col {p!r}: expected ROLE=COLUMN with ROLE one of {list(ROLES)}")
        out[role] = name
    return out


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.taxonomy.phases") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("table", nargs="?", type=Path, help="a per-cell table (.csv, .tsv or .parquet)")
    ap.add_argument("--zoo", type=Path, help="label a zoo from its metrics (writes <zoo>/phases.parquet)")
    ap.add_argument("--epoch", type=int, help="with --zoo: the analysis epoch (default: the last)")
    ap.add_argument("--col", action="append", default=[], metavar="ROLE=COLUMN",
                    help=f"map a role ({', '.join(ROLES)}) to a column of the table")
    ap.add_argument("--tau-loss", type=float, help="τ_L, nats (default: 10 × the smallest cell loss)")
    ap.add_argument("--eps-mc", type=float, default=1.0, help="ε, %% points (default 1)")
    ap.add_argument("--tau-cka", type=float, help="τ_C (default: midpoint of the phase-IV CKA range)")
    ap.add_argument("--tau-hessian", type=float, help="optional Hessian vote: ln trace above which a cell is sharp")
    ap.add_argument("--out", type=Path, help="where to write the labelled table (.parquet or .csv)")
    args = ap.parse_args(argv)
    if args.zoo is None and args.table is None:
        ap.error("give a per-cell table or --zoo")

    def body() -> int:
        if args.zoo:
            from analysis.taxonomy.cells import per_unit_values
            from analysis.taxonomy.stability import labels_table, stability_summary
            from data.zoo.store import Zoo, read_metrics

            zoo = Zoo.open(args.zoo)
            load, temp = zoo.spec.load, zoo.spec.temperature
            metrics = read_metrics(zoo.root)
            # the bootstrap re-derives the defaults on every resampled grid; thresholds given here stay fixed
            rule = lambda resampled: _override(default_thresholds(resampled, mc_eps=args.eps_mc), args)
            frames, texts = [], []
            for epoch in [args.epoch] if args.epoch is not None else sorted(zoo.spec.analysis_epochs):
                cells = zoo_cells(args.zoo, epoch)[2]
                th = _override(default_thresholds(cells, mc_eps=args.eps_mc), args)
                lab = classify(cells, th)
                lab = labels_table(lab.with_columns(epoch=pl.lit(epoch, pl.Int64), tau_loss=pl.lit(th.train_loss),
                                                    eps_mc=pl.lit(th.mc), tau_cka=pl.lit(th.cka)),
                                   per_unit_values(metrics, zoo.catalog, zoo.spec, epoch), zoo.spec, rule)
                frames.append(lab)
                texts.append(f"{zoo.name}, epoch {epoch}\n"
                             + grid_text(lab, load.knob, temp.knob, load.increases, temp.increases) + "\n"
                             + "thresholds: " + _th_text(th) + "\n" + phase_summary(lab) + "\n"
                             + stability_summary(lab, (load.knob, temp.knob)))
            labelled = pl.concat(frames)
            out = args.out or zoo.root / "phases.parquet"
            if len(frames) > 1:
                texts.append(_history_text(labelled, load.knob, temp.knob))
            text = "\n\n".join(texts)
        else:
            cols = _mapping(args.col)
            table = read_table(args.table)
            absent = [f"{role}={name}" for role, name in cols.items() if name not in table.columns]
            if absent:
                raise ValueError(f"{args.table}: no column(s) {absent}; columns: {table.columns}")
            renamed = table.rename({v: k for k, v in cols.items()})
            for role in (*NEEDED, "load", "temperature"):
                if role not in renamed.columns:
                    raise ValueError(f"{args.table}: no column for {role!r}; map one with --col {role}=<column>")
            renamed = renamed.with_columns(pl.col(r).cast(pl.Float64) for r in NEEDED)
            th = _override(default_thresholds(renamed, mc_eps=args.eps_mc), args)
            labelled = classify(renamed, th).rename({k: v for k, v in cols.items() if k in NEEDED + ("hessian_trace",)})
            labelled = labelled.rename({"load": cols["load"], "temperature": cols["temperature"]})
            out = args.out
            text = (grid_text(labelled, cols["load"], cols["temperature"]) + "\nthresholds: " + _th_text(th) + "\n"
                    + phase_summary(labelled))
        print(text)
        if out:
            from data.zoo.store import atomic_write

            atomic_write(out, (lambda tmp: labelled.write_parquet(tmp)) if out.suffix == ".parquet"
                         else (lambda tmp: labelled.write_csv(tmp)))
            print(f"wrote {out}")
        return 0

    return run_cli(body)


def _history_text(labelled: pl.DataFrame, load: str, temperature: str) -> str:
    """Phases over training, for the CLI: how many cells changed, how many changes join two stable labels, and
    each changing cell's path (analysis.taxonomy.evolution)."""
    from analysis.taxonomy.evolution import histories, transitions
    from analysis.taxonomy.stability import UNSTABLE

    moved, paths = transitions(labelled, load, temperature), histories(labelled, load, temperature)
    head = (f"phases over training: {moved.height} changes in {paths.filter(pl.col('changes') > 0).height} of "
            f"{paths.height} cells, {int(moved['firm'].sum())} between two labels kept by ≥ {UNSTABLE:g} of the resamples")
    return "\n".join([head, *(f"  {r[load]}/{r[temperature]}: {r['path']}"
                               for r in paths.filter(pl.col("changes") > 0).iter_rows(named=True))])


def _th_text(th: Thresholds) -> str:
    return ", ".join(f"{k}={v:.4g}" for k, v in asdict(th).items() if isinstance(v, float))


def _override(th: Thresholds, args) -> Thresholds:
    prov = dict(th.provenance)
    for key, val in (("train_loss", args.tau_loss), ("cka", args.tau_cka)):
        if val is not None:
            prov[key] = "given on the command line"
    return Thresholds(args.tau_loss if args.tau_loss is not None else th.train_loss, args.eps_mc,
                      args.tau_cka if args.tau_cka is not None else th.cka, args.tau_hessian, prov)


if __name__ == "__main__":
    sys.exit(main())
