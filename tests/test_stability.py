"""Label stability (analysis.taxonomy.stability): the seed and seed-pair bootstrap against hand-computed cases,
its reproducibility, the phases table's declared schema, and the CLI writing the columns.

Hand count used throughout: with three units of which one is "bad", a resample of three draws with
replacement contains the bad one in 27 − 2³ = 19 of the 3³ = 27 equally likely resamples."""
import itertools
import math

import numpy as np
import polars as pl
import pytest

from analysis.taxonomy.cells import QUANTITIES
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, label
from analysis.taxonomy.stability import (
    LABELS,
    RESAMPLES,
    UNSTABLE,
    CellStability,
    _mean,
    bootstrap,
    stability_summary,
)
from data.zoo.schema import PHASE_LABELS, PHASE_QUANTITIES, SchemaError
from tests.conftest import DEFAULT_ZOO, ROOT

TH = Thresholds(train_loss=0.1, mc=1.0, cka=0.7)
AXES = ("width", "batch_size")


def units(cells: dict[tuple[int, int], dict[str, list]]) -> pl.DataFrame:
    """per_unit_values rows: per cell, train_loss per seed and (mc, cka) per seed pair (None: no value)."""
    rows = []
    for (w, b), q in cells.items():
        for s, v in enumerate(q["train_loss"]):
            rows.append(("train_loss", f"{w}-{b}-s{s}", None, w, b, v))
        for p, (mc, cka) in enumerate(zip(q["mc"], q["cka"])):
            for name, v in (("mc", mc), ("cka", cka)):
                if v is not None:
                    rows.append((name, f"{w}-{b}-s{p}", f"{w}-{b}-t{p}", w, b, v))
    return pl.DataFrame(rows, schema={"quantity": pl.String, "model_id": pl.String, "other_id": pl.String,
                                      "width": pl.Int64, "batch_size": pl.Int64, "value": pl.Float64}, orient="row")


def observed(cells: dict, th) -> pl.DataFrame:
    """The cells' labels from their full means (what cell_table and classify give)."""
    table = pl.DataFrame([(w, b, float(np.mean(q["train_loss"])),
                           float(np.mean([m for m in q["mc"] if m is not None])) if any(
                               m is not None for m in q["mc"]) else None,
                           float(np.mean([c for c in q["cka"] if c is not None])) if any(
                               c is not None for c in q["cka"]) else None) for (w, b), q in cells.items()],
                         schema={"width": pl.Int64, "batch_size": pl.Int64, "train_loss": pl.Float64,
                                 "mc": pl.Float64, "cka": pl.Float64}, orient="row")
    return classify(table, th if isinstance(th, Thresholds) else th(table))


def share(st, i: int, phase: str) -> float:
    return st.counts[i, LABELS.index(phase)] / st.resamples


def within(p_hat: float, p: float, b: int) -> bool:
    """|p̂ − p| within 4 binomial standard errors (a false alarm 6 in 100,000 runs)."""
    return abs(p_hat - p) <= 4 * math.sqrt(p * (1 - p) / b)


SEED_CASE = {(4, 16): {"train_loss": [0.001, 0.001, 1.0], "mc": [0.0, 0.0, 0.0], "cka": [0.9, 0.9, 0.9]}}


def test_seed_bootstrap_exactly_enumerated():
    """All 27 seed resamples of losses [0.001, 0.001, 1.0] through the resampling kernel: the mean exceeds
    τ_L = 0.1 exactly when the 1.0 seed is drawn at least once, in 19 of 27."""
    values, present = np.array([[0.001, 0.001, 1.0]]), np.ones((1, 3), dtype=bool)
    idx = np.array(list(itertools.product(range(3), repeat=3)))[:, None, :]  # (27, 1 cell, 3 draws)
    means = _mean(values, present, idx, np.ones_like(idx, dtype=bool))[:, 0]
    assert len(means) == 27 and int((means > 0.1).sum()) == 19
    assert means.min() == pytest.approx(0.001) and means.max() == pytest.approx(1.0)


