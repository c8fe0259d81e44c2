"""One uploaded file's failure is that file's alone: whatever goes wrong while analysing it — a hostile
file, a bug, an exception raised in a worker process, a worker that died — it gets its own refusal with a
one-line reason, the traceback goes to the log, and every other file of the upload is analysed as usual.

Only the caller's own interruptions pass through: what its progress callback raises (a closed browser
tab, Streamlit's stop and rerun), and BaseExceptions of this process (KeyboardInterrupt, SystemExit).
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import BrokenExecutor
from dataclasses import dataclass

from analysis.taxonomy.classifier import ClassifierError
from data.checkpoint.load import CheckpointError
from data.checkpoint.load import base_name as display_name  # noqa: F401  (re-exported: the verdict's name for it)
from data.params import SpecError
from data.zoo.store import ZooError

log = logging.getLogger("phasezoo.verdict")
# Errors whose message is written for the user (one line, names the problem); any other exception is a bug or
# a hostile input's doing, and its text is for the log only.
USER_ERRORS = (CheckpointError, ZooError, SpecError, ClassifierError)


@dataclass(frozen=True)
class Refused:
    """A file that could not be analysed, and why (one line, starting with the file name)."""

    file: str
    error: str


def _one_line(text: object, n: int = 240) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def refusal(name: str, stage: str | None, e: BaseException) -> Refused:
    """The refusal of file `name` for exception `e`, raised while doing `stage`; the traceback is logged."""
    where = f" (at: {stage})" if stage else ""
    if isinstance(e, USER_ERRORS):
        log.info("%s refused%s: %s", name, where, e)
        text = _one_line(e)
        return Refused(name, text if text.startswith(f"{name}:") else f"{name}: {text}")
    log.error("%s: analysis failed%s", name, where, exc_info=e)
    if isinstance(e, BrokenExecutor):
        return Refused(name, f"{name}: a worker process stopped{where}; logged, the other files are not affected")
    return Refused(name, f"{name}: the analysis failed{where}: an internal error, logged; the other files are "
                         "not affected")


class Caller:
    """The caller's progress callback, remembering what it raised: that is the caller stopping, never a
    file's fault, so it must go up unchanged rather than become a refusal. `stage` is the last step reported."""

    def __init__(self, progress: Callable[[str, float], None]):
        self._progress = progress
        self.raised: BaseException | None = None
        self.stage: str | None = None

    def __call__(self, what: str, frac: float) -> None:
        try:
            self._progress(what, frac)
        except BaseException as e:
            self.raised = e
            raise


def in_worker(fn, *args):
    """`fn(*args)` in a worker process. A BaseException there (sys.exit in a metric, a stray
    KeyboardInterrupt) would be re-raised in the caller's process by concurrent.futures and stop it: it
    becomes an ordinary error of this job."""
    try:
        return fn(*args)
    except Exception:
        raise
    except BaseException as e:
        raise RuntimeError(f"{type(e).__name__} raised in a worker process") from None
