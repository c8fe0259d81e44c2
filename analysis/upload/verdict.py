"""A checkpoint's phase, with the evidence and its place on the zoo's map.

    phasezoo verdict model.safetensors                      # against the committed zoos
    phasezoo verdict a.pt b.pt c.pt --zoo DIR --knob batch_size=64 --json report.json
    phasezoo verdict resnet.pt --zoo data/zoos/ptmz-resnet18 --data-root /data   # an imported zoo, full verdict

For each file: a safe load (data.checkpoint.load: no code runs), the data-free weight report (any
architecture), and recognition against the zoos (analysis.upload.recognise). For a recognised model, on the zoo's
task data at the zoo's last analysis epoch:

1. its own metrics, as the zoo computed them (performance, weights, exact Hessian trace in this process;
   the Hessian's top eigenvalues, trace and spectral density on the training probe set in a worker);
2. the knobs the weights do not reveal (batch size, learning rate…) from the user, else estimated from
   the zoo models of the same load that are most alike in fit and weight statistics — with the votes for
   every value the knob could take and the rules' answer in each of those cells;
3. CKA and mode connectivity (straight line and trained Bézier curve) against the seeds of its cell, or
   against each other when several uploads share one configuration (they then form a cell of their own);
4. two verdicts: the taxonomy's rules with the zoo's thresholds (analysis.taxonomy.phases), each threshold's
   margin and the phase across it (analysis.taxonomy.cell_report), and the learned single-model classifier's
   phase probabilities with its held-out accuracy on the zoo (analysis.taxonomy.classifier);
5. its place: the cell on the phase map, the zoo's PCA map (exact projection) and UMAP map (approximate:
   its nearest zoo models' positions), and its nearest zoo models in weight space.

Every file gets its own result, whatever goes wrong inside its analysis: a Report, or a Refused with a one-line
reason (analysis.upload.failures; the traceback goes to the log). A near-copy of a zoo model (its fp16/bf16 round trip)
is that model (analysis.upload.placement); a model whose own measurements fail or are non-finite gets no phase.

Each step is its own module, and each piece of work happens once per file: recognition (analysis.upload.recognise;
a companion upload's too), the data-free report, its place in weight space (analysis.upload.placement: the one
flattening of its weights), its cell (analysis.upload.cell: the knobs known without measuring first, so that its
quick metrics run once, on its cell's task: analysis.upload.measure), its partners (analysis.upload.pairing), the
slow jobs, and the verdicts (analysis.upload.verdicts). The results are typed (analysis.upload.report).

Reports are cached by the file's SHA-256 (with the zoo's state and the options) under
<cache>/reports/ (analysis.upload.cache); a run that stops half-way, or whose measurements failed, writes
nothing.

A zoo whose task is read from disk (an imported published zoo: CIFAR-10/100, SVHN, TinyImageNet; data.datasets)
gives the full verdict when its data root — `--data-root`, else the zoo spec's `data_root`, else $PHASEZOO_DATA —
holds the task's layout, and the data-free report with a note saying what is missing otherwise.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import Executor
from pathlib import Path

from analysis.kernels.weights import weight_report
from analysis.studies.embed import weights_only
from analysis.studies.weightspace_model import weights_phase
from analysis.upload import cache as report_cache
from analysis.upload.cell import complete, known_knobs, task_knobs
from analysis.upload.failures import Caller, Refused, display_name, refusal
from analysis.upload.measure import EXACT_TRACE, PAIRS, OwnMetrics, Progress, SlowJobs
from analysis.upload.pairing import partners
from analysis.upload.placement import locate, placement
from analysis.upload.pool import process_pool, upload_estimate
from analysis.upload.recognise import ZooMatch, recognise
from analysis.upload.report import LayerStats, Report, WeightsOnlyVerdict, plain
from analysis.upload.summary import summary
from analysis.upload.verdicts import (
    Measured,
    advice_words,
    classifier_verdict,
    evidence,
    prepare_classifier,
    rule_verdict,
    with_candidate_phases,
)
from analysis.upload.zoo_side import cell_phases, cells, zoo_state
from data.checkpoint.load import Checkpoint, load_checkpoint, read_checkpoint
from data.cli import run_cli
from data.datasets import DATASETS, ENV, available, data_root
from data.datasets.root import found
from data.device import resolve_device
from data.models.reference import add_factory_flag, trust_flagged
from data.tasks.builtin import TASKS, TaskData
from data.zoo.spec import data_root_for
from data.zoo.store import Zoo, atomic_write, builtin_zoos

__all__ = ["Refused", "Report", "analyse", "main", "process_pool", "summary", "upload_estimate"]


class _Recognised:
    """Each checkpoint's recognition against the zoos, done once: for its own analysis and for every other
    upload's question whether it is of their configuration. A recognition that raised raises again, for the
    file's own refusal."""

    def __init__(self, zoos: Sequence[Zoo]):
        self._zoos = zoos
        self._done: dict[int, list[ZooMatch] | Exception] = {}  # id(checkpoint) -> its recognition

    def __call__(self, ck: Checkpoint) -> list[ZooMatch]:
        if id(ck) not in self._done:
            try:
                self._done[id(ck)] = recognise(ck.state, self._zoos)
            except Exception as e:
                self._done[id(ck)] = e
        done = self._done[id(ck)]
        if isinstance(done, Exception):
            raise done
        return done


