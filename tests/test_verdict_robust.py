"""analysis.upload.verdict under attack: every file of an upload gets its own verdict or its own one-line refusal
whatever goes wrong inside, recognition survives any key string, a zoo model's half-precision copy is that
model, a verdict is never more confident than its inputs, and file names are shown as text.

Oracles: the committed zoo (data/zoos/mnist1d-mlp) for what a zoo checkpoint is, IEEE rounding for what a
half-precision copy may differ by, CommonMark's escaping rules for what renders literally. The full analyses
here measure CKA as their only pair metric (PAIRS patched): what is tested is which models are paired and
what becomes of failures, not mode connectivity, which costs most of an upload's time.
"""
from __future__ import annotations

import logging
import random
import re
import string
import sys
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor

import pytest
import torch
from safetensors.torch import load_file, save

import analysis.upload.verdict as V
from analysis.upload.failures import display_name, in_worker
from analysis.upload.placement import near_copies, precision
from analysis.upload.recognise import recognise
from analysis.upload.report import KnobValue
from data.models.archs import ARCHS, build_model, match_shapes
from data.training.workers import CONTEXT
from data.zoo.store import Zoo
from tests.conftest import DEFAULT_ZOO
from tests.test_verdict import W8, _private_cache, ckpt, mlp_state, perturbed  # noqa: F401  (the module's cache)

CHEAP_PAIRS = ("cka_logits_test",)
W8_SEEDS = {f"width008-batch_size0064-s{s}" for s in (0, 1, 2)}


@pytest.fixture(scope="module")
def zoo() -> Zoo:
    return Zoo.open(DEFAULT_ZOO)


@pytest.fixture(scope="module")
def w8() -> dict:
    return load_file(str(ckpt(W8)))


@pytest.fixture()
def cheap(monkeypatch):
    monkeypatch.setattr(V, "PAIRS", CHEAP_PAIRS)


def renamed(state: dict, old: str, new: str) -> dict:
    return {(new if k == old else k): v for k, v in state.items()}


# ----------------------------------------------------------------------------- 1. recognition and arbitrary keys
HOSTILE_KEYS = ["01.weight", "\u0661.weight", "\u00b2.weight", "layers.\u0661.weight", "", ".", "..weight",
                "1.", ".weight", "features.", "features.0.weight.", "blocks.0.qkv.weight", "embed.weight",
                "conv1.weight", "\x00.weight", "1.weight\n", "-1.weight", "1e3.weight", "𝟙.weight"]


@pytest.mark.parametrize("key", HOSTILE_KEYS)
def test_an_unrecognised_key_simply_does_not_match(w8, zoo, key):
    """A zoo model with one key replaced: no architecture raises, and none matches (none has that key)."""
    state = renamed(w8, "1.weight", key)
    shapes = {k: tuple(v.shape) for k, v in state.items()}
    for arch in ARCHS:
        m = match_shapes(arch, shapes, (40,), 10)
        assert not m.ok and m.problems, (arch, m)
    [match] = recognise(state, [zoo])
    assert not match.ok


def test_random_key_soup_never_raises():
    """Key strings from digits of several scripts, dots and the architectures' own words, with random
    ranks and sizes (zero included): every architecture answers with a ShapeMatch."""
    rng = random.Random(0)
    atoms = ["0", "1", "01", "\u0661", "\u00b2", "\u2460", "features", "blocks", "qkv", "embed", "conv1", "weight",
             "bias", "", "head", "x" * 3, string.punctuation[rng.randrange(32)]]
    for _ in range(300):
        shapes = {".".join(rng.choice(atoms) for _ in range(rng.randint(1, 4))):
                  tuple(rng.choice([0, 1, 3, 40]) for _ in range(rng.randint(0, 4))) for _ in range(rng.randint(1, 6))}
        for arch in ARCHS:
            assert isinstance(match_shapes(arch, shapes, (40,), 10).ok, bool)


