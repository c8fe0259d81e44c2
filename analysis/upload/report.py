"""What the upload pipeline learns about one checkpoint: typed, frozen results, JSON field by field.

Each section of a `Report` is the result of one step (analysis.upload.verdict runs them): the data-free
layer statistics, the recognition (analysis.upload.recognise.ZooMatch), its cell (`KnobValue` per grid knob),
its own metric rows and its pair values, the two verdicts (`RuleVerdict`, `ClassifierVerdict`), the
`Evidence` per taxonomy quantity and its `Placement` in weight space. A section a step never reached is
empty (None, or an empty tuple / mapping).

`to_dict()` gives the JSON form (the report download, `--json`, the on-disk cache) and `Report.from_dict`
rebuilds an equal Report from it; a dict of another shape raises (KeyError, TypeError or ValueError), which
the cache reads as "recompute".
"""
from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from analysis.taxonomy.calibration import Check
from analysis.taxonomy.cell_report import ThresholdCheck
from analysis.taxonomy.classifier import Validation
from analysis.taxonomy.phases import UNCLASSIFIED
from analysis.upload.recognise import ZooMatch

_PERCENTILE = re.compile(r"p(\d+)")


def plain(v):
    """The JSON form of a result: dataclasses as dicts (their own `to_dict` where they have one), tuples as
    lists, numpy scalars as Python numbers, paths as strings."""
    if hasattr(v, "to_dict"):
        return v.to_dict()
    if dataclasses.is_dataclass(v):
        return _fields(v)
    if isinstance(v, Mapping):
        return {k: plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, (np.floating, np.integer, np.bool_)):
        return v.item()
    return str(v) if isinstance(v, Path) else v


def _fields(obj) -> dict:
    return {f.name: plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}


@dataclass(frozen=True)
class LayerStats:
    """One weight matrix's data-free statistics (analysis.kernels.weights.LayerWeights, flattened)."""

    layer: str
    shape: tuple[int, ...]
    mean: float
    var: float
    spectral_norm: float  # σ₁
    stable_rank: float  # ‖W‖_F² / σ₁²
    alpha: float | None  # heavy-tail exponent of the eigenvalue tail (Clauset); None: too few eigenvalues
    alpha_ks: float | None  # its Kolmogorov–Smirnov distance
    percentiles: Mapping[int, float]  # percentile (1, 25, 50, 75, 99) -> weight value

    @classmethod
    def of(cls, lw) -> LayerStats:
        fit = lw.alpha
        return cls(lw.layer, tuple(lw.shape), lw.mean, lw.var, lw.spectral_norm, lw.stable_rank,
                   fit.alpha if fit else None, fit.ks_distance if fit else None, dict(lw.percentiles))

    def to_dict(self) -> dict:
        """Flat (one table row per layer): the percentiles as columns p01, p25, …"""
        d = _fields(self)
        del d["percentiles"]
        return d | {f"p{p:02d}": q for p, q in self.percentiles.items()}

    @classmethod
    def from_dict(cls, d: Mapping) -> LayerStats:
        pct = {int(m.group(1)): v for k, v in d.items() if (m := _PERCENTILE.fullmatch(k))}
        return cls(d["layer"], tuple(d["shape"]), d["mean"], d["var"], d["spectral_norm"], d["stable_rank"],
                   d["alpha"], d["alpha_ks"], pct)


@dataclass(frozen=True)
class Candidate:
    """One grid value an estimated knob could take: how the estimate scored it and what the rules would say
    of the upload in that cell."""

    value: object  # the knob's grid value
    votes: int  # of the estimate's k nearest zoo models, those with this value
    nearest: float | None  # distance to this value's nearest zoo model (standardised features); None: no model
    zoo_phase: str | None  # that cell's own phase (its seeds, the zoo's default thresholds)
    phase: str | None  # the rules on its own train loss and that cell's seed-pair mc and CKA (its would-be pairs)


@dataclass(frozen=True)
class KnobEstimate:
    """How an unknown knob was estimated, and every value it could have taken."""

    method: str  # in words
    k: int
    candidates: tuple[Candidate, ...]  # every grid value, most votes first, then nearest

    @property
    def confidence(self) -> float:
        """The chosen value's share of the k votes."""
        return self.candidates[0].votes / self.k if self.candidates and self.k else 0.0

    @classmethod
    def from_dict(cls, d: Mapping) -> KnobEstimate:
        return cls(d["method"], d["k"], tuple(Candidate(**c) for c in d["candidates"]))


