"""The classifier's honesty (analysis.taxonomy.calibration, analysis.taxonomy.classifier): reliability bins and the
expected calibration error of its held-out probabilities, under leave-one-cell-out and leave-one-zoo-out, the rule
that calls one verdict's probability poorly calibrated, and where that shows (report JSON, CLI summary, chart).

Oracles: a synthetic classifier with known probabilities (labels drawn with them: calibrated by construction) and
the same classifier made over-confident; bins, ECE and Wilson intervals computed by hand and by scipy; scikit-learn's
own cross_val_predict for the out-of-fold probabilities; a recording estimator for what leave-one-zoo-out trains on."""
import dataclasses
import functools
import json
import math
import warnings

import numpy as np
import polars as pl
import pytest

from analysis.taxonomy import calibration as C
from analysis.taxonomy.classifier import ZOO_SCHEME, Validation, leave_one_zoo_out, training_set, validate
from analysis.upload import zoo_side
from analysis.upload.report import ClassifierVerdict
from dashboard.charts import SERIES_COLOURS, reliability_diagram
from dashboard.charts.style import NEUTRAL
from data.zoo.store import Zoo, builtin_zoos
from tests.conftest import Recorder

TRANSFORMER = next(p for p in builtin_zoos() if p.name == "modadd-transformer")
FEW = ("train_loss", "test_loss", "n_params")


