"""What to change (analysis.taxonomy.advice): the nearest phase IV-B cells of a map to a cell, the knob changes
in words, the test score there, and the CLI (`phasezoo advise`).

Oracles: the nearest IV-B cells by brute force over every cell of hand-built labelled grids (L1 of grid-index
steps, ties to the higher test accuracy); the knob words written out by hand for each built-in zoo's knobs; the
default zoo's own written map (data/zoos/mnist1d-mlp/phases.parquet) for its start cell width 32, batch size 64."""
import numpy as np
import polars as pl
import pytest
from streamlit.testing.v1 import AppTest

from analysis.taxonomy.advice import (
    ALREADY,
    KNOB_WORDS,
    MOVE,
    NONE,
    SCORES,
    Change,
    Score,
    advise,
    advise_cell,
    grid_value,
    main,
    parse_cell,
)
from data.zoo.spec import load_spec
from tests.conftest import ROOT

SPECS = {p.stem: load_spec(p) for p in sorted((ROOT / "data" / "specs").glob("*.toml"))}
MLP = SPECS["mnist1d-mlp"]  # width (2 … 256) × batch_size (8 … 1024), 8 × 8
WIDTHS, BATCHES = sorted(MLP.grid["width"]), sorted(MLP.grid["batch_size"])
ZOO = ROOT / "data" / "zoos" / "mnist1d-mlp"


def grid(phases: dict, acc: dict | None = None, default: str = "I", std: float = 0.01) -> pl.DataFrame:
    """A labelled 8 × 8 table of MLP's grid: `phases[(width, batch)]` (else `default`), test accuracy `acc`
    (else 0.5) ± `std` over 3 seeds."""
    rows = [{"width": w, "batch_size": b, "phase": phases.get((w, b), default), "near_boundary": False,
             "test_acc": (acc or {}).get((w, b), 0.5), "test_acc_std": std, "test_acc_n": 3}
            for w in WIDTHS for b in BATCHES]
    return pl.DataFrame(rows)


def brute_force(table: pl.DataFrame, start: tuple, k: int) -> list[tuple]:
    """The k nearest IV-B cells: every cell's L1 distance in grid steps, ties to the higher accuracy."""
    iw, ib = WIDTHS.index(start[0]), BATCHES.index(start[1])
    found = [(abs(WIDTHS.index(r["width"]) - iw) + abs(BATCHES.index(r["batch_size"]) - ib), -r["test_acc"],
              (r["width"], r["batch_size"])) for r in table.iter_rows(named=True) if r["phase"] == "IV-B"]
    return [(cell, d) for d, _, cell in sorted(found)[:k]]


# ----------------------------------------------------------------------------- 1. the nearest IV-B cells
@pytest.mark.parametrize("seed", range(20))
def test_the_nearest_iv_b_cells_are_the_brute_force_ones(seed):
    rng = np.random.default_rng(seed)
    cells = [(w, b) for w in WIDTHS for b in BATCHES]
    phases = {c: p for c, p in zip(cells, rng.choice(["I", "II", "III", "IV-A", "IV-B"], len(cells),
                                                      p=[0.3, 0.2, 0.2, 0.2, 0.1]))}
    acc = {c: a for c, a in zip(cells, rng.permutation(len(cells)) / 100)}  # distinct: no tie left open
    table = grid(phases, acc)
    start = cells[rng.integers(len(cells))]
    if phases[start] == "IV-B":
        phases[start] = "I"
        table = grid(phases, acc)
    k = int(rng.integers(1, 6))
    advice = advise(table, MLP, *start, k=k)
    want = brute_force(table, start, k)
    assert advice.status == (MOVE if want else NONE)
    assert [(m.cell, m.steps) for m in advice.moves] == want
    assert advice.n_target == sum(p == "IV-B" for p in phases.values())
    for m in advice.moves:  # each move's changes lead from the start to its cell, steps signed along the grid
        moved = dict(zip(("width", "batch_size"), start)) | {c.knob: c.after for c in m.changes}
        assert (moved["width"], moved["batch_size"]) == m.cell
        assert sum(abs(c.steps) for c in m.changes) == m.steps
        assert m.phase_from == phases[start] and m.phase_to == "IV-B"
        assert m.score.mean == pytest.approx(acc[m.cell])


