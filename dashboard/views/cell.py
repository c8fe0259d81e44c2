"""Cell detail: one grid cell's seeds — training curves, metrics with their errors, mode-connectivity
profiles, the CKA matrix of the seeds, and the per-layer data-free metrics."""

import numpy as np
import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.taxonomy.cells import cell_label, cell_models, scalar_rows
from dashboard.charts import line_chart, similarity_matrix
from dashboard.picker import current_zoo, load_metrics
from dashboard.widgets import chart, declared, pick_cell, pick_epoch

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
st.title(f"Cell detail: {zoo.name}")
x, y = pick_cell(spec, "cell")
ids = cell_models(cat, spec, x, y)
if not ids:
    st.info(f"No models in {cell_label(spec, x, y)} yet.")
    st.stop()
st.caption(f"{cell_label(spec, x, y)}: {len(ids)} models — " + ", ".join(ids))

curves = (
    cat.filter(pl.col("model_id").is_in(ids))
    .unpivot(index=["model_id", "seed", "epoch"], on=["train_loss", "test_loss", "train_acc", "test_acc"])
    .with_columns(
        split=pl.col("variable").str.split("_").list.first(), kind=pl.col("variable").str.split("_").list.last()
    )
)
loss, acc = (curves.filter(pl.col("kind") == k) for k in ("loss", "acc"))
left, right = st.columns(2)
chart(
    line_chart(
        loss, "epoch", "value", "seed", dash="split", log_y=True, title="Loss per seed (solid: test, dotted: train)"
    ),
    loss,
    "cell_loss",
    left,
)
if acc["value"].is_null().all():  # a regression zoo: no accuracies
    right.info("A regression task has no accuracy: the test loss (left, solid) is the mean squared error "
               "against the exact solution; the relative L2 error is among the metrics below.")
else:
    chart(
        line_chart(acc, "epoch", "value", "seed", dash="split", title="Accuracy per seed (solid: test, dotted: train)"),
        acc,
        "cell_acc",
        right,
    )

epoch = pick_epoch(spec, "cell_epoch")
m = load_metrics(zoo.root).filter(
    pl.col("model_id").is_in(ids) & (pl.col("epoch") == epoch) & pl.col("error").is_null()
)
if m.is_empty():
    st.warning("No metrics for this cell at this epoch: run `phasezoo run <zoo>`.")
    st.stop()
scalars = (
    m.filter(scalar_rows() & pl.col("other_id").is_null())
    .select("model_id", "metric", "split", "value", "stderr")
    .sort("metric", "split", "model_id")
)
st.subheader("Metrics per seed (value ± standard error where estimated)")
st.dataframe(scalars, hide_index=True, key="cell_metrics")

st.subheader("Mode connectivity along the path, per seed pair")
prof = m.filter(pl.col("metric").is_in(["mc_bezier_error", "mc_linear_error"])).with_columns(
    pair=pl.col("model_id").str.slice(-2) + "–" + pl.col("other_id").str.slice(-2),
    path=pl.col("metric").str.split("_").list.get(1),
)
if not prof.is_empty():
    chart(
        line_chart(
            prof.rename({"coord": "t", "value": "training error (%)"}),
            "t",
            "training error (%)",
            "pair",
            dash="path",
            title="solid: Bézier curve, dotted: straight line",
        ),
        prof,
        "cell_mc",
        st,
    )
cka = m.filter(pl.col("metric") == "cka_logits_test")
if not cka.is_empty():
    idx = {mid: i for i, mid in enumerate(ids)}
    mat = np.eye(len(ids))
    for r in cka.iter_rows(named=True):
        mat[idx[r["model_id"]], idx[r["other_id"]]] = mat[idx[r["other_id"]], idx[r["model_id"]]] = r["value"]
    seeds = [i.rsplit("-", 1)[-1] for i in ids]
    fig = similarity_matrix(mat, seeds, title="Logit CKA between seeds (test inputs)",
                            scale=colour_scale(declared("cka_logits_test")))
    chart(fig, cka, "cell_cka", st)
layers = (
    m.filter(
        pl.col("layer").is_not_null() & pl.col("metric").is_in(["alpha", "alpha_ks", "stable_rank", "spectral_norm"])
    )
    .pivot(on="metric", index=["model_id", "layer"], values="value")
    .sort("model_id", "layer")
)
st.subheader("Data-free metrics per layer")
st.dataframe(layers, hide_index=True, key="cell_layers")
