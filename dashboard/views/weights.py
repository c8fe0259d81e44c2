"""Weight space: precomputed PCA/UMAP maps of the models' weights (python -m analysis.studies.embed), coloured by
phase, by a knob or by a metric; selecting a point opens its cell."""

import plotly.express as px
import polars as pl
import streamlit as st

from analysis.studies.embed import read_embeddings
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import PHASE_COLOURS
from dashboard.picker import current_zoo, load_cells
from dashboard.widgets import downloads, image_config, open_cell

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
st.title(f"Weight space: {zoo.name}")
emb = read_embeddings(zoo.root)
if emb.is_empty():
    st.warning("No embeddings for this zoo yet: run `python -m analysis.studies.embed <zoo>` (PCA and UMAP of the weights).")
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
categorical = colour in ("phase", xk, yk, "seed")
frame = points.with_columns(pl.col(colour).cast(pl.String)) if categorical else points
fig = px.scatter(
    frame.to_pandas(),
    x="x",
    y="y",
    color=colour,
    hover_name="model_id",
    hover_data=[xk, yk, "seed", "test_acc", "train_loss", "phase"],
    custom_data=[xk, yk],
    category_orders={colour: sorted(frame[colour].unique(), key=lambda v: (len(v), v))} if categorical else None,
    color_continuous_scale="Viridis",
    color_discrete_map=PHASE_COLOURS if colour == "phase" else None,
)
fig.update_layout(
    title=f"{method.upper()} of the weights, epoch {epoch}", height=560, margin=dict(l=10, r=10, t=40, b=10)
)
fig.update_xaxes(showticklabels=False, title="")
fig.update_yaxes(showticklabels=False, title="")
event = st.plotly_chart(
    fig, key="weights_map", on_select="rerun", selection_mode="points", config=image_config("weights_map")
)
chart_points = event.selection.points if event and event.selection else []
if chart_points:  # drill down: open the selected model's cell
    open_cell(spec, *chart_points[0]["customdata"][:2])
st.caption("Select a point (click) to open its cell.")
downloads(points, "weights_map")