@dataclass(frozen=True)
class KnobValue:
    """One grid knob of the upload's cell: its value, the grid value it is compared at, and where it came
    from ("weights", "given", "identical zoo model" or "estimated", then from which zoo models and how)."""

    value: object
    grid: object
    source: str
    estimated_from: tuple[str, ...] | None = None  # the nearest zoo models the estimate is their majority of
    estimate: KnobEstimate | None = None

    def to_dict(self) -> dict:
        d = {"value": plain(self.value), "grid": plain(self.grid), "source": self.source}
        d |= {"from": list(self.estimated_from)} if self.estimated_from is not None else {}
        return d | ({"estimate": plain(self.estimate)} if self.estimate is not None else {})

    @classmethod
    def from_dict(cls, d: Mapping) -> KnobValue:
        return cls(d["value"], d["grid"], d["source"], tuple(d["from"]) if "from" in d else None,
                   KnobEstimate.from_dict(d["estimate"]) if "estimate" in d else None)


@dataclass(frozen=True)
class MetricRow:
    """One of its own metric rows (metrics.parquet's columns for a model alone)."""

    metric: str
    split: str | None
    layer: str | None
    coord: float | None
    value: float
    stderr: float | None


@dataclass(frozen=True)
class PairValue:
    """A pair metric (CKA, mode connectivity) between the upload and `other` (a zoo model id or an upload)."""

    other: str
    metric: str
    value: float


@dataclass(frozen=True)
class RuleVerdict:
    """The taxonomy's rules (analysis.taxonomy.phases.classify) on its quantities, with the zoo's thresholds."""

    phase: str
    reason: str | None  # why the rules cannot decide (phase "unclassified"); None where they do
    train_loss: float | None  # nats (the task's loss unit)
    mc: float | None  # Bézier mode connectivity, points; mean over its pairs
    cka: float | None  # logits CKA on the test split; mean over its pairs
    mc_linear: float | None
    tau_loss: float | None  # τ_L
    eps_mc: float | None  # ε (the barrier threshold is −ε)
    tau_cka: float | None  # τ_C
    checks: tuple[ThresholdCheck, ...]  # train loss, mc, CKA against their thresholds: margin, phase across
    pairs_with: str | None  # "uploads", "zoo seeds", or None without pairs
    n_pairs: int
    provenance: Mapping[str, str]  # threshold -> where its value comes from

    @property
    def near(self) -> tuple[ThresholdCheck, ...]:
        """The thresholds it is near (analysis.taxonomy.phases.NEAR), each with the phase across it."""
        return tuple(c for c in self.checks if c.near)

    @property
    def near_boundary(self) -> bool:
        return bool(self.near)

    @classmethod
    def from_dict(cls, d: Mapping) -> RuleVerdict:
        return cls(**{**d, "checks": tuple(ThresholdCheck(**c) for c in d["checks"])})


@dataclass(frozen=True)
class FeatureRange:
    """A classifier feature outside the training models' range: its value and that range."""

    value: float
    min: float
    max: float


@dataclass(frozen=True)
class ClassifierVerdict:
    """The learned single-model classifier's answer (analysis.taxonomy.classifier.predict)."""

    phase: str | None  # None: withheld
    probabilities: Mapping[str, float]  # phase -> p; empty when withheld
    features: Mapping[str, float | None]  # feature -> its value (log10 for losses and Hessian quantities)
    n_train: int
    nearest_distance: float | None  # to the nearest training model, standardised feature space
    typical_distance: float  # the 99th percentile of training models' nearest-neighbour distances
    extrapolating: bool
    outside: Mapping[str, FeatureRange]
    withheld: str | None  # why there is no answer
    validation: Validation | None = None  # its held-out figures on the zoo (the features it uses)
    across: Validation | None = None  # leave-one-zoo-out: trained on the other built-in zoos, predicting this one
    calibration: Check | None = None  # its probability against each scheme's reliability, and the flag

    @property
    def poorly_calibrated(self) -> bool:
        """Its probability is poorly calibrated (analysis.taxonomy.calibration): `calibration.reason` says why."""
        return self.calibration is not None and self.calibration.poorly_calibrated

    @property
    def runner_up(self) -> tuple[str, float] | None:
        """The second most probable phase and its probability; None with fewer than two phases."""
        ranked = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        return ranked[1] if len(ranked) > 1 else None

    def words(self) -> str:
        """"IV-B 0.58, runner-up IV-A 0.31" (a plain probability, never a gain)."""
        if self.phase is None:
            return "none"
        up = self.runner_up
        return f"{self.phase} {self.probabilities[self.phase]:.2f}" + (f", runner-up {up[0]} {up[1]:.2f}" if up else "")

    def to_dict(self) -> dict:
        up = self.runner_up
        return _fields(self) | {"runner_up": {"phase": up[0], "probability": up[1]} if up else None}

    @classmethod
    def of(cls, out: Mapping, validation: Validation | None = None, across: Validation | None = None,
           calibration: Check | None = None) -> ClassifierVerdict:
        """From analysis.taxonomy.classifier.predict's answer, with the classifier's validation figures (on the
        zoo, and across zoos) and its probability's calibration check."""
        return cls(**{**out, "outside": {f: FeatureRange(**r) for f, r in out["outside"].items()}},
                   validation=validation, across=across, calibration=calibration)

    @classmethod
    def from_dict(cls, d: Mapping) -> ClassifierVerdict:
        out = {k: v for k, v in d.items() if k not in ("runner_up", "validation", "across", "calibration")}
        v, a, c = d.get("validation"), d.get("across"), d.get("calibration")
        return cls.of(out, Validation.from_dict(v) if v is not None else None,
                      Validation.from_dict(a) if a is not None else None, Check.from_dict(c) if c is not None else None)