def test_ties_go_to_the_better_score_then_to_fewer_knobs():
    # from (32, 64): (64, 64) and (32, 128) are 1 step, (64, 128) 2 steps and (128, 64) 2 steps
    table = grid({(64, 64): "IV-B", (32, 128): "IV-B", (64, 128): "IV-B", (128, 64): "IV-B"},
                 {(64, 64): 0.6, (32, 128): 0.7, (64, 128): 0.8, (128, 64): 0.8})
    advice = advise(table, MLP, 32, 64, k=4)
    assert [m.cell for m in advice.moves] == [(32, 128), (64, 64), (128, 64), (64, 128)]
    # equal distance and accuracy: one knob (width ×4) before two (width ×2 and batch ×2)
    assert [len(m.changes) for m in advice.moves] == [1, 1, 1, 2]


def test_the_words_of_a_move_and_of_the_advice():
    table = grid({(128, 64): "IV-B"}, {(32, 64): 0.445, (128, 64): 0.518}, std=0.01)
    advice = advise(table, MLP, 32, 64)
    assert advice.status == MOVE and len(advice.moves) == 1
    m = advice.moves[0]
    assert m.changes == (Change("width", 32, 128, 2),)
    # gain 7.3 points; noise 2·√(2 · 0.01² / 3) = 1.6 points: clear
    assert m.words() == ("4× wider → width=128 · batch_size=64 (2 steps): I → IV-B, test accuracy 51.8 ± 1.0 % "
                         "over 3 seeds (+7.3 points)")
    assert advice.words().splitlines() == [
        "width=32 · batch_size=64 is in phase I, test accuracy 44.5 ± 1.0 % over 3 seeds. The nearest of the "
        "map's 1 IV-B cell, in grid steps (L1):", "  1. " + m.words()]


def test_a_gain_within_the_seeds_noise_says_so():
    kind = SCORES[0]
    start, target = Score(kind, 0.536, 0.003, 3), Score(kind, 0.538, 0.012, 3)
    gain, clear = target.gain(start)
    assert gain == pytest.approx(0.002) and not clear  # 2 · √((0.012² + 0.003²) / 3) = 0.0143 > 0.002
    assert target.gain_words(start) == "+0.2 points, within the seeds' noise"
    assert Score(kind, 0.60, 0.003, 3).gain(start) == (pytest.approx(0.064), True)


# ----------------------------------------------------------------------------- 2. knob changes in words
@pytest.mark.parametrize(("knob", "before", "after", "words"), [
    ("width", 32, 64, "2× wider"),
    ("width", 64, 16, "4× narrower"),
    ("batch_size", 64, 256, "4× larger batch"),
    ("batch_size", 64, 32, "2× smaller batch"),
    ("lr", 1e-3, 3e-3, "lr ×3 (1e-3 → 3e-3)"),
    ("lr", 1e-2, 3e-3, "lr ÷3.33 (1e-2 → 3e-3)"),
    ("lr", 1e-4, 1e-2, "lr ×100 (1e-4 → 1e-2)"),
    ("train_fraction", 0.3, 0.5, "train fraction 0.3 → 0.5"),
    ("beta", 10.0, 5.0, "β 10 → 5"),
    ("depth", 2, 4, "depth 2 → 4 (×2)"),  # no declaration: the fallback
])
def test_knob_words(knob, before, after, words):
    assert Change(knob, before, after, 1).words() == words


@pytest.mark.parametrize("name", sorted(SPECS))
def test_every_builtin_zoos_axis_knobs_are_declared(name):
    """No built-in zoo falls back to the undeclared form, and every neighbouring pair of its grid reads."""
    spec = SPECS[name]
    for knob in (spec.load.knob, spec.temperature.knob):
        assert knob in KNOB_WORDS, knob
        values = sorted(spec.grid[knob])
        for a, b in zip(values, values[1:]):
            up, down = Change(knob, a, b, 1).words(), Change(knob, b, a, -1).words()
            assert up != down and "(×" not in up + down


# ----------------------------------------------------------------------------- 3. already IV-B, no IV-B, uploads
def test_an_iv_b_start_lists_only_better_iv_b_cells():
    table = grid({(256, 64): "IV-B", (256, 32): "IV-B", (128, 64): "IV-B", (128, 32): "IV-B"},
                 {(256, 64): 0.536, (256, 32): 0.538, (128, 64): 0.518, (128, 32): 0.543})
    advice = advise(table, MLP, 256, 64)
    assert advice.status == ALREADY
    assert [m.cell for m in advice.moves] == [(256, 32), (128, 32)]  # (128, 64) scores worse: left out
    assert "IV-B already" in advice.headline() and all(m.phase_from == m.phase_to == "IV-B" for m in advice.moves)


