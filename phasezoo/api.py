"""The Python API: what a notebook user reaches for first (docs/api.md).

    from phasezoo import open_zoo, compute_metrics, label_cells, verdict

    zoo = open_zoo("mnist1d-mlp")                     # a zoo as Polars frames (a built-in one by name)
    cells = label_cells(zoo, epoch=300)               # its grid cells with their phases (science.md §1)
    rows = compute_metrics(my_model, metrics=["performance"], data=(x_train, y_train, x_test, y_test))
    report = verdict(my_model, zoo="mnist1d-mlp")     # a model's phase, evidence and place on the map

Four thin functions over the layers below, no logic of their own: `open_zoo` is data.zoo.store's `Zoo.open`
plus the tables beside the catalog; `compute_metrics` is the metric runner (analysis.runner.run) on a zoo, or
its per-model step (`metric_rows` on `ModelInput`s) on in-memory models; `label_cells` is
analysis.taxonomy's cell table and classifier; `verdict` is the upload pipeline (analysis.upload.verdict)
on one checkpoint. Errors are the project's one-line errors, all ValueError subclasses: ApiError for a bad
argument here, and ZooError, MetricError, SpecError (DatasetError) or CheckpointError from the layer that
found the problem.
"""
from __future__ import annotations

import contextlib
import copy
import itertools
import os
import tempfile
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path

import polars as pl
import torch
from safetensors.torch import save_file
from torch import nn

from analysis.metrics.catalog import list_metrics
from analysis.metrics.registry import CELL, Metric, ModelInput
from analysis.runner.run import metric_rows, resolve_metrics, run
from analysis.taxonomy.cells import cell_table
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds
from analysis.upload.report import Report
from analysis.upload.verdict import Refused, analyse
from data.device import resolve_device
from data.tasks.builtin import TaskData
from data.zoo.schema import EMBEDDINGS, METRICS
from data.zoo.spec import ZooSpec
from data.zoo.store import Zoo, builtin_zoos, read_metrics, read_table

__all__ = ["ApiError", "VerdictError", "ZooFrames", "compute_metrics", "label_cells", "open_zoo", "verdict"]

PHASES_FILE, EMBEDDINGS_FILE = "phases.parquet", "embeddings.parquet"  # written by `phasezoo phases` / `embed`
DATA_KEYS = ("x_train", "y_train", "x_test", "y_test")


class ApiError(ValueError):
    """A bad argument to the API: one line saying what was expected and what was given."""


# ----------------------------------------------------------------------------- open_zoo
@dataclass(frozen=True)
class ZooFrames:
    """A zoo read once, as Polars frames in their declared schemas (data.zoo.schema; docs/zoo-format.md).

    catalog: one row per model per logged epoch — CATALOG's columns plus one column per grid knob;
    metrics: long format, one row per value (METRICS; empty if nothing was computed);
    phases: one row per grid cell per analysis epoch with its label and margins (None until `phasezoo
    phases` has run); embeddings: 2-D weight-space coordinates per model, epoch and method (or None).
    `zoo` is the opened directory (rebuild a model: `frames.zoo.build_model(model_id, epoch)`)."""

    zoo: Zoo
    catalog: pl.DataFrame
    metrics: pl.DataFrame
    phases: pl.DataFrame | None
    embeddings: pl.DataFrame | None

    @property
    def root(self) -> Path:
        return self.zoo.root

    @property
    def name(self) -> str:
        return self.zoo.name

    @property
    def spec(self) -> ZooSpec:
        return self.zoo.spec


def _zoo_dir(path_or_name: str | os.PathLike) -> Path:
    """A directory as given, else the built-in zoo of that name (data/zoos/<name>)."""
    path = Path(path_or_name)
    if path.exists() or os.sep in str(path_or_name):
        return path
    builtin = {p.name: p for p in builtin_zoos()}
    if str(path_or_name) in builtin:
        return builtin[str(path_or_name)]
    raise ApiError(f"no zoo {str(path_or_name)!r}: not a directory, and no built-in zoo of that name "
                   f"(built-in: {', '.join(builtin)})")


def open_zoo(path_or_name: str | os.PathLike) -> ZooFrames:
    """Open a zoo directory — or a built-in zoo by name ("mnist1d-mlp", "mnist1d-cnn", …) — read-only.

    Returns its frames (ZooFrames). Raises ApiError for a name that is neither a directory nor a built-in
    zoo, ZooError (one line naming the file) for a missing, damaged or hostile file."""
    zoo = Zoo.open(_zoo_dir(path_or_name))
    return ZooFrames(zoo, zoo.catalog, read_metrics(zoo.root), read_table(zoo.root / PHASES_FILE),
                     read_table(zoo.root / EMBEDDINGS_FILE, EMBEDDINGS))


