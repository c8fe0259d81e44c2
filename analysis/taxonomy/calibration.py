"""How far a classifier's probabilities can be taken at their word: reliability bins and the expected
calibration error of its held-out top-class probabilities, and a rule for when one verdict's probability is
poorly calibrated. Pure numpy; frozen results that carry their uncertainty.

A classifier is calibrated when, of the examples it gives top-class probability p, a fraction p is right.
The held-out predictions (analysis.taxonomy.classifier.validate: leave-one-cell-out, leave-one-zoo-out) are
sorted by their top-class probability (the *confidence*) into N_BINS equal-width bins (i/N, (i+1)/N] (a
confidence of exactly 0 joins the first), and each bin's accuracy is compared with its mean confidence: the
reliability diagram (DeGroot & Fienberg 1983; Niculescu-Mizil & Caruana 2005). The expected calibration
error is the count-weighted mean gap, ECE = Σ_b (n_b / N) |acc_b − conf_b| (Naeini, Cooper & Hauskrecht
2015; Guo, Pleiss, Sun & Weinberger 2017, *On Calibration of Modern Neural Networks*, eq. 3).

Uncertainty: each bin's accuracy has its Wilson score interval (Wilson 1927; Brown, Cai & DasGupta 2001:
honest coverage at small n, never outside [0, 1]); the ECE has a basic bootstrap interval over the examples
(Efron & Tibshirani 1993; Davison & Hinkley 1997 §5.2: it reflects the estimator's bias instead of doubling
it, as the percentile interval would), and `ece_null`, the 95th percentile of the ECE a *perfectly
calibrated* classifier with the same confidences would show at this n (consistency resampling: labels drawn
with the stated probabilities; Bröcker & Smith 2007). The binned ECE is biased upwards at small n — a
calibrated classifier scores ≈ √(1/n_b) per bin, not 0 — so an ECE below `ece_null` is what sampling alone
gives.

A verdict with top-class probability p is **poorly calibrated** (`Calibration.judge`) when
  1. its bin holds at least MIN_BIN held-out examples and p lies outside that bin's accuracy interval by
     more than TOLERANCE (the classifier's p in that range has been measurably wrong), or
  2. the scheme's ECE exceeds ECE_BOUND and exceeds `ece_null` (miscalibrated overall, beyond sampling
     noise: no bin of it can be trusted, whatever its count).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import polars as pl

N_BINS = 10  # equal-width bins of the top-class probability: Guo et al.'s M = 15 leaves bins of our ~200-
# example zoos nearly empty; 10 keeps ≥ 10 examples in the populated ones
LEVEL = 0.95  # of every interval here
Z = 1.959963984540054  # the standard normal's 97.5 % quantile: the two-sided 95 % Wilson interval
MIN_BIN = 10  # held-out examples a verdict's bin needs before its accuracy is allowed to judge the verdict
TOLERANCE = 0.05  # how far (probability units) p may lie outside its bin's accuracy interval
ECE_BOUND = 0.10  # an ECE above this (and above ece_null) marks the whole scheme as poorly calibrated
N_BOOT = 1000  # bootstrap and consistency resamples
SEED = 0  # resampling is seeded: the same predictions give the same intervals (the disk cache compares equal)


@dataclass(frozen=True)
class Bin:
    """One equal-width confidence bin (lo, hi] and the held-out examples in it."""

    lo: float
    hi: float
    count: int
    confidence: float | None  # mean top-class probability of its examples; None: empty
    accuracy: float | None  # the fraction of them whose top class was the true one; None: empty
    low: float  # Wilson 95 % interval of the accuracy ([0, 1] when empty)
    high: float

    def words(self) -> str:
        """"0.9–1.0: right 72 % of 57 (95 % 60–82 %), mean probability 0.95"."""
        span = f"{self.lo:.1f}–{self.hi:.1f}"
        if not self.count:
            return f"{span}: no held-out example"
        return (f"{span}: right {percent(self.accuracy)} of {self.count} (95 % {100 * self.low:.0f}–"
                f"{percent(self.high)}), mean probability {self.confidence:.2f}")


@dataclass(frozen=True)
class Judgement:
    """One probability p against one scheme's reliability (Calibration.judge)."""

    scheme: str
    p: float
    bin: Bin  # the bin p falls in
    ece: float  # the scheme's ECE, for the reader
    poorly: bool
    reason: str | None  # why it is poorly calibrated; None where it is not

    def words(self) -> str:
        """What its bin says, and whether it can say it: "its bin 0.5–0.6: right 55 % of 40 (…)"."""
        b = self.bin
        if b.count < MIN_BIN:
            return f"its bin {b.lo:.1f}–{b.hi:.1f} holds {b.count} held-out example(s): too few to judge it (< {MIN_BIN})"
        return f"its bin {b.words()}"

    @classmethod
    def from_dict(cls, d: Mapping) -> Judgement:
        return cls(d["scheme"], d["p"], Bin(**d["bin"]), d["ece"], d["poorly"], d["reason"])