@dataclass(frozen=True)
class WeightsOnlyVerdict:
    """The phase from the weights alone (analysis.studies.weightspace_model): gradient-boosted trees on weight
    statistics, for a recognised model whose zoo's task data is not here (nothing can be measured). Read it with
    its held-out balanced accuracy: the zoo's cells it never saw, 5-fold."""

    phase: str
    probabilities: Mapping[str, float]  # phase -> p
    baseline: str  # its features: "StatNN" (per-tensor statistics) or "data-free" (the stored weight metrics)
    epoch: int  # the zoo's analysis epoch it was trained at
    n_train: int  # labelled zoo models it was fitted on
    n_cells: int
    balanced_accuracy: float  # held out by cell (5-fold over the zoo's cells)
    ci_low: float  # its 95 % bootstrap interval over cells
    ci_high: float
    chance: float | None  # a constant guess's balanced accuracy (1 / phases)

    def words(self) -> str:
        """"II 0.71, runner-up III 0.20"."""
        ranked = sorted(self.probabilities.items(), key=lambda kv: -kv[1])
        up = f", runner-up {ranked[1][0]} {ranked[1][1]:.2f}" if len(ranked) > 1 else ""
        return f"{self.phase} {self.probabilities[self.phase]:.2f}{up}"

    def held_out(self) -> str:
        """"held-out balanced accuracy 0.50 [0.38, 0.69] (…)": how far to trust it."""
        return (f"held-out balanced accuracy {self.balanced_accuracy:.2f} [{self.ci_low:.2f}, {self.ci_high:.2f}] "
                f"(5-fold over the zoo's {self.n_cells} cells, {self.baseline} features at epoch {self.epoch}"
                + (f"; chance {self.chance:.2f})" if self.chance is not None else ")"))

    @classmethod
    def from_dict(cls, d: Mapping) -> WeightsOnlyVerdict:
        return cls(**d)


@dataclass(frozen=True)
class Evidence:
    """One taxonomy quantity: the upload's value, its threshold and the zoo's cells' distribution of it (on
    the seeds' scale: analysis.metrics.outputs.Aggregate.to_seed_scale)."""

    quantity: str
    value: float | None
    threshold: float | None
    zoo_cells: int
    zoo_min: float | None
    zoo_q25: float | None
    zoo_median: float | None
    zoo_q75: float | None
    zoo_max: float | None
    zoo_fraction_below: float | None  # of the zoo's cells, those below its value


@dataclass(frozen=True)
class Neighbour:
    """A zoo model near it in weight space, with its knobs and its cell's phase."""

    model_id: str
    distance: float  # ‖Δw‖₂ over the padded weight vector
    phase: str | None
    knobs: Mapping[str, object]  # grid knob -> value
    seed: int

    def to_dict(self) -> dict:
        return {"model_id": self.model_id, "distance": self.distance, "phase": self.phase,
                **{k: plain(v) for k, v in self.knobs.items()}, "seed": self.seed}

    @classmethod
    def from_dict(cls, d: Mapping) -> Neighbour:
        own = ("model_id", "distance", "phase", "seed")
        return cls(d["model_id"], d["distance"], d["phase"], {k: v for k, v in d.items() if k not in own}, d["seed"])


