"""Recompute only the outputs of a metric whose computation changed; carry its other outputs' rows over.

    phasezoo recompute data/zoos/mnist1d-mlp --estimate      # time it on two models, predict
    phasezoo recompute data/zoos/mnist1d-mlp --workers 2     # rewrite the stale rows

A metric's version enters its `params_hash` (analysis.metrics.registry), so bumping it makes every stored row of
the metric stale for the runner (analysis.runner.run), which would recompute all of its outputs. When a bump
changed only some outputs — `hessian` v3 changed Hutch++ (its stderr) but not Lanczos, Hutchinson or SLQ,
each of which draws from its own seeded generator — a `Partial` names those outputs and a function
computing just them. For every (model, epoch) stored under the old hash without error, this module
computes the changed outputs, relabels the unchanged outputs' rows with the new hash (values untouched),
and replaces that unit's old rows in one atomic rewrite of metrics.parquet under the zoo's writer lock.

A unit is either all-old or all-new at every moment, so an interrupted run resumes where it stopped. A
unit that fails keeps its old rows (reported; `phasezoo run` recomputes it in full), as does a
unit stored with an error row under the old hash. Nothing is written with --estimate.
"""
from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch

from analysis.metrics.catalog import get_metric
from analysis.metrics.definitions import (
    WEIGHTS_V2_CHANGED,
    hessian_hutchpp_only,
    hessian_layers_trace_only,
    weights_ww_only,
)
from analysis.metrics.registry import Metric, MetricError, ModelInput, Value
from analysis.runner.costs import predicted_seconds
from analysis.runner.run import prepare_data, zoo_metric
from data.cli import run_cli
from data.models.reference import add_factory_flag, trust_flagged
from data.training.workers import LOCAL, format_duration, run_unordered
from data.zoo.schema import METRICS
from data.zoo.store import METRICS_FILE, Zoo, ZooError, atomic_write, read_metrics, writer_lock

log = logging.getLogger("phasezoo.recompute")


@dataclass(frozen=True)
class Partial:
    """Between `from_version` and `to_version` of `metric`, only the outputs `changed` changed; `compute`
    (ModelInput, **the metric's parameters) returns exactly their values."""

    metric: str
    from_version: int
    to_version: int
    changed: tuple[str, ...]
    compute: Callable[..., list[Value]]


PARTIALS = {p.metric: p for p in [
    Partial("hessian", 2, 3, ("hessian_trace_hutchpp",), hessian_hutchpp_only),
    Partial("hessian_layers", 1, 2, ("hessian_layer_trace",), hessian_layers_trace_only),
    Partial("weights", 1, 2, WEIGHTS_V2_CHANGED, weights_ww_only),
]}


@dataclass(frozen=True)
class Plan:
    partial: Partial
    metric: Metric  # with the zoo's parameters
    old_hash: str
    new_hash: str
    units: tuple[tuple[str, int], ...]  # (model_id, epoch) to recompute, largest model first
    skipped_errors: tuple[tuple[str, int], ...]  # stored with an error under the old hash: left to analysis.runner.run


def plan(zoo: Zoo, table: pl.DataFrame, partial: Partial) -> Plan:
    metric = zoo_metric(zoo, get_metric(partial.metric))
    if metric.version != partial.to_version:
        raise MetricError(f"{metric.name}: the recompute rule is for version {partial.to_version}, "
                          f"the registry has version {metric.version}")
    old_hash = dataclasses.replace(metric, version=partial.from_version).params_hash
    outputs = [o.name for o in metric.outputs]
    old = table.filter((pl.col("params_hash") == old_hash) & (pl.col("metric").is_in(outputs + [metric.name])))
    failed = old.filter(pl.col("error").is_not_null()).select("model_id", "epoch").unique()
    ok = old.select("model_id", "epoch").unique().join(failed, on=["model_id", "epoch"], how="anti")
    size = dict(zoo.catalog.group_by("model_id").agg(pl.col("n_params").first()).iter_rows())
    units = sorted(ok.iter_rows(), key=lambda u: (-size.get(u[0], 0), u))
    return Plan(partial, metric, old_hash, metric.params_hash, tuple(units), tuple(sorted(failed.iter_rows())))


# ----------------------------------------------------------------------------- worker side
def _init_worker() -> None:
    torch.set_num_threads(1)  # two workers on two cores: more threads only oversubscribe


