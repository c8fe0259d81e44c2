"""Weights-only features of a zoo's models, for predicting their accuracy and phase from the weights alone
(the benchmark: analysis.studies.weightspace).

Two baselines, each one row per model at one epoch:

- **StatNN** (Unterthiner et al. 2020, *Predicting Neural Network Accuracy from Weights*, arXiv:2002.11448, §3):
  for every parameter tensor of the state dict — weights and biases separately — its mean, variance and the
  quantiles q0, q25, q50, q75, q100 (7 numbers per tensor), columns `statnn:<tensor>:<stat>`. These are
  per-layer, so they compare models of one architecture (one zoo). Across zoos (different architectures) the
  same 7 statistics of the first layer's weight matrix, the last layer's and of all parameters pooled
  (`pooled:first:<stat>`, `pooled:last:<stat>`, `pooled:all:<stat>`): 21 architecture-agnostic columns. "First"
  and "last" follow the model's own module order (built on the meta device: a safetensors file lists its
  tensors alphabetically, which would put a transformer's `blocks.0…` before its `embed`).
- **data-free metrics**: what `phasezoo run` stored in metrics.parquet for the `weights` metric
  (analysis.kernels.weights: heavy-tail α of Martin & Mahoney 2021 by two fits with their KS distances, stable
  rank, spectral norm, weight mean / variance / percentiles). Per model (`datafree:<metric>`): the stored
  model-level rows (α, KS, stable rank, mean log σ₁: layer = null) and, for the statistics stored per layer
  only (weight_*), their mean over layers — the same columns for every architecture, used across zoos. Per zoo
  also every per-layer row (`datafree:<metric>@<layer>`).

Every baseline also gets `log10_n_params` (the one architectural fact every model carries; the load knob of a
width grid is the parameter count). Models are read one checkpoint at a time (memory: one state dict).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
import polars as pl
import torch

from analysis.studies.embed import weights_only
from data.models.archs import build_model
from data.tasks.builtin import TASKS
from data.zoo.store import Zoo

__all__ = ["STATS", "DATAFREE_METRICS", "tensor_stats", "statnn_features", "pooled_features", "module_order",
           "statnn_table", "datafree_table", "datafree_wide"]

STATS = ("mean", "var", "q0", "q25", "q50", "q75", "q100")  # Unterthiner et al. 2020 §3
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)
# the `weights` metric's outputs (analysis.metrics.definitions.weights); per model: stored, or the layer mean
DATAFREE_METRICS = ("alpha", "alpha_ks", "alpha_ww", "alpha_ww_ks", "stable_rank", "spectral_norm", "weight_mean",
                    "weight_var", "weight_p01", "weight_p25", "weight_p50", "weight_p75", "weight_p99")


def tensor_stats(t: torch.Tensor) -> np.ndarray:
    """[7] float64: mean, variance (population, ddof 0), q0, q25, q50, q75, q100 of a tensor's entries
    (linear-interpolated quantiles, numpy's default); all NaN for an empty tensor."""
    x = t.detach().to("cpu", torch.float64).reshape(-1).numpy()
    if x.size == 0:
        return np.full(len(STATS), np.nan)
    return np.array([x.mean(), x.var(), *np.quantile(x, QUANTILES)])


def _params(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The real-valued parameters (BatchNorm statistics and integer buffers left out)."""
    return {k: v for k, v in weights_only(dict(state)).items() if v.is_floating_point()}


def _log_n(params: Mapping[str, torch.Tensor]) -> float:
    n = sum(v.numel() for v in params.values())
    return math.log10(n) if n > 0 else float("nan")


def statnn_features(state: Mapping[str, torch.Tensor]) -> dict[str, float]:
    """StatNN's per-tensor statistics, `statnn:<tensor>:<stat>`, and `log10_n_params`."""
    params = _params(state)
    out = {f"statnn:{k}:{s}": float(v) for k, t in params.items() for s, v in zip(STATS, tensor_stats(t))}
    return out | {"log10_n_params": _log_n(params)}


def pooled_features(state: Mapping[str, torch.Tensor], order: Sequence[str] | None = None) -> dict[str, float]:
    """Architecture-agnostic StatNN: the 7 statistics of the first and of the last weight matrix (rank ≥ 2) in
    `order` (the model's module order; default: the state dict's) and of every parameter pooled
    (`pooled:{first,last,all}:<stat>`), and `log10_n_params`."""
    params = _params(state)
    keys = [k for k in (order if order is not None else params) if k in params]
    mats = [k for k in keys if k.endswith("weight") and params[k].ndim >= 2] or keys
    if not mats:
        raise ValueError("the state dict has no real-valued parameter: no weight statistics")
    pooled = torch.cat([params[k].detach().reshape(-1).to(torch.float64) for k in keys])
    parts = {"first": params[mats[0]], "last": params[mats[-1]], "all": pooled}
    out = {f"pooled:{p}:{s}": float(v) for p, t in parts.items() for s, v in zip(STATS, tensor_stats(t))}
    return out | {"log10_n_params": _log_n(params)}


def module_order(zoo: Zoo) -> list[str]:
    """The zoo architecture's state-dict keys in module order (built on the meta device: no memory)."""
    cfg = zoo.configs[zoo.catalog["model_id"][0]]
    input_shape, n_out = TASKS[zoo.spec.task].shapes(cfg.get("task_params"))
    with torch.device("meta"):
        model = build_model(zoo.spec.arch, input_shape, n_out, cfg.get("arch_params"))
    return list(model.state_dict())


def statnn_table(zoo: Zoo, epoch: int, model_ids: Sequence[str] | None = None) -> pl.DataFrame:
    """model_id, then the StatNN (`statnn:`) and architecture-agnostic (`pooled:`) columns and log10_n_params
    (Float64) of every model with a checkpoint at `epoch` (or of `model_ids`), one checkpoint in memory at a time."""
    ids = zoo.checkpoints().filter(pl.col("epoch") == epoch)["model_id"].sort().to_list()
    if model_ids is not None:
        ids = [m for m in ids if m in set(model_ids)]
    if not ids:
        raise ValueError(f"{zoo.name}: no checkpoint at epoch {epoch}")
    order = module_order(zoo)
    rows = []
    for mid in ids:
        state = zoo.load_state_dict(mid, epoch)
        rows.append({"model_id": mid, **statnn_features(state), **pooled_features(state, order)})
        del state
    cols = sorted({k for r in rows for k in r} - {"model_id"})
    return pl.DataFrame(rows, schema={"model_id": pl.String, **{c: pl.Float64 for c in cols}})


def datafree_table(metrics: pl.DataFrame, catalog: pl.DataFrame, epoch: int) -> pl.DataFrame:
    """model_id, `datafree:<metric>` (per model), `datafree:<metric>@<layer>` (per layer) and log10_n_params
    (Float64) from the stored `weights` metric rows (metrics.parquet schema) and the catalog at `epoch`."""
    rows = metrics.filter((pl.col("epoch") == epoch) & pl.col("metric").is_in(DATAFREE_METRICS)
                          & pl.col("other_id").is_null() & pl.col("split").is_null() & pl.col("coord").is_null()
                          & pl.col("value").is_not_null() & pl.col("error").is_null())
    ids = catalog.filter(pl.col("epoch") == epoch).select(
        "model_id", pl.col("n_params").cast(pl.Float64).log10().alias("log10_n_params"))
    if rows.is_empty():
        raise ValueError(f"no stored data-free metrics at epoch {epoch} (run `phasezoo run ZOO --metrics weights`)")
    return ids.join(datafree_wide(rows), on="model_id", how="left")


def datafree_wide(rows: pl.DataFrame) -> pl.DataFrame:
    """model_id and the `datafree:` columns (Float64, sorted) from `weights` metric rows [model_id, metric,
    layer, value] (layer null: a model-level row)."""
    layer = rows.filter(pl.col("layer").is_not_null()).with_columns(
        pl.format("datafree:{}@{}", "metric", "layer").alias("name"))
    stored = rows.filter(pl.col("layer").is_null()).select("model_id", "metric", pl.col("value").cast(pl.Float64))
    # statistics stored per layer only: their mean over the layers, so that every architecture has the column
    means = (rows.filter(pl.col("layer").is_not_null()).group_by("model_id", "metric")
             .agg(pl.col("value").cast(pl.Float64).mean()).join(stored, on=["model_id", "metric"], how="anti"))
    model = pl.concat([stored, means.select(stored.columns)]).with_columns(
        pl.format("datafree:{}", "metric").alias("name"))
    wide = pl.concat([model.select("model_id", "name", "value"),
                      layer.select("model_id", "name", pl.col("value").cast(pl.Float64))]).pivot(
        on="name", index="model_id", values="value", aggregate_function="first")
    cols = sorted(c for c in wide.columns if c != "model_id")
    return wide.select("model_id", *[pl.col(c).cast(pl.Float64) for c in cols])