def synthetic(n: int, temperature: float = 1.0, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """A 3-class classifier with known probabilities: each example's true probabilities from a Dirichlet, its
    label drawn with them. It states those probabilities sharpened by `temperature` (1: as they are,
    calibrated by construction; < 1: over-confident). Returns its top-class probability and correctness."""
    rng = np.random.default_rng(seed)
    true = rng.dirichlet([0.7, 0.7, 0.7], size=n)  # [n, 3]
    y = (rng.random((n, 1)) > true.cumsum(axis=1)).sum(axis=1)  # inverse CDF: label k with probability true[:, k]
    stated = true ** (1 / temperature)
    stated /= stated.sum(axis=1, keepdims=True)
    return C.top_class(stated, ["a", "b", "c"], np.array(["a", "b", "c"])[y])


# ----------------------------------------------------------------------------- 1. the arithmetic
def test_bins_and_ece_against_a_hand_computed_case():
    # (confidence, correct): on the edges 0.3 and 1.0 (each closes its bin), 0 joins the first bin
    conf = np.array([0.0, 0.05, 0.3, 0.35, 0.65, 0.7, 0.95, 1.0])
    hit = np.array([False, True, True, False, True, True, False, True])
    bins = C.reliability(conf, hit, n_bins=10)
    assert [b.count for b in bins] == [2, 0, 1, 1, 0, 0, 2, 0, 0, 2]
    assert bins[0].lo == 0.0 and bins[0].hi == 0.1 and bins[2].lo == 0.2 and bins[2].hi == 0.3
    assert bins[0].confidence == pytest.approx(0.025) and bins[0].accuracy == 0.5
    assert bins[2].confidence == 0.3 and bins[2].accuracy == 1.0  # 0.3 is in (0.2, 0.3]
    assert bins[3].confidence == 0.35 and bins[3].accuracy == 0.0
    assert bins[6].confidence == pytest.approx(0.675) and bins[6].accuracy == 1.0  # 0.7 closes (0.6, 0.7]
    assert bins[9].confidence == pytest.approx(0.975) and bins[9].accuracy == 0.5
    assert bins[1].confidence is None and bins[1].accuracy is None and (bins[1].low, bins[1].high) == (0.0, 1.0)
    # Σ n_b |acc − conf| / N = (2·0.475 + 0.7 + 0.35 + 2·0.325 + 2·0.475) / 8 = 3.6 / 8
    assert C.expected_calibration_error(bins) == pytest.approx(0.45)
    assert C.calibration(conf, hit, "x").ece == pytest.approx(0.45)
    # a perfectly calibrated toy: conf 0.75 and 3 of 4 right, conf 0.5 and 1 of 2 right
    toy = C.reliability(np.array([0.75] * 4 + [0.5] * 2), np.array([1, 1, 1, 0, 1, 0], bool))
    assert C.expected_calibration_error(toy) == pytest.approx(0.0, abs=1e-12)


@pytest.mark.slow
def test_wilson_interval_is_scipys():
    from scipy.stats import binomtest

    for k, n in [(0, 5), (1, 2), (7, 10), (57, 57), (30, 100)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert C.wilson(k, n) == pytest.approx((ci.low, ci.high), abs=1e-9), (k, n)
    assert C.wilson(0, 0) == (0.0, 1.0)


def test_top_class_ties_and_bad_input():
    conf, hit = C.top_class(np.array([[0.5, 0.5, 0.0], [0.1, 0.2, 0.7]]), ["I", "II", "III"], ["II", "III"])
    assert conf.tolist() == [0.5, 0.7] and hit.tolist() == [False, True]  # the tie goes to the first class
    with pytest.raises(ValueError, match="shape"):
        C.top_class(np.ones((2, 2)), ["I", "II", "III"], ["I", "II"])
    with pytest.raises(ValueError, match="no held-out prediction"):
        C.calibration(np.array([]), np.array([]), "x")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        C.calibration(np.array([0.5, np.nan]), np.array([True, False]), "x")
    with pytest.raises(ValueError, match="probability"):
        C.calibration(*synthetic(50), "x").judge(1.5)


# ----------------------------------------------------------------------------- 2. synthetic classifiers
def test_a_classifier_with_known_probabilities_is_calibrated():
    cal = C.calibration(*synthetic(2000), "synthetic")
    assert cal.n == 2000 and sum(b.count for b in cal.bins) == 2000
    assert cal.ece < 0.03 and cal.ece_low <= cal.ece <= cal.ece_high
    assert cal.ece <= cal.ece_null  # no more than sampling gives a perfectly calibrated classifier
    for b in cal.bins:  # every populated bin's accuracy interval holds its mean probability (within tolerance)
        if b.count >= C.MIN_BIN:
            assert b.low - C.TOLERANCE <= b.confidence <= b.high + C.TOLERANCE, b
    assert not any(cal.judge(p).poorly for p in (0.4, 0.55, 0.75, 0.9, 0.99))
    assert cal == C.calibration(*synthetic(2000), "synthetic")  # seeded: the disk cache compares equal


def test_an_over_confident_classifier_is_flagged():
    cal = C.calibration(*synthetic(2000, temperature=0.25), "synthetic")
    assert cal.ece > 0.15 and cal.ece_low > C.ECE_BOUND and cal.ece_low > cal.ece_null
    j = cal.judge(0.97)
    assert j.poorly and j.bin.count >= C.MIN_BIN and j.bin.high + C.TOLERANCE < 0.97
    assert j.reason.startswith("synthetic: of the") and "not 97 %" in j.reason
    # a bin too small to judge: the scheme's ECE (above the bound and the calibrated reference) decides
    conf, hit = synthetic(400, temperature=0.25)
    keep = conf > 0.6  # no example below 0.6: the probability 0.45 lands in an empty bin
    small = C.calibration(conf[keep], hit[keep], "small")
    jj = small.judge(0.45)
    assert jj.bin.count == 0 and jj.poorly and "ECE" in jj.reason and "too few" in jj.words()


def test_the_flag_is_decided_by_the_named_schemes_only():
    good = C.calibration(*synthetic(1000), "leave-one-cell-out")
    bad = C.calibration(*synthetic(1000, temperature=0.25), ZOO_SCHEME)
    both = C.check(0.97, [good, bad], deciding=["leave-one-cell-out"])
    assert [j.scheme for j in both.judgements] == ["leave-one-cell-out", ZOO_SCHEME]
    assert both.judgements[1].poorly and not both.poorly_calibrated and both.reason is None
    flagged = C.check(0.97, [good, bad], deciding=["leave-one-cell-out", ZOO_SCHEME])
    assert flagged.poorly_calibrated and flagged.reason == both.judgements[1].reason


# ----------------------------------------------------------------------------- 3. the classifier's held-out probabilities
@pytest.mark.slow
def test_out_of_fold_probabilities_are_scikit_learns():
    """validate's calibration is that of scikit-learn's cross_val_predict(predict_proba), cells held out."""
    from sklearn.model_selection import LeaveOneGroupOut, cross_val_predict

    from analysis.taxonomy.classifier import design, make_classifier

    table = training_set(TRANSFORMER)
    v = validate(table, "cell", features=FEW)
    y = table["phase"].to_numpy()
    with warnings.catch_warnings():  # a fold lacking a phase warns; its column is 0, as in validate
        warnings.simplefilter("ignore")
        proba = cross_val_predict(make_classifier(), design(table, FEW), y, groups=table["cell"].to_numpy(),
                                  cv=LeaveOneGroupOut(), method="predict_proba")
    oracle = C.calibration(*C.top_class(proba, sorted(set(y)), y), "leave-one-cell-out")
    assert v.calibration.n == table.height
    assert [b.count for b in v.calibration.bins] == [b.count for b in oracle.bins]
    assert v.calibration.ece == pytest.approx(oracle.ece, abs=1e-9)
    # its top-class predictions are the validation's accuracy
    acc = sum(b.count * b.accuracy for b in v.calibration.bins if b.count) / v.n
    assert acc == pytest.approx(v.accuracy, abs=1e-12)


def zoo_table(offset: float, phases: list[str]) -> pl.DataFrame:
    n = len(phases)
    return pl.DataFrame({"phase": phases, "f": offset + np.arange(n, dtype=float), "g": [None] * n},
                        schema={"phase": pl.String, "f": pl.Float64, "g": pl.Float64})


def test_leave_one_zoo_out_never_trains_on_the_held_out_zoo():
    tables = {"a": zoo_table(0, ["I", "II", "I"]), "b": zoo_table(100, ["II", "III"]),
              "c": zoo_table(1000, ["III", "I", "II", "II"])}
    for held in tables:
        Recorder.fits = []
        v = leave_one_zoo_out(tables, held, ("f", "g"), estimator=Recorder())
        (rows,) = Recorder.fits
        seen = set(rows[:, 0].tolist())
        assert seen == {x for name, t in tables.items() if name != held for x in t["f"]}
        assert not seen & set(tables[held]["f"])  # not one row of the held-out zoo
        assert v.scheme == ZOO_SCHEME and v.n == tables[held].height
        assert v.trained_on == tuple(n for n in tables if n != held) and v.calibration.n == v.n
    with pytest.raises(ValueError, match="no zoo 'd'"):
        leave_one_zoo_out(tables, "d", ("f",))
    with pytest.raises(ValueError, match="needs a zoo besides"):
        leave_one_zoo_out({"a": tables["a"]}, "a", ("f",))


@pytest.mark.slow
def test_leave_one_zoo_out_on_the_built_in_zoos_is_cached_and_keyed_by_version(tmp_path, monkeypatch):
    """The upload's leave-one-zoo-out figures: trained on the other built-in zoos, kept on disk; a cache file of
    the older form (no calibration) under the old key is never read back."""
    import hashlib

    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))
    state = zoo_side.zoo_state(Zoo.open(TRANSFORMER))
    old = hashlib.sha256(json.dumps([list(state), list(FEW)]).encode()).hexdigest()[:32]
    stale = Validation("leave-one-cell-out", 1, 1, 1.0, 1.0, ("I",), ((1,),))
    (tmp_path / "validation").mkdir()
    (tmp_path / "validation" / f"{old}.json").write_text(json.dumps(dataclasses.asdict(stale)))
    zoo_side.validation.cache_clear()
    zoo_side.across_zoos.cache_clear()
    v = zoo_side.validation(state, FEW)
    assert v != stale and v.calibration is not None and v.n == training_set(TRANSFORMER).height
    a = zoo_side.across_zoos(state, FEW)
    assert a.scheme == ZOO_SCHEME and set(a.trained_on) == {p.name for p in builtin_zoos()} - {TRANSFORMER.name}
    assert a.n == v.n and a.calibration.n == a.n
    zoo_side.across_zoos.cache_clear()  # as a new process would start: read back equal from disk
    assert zoo_side.across_zoos(state, FEW) == a
    zoo_side.validation.cache_clear()
    zoo_side.across_zoos.cache_clear()


