"""A zoo's downstream studies at its last analysis epoch, each step resumable or cheap to rerun.

The steps, in order:
1. `phasezoo run ZOO --metrics <DOWNSTREAM_METRICS> --epochs last` (resumable),
2. `phasezoo ensembles ZOO` (phase-consistent against phase-crossing ensembles),
3. `phasezoo findings ZOO` (the published findings re-tested).

Classification and sequence zoos only: a regression zoo has no class probabilities to ensemble. Stops at the
first step that does not succeed and returns its status (1: some metric rows are errors; 2: bad input).
"""
from __future__ import annotations

import argparse
from collections.abc import Sequence

from analysis.runner import run
from analysis.studies import findings, phase_ensembles

DOWNSTREAM_METRICS = "ensemble,average_*,transfer,prune"


def main(argv: Sequence[str] | None = None, prog: str = "python -m phasezoo.downstream") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("zoo", help="zoo directory")
    ap.add_argument("--workers", type=int, default=None, help="metric worker processes (default: all cores)")
    ap.add_argument("--quiet", action="store_true", help="no progress bar or progress messages: errors only")
    args = ap.parse_args(argv)
    run_args = [args.zoo, "--metrics", DOWNSTREAM_METRICS, "--epochs", "last"]
    if args.workers is not None:
        run_args += ["--workers", str(args.workers)]
    if args.quiet:
        run_args.append("--quiet")
    steps = ((run.main, run_args, "run"), (phase_ensembles.main, [args.zoo], "ensembles"),
             (findings.main, [args.zoo], "findings"))
    for step, step_argv, name in steps:
        if status := step(step_argv, prog=f"{prog} ({name})"):
            return status
    return 0