def _load(item) -> Checkpoint:
    if isinstance(item, Checkpoint):
        return item
    if isinstance(item, tuple):
        return read_checkpoint(item[1], display_name(item[0]))
    return load_checkpoint(item)


def _name(item) -> str:
    try:
        return display_name(item[0] if isinstance(item, tuple) else getattr(item, "name", None) or Path(item).name)
    except Exception:  # not even a name: still one refusal of its own
        return "<unnamed>"


def analyse(files: Sequence, zoos: Sequence[Zoo] | None = None, *, given: Mapping[str, object] | None = None,
            epoch: int | None = None, executor: Executor | None = None, device: str = "cpu",
            progress: Progress = lambda what, frac: None, cache: bool = True,
            data_root: str | os.PathLike | None = None, task: TaskData | None = None) -> list[Report | Refused]:
    """Analyse uploaded checkpoints (paths, (name, bytes) pairs or loaded Checkpoints) against `zoos`
    (default: the committed zoos). `given` fixes knobs the weights cannot reveal (e.g. batch_size=64).
    Slow metrics run on `executor` (a process pool; None: in this process). One result per file, in order.
    `data_root` overrides the zoos' spec `data_root` and $PHASEZOO_DATA for a task read from disk; `task`
    gives the data itself (a caller's tensors: every zoo's metrics are measured on it, nothing is cached)."""
    t0 = time.perf_counter()
    given = dict(given or {})
    zoos = list(zoos) if zoos is not None else [Zoo.open(p) for p in builtin_zoos()]
    data: dict[str, str | TaskData | None] = {str(z.root): task if task is not None else task_data(z, data_root)
                                              for z in zoos}
    cache = cache and task is None  # a cache key cannot name in-memory data
    keyed = {**given, "\0data": sorted((k, str(v)) for k, v in data.items()) if task is None else "tensors"}  # the cache key: what data there was
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
            key = report_cache.key(ck, zoos, keyed, epoch, companions)
            hit = report_cache.read(key) if cache else None
        except Exception as e:
            results[i] = refusal(ck.name, "reading the report cache", e)
            continue
        if hit is not None:
            results[i] = hit
        else:
            work.append((i, ck, key))
    recognised = _Recognised(zoos)
    for j, (i, ck, key) in enumerate(work):
        def step(what: str, frac: float, _j=j, _name=ck.name) -> None:  # this file's share of the whole bar
            caller.stage = what
            caller(f"{_name}: {what}", (_j + frac) / max(len(work), 1))

        t1 = time.perf_counter()
        caller.stage = None
        try:  # the mechanism of "one file, one result": anything this file's analysis raises refuses it alone
            report = _analyse_one(ck, [c for _, c, _ in work], zoos, given, epoch, executor, device, step, recognised,
                                  data, data_root)
        except Exception as e:
            if e is caller.raised:  # the caller stopping (a closed tab): not the file's fault, nothing cached
                raise
            results[i] = refusal(ck.name, caller.stage, e)
            continue
        report = dataclasses.replace(report, seconds=round(time.perf_counter() - t1 + (t1 - t0) / len(work), 2))
        if cache and not report.errors:  # a failed job (a worker that died, a broken pool) is retried next time
            report_cache.write(key, report)
        results[i] = report
    caller("done", 1.0)
    return [results[i] for i in range(len(loaded))]


