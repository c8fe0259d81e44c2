"""The pure tables behind the spectra, Compare and Ensembles pages (analysis.studies.cell_spectra and
analysis.studies.by_phase), on hand-built frames whose answers are known."""
import math

import numpy as np
import polars as pl
import pytest

from analysis.metrics.outputs import LOG_MEAN, MEAN
from analysis.studies.by_phase import labelled_cells, phase_mean_curve, phase_shares, with_phase
from analysis.studies.cell_spectra import cell_densities, layer_sharpness, phase_representatives
from data.zoo.spec import parse_spec
from data.zoo.store import Zoo
from tests.conftest import DEFAULT_ZOO, TINY_SPEC

SPEC = parse_spec(TINY_SPEC)  # load = width (4, 16, 64), temperature = batch_size (16, 64), seeds 0 and 1
CATALOG = pl.DataFrame([{"model_id": f"w{w}-b{b}-s{s}", "width": w, "batch_size": b, "seed": s}
                        for w in (4, 16, 64) for b in (16, 64) for s in (0, 1)])


def rows(*entries) -> pl.DataFrame:
    """Metrics-schema rows from (model_id, metric, epoch, coord, value, layer, split, error) tuples."""
    keys = ("model_id", "metric", "epoch", "coord", "value", "layer", "split", "error")
    return pl.DataFrame([dict(zip(keys, e)) for e in entries],
                        schema={"model_id": pl.String, "metric": pl.String, "epoch": pl.Int64, "coord": pl.Float64,
                                "value": pl.Float64, "layer": pl.String, "split": pl.String, "error": pl.String})


def labels(**phases) -> pl.DataFrame:
    """A labelled table from cell="phase" keywords, cells written w<width>_b<batch>."""
    out = []
    for cell, phase in phases.items():
        w, b = (int(p[1:]) for p in cell.split("_"))
        out.append({"width": w, "batch_size": b, "phase": phase})
    return pl.DataFrame(out)


def test_phase_representatives_take_the_median_cell_of_each_phase_in_taxonomy_order():
    labelled = pl.DataFrame({"width": [4, 16, 64, 4, 16, 64], "batch_size": [16, 16, 16, 64, 64, 64],
                             "phase": ["IV-B", "I", "I", "I", "unclassified", "II"],
                             "test_acc": [0.9, 0.3, 0.1, 0.2, 0.5, 0.4]})
    # phase I's cells by accuracy: 0.1 (64, 16), 0.2 (4, 64), 0.3 (16, 16): the median is (4, 64)
    assert phase_representatives(labelled, SPEC) == [("I", 4, 64), ("II", 64, 64), ("IV-B", 4, 16)]


def test_cell_densities_average_each_cells_seeds_and_keep_the_given_order():
    grid = [0.0, 0.5, 1.0]
    m = rows(*[("w4-b16-s0", "hessian_esd", 2, x, 1.0, None, "train", None) for x in grid],
             *[("w4-b16-s1", "hessian_esd", 2, x, 3.0, None, "train", None) for x in grid],
             *[("w64-b64-s0", "hessian_esd", 2, x, 5.0, None, "train", None) for x in grid],
             *[("w64-b64-s0", "hessian_esd", 2, x, 99.0, None, "test", None) for x in grid],  # other split
             *[("w64-b64-s1", "hessian_esd", 1, x, 99.0, None, "train", None) for x in grid])  # other epoch
    out = cell_densities(m, CATALOG, SPEC, [("hot", 64, 64), ("cold", 4, 16)], 2, "train")
    assert out.columns == ["label", "eigenvalue", "density"]
    assert out["label"].unique(maintain_order=True).to_list() == ["hot", "cold"]
    assert np.allclose(out.filter(pl.col("label") == "cold")["density"], 2.0)  # (1 + 3) / 2 on the common grid
    assert np.allclose(out.filter(pl.col("label") == "hot")["density"], 5.0)  # its other seed has no epoch-2 row
    assert cell_densities(m, CATALOG, SPEC, [], 2, "train").is_empty()


