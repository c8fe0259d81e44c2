"""How every command of the project ends: one line on stderr and a shell exit status.

A command's `main(argv=None, prog=...)` parses its arguments, then hands the work to `run_cli`, which turns
the project's user errors (a bad spec, zoo, metric name, checkpoint, path, a full disk, a dead worker) into
one line `error: ...` and exit status 2, and a SIGINT/SIGTERM raised inside `stop_on_signals()` into the
"rerun the same command to resume" line with the shell's status (128 + signal). Anything else is a bug and
keeps its traceback. This module is in the lowest layer so that every layer's commands can share it.
"""
from __future__ import annotations

import sys
from collections.abc import Callable

import polars as pl

from data.training.workers import ExecutorError, Interrupted

# ValueError covers the project's own input errors, which all subclass it: SpecError, ZooError (WriteError is
# also an OSError), SchemaError, PathError, CheckpointError, MetricError, ClassifierError and the importer's
# ImportError_. OSError: missing or unreadable files, a full disk. PolarsError: a corrupt or foreign table.
# ExecutorError: a worker process died or the cluster is unreachable (its message says what to do).
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, OSError, pl.exceptions.PolarsError, ExecutorError)


def one_line(e: BaseException) -> str:
    """The error's message on one line (a wrapped message's newlines would split the `error:` line)."""
    return " ".join(line.strip() for line in str(e).splitlines() if line.strip()) or type(e).__name__


def run_cli(body: Callable[[], int], *, interrupted_hint: str = "") -> int:
    """Run a command's work and return its exit status: `body()`'s own, 2 after a user error (printed as
    `error: <message>`), or 128 + signal after `Interrupted`, printed as
    `interrupted by SIGTERM: <interrupted_hint> — rerun the same command to resume`, where the hint says what
    was kept (e.g. "finished groups are kept in zoo/")."""
    try:
        return body()
    except Interrupted as e:  # the workers are stopped and every finished unit of work is flushed
        hint = f": {interrupted_hint}" if interrupted_hint else ""
        print(f"interrupted by {e.signame}{hint} — rerun the same command to resume", file=sys.stderr)
        return e.exit_status
    except USER_ERRORS as e:
        print(f"error: {one_line(e)}", file=sys.stderr)
        return 2