def task_data(zoo: Zoo, flag: str | os.PathLike | None = None) -> str | None:
    """Where the zoo's task data is: "" for a task generated here; the data root (absolute) for a task read from
    disk whose layout is there; None when it is not (the data-free report, with `missing_data`'s note)."""
    tdef = TASKS[zoo.spec.task]
    if not tdef.dataset:
        return "" if tdef.available else None
    chosen = data_root_for(zoo.spec, zoo.root, flag)
    if not available(tdef.dataset, chosen):
        return None
    return str(data_root(chosen).resolve())


def missing_data(zoo: Zoo, flag: str | os.PathLike | None = None) -> str:
    """Why the zoo's task has no data here, in one line: the layout expected and what the data root holds."""
    spec, tdef = zoo.spec, TASKS[zoo.spec.task]
    if not tdef.dataset:
        return f"zoo {zoo.name}'s task {spec.task} has no data on this machine"
    chosen = data_root_for(spec, zoo.root, flag)
    where = chosen if chosen is not None else os.environ.get(ENV)
    what = (f"expected {DATASETS[tdef.dataset].layout} under {where}: found {found(Path(where))}" if where
            else f"no data root (${ENV} is not set)")
    return (f"zoo {zoo.name}'s task {spec.task} has no data here ({what}); set {ENV} (or --data-root) to the "
            "directory holding it for the full verdict")


def _analyse_one(ck: Checkpoint, uploads: Sequence[Checkpoint], zoos: Sequence[Zoo], given: Mapping,
                 epoch: int | None, executor: Executor | None, device: str, progress: Progress,
                 recognised: _Recognised, data: Mapping[str, str | TaskData | None],
                 data_flag: str | os.PathLike | None = None) -> Report:
    """One file's steps, each once; `uploads`: the files analysed with it (its possible partners)."""
    state, notes = ck.state, list(ck.notes)
    n_params = sum(v.numel() for v in weights_only(state).values())
    progress("data-free weight report", 0.02)
    # in the layers' natural order ("2.weight" before "10.weight"), whatever order the file listed them in
    data_free = tuple(sorted((LayerStats.of(lw) for lw in weight_report(state)),
                             key=lambda s: [int(p) if p.isdigit() else p for p in re.split(r"(\d+)", s.layer)]))
    if not data_free:
        notes.append("no weight matrix (no tensor of rank ≥ 2): no data-free layer report")
    progress("recognising the architecture", 0.06)
    matches = recognised(ck)
    base = Report(ck.name, ck.sha256, n_params, tuple(notes), data_free, tuple(matches))
    match = next((m for m in matches if m.ok), None)
    if match is None:
        return dataclasses.replace(base, notes=(*notes, "no zoo matches this architecture: data-free report only"))
    zoo = next(z for z in zoos if str(z.root) == match.root)
    spec = zoo.spec
    root = data.get(str(zoo.root))
    if root is None:  # nothing can be measured: the data-free report, and the phase from the weights alone
        notes.append(f"{missing_data(zoo, data_flag)}: data-free report only")
        progress("the phase from the weights alone", 0.5)
        try:
            wp = weights_phase(zoo, state)
            v = wp.model.validation
            alone = WeightsOnlyVerdict(wp.phase, dict(wp.probabilities), wp.model.baseline, wp.model.epoch,
                                       wp.model.n_train, wp.model.n_cells, v.value, v.ci_low, v.ci_high, v.chance)
        except Exception as e:  # no labels to learn from, or a zoo it cannot read: the data-free report stands
            alone = None
            notes.append(f"no phase from the weights alone: {type(e).__name__}: {e}".splitlines()[0])
        return dataclasses.replace(base, zoo=match.root, notes=tuple(notes), weights_only=alone)
    if isinstance(root, str) and root:  # this process's own metrics read $PHASEZOO_DATA; workers get it in jobs
        os.environ[ENV] = root
    epoch = epoch if epoch is not None else max(spec.analysis_epochs)
    table, th = cells(zoo_state(zoo), epoch)
    me = ("upload", ck.name, state)
    own = OwnMetrics(str(zoo.root), epoch, match.arch_params, me, root or None)

    def exact(knobs: tuple) -> bool:
        return any(r["metric"] == EXACT_TRACE and r["error"] is None for r in own.rows(knobs))

    with SlowJobs(executor, str(zoo.root), epoch, match.arch_params, me, device, root or None) as jobs:
        # where no grid knob is a task parameter (all but a PINN's β grid) the Hessian's task is known now: it
        # starts before the pairing is decided, and the workers compute while this process does the rest
        early = not any(k in spec.task_params for k in spec.grid)
        progress("fit, weights and exact Hessian trace", 0.1)
        if early:
            jobs.hessian((), exact_trace=exact(()))
        where = locate(zoo, zoo_state(zoo), epoch, state)
        twin_id = where.identical_to
        twin = zoo.configs[twin_id].get("knobs") if twin_id else None  # within its precision
        cell = complete(zoo, epoch, known_knobs(spec, match, given, twin), own.rows, n_params)
        pairing = partners(ck, uploads, zoo, epoch, match, recognised, cell, twin_id)
        notes += pairing.notes
        knobs = task_knobs(spec, cell)  # everything else on the cell's task (a PINN cell's β, given or estimated)
        if not early:
            jobs.hessian(knobs, exact_trace=exact(knobs))
        jobs.pairs(pairing.others, PAIRS, knobs)
        progress("placing it in weight space", 0.15)
        place = placement(zoo, where, cell_phases(zoo, epoch))
        prepare_classifier(zoo)  # while the workers compute
        slow, job_errors, job_failed = jobs.collect(progress)
    measured = Measured.of(own.rows(knobs) + slow, job_errors, job_failed)
    rule = rule_verdict(measured, spec, th, pairing.pairs_with, len(pairing.others))
    cell = with_candidate_phases(cell, spec, table, th, measured.quantities.get("train_loss"))
    progress("classifier", 0.97)
    classifier, note = classifier_verdict(measured, zoo, n_params)
    report = dataclasses.replace(
        base, notes=(*notes, *([note] if note else [])), zoo=match.root, epoch=epoch, cell=cell,
        metrics=measured.metric_rows(), pairs=measured.pair_values(), rule=rule, classifier=classifier,
        evidence=evidence(table, th, measured.quantities), placement=place, errors=measured.errors)
    return dataclasses.replace(report, advice=advice_words(zoo, epoch, measured, cell, report.phase))


