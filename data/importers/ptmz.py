"""Import a zoo in the published layout of the Phase-Transition Model Zoo (Schürholt et al. 2025;
science.md §3.1) into our zoo format, so it is browsed and classified without recomputation.

    phasezoo import <published zoo root> --out data/zoos/ptmz-resnet18-cifar10 [--task cifar10] [--data-root /data]

Each trial directory of the root is read by data.importers.ptmz_layout (untrusted input: bounded, checked, one-line
problems); docs/import.md gives the keys read, their mapping and every limit. A bad trial, line or checkpoint is
reported and skipped, never losing the others. Checkpoints are converted to safetensors one at a time (memory
does not grow with the zoo); loss-landscape values become rows of our metrics table (`params_hash`
"ptmz-import"). The zoo is built in a temporary directory beside the output and renamed into place: nothing
partial is written, and an existing directory is never touched. `--data-root` records where the task's data is
(the spec's `data_root`, docs/datasets.md) after checking that it holds the task's layout, before anything is read.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

import polars as pl

from data import datasets
from data.cli import run_cli
from data.importers.ptmz_layout import (
    CONFIG_FILES,
    NOT_FINITE,
    PERF,
    ImportError_,
    ImportReport,
    Trial,
    load_checkpoint,
    printable,
    read_trial,
    reference_state,
)
from data.importers.zoo_writer import check_new_output, new_zoo_dir
from data.params import SpecError
from data.tasks.builtin import TASKS
from data.zoo.schema import CATALOG, METRICS
from data.zoo.spec import parse_spec
from data.zoo.store import CATALOG_FILE, METRICS_FILE, SPEC, atomic_write, write_checkpoint

__all__ = ["ImportError_", "ImportReport", "import_zoo", "main"]
PARAMS_HASH = "ptmz-import"


def _toml_str(s: str) -> str:
    return json.dumps(printable(s, 200), ensure_ascii=False)  # a JSON string of printable text is a TOML string


def _spec_text(name: str, task: str, trials: list[Trial], ckpts: list[int], data_root: str = "") -> str:
    t0 = trials[0]
    epochs = max(1, t0.epochs, *(max(t.lines) for t in trials))
    landscape = sorted({e for t in trials for e, line in t.lines.items() if line.values})
    analysis = landscape or ckpts[-1:] or [epochs]
    about = f"imported from the Phase-Transition Model Zoo layout ({len(trials)} trials, {t0.arch} on {task})"
    # a checked absolute path (checked_data_root); JSON's escapes are TOML's for a basic string
    root_line = f"data_root = {json.dumps(data_root, ensure_ascii=False)}\n" if data_root else ""
    return f'''name = {_toml_str(name)}
description = {_toml_str(about)}
task = "{task}"
arch = "{t0.arch}"
seeds = {sorted({t.seed for t in trials})}
{root_line}
[training]
epochs = {epochs}
lr = {t0.lr!r}
momentum = 0.9
weight_decay = {t0.weight_decay!r}
batch_size = {min(t.batch_size for t in trials)}
checkpoint_epochs = {[e for e in ckpts if e > 0]}
analysis_epochs = {analysis}

[grid]
width = {sorted({t.width for t in trials})}
batch_size = {sorted({t.batch_size for t in trials})}

[axes.load]
knob = "width"
increases = false

[axes.temperature]
knob = "batch_size"
increases = false
'''


def _write_trial(root: Path, task: str, mid: str, t: Trial, problems: list[str]) -> tuple[list, list]:
    """Convert `t`'s checkpoints one at a time (peak memory: one checkpoint) and return its table rows."""
    ref, size = reference_state(t.arch, task, t.n_classes, t.width)
    paths = {}
    for epoch, path in sorted(t.checkpoints.items()):
        where = f"{t.name}/{path.parent.name}/checkpoints"
        try:
            state = load_checkpoint(path, where, ref)
        except ImportError_ as e:
            problems.append(f"{e} — checkpoint skipped")
            continue
        paths[epoch] = write_checkpoint(root, mid, epoch, state)  # a write error aborts the import: not the input's
        del state
    cat_rows, met_rows = [], []
    for epoch, line in sorted(t.lines.items()):
        cat_rows.append({"model_id": mid, "arch": t.arch, "seed": t.seed, "epoch": epoch, "n_params": size,
                         **line.perf, "checkpoint": paths.get(epoch), "width": t.width, "batch_size": t.batch_size})
        if line.values:
            met_rows += [_metric_row(mid, epoch, *v) for v in line.values]
            met_rows += [_metric_row(mid, epoch, k, split, None, line.perf[k], None if line.perf[k] is not None
                                     else NOT_FINITE) for k, split in PERF.items()]
    return cat_rows, met_rows


def _metric_row(mid, epoch, metric, split, coord, value, error) -> dict:
    return {"model_id": mid, "other_id": None, "epoch": epoch, "metric": metric, "split": split, "layer": None,
            "coord": coord, "value": value, "stderr": None, "params_hash": PARAMS_HASH, "error": error}