# ----------------------------------------------------------------------------- 4. the report, the summary, the chart
@functools.cache
def verdict(temperature: float, p: float = 0.97) -> ClassifierVerdict:
    within = Validation("leave-one-cell-out", 2000, 40, 0.8, 0.4, ("I", "II"), ((800, 200), (200, 800)),
                        C.calibration(*synthetic(1000, temperature), "leave-one-cell-out"))
    across = Validation(ZOO_SCHEME, 2000, 1, 0.3, 0.4, ("I", "II"), ((300, 700), (700, 300)),
                        C.calibration(*synthetic(1000, 0.25, seed=2), ZOO_SCHEME), ("x", "y"))
    check = C.check(p, [within.calibration, across.calibration], [within.scheme])
    return ClassifierVerdict("II", {"I": 1 - p, "II": p}, {"train_loss": -2.0}, 2000, 0.1, 0.5, False, {}, None,
                             within, across, check)


def test_report_round_trip_and_the_flag():
    bad, good = verdict(0.25), verdict(1.0)
    assert bad.poorly_calibrated and not good.poorly_calibrated
    assert bad.calibration.reason.startswith("leave-one-cell-out: of the")
    for c in (bad, good):
        d = json.loads(json.dumps(c.to_dict()))
        assert d["calibration"]["poorly_calibrated"] == c.poorly_calibrated
        assert ClassifierVerdict.from_dict(d) == c
    # the disk cache's form of a Validation (dataclasses.asdict, JSON) reads back equal
    v = bad.across
    assert Validation.from_dict(json.loads(json.dumps(dataclasses.asdict(v)))) == v
    assert "trained on 2 other zoo(s)" in v.words()
    # a report written before calibration existed still reads (no calibration, not flagged)
    old = {k: x for k, x in good.to_dict().items() if k not in ("across", "calibration")}
    assert not ClassifierVerdict.from_dict(old).poorly_calibrated


