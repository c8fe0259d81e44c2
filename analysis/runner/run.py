"""The metric runner: the one loop over a zoo's models, seed pairs and cells.

    phasezoo run data/zoos/mnist1d-mlp                      # every metric, analysis epochs
    phasezoo run ZOO --metrics 'hessian*,performance' --epochs 300 --models 'width256*'
    phasezoo run --list                                     # the registry
    phasezoo run data/zoos/ptmz-resnet18 --data-root /data  # an imported zoo, measured on the data under /data

A task is one model (all requested model-scope metrics, the checkpoint loaded once), one pair of seeds
of a grid cell (all pair-scope metrics) or all seeds of a cell (cell-scope metrics) at one epoch. Tasks
run in `--workers` processes (one torch thread each), longest first. The main process appends their rows
to the zoo's metrics.parquet atomically every `--flush-every` seconds. Resumable: a (model, pair or cell,
epoch, metric parameters) already stored without error is skipped. A failure is stored as a row naming the model and the metric, and the others go on.
A task read from disk (the published zoos' CIFAR/SVHN/TinyImageNet, data.datasets) comes from the data root:
`--data-root`, else the spec's `data_root`, else $PHASEZOO_DATA (docs/datasets.md). It is read once before any
work starts (a missing root or layout is one line, nothing computed), and handed to every worker in its payload.
SIGINT/SIGTERM stop the workers, flush the finished rows and exit 130/143 with one line; a dead worker or a
full disk ends with one line too, the finished rows kept (docs/long-jobs.md).
"""
from __future__ import annotations

import argparse
import contextlib
import dataclasses
import fnmatch
import itertools
import logging
import os
import sys
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import polars as pl
import torch
from tqdm import tqdm

from analysis.metrics.catalog import get_metric, list_metrics
from analysis.metrics.registry import CELL, Metric, MetricError, ModelInput, Value
from analysis.runner.costs import COSTS_FILE, predicted_seconds, record_costs
from analysis.taxonomy.cells import ANNOTATED
from data.cli import run_cli
from data.datasets import ENV as DATA_ENV
from data.datasets import data_root as checked_data_root
from data.device import resolve_device
from data.models.archs import build_model
from data.models.reference import add_factory_flag, trust_flagged
from data.tasks.builtin import TASKS
from data.training.workers import (
    LOCAL,
    Executor,
    add_executor_args,
    executor_from_args,
    format_duration,
    run_unordered,
    signals_deferred,
    stop_on_signals,
    task_slots,
)
from data.zoo.schema import METRICS
from data.zoo.spec import data_root_for
from data.zoo.store import (
    METRICS_FILE,
    TableLog,
    Zoo,
    ZooError,
    read_metrics,
    remove_stale_temporaries,
    writer_lock,
)

log = logging.getLogger("phasezoo.metrics")


@dataclass(frozen=True)
class Task:
    scope: str  # "model", "pair" or "cell"
    epoch: int
    ids: tuple[str, ...]  # one model, or a pair
    metrics: tuple[Metric, ...]
    cost: float  # relative, for longest-first scheduling


def cell_groups(zoo: Zoo, model_ids: Sequence[str]) -> list[tuple[str, ...]]:
    """The models of each grid cell (they differ only in their seed), sorted."""
    cells: dict[tuple, list[str]] = {}
    for mid in sorted(model_ids):
        cells.setdefault(zoo.configs[mid].knobs, []).append(mid)
    return [tuple(ids) for ids in cells.values()]


def cell_pairs(zoo: Zoo, model_ids: Sequence[str]) -> list[tuple[str, str]]:
    """All pairs of models that differ only in their seed (the seeds of one grid cell)."""
    return [p for ids in cell_groups(zoo, model_ids) for p in itertools.combinations(ids, 2)]


def other_id(scope: str, ids: Sequence[str]) -> str | None:
    """The `other_id` of a task's rows: the second model of a pair, CELL for a cell, None for a model."""
    return ids[1] if scope == "pair" else CELL if scope == "cell" else None


