"""`phasezoo <command> [options]`: every command of the project under one name.

The table below is static on purpose: `phasezoo --help` lists the commands without importing them (most
import torch, seconds of start-up); a command's module is imported only when that command runs, and its
`main(argv, prog=...)` parses the rest of the line. Each module stays runnable as `python -m <module>`.
"""
from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Command:
    name: str
    module: str  # a module with `main(argv: Sequence[str] | None, prog: str) -> int`
    summary: str  # one line for `phasezoo --help`


# In the order a zoo is made and studied.
COMMANDS: tuple[Command, ...] = (
    Command("generate", "data.training.generate", "train a zoo from a spec (TOML); resumable"),
    Command("import", "data.importers.ptmz", "import a zoo in the Phase-Transition Model Zoo's published layout"),
    Command("import-manifest", "data.importers.manifest",
            "import a folder of your own checkpoints as a zoo, from a manifest table and a zoo description"),
    Command("import-smallcnn", "data.importers.smallcnn", "import the Small CNN Zoo (weights.npy, layout.csv, metrics.csv.gz)"),
    Command("run", "analysis.runner.run", "compute metrics over a zoo's models, seed pairs and cells; resumable"),
    Command("recompute", "analysis.runner.recompute",
            "recompute only the changed outputs of a metric; carry its other outputs over"),
    Command("mc-recompute", "analysis.runner.mc_recompute",
            "rewrite stored mode-connectivity readings from their stored profiles"),
    Command("phases", "analysis.taxonomy.phases", "label a zoo's (or a cell table's) cells with their phase"),
    Command("advise", "analysis.taxonomy.advice", "what to change: the nearest IV-B cells to a cell, the knob change"),
    Command("classifier", "analysis.taxonomy.classifier", "validate the single-model phase classifier on a zoo"),
    Command("embed", "analysis.studies.embed", "PCA and UMAP of a zoo's weights at every stored epoch"),
    Command("ensembles", "analysis.studies.phase_ensembles", "phase-consistent against phase-crossing ensembles"),
    Command("findings", "analysis.studies.findings", "re-test the published downstream findings on a zoo"),
    Command("coverage", "analysis.studies.coverage", "compare zoos' phase coverage: IV-A's region, the accuracy order"),
    Command("export", "analysis.studies.export",
            "a zoo as a weight-space-learning dataset: flat weights, layout, metrics, phases, split by cell"),
    Command("benchmark", "analysis.studies.weightspace", "weight-space learning: accuracy and phase from the weights alone"),
    Command("downstream", "phasezoo.downstream",
            "the downstream metrics at the last analysis epoch, then ensembles and findings"),
    Command("verdict", "analysis.upload.verdict", "a checkpoint's phase, with the evidence and its place on the map"),
    Command("dashboard", "phasezoo.dashboard", "serve the dashboard (Streamlit)"),
    Command("reference", "phasezoo.reference", "the CLI reference and metric table (docs/cli.md)"),
)
BY_NAME = {c.name: c for c in COMMANDS}


def usage() -> str:
    width = max(len(c.name) for c in COMMANDS)
    lines = [f"  {c.name:<{width}}  {c.summary}" for c in COMMANDS]
    return ("usage: phasezoo <command> [options]\n\n"
            "PhaseZoo: model zoos over a load × temperature grid, their metrics and phases.\n\n"
            "commands:\n" + "\n".join(lines) + "\n\n"
            "`phasezoo <command> --help` gives a command's options.\n")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] in ("-h", "--help"):
        print(usage(), end="", file=sys.stdout if args else sys.stderr)
        return 0 if args else 2
    command = BY_NAME.get(args[0])
    if command is None:  # the shape of argparse's own usage errors: status 2
        print(f"phasezoo: error: unknown command {args[0]!r}; commands: {', '.join(BY_NAME)}", file=sys.stderr)
        return 2
    return importlib.import_module(command.module).main(args[1:], prog=f"phasezoo {command.name}")