def test_layer_sharpness_is_the_seed_mean_per_chosen_cell_and_layer():
    m = rows(("w4-b16-s0", "hessian_layer_trace", 2, None, 2.0, "1", "train", None),
             ("w4-b16-s1", "hessian_layer_trace", 2, None, 4.0, "1", "train", None),
             ("w4-b16-s0", "hessian_layer_top_eigenvalue", 2, None, 1.0, "1", "train", None),
             ("w4-b16-s1", "hessian_layer_top_eigenvalue", 2, None, 9.0, "3", "train", "boom"),  # failed: left out
             ("w4-b16-s0", "hessian_layer_top_eigenvalue", 2, None, 7.0, "3", "train", None),
             ("w16-b16-s0", "hessian_layer_trace", 2, None, 50.0, "1", "train", None),  # a cell not chosen
             ("w4-b16-s0", "hessian_layer_trace", 1, None, 60.0, "1", "train", None))  # another epoch
    out = layer_sharpness(m, CATALOG, SPEC, [(4, 16)], 2)
    assert out.columns == ["width", "batch_size", "layer", "hessian_layer_top_eigenvalue", "hessian_layer_trace"]
    assert out.rows() == [(4, 16, "1", 1.0, 3.0), (4, 16, "3", 7.0, None)]
    # named as the model names them, in the model's order (not the keys' string order); unknown keys last
    named = layer_sharpness(m, CATALOG, SPEC, [(4, 16)], 2, {"3": "fc1", "1": "fc2"})
    assert named["layer"].to_list() == ["fc1", "fc2"] and named["hessian_layer_trace"].to_list() == [None, 3.0]
    assert layer_sharpness(m, CATALOG, SPEC, [(4, 16)], 2, {"3": "fc1"})["layer"].to_list() == ["fc1", "1"]


def test_with_phase_keeps_labelled_cells_only():
    values = pl.DataFrame({"width": [4, 16, 64], "batch_size": [16, 16, 16], "value": [1.0, 2.0, 3.0]})
    out = with_phase(values, labels(w4_b16="I", w64_b16="IV-B"), SPEC)
    assert out.columns == ["phase", "value"] and sorted(out.rows()) == [("I", 1.0), ("IV-B", 3.0)]


def test_phase_mean_curve_aggregates_each_coord_over_the_phases_models():
    m = rows(("w4-b16-s0", "prune_retained", 2, 0.5, 1.0, None, "test", None),
             ("w4-b16-s1", "prune_retained", 2, 0.5, 3.0, None, "test", None),
             ("w16-b64-s0", "prune_retained", 2, 0.5, 10.0, None, "test", None),  # also phase I
             ("w4-b16-s0", "prune_retained", 2, 0.9, 4.0, None, "test", None),
             ("w64-b64-s0", "prune_retained", 2, 0.5, 8.0, None, "test", None),
             ("w64-b64-s1", "prune_retained", 2, 0.5, 8.0, None, "test", "boom"),  # failed: left out
             ("w64-b64-s1", "prune_retained", 1, 0.5, 100.0, None, "test", None),  # another epoch
             ("w64-b64-s1", "prune_retained_90", 2, None, 100.0, None, "test", None))  # a scalar, no coord
    lab = labels(w4_b16="I", w16_b64="I", w64_b64="IV-B")
    out = phase_mean_curve(m, CATALOG, SPEC, lab, 2, "prune_retained", MEAN)
    assert out.rows() == [("I", 0.5, pytest.approx(14 / 3)), ("I", 0.9, 4.0), ("IV-B", 0.5, 8.0)]
    logged = phase_mean_curve(m, CATALOG, SPEC, lab, 2, "prune_retained", LOG_MEAN)
    assert logged["value"][0] == pytest.approx(math.log(14 / 3))  # ln of the mean, as the output declares


def test_phase_shares_are_fractions_of_the_grid():
    out = phase_shares(labels(w4_b16="I", w16_b16="I", w64_b16="IV-B", w4_b64="III"), "z")
    assert out.columns == ["zoo", "phase", "cells", "fraction"]
    assert out.rows() == [("z", "I", 2, 0.5), ("z", "III", 1, 0.25), ("z", "IV-B", 1, 0.25)]


def test_labelled_cells_label_every_cell_of_the_default_zoo():
    zoo = Zoo.open(DEFAULT_ZOO)
    epoch = max(zoo.spec.analysis_epochs)
    out = labelled_cells(pl.read_parquet(DEFAULT_ZOO / "metrics.parquet"), zoo.catalog, zoo.spec, epoch)
    n_cells = len(zoo.spec.grid[zoo.spec.load.knob]) * len(zoo.spec.grid[zoo.spec.temperature.knob])
    assert out.height == n_cells and set(out["phase"]) == {"I", "II", "III", "IV-A", "IV-B"}