def test_seed_bootstrap_against_the_hand_count():
    cells = SEED_CASE
    lab = observed(cells, TH)
    assert lab["phase"].to_list() == ["II"]  # mean loss 0.334 > τ_L, connected
    b = 20_000
    st = bootstrap(units(cells), lab, AXES, TH, resamples=b, seed=1)
    assert within(share(st, 0, "II"), 19 / 27, b) and within(share(st, 0, "IV-B"), 8 / 27, b)
    assert st.counts.sum() == b and not st.rederived
    row = st.frame().row(0, named=True)
    assert row["runner_up"] == "IV-B" and row["stability"] == pytest.approx(share(st, 0, "II"))
    assert row["runner_up_share"] == pytest.approx(1 - row["stability"])  # only two labels occur


def test_pair_bootstrap_draws_a_pairs_mc_and_cka_together():
    """Pairs (mc, cka) = (0, 0.2), (0, 0.2), (−9, 1.0), ε = 1: a resample holding the barrier pair averages
    mc ≤ −3 (III, 19/27); one without it is connected with CKA 0.2 (IV-A, 8/27). Drawing mc and CKA apart
    would pair mc 0 with CKA 1.0 and give IV-B; drawn together, never."""
    cells = {(4, 16): {"train_loss": [0.001] * 3, "mc": [0.0, 0.0, -9.0], "cka": [0.2, 0.2, 1.0]}}
    lab = observed(cells, TH)
    assert lab["phase"].to_list() == ["III"]
    b = 20_000
    st = bootstrap(units(cells), lab, AXES, TH, resamples=b, seed=2)
    assert within(share(st, 0, "III"), 19 / 27, b) and within(share(st, 0, "IV-A"), 8 / 27, b)
    assert share(st, 0, "IV-B") == 0 and st.frame()["runner_up"].to_list() == ["IV-A"]


def test_a_pair_without_cka_is_left_out_of_the_cka_mean_only():
    """Pairs with mc 0 and CKA (0.9, missing, missing): resamples without the first pair have no CKA, so
    their fitted, connected cell is unclassified — (2/3)³ = 8/27 of them."""
    cells = {(4, 16): {"train_loss": [0.001] * 3, "mc": [0.0, 0.0, 0.0], "cka": [0.9, None, None]}}
    lab = observed(cells, TH)
    b = 20_000
    st = bootstrap(units(cells), lab, AXES, TH, resamples=b, seed=3)
    assert lab["phase"].to_list() == ["IV-B"]
    assert within(share(st, 0, "IV-B"), 19 / 27, b) and within(share(st, 0, "unclassified"), 8 / 27, b)


@pytest.mark.slow
def test_rederived_thresholds_move_with_the_resampled_grid():
    """Cell A's losses (0.002, 0.002, 0.02) set τ_L = 10 × its resampled mean (the grid's smallest); cell B
    (0.05 on every seed) is under-fitted only when τ_L < 0.05, i.e. when A's resample has no 0.02 seed:
    8/27. With the observed thresholds fixed, B never moves."""
    cells = {(4, 16): {"train_loss": [0.002, 0.002, 0.02], "mc": [0.0] * 3, "cka": [0.5] * 3},
             (64, 16): {"train_loss": [0.05] * 3, "mc": [0.0] * 3, "cka": [0.5] * 3}}
    lab = observed(cells, default_thresholds)
    assert lab["phase"].to_list() == ["IV-B", "IV-B"]  # τ_L = 0.08 from A's mean 0.008
    b = 2000
    st = bootstrap(units(cells), lab, AXES, default_thresholds, resamples=b, seed=4)
    assert st.rederived and share(st, 0, "IV-B") == 1.0
    assert within(share(st, 1, "IV-B"), 19 / 27, b) and within(share(st, 1, "II"), 8 / 27, b)
    fixed = bootstrap(units(cells), lab, AXES, default_thresholds(lab), resamples=200, seed=4)
    assert fixed.frame()["stability"].to_list() == [1.0, 1.0] and fixed.frame()["runner_up"].to_list() == [None] * 2