# ----------------------------------------------------------------------------- CLI
def _knob(text: str) -> tuple[str, str]:
    k, sep, v = text.partition("=")
    if not sep or not k or not v:
        raise argparse.ArgumentTypeError(f"expected KNOB=VALUE, got {text!r}")
    return k, v


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.upload.verdict") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
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
    ap.add_argument("--data-root", metavar="DIR", default=None, help="where a zoo's task data is (overrides the "
                    "spec's data_root and $PHASEZOO_DATA; docs/datasets.md)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar")
    add_factory_flag(ap)
    args = ap.parse_args(argv)
    trust_flagged(args.factory)

    def body() -> int:
        from tqdm import tqdm

        zoos = [Zoo.open(z) for z in args.zoo] if args.zoo else None
        resolve_device(args.device)
        if args.data_root is not None:
            data_root(args.data_root)  # a missing or non-directory root: one line, before any work
        bar = tqdm(total=100, disable=args.quiet, file=sys.stderr, bar_format="{l_bar}{bar}| {elapsed}<{remaining}")

        def progress(what: str, frac: float) -> None:
            bar.set_description_str(what[:60])
            bar.update(round(100 * frac) - bar.n)

        executor = process_pool(args.workers) if args.workers > 0 else None
        try:
            results = analyse(args.files, zoos, given=dict(args.knob), epoch=args.epoch, executor=executor,
                              device=args.device, progress=progress, cache=not args.no_cache,
                              data_root=args.data_root)
        finally:
            bar.close()
            if executor is not None:
                executor.shutdown(cancel_futures=True)
        print("\n\n".join(summary(r) for r in results))
        if args.json:
            blob = json.dumps([plain(r) for r in results], indent=1)
            atomic_write(args.json, lambda tmp: tmp.write_text(blob))
            print(f"wrote {args.json}")
        return 1 if any(isinstance(r, Refused) for r in results) else 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
