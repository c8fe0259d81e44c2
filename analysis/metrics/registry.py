"""The metric registry: every metric the runner, the CLI and the dashboard know, declared once.

A registered `Metric` is a unit of computation (a function of one model, of a pair of seeds, or of all the
seeds of a grid cell) that emits rows for one or more `Output`s. Each output declares its sign convention,
log scale and role in the phase taxonomy, for views to choose scales and labels from the declaration
rather than from the name. A new metric is a decorated function:

    @register("my_metric", scope="model", needs_data=True, outputs=[Output("my_value", "higher = ...")])
    def my_metric(m: ModelInput, *, seed: int = 0) -> list[Value]: ...

Keyword arguments with defaults are the metric's parameters; their values enter `params_hash`, so rows
computed with other settings never collide.
"""
from __future__ import annotations

import hashlib
import inspect
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl
from torch import nn

from analysis.metrics.outputs import Output
from data.tasks.builtin import TASK_KINDS, TaskData


class MetricError(ValueError):
    """An unknown metric name, or a metric that cannot run on the given models."""


@dataclass(frozen=True)
class Value:
    """One emitted number; the runner adds model ids, epoch and the parameter hash."""

    metric: str
    value: float
    stderr: float | None = None
    split: str | None = None
    layer: str | None = None
    coord: float | None = None


@dataclass(frozen=True)
class ModelInput:
    model_id: str
    model: nn.Module  # eval mode, on the device the metric runs on
    task: TaskData | None  # None for data-free metrics
    epoch: int | None = None  # the epoch `model` is at
    # the same model at another stored epoch (e.g. for averaging over epochs); None where there is no history
    at_epoch: Callable[[int], nn.Module] | None = None
    stored_epochs: tuple[int, ...] = ()  # the epochs `at_epoch` can load
    # the model's logged training curve (its catalog rows: epoch, train/test loss and accuracy); None for uploads
    history: pl.DataFrame | None = None


# `other_id` of the rows of a cell-scope metric (one computation over all seeds of a grid cell, stored under
# the cell's first model id).
CELL = "cell"


def always(model: nn.Module) -> bool:
    """The default applicability: every architecture (a module-level function, so metrics pickle)."""
    return True


@dataclass(frozen=True)
class Metric:
    name: str
    scope: str  # "model", "pair" or "cell" (SCOPES)
    needs_data: bool  # False: data-free (weights only)
    outputs: tuple[Output, ...]
    fn: Callable[..., list[Value]]
    params: Mapping[str, Any] = field(default_factory=dict)
    version: int = 1  # bump when the computation changes, so stored rows are recomputed
    doc: str = ""
    applies: Callable[[nn.Module], bool] = always  # False: skipped for that architecture
    kinds: frozenset[str] = frozenset(TASK_KINDS)  # the task kinds it applies to (data.tasks.builtin.TASK_KINDS)
    # parameters added after rows were stored, with their defaults: they enter the hash only when set to
    # something else, so adding a parameter never orphans the rows computed before it existed
    added: Mapping[str, Any] = field(default_factory=dict)

    @property
    def params_hash(self) -> str:
        params = {k: v for k, v in self.params.items() if not (k in self.added and v == self.added[k])}
        blob = json.dumps({"metric": self.name, "version": self.version, "params": params},
                          sort_keys=True, default=str)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]

    def with_params(self, **overrides: Any) -> Metric:
        unknown = set(overrides) - set(self.params)
        if unknown:
            raise MetricError(f"{self.name}: unknown parameter(s) {sorted(unknown)}; known: {sorted(self.params)}")
        return Metric(self.name, self.scope, self.needs_data, self.outputs, self.fn,
                      {**self.params, **overrides}, self.version, self.doc, self.applies, self.kinds, self.added)

    def applies_to(self, model: nn.Module, task_kind: str) -> bool:
        return task_kind in self.kinds and self.applies(model)

    def __call__(self, *inputs: ModelInput) -> list[Value]:
        return self.fn(*inputs, **self.params)


REGISTRY: dict[str, Metric] = {}
SCOPES = ("model", "pair", "cell")  # one model, two seeds of a cell, all seeds of a cell


def register(name: str, *, scope: str, needs_data: bool, outputs: Sequence[Output], version: int = 1,
             applies: Callable[[nn.Module], bool] | None = None, kinds: Sequence[str] = TASK_KINDS,
             added: Sequence[str] = ()):
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}, got {scope!r}")
    if unknown := set(kinds) - set(TASK_KINDS):
        raise ValueError(f"unknown task kind(s) {sorted(unknown)}; known: {TASK_KINDS}")

    def deco(fn: Callable[..., list[Value]]) -> Callable[..., list[Value]]:
        if name in REGISTRY:
            raise ValueError(f"metric {name!r} registered twice")
        params = {k: p.default for k, p in inspect.signature(fn).parameters.items()
                  if p.kind is inspect.Parameter.KEYWORD_ONLY}
        REGISTRY[name] = Metric(name, scope, needs_data, tuple(outputs), fn, params, version,
                                inspect.cleandoc(fn.__doc__ or ""), applies or always, frozenset(kinds),
                                {k: params[k] for k in added})
        return fn
    return deco
