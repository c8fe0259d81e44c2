"""A checkpoint's phase, with the evidence and its place on the zoo's map.

    python -m analysis.upload.verdict model.safetensors                      # against the committed zoos
    python -m analysis.upload.verdict a.pt b.pt c.pt --zoo DIR --knob batch_size=64 --json report.json

For each file: a safe load (data.checkpoint.load: no code runs), the data-free weight report (any
architecture), and recognition against the zoos (analysis.upload.recognise). For a recognised model, on the zoo's
task data at the zoo's last analysis epoch:

1. its own metrics, as the zoo computed them (performance, weights, exact Hessian trace in this process;
   the Hessian's top eigenvalues, trace and spectral density on the training probe set in a worker);
2. the knobs the weights do not reveal (batch size, learning rate…) from the user, else estimated from
   the zoo models of the same load that are most alike in fit and weight statistics;
3. CKA and mode connectivity (straight line and trained Bézier curve) against the seeds of its cell, or
   against each other when several uploads share one configuration (they then form a cell of their own);
4. two verdicts: the taxonomy's rules with the zoo's thresholds (analysis.taxonomy.phases), and the learned
   single-model classifier's phase probabilities (analysis.taxonomy.classifier);
5. its place: the cell on the phase map, the zoo's PCA map (exact projection) and UMAP map (approximate:
   its nearest zoo models' positions), and its nearest zoo models in weight space.

Every file gets its own result, whatever goes wrong inside its analysis: a Report, or a Refused with a one-line
reason (analysis.upload.failures; the traceback goes to the log). A near-copy of a zoo model (its fp16/bf16 round trip)
is that model (analysis.upload.placement); a model whose own measurements fail or are non-finite gets no phase.

Reports are cached by the file's SHA-256 (with the zoo's state and the options) under
<cache>/reports/; a run that stops half-way writes nothing.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import logging
import math
import os
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, wait, FIRST_COMPLETED
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import numpy as np
import polars as pl
import torch

from analysis.taxonomy.cells import CELL_QUANTITIES, unit_values
from analysis.studies.embed import weights_only
from analysis.upload.failures import Caller, Refused, display_name, in_worker, refusal
from analysis.taxonomy.classifier import FEATURES, Fitted, fit, model_features, predict, training_set
from analysis.upload.placement import distinct, placement
from analysis.taxonomy.phases import NEEDED, UNCLASSIFIED, classify, default_thresholds, zoo_cells
from analysis.upload.recognise import ZooMatch, match_zoo, nearest_value, recognise
from analysis.metrics.catalog import get_metric
from analysis.metrics.registry import ModelInput
from analysis.runner.run import metric_rows, predicted_seconds, read_costs, zoo_metric
from analysis.kernels.weights import weight_report
from data.models.archs import build_model
from data.checkpoint.load import Checkpoint, load_checkpoint, read_checkpoint
from data.device import resolve_device
from data.zoo.schema import METRICS
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo, ZooError, atomic_write, builtin_zoos
from data.tasks.builtin import TASKS, cache_dir, load_task
from data.training.workers import CONTEXT

log = logging.getLogger("phasezoo.verdict")
__all__ = ["Refused", "Report", "analyse", "main", "process_pool", "summary", "upload_estimate"]
VERSION = 2  # bump when the analysis changes: cached reports are recomputed
UPLOAD = "upload"  # the model_id of the uploaded model in metric rows
QUICK = ("performance", "weights", "hessian_trace_exact")  # milliseconds: in this process, before the rest
# The upload's Hessian on the training probe set only: the taxonomy and the classifier use that split.
HESSIAN = ("hessian", {"splits": ("train",)})
PAIRS = ("cka_logits_test", "mc_linear", "mc_bezier")
NEIGHBOURS = 5
Progress = Callable[[str, float], None]  # (what is being done, fraction done)


@dataclass(frozen=True)
class Report:
    """Everything learned about one checkpoint; JSON-able field by field (Report(**json.load(f)) rebuilds it)."""

    file: str
    sha256: str
    n_params: int
    notes: list[str]  # what loading did (prefixes stripped, wrapper unwrapped), what could not be done
    data_free: list[dict]  # per weight matrix: layer, shape, mean, var, spectral_norm, stable_rank, alpha, alpha_ks
    matches: list[dict]  # every zoo tried: zoo, root, arch, arch_params, knobs, nearest, problems
    zoo: str | None = None  # the recognised zoo's directory; None: the data-free report is all there is
    epoch: int | None = None  # the zoo's analysis epoch compared against
    cell: dict = field(default_factory=dict)  # knob -> {value, grid (nearest grid value), source}
    metrics: list[dict] = field(default_factory=list)  # its own rows: metric, split, layer, coord, value, stderr
    pairs: list[dict] = field(default_factory=list)  # other, metric, value: CKA and mode connectivity
    rule: dict = field(default_factory=dict)  # the taxonomy: phase, quantities, thresholds, margins
    classifier: dict = field(default_factory=dict)  # phase, probabilities, features used
    evidence: list[dict] = field(default_factory=list)  # quantity, value, threshold, the zoo's cell distribution
    placement: dict = field(default_factory=dict)  # pca, umap, neighbours, identical_to
    errors: list[str] = field(default_factory=list)  # metrics that failed, by name
    seconds: float = 0.0

    @property
    def phase(self) -> str | None:
        """The rules' phase where they can decide, else the classifier's; None where neither can (the classifier
        withholds its answer when a measurement of the model failed or is non-finite)."""
        rule = self.rule.get("phase")
        return rule if rule not in (None, UNCLASSIFIED) else self.classifier.get("phase")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=1, default=_jsonable)


def _jsonable(v):
    if isinstance(v, (np.floating, np.integer)):
        return v.item()
    if isinstance(v, Path):
        return str(v)
    raise TypeError(f"not JSON-able: {type(v).__name__}")


# ----------------------------------------------------------------------------- worker side
def _init_worker() -> None:
    torch.set_num_threads(1)


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
                metrics: Sequence[tuple[str, dict]], device: str = "cpu", task_knobs: tuple = ()) -> list[dict]:
    """Metric rows on one model or a pair, each ("upload", name, state dict) or ("zoo", model_id); the
    first is the analysed upload (model_id `UPLOAD`), on the task with `task_knobs` ((name, value) pairs of
    task-parameter knobs). Runs in a worker process or in this one."""
    dev = resolve_device(device)
    zoo = _zoo(root)
    inputs = []
    for i, m in enumerate(models):
        model = zoo.build_model(m[1], epoch) if m[0] == "zoo" else _upload_model(root, arch_params, m[2])
        inputs.append(ModelInput(UPLOAD if i == 0 else m[1], model.to(dev), _task(root, device, task_knobs)))
    chosen = [zoo_metric(zoo, get_metric(name)).with_params(**params) for name, params in metrics]
    chosen = [m for m in chosen if m.applies_to(inputs[0].model, TASKS[zoo.spec.task].kind)]
    base = {"model_id": UPLOAD, "other_id": inputs[1].model_id if len(inputs) > 1 else None, "epoch": epoch}
    return metric_rows(chosen, inputs, base, " & ".join(m[1] for m in models))


def upload_estimate(zoo: Zoo) -> tuple[float, float, str] | None:
    """Seconds of compute for one upload of the zoo's smallest and largest model, predicted from the costs
    `analysis.runner.run` measured on this zoo (costs.json; interpolated in parameter count), and where they were measured;
    None before any were measured. The pairs are the seeds of a cell."""
    costs = read_costs(zoo.root)
    own, paired = (*QUICK, HESSIAN[0]), PAIRS
    if any(m not in costs for m in (*own, *paired) if m != "hessian_trace_exact"):  # that one: ReLU MLPs only
        return None

    def total(n: int) -> float:
        return (sum(predicted_seconds(costs, m, n) or 0.0 for m in own)
                + len(zoo.spec.seeds) * sum(predicted_seconds(costs, m, n) for m in paired))
    sizes = zoo.catalog["n_params"]
    return total(int(sizes.min())), total(int(sizes.max())), costs[HESSIAN[0]]["host"]


# ----------------------------------------------------------------------------- the zoo side (cached per zoo state)
def zoo_state(zoo: Zoo) -> tuple:
    """What a cached result depends on: the zoo's directory and its tables' modification times."""
    return (str(zoo.root.resolve()),
            *((zoo.root / f).stat().st_mtime if (zoo.root / f).exists() else 0.0 for f in (CATALOG_FILE, METRICS_FILE)))


@lru_cache(maxsize=8)
def _cells(state: tuple, epoch: int):
    zoo, _, cells = zoo_cells(state[0], epoch)
    return cells, default_thresholds(cells)


@lru_cache(maxsize=8)
def _training(state: tuple) -> pl.DataFrame:
    return training_set(state[0])


@lru_cache(maxsize=16)
def _classifier(state: tuple, features: tuple[str, ...]) -> Fitted:
    """The classifier fitted on the zoo's labelled models with `features` (analysis.taxonomy.classifier.fit)."""
    return fit(_training(state), features)


