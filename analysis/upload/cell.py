"""The upload's cell: a value for every grid knob, and where it came from.

In order of precedence: read off the weights (architecture parameters, analysis.upload.recognise), given
by the user, those of the zoo model it is a copy of (`twin`, analysis.upload.placement), or estimated as the
most common value among the zoo models of the same known knobs nearest in standardised fit and weight
features (k = 5; a tie goes to the value whose nearest model is nearer), with every grid value it could have
taken scored (`KnobEstimate`). The first three need no measurement, so the cell's task (its task-parameter
knobs) is known before the upload's own metrics run, except where such a knob must itself be estimated.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np
import polars as pl

from analysis.taxonomy.classifier import FEATURES, model_features
from analysis.upload.measure import UPLOAD, rows_frame
from analysis.upload.recognise import ZooMatch, nearest_value
from analysis.upload.report import Candidate, KnobEstimate, KnobValue
from analysis.upload.zoo_side import training, zoo_state
from data.zoo.spec import ZooSpec
from data.zoo.store import Zoo

ESTIMATE_K = 5  # the nearest zoo models an estimated knob is the majority value of


def known_knobs(spec: ZooSpec, match: ZooMatch, given: Mapping[str, object],
                twin: Mapping[str, object] | None) -> dict[str, KnobValue]:
    """The grid knobs known without measuring the upload (weights, given, identical zoo model)."""
    cell: dict[str, KnobValue] = {}
    for k in spec.grid:
        if k in match.knobs:
            cell[k] = KnobValue(match.knobs[k], match.nearest[k], "weights")
        elif k in given:
            value = type(spec.grid[k][0])(given[k])
            cell[k] = KnobValue(value, nearest_value(value, list(spec.grid[k])), "given")
        elif twin is not None:
            cell[k] = KnobValue(twin[k], twin[k], "identical zoo model")
    return cell


def task_knobs(spec: ZooSpec, cell: Mapping[str, KnobValue]) -> tuple:
    """((knob, grid value), …) of the cell's knobs that are task parameters (the PINN's β): the task the
    upload is measured on."""
    return tuple((k, cell[k].grid) for k in spec.grid if k in cell and k in spec.task_params)


def complete(zoo: Zoo, epoch: int, cell: Mapping[str, KnobValue], own_rows: Callable[[tuple], list[dict]],
             n_params: int) -> dict[str, KnobValue]:
    """`cell` with every missing grid knob estimated from the zoo models nearest in fit and weight features
    (its rows `own_rows(task knobs)` on the task known so far); `cell` itself where nothing is missing."""
    spec = zoo.spec
    unknown = [k for k in spec.grid if k not in cell]
    if not unknown:
        return dict(cell)
    table = training(zoo_state(zoo)).filter(pl.col("epoch") == epoch)
    knob_cols = zoo.catalog.filter(pl.col("epoch") == epoch).select("model_id", *spec.grid)
    table = table.join(knob_cols, on="model_id")
    for k, v in cell.items():
        table = table.filter(pl.col(k) == v.grid)
    mine = model_features(rows_frame(own_rows(task_knobs(spec, cell))), {UPLOAD: n_params})
    usable = [f for f in FEATURES if mine[f][0] is not None and table[f].null_count() == 0]
    X = table.select(usable).to_numpy().astype(float)
    mu, sd = X.mean(0), X.std(0) + 1e-12
    d = np.linalg.norm((X - mu) / sd - (mine.select(usable).to_numpy().astype(float)[0] - mu) / sd, axis=1)
    near = table[np.argsort(d)[:ESTIMATE_K].tolist()]
    scored = table.with_columns(distance=pl.Series(d))
    known = ", ".join(f"{k}={v.grid}" for k, v in cell.items())
    out = dict(cell)
    for k in unknown:
        votes = dict(near.group_by(k).len().rows())
        nearest = dict(scored.group_by(k).agg(pl.col("distance").min()).rows())
        ranked = sorted(spec.grid[k], key=lambda v: (-votes.get(v, 0), nearest.get(v, np.inf)))
        method = (f"the most common {k} among the {ESTIMATE_K} zoo models" + (f" of {known}" if known else "")
                  + f" nearest in {len(usable)} standardised fit and weight features")
        estimate = KnobEstimate(method, ESTIMATE_K, tuple(
            Candidate(v, votes.get(v, 0), float(nearest[v]) if v in nearest else None, None, None) for v in ranked))
        out[k] = KnobValue(ranked[0], ranked[0], "estimated", tuple(near["model_id"].to_list()), estimate)
    return out