def _as_frames(zoo) -> ZooFrames:
    if isinstance(zoo, ZooFrames):
        return zoo
    if isinstance(zoo, Zoo):
        return open_zoo(zoo.root)
    if isinstance(zoo, (str, os.PathLike)):
        return open_zoo(zoo)
    raise ApiError(f"zoo: expected a zoo directory, a built-in zoo's name or open_zoo's result, "
                   f"got {type(zoo).__name__}")


# ----------------------------------------------------------------------------- label_cells
def label_cells(zoo, epoch: int | None = None,
                thresholds: Thresholds | Mapping[str, float] | None = None) -> pl.DataFrame:
    """The zoo's cell table at `epoch` (default: its last analysis epoch) with phase labels.

    One row per grid cell (<load knob>, <temperature knob>): each taxonomy quantity's cell aggregate and
    spread over seeds (train_loss [nats], test_acc, hessian_trace [ln of the seed mean], mc [% points of
    training error], cka, … with _std/_min/_max/_n), then `phase` (I, II, III, IV-A, IV-B or unclassified),
    the margins (`margin_loss` in decades above τ_L, `margin_mc` in points above −ε, `margin_cka` above
    τ_C), `near_boundary`, `epoch`, `tau_loss`, `eps_mc`, `tau_cka`, and the label's stability over 200 seed
    and seed-pair resamples (`stability`, `runner_up`, `runner_up_share`: analysis.taxonomy.stability) — the
    rows `phasezoo phases` writes (data.zoo.schema.PHASE_LABELS).

    `thresholds`: a Thresholds (then fixed in every resample), or a mapping overriding some of the zoo-relative
    defaults (analysis.taxonomy.phases.default_thresholds) by field: train_loss (τ_L), mc (ε), cka (τ_C), hessian
    (the defaults are then re-derived on every resampled grid, the given fields kept)."""
    from analysis.taxonomy.cells import per_unit_values
    from analysis.taxonomy.stability import labels_table

    frames = _as_frames(zoo)
    spec = frames.spec
    epoch = max(spec.analysis_epochs) if epoch is None else epoch
    at = frames.metrics.filter(pl.col("epoch") == epoch)
    if at.is_empty():
        raise ApiError(f"{frames.name}: no metrics at epoch {epoch}; epochs with metrics: "
                       f"{sorted(frames.metrics['epoch'].unique())} (compute them with compute_metrics)")
    cells = cell_table(frames.metrics, frames.catalog, spec, epoch)
    th = _thresholds(cells, thresholds)
    labelled = classify(cells, th).with_columns(epoch=pl.lit(epoch, pl.Int64), tau_loss=pl.lit(th.train_loss),
                                                eps_mc=pl.lit(th.mc), tau_cka=pl.lit(th.cka))
    rule = th if isinstance(thresholds, Thresholds) else (lambda resampled: _thresholds(resampled, thresholds))
    return labels_table(labelled, per_unit_values(frames.metrics, frames.catalog, spec, epoch), spec, rule)


def _thresholds(cells: pl.DataFrame, given: Thresholds | Mapping[str, float] | None) -> Thresholds:
    if isinstance(given, Thresholds):
        return given
    given = dict(given or {})
    known = [f.name for f in fields(Thresholds) if f.name != "provenance"]
    if unknown := sorted(set(given) - set(known)):
        raise ApiError(f"thresholds: unknown field(s) {unknown}; known: {known}")
    th = default_thresholds(cells, mc_eps=float(given.get("mc", 1.0)))
    prov = {**th.provenance, **{k: "given to label_cells" for k in given}}
    return Thresholds(**{**{k: getattr(th, k) for k in known}, **given}, provenance=prov)


# ----------------------------------------------------------------------------- compute_metrics
@contextlib.contextmanager
def _data_root(root: str | os.PathLike | None) -> Iterator[None]:
    """$PHASEZOO_DATA set to `root` (checked: an existing directory) while the block runs — the variable
    every layer reads the data root from (data.datasets.root), worker processes included."""
    if root is None:
        yield
        return
    from data.datasets.root import ENV, data_root

    path, old = data_root(root), os.environ.get(ENV)
    os.environ[ENV] = str(path)
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = old


