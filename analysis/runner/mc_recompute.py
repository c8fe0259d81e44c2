"""Rewrite a zoo's stored mode-connectivity readings from its stored profiles; no curve is retrained.

    phasezoo mc-recompute data/zoos/mnist1d-mlp              # rewrite, list what changed
    phasezoo mc-recompute data/zoos/mnist1d-mlp --dry-run    # list only, write nothing

mc and its `endpoint_dominated` flag are functions of the path's error profile alone
(`analysis.kernels.connectivity.mc_from_profile`), and the profile is stored: the `<prefix>_error` rows, coord = t.
When that rule changes, the metric's version is bumped (its params hash changes) and this rewrites the
rows of the previous version (the zoo's own parameters, version − 1) under the current hash: the mc and
flag rows get the current rule's values; the profile rows (`_error`, `_loss`) and stored failures are
carried unchanged. A retrained curve would reproduce the same profile (seeded), so the result equals a
full rerun of the metric at a fraction of its cost (the Bézier curves took hours of training).

Rows under any other hash are left as they are. A (pair, epoch) that already has rows under the current
hash (the runner recomputed it) keeps them, and its previous-version rows are dropped as superseded.
Every profile is checked before anything is written: a malformed one stops the run with the zoo unchanged.
Idempotent: a second run finds no previous-version rows. Holds the zoo's writer lock; one atomic write.
"""
from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from analysis.kernels.connectivity import mc_from_profile
from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import Metric
from analysis.runner.run import zoo_metric
from data.cli import run_cli
from data.zoo.schema import METRICS
from data.zoo.store import METRICS_FILE, Zoo, atomic_write, read_metrics, writer_lock

PROFILE_METRICS = ("mc_linear", "mc_bezier")  # metrics whose readings are functions of their stored profile
UNIT = ["model_id", "other_id", "epoch"]  # one pair of models at one epoch


@dataclass(frozen=True)
class Change:
    """One (pair, epoch) whose mc or flag differs between the previous rule and the current one."""

    metric: str
    model_id: str
    other_id: str
    epoch: int
    old_mc: float
    new_mc: float
    old_flag: float
    new_flag: float


@dataclass(frozen=True)
class Recomputed:
    metric: str
    old_hash: str
    new_hash: str
    units: int  # (pair, epoch) units moved to the new hash
    superseded: int  # units dropped: the new hash already held them
    changes: tuple[Change, ...]


def recompute_rows(table: pl.DataFrame, prefix: str, old_hash: str, new_hash: str
                   ) -> tuple[pl.DataFrame, Recomputed]:
    """The metrics table with `prefix`'s rows under `old_hash` rewritten under `new_hash` (module docstring).

    Pure: `table` is a validated metrics frame; raises ValueError naming the pair if a stored profile is
    malformed (then nothing is returned to write)."""
    old = table.filter(pl.col("params_hash") == old_hash)
    rest = table.filter(pl.col("params_hash") != old_hash)
    present = rest.filter(pl.col("params_hash") == new_hash).select(UNIT).unique()
    moved = old.join(present, on=UNIT, how="anti", nulls_equal=True)
    superseded = old.select(UNIT).unique().height - moved.select(UNIT).unique().height
    readings, changes = [], []
    for (mid, oid, epoch), rows in moved.group_by(UNIT, maintain_order=True):
        mc_row = rows.filter((pl.col("metric") == prefix) & pl.col("error").is_null())
        if mc_row.is_empty():  # a stored failure: nothing to recompute, carried as it is
            continue
        prof = rows.filter(pl.col("metric") == f"{prefix}_error").sort("coord")
        try:
            r = mc_from_profile(prof["coord"].to_list(), prof["value"].to_list())
        except ValueError as e:
            raise ValueError(f"{prefix} of {mid} & {oid} at epoch {epoch}: stored profile unusable: {e}") from None
        flag_rows = rows.filter(pl.col("metric") == f"{prefix}_endpoint_dominated")["value"]
        old_mc, old_flag = mc_row["value"][0], flag_rows[0] if len(flag_rows) else float("nan")
        new_flag = float(r.endpoint_dominated)
        readings.append({"model_id": mid, "other_id": oid, "epoch": epoch, "_mc": r.mc, "_flag": new_flag})
        if old_mc != r.mc or old_flag != new_flag:
            changes.append(Change(prefix, mid, oid, epoch, old_mc, r.mc, old_flag, new_flag))
    new_values = pl.DataFrame(readings, schema={**{k: METRICS.columns[k] for k in UNIT},
                                                "_mc": pl.Float64, "_flag": pl.Float64})
    metric = pl.col("metric")
    moved = (moved.join(new_values, on=UNIT, how="left", nulls_equal=True)
             .with_columns(value=pl.when(pl.col("error").is_null() & (metric == prefix)).then(pl.col("_mc"))
                           .when(pl.col("error").is_null() & (metric == f"{prefix}_endpoint_dominated"))
                           .then(pl.col("_flag")).otherwise(pl.col("value")),
                           params_hash=pl.lit(new_hash))
             .drop("_mc", "_flag"))
    out = METRICS.validate(pl.concat([rest, moved.select(table.columns)])
                           .sort([*UNIT, "params_hash"], maintain_order=True))
    return out, Recomputed(prefix, old_hash, new_hash, moved.select(UNIT).unique().height, superseded,
                           tuple(changes))


def previous_version(metric: Metric) -> Metric | None:
    """The same metric and parameters one version back (None for a first version)."""
    return dataclasses.replace(metric, version=metric.version - 1) if metric.version > 1 else None


def recompute_zoo(root: str | Path, names: Sequence[str] = PROFILE_METRICS, dry_run: bool = False
                  ) -> list[Recomputed]:
    """Rewrite the previous-version rows of `names` in <root>/metrics.parquet (unless `dry_run`)."""
    zoo = Zoo.open(root)
    done: list[Recomputed] = []
    with writer_lock(zoo.root):
        table = read_metrics(zoo.root)
        for name in names:
            current = zoo_metric(zoo, get_metric(name))
            previous = previous_version(current)
            if previous is None:
                continue
            table, rep = recompute_rows(table, name, previous.params_hash, current.params_hash)
            done.append(rep)
        if not dry_run and any(r.units or r.superseded for r in done):
            atomic_write(zoo.root / METRICS_FILE, lambda tmp: table.write_parquet(tmp))
    return done


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.runner.mc_recompute") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", type=Path, help="zoo directory")
    ap.add_argument("--metrics", default=",".join(PROFILE_METRICS), help="comma-separated (default: %(default)s)")
    ap.add_argument("--dry-run", action="store_true", help="list what would change; write nothing")
    args = ap.parse_args(argv)
    names = [n for n in args.metrics.split(",") if n]

    def body() -> int:
        if unknown := sorted(set(names) - set(PROFILE_METRICS)):
            raise ValueError(f"{unknown} are not recomputable from stored profiles; known: {list(PROFILE_METRICS)}")
        reports = recompute_zoo(args.zoo, names, args.dry_run)
        for r in reports:
            print(f"{r.metric}: {r.units} pair-epochs {r.old_hash} → {r.new_hash}, {len(r.changes)} changed, "
                  f"{r.superseded} superseded" + (" (dry run)" if args.dry_run else ""))
            for c in r.changes:
                print(f"  {c.model_id} & {c.other_id} @ {c.epoch}: mc {c.old_mc:+.4g} → {c.new_mc:+.4g}, "
                      f"endpoint_dominated {c.old_flag:g} → {c.new_flag:g}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