def test_the_best_iv_b_cell_has_nothing_better():
    table = grid({(256, 64): "IV-B", (128, 64): "IV-B"}, {(256, 64): 0.6, (128, 64): 0.5})
    advice = advise(table, MLP, 256, 64)
    assert advice.status == ALREADY and advice.moves == ()
    assert advice.words() == ("width=256 · batch_size=64 is in phase IV-B, test accuracy 60.0 ± 1.0 % over 3 "
                              "seeds. It is IV-B already, and no IV-B cell of the map scores better.")


def test_a_map_without_iv_b_says_so():
    advice = advise(grid({(128, 64): "IV-A"}), MLP, 32, 64)
    assert advice.status == NONE and advice.moves == () and advice.n_target == 0
    assert advice.headline().endswith("The map has no IV-B cell to move to.")


def test_an_upload_is_advised_from_its_own_phase_in_its_cell():
    """An IV-A upload in a cell whose zoo models are IV-B: its own cell is the nearest IV-B (no knob change);
    its own score replaces the cell's."""
    table = grid({(128, 64): "IV-B", (256, 64): "IV-B"}, {(128, 64): 0.52, (256, 64): 0.54})
    upload_cell = {"width": 128, "batch_size": 64, "depth": 2}  # knobs beyond the axes are ignored
    advice = advise_cell(table, MLP, upload_cell, phase="IV-A", score=0.40)
    assert advice.status == MOVE and advice.phase == "IV-A" and advice.score.mean == 0.40
    first = advice.moves[0]
    assert first.cell == (128, 64) and first.steps == 0 and first.change_words() == "no knob change"
    assert first.words().startswith("no knob change → width=128 · batch_size=64 (0 steps): IV-A → IV-B")
    assert [m.cell for m in advice.moves] == [(128, 64), (256, 64)]
    with pytest.raises(ValueError, match=r"lacks knob\(s\) \['batch_size'\]"):
        advise_cell(table, MLP, {"width": 128})


def test_a_regression_zoo_is_scored_by_its_relative_l2_error():
    """No accuracy: the lower relative L2 error wins a tie of distance (convection-pinn's grid, β × lr)."""
    spec = SPECS["convection-pinn"]
    rows = [{"beta": b, "lr": lr, "phase": "IV-B" if (b, lr) in ((5.0, 1e-3), (20.0, 1e-3)) else "I",
             "near_boundary": False, "test_acc": None, "rel_l2_error": {5.0: 0.2, 20.0: 0.05}.get(b, 0.9),
             "rel_l2_error_std": 0.01, "rel_l2_error_n": 3} for b in spec.grid["beta"] for lr in spec.grid["lr"]]
    advice = advise(pl.DataFrame(rows, schema_overrides={"test_acc": pl.Float64}), spec, 10.0, 1e-3)
    assert [m.cell for m in advice.moves] == [(20.0, 1e-3), (5.0, 1e-3)]  # both one step from β = 10
    assert advice.moves[0].changes[0].words() == "β 10 → 20"
    assert advice.moves[0].score.words() == "relative L2 error 0.05 ± 0.01 over 3 seeds"
    assert advice.moves[0].score.gain_words(advice.score) == "−0.85"


# ----------------------------------------------------------------------------- 4. the default zoo's own map
def test_the_default_zoo_widens_from_width_32_batch_64():
    """On the written map of data/zoos/mnist1d-mlp at epoch 300 (what `phasezoo phases` labelled), the start
    cell's phase and its nearest IV-B cells are the map's own, and the nearest is reached by widening alone."""
    written = pl.read_parquet(ZOO / "phases.parquet").filter(pl.col("epoch") == 300)
    table = written.select("width", "batch_size", "phase", "near_boundary", "test_acc", "test_acc_std", "test_acc_n")
    start_phase = table.filter((pl.col("width") == 32) & (pl.col("batch_size") == 64))["phase"].item()
    advice = advise(table, MLP, 32, 64)
    assert advice.phase == start_phase and advice.status == MOVE
    assert [(m.cell, m.steps) for m in advice.moves] == brute_force(table, (32, 64), 3)
    nearest = advice.moves[0]
    assert [c.knob for c in nearest.changes] == ["width"] and nearest.changes[0].after > 32  # widening
    assert nearest.change_words() == f"{nearest.cell[0] // 32}× wider"


