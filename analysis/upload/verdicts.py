"""From the upload's metric rows to its two verdicts and the evidence: the taxonomy's rules with the zoo's
thresholds (analysis.taxonomy.phases), the learned single-model classifier (analysis.taxonomy.classifier),
and each taxonomy quantity next to the zoo's distribution of it over cells.

A measurement of its own that failed or is non-finite never becomes a made-up value: the rules say what they
lack, and the classifier withholds its answer (its features would otherwise be imputed with the zoo's medians).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import polars as pl

from analysis.taxonomy.calibration import Check, check
from analysis.taxonomy.cell_report import evidence as threshold_evidence
from analysis.taxonomy.cells import CELL_QUANTITIES, QUANTITIES, unit_values
from analysis.taxonomy.classifier import FEATURES, Validation, model_features, predict
from analysis.taxonomy.phases import NEEDED, UNCLASSIFIED, Thresholds, classify, label
from analysis.upload import zoo_side
from analysis.upload.measure import UPLOAD, rows_frame
from analysis.upload.report import ClassifierVerdict, Evidence, KnobValue, MetricRow, PairValue, RuleVerdict
from data.zoo.spec import ZooSpec
from data.zoo.store import Zoo

PAIR_QUANTITIES = ("mc", "mc_linear", "cka")
RULE_EVIDENCE = ("train_loss", "mc", "cka", "hessian_trace")  # the quantities shown against the zoo's cells


def _quantities(rows: pl.DataFrame, quantities: Mapping) -> dict[str, float]:
    """Mean value per quantity (over pairs for pair quantities) from metric rows."""
    u = unit_values(rows, dict(quantities))
    return dict(u.group_by("quantity").agg(pl.col("value").mean()).rows())


@dataclass(frozen=True)
class Measured:
    """Its metric rows, sorted into what the verdicts read."""

    own: pl.DataFrame  # its own rows (other_id null), failed ones included
    pairs: pl.DataFrame  # its pair rows' scalar values (coord null), failed ones dropped
    quantities: Mapping[str, float]  # taxonomy quantity -> its value (mean over its pairs for pair quantities)
    errors: tuple[str, ...]  # every failed row's message, then every failed job's
    failed: tuple[str, ...]  # its own metrics that failed (raised, or a non-finite value), sorted

    @classmethod
    def of(cls, rows: Sequence[dict], job_errors: Sequence[str], job_failed: Sequence[str]) -> Measured:
        frame = rows_frame(rows)
        alone, paired = pl.col("other_id").is_null(), pl.col("other_id").is_not_null()
        bad = pl.col("error").is_not_null()
        own = frame.filter(alone)
        quantities = _quantities(own, CELL_QUANTITIES)
        quantities.update(_quantities(frame.filter(paired), {q: CELL_QUANTITIES[q] for q in PAIR_QUANTITIES}))
        return cls(own, frame.filter(paired & pl.col("coord").is_null() & ~bad), quantities,
                   tuple(frame.filter(bad)["error"].to_list() + list(job_errors)),
                   tuple(sorted({*job_failed, *own.filter(bad)["metric"]})))

    def metric_rows(self) -> tuple[MetricRow, ...]:
        fields = ("metric", "split", "layer", "coord", "value", "stderr")
        return tuple(MetricRow(**{k: r[k] for k in fields})
                     for r in self.own.filter(pl.col("error").is_null()).iter_rows(named=True))

    def pair_values(self) -> tuple[PairValue, ...]:
        # sorted: the jobs finish in any order, a report must not depend on it
        rows = self.pairs.sort("other_id", "metric").iter_rows(named=True)
        return tuple(PairValue(r["other_id"], r["metric"], r["value"]) for r in rows)


def rule_verdict(m: Measured, spec: ZooSpec, th: Thresholds, pairs_with: str | None, n_pairs: int) -> RuleVerdict:
    """The taxonomy's rules on its quantities, as one cell of its own, with each threshold's check."""
    q = m.quantities
    ruled = threshold_evidence(q, th, spec.task)
    reason = None
    if ruled.phase == UNCLASSIFIED:
        lacking = [k for k in NEEDED if q.get(k) is None]
        reason = f"lacks {', '.join(lacking)}" if lacking else "a threshold is undefined for this zoo"
        if m.failed:
            reason += f" (its {', '.join(m.failed)} could not be measured: non-finite or failed)"
    return RuleVerdict(ruled.phase, reason, q.get("train_loss"), q.get("mc"), q.get("cka"), q.get("mc_linear"),
                       th.train_loss, th.mc, th.cka, ruled.checks, pairs_with, n_pairs, dict(th.provenance))


def with_candidate_phases(cell: Mapping[str, KnobValue], spec: ZooSpec, cells: pl.DataFrame, th: Thresholds,
                          train_loss: float | None) -> dict[str, KnobValue]:
    """`cell` with each estimated knob's candidates given their phases: the candidate cell's own (its seeds,
    thresholds `th`), and the rules on the upload's own train loss with that cell's seed-pair mc and CKA — what
    its rule verdict would be, were it paired there and as connected and similar as that cell's seeds are."""
    labelled = classify(cells, th)
    axes = (spec.load.knob, spec.temperature.knob)
    out = dict(cell)
    for k, v in cell.items():
        if v.estimate is None:
            continue
        candidates = []
        for c in v.estimate.candidates:
            at = {**{a: cell[a].grid for a in axes}, k: c.value}
            row = labelled.filter(pl.col(axes[0]) == at[axes[0]], pl.col(axes[1]) == at[axes[1]])
            r = row.row(0, named=True) if row.height else None
            there = label(train_loss, r["mc"], r["cka"], th) if r is not None else None
            candidates.append(replace(c, zoo_phase=r["phase"] if r is not None else None, phase=there))
        out[k] = replace(v, estimate=replace(v.estimate, candidates=tuple(candidates)))
    return out