def test_cells_that_cannot_be_resampled_have_no_stability():
    cells = {(4, 16): {"train_loss": [0.5], "mc": [], "cka": []},  # one seed, no pair: unclassified
             (4, 64): {"train_loss": [0.5, 0.6], "mc": [-3.0], "cka": [0.4]},  # two seeds, one pair
             (16, 16): {"train_loss": [0.5, 0.6, 0.7], "mc": [-3.0, -2.0, -4.0], "cka": [0.4] * 3}}
    lab = observed(cells, TH)
    frame = bootstrap(units(cells), lab, AXES, TH, resamples=50).frame()
    assert frame["stability"].to_list() == [None, None, 1.0]  # every resample of the third: mc ≤ −2, loss > τ_L
    assert frame["runner_up"].null_count() == 3 and frame.schema["stability"] == pl.Float64
    words = CellStability("I", None, None, None, 200).sentence()
    assert "cannot resample one seed" in words


def test_reproducible_with_a_seed():
    cells = {**SEED_CASE, (16, 16): {"train_loss": [0.2, 0.05, 0.01], "mc": [-2.0, 0.5, -0.5],
                                     "cka": [0.3, 0.8, 0.9]}}
    u, lab = units(cells), observed(cells, TH)
    a, b = (bootstrap(u, lab, AXES, TH, seed=7) for _ in range(2))
    assert np.array_equal(a.counts, b.counts) and a.frame().equals(b.frame())
    c = bootstrap(u, lab, AXES, TH, seed=8)
    assert not np.array_equal(a.counts, c.counts)  # another seed, other draws
    assert a.resamples == RESAMPLES and a.counts.sum(axis=1).tolist() == [RESAMPLES] * 2
    # the row order of the units does not matter: they are sorted before drawing
    assert bootstrap(u.reverse(), lab, AXES, TH, seed=7).frame().equals(a.frame())


def test_the_runner_up_and_the_sentence():
    st = CellStability("III", 0.93, "IV-A", 0.07, 200)
    assert st.sentence() == "stable: 93 % of 200 seed resamples keep it; runner-up IV-A 7 %"
    assert st.stderr == pytest.approx(math.sqrt(0.93 * 0.07 / 200)) and not st.unstable
    assert CellStability("III", 0.62, "I", 0.38, 200).unstable and UNSTABLE == 0.8
    assert 0.5 / math.sqrt(RESAMPLES) <= 0.0354  # the docstring's bound on the Monte-Carlo error
    with pytest.raises(ValueError, match="resamples must be at least 1"):
        bootstrap(units(SEED_CASE), observed(SEED_CASE, TH), AXES, TH, resamples=0)


def test_every_label_a_resample_gets_is_the_rules_label():
    """The labels counted are `label`'s: relabelling the observed means gives the observed phase."""
    cells = {(4, 16): {"train_loss": [0.05] * 3, "mc": [-0.5] * 3, "cka": [0.9] * 3}}
    lab = observed(cells, TH)
    st = bootstrap(units(cells), lab, AXES, TH, resamples=30)
    assert label(0.05, -0.5, 0.9, TH) == "IV-B" == lab["phase"][0] and share(st, 0, "IV-B") == 1.0


# ----------------------------------------------------------------------------- the phases table
def test_the_phases_schema_follows_the_quantities():
    assert PHASE_QUANTITIES == tuple(QUANTITIES)


@pytest.mark.parametrize("zoo", ["mnist1d-mlp", "mnist1d-cnn", "convection-pinn", "modadd-transformer"])
def test_committed_phases_tables_match_their_schema(zoo):
    from data.zoo.store import Zoo

    z = Zoo.open(ROOT / "data" / "zoos" / zoo)
    table = pl.read_parquet(z.root / "phases.parquet")
    axes = [z.spec.load.knob, z.spec.temperature.knob]
    PHASE_LABELS.validate(table, {a: z.spec.knob_dtypes[a] for a in axes})
    assert table["stability"].drop_nulls().is_between(0, 1).all()
    # a runner-up is another label, and only where some resample left the phase
    has = table.filter(pl.col("runner_up").is_not_null())
    assert (has["runner_up"] != has["phase"]).all() and (has["runner_up_share"] <= 1 - has["stability"] + 1e-12).all()
    assert table.filter(pl.col("stability") == 1.0)["runner_up"].null_count() == (table["stability"] == 1.0).sum()
    with pytest.raises(SchemaError, match="missing column 'stability'"):
        PHASE_LABELS.validate(table.drop("stability"), {a: z.spec.knob_dtypes[a] for a in axes})