def test_a_zoo_comparison_that_raises_is_no_match(w8, zoo, monkeypatch):
    import analysis.upload.recognise as R

    monkeypatch.setattr(R, "match_shapes", lambda *a: 1 / 0)
    [match] = recognise(w8, [zoo])
    assert not match.ok and "could not be compared" in match.problems[0]


def test_the_zoo_keys_still_match(w8, zoo):
    [match] = recognise(w8, [zoo])
    assert match.ok and match.arch_params["width"] == 8


# ----------------------------------------------------------------------------- 2. one file, one result
class Unforeseen(Exception):
    """An exception type no handler names."""


@pytest.fixture(scope="module")
def mixed(w8):
    """One upload: a zoo model, a file whose analysis raises an unforeseen exception inside (its data-free
    report, patched), a real hostile file with a zero-size weight matrix, one with a `01.weight` key and one
    whose name carries directories."""
    cnn = save(build_model("cnn1d", (40,), 10, {"width": 4, "depth": 3}, seed=0).state_dict())
    files = [("zoo-model.safetensors", save(w8)), ("boom.safetensors", cnn),
             ("zero.safetensors", save({**mlp_state(4), "7.weight": torch.zeros(0, 4)})),
             ("digit.safetensors", save(renamed(w8, "1.weight", "01.weight"))),
             ("../../etc/passwd.safetensors", b"")]
    real = V.weight_report

    def weight_report(state):
        if "features.0.weight" in state:
            raise Unforeseen("secret internal detail")
        return real(state)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "weight_report", weight_report)
        mp.setattr(V, "PAIRS", CHEAP_PAIRS)
        return V.analyse(files, [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)


def test_every_file_gets_its_own_result(mixed):
    assert [r.file for r in mixed] == ["zoo-model.safetensors", "boom.safetensors", "zero.safetensors",
                                       "digit.safetensors", "passwd.safetensors"]
    good, boom, zero, digit, passwd = mixed
    assert isinstance(good, V.Report) and good.phase in {"I", "II", "III", "IV-A", "IV-B"}
    assert good.placement.identical_to == W8
    assert isinstance(boom, V.Refused)
    assert isinstance(zero, (V.Report, V.Refused))  # its own result, whichever (analysis.kernels.weights decides)
    assert isinstance(digit, V.Report) and digit.zoo is None  # recognised as nothing: the data-free report
    assert isinstance(passwd, V.Refused) and passwd.error == "passwd.safetensors: is empty (0 bytes)"


def test_a_refusal_is_one_line_without_the_internal_text(mixed, caplog):
    boom = mixed[1]
    assert boom.error.startswith("boom.safetensors: the analysis failed (at: data-free weight report)")
    assert "secret" not in boom.error and "Unforeseen" not in boom.error and "\n" not in boom.error
    assert "logged" in boom.error


def test_the_traceback_goes_to_the_log(w8, caplog, monkeypatch):
    monkeypatch.setattr(V, "recognise", lambda *a: (_ for _ in ()).throw(Unforeseen("inside")))
    with caplog.at_level(logging.ERROR, logger="phasezoo.verdict"):
        [r] = V.analyse([("a.safetensors", save(w8))], [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)
    assert isinstance(r, V.Refused) and "recognising the architecture" in r.error
    [rec] = [x for x in caplog.records if x.name == "phasezoo.verdict"]
    assert rec.exc_info and rec.exc_info[0] is Unforeseen


class FailingPool:
    """An executor whose jobs fail as a worker's would: the future holds the exception (or submit raises,
    as a broken pool's does)."""

    def __init__(self, error: BaseException, at_submit: bool = False):
        self.error, self.at_submit, self.submitted = error, at_submit, 0

    def submit(self, fn, *args):
        self.submitted += 1
        if self.at_submit:
            raise self.error
        f = Future()
        f.set_exception(self.error)
        return f


@pytest.mark.parametrize("pool", [FailingPool(Unforeseen("in a worker")),
                                  FailingPool(BrokenExecutor("dead"), at_submit=True)], ids=["raises", "broken"])
def test_jobs_that_fail_in_workers_leave_a_verdict_without_them(w8, pool, cheap):
    [r] = V.analyse([("a.safetensors", save(w8))], [Zoo.open(DEFAULT_ZOO)], executor=pool, cache=False)
    assert pool.submitted == 3  # the Hessian and the two other seeds of its cell
    assert isinstance(r, V.Report)
    assert r.errors.count("Hessian failed (an internal error, logged)") == 1
    assert sum(e.startswith("pairing with width008-") for e in r.errors) == 2
    assert r.rule.phase == "unclassified" and r.phase is None  # no pairs: no rule verdict; no Hessian: none
    assert r.classifier.phase is None and "hessian" in r.classifier.withheld


def test_a_report_with_failed_jobs_is_not_cached(w8, cheap, tmp_path, monkeypatch):
    """A job that failed for a transient reason (a worker killed, a broken pool) must not stick: the next
    analysis of the same file measures again instead of serving the failure from the cache."""
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))
    file = ("a.safetensors", save(w8))
    pool = FailingPool(BrokenExecutor("dead"), at_submit=True)
    [first] = V.analyse([file], [Zoo.open(DEFAULT_ZOO)], executor=pool)
    assert first.errors and not list((tmp_path / "reports").glob("*.json"))
    again = FailingPool(BrokenExecutor("dead"), at_submit=True)
    V.analyse([file], [Zoo.open(DEFAULT_ZOO)], executor=again)
    assert again.submitted == 3  # measured again, not read back