def _read_all(src: Path, task: str, problems: list[str]) -> tuple[int, list[Trial]]:
    """The number of trial directories and every readable trial; each unreadable one is reported in `problems`
    and skipped, never losing the others."""
    dirs = sorted(d for d in (src.iterdir() if src.is_dir() else ())
                  if d.is_dir() and any(os.path.lexists(d / n) for n in CONFIG_FILES))
    if not dirs:
        raise ImportError_(f"{src}: no trial directories (folders with a params.json or config.json)")
    trials, unknown = [], {}
    for d in dirs:
        try:
            trials.append(read_trial(d, task, problems, unknown))
        except ImportError_ as e:
            problems.append(f"{e} — trial skipped")
        except Exception as e:  # not foreseen above: still this trial's problem, never the other trials'
            problems.append(f"{printable(d.name)}: could not be read ({type(e).__name__}) — trial skipped")
    for key, names in sorted(unknown.items())[:20]:  # one line per key, not one per line that has it
        others = len(set(names)) - 1
        problems.append(f"{names[0]}/result.json: key {printable(repr(key), 60)} is not understood — ignored"
                        + (f" (also in {others} other trial(s))" if others else ""))
    if len(unknown) > 20:
        problems.append(f"{src.name}: {len(unknown) - 20} more result.json keys not understood — ignored")
    if not trials:
        raise ImportError_(f"{src}: none of {len(dirs)} trials could be read: " + "; ".join(problems[:5]))
    arch = Counter(t.arch for t in trials).most_common(1)[0][0]
    seen: dict[tuple, str] = {}
    kept = []
    for t in trials:
        key = (t.width, t.batch_size, t.seed)
        if t.arch != arch:
            problems.append(f"{t.name}: a {t.arch}, not the zoo's {arch} — trial skipped")
        elif key in seen:
            problems.append(f"{t.name}: same width, batch size and seed as {seen[key]} — trial skipped")
        else:
            seen[key] = t.name
            kept.append(t)
    return len(dirs), kept


def checked_data_root(task: str, data_root: str | os.PathLike) -> str:
    """`data_root` as an absolute path, once it is known to hold `task`'s layout (an ImportError_ naming the
    layout expected and what was found otherwise); nothing is read but directory listings."""
    root = datasets.data_root(data_root).resolve()  # DatasetError: missing, or not a directory
    name = TASKS[task].dataset
    if name and not datasets.available(name, root):
        raise ImportError_(f"--data-root: expected {datasets.DATASETS[name].layout} under {root} for task {task}: "
                           f"found {datasets.root.found(root)} (nothing was written)")
    return str(root)


def import_zoo(src: str | Path, out: str | Path, task: str = "cifar10", name: str | None = None,
               data_root: str | os.PathLike | None = None) -> ImportReport:
    """`data_root`: recorded in the zoo's spec (`data_root`) once checked to hold the task's layout."""
    src, out = Path(src), Path(out)
    if task not in TASKS:
        raise SpecError(f"unknown task {task!r}; available: {sorted(TASKS)}")
    root_text = checked_data_root(task, data_root) if data_root is not None and str(data_root) else ""
    check_new_output(out)
    problems: list[str] = []
    n_dirs, trials = _read_all(src, task, problems)
    candidates = sorted({e for t in trials for e in t.checkpoints})
    try:
        spec = parse_spec(_spec_text(name or src.name, task, trials, candidates), "generated spec")
    except SpecError as e:
        raise ImportError_(f"{src}: the trials do not make a zoo spec: {e}") from None
    ids = {(dict(c.knobs)["width"], dict(c.knobs)["batch_size"], c.seed): c.model_id for c in spec.models()}
    with new_zoo_dir(out) as tmp:
        cat_rows, met_rows = [], []
        for t in trials:
            c, m = _write_trial(tmp, task, ids[t.width, t.batch_size, t.seed], t, problems)
            cat_rows += c
            met_rows += m
        stored = sorted({r["epoch"] for r in cat_rows if r["checkpoint"] is not None})
        text = _spec_text(name or src.name, task, trials, stored, root_text)  # the epochs whose checkpoints were stored
        final = parse_spec(text, "generated spec")
        catalog = pl.DataFrame(cat_rows, schema={**CATALOG.columns, **final.knob_dtypes}).sort("model_id", "epoch")
        metrics = pl.DataFrame(met_rows, schema=METRICS.columns)
        atomic_write(tmp / SPEC, lambda p: p.write_text(text))
        atomic_write(tmp / CATALOG_FILE, lambda p: CATALOG.validate(catalog, final.knob_dtypes).write_parquet(p))
        atomic_write(tmp / METRICS_FILE, lambda p: METRICS.validate(metrics).write_parquet(p))
    return ImportReport(n_dirs, len(trials), tuple(problems))


def main(argv: Sequence[str] | None = None, prog: str = "python -m data.importers.ptmz") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("src", help="root of a zoo in the published layout")
    ap.add_argument("--out", required=True, help="new zoo directory (must not exist)")
    ap.add_argument("--task", default="cifar10", help=f"the zoo's task (default cifar10; known: {sorted(TASKS)})")
    ap.add_argument("--name", help="zoo name (default: the source folder's name)")
    ap.add_argument("--data-root", metavar="DIR", help="where the task's data is: checked, then recorded in the spec "
                    "(overrides $PHASEZOO_DATA for this zoo; docs/datasets.md)")
    args = ap.parse_args(argv)

    def body() -> int:
        rep = import_zoo(args.src, args.out, args.task, args.name, args.data_root)
        for p in rep.problems:
            print(f"warning: {p}", file=sys.stderr)
        print(f"{args.out}: imported {rep.imported} of {rep.trials} trials ({len(rep.problems)} problem(s) reported)")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