def compute_unit(root: str, name: str, model_id: str, epoch: int, new_hash: str) -> tuple[list[dict], str | None]:
    """The changed outputs' rows of one (model, epoch) under the new hash, or ([], the error)."""
    zoo = Zoo.open(root)
    partial = PARTIALS[name]
    metric = zoo_metric(zoo, get_metric(name))
    try:
        m = ModelInput(model_id, zoo.build_model(model_id, epoch), zoo.task_of(model_id), epoch)
        values = partial.compute(m, **metric.params)
        if {v.metric for v in values} - set(partial.changed):
            raise ValueError(f"{name}: the partial computation emitted outputs beyond {partial.changed}")
        bad = [v for v in values if not (abs(v.value) < float("inf"))]
        if bad:
            raise ValueError(f"non-finite {bad[0].metric} = {bad[0].value}")
    except Exception as e:  # a failure keeps the unit's old rows
        return [], f"{name} on {model_id} at epoch {epoch}: {type(e).__name__}: {e}"
    return [{"model_id": model_id, "other_id": None, "epoch": epoch, "metric": v.metric, "split": v.split,
             "layer": v.layer, "coord": v.coord, "value": float(v.value),
             "stderr": None if v.stderr is None else float(v.stderr), "params_hash": new_hash, "error": None}
            for v in values], None


# ----------------------------------------------------------------------------- main process
def _unit_frame(units: Sequence[tuple[str, int]]) -> pl.DataFrame:
    return pl.DataFrame(list(units), schema={"model_id": pl.String, "epoch": pl.Int64}, orient="row")


def merge(table: pl.DataFrame, p: Plan, units: Sequence[tuple[str, int]], new_rows: pl.DataFrame) -> pl.DataFrame:
    """`table` with the old-hash rows of `units` replaced: changed outputs by `new_rows`, the others relabelled."""
    if not units:
        return table
    keys = _unit_frame(units)
    is_old = pl.col("params_hash") == p.old_hash
    old = table.filter(is_old).join(keys, on=["model_id", "epoch"], how="semi")
    carried = old.filter(~pl.col("metric").is_in(p.partial.changed)).with_columns(params_hash=pl.lit(p.new_hash))
    kept = pl.concat([table.filter(~is_old), table.filter(is_old).join(keys, on=["model_id", "epoch"], how="anti")])
    out = pl.concat([kept, carried, new_rows.select(table.columns).cast(table.schema)])
    return METRICS.validate(out.sort(["model_id", "other_id", "epoch", "params_hash"], nulls_last=False))


def _write(root: Path, p: Plan, units: list[tuple[str, int]], rows: list[dict], wait_s: float = 600.0) -> None:
    """Merge into the stored table, re-read under the writer lock (waiting while another writer holds it)."""
    new_rows = pl.DataFrame(rows, schema=METRICS.columns)
    t0 = time.monotonic()
    while True:
        try:
            with writer_lock(root):
                table = merge(read_metrics(root), p, units, new_rows)
                atomic_write(root / METRICS_FILE, lambda tmp: table.write_parquet(tmp))
                return
        except ZooError as e:
            if "being written" not in str(e) or time.monotonic() - t0 > wait_s:
                raise
            time.sleep(5)


@dataclass(frozen=True)
class Report:
    metric: str
    units: int
    recomputed: int
    failures: tuple[str, ...]
    skipped_errors: int
    seconds: float
    written: bool = True

    def __str__(self) -> str:
        return (f"{self.metric}: {self.recomputed}/{self.units} (model, epoch) units "
                f"{'recomputed' if self.written else 'computed (staged, not written)'} in "
                f"{format_duration(self.seconds)}, {len(self.failures)} failures, {self.skipped_errors} stored "
                "errors left to analysis.runner.run")


