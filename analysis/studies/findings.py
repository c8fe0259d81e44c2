"""The published downstream findings (science.md §4, Schürholt et al. 2025), re-tested on a zoo's own
downstream metrics, whether they agree or not.

    phasezoo findings data/zoos/mnist1d-mlp [--epoch 300]

1. Averaging over epochs helps most in phases I/II (hot, under-fitted): per-phase mean Δ accuracy.
2. Averaging over seeds hurts least in IV-B: per-phase mean Δ accuracy after weight matching.
3. The best source model is not the best transfer model: the best cell by test accuracy against the best
   by fine-tuned target accuracy, and the rank correlation of the two over cells.
4. Hotter models prune better: rank correlation of temperature with the accuracy retained at 90 %
   sparsity, over all cells and over the fitted ones (phases III/IV), and per phase.
Each finding says `agrees`, `disagrees`, or `cannot tell` (a metric or phase missing), with its numbers.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import polars as pl

from analysis.taxonomy.cells import metric_cells
from analysis.taxonomy.phases import PHASES, classify, default_thresholds, zoo_cells
from data.cli import run_cli


@dataclass(frozen=True)
class Finding:
    claim: str
    verdict: str  # "agrees", "disagrees" or "cannot tell"
    evidence: str  # the numbers behind the verdict, in words
    by_phase: dict  # phase -> the measure's mean over that phase's cells


def _spearman(a: pl.Series, b: pl.Series) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a.to_numpy(), b.to_numpy()).statistic)


def _per_phase(values: pl.DataFrame, labels: pl.DataFrame, axes: list[str]) -> dict[str, float]:
    j = values.join(labels, on=axes)
    return {p: v for p, v in j.group_by("phase").agg(pl.col("value").mean()).sort("phase").iter_rows()
            if p in PHASES}


def _fmt(d: dict, signed: bool = True) -> str:
    return ", ".join(f"{k} {v:+.3f}" if signed else f"{k} {v:.3f}" for k, v in d.items())


def _epochs(v: pl.DataFrame, ctx: dict) -> tuple[str, str, dict]:
    ph = _per_phase(v, ctx["labels"], ctx["axes"])
    hot = max((ph[p] for p in ("I", "II") if p in ph), default=None)
    cold = max((ph[p] for p in ph if p not in ("I", "II")), default=None)
    verdict = "cannot tell" if hot is None or cold is None else "agrees" if hot > cold else "disagrees"
    return verdict, f"mean Δ test accuracy of the average of the last checkpoints, by phase: {_fmt(ph)}", ph


def _seeds(v: pl.DataFrame, ctx: dict) -> tuple[str, str, dict]:
    ph = _per_phase(v, ctx["labels"], ctx["axes"])
    plain = _per_phase(ctx["cellwise"]("average_seeds_acc_delta", "test"), ctx["labels"], ctx["axes"])
    verdict = "cannot tell" if "IV-B" not in ph else "agrees" if max(ph, key=ph.get) == "IV-B" else "disagrees"
    return verdict, (f"mean Δ test accuracy of the aligned average vs the seeds, by phase: {_fmt(ph)} "
                     f"(plain average: {_fmt(plain)})"), ph


def _transfer(t: pl.DataFrame, ctx: dict) -> tuple[str, str, dict]:
    axes = ctx["axes"]
    src = ctx["cellwise"]("test_acc", "test").rename({"value": "source"})
    both = src.join(t.rename({"value": "target"}), on=axes)
    best_src = both.sort("source", descending=True).row(0, named=True)
    best_tgt = both.sort("target", descending=True).row(0, named=True)
    cell = lambda r: " · ".join(f"{k}={r[k]}" for k in axes)  # noqa: E731
    verdict = "agrees" if cell(best_src) != cell(best_tgt) else "disagrees"
    return verdict, (f"best source cell {cell(best_src)} (test acc {best_src['source']:.3f}, transfer "
                     f"{best_src['target']:.3f}); best transfer cell {cell(best_tgt)} (test acc "
                     f"{best_tgt['source']:.3f}, transfer {best_tgt['target']:.3f}); Spearman ρ(source, transfer "
                     f"accuracy) over {both.height} cells {_spearman(both['source'], both['target']):+.2f}"), \
        _per_phase(t, ctx["labels"], axes)


def _pruning(r: pl.DataFrame, ctx: dict) -> tuple[str, str, dict]:
    spec = ctx["spec"]
    sign = 1.0 if spec.temperature.increases else -1.0  # temperature rank from the knob's direction
    j = r.join(ctx["labels"], on=ctx["axes"]).with_columns(temp=sign * pl.col(spec.temperature.knob).cast(pl.Float64))
    rho_all = _spearman(j["temp"], j["value"])
    fitted = j.filter(pl.col("phase").is_in(["III", "IV-A", "IV-B"]))
    rho_fit = _spearman(fitted["temp"], fitted["value"]) if fitted.height > 2 else float("nan")
    ph = _per_phase(r, ctx["labels"], ctx["axes"])
    verdict = "agrees" if rho_all > 0.1 else "disagrees" if rho_all < -0.1 else "cannot tell"
    return verdict, (f"Spearman ρ(temperature, accuracy retained at 90 % sparsity) {rho_all:+.2f} over all "
                     f"{j.height} cells, {rho_fit:+.2f} over the {fitted.height} fitted ones (III/IV); by phase: "
                     f"{_fmt(ph, signed=False)}"), ph


# (claim, the per-cell metric it rests on and its split, the check)
CHECKS = [
    ("averaging over epochs helps most in phases I/II", "average_epochs_acc_delta", "test", _epochs),
    ("averaging over seeds (after weight matching) hurts least in IV-B", "average_aligned_acc_delta", "test",
     _seeds),
    ("the best source model is not the best transfer model", "transfer_finetune_test_acc", "test", _transfer),
    ("hotter models prune better", "prune_retained_90", None, _pruning),
]


def retest(root, epoch: int | None = None) -> list[Finding]:
    from data.zoo.store import read_metrics

    zoo, epoch, cells = zoo_cells(root, epoch)
    axes = [zoo.spec.load.knob, zoo.spec.temperature.knob]
    metrics = read_metrics(zoo.root)
    ctx = {"spec": zoo.spec, "axes": axes, "labels": classify(cells, default_thresholds(cells)).select(*axes, "phase"),
           "cellwise": lambda metric, split: metric_cells(metrics, zoo.catalog, zoo.spec, epoch, metric, split)}
    out = []
    for claim, metric, split, check in CHECKS:
        values = ctx["cellwise"](metric, split)
        if values.is_empty():
            out.append(Finding(claim, "cannot tell", f"no {metric} results (make downstream)", {}))
        else:
            out.append(Finding(claim, *check(values, ctx)))
    return out


def main(argv: Sequence[str] | None = None, prog: str = "python -m analysis.studies.findings") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo")
    ap.add_argument("--epoch", type=int, help="analysis epoch (default: the last)")
    args = ap.parse_args(argv)

    def body() -> int:
        for f in retest(args.zoo, args.epoch):
            print(f"- {f.claim}: {f.verdict.upper()}\n    {f.evidence}")
        return 0

    return run_cli(body)


if __name__ == "__main__":
    sys.exit(main())