# ----------------------------------------------------------------------------- the analysis
def _rows_frame(rows: Sequence[dict]) -> pl.DataFrame:
    return pl.DataFrame(list(rows), schema=METRICS.columns) if rows else METRICS.empty()


def _quantities(rows: pl.DataFrame, quantities: Mapping) -> dict[str, float]:
    """Mean value per quantity (over pairs for pair quantities) from metric rows."""
    u = unit_values(rows, dict(quantities))
    return dict(u.group_by("quantity").agg(pl.col("value").mean()).rows())


def _estimate_knobs(zoo: Zoo, epoch: int, match: ZooMatch, own: pl.DataFrame, n_params: int,
                    given: Mapping[str, object], twin: Mapping[str, object] | None) -> dict[str, dict]:
    """Every grid knob: read off the weights, given by the user, those of the zoo model with identical
    weights (`twin`), or estimated as the most common value among the zoo models of the same weight-revealed knobs
    nearest in standardised fit and weight features (k = 5)."""
    spec = zoo.spec
    cell: dict[str, dict] = {}
    for k in spec.grid:
        if k in match.knobs:
            cell[k] = {"value": match.knobs[k], "grid": match.nearest[k], "source": "weights"}
        elif k in given:
            value = type(spec.grid[k][0])(given[k])
            cell[k] = {"value": value, "grid": nearest_value(value, list(spec.grid[k])), "source": "given"}
        elif twin is not None:
            cell[k] = {"value": twin[k], "grid": twin[k], "source": "identical zoo model"}
    unknown = [k for k in spec.grid if k not in cell]
    if not unknown:
        return cell
    table = _training(zoo_state(zoo)).filter(pl.col("epoch") == epoch)
    knob_cols = zoo.catalog.filter(pl.col("epoch") == epoch).select("model_id", *spec.grid)
    table = table.join(knob_cols, on="model_id")
    for k, v in cell.items():
        table = table.filter(pl.col(k) == v["grid"])
    mine = model_features(own, {UPLOAD: n_params})
    usable = [f for f in FEATURES if mine[f][0] is not None and table[f].null_count() == 0]
    X = table.select(usable).to_numpy().astype(float)
    mu, sd = X.mean(0), X.std(0) + 1e-12
    d = np.linalg.norm((X - mu) / sd - (mine.select(usable).to_numpy().astype(float)[0] - mu) / sd, axis=1)
    near = table[np.argsort(d)[:NEIGHBOURS].tolist()]
    for k in unknown:
        counts = near.group_by(k).len().sort(["len", k], descending=[True, False])
        cell[k] = {"value": counts[k][0], "grid": counts[k][0], "source": "estimated",
                   "from": near["model_id"].to_list()}
    return cell