@pytest.mark.slow
def test_an_exception_in_a_real_worker_process_fails_that_job_only(w8, cheap):
    """Jobs that raise in the worker processes (here: a device name torch refuses, resolved there)."""
    pool = V.process_pool(1)
    try:
        [r] = V.analyse([("a.safetensors", save(w8))], [Zoo.open(DEFAULT_ZOO)], executor=pool,
                        device="no-such-device", cache=False)
    finally:
        pool.shutdown(cancel_futures=True)
    assert isinstance(r, V.Report), r
    assert "Hessian failed (an internal error, logged)" in r.errors and r.classifier.phase is None
    assert r.metrics  # its own quick metrics, measured in this process, are kept


@pytest.mark.slow
def test_a_base_exception_in_a_worker_does_not_stop_the_caller():
    """sys.exit in a worker comes back from concurrent.futures as SystemExit in the caller, unless wrapped."""
    with ProcessPoolExecutor(1, mp_context=CONTEXT) as pool:
        with pytest.raises(RuntimeError, match="SystemExit raised in a worker process"):
            pool.submit(in_worker, sys.exit, 3).result()
        assert pool.submit(in_worker, max, 1, 2).result() == 2


def test_the_callers_own_stop_still_goes_up(w8, monkeypatch):
    class Stop(Exception):
        pass

    def progress(what, frac):
        if "recognising" in what:
            raise Stop

    with pytest.raises(Stop):
        V.analyse([("a.safetensors", save(w8))], [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False,
                  progress=progress)


# ----------------------------------------------------------------------------- 3. near-copies of zoo models
def test_precision_of_a_file():
    t = torch.randn(50, 40)
    assert precision({"w": t}) == (2.0**-24, 0.0)
    assert precision({"w": t.half()}) == (2.0**-11, 2.0**-25)
    assert precision({"w": t.bfloat16()}) == (2.0**-8, 0.0)
    assert precision({"w": t.bfloat16().float()}) == (2.0**-8, 0.0)  # a bf16 copy saved again as float32
    assert precision({"w": t.half().double()}) == (2.0**-11, 2.0**-25)


def test_near_copies_within_the_files_precision_only(w8, zoo):
    assert near_copies(w8, {k: v.half() for k, v in w8.items()})
    assert near_copies(w8, {k: v.bfloat16() for k, v in w8.items()})
    assert not near_copies(w8, perturbed(w8, 1, scale=1e-3))  # float32: 1e-3 noise is a different model
    assert not near_copies(w8, zoo.load_state_dict("width008-batch_size0064-s1", 300))  # another seed
    assert not near_copies(w8, mlp_state(16))


@pytest.fixture(scope="module")
def halves(w8):
    """The fp16 and the bf16 round trip of a zoo model, uploaded together."""
    files = [("fp16.safetensors", save({k: v.half() for k, v in w8.items()})),
             ("bf16.safetensors", save({k: v.bfloat16() for k, v in w8.items()}))]
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "PAIRS", CHEAP_PAIRS)
        return V.analyse(files, [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)


@pytest.mark.parametrize("i", [0, 1], ids=["fp16", "bf16"])
def test_a_half_precision_copy_is_its_zoo_model(halves, i):
    r = halves[i]
    assert isinstance(r, V.Report), r
    assert r.placement.identical_to == W8
    assert r.cell["batch_size"] == KnobValue(64, 64, "identical zoo model")
    # paired with the two other seeds of its cell: not with its source, nor with the other copy of it
    assert r.rule.pairs_with == "zoo seeds" and {p.other for p in r.pairs} == W8_SEEDS - {W8}
    assert any(n.startswith(f"not paired with {halves[1 - i].file}") for n in r.notes)


# ----------------------------------------------------------------------------- 4. never more confident than the inputs
@pytest.fixture(scope="module")
def scaled(w8):
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(V, "PAIRS", CHEAP_PAIRS)
        [r] = V.analyse([("huge.safetensors", save({k: v * 1e30 for k, v in w8.items()}))],
                        [Zoo.open(DEFAULT_ZOO)], executor=None, cache=False)
    return r


def test_non_finite_metrics_give_no_phase(scaled):
    r = scaled
    assert isinstance(r, V.Report) and r.zoo is not None
    assert r.rule.phase == "unclassified" and r.phase is None
    assert r.classifier.phase is None and r.classifier.probabilities == {}
    assert "performance" in r.classifier.withheld and "non-finite" in r.classifier.withheld
    assert "could not be measured" in r.rule.reason
    text = V.summary(r)
    assert "PHASE (classifier): none" in text and "IV-A" not in text.split("PHASE (classifier)")[1].split("\n")[0]


def test_features_outside_the_training_range_are_named():
    """A model whose one feature lies far beyond every training model's is flagged, with that feature."""
    from analysis.taxonomy.classifier import fit, predict, training_set

    table = training_set(DEFAULT_ZOO)
    feats = ("train_loss", "spectral_norm", "n_params")
    fitted = fit(table, feats)
    typical = table.row(0, named=True)
    inside = predict(fitted, {f: typical[f] for f in feats})
    assert not inside["outside"] and inside["phase"] is not None
    outside = predict(fitted, {**{f: typical[f] for f in feats}, "spectral_norm": fitted.hi[1] + 60.0})
    assert outside["extrapolating"] and set(outside["outside"]) == {"spectral_norm"}
    assert outside["phase"] is not None  # flagged, not hidden: the rules' verdict is the one to trust
    nan = predict(fitted, {**{f: typical[f] for f in feats}, "train_loss": float("inf")})
    assert nan["phase"] is None and nan["probabilities"] == {} and "non-finite train_loss" in nan["withheld"]


# ----------------------------------------------------------------------------- 5. names as text
# a "/" is a path separator (no file system allows it in a name): "[a](http://x)" is shown as "x)"
HOSTILE_NAMES = [f"{n}.safetensors" for n in ("**x**", "[a](http:x)", ":smile:", "www.x.com",
                                               "_a_ `b` $c$ <i>d</i> &amp; #e", "1. item", "- item", "a\\*b",
                                               "[a](http://x)", "<https:x> a@b.c")]


def test_display_names_drop_directories():
    assert display_name("../../etc/x.pt") == "x.pt"
    assert display_name("C:\\Users\\me\\x.pt") == "x.pt"
    assert display_name("a\nb\x00.pt") == "a b?.pt"
    [r] = V.analyse([("../../etc/x.pt", b"")], [], executor=None, cache=False)
    assert r.file == "x.pt" and r.error.startswith("x.pt: ")


# Markdown that renders as text: outside a backslash escape, no character CommonMark/GFM or Streamlit's
# extensions act on, no autolink start, no emoji shortcode.
_ESCAPE = re.compile(r"\\([!-/:-@\[-`{-~])")


def renders_literally(md: str, text: str) -> bool:
    plain = _ESCAPE.sub("\x01", md)  # escaped characters: inert
    active = re.search(r"[*_`\[\]()<>$&~|!#@\\]|://|www\.|:[\w+-]+:|^\s*([-+=]|\d+[.)])\s", plain)
    return active is None and _ESCAPE.sub(r"\1", md).replace("\u2060", "") == text


def test_upload_page_shows_names_literally(tmp_path, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from tests.test_dashboard import APP

    monkeypatch.setenv("PHASEZOO_UPLOAD_WORKERS", "0")
    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path / "cache"))
    at = AppTest.from_file(APP, default_timeout=120)
    at.run()
    at.switch_page("views/upload.py").run()
    cnn = save(build_model("cnn1d", (40,), 10, {"width": 4, "depth": 2}, seed=0).state_dict())  # matches no zoo
    uploads = [(n, b"" if i % 2 else cnn, "application/octet-stream") for i, n in enumerate(HOSTILE_NAMES)]
    at.file_uploader(key="upload_files").set_value(uploads + [("../../etc/y.safetensors", cnn, "x")]).run()
    assert not at.exception, at.exception
    headers = [h.value for h in at.header]
    assert len(headers) == len(HOSTILE_NAMES) + 1
    for md, name in zip(headers, [*map(display_name, HOSTILE_NAMES), "y.safetensors"]):
        assert renders_literally(md, name), (md, name)
    refusals = [e.value for e in at.error]
    assert len(refusals) == len(HOSTILE_NAMES) // 2
    for md, name in zip(refusals, map(display_name, HOSTILE_NAMES[1::2])):
        assert renders_literally(md, f"{name}: is empty (0 bytes)"), md