def plan(zoo: Zoo, metrics: Sequence[Metric], epochs: Sequence[int], models: Sequence[str],
         done: set[tuple]) -> list[Task]:
    """Tasks still to compute; `done` holds (model_id, other_id or "", epoch, params_hash) keys."""
    size = dict(zoo.catalog.group_by("model_id").agg(pl.col("n_params").first()).iter_rows())
    task = TASKS[zoo.spec.task]  # shapes only: an imported zoo has no data here
    input_shape, n_out = task.shapes(zoo.spec.task_params)
    by_params = {cfg.arch_params: None for cfg in zoo.configs.values()}
    for params in by_params:  # one untrained model per architecture variant, for `Metric.applies`
        by_params[params] = build_model(zoo.spec.arch, input_shape, n_out, dict(params))
    template = {mid: by_params[zoo.configs[mid].arch_params] for mid in models}
    tasks = []
    units = {"model": [(m,) for m in models], "pair": cell_pairs(zoo, models), "cell": cell_groups(zoo, models)}
    for scope, unit in units.items():
        wanted = [m for m in metrics if m.scope == scope]
        for epoch, ids in itertools.product(epochs, unit):
            todo = tuple(m for m in wanted if m.applies_to(template[ids[0]], task.kind)
                         and (ids[0], other_id(scope, ids) or "", epoch, m.params_hash) not in done)
            if todo:
                weight = {"model": 1, "pair": 4, "cell": len(ids)}[scope]  # a pair trains a curve
                tasks.append(Task(scope, epoch, ids, todo, size[ids[0]] * len(todo) * weight))
    return sorted(tasks, key=lambda t: -t.cost)


# ----------------------------------------------------------------------------- worker side
def _init_worker() -> None:
    torch.set_num_threads(1)  # two workers on two cores: more threads only oversubscribe


@lru_cache(maxsize=2)
def _zoo(root: str) -> Zoo:
    return Zoo.open(root)


def use_data_root(data_root: str | None) -> None:
    """Make `data_root` this process's data root (data.tasks reads $PHASEZOO_DATA); None leaves it as it is."""
    if data_root and os.environ.get(DATA_ENV) != data_root:
        os.environ[DATA_ENV] = data_root


def compute(root: str, task: Task, device: str = "cpu", data_root: str | None = None) -> list[dict]:
    """Rows for one task; every failure becomes an error row naming the model(s) and the metric. `data_root`:
    the main process's data root, passed explicitly (a Ray worker does not inherit its environment)."""
    use_data_root(data_root)
    zoo = _zoo(root)
    dev = resolve_device(device)
    base = {"model_id": task.ids[0], "other_id": other_id(task.scope, task.ids), "epoch": task.epoch}
    where = f"{' & '.join(task.ids)} at epoch {task.epoch}"
    stored = zoo.checkpoints().group_by("model_id").agg(pl.col("epoch").sort())
    history = {mid: tuple(eps) for mid, eps in stored.filter(pl.col("model_id").is_in(task.ids)).iter_rows()}
    try:
        task_data = zoo.task_of(task.ids[0]).to(dev) if any(m.needs_data for m in task.metrics) else None
        inputs = [ModelInput(mid, zoo.build_model(mid, task.epoch).to(dev), task_data, task.epoch,
                             lambda e, mid=mid: zoo.build_model(mid, e).to(dev), history.get(mid, ()),
                             zoo.catalog.filter(pl.col("model_id") == mid).sort("epoch"))
                  for mid in task.ids]
    except Exception as e:  # a missing or corrupt checkpoint fails every metric of the task
        return [error_row(base, m, where, e) for m in task.metrics]
    return metric_rows(task.metrics, inputs, base, where)


def metric_rows(metrics: Sequence[Metric], inputs: Sequence[ModelInput], base: dict, where: str) -> list[dict]:
    """metrics.parquet rows (`base` gives model_id, other_id, epoch) of each metric on `inputs`; a metric
    that raises or emits a non-finite value becomes an error row, and the others go on."""
    rows: list[dict] = []
    for metric in metrics:
        try:
            values = metric(*inputs)
            bad = [v for v in values if not _finite(v)]
            if bad:
                raise ValueError(f"non-finite {bad[0].metric} = {bad[0].value}")
            rows += [{**base, "metric": v.metric, "split": v.split, "layer": v.layer, "coord": v.coord,
                      "value": float(v.value), "stderr": None if v.stderr is None else float(v.stderr),
                      "params_hash": metric.params_hash, "error": None} for v in values]
        except Exception as e:
            rows.append(error_row(base, metric, where, e))
    return rows