@pytest.mark.slow
def test_cli_writes_the_stability_columns(tmp_path, capsys):
    """`phasezoo phases --zoo` at one epoch: the committed table's rows of that epoch, stability included."""
    from analysis.taxonomy.phases import main

    out = tmp_path / "phases.parquet"
    assert main(["--zoo", str(DEFAULT_ZOO), "--epoch", "300", "--out", str(out)]) == 0
    written = pl.read_parquet(out)
    assert written.columns[-3:] == ["stability", "runner_up", "runner_up_share"]
    assert written.equals(pl.read_parquet(DEFAULT_ZOO / "phases.parquet").filter(pl.col("epoch") == 300))
    text = capsys.readouterr().out
    unstable = written.filter(pl.col("stability") < UNSTABLE).height
    assert f"stability ({RESAMPLES} seed/pair resamples): {unstable} of 64 cells below {UNSTABLE}" in text
    assert stability_summary(written, AXES) in text


# ----------------------------------------------------------------------------- the phase map
def test_the_phase_map_frames_unstable_cells_and_hovers_the_stability():
    from dashboard.charts import phase_map
    from dashboard.charts.style import NEUTRAL
    from data.zoo.spec import parse_spec
    from tests.conftest import TINY_SPEC

    spec = parse_spec(TINY_SPEC)  # width 4 / 16 / 64 × batch_size 16 / 64
    cells = [(w, b) for w in (4, 16, 64) for b in (16, 64)]
    labelled = pl.DataFrame({
        "width": [c[0] for c in cells], "batch_size": [c[1] for c in cells],
        "phase": ["I", "II", "III", "IV-A", "IV-B", "IV-B"], "near_boundary": [False] * 6,
        "train_loss": [0.1] * 6, "margin_loss": [1.0] * 6, "mc": [0.0] * 6, "margin_mc": [1.0] * 6,
        "cka": [0.9] * 6, "margin_cka": [0.1] * 6,
        "stability": [1.0, 0.62, 0.95, None, 0.79, 0.8], "runner_up": [None, "I", "IV-A", None, "IV-A", "IV-A"],
        "runner_up_share": [None, 0.38, 0.05, None, 0.21, 0.2]})
    fig = phase_map(labelled, spec, title="m")
    heat = fig.data[0]
    frames = [t for t in fig.data if t.legendgroup == "unstable" and not t.showlegend]
    assert len(frames) == 1 and frames[0].marker.symbol == "square-open"
    # 0.62 and 0.79 are below UNSTABLE = 0.8; 0.8 itself is not; a null stability is not "unstable"
    assert sorted(zip(frames[0].x, frames[0].y)) == [("4", "64"), ("64", "16")]
    text = {(x, y): heat.text[i][j] for i, y in enumerate(heat.y) for j, x in enumerate(heat.x)}
    assert text[("4", "64")].split()[0] == "II" and "0.62" in text[("4", "64")] and "0.79" in text[("64", "16")]
    assert text[("64", "64")] == "IV-B" and text[("4", "16")] == "I"
    legend = [t for t in fig.data if t.showlegend]
    assert legend[-1].name == f"unstable (< {UNSTABLE:g})" and legend[-1].marker.color == NEUTRAL
    hover = {(x, y): heat.customdata[i][j] for i, y in enumerate(heat.y) for j, x in enumerate(heat.x)}
    assert "stability 0.62 of seed resamples keep it; runner-up I 0.38" in hover[("4", "64")]
    assert "fewer than two seeds or seed pairs" in hover[("16", "64")]
    assert "no resample gave another label" in hover[("4", "16")]