def _evidence(cells: pl.DataFrame, th, mine: Mapping[str, float]) -> list[dict]:
    """Each taxonomy quantity: the upload's value, its threshold, and where it falls among the zoo's cells."""
    thresholds = {"train_loss": th.train_loss, "mc": -th.mc, "cka": th.cka, "hessian_trace": None}
    out = []
    for q, t in thresholds.items():
        zoo_vals = cells[q].drop_nulls().drop_nans()
        if q == "hessian_trace":  # the cell table holds ln(seed mean) for Hessian quantities
            zoo_vals = zoo_vals.exp()
        v = mine.get(q)
        qs = zoo_vals.quantile if len(zoo_vals) else (lambda *_: None)
        out.append({"quantity": q, "value": v, "threshold": t, "zoo_cells": len(zoo_vals),
                    "zoo_min": zoo_vals.min(), "zoo_q25": qs(0.25), "zoo_median": qs(0.5), "zoo_q75": qs(0.75),
                    "zoo_max": zoo_vals.max(),
                    "zoo_fraction_below": float((zoo_vals < v).mean()) if v is not None and len(zoo_vals) else None})
    return out


def _submit(executor: Executor | None, fn, *args) -> Future:
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


def _load(item) -> Checkpoint:
    if isinstance(item, Checkpoint):
        return item
    if isinstance(item, tuple):
        return read_checkpoint(item[1], display_name(item[0]))
    return load_checkpoint(item)


