"""Import a zoo in the published layout of the Phase-Transition Model Zoo (Schürholt et al. 2025;
science.md §3.1) into our zoo format, so it is browsed and classified without recomputation.

    python -m data.import_ptmz <published zoo root> --out data/zoos/ptmz-resnet18-cifar10 [--task cifar10]

    <root>/config.json
    <root>/NN_tune_trainable_<id>_..._model_width=64,...,seed=0,training_batchsize=1024_<date>/
        params.json                       flat config with "::"-namespaced keys
        result.json                       JSON lines: line k = epoch k (line 0 = untrained)
        checkpoint_000115/checkpoints     torch.save(state_dict): loaded with weights_only=True only

Grid coordinates come from params.json (result.json's nested config can hold a micro-batch size). The
checkpoints become safetensors; `module.` prefixes are stripped; each must load strictly into our ResNet
width variant (data.resnet). The loss-landscape values written into result.json lines become rows of our
metrics table (`params_hash` "ptmz-import"): logarithms are stored exponentiated, so that the cell
table's ln(seed mean) gives back the published value (it is replicated across a cell's seeds). A trial
that cannot be read is reported (trial and file) and skipped, a corrupt result line likewise; the zoo is
assembled in a temporary directory and renamed into place, so nothing partial is ever written.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import torch

from data.archs import build_model, n_params
from data.params import SpecError
from data.schema import CATALOG, METRICS
from data.spec import parse_spec
from data.store import CATALOG_FILE, METRICS_FILE, SPEC, atomic_write, write_checkpoint
from data.tasks import TASKS

ARCH_NAMES = {"Resnet18_width": "resnet18_width", "Resnet50_width": "resnet50_width"}
PARAMS_HASH = "ptmz-import"
# published key -> (our metric, split, coord, exponentiate?). Suffix _train = training set, _val = test set;
# the bare names are the other split of their pair (log_hessian_trace: test, log_hessian_top_ev: train).
# "hessina" is the published misspelling of the raw (not logged) Hessian trace.
KEY_MAP = {
    "log_hessian_trace_train": ("hessian_trace_hutchinson", "train", None, True),
    "log_hessian_trace": ("hessian_trace_hutchinson", "test", None, True),
    "hessina_trace_train": ("hessian_trace_hutchinson", "train", None, False),
    "hessina_trace": ("hessian_trace_hutchinson", "test", None, False),
    "log_hessian_top_ev": ("hessian_top_eigenvalue", "train", 1.0, True),
    "log_hessian_top_ev_val": ("hessian_top_eigenvalue", "test", 1.0, True),
    "curve_mc_train_error": ("mc_bezier", "train", None, False),
    "curve_mc_test_error": ("mc_bezier", "test", None, False),
    "representation_similarity": ("cka_logits_test", "test", None, False),
    "wiseft_acc_test_delta": ("wiseft_acc_test_delta", "test", None, False),
    "gitrebasin_acc_test_delta": ("gitrebasin_acc_test_delta", "test", None, False),
}
PERF = {"train_loss": "train", "train_acc": "train", "test_loss": "test", "test_acc": "test"}


class ImportError_(ValueError):
    """A trial or file of the published layout cannot be imported (the message names which)."""


@dataclass
class Trial:
    name: str
    arch: str
    width: int
    batch_size: int
    seed: int
    n_classes: int
    lr: float
    weight_decay: float
    epochs: int
    lines: dict[int, dict]  # epoch -> result line
    checkpoints: dict[int, dict[str, torch.Tensor]]


@dataclass
class ImportReport:
    trials: int = 0
    imported: int = 0
    problems: list[str] = field(default_factory=list)  # "trial/file: what" (skipped trials and lines)


def _read_params(trial: Path) -> dict:
    try:
        params = json.loads((trial / "params.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ImportError_(f"{trial.name}/params.json: {e}") from None
    missing = [k for k in ("model::type", "model::width", "model::o_dim", "training::batchsize", "seed")
               if k not in params]
    if missing:
        raise ImportError_(f"{trial.name}/params.json: missing key(s) {missing}")
    if params["model::type"] not in ARCH_NAMES:
        raise ImportError_(f"{trial.name}/params.json: unknown model::type {params['model::type']!r}; "
                           f"known: {sorted(ARCH_NAMES)}")
    return params


def _read_lines(trial: Path, report: ImportReport) -> dict[int, dict]:
    try:
        text = (trial / "result.json").read_text()
    except OSError as e:
        raise ImportError_(f"{trial.name}/result.json: {e.strerror}") from None
    lines = {}
    for k, line in enumerate(text.splitlines()):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            if not all(isinstance(row.get(key), (int, float)) for key in PERF):
                raise ValueError(f"lacks one of {list(PERF)}")
        except ValueError as e:  # JSONDecodeError is a ValueError
            report.problems.append(f"{trial.name}/result.json line {k}: skipped ({e})")
            continue
        lines[k] = row
    if not lines:
        raise ImportError_(f"{trial.name}/result.json: no readable epoch line")
    return lines


def _read_checkpoints(trial: Path, model: torch.nn.Module, report: ImportReport) -> dict[int, dict]:
    out = {}
    for ck in sorted(trial.glob("checkpoint_*")):
        path = ck / "checkpoints"
        try:
            epoch = int(ck.name.removeprefix("checkpoint_"))
            # weights_only: tensors and plain containers only — a pickle that would run code is refused
            state = torch.load(path, map_location="cpu", weights_only=True)
            if not isinstance(state, dict):
                raise ValueError(f"expected a state dict, got {type(state).__name__}")
            state = {k.removeprefix("module."): v for k, v in state.items()}
            model.load_state_dict(state, strict=True)
        except Exception as e:  # unpickling, shape and key errors all mean: skip this checkpoint
            report.problems.append(f"{trial.name}/{ck.name}/checkpoints: skipped ({type(e).__name__}: {e})")
            continue
        out[epoch] = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    return out


def read_trial(trial: Path, task: str, report: ImportReport) -> Trial:
    p = _read_params(trial)
    arch = ARCH_NAMES[p["model::type"]]
    model = build_model(arch, TASKS[task].input_shape, int(p["model::o_dim"]), {"width": int(p["model::width"])})
    return Trial(trial.name, arch, int(p["model::width"]), int(p["training::batchsize"]), int(p["seed"]),
                 int(p["model::o_dim"]), float(p.get("optim::lr", 0.1)), float(p.get("optim::wd", 0.0)),
                 int(p.get("training::epochs_train", 0)), _read_lines(trial, report),
                 _read_checkpoints(trial, model, report))


def _spec_text(name: str, task: str, trials: list[Trial]) -> str:
    t0 = trials[0]
    epochs = max(t0.epochs, *(max(t.lines) for t in trials))
    ckpts = sorted({e for t in trials for e in t.checkpoints if e <= epochs})
    landscape = sorted({e for t in trials for e, line in t.lines.items() if any(k in line for k in KEY_MAP)})
    analysis = landscape or ckpts[-1:] or [epochs]
    widths = sorted({t.width for t in trials})
    batches = sorted({t.batch_size for t in trials})
    seeds = sorted({t.seed for t in trials})
    return f'''name = "{name}"
description = "imported from the Phase-Transition Model Zoo layout ({len(trials)} trials, {t0.arch} on {task})"
task = "{task}"
arch = "{t0.arch}"
seeds = {seeds}

[training]
epochs = {epochs}
lr = {t0.lr}
momentum = 0.9
weight_decay = {t0.weight_decay}
batch_size = {batches[0]}
checkpoint_epochs = {[e for e in ckpts if e > 0]}
analysis_epochs = {analysis}

[grid]
width = {widths}
batch_size = {batches}

[axes.load]
knob = "width"
increases = false

[axes.temperature]
knob = "batch_size"
increases = false
'''


def _tables(root: Path, spec, trials: list[Trial]) -> tuple[pl.DataFrame, pl.DataFrame]:
    ids = {(dict(c.knobs)["width"], dict(c.knobs)["batch_size"], c.seed): c.model_id for c in spec.models()}
    cat_rows, met_rows = [], []
    for t in trials:
        mid = ids[t.width, t.batch_size, t.seed]
        size = n_params(build_model(t.arch, TASKS[spec.task].input_shape, t.n_classes, {"width": t.width}))
        paths = {e: write_checkpoint(root, mid, e, sd) for e, sd in t.checkpoints.items()}
        for epoch, line in sorted(t.lines.items()):
            cat_rows.append({"model_id": mid, "arch": t.arch, "seed": t.seed, "epoch": epoch, "n_params": size,
                             **{k: float(line[k]) for k in PERF}, "checkpoint": paths.get(epoch),
                             "width": t.width, "batch_size": t.batch_size})
            found = [(key, line[key]) for key in KEY_MAP if isinstance(line.get(key), (int, float))]
            if not found:
                continue
            taken: set[tuple] = set()
            for key, value in found:  # the logged key comes first in KEY_MAP, so it wins over a raw one
                metric, split, coord, exp = KEY_MAP[key]
                if (metric, split) in taken or not math.isfinite(value):
                    continue
                taken.add((metric, split))
                met_rows.append(_metric_row(mid, epoch, metric, split, coord, math.exp(value) if exp else value))
            met_rows += [_metric_row(mid, epoch, k, split, None, float(line[k])) for k, split in PERF.items()]
    catalog = pl.DataFrame(cat_rows, schema={**CATALOG.columns, **spec.knob_dtypes}).sort("model_id", "epoch")
    metrics = pl.DataFrame(met_rows, schema=METRICS.columns)
    return catalog, metrics


def _metric_row(mid, epoch, metric, split, coord, value) -> dict:
    return {"model_id": mid, "other_id": None, "epoch": epoch, "metric": metric, "split": split, "layer": None,
            "coord": coord, "value": value, "stderr": None, "params_hash": PARAMS_HASH, "error": None}


def import_zoo(src: str | Path, out: str | Path, task: str = "cifar10", name: str | None = None) -> ImportReport:
    src, out = Path(src), Path(out)
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; available: {sorted(TASKS)}")
    if out.exists():
        raise ImportError_(f"{out} exists; choose a new output directory (nothing was written)")
    dirs = sorted(d for d in src.iterdir() if d.is_dir() and (d / "params.json").exists()) if src.is_dir() else []
    report = ImportReport(trials=len(dirs))
    if not dirs:
        raise ImportError_(f"{src}: no trial directories (folders with a params.json)")
    trials = []
    for d in dirs:
        try:
            trials.append(read_trial(d, task, report))
        except ImportError_ as e:
            report.problems.append(f"{e} — trial skipped")
        except (ValueError, TypeError, SpecError) as e:  # e.g. a non-numeric width in params.json
            report.problems.append(f"{d.name}/params.json: {type(e).__name__}: {e} — trial skipped")
    if not trials:
        raise ImportError_(f"{src}: none of {len(dirs)} trials could be read: " + "; ".join(report.problems))
    archs = {t.arch for t in trials}
    if len(archs) > 1:
        raise ImportError_(f"{src}: trials of several architectures {sorted(archs)}; import them separately")
    seen: dict[tuple, str] = {}
    for t in list(trials):
        key = (t.width, t.batch_size, t.seed)
        if key in seen:
            report.problems.append(f"{t.name}: same width, batch size and seed as {seen[key]} — trial skipped")
            trials.remove(t)
        seen.setdefault(key, t.name)
    text = _spec_text(name or src.name, task, trials)
    spec = parse_spec(text, "generated spec")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=out.parent, prefix=f".{out.name}.", suffix=".tmp"))
    try:
        catalog, metrics = _tables(tmp, spec, trials)
        atomic_write(tmp / SPEC, lambda p: p.write_text(text))
        atomic_write(tmp / CATALOG_FILE, lambda p: CATALOG.validate(catalog, spec.knob_dtypes).write_parquet(p))
        atomic_write(tmp / METRICS_FILE, lambda p: METRICS.validate(metrics).write_parquet(p))
        os.sync()
        os.rename(tmp, out)  # the zoo appears whole, or not at all
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    report.imported = len(trials)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m data.import_ptmz", description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="root of a zoo in the published layout")
    ap.add_argument("--out", required=True, help="new zoo directory (must not exist)")
    ap.add_argument("--task", default="cifar10", help=f"the zoo's task (default cifar10; known: {sorted(TASKS)})")
    ap.add_argument("--name", help="zoo name (default: the source folder's name)")
    args = ap.parse_args(argv)
    try:
        rep = import_zoo(args.src, args.out, args.task, args.name)
    except (ImportError_, SpecError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for p in rep.problems:
        print(f"warning: {p}", file=sys.stderr)
    print(f"{args.out}: imported {rep.imported} of {rep.trials} trials ({len(rep.problems)} problem(s) reported)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