def supersedes() -> list[str | pl.Expr]:
    """The key under which a metric's new rows replace stored ones: the unit (model, other, epoch) and the
    registered metric the row's output belongs to — not its params_hash, so a recomputation under a new
    version or new parameters replaces the rows of the old one instead of standing beside them (readers
    aggregate every row of an output). An imported zoo's annotated rows (analysis.taxonomy.cells.ANNOTATED: the
    published values) are kept beside the recomputed ones, never replaced: readers prefer the recomputed."""
    family = {o.name: m.name for m in list_metrics() for o in m.outputs}  # an error row names the metric
    return ["model_id", "other_id", "epoch", pl.col("metric").replace(family),
            pl.col("params_hash").is_in(list(ANNOTATED))]


def _finite(v: Value) -> bool:
    return v.value == v.value and abs(v.value) != float("inf")


def error_row(base: dict, metric: Metric, where: str, e: Exception) -> dict:
    log.debug("%s", "".join(traceback.format_exception(e)))
    return {**base, "metric": metric.name, "split": None, "layer": None, "coord": None, "value": None,
            "stderr": None, "params_hash": metric.params_hash,
            "error": f"{metric.name} on {where}: {type(e).__name__}: {e}"}


# ----------------------------------------------------------------------------- main process
@dataclass(frozen=True)
class RunReport:
    tasks: int
    rows: int
    failures: int
    seconds: float  # wall clock
    busy: float = 0.0  # compute seconds summed over tasks (all workers)
    cells: int = 0  # grid cells whose models were computed
    estimate: MetricEstimate | None = None  # printed before the run started

    def __str__(self) -> str:
        per_cell = f", {self.busy / self.cells:.1f} s of compute per cell" if self.cells and self.tasks else ""
        return (f"{self.tasks} tasks, {self.rows} rows, {self.failures} failures in {self.seconds:.1f} s"
                + per_cell)


@dataclass(frozen=True)
class MetricEstimate:
    """Per-metric costs measured on the costliest and the cheapest model (or pair, or cell) needing each
    metric, and the predicted wall time of the whole run (each task's cost interpolated in parameter count)."""

    per_metric: dict[str, list[tuple[float, str, int]]]  # metric -> [(seconds, where measured, its parameters)]
    seconds: float
    workers: int

    def __str__(self) -> str:
        lines = [f"  {name:20s} " + ", ".join(f"{s:.2f} s on {where} ({n:,} parameters)" for s, where, n in pts)
                 for name, pts in self.per_metric.items()]
        return "\n".join(["estimate: per-metric cost measured here", *lines,
                          f"  → about {format_duration(self.seconds)} on {self.workers} worker(s)"])


def estimate(zoo: Zoo, tasks: Sequence[Task], workers: int, device: str = "cpu", data_root: str | None = None
             ) -> tuple[MetricEstimate, list[dict], list[Task]]:
    """Measure each metric on the costliest and on the cheapest task that needs it (tasks come longest
    first), in this process with one thread as in a worker; predict every other task's time by
    interpolating in parameter count (small models cost mostly fixed overhead, large ones arithmetic).

    Returns the estimate, the rows computed while measuring (kept: they are real results) and the tasks
    left to run (the measured metrics removed from their tasks)."""
    size = dict(zoo.catalog.group_by("model_id").agg(pl.col("n_params").first()).iter_rows())
    picks = {}  # metric name -> indices of its costliest and cheapest task
    for i, task in enumerate(tasks):
        for m in task.metrics:
            picks.setdefault(m.name, [i, i])[1] = i
    measured: dict[str, list[tuple[float, str, int]]] = {}
    rows: list[dict] = []
    left = list(tasks)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        for name, idx in picks.items():
            for i in dict.fromkeys(idx):  # one task when the metric has only one
                m = next(x for x in left[i].metrics if x.name == name)
                rows_m, secs = timed_compute(str(zoo.root), dataclasses.replace(tasks[i], metrics=(m,)), device,
                                             data_root)
                rows += rows_m
                measured.setdefault(name, []).append((secs, " & ".join(tasks[i].ids), size[tasks[i].ids[0]]))
                left[i] = dataclasses.replace(left[i], metrics=tuple(x for x in left[i].metrics if x.name != name))
    finally:
        torch.set_num_threads(threads)
    costs = record_costs(zoo.root, measured)
    predicted = [sum(predicted_seconds(costs, m.name, size[t.ids[0]]) for m in t.metrics) for t in left if t.metrics]
    loads = [0.0] * workers
    for t in sorted(predicted, reverse=True):
        loads[loads.index(min(loads))] += t
    return MetricEstimate(measured, max(loads), workers), rows, [t for t in left if t.metrics]