def test_literal_markdown_checker_can_fail():
    assert not renders_literally("**x**.pt", "**x**.pt") and not renders_literally("[a](http://x)", "[a](http://x)")
    assert not renders_literally(":smile:", ":smile:") and renders_literally(r"\*\*x\*\*.pt", "**x**.pt")


def test_the_classifier_validation_is_kept_on_disk_per_zoo_state(tmp_path, monkeypatch):
    """The leave-one-cell-out figures (64 fits) are computed once per zoo state: a second process reads them
    back equal; a damaged entry is computed again."""
    from analysis.taxonomy.classifier import FEATURES
    from analysis.upload import zoo_side

    monkeypatch.setenv("PHASEZOO_CACHE", str(tmp_path))
    state, features = zoo_side.zoo_state(Zoo.open(DEFAULT_ZOO)), tuple(FEATURES)
    zoo_side.validation.cache_clear()
    fresh = zoo_side.validation(state, features)
    [entry] = (tmp_path / "validation").glob("*.json")
    zoo_side.validation.cache_clear()  # as a new process would start
    assert zoo_side.validation(state, features) == fresh and 0 < fresh.accuracy <= 1
    entry.write_text("{not json")
    zoo_side.validation.cache_clear()
    assert zoo_side.validation(state, features) == fresh
    zoo_side.validation.cache_clear()
