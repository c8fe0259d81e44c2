"""The upload's measurements, as the zoo computed them for its own models: the quick ones in this process
(`OwnMetrics`, each metric once), the Hessian and the pair metrics as jobs on an executor (`SlowJobs`;
a worker process, or this one).

Metric rows are metrics.parquet rows (data.zoo.schema.METRICS) with model_id `UPLOAD` for the upload.
"""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Executor, Future, wait
from functools import lru_cache

import polars as pl
import torch

from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import ModelInput
from analysis.runner.run import metric_rows, use_data_root, zoo_metric
from analysis.upload.failures import in_worker
from data.device import resolve_device
from data.models.archs import build_model
from data.tasks.builtin import TASKS, TaskData, load_task
from data.zoo.schema import METRICS
from data.zoo.store import Zoo

log = logging.getLogger("phasezoo.verdict")
UPLOAD = "upload"  # the model_id of the uploaded model in metric rows
# The upload's Hessian on the training probe set only: the taxonomy and the classifier use that split. Where its
# exact trace was measured (QUICK's hessian_trace_exact: a ReLU MLP), the stochastic traces are skipped: every
# reader takes the exact one first (analysis.taxonomy.cells.QUANTITIES), and they are ~120 of its ~420 HVPs.
HESSIAN = ("hessian", {"splits": ("train",)})
EXACT_TRACE = "hessian_trace_exact"
QUICK = ("performance", "weights", EXACT_TRACE)  # milliseconds: in this process, before the rest
PAIRS = ("cka_logits_test", "mc_linear", "mc_bezier")
Progress = Callable[[str, float], None]  # (what is being done, fraction done)


def rows_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=METRICS.columns) if rows else METRICS.empty()


# ----------------------------------------------------------------------------- worker side
@lru_cache(maxsize=4)
def _zoo(root: str) -> Zoo:
    return Zoo.open(root)


@lru_cache(maxsize=8)
def _task(root: str, device: str, task_knobs: tuple = ()):
    """The zoo's task, with the cell's values of task-parameter knobs (the PINN's β) where known."""
    zoo = _zoo(root)
    task = load_task(zoo.spec.task, **{**zoo.spec.task_params, **dict(task_knobs)}) if task_knobs else zoo.task
    return task.to(resolve_device(device))


def _upload_model(root: str, arch_params: Mapping, state: Mapping[str, torch.Tensor]) -> torch.nn.Module:
    zoo = _zoo(root)
    input_shape, n_out = TASKS[zoo.spec.task].shapes(zoo.spec.task_params)
    model = build_model(zoo.spec.arch, input_shape, n_out, dict(arch_params))
    model.load_state_dict(state)
    return model.eval()


def metric_task(root: str, epoch: int, arch_params: Mapping, models: Sequence[tuple],
                metrics: Sequence[tuple[str, dict]], device: str = "cpu", task_knobs: tuple = (),
                data: str | TaskData | None = None) -> list[dict]:
    """Metric rows on one model or a pair, each ("upload", name, state dict) or ("zoo", model_id); the
    first is the analysed upload (model_id `UPLOAD`), on the task with `task_knobs` ((name, value) pairs of
    task-parameter knobs). Runs in a worker process or in this one. `data`: where a task read from disk is
    (the caller's, passed on: a pool started earlier does not see the caller's environment change), or the
    task's data itself (a caller's tensors, `phasezoo.api.verdict(data=...)`)."""
    dev = resolve_device(device)
    if isinstance(data, TaskData):
        task = data.to(dev)
    else:
        use_data_root(data)
        task = _task(root, device, task_knobs)
    zoo = _zoo(root)
    inputs = []
    for i, m in enumerate(models):
        model = zoo.build_model(m[1], epoch) if m[0] == "zoo" else _upload_model(root, arch_params, m[2])
        inputs.append(ModelInput(UPLOAD if i == 0 else m[1], model.to(dev), task))
    chosen = [zoo_metric(zoo, get_metric(name)).with_params(**params) for name, params in metrics]
    chosen = [m for m in chosen if m.applies_to(inputs[0].model, TASKS[zoo.spec.task].kind)]
    base = {"model_id": UPLOAD, "other_id": inputs[1].model_id if len(inputs) > 1 else None, "epoch": epoch}
    return metric_rows(chosen, inputs, base, " & ".join(m[1] for m in models))


