"""Phase coverage (analysis/studies/coverage.py): the order's distance to IV-B > IV-A > II ≈ III > I, IV-A's
regions on the grid, the issue's acceptance rule and the CLI, on hand-built labelled tables."""
import math

import polars as pl
import pytest

from analysis.studies.coverage import COMPARISON_SCHEMA, acceptance, comparison, order_distance, regions, zoo_coverage
from phasezoo.cli import main

TARGET_ACC = {"IV-B": [0.60], "IV-A": [0.55], "II": [0.45], "III": [0.40], "I": [0.30]}


def table(rows: list[str], acc: dict[str, float]) -> pl.DataFrame:
    """A labelled cell table from a text map: row j is batch 2**j, column i width 2**i; each cell's test
    accuracy is its phase's entry in `acc`."""
    out = [{"width": 2 ** i, "batch_size": 2 ** j, "phase": p, "test_acc": acc.get(p, float("nan"))}
           for j, row in enumerate(rows) for i, p in enumerate(row.split())]
    return pl.DataFrame(out)


def test_the_targets_own_order_is_at_distance_zero_and_its_reverse_at_one():
    d = order_distance(TARGET_ACC)
    assert (d.discordant, d.comparable, d.distance, d.wrong_pairs) == (0.0, 9, 0.0, ())  # 10 pairs − II–III
    reverse = {"IV-B": [0.1], "IV-A": [0.2], "II": [0.3], "III": [0.35], "I": [0.5]}
    assert order_distance(reverse).distance == 1.0


def test_ii_and_iii_are_a_tie_in_the_target_either_order_agrees():
    swapped = {**TARGET_ACC, "II": [0.40], "III": [0.45]}
    assert order_distance(swapped).distance == 0.0


def test_the_default_zoos_order_by_hand():
    # docs/zoos.md's medians: IV-A 0.542 > IV-B 0.515 > III 0.475 > I 0.407 > II 0.283: two pairs wrong of 9
    d = order_distance({"IV-B": [0.515], "IV-A": [0.542], "II": [0.283], "III": [0.475], "I": [0.407]})
    assert d.discordant == 2 and d.comparable == 9 and d.distance == pytest.approx(2 / 9)
    assert set(d.wrong_pairs) == {"IV-A > IV-B", "I > II"}
    assert d.stderr == pytest.approx(0.0, abs=1e-12)  # one cell per phase: every resample is the table itself


def test_an_exact_tie_of_medians_counts_half_and_absent_phases_drop_out():
    d = order_distance({"IV-B": [0.5], "IV-A": [0.5], "I": [0.3]})
    assert (d.discordant, d.comparable) == (0.5, 3) and d.wrong_pairs == ("IV-A = IV-B",)
    assert math.isnan(order_distance({"II": [0.3], "III": [0.4]}).distance)  # no strictly ordered pair


def test_the_bootstrap_error_is_positive_when_phases_overlap():
    # medians IV-B 0.55 > IV-A 0.52 (the target's order), but a resample can give IV-B 0.50 and IV-A 0.58
    d = order_distance({"IV-B": [0.50, 0.60, 0.55], "IV-A": [0.45, 0.58, 0.52], "I": [0.3]})
    assert d.distance == 0.0 and 0 < d.stderr < 1 / 3
    assert order_distance({"IV-B": [0.50, 0.60, 0.55], "IV-A": [0.45, 0.58, 0.52], "I": [0.3]}) == d  # seeded


def test_regions_are_four_neighbour_connected():
    assert regions([(0, 0), (1, 0), (1, 1)]) == (3,)  # an L
    assert regions([(0, 0), (1, 1)]) == (1, 1)  # diagonal neighbours are not connected
    assert regions([(0, 0), (0, 1), (5, 5), (2, 0)]) == (2, 1, 1)
    assert regions([]) == ()


BASE = table(["II II II IV-A",
              "I III IV-B IV-B",
              "I I III IV-B"], {"I": 0.40, "II": 0.28, "III": 0.47, "IV-A": 0.54, "IV-B": 0.51})