def timed_compute(root: str, task: Task, device: str = "cpu", data_root: str | None = None
                  ) -> tuple[list[dict], float]:
    t = time.perf_counter()
    rows = compute(root, task, device, data_root)
    return rows, time.perf_counter() - t


def resolve_metrics(patterns: Sequence[str] | None) -> list[Metric]:
    """Metric names or wildcards → registered metrics; an unknown name is an error listing the known ones."""
    if not patterns:
        return list_metrics()
    chosen: dict[str, Metric] = {}
    for pat in patterns:
        found = list_metrics(pat) if any(c in pat for c in "*?[") else [get_metric(pat)]
        if not found:
            raise MetricError(f"no metric matches {pat!r}; available: {[m.name for m in list_metrics()]}")
        chosen.update({m.name: m for m in found})
    return list(chosen.values())


def zoo_metric(zoo: Zoo, metric: Metric) -> Metric:
    """The metric with the zoo's own parameters (its spec's [metrics.<name>] table), e.g. a PINN zoo's
    Bézier learning rate."""
    return metric.with_params(**zoo.spec.metric_params.get(metric.name, {}))


def prepare_data(zoo: Zoo, metrics: Sequence[Metric], data_root: str | Path | None = None) -> str | None:
    """Settle the zoo's data root (`data_root`, else its spec's `data_root`, else $PHASEZOO_DATA) for this process
    and its workers, and — when the task is read from disk and a metric needs data — read the task once, so that a
    missing root or a wrong layout is one line naming the layout expected and what was found before any work starts.
    Returns the root to hand to workers (None: no data root anywhere)."""
    chosen = data_root_for(zoo.spec, zoo.root, data_root)
    if chosen is not None:
        use_data_root(str(checked_data_root(chosen).resolve()))
    if TASKS[zoo.spec.task].dataset and any(m.needs_data for m in metrics):
        zoo.task  # noqa: B018 — reads and caches it (DatasetError: "task cifar10: expected … under …: found …")
    return os.environ.get(DATA_ENV) or None