def recompute(root: str | Path, names: Sequence[str], workers: int = 2, flush_every: int = 20,
              stage: Path | None = None, write: bool = True) -> list[Report]:
    """Recompute the stale units of each metric in `names` and merge them into metrics.parquet (every
    `flush_every` units). `stage`: a folder keeping computed rows outside the zoo (one parquet per zoo and
    metric), so that units can be computed before the zoo may be written (write=False) and merged later
    without recomputing."""
    root = Path(root)
    zoo = Zoo.open(root)
    reports = []
    for name in names:
        t0 = time.perf_counter()
        p = plan(zoo, read_metrics(root), PARTIALS[name])
        staged_path = None if stage is None else Path(stage) / f"{zoo.name}-{name}-{p.new_hash}.parquet"
        staged = (pl.read_parquet(staged_path) if staged_path is not None and staged_path.exists()
                  else METRICS.empty())
        have = set(staged.select("model_id", "epoch").unique().iter_rows())
        todo = [u for u in p.units if u not in have]
        log.info("%s: %s v%d → v%d, %d units (%s → %s), %d staged", zoo.name, name, p.partial.from_version,
                 p.partial.to_version, len(p.units), p.old_hash, p.new_hash, len(p.units) - len(todo))
        pending, failures, n_done = [u for u in p.units if u in have], [], 0
        rows = staged.join(_unit_frame(pending), on=["model_id", "epoch"], how="semi").to_dicts()

        def flush() -> None:
            nonlocal pending, rows, staged, n_done
            if staged_path is not None and rows:
                staged = pl.concat([staged, pl.DataFrame(rows, schema=METRICS.columns)]).unique(
                    ["model_id", "epoch", "metric", "split", "layer", "coord"], keep="last", maintain_order=True)
                staged_path.parent.mkdir(parents=True, exist_ok=True)
                atomic_write(staged_path, lambda tmp: staged.write_parquet(tmp))
            if write and pending:
                _write(root, p, pending, rows)
                log.info("%s: %d/%d units written", name, n_done + len(pending), len(p.units))
            n_done += len(pending)
            pending, rows = [], []

        if pending and write:
            flush()
        jobs = [(str(root), name, mid, ep, p.new_hash) for mid, ep in todo]
        for i, (unit_rows, err) in run_unordered(compute_unit, jobs, workers=max(1, min(workers, len(jobs) or 1)),
                                                 initializer=_init_worker, executor=LOCAL,
                                                 describe=lambda i: f"{name} on {todo[i]}"):
            if err:
                failures.append(err)
                log.warning("%s", err)
            else:
                pending.append(todo[i])
                rows += unit_rows
            if len(pending) >= flush_every:
                flush()
        flush()
        reports.append(Report(name, len(p.units), n_done, tuple(failures), len(p.skipped_errors),
                              time.perf_counter() - t0, write))
    return reports


def estimate(root: str | Path, names: Sequence[str], workers: int = 2) -> dict[str, float]:
    """Seconds each partial recompute would take on `workers` processes: measured on the largest and the
    smallest model that needs it (one thread, in this process), interpolated in parameter count."""
    zoo = Zoo.open(root)
    size = dict(zoo.catalog.group_by("model_id").agg(pl.col("n_params").first()).iter_rows())
    torch.set_num_threads(1)
    out = {}
    for name in names:
        p = plan(zoo, read_metrics(Path(root)), PARTIALS[name])
        if not p.units:
            out[name] = 0.0
            continue
        points = []
        for mid, ep in dict.fromkeys([p.units[0], p.units[-1]]):
            t = time.perf_counter()
            _, err = compute_unit(str(root), name, mid, ep, p.new_hash)
            if err:
                raise MetricError(err)
            points.append([size[mid], time.perf_counter() - t])
        costs = {name: {"points": sorted(points)}}
        total = sum(predicted_seconds(costs, name, size[mid]) for mid, _ in p.units)
        out[name] = total / max(1, workers)
        log.info("%s: %d units; %s → about %s on %d worker(s)", name, len(p.units),
                 ", ".join(f"{s:.2f} s at {n:,} parameters" for n, s in sorted(points)),
                 format_duration(out[name]), workers)
    return out


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.runner.recompute") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", help="zoo directory")
    ap.add_argument("--metrics", default=",".join(PARTIALS), help=f"comma-separated, of {sorted(PARTIALS)}")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--flush-every", type=int, default=20, metavar="UNITS")
    ap.add_argument("--estimate", action="store_true", help="time two units per metric, predict, write nothing")
    ap.add_argument("--stage", type=Path, default=None, metavar="DIR",
                    help="keep computed rows in DIR too; staged units are merged, not recomputed")
    ap.add_argument("--compute-only", action="store_true", help="with --stage: compute, do not write the zoo")
    ap.add_argument("--data-root", metavar="DIR", default=None, help="where the task's data is (overrides the "
                    "spec's data_root and $PHASEZOO_DATA; docs/datasets.md); the local workers inherit it")
    add_factory_flag(ap)
    args = ap.parse_args(argv)
    trust_flagged(args.factory)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    names = [n for n in args.metrics.split(",") if n]

    def body() -> int:
        if unknown := set(names) - set(PARTIALS):
            raise MetricError(f"no partial recompute for {sorted(unknown)}; known: {sorted(PARTIALS)}")
        # the data root for this process and the workers it spawns (their environment): checked before any work
        prepare_data(Zoo.open(args.zoo), [get_metric(n) for n in names], args.data_root)
        if args.estimate:
            estimate(args.zoo, names, args.workers)
            return 0
        if args.compute_only and args.stage is None:
            raise ValueError("--compute-only needs --stage (else the computed rows are lost)")
        reports = recompute(args.zoo, names, args.workers, args.flush_every, args.stage, not args.compute_only)
        for r in reports:
            print(f"{args.zoo}: {r}")
        return 1 if any(r.failures for r in reports) else 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