def _models(models) -> dict[str, nn.Module]:
    if isinstance(models, nn.Module):
        models = [models]
    if isinstance(models, Mapping):
        items = list(models.items())
    elif isinstance(models, Sequence) and not isinstance(models, str):
        items = [(f"model{i}", m) for i, m in enumerate(models)]
    else:
        raise ApiError(f"models: expected an nn.Module, a list of them or a dict id → module, "
                       f"got {type(models).__name__}")
    if not items:
        raise ApiError("models: no model given")
    for mid, m in items:
        if not isinstance(m, nn.Module):
            raise ApiError(f"models: {mid!r} is a {type(m).__name__}, expected an nn.Module")
    return {str(mid): m for mid, m in items}


def _task_data(data, model: nn.Module | None) -> TaskData:
    """TaskData from a TaskData, a (x_train, y_train, x_test, y_test) tuple or a mapping with those keys;
    the number of classes is the model's output width (its output on one training input: [1, K]), or
    without a model (a state dict's verdict: the zoo's model is built later) the largest label + 1."""
    if isinstance(data, TaskData):
        return data
    if isinstance(data, Mapping):
        if missing := [k for k in DATA_KEYS if k not in data]:
            raise ApiError(f"data: missing {missing}; expected the keys {list(DATA_KEYS)}")
        data = [data[k] for k in DATA_KEYS]
    if not (isinstance(data, Sequence) and len(data) == 4):
        raise ApiError("data: expected a TaskData, (x_train, y_train, x_test, y_test) tensors or a mapping of "
                       f"those, got {type(data).__name__}")
    ts = []
    for key, t in zip(DATA_KEYS, data):
        if not isinstance(t, torch.Tensor):
            raise ApiError(f"data: {key} is a {type(t).__name__}, expected a torch.Tensor")
        ts.append(t)
    x, y, xt, yt = ts
    for split, a, b in (("train", x, y), ("test", xt, yt)):
        if a.ndim < 2 or b.ndim != 1 or len(a) != len(b) or not len(a):
            raise ApiError(f"data: {split} split has x [{', '.join(map(str, a.shape))}] and y "
                           f"[{', '.join(map(str, b.shape))}], expected x [N, *input_shape] and y [N], N > 0")
    if x.shape[1:] != xt.shape[1:]:
        raise ApiError(f"data: x_train is [N, {', '.join(map(str, x.shape[1:]))}] but x_test is "
                       f"[N, {', '.join(map(str, xt.shape[1:]))}]")
    if y.is_floating_point() or yt.is_floating_point():
        raise ApiError("data: labels must be integer class indices (pass a TaskData for a regression task)")
    if model is None:
        if y.min() < 0 or yt.min() < 0:
            raise ApiError("data: labels must be class indices ≥ 0")
        return TaskData(x, y.long(), xt, yt.long(), int(max(y.max(), yt.max())) + 1)
    with torch.no_grad():
        try:
            out = copy.deepcopy(model).eval()(x[:1])
        except Exception as e:
            raise ApiError(f"data: the model does not take x_train's inputs [N, {', '.join(map(str, x.shape[1:]))}]: "
                           f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from None
    k = out.shape[-1]
    for split, labels in (("y_train", y), ("y_test", yt)):
        bad = ((labels < 0) | (labels >= k)).nonzero()
        if len(bad):
            i = int(bad[0, 0])
            raise ApiError(f"data: {split}[{i}] = {int(labels[i])} is outside the model's {k} outputs [0, {k})")
    return TaskData(x, y.long(), xt, yt.long(), int(k))


def _kind(task: TaskData) -> str:
    """The task kind a metric declares it applies to (data.tasks.builtin.TASK_KINDS)."""
    if task.objective.kind != "classification":
        return task.objective.kind
    return "sequence" if not task.x_train.is_floating_point() else "classification"


def _chosen(metrics) -> tuple[list[Metric], set[str]]:
    """Registered metrics (Metric objects kept as given, e.g. `m.with_params(...)`), and the names asked for
    explicitly (not by a wildcard or the default), which must then apply."""
    if metrics is None:
        return list_metrics(), set()
    items = [metrics] if isinstance(metrics, (str, Metric)) else list(metrics)
    out = {m.name: m for m in items if isinstance(m, Metric)}
    names = [m for m in items if isinstance(m, str)]
    if odd := [m for m in items if not isinstance(m, (str, Metric))]:
        raise ApiError(f"metrics: expected metric names, wildcards or Metric objects, got {type(odd[0]).__name__}")
    out.update({m.name: m for m in resolve_metrics(names)} if names else {})
    return list(out.values()), set(out) - {n for n in names if any(c in n for c in "*?[")}


def compute_metrics(models_or_zoo, metrics=None, data=None, epochs: int | Sequence[int] | None = None, *,
                    models: str = "*", workers: int | None = 1, device: str = "cpu") -> pl.DataFrame:
    """Registered metrics (names, wildcards such as "hessian*", or Metric objects; default: all) as a tidy
    frame in the metrics schema (METRICS: model_id, other_id, epoch, metric, split, layer, coord, value,
    stderr, params_hash, error; a failed metric is a row with its reason in `error`).

    On a zoo (a directory, a built-in name, or open_zoo's result): the metric runner — resumable, it appends
    to <zoo>/metrics.parquet (atomically) and skips what is stored — over the models matching the wildcard
    `models` at `epochs` (default: the analysis epochs) in `workers` processes; returns the zoo's rows of
    those metrics at those epochs. `data` may be a data root directory (for a zoo whose task is read from
    disk; default $PHASEZOO_DATA).

    On in-memory models (an nn.Module, a list, or a dict id → module; not modified — a copy is evaluated):
    nothing is written. `data` is a TaskData or (x_train, y_train, x_test, y_test) tensors — x [N,
    *input_shape] float32 (int64 tokens for a sequence task), y [N] int64 class indices below the model's
    output width; data-free metrics need none. Model-scope metrics run on each model, pair-scope ones on
    every pair (the models as the seeds of one cell: other_id is the second), cell-scope ones on all of them
    (other_id "cell"); `epochs`, a single int (default 0), is the rows' epoch label. Metrics that do not
    apply to the architecture or task kind are left out, as the runner does (a name asked for explicitly
    that applies to no model is an ApiError). The parameters are the registry's defaults: pass
    `metric.with_params(...)` for a zoo's own (its spec's [metrics.<name>] tables)."""
    if isinstance(models_or_zoo, (str, os.PathLike, Zoo, ZooFrames)):
        return _compute_zoo(models_or_zoo, metrics, data, epochs, models, workers, device)
    mods = _models(models_or_zoo)
    if epochs is not None and not isinstance(epochs, int):
        raise ApiError(f"epochs: for in-memory models, one int labelling the rows, got {epochs!r}")
    chosen, explicit = _chosen(metrics)
    if data is None:
        if needing := sorted(m.name for m in chosen if m.needs_data and (metrics is not None)):
            raise ApiError(f"metric(s) {needing} need data: pass data=(x_train, y_train, x_test, y_test) or a TaskData")
        chosen = [m for m in chosen if not m.needs_data]
    dev = resolve_device(device)
    task = _task_data(data, next(iter(mods.values()))).to(dev) if data is not None else None
    kind = _kind(task) if task is not None else "classification"
    inputs = {mid: ModelInput(mid, copy.deepcopy(m).to(dev).eval(), task, epochs or 0) for mid, m in mods.items()}
    ids = list(inputs)
    units: dict[str, list[tuple[str, ...]]] = {
        "model": [(i,) for i in ids], "pair": list(itertools.combinations(ids, 2)), "cell": [tuple(ids)]}
    rows: list[dict] = []
    applied: set[str] = set()
    for scope, unit in units.items():
        for group in unit:
            todo = [m for m in chosen if m.scope == scope and m.applies_to(inputs[group[0]].model, kind)]
            applied |= {m.name for m in todo}
            other = group[1] if scope == "pair" else CELL if scope == "cell" else None
            base = {"model_id": group[0], "other_id": other, "epoch": epochs or 0}
            rows += metric_rows(todo, [inputs[i] for i in group], base, " & ".join(group))
    if missed := sorted(explicit - applied):
        raise ApiError(f"metric(s) {missed} apply to none of the models (their architecture, the task kind "
                       f"{kind!r}, or a pair/cell metric given one model)")
    return METRICS.validate(pl.DataFrame(rows, schema=METRICS.columns)) if rows else METRICS.empty()


def _compute_zoo(zoo, metrics, data, epochs, models: str, workers: int | None, device: str) -> pl.DataFrame:
    root = zoo.root if isinstance(zoo, (Zoo, ZooFrames)) else _zoo_dir(zoo)
    if data is not None and not isinstance(data, (str, os.PathLike)):
        raise ApiError("data: for a zoo, a data root directory (the zoo's own task is what its models are "
                       f"measured on), got {type(data).__name__}")
    chosen, _ = _chosen(metrics)
    epochs = [epochs] if isinstance(epochs, int) else epochs
    with _data_root(data):
        run(root, chosen, epochs, models, workers, device, progress=False)
    family = {o.name: m.name for m in list_metrics() for o in m.outputs}  # an error row names the metric
    z = Zoo.open(root)
    stored = read_metrics(root)
    wanted = pl.col("metric").replace(family).is_in([m.name for m in chosen])
    at = pl.col("epoch").is_in(list(epochs) if epochs else list(z.spec.analysis_epochs))
    return stored.filter(wanted & at)


# ----------------------------------------------------------------------------- verdict
class VerdictError(ApiError):
    """The verdict pipeline refused the model (its one-line reason, analysis.upload.failures)."""


def _state_of(model) -> dict[str, torch.Tensor]:
    """A module's or a mapping's tensors, detached, on the CPU, contiguous and unshared (safetensors)."""
    state = model.state_dict() if isinstance(model, nn.Module) else model
    if not state:
        raise ApiError("model: the state dict is empty")
    out = {}
    for k, v in state.items():
        if not isinstance(v, torch.Tensor):
            raise ApiError(f"model: state dict entry {k!r} is a {type(v).__name__}, expected a tensor")
        out[str(k)] = v.detach().cpu().contiguous().clone()
    return out


def _zoos(zoo) -> list[Zoo] | None:
    if zoo is None:
        return None  # the committed zoos
    items = zoo if isinstance(zoo, Sequence) and not isinstance(zoo, str) else [zoo]
    return [_as_frames(z).zoo for z in items]


def verdict(model_or_state_dict_or_path, zoo=None, data=None, knobs: Mapping[str, object] | None = None, *,
            name: str = "model.safetensors", epoch: int | None = None, device: str = "cpu",
            cache: bool = True) -> Report:
    """A model's phase, the evidence and its place on the zoo's map (analysis.upload.verdict; docs/classify.md).

    `model_or_state_dict_or_path`: an nn.Module (its state dict is used), a state dict (name → tensor), or
    a checkpoint file (.safetensors, .pt, .pth, .bin, .ckpt — read safely, no code runs). An in-memory model
    is written as a safetensors file `name` in a private temporary directory (never a pickle), so it gets
    exactly the verdict of that saved file. `zoo`: a zoo (directory, built-in name, open_zoo's result) or a
    list of them (default: the committed zoos); the architecture is recognised from the tensor shapes.
    `knobs`: values the weights cannot reveal, e.g. {"batch_size": 64} (default: estimated). `data`: a
    data root directory for a zoo whose task is read from disk (default $PHASEZOO_DATA), or the task's data
    itself — a TaskData or (x_train, y_train, x_test, y_test) tensors, x [N, *input_shape] float, y [N] class
    indices — measured in place of the zoo's task (no report is cached then); with the zoo's own task data
    the numbers compare with the zoo's. `epoch`: the zoo's analysis epoch
    compared against (default: the last). Work runs in this process; `cache` reuses a report of the same
    bytes, zoo state and options.

    Returns a Report (analysis.upload.report: .phase, .rule, .classifier, .evidence, .placement, .cell).
    Raises VerdictError with the pipeline's one-line reason when it refuses the model."""
    task = None
    if data is not None and not isinstance(data, (str, os.PathLike)):
        task = _task_data(data, model_or_state_dict_or_path if isinstance(model_or_state_dict_or_path, nn.Module)
                          else None)
        data = None
    zoos = _zoos(zoo)
    item = model_or_state_dict_or_path
    with contextlib.ExitStack() as stack:
        if isinstance(item, (nn.Module, Mapping)):
            folder = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="phasezoo-api-")))
            path = folder / (Path(name).name if name.endswith(".safetensors") else f"{Path(name).name}.safetensors")
            save_file(_state_of(item), str(path))
            item = path
        elif not isinstance(item, (str, os.PathLike)):
            raise ApiError(f"model: expected an nn.Module, a state dict or a checkpoint path, got {type(item).__name__}")
        stack.enter_context(_data_root(data))
        [result] = analyse([Path(item)], zoos, given=dict(knobs or {}), epoch=epoch, executor=None,
                           device=device, cache=cache, task=task)
    if isinstance(result, Refused):
        raise VerdictError(result.error)
    return result