def run(root: str | Path, metrics: Sequence[Metric], epochs: Sequence[int] | None = None,
        models: str = "*", workers: int | None = None, device: str = "cpu", progress: bool = True,
        flush_every: float = 5.0, executor: Executor = LOCAL, estimate_only: bool = False,
        data_root: str | Path | None = None) -> RunReport:
    """`data_root` overrides the spec's `data_root` and $PHASEZOO_DATA (docs/datasets.md) for this run."""
    t0 = time.perf_counter()
    zoo = Zoo.open(root)
    resolve_device(device)
    for name in zoo.spec.metric_params:
        get_metric(name)  # an unknown name in the spec's [metrics] is an error naming the known ones
    metrics = [zoo_metric(zoo, m) for m in metrics]
    stored = sorted(zoo.catalog["epoch"].unique())
    epochs = list(epochs) if epochs else list(zoo.spec.analysis_epochs)
    missing = [e for e in epochs if e not in zoo.checkpoints()["epoch"].unique()]
    if missing:
        raise ZooError(f"{zoo.name}: no checkpoints at epoch(s) {missing}; stored: "
                       f"{sorted(zoo.checkpoints()['epoch'].unique())} (logged: {stored[0]}..{stored[-1]})")
    ids = [m for m in zoo.catalog["model_id"].unique().sort() if fnmatch.fnmatch(m, models)]
    if not ids:
        raise ZooError(f"{zoo.name}: no model matches {models!r}")
    data = prepare_data(zoo, metrics, data_root)
    with writer_lock(zoo.root):
        # a killed runner's temporaries (ours only: other tools may write other files of the zoo)
        if n := remove_stale_temporaries(zoo.root, [METRICS_FILE, COSTS_FILE]):
            log.info("removed %d temporary file(s) left by an interrupted run", n)
        table = read_metrics(zoo.root)
        ok = table.filter(pl.col("error").is_null())
        done = set(ok.select("model_id", pl.col("other_id").fill_null(""), "epoch", "params_hash").unique().iter_rows())
        if estimate_only:  # what a full recompute would cost; the measuring rows are not written
            est, _, _ = estimate(zoo, plan(zoo, metrics, epochs, ids, set()), workers or os.cpu_count() or 1, device,
                                 data)
            log.info("%s", est)
            return RunReport(0, 0, 0, time.perf_counter() - t0, 0.0, 0, est)
        tasks = plan(zoo, metrics, epochs, ids, done)
        writer = TableLog(zoo.root / METRICS_FILE, METRICS, table, key=supersedes(), flush_s=flush_every)
        workers = max(1, min(workers or os.cpu_count() or 1, len(tasks) or 1))
        slots, on = task_slots(executor, workers)
        log.info("%s: %d tasks (%s) over %d models at epochs %s on %d %s", zoo.name, len(tasks),
                 ", ".join(m.name for m in metrics), len(ids), epochs, slots, on)
        n_tasks, busy, n_rows, n_fail, est = len(tasks), 0.0, 0, 0, None
        if tasks:  # measure each metric once (its rows are real results: kept), then predict the rest
            t_est = time.perf_counter()
            est, rows, tasks = estimate(zoo, tasks, slots, device, data)
            busy += time.perf_counter() - t_est
            log.info("%s", est)
            writer.add(pl.DataFrame(rows, schema=METRICS.columns))
            n_rows, n_fail = len(rows), sum(r["error"] is not None for r in rows)
        bar = tqdm(total=len(tasks), unit="task", disable=not progress, desc=f"{zoo.name} metrics", file=sys.stderr)
        try:
            name = lambda i: (f"{'/'.join(m.name for m in tasks[i].metrics)} on {' & '.join(tasks[i].ids)} "
                              f"at epoch {tasks[i].epoch}")
            # closing: on any exception (a signal's Interrupted too) the workers stop before the flush below
            with contextlib.closing(run_unordered(timed_compute, [(str(zoo.root), t, device, data) for t in tasks],
                                                  workers=workers, initializer=_init_worker, executor=executor,
                                                  describe=name)) as finished:
                for _, (rows, secs) in finished:
                    busy += secs
                    writer.add(pl.DataFrame(rows, schema=METRICS.columns))
                    n_rows += len(rows)
                    n_fail += sum(r["error"] is not None for r in rows)
                    bar.update()
        finally:
            with signals_deferred():  # every finished task's rows, also when a worker died or a signal came
                writer.flush()
            bar.close()
    cells = len({zoo.configs[i].knobs for t in tasks for i in t.ids})
    return RunReport(n_tasks, n_rows, n_fail, time.perf_counter() - t0, busy, cells, est)


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.runner.run") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", nargs="?", help="zoo directory")
    ap.add_argument("--metrics", default="", help="comma-separated names or wildcards (default: all)")
    ap.add_argument("--epochs", default="",
                    help="comma-separated epochs, or 'last' for the last analysis epoch (default: the analysis epochs)")
    ap.add_argument("--models", default="*", help="model-id wildcard (default: all)")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto")
    ap.add_argument("--flush-every", type=float, default=5.0, metavar="SECONDS")
    ap.add_argument("--data-root", metavar="DIR", default=None,
                    help="where the task's data is (overrides the spec's data_root and $PHASEZOO_DATA; docs/datasets.md)")
    ap.add_argument("--list", action="store_true", help="list the registered metrics and exit")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or progress messages: errors only")
    ap.add_argument("--estimate", action="store_true",
                    help="measure each metric once, print what computing all of them costs, and exit (no rows)")
    add_executor_args(ap)
    add_factory_flag(ap)
    args = ap.parse_args(argv)
    trust_flagged(args.factory)
    logging.basicConfig(level=logging.WARNING if args.quiet and not args.estimate else logging.INFO,
                        format="%(message)s")
    if args.list:
        for m in list_metrics():
            print(f"{m.name:20s} {m.scope:5s} {'data' if m.needs_data else 'data-free':9s} "
                  f"outputs: {', '.join(o.name for o in m.outputs)}")
        return 0
    if not args.zoo:
        ap.error("a zoo directory is required (or --list)")

    def body() -> int:
        metrics = resolve_metrics([p for p in args.metrics.split(",") if p])
        epochs = ([Zoo.open(args.zoo).spec.analysis_epochs[-1]] if args.epochs == "last"
                  else [int(e) for e in args.epochs.split(",") if e])
        with stop_on_signals():
            rep = run(args.zoo, metrics, epochs, args.models, args.workers, args.device, not args.quiet,
                      args.flush_every, executor_from_args(args), args.estimate, args.data_root)
        print(f"{args.zoo}: {rep}")
        return 1 if rep.failures else 0

    # interrupted: the workers are stopped and every finished task's rows are flushed
    return run_cli(body, interrupted_hint=f"finished metric rows are kept in {args.zoo}")


if __name__ == "__main__":
    sys.exit(main())