@dataclass(frozen=True)
class Calibration:
    """A scheme's held-out top-class probabilities against their accuracy: the reliability bins and the ECE."""

    scheme: str  # the validation scheme the predictions come from
    n: int  # held-out predictions
    bins: tuple[Bin, ...]  # N_BINS of them, lowest first
    ece: float  # Σ_b (n_b / N) |acc_b − conf_b|, probability units
    ece_low: float  # basic bootstrap 95 % interval (clipped to [0, 1])
    ece_high: float
    ece_null: float  # 95th percentile of the ECE of a perfectly calibrated classifier with these confidences

    def bin_of(self, p: float) -> Bin:
        return self.bins[int(bin_index(np.array([p]), len(self.bins))[0])]

    def judge(self, p: float) -> Judgement:
        """The module's rule on a verdict of top-class probability `p` (see the module docstring)."""
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"a probability must lie in [0, 1], got {p!r}")
        b = self.bin_of(p)
        reason = None
        if b.count >= MIN_BIN and not b.low - TOLERANCE <= p <= b.high + TOLERANCE:
            reason = (f"{self.scheme}: of the {b.count} held-out models given {b.lo:.1f}–{b.hi:.1f}, "
                      f"{percent(b.accuracy)} were right (95 % {100 * b.low:.0f}–{percent(b.high)}), not {percent(p)}")
        elif self.ece > ECE_BOUND and self.ece > self.ece_null:
            reason = (f"{self.scheme}: ECE {self.ece:.2f} (95 % {self.ece_low:.2f}–{self.ece_high:.2f}) is above "
                      f"{ECE_BOUND:.2f} and above the {self.ece_null:.2f} a calibrated classifier shows at n = {self.n}")
        return Judgement(self.scheme, float(p), b, self.ece, reason is not None, reason)

    def words(self) -> str:
        """"ECE 0.06 (95 % 0.04–0.09; calibrated would be ≤ 0.05 at n = 384)"."""
        return (f"ECE {self.ece:.2f} (95 % {self.ece_low:.2f}–{self.ece_high:.2f}; calibrated would be "
                f"≤ {self.ece_null:.2f} at n = {self.n})")

    def markdown(self) -> str:
        """The non-empty bins as a table: range, count, mean probability, accuracy and its interval."""
        rows = ["| top-class probability | models | mean probability | accuracy (95 %) |", "|---|---|---|---|"]
        rows += [f"| {b.lo:.1f}–{b.hi:.1f} | {b.count} | {b.confidence:.2f} | {b.accuracy:.2f} "
                 f"({b.low:.2f}–{b.high:.2f}) |" for b in self.bins if b.count]
        return "\n".join(rows)

    @classmethod
    def from_dict(cls, d: Mapping) -> Calibration:
        return cls(d["scheme"], d["n"], tuple(Bin(**b) for b in d["bins"]), d["ece"], d["ece_low"], d["ece_high"],
                   d["ece_null"])


@dataclass(frozen=True)
class Check:
    """A verdict's probability judged under each scheme, and the flag: poorly calibrated under a deciding one."""

    p: float
    judgements: tuple[Judgement, ...]  # one per scheme with held-out probabilities
    poorly_calibrated: bool
    reason: str | None  # the deciding judgements' reasons, joined; None where it is not poorly calibrated

    @classmethod
    def from_dict(cls, d: Mapping) -> Check:
        return cls(d["p"], tuple(Judgement.from_dict(j) for j in d["judgements"]), d["poorly_calibrated"],
                   d["reason"])


def check(p: float, calibrations: Sequence[Calibration], deciding: Sequence[str]) -> Check:
    """`p` judged under every scheme in `calibrations`; flagged where a scheme named in `deciding` flags it."""
    js = tuple(c.judge(p) for c in calibrations)
    reasons = [j.reason for j in js if j.poorly and j.scheme in deciding]
    return Check(float(p), js, bool(reasons), "; ".join(reasons) if reasons else None)


# ----------------------------------------------------------------------------- kernels
def percent(x: float) -> str:
    """0.72 -> "72 %" (the house style: a space before the sign)."""
    return f"{100 * x:.0f} %"


