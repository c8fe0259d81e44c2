"""Hessian spectra: spectral densities of chosen cells or of one cell per phase; sharpness over the grid."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.spectra import esd_curves, mean_esd
from analysis.taxonomy.cells import QUANTITIES, cell_label, cell_models
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import density_chart, grid_heatmap
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, pick_epoch

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
st.title(f"Hessian spectra: {zoo.name}")
metrics = load_metrics(zoo.root)
if metrics.filter(pl.col("metric") == "hessian_esd").is_empty():
    st.warning("No spectral densities in this zoo's metrics: run `phasezoo run <zoo> --metrics hessian`.")
    st.stop()
c1, c2, c3 = st.columns(3)
with c1:
    epoch = pick_epoch(spec, "spectra_epoch")
split = c2.radio("Loss", ["train", "test"], horizontal=True, key="spectra_split")
mode = c3.radio("Cells", ["one per phase", "chosen"], horizontal=True, key="spectra_mode")
cells = load_cells(zoo.root, epoch)
xk, yk = spec.load.knob, spec.temperature.knob
if mode == "one per phase":
    labelled = classify(cells, default_thresholds(cells)).filter(pl.col("phase") != "unclassified")
    # each phase's cell of median test accuracy: typical, not extreme
    picks = [
        (r["phase"], r[xk], r[yk])
        for r in labelled.sort("test_acc")
        .group_by("phase", maintain_order=True)
        .agg(pl.all().get(pl.len() // 2))
        .sort("phase")
        .iter_rows(named=True)
    ]
else:
    options = [(r[xk], r[yk]) for r in cells.iter_rows(named=True)]
    chosen = st.multiselect(
        "Cells",
        options,
        default=[options[-1], options[0]],
        key="spectra_cells",
        format_func=lambda c: cell_label(spec, *c),
    )
    picks = [(cell_label(spec, x, y), x, y) for x, y in chosen]
if not picks:
    st.info("Choose at least one cell.")
    st.stop()
curves = pl.concat(
    [
        mean_esd(esd_curves(metrics, cell_models(cat, spec, x, y), epoch, split)).with_columns(
            label=pl.lit(f"{name} ({x}, {y})" if mode == "one per phase" else name)
        )
        for name, x, y in picks
    ]
)
log_y = st.toggle("Log density", value=True, key="spectra_log")
chart(
    density_chart(curves, log_density=log_y, title=f"Spectral density (seed mean), {split} loss, epoch {epoch}"),
    curves,
    "spectra_density",
    st,
)
# the cells' sharpness quantities: ln of the seed mean, as declared (analysis.taxonomy.cells.QUANTITIES)
sharpness = (("hessian_trace", "spectra_trace"), ("hessian_top_eigenvalue", "spectra_top"))  # (quantity, chart key)
for col, (q, key) in zip(st.columns(2), sharpness):
    quantity, prefix = QUANTITIES[q], QUANTITIES[q].aggregate.prefix()
    chart(
        grid_heatmap(cells, spec, q, title=f"{prefix}{quantity.label} (seed mean)", scale=colour_scale(declared(q)),
                     hover_label=prefix + quantity.label, colour_title=prefix + quantity.axis_title(spec.task)),
        cells,
        key,
        col,
    )
layers = (
    metrics.filter(
        pl.col("metric").is_in(["hessian_layer_top_eigenvalue", "hessian_layer_trace"])
        & (pl.col("epoch") == epoch)
        & pl.col("error").is_null()
    )
    .join(cat.select("model_id", xk, yk).unique(), on="model_id")
    .filter(pl.struct(xk, yk).is_in([{xk: x, yk: y} for _, x, y in picks]))
    .group_by(xk, yk, "layer", "metric")
    .agg(pl.col("value").mean())
    .pivot(on="metric", index=[xk, yk, "layer"], values="value")
    .sort(xk, yk, "layer")
)
st.subheader("Per layer (seed means, training loss)")
st.dataframe(layers, hide_index=True, key="spectra_layers")
