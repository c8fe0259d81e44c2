"""The on-disk report cache: <cache>/reports/<key>.json, one Report's JSON per file (Report.to_json).

A report depends on the file (its SHA-256), the zoos' state, the options and the other uploads it may pair
with; all of them are in the key. An entry that cannot be read back as a Report (absent, damaged, written by
another version) is recomputed and rewritten, and a cache that cannot be written only costs a recomputation.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from pathlib import Path

from analysis.upload.report import Report
from analysis.upload.zoo_side import zoo_state
from data.checkpoint.load import Checkpoint
from data.tasks.builtin import cache_dir
from data.zoo.store import Zoo, atomic_write

# bump when the analysis or the report's form changes: cached reports are recomputed (3: typed; 4: threshold
# checks, knob estimates, the classifier's validation; 5: calibration, the weights-only verdict, what to change)
VERSION = 5


def key(ck: Checkpoint, zoos: Sequence[Zoo], given: Mapping, epoch: int | None, companions: set[str]) -> str:
    """32 hex digits of the SHA-256 of everything a report depends on (`companions`: the other uploads' SHA-256s)."""
    blob = json.dumps({"v": VERSION, "sha": ck.sha256, "zoos": [zoo_state(z) for z in zoos],
                       "with": sorted(companions),
                       "given": {k: str(v) for k, v in sorted(given.items())}, "epoch": epoch}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def _path(key: str) -> Path:
    return cache_dir() / "reports" / f"{key}.json"


def read(key: str) -> Report | None:
    try:
        return Report.from_json(_path(key).read_text())
    except (OSError, ValueError, TypeError, KeyError, AttributeError):  # absent or another shape: recompute
        return None


def write(key: str, report: Report) -> None:
    try:
        atomic_write(_path(key), lambda tmp: tmp.write_text(report.to_json()), durable=False)
    except OSError:
        pass  # a read-only cache only costs a recomputation