@pytest.mark.slow
def test_the_summary_says_poorly_calibrated_here():
    import analysis.upload.verdict as V
    from tests.test_upload_view import stub

    report = stub()
    flagged = dataclasses.replace(report, classifier=verdict(0.25))
    text = V.summary(flagged)
    assert f"    poorly calibrated here: {flagged.classifier.calibration.reason}" in text
    assert "calibration (leave-one-cell-out): ECE" in text and f"calibration ({ZOO_SCHEME}): ECE" in text
    assert "trained on the other zoos instead: held-out accuracy 0.30" in text
    assert "poorly calibrated here" not in V.summary(dataclasses.replace(report, classifier=verdict(1.0)))
    assert V.Report.from_json(flagged.to_json()) == flagged


def test_reliability_diagram_draws_each_scheme_with_its_intervals():
    c = verdict(0.25)
    cals = [c.validation.calibration, c.across.calibration]
    table = C.reliability_frame(cals)
    assert table.schema == pl.Schema(C.RELIABILITY_SCHEMA) and table.height == 2 * C.N_BINS
    fig = reliability_diagram(table, 0.97, title="t", ece={cals[0].scheme: "ECE 0.20"})
    diagonal, *lines = fig.data
    assert list(diagonal.x) == [0, 1] and diagonal.line.color == NEUTRAL
    assert [t.name for t in lines] == ["leave-one-cell-out (ECE 0.20)", ZOO_SCHEME]
    assert [t.line.color for t in lines] == list(SERIES_COLOURS[:2])  # schemes are series, never phases
    for t, cal in zip(lines, cals):
        full = [b for b in cal.bins if b.count]
        np.testing.assert_allclose(t.x, [b.confidence for b in full])
        np.testing.assert_allclose(np.asarray(t.y) + np.asarray(t.error_y.array), [b.high for b in full])
        np.testing.assert_allclose(np.asarray(t.y) - np.asarray(t.error_y.arrayminus), [b.low for b in full])
    (line,) = fig.layout.shapes
    assert line.x0 == line.x1 == 0.97
    assert math.isclose(fig.layout.height, 380)


@pytest.mark.slow
def test_the_page_draws_the_diagram_beside_the_verdict_and_warns(monkeypatch, tmp_path):
    from tests.test_upload_view import stub, upload_page

    flagged = dataclasses.replace(stub(), classifier=verdict(0.25))
    at = upload_page(flagged, monkeypatch, tmp_path)
    warnings_ = [w.value.replace("\\", "") for w in at.warning]
    assert f"Poorly calibrated here: {flagged.classifier.calibration.reason}." in warnings_, warnings_
    specs = [json.loads(el.proto.spec) for el in at.get("plotly_chart")]
    (diagram,) = [s for s in specs if s["layout"]["title"]["text"].startswith("Classifier calibration")]
    c = flagged.classifier
    assert [t["name"] for t in diagram["data"]][1:] == [f"leave-one-cell-out (ECE {c.validation.calibration.ece:.2f})",
                                                       f"{ZOO_SCHEME} (ECE {c.across.calibration.ece:.2f})"]
    captions = [c.value.replace("\\", "") for c in at.caption]
    assert any(c.startswith("Calibration (held-out): ECE") for c in captions), captions
    assert any(c.startswith("This verdict (0.97) under leave-one-cell-out: its bin 0.9–1.0") for c in captions)