# ----------------------------------------------------------------------------- 5. bad input and the CLI
def test_bad_cells_name_the_grid_values():
    with pytest.raises(ValueError, match=r"^width '33' is not a grid value; width values: 2, 4, 8, 16, 32, 64, "
                                         r"128, 256$"):
        grid_value(MLP, "width", "33")
    with pytest.raises(ValueError, match="width '32.0' is not a grid value"):
        grid_value(MLP, "width", "32.0")  # an int grid: text of a float is no value of it
    with pytest.raises(ValueError, match=r"width 32\.5 is not a grid value"):
        advise(grid({}), MLP, 32.5, 64)
    assert parse_cell(MLP, " 32, 64") == (32, 64) and parse_cell(SPECS["modadd-transformer"], "0.5,1e-2") == (0.5, 0.01)
    with pytest.raises(ValueError, match=r"expected LOAD,TEMPERATURE \(width,batch_size\)"):
        parse_cell(MLP, "32")
    with pytest.raises(ValueError, match="at least one"):
        advise(grid({}), MLP, 32, 64, k=0)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['phase'\]"):
        advise(grid({}).drop("phase"), MLP, 32, 64)


def test_the_cli_refuses_a_bad_cell_in_one_line(capsys):
    assert main(["--zoo", str(ZOO), "--cell", "33,64"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: width '33' is not a grid value; width values: 2, 4, 8, 16, 32, 64, 128, 256"]
    assert main(["--zoo", str(ZOO), "--cell", "32,64", "--epoch", "7"]) == 2
    assert capsys.readouterr().err.strip() == ("error: epoch 7 is not an analysis epoch of mnist1d-mlp; its analysis "
                                               "epochs: 150, 300")


def test_the_cli_prints_the_advice_of_the_zoos_map(capsys):
    """`phasezoo advise` on the default zoo: the same moves as the written map gives (its labels are
    label_by_default's of the same cell table)."""
    assert main(["--zoo", str(ZOO), "--cell", "32,64", "--epoch", "300", "-k", "2"]) == 0
    out = capsys.readouterr().out.splitlines()
    written = pl.read_parquet(ZOO / "phases.parquet").filter(pl.col("epoch") == 300)
    want = advise(written, MLP, 32, 64, k=2)
    assert out == [f"mnist1d-mlp, epoch 300: {want.headline()}", *(f"  {i}. {m.words()}"
                                                                    for i, m in enumerate(want.moves, 1))]
    assert len(out) == 3 and "wider" in out[1]


# ----------------------------------------------------------------------------- 6. the cell page
@pytest.mark.slow
def test_cell_detail_says_what_to_change_and_opens_the_target():
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.run()
    at.switch_page("views/cell.py")
    at.session_state["cell_load"], at.session_state["cell_temperature"] = 32, 64
    at.run()
    assert not at.exception, at.exception
    assert "What to change" in [s.value for s in at.subheader]
    written = pl.read_parquet(ZOO / "phases.parquet").filter(pl.col("epoch") == 300)
    want = advise(written, MLP, 32, 64)
    buttons = [b for b in at.button if b.key.startswith("cell_advice_")]
    assert len(buttons) == len(want.moves) and "wider" in buttons[0].label
    buttons[0].click().run()
    assert not at.exception, at.exception
    assert (at.selectbox(key="cell_load").value, at.selectbox(key="cell_temperature").value) == want.moves[0].cell


def test_one_seed_has_no_spread():
    assert Score(SCORES[0], 0.5, None, 1).words() == "test accuracy 50.0 % over 1 seed"


@pytest.mark.slow
def test_cell_detail_on_the_regression_zoo_says_it_has_no_iv_b(monkeypatch):
    """convection-pinn's cells have no accuracy: the start is scored by its relative L2 error, and its map has
    no IV-B cell at either analysis epoch (its written map)."""
    written = pl.read_parquet(ROOT / "data" / "zoos" / "convection-pinn" / "phases.parquet")
    assert not (written["phase"] == "IV-B").any()
    monkeypatch.setenv("PHASEZOO_ZOO", "convection-pinn")
    at = AppTest.from_file(str(ROOT / "dashboard" / "app.py"), default_timeout=120)
    at.switch_page("views/cell.py").run()
    assert not at.exception, at.exception
    said = next(m.value for m in at.markdown if "no IV-B cell" in m.value)
    assert "relative L2 error" in said and not [b for b in at.button if b.key.startswith("cell_advice_")]
