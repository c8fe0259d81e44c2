"""Whom an upload is paired with for CKA and mode connectivity: the other uploads of its configuration if
there are any (they then form a cell of their own), else the seeds of its cell in the zoo — never itself,
its zoo twin, or a near-copy of it or of another partner (analysis.upload.placement)."""
from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import polars as pl

from analysis.upload.placement import distinct
from analysis.upload.recognise import ZooMatch
from analysis.upload.report import KnobValue
from data.checkpoint.load import Checkpoint
from data.zoo.store import Zoo

log = logging.getLogger("phasezoo.verdict")


@dataclass(frozen=True)
class Partners:
    others: tuple[tuple, ...]  # each ("upload", name, state dict) or ("zoo", model_id): measure.metric_task's form
    pairs_with: str | None  # "uploads", "zoo seeds", or None: no partner
    notes: tuple[str, ...]  # why it is paired as it is, for the report


def _same_config(other: Checkpoint, match: ZooMatch, recognised: Callable[[Checkpoint], Sequence[ZooMatch]]) -> bool:
    """Whether another upload is of this one's configuration; one that cannot even be recognised is not
    (its own analysis refuses it: this file's must not fail for it)."""
    try:
        theirs = next((m for m in recognised(other) if m.root == match.root), None)
    except Exception:
        log.warning("%s: not recognised as a companion upload", other.name, exc_info=True)
        return False
    return theirs is not None and theirs.ok and dict(theirs.arch_params) == dict(match.arch_params)


def partners(ck: Checkpoint, uploads: Sequence[Checkpoint], zoo: Zoo, epoch: int, match: ZooMatch,
             recognised: Callable[[Checkpoint], Sequence[ZooMatch]], cell: Mapping[str, KnobValue],
             identical: str | None) -> Partners:
    """Its partners among `uploads` (the other files of this upload; `recognised` gives their recognition)
    or the zoo's seeds of `cell` at `epoch`; `identical`: the zoo model it is a copy of, if any."""
    same = list({u.sha256: u for u in uploads if u.sha256 != ck.sha256 and _same_config(u, match, recognised)}
                .values())  # a file uploaded twice is not its own seed, nor is its half-precision copy
    kept = distinct(ck.state, same)
    copies = [u.name for u in same if not any(u is k for k in kept)]
    notes = [f"not paired with {', '.join(copies)}: the same model as this one or as another upload, to "
             "within their precision"] if copies else []
    if kept:
        notes.append(f"paired with the {len(kept)} other upload(s) of this configuration: "
                     + ", ".join(u.name for u in kept))
        return Partners(tuple(("upload", u.name, u.state) for u in kept), "uploads", tuple(notes))
    if not all(v.value == v.grid for v in cell.values() if v.source == "weights"):
        notes.append("between grid values: no zoo model has its shapes, so no mode connectivity or CKA "
                     "(the rule verdict needs them; the classifier does not)")
        return Partners((), None, tuple(notes))
    seeds = zoo.catalog.filter(pl.col("epoch") == epoch)
    for k, v in cell.items():
        seeds = seeds.filter(pl.col(k) == v.grid)
    others = tuple(("zoo", m) for m in sorted(seeds["model_id"].unique()) if m != identical)
    if identical:
        notes.append(f"identical to zoo model {identical}: paired with the other seeds of its cell only")
    return Partners(others, "zoo seeds" if others else None, tuple(notes))
