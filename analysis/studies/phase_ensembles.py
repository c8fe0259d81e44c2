"""Phase-consistent against phase-crossing ensembles: does it pay to ensemble models of one phase?

    phasezoo ensembles data/zoos/mnist1d-mlp [--epoch 300] [--size 3] [--draws 300]

Every model's test-set probabilities at an analysis epoch, and its cell's phase (default thresholds).
For each phase with enough models, `draws` ensembles of `size` members drawn from that phase alone
("consistent"), and `draws` ensembles whose members come from `size` different phases ("across"), all
seeded. Each ensemble averages its members' probabilities (analysis.kernels.downstream.ensemble). The table is
written to <zoo>/phase_ensembles.parquet (data.zoo.schema.PHASE_ENSEMBLES) for the Ensembles page.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import polars as pl
import torch

from analysis.kernels.downstream import ensemble, predict_proba
from analysis.metrics.catalog import get_metric
from analysis.runner.run import prepare_data
from analysis.taxonomy.phases import UNCLASSIFIED, classify, default_thresholds, zoo_cells
from data.cli import run_cli
from data.tasks.builtin import TASKS
from data.zoo.paths import read_parquet  # a regular file of bounded size, never a FIFO
from data.zoo.schema import PHASE_ENSEMBLES
from data.zoo.store import ZooError, atomic_write, writer_lock

PHASE_ENSEMBLES_FILE = "phase_ensembles.parquet"


def draw_ensembles(probs: Mapping[str, torch.Tensor], phase_of: Mapping[str, str], y: torch.Tensor, *,
                   size: int = 3, draws: int = 300, seed: int = 0, epoch: int = 0) -> pl.DataFrame:
    """Seeded draws of consistent and across-phase ensembles (see the module docstring)."""
    rng = np.random.default_rng(seed)
    by_phase: dict[str, list[str]] = {}
    for mid in sorted(probs):
        if phase_of.get(mid, UNCLASSIFIED) != UNCLASSIFIED:
            by_phase.setdefault(phase_of[mid], []).append(mid)
    rows = []

    def add(kind: str, members: Sequence[str]) -> None:
        r = ensemble([probs[m] for m in members], y)
        rows.append({"epoch": epoch, "kind": kind, "phases": "+".join(sorted({phase_of[m] for m in members})),
                     "members": ",".join(members), "acc": r.acc, "nll": r.nll, "acc_gain": r.acc - r.member_acc,
                     "nll_gain": r.member_nll - r.nll, "disagreement": r.disagreement})

    for _, ids in sorted(by_phase.items()):
        if len(ids) >= size:
            for _ in range(draws):
                add("consistent", list(rng.choice(ids, size, replace=False)))
    phases = sorted(by_phase)
    if len(phases) >= size:
        for _ in range(draws * len(phases)):  # as many as all consistent draws together
            add("across", [str(rng.choice(by_phase[p])) for p in rng.choice(phases, size, replace=False)])
    if not rows:
        raise ValueError(f"no phase has {size} models and fewer than {size} phases exist: nothing to draw")
    return PHASE_ENSEMBLES.validate(pl.DataFrame(rows))


def compare(table: pl.DataFrame) -> pl.DataFrame:
    """Per phase: mean accuracy and accuracy gain of its consistent ensembles against the across-phase
    ensembles that contain one of its models."""
    out = []
    across = table.filter(pl.col("kind") == "across")
    for (phase,), g in table.filter(pl.col("kind") == "consistent").group_by("phases", maintain_order=True):
        a = across.filter(pl.col("phases").str.split("+").list.contains(phase))
        out.append({"phase": phase, "consistent_acc": g["acc"].mean(), "across_acc": a["acc"].mean(),
                    "consistent_gain": g["acc_gain"].mean(), "across_gain": a["acc_gain"].mean(),
                    "consistent_disagreement": g["disagreement"].mean(),
                    "across_disagreement": a["disagreement"].mean(), "n_consistent": g.height, "n_across": a.height})
    if not out:  # no phase had enough models for a consistent ensemble
        return pl.DataFrame(schema={"phase": pl.String, **{c: pl.Float64 for c in (
            "consistent_acc", "across_acc", "consistent_gain", "across_gain", "consistent_disagreement",
            "across_disagreement")}, "n_consistent": pl.Int64, "n_across": pl.Int64})
    return pl.DataFrame(out).sort("phase")


def zoo_phase_ensembles(root: str | Path, epoch: int | None = None, size: int = 3, draws: int = 300,
                        seed: int = 0, data_root: str | Path | None = None) -> pl.DataFrame:
    """`data_root`: where a task read from disk is (else the spec's `data_root`, else $PHASEZOO_DATA)."""
    zoo, epoch, cells = zoo_cells(root, epoch)
    prepare_data(zoo, [get_metric("ensemble")], data_root)  # a missing root or layout: one line, before any work
    if TASKS[zoo.spec.task].kind == "regression":
        raise ZooError(f"{zoo.name}: a regression zoo ({zoo.spec.task}) has no class probabilities to ensemble")
    if cells["mc"].is_null().all():
        raise ZooError(f"{zoo.name}: no phase labels at epoch {epoch}: run `phasezoo run` first")
    spec = zoo.spec
    xk, yk = spec.load.knob, spec.temperature.knob
    labels = classify(cells, default_thresholds(cells)).select(xk, yk, "phase")
    at = zoo.checkpoints().filter(pl.col("epoch") == epoch).select("model_id", xk, yk).join(labels, on=[xk, yk])
    task = zoo.task
    probs = {mid: predict_proba(zoo.build_model(mid, epoch), task.x_test) for mid in at["model_id"]}
    table = draw_ensembles(probs, dict(at.select("model_id", "phase").iter_rows()), task.y_test, size=size,
                           draws=draws, seed=seed, epoch=epoch)
    path = zoo.root / PHASE_ENSEMBLES_FILE
    old = read_phase_ensembles(zoo.root).filter(pl.col("epoch") != epoch)
    with writer_lock(zoo.root):
        atomic_write(path, lambda tmp: pl.concat([old, table]).write_parquet(tmp))
    return table


def read_phase_ensembles(root: str | Path) -> pl.DataFrame:
    path = Path(root) / PHASE_ENSEMBLES_FILE
    return PHASE_ENSEMBLES.validate(read_parquet(path)) if path.exists() else PHASE_ENSEMBLES.empty()


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.phase_ensembles") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--epoch", type=int, help="analysis epoch (default: the last)")
    ap.add_argument("--size", type=int, default=3, help="members per ensemble (default 3)")
    ap.add_argument("--draws", type=int, default=300, help="ensembles per phase (default 300)")
    ap.add_argument("--data-root", metavar="DIR", default=None, help="where the task's data is (overrides the "
                    "spec's data_root and $PHASEZOO_DATA; docs/datasets.md)")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)

    def body() -> int:
        table = zoo_phase_ensembles(args.zoo, args.epoch, args.size, args.draws, data_root=args.data_root)
        with pl.Config(tbl_rows=20, tbl_cols=12, float_precision=3, tbl_formatting="ASCII_MARKDOWN",
                       tbl_hide_column_data_types=True, tbl_hide_dataframe_shape=True):
            print(compare(table))
        print(f"wrote {Path(args.zoo) / PHASE_ENSEMBLES_FILE} ({table.height} ensembles)")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
