"""Weight space: precomputed PCA/UMAP maps of the models' weights (phasezoo embed), coloured by
phase, by a knob or by a metric; selecting a point opens its cell."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.embed import read_embeddings
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import weight_space
from dashboard.picker import current_zoo, load_cells
from dashboard.widgets import declared, downloads, image_config, open_cell

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
st.title(f"Weight space: {zoo.name}")
emb = read_embeddings(zoo.root)
if emb.is_empty():
    st.warning("No embeddings for this zoo yet: run `phasezoo embed <zoo>` (PCA and UMAP of the weights).")
    st.stop()
c1, c2, c3 = st.columns(3)
epochs = sorted(emb["epoch"].unique())
epoch = c1.selectbox("Epoch", epochs, index=len(epochs) - 1, key="weights_epoch")
method = c2.radio("Method", sorted(emb["method"].unique(), reverse=True), horizontal=True, key="weights_method")
colour = c3.selectbox(
    "Colour by",
    ["phase", spec.load.knob, spec.temperature.knob, "test_acc", "train_loss", "seed"],
    key="weights_colour",
)
xk, yk = spec.load.knob, spec.temperature.knob
points = emb.filter((pl.col("epoch") == epoch) & (pl.col("method") == method)).join(
    cat.filter(pl.col("epoch") == epoch).select("model_id", "seed", xk, yk, "test_acc", "train_loss"), on="model_id"
)
analysis_epoch = epoch if epoch in spec.analysis_epochs else max(spec.analysis_epochs)
cells = load_cells(zoo.root, analysis_epoch)
if not cells["mc"].is_null().all():
    phases = classify(cells, default_thresholds(cells)).select(xk, yk, "phase")
    points = points.join(phases, on=[xk, yk], how="left")
else:
    points = points.with_columns(phase=pl.lit("unclassified"))
if colour == "phase" and epoch not in spec.analysis_epochs:
    st.caption(f"Phases are those of analysis epoch {analysis_epoch}.")
# the phase, knobs and seeds are categories; a metric is coloured on its declared scale
out = None if colour in ("phase", xk, yk, "seed") else declared(colour)
fig = weight_space(points, spec, colour, title=f"{method.upper()} of the weights, epoch {epoch}",
                   scale=colour_scale(out) if out else None, colour_title=out.axis_title if out else "")
event = st.plotly_chart(
    fig, key="weights_map", on_select="rerun", selection_mode="points", config=image_config("weights_map")
)
chart_points = event.selection.points if event and event.selection else []
if chart_points:  # drill down: open the selected model's cell
    open_cell(spec, *chart_points[0]["customdata"][:2])
st.caption("Select a point (click) to open its cell.")
downloads(points, "weights_map")
