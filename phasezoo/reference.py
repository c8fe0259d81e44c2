"""The command-line reference, docs/cli.md, rendered from the code: every command's `--help` and the metric
table from the registry's own declarations, so neither is a hand copy that drifts.

`phasezoo reference` prints it; `--write` rewrites docs/cli.md; `--check` exits 1 when docs/cli.md differs
(tests/test_cli.py runs the same comparison).
"""
from __future__ import annotations

import argparse
import contextlib
import importlib
import io
import os
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path

from phasezoo.cli import COMMANDS, Command

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
REGENERATE = "phasezoo reference --write"
HELP_COLUMNS = "100"  # argparse wraps help to $COLUMNS − 2: fixed, so the text is the same on every terminal


@contextlib.contextmanager
def _columns(columns: str) -> Iterator[None]:
    old = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = columns
    try:
        yield
    finally:
        if old is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = old


def command_help(command: Command) -> str:
    """`phasezoo <command> --help`, as text (the module's parser prints it and exits)."""
    out = io.StringIO()
    with _columns(HELP_COLUMNS), contextlib.redirect_stdout(out), contextlib.suppress(SystemExit):
        importlib.import_module(command.module).main(["--help"], prog=f"phasezoo {command.name}")
    return out.getvalue().rstrip() + "\n"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _first_paragraph(doc: str) -> str:
    return _cell(doc.split("\n\n")[0])


def metric_tables() -> str:
    """Two Markdown tables from `analysis.metrics.catalog.list_metrics()`: the metrics, then their outputs."""
    from analysis.metrics.catalog import list_metrics
    from data.tasks.builtin import TASK_KINDS

    metrics = list_metrics()
    rows = ["| metric | scope | data | task kinds | what it computes |", "|---|---|---|---|---|"]
    for m in metrics:
        kinds = "all" if m.kinds == frozenset(TASK_KINDS) else ", ".join(k for k in TASK_KINDS if k in m.kinds)
        rows.append(f"| `{m.name}` | {m.scope} | {'needs data' if m.needs_data else 'data-free'} | {kinds} | "
                    f"{_first_paragraph(m.doc)} |")
    outs = ["| output | metric | a larger value means | unit | log scale | taxonomy role | cell value |",
            "|---|---|---|---|---|---|---|"]
    for m in metrics:
        for o in m.outputs:
            cell = f"{o.aggregate.prefix()}seed mean".strip()
            outs.append(f"| `{o.name}` | `{m.name}` | {_cell(o.sign)} | {_cell(o.unit) or '—'} | "
                        f"{'yes' if o.log_scale else 'no'} | {_cell(o.role) or '—'} | {cell} |")
    return "\n".join(rows) + "\n\n" + "\n".join(outs) + "\n"


def render() -> str:
    """docs/cli.md's text."""
    parts = ["# The `phasezoo` command\n",
             f"Generated from the code by `{REGENERATE}`; do not edit by hand (tests/test_cli.py fails when "
             "this file and the code differ). Every command is also `python -m <module>`.\n",
             "| command | what it does | module |", "|---|---|---|"]
    parts += [f"| [`{c.name}`](#phasezoo-{c.name}) | {c.summary} | `{c.module}` |" for c in COMMANDS]
    for c in COMMANDS:
        parts += ["", f"## phasezoo {c.name}\n", "```text", command_help(c).rstrip(), "```"]
    parts += ["", "## Metrics\n",
              "The registered metrics (`phasezoo run --list`), from their declarations in analysis/metrics/. "
              "\"cell value\": how a grid cell combines its seeds' values (ln seed mean: the log of the mean "
              "taken on the seeds' own scale).\n", metric_tables()]
    return "\n".join(parts)


def main(argv: Sequence[str] | None = None, prog: str = "python -m phasezoo.reference") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    mode = ap.add_mutually_exclusive_group()
    mode.add_argument("--write", action="store_true", help=f"rewrite {DOC.parent.name}/{DOC.name}")
    mode.add_argument("--check", action="store_true", help=f"exit 1 if {DOC.parent.name}/{DOC.name} differs")
    args = ap.parse_args(argv)
    text = render()
    if args.write:
        DOC.write_text(text)
        print(f"wrote {DOC}", file=sys.stderr)
    elif args.check:
        if not DOC.exists() or DOC.read_text() != text:
            print(f"{DOC} differs from the code: run `{REGENERATE}`", file=sys.stderr)
            return 1
    else:
        sys.stdout.write(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