def analyse(files: Sequence, zoos: Sequence[Zoo] | None = None, *, given: Mapping[str, object] | None = None,
            epoch: int | None = None, executor: Executor | None = None, device: str = "cpu",
            progress: Progress = lambda what, frac: None, cache: bool = True) -> list[Report | Refused]:
    """Analyse uploaded checkpoints (paths, (name, bytes) pairs or loaded Checkpoints) against `zoos`
    (default: the committed zoos). `given` fixes knobs the weights cannot reveal (e.g. batch_size=64).
    Slow metrics run on `executor` (a process pool; None: in this process). One result per file, in order."""
    t0 = time.perf_counter()
    given = dict(given or {})
    zoos = list(zoos) if zoos is not None else [Zoo.open(p) for p in builtin_zoos()]
    caller = Caller(progress)
    caller("reading the checkpoints", 0.0)
    loaded: list[Checkpoint | Refused] = []
    for item in files:
        try:
            loaded.append(_load(item))
        except Exception as e:
            loaded.append(refusal(_name(item), "reading it", e))
    results: dict[int, Report | Refused] = {}
    work: list[tuple[int, Checkpoint, str]] = []
    for i, ck in enumerate(loaded):
        if isinstance(ck, Refused):
            results[i] = ck
            continue
        companions = {c.sha256 for c in loaded if isinstance(c, Checkpoint)} - {ck.sha256}
        try:
            key = _cache_key(ck, zoos, given, epoch, companions)
            hit = _cache_read(key) if cache else None
        except Exception as e:
            results[i] = refusal(ck.name, "reading the report cache", e)
            continue
        if hit is not None:
            results[i] = hit
        else:
            work.append((i, ck, key))
    for j, (i, ck, key) in enumerate(work):
        def step(what: str, frac: float, _j=j, _name=ck.name) -> None:  # this file's share of the whole bar
            caller.stage = what
            caller(f"{_name}: {what}", (_j + frac) / max(len(work), 1))

        t1 = time.perf_counter()
        caller.stage = None
        try:  # the mechanism of "one file, one result": anything this file's analysis raises refuses it alone
            report = _analyse_one(ck, [c for _, c, _ in work], zoos, given, epoch, executor, device, step)
        except Exception as e:
            if e is caller.raised:  # the caller stopping (a closed tab): not the file's fault, nothing cached
                raise
            results[i] = refusal(ck.name, caller.stage, e)
            continue
        report = dataclasses.replace(report, seconds=round(time.perf_counter() - t1 + (t1 - t0) / len(work), 2))
        if cache:
            _cache_write(key, report)
        results[i] = report
    caller("done", 1.0)
    return [results[i] for i in range(len(loaded))]


def _name(item) -> str:
    try:
        return display_name(item[0] if isinstance(item, tuple) else getattr(item, "name", None) or Path(item).name)
    except Exception:  # not even a name: still one refusal of its own
        return "<unnamed>"