def classifier_verdict(m: Measured, zoo: Zoo, n_params: int) -> tuple[ClassifierVerdict, str | None]:
    """The classifier's answer on its own features (those the zoo's models have too), and a note for the
    report where it is withheld or extrapolates. Its validation on the zoo and across zoos come with it, and its
    probability's calibration check (`calibration_check`; the summary and the page say when it is poor)."""
    state = zoo_side.zoo_state(zoo)
    feats = model_features(m.own, {UPLOAD: n_params})
    used = _usable(state, {f for f in FEATURES if feats[f][0] is not None})
    answer = predict(zoo_side.classifier(state, used), {f: feats[f][0] for f in used}, m.failed)
    within = zoo_side.validation(state, used) if used else None
    across = zoo_side.across_zoos(state, used) if used and answer["phase"] is not None else None
    c = ClassifierVerdict.of(answer, within, across, calibration_check(answer, within, across))
    if c.withheld:
        return c, f"no classifier verdict: {c.withheld}"
    if c.extrapolating:
        outside = ", ".join(c.outside)
        return c, (f"unlike every zoo model in the classifier's features (distance {c.nearest_distance:.2f} to the "
                   f"nearest, where 99 % of zoo models have a neighbour within {c.typical_distance:.2f}"
                   + (f"; outside the zoo's range: {outside}" if outside else "")
                   + "): its probabilities extrapolate and overstate their confidence")
    return c, None


def _usable(state: tuple, measured: set[str]) -> tuple[str, ...]:
    """The classifier's features that the upload has (`measured`) and the zoo's models have too."""
    table = zoo_side.training(state)
    return tuple(f for f in FEATURES if f in measured and table[f].null_count() < table.height)


def prepare_classifier(zoo: Zoo) -> None:
    """Fit the classifier an upload with every feature gets (the usual case), and read its validations, ahead
    of `classifier_verdict`: a caller does this while its workers measure the upload (cached per zoo state;
    an upload that lacks a feature gets its own fit then)."""
    state = zoo_side.zoo_state(zoo)
    try:  # a warm-up only: whatever fails here fails again, and is reported, where the verdict needs it
        used = _usable(state, set(FEATURES))
        if used:
            zoo_side.classifier(state, used)
            zoo_side.validation(state, used)
            zoo_side.across_zoos(state, used)
    except Exception:
        pass


def calibration_check(answer: Mapping, within: Validation | None, across: Validation | None) -> Check | None:
    """The verdict's top-class probability against the held-out reliability of each scheme (leave-one-cell-out,
    leave-one-zoo-out). Leave-one-cell-out decides the flag: like the verdict, its predictions come from a
    classifier trained on this zoo, for a configuration it never saw. Leave-one-zoo-out decides it too where
    the verdict extrapolates (the upload is unlike every zoo model): its predictions are of models unlike all
    the classifier learned from. None without an answer or without probabilities."""
    if answer["phase"] is None:
        return None
    cals = [v.calibration for v in (within, across) if v is not None and v.calibration is not None]
    if not cals:
        return None
    deciding = (within.scheme,) if within is not None else ()
    deciding += (across.scheme,) if across is not None and answer["extrapolating"] else ()
    return check(answer["probabilities"][answer["phase"]], cals, deciding)


def evidence(cells: pl.DataFrame, th: Thresholds, mine: Mapping[str, float]) -> tuple[Evidence, ...]:
    """Each taxonomy quantity: the upload's value, its threshold, and where it falls among the zoo's cells
    (on the seeds' scale: a Hessian cell value is ln of its seed mean)."""
    thresholds = {"train_loss": th.train_loss, "mc": -th.mc, "cka": th.cka, "hessian_trace": None}
    out = []
    for q in RULE_EVIDENCE:
        zoo_vals = QUANTITIES[q].aggregate.to_seed_scale(cells[q].drop_nulls().drop_nans())
        v = mine.get(q)
        qs = zoo_vals.quantile if len(zoo_vals) else (lambda *_: None)
        out.append(Evidence(q, v, thresholds[q], len(zoo_vals), zoo_vals.min(), qs(0.25), qs(0.5), qs(0.75),
                            zoo_vals.max(),
                            float((zoo_vals < v).mean()) if v is not None and len(zoo_vals) else None))
    return tuple(out)


def advice_words(zoo: Zoo, epoch: int, measured: Measured, cell: Mapping[str, KnobValue], phase: str | None) -> str | None:
    """What to change, from the upload's cell to the nearest IV-B cells of the zoo's map at `epoch`
    (analysis.taxonomy.advice), with its own phase and its own test score; None without a phase or a cell."""
    from analysis.taxonomy.advice import advise_cell, score_kind

    if phase in (None, UNCLASSIFIED) or not cell:
        return None
    labelled = zoo_side.scored_cells(zoo_side.zoo_state(zoo), epoch)
    kind = score_kind(labelled)
    own = None
    if kind is not None:
        metric, split, _ = kind.candidates[0]
        rows = measured.own.filter((pl.col("metric") == metric) & (pl.col("split") == split)
                                   & pl.col("layer").is_null() & pl.col("error").is_null())["value"]
        own = float(rows[0]) if len(rows) else None
    return advise_cell(labelled, zoo.spec, {k: v.grid for k, v in cell.items()}, phase=phase, score=own).words()
