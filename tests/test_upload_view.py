"""The upload verdict says how sure it is: the classifier's probability as a plain number with its runner-up and
its held-out accuracy on the zoo, an estimated knob with its votes and the verdict at every value it could take,
"near a threshold" naming the threshold and the phase across it — in the typed report, its JSON, the CLI summary
and the page (analysis.upload.report, analysis.upload.verdicts, views/upload.py).

Oracles: the taxonomy's `label` and `classify` for the phases at the candidate cells, scikit-learn's own
cross-validation for the validation figures, a zoo model's own rows for the knob estimate (its own cell holds a
model at distance 0: itself)."""
import json

import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

import analysis.upload.verdict as V
from analysis.taxonomy.cell_report import evidence
from analysis.taxonomy.classifier import training_set, validate
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, label, zoo_cells
from analysis.upload import zoo_side
from analysis.upload.cell import ESTIMATE_K, complete
from analysis.upload.measure import UPLOAD
from analysis.upload.recognise import ZooMatch
from analysis.upload.report import (
    Candidate,
    ClassifierVerdict,
    KnobEstimate,
    KnobValue,
    Placement,
    RuleVerdict,
    plain,
)
from analysis.upload.verdicts import with_candidate_phases
from dashboard.charts import PHASE_COLOURS
from data.zoo.store import Zoo, builtin_zoos
from tests.conftest import DEFAULT_ZOO, ROOT
from tests.test_dashboard import array

APP = str(ROOT / "dashboard" / "app.py")
TH = Thresholds(0.1, 1.0, 0.8, provenance={"train_loss": "given", "mc": "given", "cka": "given"})
PROBS = {"I": 0.01, "II": 0.05, "III": 0.05, "IV-A": 0.31, "IV-B": 0.58}


def classifier(probabilities=PROBS, validation=None) -> ClassifierVerdict:
    return ClassifierVerdict(max(probabilities, key=probabilities.get) if probabilities else None, probabilities, {"train_loss": -2.0}, 384, 0.1, 0.5,
                             False, {}, None if probabilities else "withheld", validation)


def rule(values) -> RuleVerdict:
    ev = evidence(values, TH, "mnist1d")
    return RuleVerdict(ev.phase, None, values["train_loss"], values["mc"], values["cka"], None, TH.train_loss, TH.mc,
                       TH.cka, ev.checks, "zoo seeds", 3, dict(TH.provenance))


TRANSFORMER = next(p for p in builtin_zoos() if p.name == "modadd-transformer")
FEW = ("train_loss", "test_loss", "n_params")


def transformer_validation():
    """What the upload pipeline carries for a classifier on FEW features of the transformer zoo (cached)."""
    return zoo_side.validation(zoo_side.zoo_state(Zoo.open(TRANSFORMER)), FEW)


# ----------------------------------------------------------------------------- 1. the classifier's confidence
def test_probability_is_a_number_with_its_runner_up():
    c = classifier()
    assert c.runner_up == ("IV-A", 0.31) and c.words() == "IV-B 0.58, runner-up IV-A 0.31"
    assert classifier({"II": 1.0}).runner_up is None and classifier({"II": 1.0}).words() == "II 1.00"
    assert classifier({}).words() == "none"
    d = c.to_dict()
    assert d["runner_up"] == {"phase": "IV-A", "probability": 0.31}
    assert ClassifierVerdict.from_dict(json.loads(json.dumps(d))) == c


def test_validation_is_computed_where_the_classifier_is_trained():
    """The figures the report carries are scikit-learn's leave-one-cell-out predictions on the very features the
    classifier uses (the transformer zoo: small enough to cross-validate twice in a second)."""
    carried = transformer_validation()
    table = training_set(TRANSFORMER)
    assert carried == validate(table, "cell", features=FEW)
    assert carried.scheme == "leave-one-cell-out" and carried.n == table.height
    assert carried.folds == table["cell"].n_unique() and 0 <= carried.accuracy <= 1
    c = classifier(validation=carried)
    assert ClassifierVerdict.from_dict(json.loads(json.dumps(c.to_dict()))) == c
    assert carried.words().startswith(f"held-out accuracy {carried.accuracy:.2f} (leave-one-cell-out, "
                                      f"{carried.folds} folds, n = {table.height}")