# ----------------------------------------------------------------------------- this process
class OwnMetrics:
    """The upload's quick metrics (`QUICK`), each measured once: a data-free one (weights) on first use, one
    that needs data once per task it is asked for. That is one task — the cell's — unless a task-parameter
    knob (a PINN's β) has to be estimated: the estimate compares its fit on the task known so far, and the
    verdict needs its fit on the cell's task."""

    def __init__(self, root: str, epoch: int, arch_params: Mapping, me: tuple, data: str | TaskData | None = None):
        self._at = (root, epoch, dict(arch_params), me)
        self._data = data
        self._rows: dict[tuple[str, tuple], list[dict]] = {}  # (metric, task knobs) -> its rows

    def rows(self, task_knobs: tuple) -> list[dict]:
        root, epoch, params, me = self._at
        out: list[dict] = []
        for name in QUICK:
            key = (name, task_knobs if get_metric(name).needs_data else ())
            if key not in self._rows:
                self._rows[key] = metric_task(root, epoch, params, [me], [(name, {})], "cpu", key[1], self._data)
            out += self._rows[key]
        return out


def submit(executor: Executor | None, fn, *args) -> Future:
    """A future of `fn(*args)`, which holds whatever it raised (a pool that cannot take work too)."""
    f: Future = Future()
    if executor is None:  # in this process, now
        try:
            f.set_result(fn(*args))
        except Exception as e:
            f.set_exception(e)
        return f
    try:
        return executor.submit(in_worker, fn, *args)
    except Exception as e:  # a broken or shut-down pool: this job fails, the analysis goes on
        f.set_exception(e)
        return f


class SlowJobs:
    """The upload's Hessian and its pair metrics as jobs on an executor (a worker pool, or None: in this
    process, at once), each started as soon as what it needs is known — the Hessian before the pairing is
    decided, so the workers compute while this process places the upload and reads the zoo's tables — and
    collected together (`collect`). A job that fails (in a worker too) is that measurement's failure, not the
    whole file's; leaving the `with` block by an exception (a caller that stops half-way) leaves no work queued."""

    def __init__(self, executor: Executor | None, root: str, epoch: int, arch_params: Mapping, me: tuple,
                 device: str, data: str | TaskData | None = None):
        self._executor, self._at = executor, (root, epoch, dict(arch_params))
        self._me, self._device, self._data = me, device, data
        self._jobs: dict[Future, tuple[str, str | None]] = {}  # future -> (what, the own metric it measures)
        self.pairs_started = 0

    def __enter__(self) -> SlowJobs:
        return self

    def __exit__(self, *exc) -> None:
        for f in self._jobs:
            f.cancel()  # no-op for a job done or running

    def _submit(self, models: list, metrics: list, task_knobs: tuple, what: tuple[str, str | None]) -> None:
        root, epoch, params = self._at
        self._jobs[submit(self._executor, metric_task, root, epoch, params, models, metrics, self._device,
                          task_knobs, self._data)] = what

    def hessian(self, task_knobs: tuple, exact_trace: bool = False) -> None:
        """Its Hessian on the task with `task_knobs`; without the stochastic traces where `exact_trace` (its
        exact trace is measured)."""
        params = {**HESSIAN[1], "stochastic_traces": False} if exact_trace else HESSIAN[1]
        self._submit([self._me], [(HESSIAN[0], params)], task_knobs, ("Hessian", HESSIAN[0]))

    def pairs(self, others: Sequence[tuple], metrics: Sequence[str], task_knobs: tuple) -> None:
        """The `metrics` with each of `others` (("zoo", model_id) or ("upload", name, state) each)."""
        for o in others:
            self._submit([self._me, o], [(m, {}) for m in metrics], task_knobs, (f"pairing with {o[1]}", None))
        self.pairs_started += len(others)

    def collect(self, progress: Progress) -> tuple[list[dict], list[str], list[str]]:
        """Wait for every job: (rows, one line per job that failed, the metrics of its own that failed)."""
        rows: list[dict] = []
        errors: list[str] = []
        failed: list[str] = []
        pending, n = set(self._jobs), len(self._jobs)
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for f in finished:
                try:
                    rows += f.result()
                except Exception as e:
                    what, metric = self._jobs[f]
                    log.error("%s: %s failed", self._me[1], what, exc_info=e)
                    errors.append(f"{what} failed (an internal error, logged)")
                    failed += [metric] if metric else []
            done = n - len(pending)
            progress(f"Hessian and {self.pairs_started} pair(s): {done}/{n} done", 0.2 + 0.75 * done / n)
        return rows, errors, failed