@dataclass(frozen=True)
class Point:
    """A position on a stored 2-D map of the zoo's weights."""

    x: float
    y: float
    approximate: bool = False  # True: its nearest zoo models' inverse-distance mean, not a projection

    def to_dict(self) -> dict:
        return {"x": self.x, "y": self.y} | ({"approximate": True} if self.approximate else {})


@dataclass(frozen=True)
class Placement:
    """Its place in the zoo's weight space (analysis.upload.placement), or a note why it has none."""

    epoch: int | None = None
    neighbours: tuple[Neighbour, ...] = ()
    identical_to: str | None = None  # the zoo model it is a copy of within its file's precision
    precision: float | None = None  # the file's unit roundoff
    pca: Point | None = None  # exact projection
    umap: Point | None = None  # approximate
    note: str | None = None  # why it has no place (then every other field is empty)

    def position(self, method: str) -> Point | None:
        return {"pca": self.pca, "umap": self.umap}.get(method)

    def to_dict(self) -> dict:
        if self.note is not None:
            return {"note": self.note}
        d = {"epoch": self.epoch, "neighbours": plain(self.neighbours), "identical_to": self.identical_to,
             "precision": self.precision, "pca": plain(self.pca)}
        return d | ({"umap": self.umap.to_dict()} if self.umap else {})

    @classmethod
    def from_dict(cls, d: Mapping) -> Placement:
        if "note" in d:
            return cls(note=d["note"])
        return cls(d["epoch"], tuple(Neighbour.from_dict(n) for n in d["neighbours"]), d["identical_to"],
                   d["precision"], Point(**d["pca"]), Point(**d["umap"]) if "umap" in d else None)


@dataclass(frozen=True)
class Report:
    """Everything learned about one checkpoint; `Report.from_json(r.to_json()) == r`."""

    file: str
    sha256: str
    n_params: int
    notes: tuple[str, ...]  # what loading did (prefixes stripped, wrapper unwrapped), what could not be done
    data_free: tuple[LayerStats, ...]
    matches: tuple[ZooMatch, ...]  # every zoo tried, matches first
    zoo: str | None = None  # the recognised zoo's directory; None: the data-free report is all there is
    epoch: int | None = None  # the zoo's analysis epoch compared against
    cell: Mapping[str, KnobValue] = field(default_factory=dict)  # grid knob -> its value
    metrics: tuple[MetricRow, ...] = ()
    pairs: tuple[PairValue, ...] = ()
    rule: RuleVerdict | None = None
    classifier: ClassifierVerdict | None = None
    evidence: tuple[Evidence, ...] = ()
    placement: Placement | None = None
    errors: tuple[str, ...] = ()  # measurements that failed, by name
    seconds: float = 0.0
    weights_only: WeightsOnlyVerdict | None = None  # the phase from the weights alone, where nothing was measured
    advice: str | None = None  # what to change: the nearest IV-B cells of the zoo's map (analysis.taxonomy.advice)

    @property
    def phase(self) -> str | None:
        """The rules' phase where they can decide, else the classifier's; None where neither can (the classifier
        withholds its answer when a measurement of the model failed or is non-finite)."""
        rule = self.rule.phase if self.rule else None
        return rule if rule not in (None, UNCLASSIFIED) else self.classifier.phase if self.classifier else None

    def to_dict(self) -> dict:
        return _fields(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1)

    @classmethod
    def from_dict(cls, d: Mapping) -> Report:
        return cls(
            d["file"], d["sha256"], d["n_params"], tuple(d["notes"]),
            tuple(LayerStats.from_dict(x) for x in d["data_free"]), tuple(ZooMatch.from_dict(m) for m in d["matches"]),
            d["zoo"], d["epoch"], {k: KnobValue.from_dict(v) for k, v in d["cell"].items()},
            tuple(MetricRow(**m) for m in d["metrics"]), tuple(PairValue(**p) for p in d["pairs"]),
            RuleVerdict.from_dict(d["rule"]) if d["rule"] is not None else None,
            ClassifierVerdict.from_dict(d["classifier"]) if d["classifier"] is not None else None,
            tuple(Evidence(**e) for e in d["evidence"]),
            Placement.from_dict(d["placement"]) if d["placement"] is not None else None,
            tuple(d["errors"]), d["seconds"],
            WeightsOnlyVerdict.from_dict(d["weights_only"]) if d["weights_only"] is not None else None,
            d.get("advice"))

    @classmethod
    def from_json(cls, text: str) -> Report:
        return cls.from_dict(json.loads(text))