# ----------------------------------------------------------------------------- 2. near a threshold
def test_near_names_the_threshold_and_the_phase_across_it():
    r = rule({"train_loss": 0.05, "mc": 0.3, "cka": 0.82})
    assert r.phase == "IV-B" and r.near_boundary
    (near,) = r.near
    assert near.symbol == "τ_C" and near.flips_to == "IV-A"
    assert RuleVerdict.from_dict(json.loads(json.dumps(plain(r)))) == r
    assert not rule({"train_loss": 0.001, "mc": 3.0, "cka": 0.95}).near_boundary


# ----------------------------------------------------------------------------- 3. the knob estimate
def test_a_zoo_models_own_rows_estimate_its_knob_with_every_candidate_scored():
    zoo = Zoo.open(DEFAULT_ZOO)
    epoch, me = 300, "width008-batch_size0064-s1"
    mine = pl.read_parquet(DEFAULT_ZOO / "metrics.parquet").filter(
        (pl.col("model_id") == me) & (pl.col("epoch") == epoch) & pl.col("other_id").is_null())
    rows = mine.with_columns(model_id=pl.lit(UPLOAD)).to_dicts()
    n_params = zoo.catalog.filter(pl.col("model_id") == me)["n_params"][0]
    known = {"width": KnobValue(8, 8, "weights")}
    bs = complete(zoo, epoch, known, lambda _knobs: rows, n_params)["batch_size"]
    e = bs.estimate
    assert bs.source == "estimated" and bs.value == e.candidates[0].value and e.k == ESTIMATE_K
    assert [c.value for c in e.candidates] != [] and {c.value for c in e.candidates} == set(zoo.spec.grid["batch_size"])
    assert sum(c.votes for c in e.candidates) == ESTIMATE_K and e.confidence == e.candidates[0].votes / ESTIMATE_K
    ranks = [(-c.votes, c.nearest) for c in e.candidates]
    assert ranks == sorted(ranks)  # most votes first, then nearest
    own = next(c for c in e.candidates if c.value == 64)
    assert own.nearest == pytest.approx(0.0, abs=1e-9)  # its own cell holds itself
    assert "width=8" in e.method and "5 zoo models" in e.method


def test_candidate_phases_are_the_rules_at_each_cell():
    cells = pl.DataFrame({"width": [8, 8, 8], "batch_size": [16, 32, 64], "train_loss": [0.01, 0.01, 0.5],
                          "mc": [-3.0, 0.5, 0.2], "cka": [0.9, 0.7, 0.9]})
    est = KnobEstimate("test", 5, (Candidate(32, 3, 0.1, None, None), Candidate(16, 2, 0.2, None, None),
                                   Candidate(64, 0, 0.9, None, None), Candidate(128, 0, None, None, None)))
    cell = {"width": KnobValue(8, 8, "weights"), "batch_size": KnobValue(32, 32, "estimated", ("a",), est)}
    spec = Zoo.open(DEFAULT_ZOO).spec  # load knob width, temperature knob batch_size
    out = with_candidate_phases(cell, spec, cells, TH, 0.02)["batch_size"].estimate.candidates
    zoo_phases = dict(classify(cells, TH).select("batch_size", "phase").rows())
    assert [c.zoo_phase for c in out] == [zoo_phases[32], zoo_phases[16], zoo_phases[64], None]
    assert [c.phase for c in out] == [label(0.02, 0.5, 0.7, TH), label(0.02, -3.0, 0.9, TH),
                                      label(0.02, 0.2, 0.9, TH), None]
    assert [c.phase for c in out] == ["IV-A", "III", "IV-B", None]  # its own fit, each cell's connectivity
    again = KnobValue.from_dict(json.loads(json.dumps(plain(cell["batch_size"]))))
    assert again == cell["batch_size"]