def _analyse_one(ck: Checkpoint, uploads: Sequence[Checkpoint], zoos: Sequence[Zoo], given: Mapping,
                 epoch: int | None, executor: Executor | None, device: str, progress: Progress) -> Report:
    state = ck.state
    notes = list(ck.notes)
    n_params = sum(v.numel() for k, v in weights_only(state).items())
    progress("data-free weight report", 0.02)
    data_free = [{"layer": lw.layer, "shape": list(lw.shape), "mean": lw.mean, "var": lw.var,
                  "spectral_norm": lw.spectral_norm, "stable_rank": lw.stable_rank,
                  "alpha": lw.alpha.alpha if lw.alpha else None, "alpha_ks": lw.alpha.ks_distance if lw.alpha else None,
                  **{f"p{p:02d}": q for p, q in lw.percentiles.items()}} for lw in weight_report(state)]
    if not data_free:
        notes.append("no weight matrix (no tensor of rank ≥ 2): no data-free layer report")
    progress("recognising the architecture", 0.06)
    matches = recognise(state, zoos)
    base = Report(ck.name, ck.sha256, n_params, notes, data_free,
                  [dataclasses.asdict(m) | {"problems": list(m.problems), "ok": m.ok} for m in matches])
    match = next((m for m in matches if m.ok), None)
    if match is None:
        return dataclasses.replace(base, notes=notes + ["no zoo matches this architecture: data-free report only"])
    zoo = next(z for z in zoos if str(z.root) == match.root)
    if not TASKS[zoo.spec.task].available:
        return dataclasses.replace(base, zoo=match.root, notes=notes + [
            f"zoo {zoo.name}'s task {zoo.spec.task} has no data on this machine: data-free report only"])
    epoch = epoch if epoch is not None else max(zoo.spec.analysis_epochs)
    cells, th = _cells(zoo_state(zoo), epoch)
    root, params = str(zoo.root), dict(match.arch_params)

    progress("fit, weights and exact Hessian trace", 0.1)
    me = ("upload", ck.name, state)
    spec = zoo.spec
    task_knobs = tuple((k, v) for k, v in (given or {}).items() if k in spec.grid and k in spec.task_params)
    own = metric_task(root, epoch, params, [me], [(m, {}) for m in QUICK], "cpu", task_knobs)
    progress("placing it in weight space", 0.15)
    place = placement(zoo, zoo_state(zoo), epoch, state,
                      classify(cells, th).select(spec.load.knob, spec.temperature.knob, "phase"))
    identical = place.get("identical_to")  # a copy of that zoo model within the file's precision (fp16, bf16)
    twin = zoo.configs[identical].get("knobs") if identical else None
    cell = _estimate_knobs(zoo, epoch, match, _rows_frame(own), n_params, given, twin)

    # The models to pair with: uploads of this same configuration if there are others, else the cell's seeds.
    same = list({u.sha256: u for u in uploads if u.sha256 != ck.sha256 and _same_config(u, zoo, match)}
                .values())  # a file uploaded twice is not its own seed, nor is its half-precision copy
    kept = distinct(state, same)
    copies = [u.name for u in same if not any(u is k for k in kept)]
    same = kept
    if copies:
        notes.append(f"not paired with {', '.join(copies)}: the same model as this one or as another upload, to "
                     "within their precision")
    seeds = zoo.catalog.filter(pl.col("epoch") == epoch)
    for k, v in cell.items():
        seeds = seeds.filter(pl.col(k) == v["grid"])
    on_grid = all(v["value"] == v["grid"] for k, v in cell.items() if v["source"] == "weights")
    others: list = []
    if same:
        others = [("upload", u.name, u.state) for u in same]
        notes.append(f"paired with the {len(same)} other upload(s) of this configuration: "
                     + ", ".join(u.name for u in same))
    elif on_grid:
        others = [("zoo", m) for m in sorted(seeds["model_id"].unique()) if m != identical]
        if identical:
            notes.append(f"identical to zoo model {identical}: paired with the other seeds of its cell only")
    else:
        notes.append("between grid values: no zoo model has its shapes, so no mode connectivity or CKA "
                     "(the rule verdict needs them; the classifier does not)")
    # everything else on the cell's task (a PINN cell's β, given or estimated); the quick metrics again if
    # they were measured on another one (β unknown until now: the spec's base value)
    cell_knobs = tuple((k, v["grid"]) for k, v in cell.items() if k in spec.task_params)
    if cell_knobs != task_knobs:
        own = metric_task(root, epoch, params, [me], [(m, {}) for m in QUICK], "cpu", cell_knobs)
    jobs = [_submit(executor, metric_task, root, epoch, params, [me], [HESSIAN], device, cell_knobs)]
    jobs += [_submit(executor, metric_task, root, epoch, params, [me, o], [(m, {}) for m in PAIRS], device,
                     cell_knobs) for o in others]
    labels = {id(jobs[0]): ("Hessian", HESSIAN[0]), **{id(f): (f"pairing with {o[1]}", None)
                                                       for f, o in zip(jobs[1:], others)}}
    rows, job_errors, failed = list(own), [], []
    pending, n_jobs = set(jobs), len(jobs)
    try:
        while pending:
            finished, pending = wait(pending, timeout=0.25, return_when=FIRST_COMPLETED)
            for f in finished:
                try:  # a job that fails (in a worker too) is that measurement's failure, not the whole file's
                    rows += f.result()
                except Exception as e:
                    what, metric = labels[id(f)]
                    log.error("%s: %s failed", ck.name, what, exc_info=e)
                    job_errors.append(f"{what} failed (an internal error, logged)")
                    failed += [metric] if metric else []
            progress(f"Hessian and {len(others)} pair(s): {n_jobs - len(pending)}/{n_jobs} done",
                     0.2 + 0.75 * (n_jobs - len(pending)) / n_jobs)
    finally:
        for f in pending:  # a caller that stops half-way (a closed browser tab) leaves no work queued
            f.cancel()
    frame = _rows_frame(rows)
    errors = frame.filter(pl.col("error").is_not_null())["error"].to_list() + job_errors
    # its own measurements that failed (raised, or a non-finite value: a loss of 10³⁰-scaled weights)
    failed = sorted({*failed, *frame.filter(pl.col("other_id").is_null() & pl.col("error").is_not_null())["metric"]})
    mine = _quantities(frame.filter(pl.col("other_id").is_null()), CELL_QUANTITIES)
    pair_rows = frame.filter(pl.col("other_id").is_not_null() & pl.col("coord").is_null() & pl.col("error").is_null())
    pairs_q = _quantities(frame.filter(pl.col("other_id").is_not_null()), {q: CELL_QUANTITIES[q]
                                                                           for q in ("mc", "mc_linear", "cka")})
    mine.update(pairs_q)
    one = pl.DataFrame({spec.load.knob: [cell[spec.load.knob]["grid"]], spec.temperature.knob:
                        [cell[spec.temperature.knob]["grid"]],
                        **{q: [mine.get(q)] for q in (*NEEDED, "hessian_trace")}},
                       schema_overrides={q: pl.Float64 for q in (*NEEDED, "hessian_trace")})
    ruled = classify(one, th).row(0, named=True)
    reason = None
    if ruled["phase"] == "unclassified":
        lacking = [q for q in NEEDED if mine.get(q) is None]
        reason = f"lacks {', '.join(lacking)}" if lacking else "a threshold is undefined for this zoo"
        if failed:
            reason += f" (its {', '.join(failed)} could not be measured: non-finite or failed)"
    rule = {"phase": ruled["phase"], "reason": reason, **{q: mine.get(q) for q in (*NEEDED, "mc_linear")},
            "tau_loss": th.train_loss, "eps_mc": th.mc, "tau_cka": th.cka,
            **{k: ruled[k] for k in ("margin_loss", "margin_mc", "margin_cka", "near_boundary")},
            "pairs_with": "uploads" if same else "zoo seeds" if others else None, "n_pairs": len(others),
            "provenance": dict(th.provenance)}
    progress("classifier", 0.97)
    feats = model_features(frame.filter(pl.col("other_id").is_null()), {UPLOAD: n_params})
    table = _training(zoo_state(zoo))
    used = tuple(f for f in FEATURES if feats[f][0] is not None and table[f].null_count() < table.height)
    classifier = predict(_classifier(zoo_state(zoo), used), {f: feats[f][0] for f in used}, failed)
    if classifier["withheld"]:
        notes.append(f"no classifier verdict: {classifier['withheld']}")
    elif classifier["extrapolating"]:
        outside = ", ".join(classifier["outside"])
        notes.append(f"unlike every zoo model in the classifier's features (distance "
                     f"{classifier['nearest_distance']:.2f} to the nearest, where 99 % of zoo models have a neighbour "
                     f"within {classifier['typical_distance']:.2f}"
                     + (f"; outside the zoo's range: {outside}" if outside else "")
                     + "): its probabilities extrapolate and overstate their confidence")
    return dataclasses.replace(
        base, notes=notes, zoo=match.root, epoch=epoch, cell=cell,
        metrics=[{k: r[k] for k in ("metric", "split", "layer", "coord", "value", "stderr")}
                 for r in frame.filter(pl.col("other_id").is_null() & pl.col("error").is_null()).iter_rows(named=True)],
        pairs=[{"other": r["other_id"], "metric": r["metric"], "value": r["value"]}
               for r in pair_rows.iter_rows(named=True)],
        rule=rule, classifier=classifier, evidence=_evidence(cells, th, mine), placement=place, errors=errors)