def test_the_acceptance_rule():
    base = zoo_coverage("base", BASE, "width", "batch_size")
    assert base.iv_a_cells == 1 and base.largest_iv_a_region == 1 and base.order_distance.distance == pytest.approx(2 / 9)
    good = zoo_coverage("good", table(["II II IV-A IV-A",
                                        "I III IV-A IV-B",
                                        "I I III IV-B"], {"I": 0.3, "II": 0.42, "III": 0.45, "IV-A": 0.5, "IV-B": 0.55}),
                        "width", "batch_size")
    a = acceptance(good, base)
    assert a.passed and a.iv_a_region and a.order_moved and a.phases_kept, a.reasons
    assert good.iv_a_regions == (3,) and good.iv_a_connected and good.order_distance.distance == 0.0

    scattered = zoo_coverage("scattered", table(["II IV-A II IV-A",
                                                  "I III IV-A IV-B",
                                                  "I I III IV-B"], {"I": 0.3, "II": 0.42, "III": 0.45, "IV-A": 0.5,
                                                                    "IV-B": 0.55}), "width", "batch_size")
    s = acceptance(scattered, base)  # three IV-A cells, but the largest region is 1
    assert not s.passed and not s.iv_a_region and s.order_moved and scattered.iv_a_regions == (1, 1, 1)

    no_i = zoo_coverage("no_i", table(["II II IV-A IV-A",
                                        "II III IV-A IV-B",
                                        "III III III IV-B"], {"II": 0.42, "III": 0.45, "IV-A": 0.5, "IV-B": 0.55}),
                        "width", "batch_size")
    n = acceptance(no_i, base)
    assert not n.passed and not n.phases_kept and n.iv_a_region and "lost phase(s) I" in n.reasons[2]

    same = acceptance(zoo_coverage("same", BASE, "width", "batch_size"), base)
    assert not same.passed and not same.order_moved  # equal distance is not a move toward the target


def test_comparison_has_its_declared_schema_and_the_baseline_no_verdict():
    base = zoo_coverage("base", BASE, "width", "batch_size")
    frame = comparison([base], base)
    assert frame.schema == pl.Schema(COMPARISON_SCHEMA)
    row = frame.row(0, named=True)
    assert (row["I"], row["II"], row["III"], row["IV-A"], row["IV-B"], row["passes"]) == (3, 3, 2, 1, 3, None)
    assert row["order"] == "IV-A 0.540 > IV-B 0.510 > III 0.470 > I 0.400 > II 0.280"


def test_unclassified_cells_are_counted_not_ordered():
    t = table(["unclassified IV-B", "I IV-A"], {"I": 0.3, "IV-A": 0.5, "IV-B": 0.6})
    z = zoo_coverage("z", t, "width", "batch_size")
    assert z.unclassified == 1 and z.order == ("IV-B", "IV-A", "I") and z.order_distance.distance == 0.0


def test_a_table_without_accuracy_is_refused():
    with pytest.raises(ValueError, match="test_acc"):
        zoo_coverage("z", BASE.drop("test_acc"), "width", "batch_size")


def test_the_cli_on_tiny_tables(tmp_path, capsys):
    BASE.write_csv(tmp_path / "base.csv")
    table(["II II IV-A IV-A", "I III IV-A IV-B", "I I III IV-B"],
          {"I": 0.3, "II": 0.42, "III": 0.45, "IV-A": 0.5, "IV-B": 0.55}).write_csv(tmp_path / "good.csv")
    rc = main(["coverage", "--table", f"base={tmp_path / 'base.csv'}", "--table", f"good={tmp_path / 'good.csv'}",
               "--load", "width", "--temperature", "batch_size", "--out", str(tmp_path / "cmp.csv")])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "| base | 3 | 3 | 2 | 1 | 3 | 1 |" in out and "| baseline |" in out
    assert "| good | 3 | 2 | 2 | 3 | 2 | 3 |" in out and "good: PASSES" in out
    back = pl.read_csv(tmp_path / "cmp.csv")
    assert back["zoo"].to_list() == ["base", "good"] and back["passes"].to_list() == [None, True]


@pytest.mark.parametrize("argv, message", [
    (["--table", "a=x.csv"], "--table needs --load and --temperature"),
    (["--zoo", "nameless"], "expected NAME=PATH"),
])
def test_cli_bad_input_is_one_error_line(argv, message, capsys):
    assert main(["coverage", *argv]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error: ") and message in err[0], err


@pytest.mark.slow
def test_the_default_zoo_and_its_two_seed_subset():
    from analysis.studies.coverage import _zoo_labelled
    from tests.conftest import ROOT

    zoo = ROOT / "data" / "zoos" / "mnist1d-mlp"
    lab, load, temp, _ = _zoo_labelled(zoo, None)
    full = zoo_coverage("default", lab, load, temp)
    # docs/zoos.md's table at epoch 300: I 27, II 17, III 10, IV-A 1, IV-B 9
    assert [full.cells_of(p) for p in ("I", "II", "III", "IV-A", "IV-B")] == [27, 17, 10, 1, 9]
    two, *_ = _zoo_labelled(zoo, None, [0, 1])
    assert two["train_loss_n"].max() == 2 and two["mc_n"].max() == 1 and two["cka_n"].max() == 1  # one pair a cell
    with pytest.raises(ValueError, match="no model has a seed in"):
        _zoo_labelled(zoo, None, [7])
