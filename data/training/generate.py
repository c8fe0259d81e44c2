"""Train a zoo: the load × temperature × seed grid of a spec, batched, in parallel, resumable.

    phasezoo generate data/specs/mnist1d-mlp.toml --out data/zoos/mnist1d-mlp

Models that share everything but their seed and their paddable knobs (width) are trained together by
`data.training.train.train_batched`; `plan_groups` decides which of them to pad into one computation with a
simple cost model. Groups run in `--workers` processes (one torch thread each). The main process is the
only writer: it writes each finished group's checkpoints, then (every `--flush-every` seconds) the
catalog, each atomically, so a run killed at any moment resumes where it stopped (docs/long-jobs.md).

A batched model's numbers depend on its group (float reductions over the padded stack), so groups are
the unit of resume: they are always planned from the whole spec, a group enters the catalog whole or not
at all, and a resume trains exactly the groups not yet in it — interrupted + resumed is byte for byte
the uninterrupted zoo. `--sequential` trains every model alone (`train_one`): other float rounding than
batched training for the same seed (losses agree to ~1e-5 relative), byte for byte reproducible with itself.
"""
from __future__ import annotations

import argparse
import contextlib
import logging
import os
import queue as queue_mod
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import torch
from tqdm import tqdm

from data.cli import run_cli
from data.device import resolve_device
from data.models.archs import arch_def, build_model, n_params
from data.models.reference import add_factory_flag, trust_flagged
from data.params import SpecError
from data.tasks.builtin import TaskData, load_task
from data.training.train import (
    TrainConfig,
    TrainResult,
    seconds_per_eval,
    seconds_per_step,
    steps_per_epoch,
    train_batched,
    train_one,
)
from data.training.workers import (
    CONTEXT,
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
from data.zoo.schema import CATALOG
from data.zoo.spec import ModelConfig, ZooSpec, parse_spec, trust_spec_factory
from data.zoo.store import (
    CATALOG_FILE,
    CHECKPOINTS,
    TableLog,
    init_zoo_dir,
    read_catalog,
    remove_stale_temporaries,
    write_checkpoint,
    writer_lock,
)

log = logging.getLogger("phasezoo.generate")

# Cost model of one optimiser step of a group (measured here, 1 thread, small MLPs): a fixed overhead
# plus a term proportional to models × batch × padded parameters. Padding a model into a group pays
# off when the overhead it saves exceeds the extra arithmetic on padded zeros.
STEP_OVERHEAD_S = 1e-4
SECONDS_PER_PARAM_SAMPLE = 1e-10


@dataclass(frozen=True)
class Group:
    configs: tuple[ModelConfig, ...]
    n_params: tuple[int, ...]  # trainable parameters of each model (buffers excluded)
    est_seconds: float  # cost-model estimate, used to schedule the longest groups first
    steps: int  # optimiser steps of the whole group (progress unit)


def _group_key(spec: ZooSpec, cfg: ModelConfig) -> tuple:
    paddable = arch_def(spec.arch).paddable
    return (cfg.task_params, cfg.training, tuple((k, v) for k, v in cfg.arch_params if k not in paddable))


def plan_groups(spec: ZooSpec, configs: Sequence[ModelConfig], batched: bool = True) -> list[Group]:
    """Partition models into training groups, longest first. `batched=False` gives one model per group."""
    by_key: dict[tuple, list[ModelConfig]] = {}
    for c in configs:
        by_key.setdefault(_group_key(spec, c) if batched else (c.model_id,), []).append(c)
    out = []
    for members in by_key.values():
        data = _task(spec.task, members[0].task_params)
        size = {c.model_id: n_params(build_model(spec.arch, data.input_shape, data.n_classes, c.get("arch_params")))
                for c in members}
        tr = members[0].get("training")
        steps = tr["epochs"] * steps_per_epoch(len(data.y_train), tr["batch_size"])
        per_step = lambda m, p, b=tr["batch_size"]: STEP_OVERHEAD_S + SECONDS_PER_PARAM_SAMPLE * m * b * p
        current: list[ModelConfig] = []
        for c in sorted(members, key=lambda c: (size[c.model_id], c.model_id)):
            big = size[c.model_id]  # sorted ascending: the newcomer sets the padded size
            if current and per_step(len(current) + 1, big) > (
                    per_step(len(current), size[current[-1].model_id]) + per_step(1, big)):
                out.append(Group(tuple(current), tuple(size[c.model_id] for c in current),
                                 steps * per_step(len(current), size[current[-1].model_id]), steps))
                current = []
            current.append(c)
        out.append(Group(tuple(current), tuple(size[c.model_id] for c in current),
                         steps * per_step(len(current), size[current[-1].model_id]), steps))
    return sorted(out, key=lambda g: -g.est_seconds)


# Task data by (task, task_params). The main process builds it once and hands it to the workers, which
# would otherwise each spend seconds regenerating it.
_TASKS: dict[tuple[str, tuple], TaskData] = {}
_progress = None  # the main process's progress queue, in a worker


def _task(task: str, params: tuple) -> TaskData:
    if (task, params) not in _TASKS:
        _TASKS[task, params] = load_task(task, **dict(params))
    return _TASKS[task, params]


def _init_worker(progress, tasks: dict) -> None:
    global _progress
    torch.set_num_threads(1)  # two workers on two cores: more threads only oversubscribe
    _progress = progress
    _TASKS.update(tasks)


def train_group(spec: ZooSpec, configs: Sequence[ModelConfig], device: str) -> list[TrainResult]:
    """Train one group (batched when it has several models) and return its results in order."""
    dev = resolve_device(device)
    data = _task(spec.task, configs[0].task_params).to(dev)
    cfg = TrainConfig.from_training(configs[0].get("training"))
    models = [build_model(spec.arch, data.input_shape, data.n_classes, c.get("arch_params"), seed=c.seed).to(dev)
              for c in configs]
    report = (lambda steps: _progress.put(steps)) if _progress is not None else (lambda steps: None)
    if len(models) == 1 or any(dict(m.named_buffers()) for m in models):  # buffers (BatchNorm): one at a time
        return [train_one(m, data, cfg, c.seed, spec.checkpoint_epochs, report) for m, c in zip(models, configs)]
    return train_batched(models, data, cfg, [c.seed for c in configs], spec.checkpoint_epochs, report)


@dataclass(frozen=True)
class Estimate:
    """The cost of a run before it starts, from every group's steps and evaluations timed here."""

    models: int
    epochs: int
    steps: int  # optimiser steps over all groups
    step_seconds: tuple[float, float]  # measured per step: the fastest and the slowest group
    seconds: float  # estimated wall time on `workers` workers (longest first)
    workers: int

    def __str__(self) -> str:
        lo, hi = (f"{s * 1e3:.2f} ms" for s in self.step_seconds)
        return (f"estimate: {self.models} models × {self.epochs} epochs = {self.steps:,} steps; measured here "
                f"{lo}–{hi} per step → about {format_duration(self.seconds)} on {self.workers} worker(s)")


def _time_group(spec: ZooSpec, g: Group, dev) -> tuple[float, float]:
    """(seconds per optimiser step, seconds per evaluation of both splits) of one group, measured."""
    data = _task(spec.task, g.configs[0].task_params).to(dev)
    cfg = TrainConfig.from_training(g.configs[0].get("training"))
    models = [build_model(spec.arch, data.input_shape, data.n_classes, c.get("arch_params"), seed=c.seed).to(dev)
              for c in g.configs]
    return seconds_per_step(models, data, cfg, steps=3, warmup=1), seconds_per_eval(models, data)


def estimate(spec: ZooSpec, groups: Sequence[Group], workers: int, device: str = "cpu") -> Estimate:
    """Time a few steps and one evaluation of every group on `device` (one thread, as in a worker), predict
    each group's time (steps × step + logged epochs × evaluation), and schedule them longest first on
    `workers` workers. Measured in seconds for zoos of hundreds of small models; a GPU cluster runs faster
    than this machine's estimate."""
    dev = resolve_device(device)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timed = [_time_group(spec, g, dev) for g in groups]
    finally:
        torch.set_num_threads(threads)
    per_group = []
    for g, (step_s, eval_s) in zip(groups, timed):
        cfg = TrainConfig.from_training(g.configs[0].get("training"))
        evals = sum(1 for e in range(cfg.epochs + 1) if e == 0 or cfg.logs(e, spec.checkpoint_epochs))
        per_group.append(g.steps * step_s + evals * eval_s)
    loads = [0.0] * workers
    for t in sorted(per_group, reverse=True):  # longest first onto the least loaded worker
        loads[loads.index(min(loads))] += t
    steps = [s for s, _ in timed]
    return Estimate(sum(len(g.configs) for g in groups), spec.training["epochs"], sum(g.steps for g in groups),
                    (min(steps), max(steps)), max(loads), workers)


# ----------------------------------------------------------------------------- main process
def catalog_rows(spec: ZooSpec, cfg: ModelConfig, result: TrainResult, paths: dict[int, str],
                 n: int) -> pl.DataFrame:
    knobs = dict(cfg.knobs)
    rows = [{"model_id": cfg.model_id, "arch": spec.arch, "seed": cfg.seed, "epoch": h.epoch, "n_params": n,
             "train_loss": h.train_loss, "train_acc": h.train_acc, "test_loss": h.test_loss,
             "test_acc": h.test_acc, "checkpoint": paths.get(h.epoch), **knobs} for h in result.history]
    return pl.DataFrame(rows, schema={**CATALOG.columns, **spec.knob_dtypes})


@dataclass(frozen=True)
class GenerateReport:
    trained: int
    skipped: int
    groups: int
    seconds: float
    estimate: Estimate | None = None  # printed before the run started


def generate(spec_path: str | Path, out: str | Path, workers: int | None = None, device: str = "auto",
             batched: bool = True, progress: bool = True, flush_every: float = 5.0,
             executor: Executor = LOCAL, estimate_only: bool = False) -> GenerateReport:
    t0 = time.perf_counter()
    try:
        spec_text = Path(spec_path).read_text()
    except OSError as e:
        raise SpecError(f"cannot read spec {spec_path}: {e.strerror}") from None
    root = Path(out)
    if estimate_only and not root.exists():  # an estimate writes nothing: not even the directory
        spec = parse_spec(spec_text, str(spec_path))
        resolve_device(device)
        return _generate(root, spec, workers, device, batched, progress, flush_every, t0, executor, True)
    spec = init_zoo_dir(root, spec_text)
    resolve_device(device)  # fail now, not in a worker, if CUDA is asked for and absent
    with writer_lock(root):
        return _generate(root, spec, workers, device, batched, progress, flush_every, t0, executor, estimate_only)


def _generate(root: Path, spec: ZooSpec, workers: int | None, device: str, batched: bool, progress: bool,
              flush_every: float, t0: float, executor: Executor = LOCAL,
              estimate_only: bool = False) -> GenerateReport:
    if n := remove_stale_temporaries(root):
        log.info("removed %d temporary file(s) left by an interrupted run", n)
    catalog = read_catalog(root, spec, missing_ok=True)
    done = set(catalog["model_id"].unique())
    # The groups of the whole spec, as an uninterrupted run plans them, less those already in the catalog.
    # A group partly there (a zoo written before groups were atomic) is trained again whole and replaces
    # its rows, so that its models get the numbers of their group.
    groups = [g for g in plan_groups(spec, spec.models(), batched) if not all(c.model_id in done for c in g.configs)]
    pending = [c for g in groups for c in g.configs]
    done -= {c.model_id for c in pending}
    if not pending:
        return GenerateReport(0, len(done), 0, 0.0)
    workers = max(1, min(workers or os.cpu_count() or 1, len(groups)))
    slots, on = task_slots(executor, workers)
    log.info("%s: %d models to train (%d already done) in %d groups on %d %s",
             spec.name, len(pending), len(done), len(groups), slots, on)
    est = estimate(spec, groups, min(slots, len(groups)), device)
    log.info("%s", est)
    if estimate_only:
        return GenerateReport(0, len(done), len(groups), time.perf_counter() - t0, est)
    local = executor.kind == "local"
    steps_q = CONTEXT.Queue() if local else None  # Ray workers on other machines: progress per finished group
    bar = tqdm(total=sum(g.steps for g in groups), unit="step", disable=not progress, smoothing=0.05,
               desc=f"{spec.name}: {len(pending)} models", file=sys.stderr)
    _remove_orphan_checkpoints(root, catalog, pending)
    writer = _Writer(root, spec, catalog, flush_every)
    name = lambda i: (f"training group {i + 1}/{len(groups)} ({groups[i].configs[0].model_id}"
                      + (f" and {len(groups[i].configs) - 1} more)" if len(groups[i].configs) > 1 else ")"))
    try:
        # closing: on any exception (a signal's Interrupted too) the workers stop before the flush below
        with contextlib.closing(run_unordered(
                train_group, [(spec, g.configs, device) for g in groups], workers=workers,
                initializer=_init_worker, initargs=(steps_q, dict(_TASKS)),
                on_tick=lambda: _drain(steps_q, bar) if local else None, executor=executor,
                describe=name)) as finished:
            for i, results in finished:
                writer.add(groups[i], results)
                if not local:
                    bar.update(groups[i].steps)
    finally:
        writer.flush()  # keep every finished group, also when another one failed or a signal stopped the run
        if local:
            _drain(steps_q, bar)
        bar.close()
    return GenerateReport(len(pending), len(done), len(groups), time.perf_counter() - t0, est)


def _remove_orphan_checkpoints(root: Path, catalog: pl.DataFrame, configs: Sequence[ModelConfig]) -> None:
    """Delete checkpoints of the models about to be trained that the catalog does not name: written by a
    run killed before it flushed their group, they are not part of the zoo (the group is trained again)."""
    named = set(catalog["checkpoint"].drop_nulls())
    for c in configs:
        folder = root / CHECKPOINTS / c.model_id
        for p in folder.glob("*.safetensors") if folder.is_dir() else ():
            if str(p.relative_to(root)) not in named:
                p.unlink()


def _drain(q, bar: tqdm) -> None:
    try:
        while True:
            bar.update(q.get_nowait())
    except queue_mod.Empty:
        pass


class _Writer:
    """Writes finished groups: checkpoints at once, their catalog rows at most every `flush_s` seconds.

    A group is part of the zoo once the catalog naming it is written (after its checkpoints, which are
    synced to disk first), so a kill loses at most `flush_s` seconds of finished work and corrupts nothing;
    rewriting the catalog after every one of hundreds of single-model tasks would cost more than training.
    A group's rows are added in one piece, so no flush (timed, final or forced by a failure) can split it.
    """

    def __init__(self, root: Path, spec: ZooSpec, catalog: pl.DataFrame, flush_s: float):
        self.root, self.spec = root, spec
        self.log = TableLog(root / CATALOG_FILE, CATALOG, catalog, key=["model_id", "epoch"],
                            knobs=spec.knob_dtypes, flush_s=flush_s, before_flush=os.sync)

    def add(self, group: Group, results: Sequence[TrainResult]) -> None:
        with signals_deferred():  # a finished group is kept whole: a SIGTERM now takes effect after it
            rows = []
            for cfg, n, res in zip(group.configs, group.n_params, results):
                paths = {e: write_checkpoint(self.root, cfg.model_id, e, sd)
                         for e, sd in sorted(res.checkpoints.items())}
                rows.append(catalog_rows(self.spec, cfg, res, paths, n))
            self.log.add(pl.concat(rows))  # only once every checkpoint of the group is written

    def flush(self) -> None:
        with signals_deferred():
            self.log.flush()


def main(argv: Sequence[str] | None = None, prog: str = "python -m data.training.generate") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("spec", help="zoo spec (TOML), e.g. data/specs/mnist1d-mlp.toml")
    ap.add_argument("--out", required=True, help="zoo directory to create or resume")
    ap.add_argument("--workers", type=int, default=None, help="worker processes (default: all cores)")
    ap.add_argument("--device", default="auto", help="auto (CUDA when present), cpu, cuda, cuda:1, ...")
    ap.add_argument("--sequential", action="store_true",
                    help="one model at a time (the baseline; slower; other float rounding than batched, "
                         "reproducible with itself)")
    ap.add_argument("--flush-every", type=float, default=5.0, metavar="SECONDS",
                    help="rewrite the catalog at most this often: the finished work a kill can cost (default 5)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or progress messages: errors only")
    ap.add_argument("--estimate", action="store_true", help="print the cost estimate and exit without training")
    add_executor_args(ap)
    add_factory_flag(ap)
    args = ap.parse_args(argv)
    trust_flagged(args.factory)
    trust_spec_factory(args.spec)
    logging.basicConfig(level=logging.WARNING if args.quiet and not args.estimate else logging.INFO,
                        format="%(message)s")

    def body() -> int:
        with stop_on_signals():
            rep = generate(args.spec, args.out, args.workers, args.device, not args.sequential, not args.quiet,
                           args.flush_every, executor_from_args(args), args.estimate)
        if not args.estimate:
            print(f"{args.out}: trained {rep.trained} models in {rep.groups} groups in {rep.seconds:.1f} s "
                  f"({rep.skipped} already done)")
        return 0

    # interrupted: the workers are stopped and every finished group is flushed
    return run_cli(body, interrupted_hint=f"finished groups are kept in {args.out}")


if __name__ == "__main__":
    sys.exit(main())