def _same_config(other: Checkpoint, zoo: Zoo, match: ZooMatch) -> bool:
    """Whether another upload is of this one's configuration; one that cannot even be recognised is not
    (its own analysis refuses it: this file's must not fail for it)."""
    try:
        m = match_zoo(other.state, zoo)
    except Exception:
        log.warning("%s: not recognised as a companion upload", other.name, exc_info=True)
        return False
    return m.ok and dict(m.arch_params) == dict(match.arch_params)


# ----------------------------------------------------------------------------- cache
def _cache_key(ck: Checkpoint, zoos: Sequence[Zoo], given: Mapping, epoch: int | None,
               companions: set[str]) -> str:
    """A report depends on the file, the zoos' state, the options and the other uploads it may pair with."""
    blob = json.dumps({"v": VERSION, "sha": ck.sha256, "zoos": [zoo_state(z) for z in zoos],
                       "with": sorted(companions),
                       "given": {k: str(v) for k, v in sorted(given.items())}, "epoch": epoch}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _cache_path(key: str) -> Path:
    return cache_dir() / "reports" / f"{key}.json"


def _cache_read(key: str) -> Report | None:
    path = _cache_path(key)
    try:
        return Report(**json.loads(path.read_text()))
    except (OSError, ValueError, TypeError):  # absent, or written by another version: recompute
        return None


def _cache_write(key: str, report: Report) -> None:
    try:
        atomic_write(_cache_path(key), lambda tmp: tmp.write_text(report.to_json()), durable=False)
    except OSError:
        pass  # a read-only cache only costs a recomputation


def process_pool(workers: int = 2) -> Executor:
    """Worker processes for the slow metrics; they start (imports, ~1 s) at once, while the caller reads."""
    from concurrent.futures import ProcessPoolExecutor

    pool = ProcessPoolExecutor(workers, mp_context=CONTEXT, initializer=_init_worker)
    for _ in range(workers):
        pool.submit(_warm)
    return pool


def _warm() -> None:
    import analysis.metrics.catalog  # noqa: F401  (the registered metrics and their kernels)


# ----------------------------------------------------------------------------- CLI
def _fmt(v, spec: str = ".4g") -> str:
    return "—" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, spec)