# ----------------------------------------------------------------------------- 4. the CLI summary and the page
def stub() -> V.Report:
    zoo = Zoo.open(builtin_zoos()[0])
    est = KnobEstimate("the most common batch_size among the 5 zoo models of width=8 nearest in 10 features", 5,
                       (Candidate(64, 3, 0.02, "I", "IV-B"), Candidate(32, 2, 1.2, "IV-A", "IV-A")))
    match = ZooMatch(zoo.name, str(zoo.root), "mlp", {"width": 8, "depth": 2}, {"width": 8}, {"width": 8}, ())
    return V.Report("mine.safetensors", "0" * 64, 490, (), (), (match,), zoo=str(zoo.root), epoch=300,
                    cell={"width": KnobValue(8, 8, "weights"),
                          "batch_size": KnobValue(64, 64, "estimated", ("m",) * 5, est)},
                    rule=rule({"train_loss": 0.05, "mc": 0.3, "cka": 0.82}),
                    classifier=classifier(validation=transformer_validation()),
                    placement=Placement(note="no embedding at this epoch"))


@pytest.fixture(scope="module")
def report() -> V.Report:
    return stub()


def test_summary_and_json_carry_what_qualifies_the_verdict(report):
    text = V.summary(report)
    assert "PHASE (taxonomy rules): IV-B  (near τ_C)" in text
    assert "near: CKA (logits, test) 0.82, τ_C = 0.8: 0.02 above → would be IV-A with dissimilar seeds" in text
    assert "IV-B 0.58, runner-up IV-A 0.31" in text and "classifier validated on the zoo: held-out accuracy" in text
    assert "batch_size estimated (3/5 votes)" in text
    assert "batch_size=32: 2/5 votes, nearest zoo model 1.2; that cell is IV-A" in text
    assert V.Report.from_json(report.to_json()) == report
    d = json.loads(report.to_json())
    assert d["classifier"]["validation"]["scheme"] == "leave-one-cell-out"
    assert d["cell"]["batch_size"]["estimate"]["candidates"][1]["phase"] == "IV-A"
    assert [c["symbol"] for c in d["rule"]["checks"] if c["near"]] == ["τ_C"]


def upload_page(report: V.Report, monkeypatch, tmp_path) -> AppTest:
    """The upload page after one file was dropped on it, `report` standing in for its analysis."""
    monkeypatch.setenv("PHASEZOO_UPLOAD_WORKERS", "0")
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))
    monkeypatch.setattr(V, "analyse", lambda files, *a, **k: [report for _ in files])
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/upload.py").run()
    at.file_uploader(key="upload_files").set_value([("mine.safetensors", b"x", "application/octet-stream")]).run()
    assert not at.exception, at.exception
    return at


def test_the_page_shows_a_plain_probability_the_threshold_and_the_candidates(report, monkeypatch, tmp_path):
    at = upload_page(report, monkeypatch, tmp_path)
    metrics = {m.label: m for m in at.metric}
    assert metrics["Phase (classifier)"].value == "IV-B"
    assert all(not m.proto.delta for m in at.metric)  # no delta chip: a probability is not a gain
    captions = [c.value.replace("\\", "") for c in at.caption]  # shown literally: Markdown escapes
    assert any("IV-B 0.58, runner-up IV-A 0.31" in c for c in captions), captions
    assert any("held-out accuracy" in c for c in captions)
    assert any("batch_size estimated: 3 of 5 votes (60%)" in c for c in captions), captions
    warnings = [w.value.replace("\\", "") for w in at.warning]
    assert any(w.startswith("Near τ_C:") and "would be IV-A" in w for w in warnings), warnings
    table = next(d.value for d in at.dataframe if "votes" in d.value.columns)
    assert list(table["batch_size"]) == ["64", "32"] and list(table["rules with its seeds' mc and CKA"]) == ["IV-B",
                                                                                                           "IV-A"]
    # the evidence strips: each zoo cell in its phase's colour, as many per phase as the zoo has such cells
    cells = zoo_cells(DEFAULT_ZOO, 300)[2]
    counts = dict(classify(cells, default_thresholds(cells)).filter(pl.col("train_loss").is_not_null())
                  .group_by("phase").len().rows())
    strip = next(json.loads(el.proto.spec) for el in at.get("plotly_chart")
                 if "train loss" in json.loads(el.proto.spec)["layout"]["title"]["text"])
    by_phase = {t["name"]: t for t in strip["data"] if t["name"] in PHASE_COLOURS}
    assert {p: len(array(t["x"])) for p, t in by_phase.items()} == counts
    assert all(t["marker"]["color"] == PHASE_COLOURS[p] for p, t in by_phase.items())