def top_class(proba: np.ndarray, classes: Sequence[str], y: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each example's top-class probability and whether that class is its true label. proba: [n, classes]
    (rows sum to 1, columns in `classes` order); ties go to the first class, as numpy's argmax (and
    scikit-learn's predict) break them."""
    proba = np.asarray(proba, dtype=float)
    if proba.ndim != 2 or proba.shape != (len(y), len(classes)):
        raise ValueError(f"probabilities of shape {proba.shape} for {len(y)} labels and {len(classes)} classes")
    top = proba.argmax(axis=1)
    return proba[np.arange(len(y)), top], np.asarray(classes, dtype=object)[top] == np.asarray(y, dtype=object)


def bin_index(confidence: np.ndarray, n_bins: int = N_BINS) -> np.ndarray:
    """The bin of each confidence: i for (i/n, (i+1)/n], and 0 for exactly 0. The edges are i/n computed
    exactly (3/10 is the double 0.3), so a confidence on an edge falls in the bin it closes."""
    edges = np.arange(n_bins + 1) / n_bins
    return np.clip(np.searchsorted(edges, confidence, side="left") - 1, 0, n_bins - 1)


def wilson(k: int, n: int, z: float = Z) -> tuple[float, float]:
    """Wilson score interval of a binomial proportion k / n ([0, 1] for n = 0)."""
    if n == 0:
        return 0.0, 1.0
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z / (1 + z * z / n) * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def reliability(confidence: np.ndarray, correct: np.ndarray, n_bins: int = N_BINS) -> tuple[Bin, ...]:
    """The reliability bins of top-class probabilities `confidence` [n] and their correctness `correct` [n]."""
    conf, hit = _checked(confidence, correct)
    idx = bin_index(conf, n_bins)
    out = []
    for i in range(n_bins):
        at = idx == i
        n, k = int(at.sum()), int(hit[at].sum())
        low, high = wilson(k, n)
        out.append(Bin(i / n_bins, (i + 1) / n_bins, n, float(conf[at].mean()) if n else None,
                       k / n if n else None, low, high))
    return tuple(out)


def expected_calibration_error(bins: Sequence[Bin]) -> float:
    """Σ_b (n_b / N) |acc_b − conf_b| over the non-empty bins (Guo et al. 2017, eq. 3)."""
    n = sum(b.count for b in bins)
    if n == 0:
        raise ValueError("no held-out prediction to compute a calibration error from")
    return float(sum(b.count * abs(b.accuracy - b.confidence) for b in bins if b.count) / n)


def _ece_rows(conf: np.ndarray, hit: np.ndarray, n_bins: int) -> np.ndarray:
    """The ECE of every row of conf, hit [resamples, n], vectorised: (1/n) Σ_b |Σ_{i∈b} (hit_i − conf_i)|
    (the count weights cancel the bin means)."""
    r, n = conf.shape
    flat = (np.arange(r)[:, None] * n_bins + bin_index(conf, n_bins)).ravel()
    gap = np.bincount(flat, weights=(hit - conf).ravel(), minlength=r * n_bins).reshape(r, n_bins)
    return np.abs(gap).sum(axis=1) / n


def calibration(confidence: np.ndarray, correct: np.ndarray, scheme: str, *, n_bins: int = N_BINS,
                n_boot: int = N_BOOT, seed: int = SEED) -> Calibration:
    """Reliability bins, ECE, its bootstrap interval and the ECE of a calibrated classifier (`ece_null`)."""
    conf, hit = _checked(confidence, correct)
    bins = reliability(conf, hit, n_bins)
    rng = np.random.default_rng(seed)
    a = (1 - LEVEL) / 2
    idx = rng.integers(0, len(conf), size=(n_boot, len(conf)))  # [resamples, n]: the examples drawn
    boot = _ece_rows(conf[idx], hit[idx].astype(float), n_bins)
    drawn = conf[rng.integers(0, len(conf), size=(n_boot, len(conf)))]  # consistency resampling
    null = _ece_rows(drawn, (rng.random(drawn.shape) < drawn).astype(float), n_bins)
    ece = expected_calibration_error(bins)
    # the basic bootstrap interval (2·ECE − q_hi, 2·ECE − q_lo): a resample's ECE sits above the sample's as the
    # sample's sits above the truth, so the percentile interval would double the bias; clipped to [0, 1]
    lo, hi = 2 * ece - float(np.quantile(boot, 1 - a)), 2 * ece - float(np.quantile(boot, a))
    return Calibration(scheme, len(conf), bins, ece, min(max(lo, 0.0), 1.0), min(max(hi, 0.0), 1.0),
                       float(np.quantile(null, LEVEL)))


def _checked(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    conf = np.asarray(confidence, dtype=float).ravel()
    hit = np.asarray(correct, dtype=bool).ravel()
    if conf.shape != hit.shape:
        raise ValueError(f"{conf.size} confidences for {hit.size} correctness flags")
    if conf.size == 0:
        raise ValueError("no held-out prediction to calibrate")
    if not np.all((conf >= 0) & (conf <= 1)):
        raise ValueError("confidences must be probabilities in [0, 1] (a NaN or an out-of-range value was given)")
    return conf, hit


# one row per (scheme, bin): the reliability diagram's table (dashboard.charts.calibration), empty bins included
RELIABILITY_SCHEMA = {"scheme": pl.String, "lo": pl.Float64, "hi": pl.Float64, "count": pl.Int64,
                      "confidence": pl.Float64, "accuracy": pl.Float64, "low": pl.Float64, "high": pl.Float64}


def reliability_frame(calibrations: Sequence[Calibration]) -> pl.DataFrame:
    """The bins of each calibration as a tidy frame (RELIABILITY_SCHEMA; confidence and accuracy null where empty)."""
    return pl.DataFrame([{"scheme": c.scheme, **{k: getattr(b, k) for k in RELIABILITY_SCHEMA if k != "scheme"}}
                         for c in calibrations for b in c.bins], schema=RELIABILITY_SCHEMA)