def summary(r: Report | Refused) -> str:
    """A readable account of one result."""
    if isinstance(r, Refused):
        return f"{r.file}: REFUSED — {r.error}"
    lines = [f"{r.file}  (sha256 {r.sha256[:12]}…, {r.n_params:,} parameters)"]
    lines += [f"  note: {n}" for n in r.notes]
    if r.zoo is None:
        lines.append("  matches no zoo:")
        lines += [f"    {m['zoo']}: {'; '.join(m['problems'])}" for m in r.matches]
    else:
        m = next(m for m in r.matches if m["ok"])
        lines.append(f"  zoo: {m['zoo']} ({m['arch']} {m['arch_params']}), compared at epoch {r.epoch}")
        lines.append("  cell: " + ", ".join(f"{k}={v['value']}" + (f" (grid {v['grid']})" if v["grid"] != v["value"]
                                                                   else "") + f" [{v['source']}]"
                                            for k, v in r.cell.items()))
        ru, cl = r.rule, r.classifier
        lines.append(f"  PHASE (taxonomy rules): {ru.get('phase')}"
                     + (f" — {ru['reason']}" if ru.get("reason") else "")
                     + ("  (near a threshold)" if ru.get("near_boundary") else ""))
        lines.append(f"    train loss {_fmt(ru.get('train_loss'))} vs τ_L {_fmt(ru.get('tau_loss'))} nats; "
                     f"mc {_fmt(ru.get('mc'))} vs −ε {_fmt(-ru['eps_mc'] if ru.get('eps_mc') else None)} points; "
                     f"CKA {_fmt(ru.get('cka'))} vs τ_C {_fmt(ru.get('tau_cka'))}  "
                     f"({ru.get('n_pairs', 0)} pair(s) with {ru.get('pairs_with') or 'nothing'})")
        if cl.get("withheld"):
            lines.append(f"  PHASE (classifier): none — {cl['withheld']}")
        elif cl:
            probs = ", ".join(f"{k} {v:.2f}" for k, v in sorted(cl["probabilities"].items(), key=lambda kv: -kv[1]))
            lines.append(f"  PHASE (classifier, {len(cl['features'])} single-model features): {cl['phase']}  [{probs}]"
                         + ("  (extrapolating: unlike every zoo model)" if cl.get("extrapolating") else ""))
        for e in r.evidence:
            lines.append(f"    {e['quantity']:14s} {_fmt(e['value']):>10s}  threshold {_fmt(e['threshold']):>8s}  "
                         f"zoo cells {_fmt(e['zoo_min'])} … {_fmt(e['zoo_median'])} … {_fmt(e['zoo_max'])}"
                         + (f"  ({e['zoo_fraction_below']:.0%} of cells below)" if e["zoo_fraction_below"] is not None
                            else ""))
        p = r.placement
        if p.get("neighbours"):
            if p.get("identical_to"):
                lines.append(f"  identical to zoo model {p['identical_to']}")
            lines.append("  nearest zoo models (weight space): " + ", ".join(
                f"{n['model_id']} [{n['phase']}] {n['distance']:.3g}" for n in p["neighbours"]))
        elif p.get("note"):
            lines.append(f"  placement: {p['note']}")
        lines += [f"  failed: {e}" for e in r.errors]
    if r.data_free:
        alphas = [d["alpha"] for d in r.data_free if d["alpha"] is not None]
        lines.append(f"  data-free: {len(r.data_free)} weight matrices; heavy-tail α "
                     + (f"{min(alphas):.2f} … {max(alphas):.2f}" if alphas else "not fitted (layers too small)")
                     + f"; stable rank {min(d['stable_rank'] for d in r.data_free):.3g} … "
                       f"{max(d['stable_rank'] for d in r.data_free):.3g}")
    lines.append(f"  ({r.seconds:.1f} s)")
    return "\n".join(lines)


def _knob(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k or not v:
        raise argparse.ArgumentTypeError(f"expected KNOB=VALUE, got {text!r}")
    return k, v


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m analysis.upload.verdict", description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path, help="checkpoints (.safetensors, .pt, .pth, .bin, .ckpt)")
    ap.add_argument("--zoo", action="append", type=Path, help="a zoo to compare against (repeatable; "
                    "default: the committed zoos)")
    ap.add_argument("--knob", action="append", type=_knob, default=[], metavar="KNOB=VALUE",
                    help="a knob the weights cannot reveal, e.g. batch_size=64 (default: estimated)")
    ap.add_argument("--epoch", type=int, help="the zoo analysis epoch to compare against (default: the last)")
    ap.add_argument("--json", type=Path, help="write the reports (a JSON list) here")
    ap.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1), help="worker processes (0: none)")
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda, auto: where the workers compute")
    ap.add_argument("--no-cache", action="store_true", help="recompute even if a cached report exists")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    args = ap.parse_args(argv)
    from tqdm import tqdm

    try:
        zoos = [Zoo.open(z) for z in args.zoo] if args.zoo else None
        resolve_device(args.device)
        bar = tqdm(total=100, disable=args.quiet, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

        def progress(what: str, frac: float) -> None:
            bar.set_description_str(what[:60])
            bar.update(round(100 * frac) - bar.n)

        executor = process_pool(args.workers) if args.workers > 0 else None
        try:
            results = analyse(args.files, zoos, given=dict(args.knob), epoch=args.epoch, executor=executor,
                              device=args.device, progress=progress, cache=not args.no_cache)
        finally:
            bar.close()
            if executor is not None:
                executor.shutdown(cancel_futures=True)
    except (ZooError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print("\n\n".join(summary(r) for r in results))
    if args.json:
        blob = json.dumps([dataclasses.asdict(r) for r in results], indent=1, default=_jsonable)
        atomic_write(args.json, lambda tmp: tmp.write_text(blob))
        print(f"wrote {args.json}")
    return 1 if any(isinstance(r, Refused) for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
