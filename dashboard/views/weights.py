"""Weight space: precomputed PCA/UMAP maps of the models' weights (phasezoo embed), coloured by phase, by a
knob or by a metric, with how well each map separates the phases; clicking a point opens its cell, a box or
lasso selection becomes a group for the group comparison page."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.embed import axis_titles, read_embeddings, read_explained_variance
from analysis.studies.separation import knn_separation
from analysis.taxonomy.phases import UNCLASSIFIED, label_by_default, labelable
from dashboard.charts import weight_space
from dashboard.group import Group, set_group
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells
from dashboard.widgets import declared, downloads, helptext, image_config, open_cell, python_source
from data.zoo.store import CATALOG_FILE

CATALOG_COLUMNS = ("model_id", "seed", "test_acc", "train_loss")  # the catalog columns a point carries

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
xk, yk = spec.load.knob, spec.temperature.knob
st.title(f"Weight space: {zoo.name}")
emb = read_embeddings(zoo.root)
if emb.is_empty():
    st.warning("No embeddings for this zoo yet: run `phasezoo embed <zoo>` (PCA and UMAP of the weights).")
    st.stop()
c1, c2, c3 = st.columns(3)
epochs = sorted(emb["epoch"].unique())
epoch = c1.selectbox("Epoch", epochs, index=len(epochs) - 1, key="weights_epoch")
methods = sorted(emb["method"].unique(), reverse=True)  # umap before pca
method = c2.radio("Method", methods, horizontal=True, key="weights_method",
                  help=helptext("The 2-D map of the weights.", "pca", "umap"))
colour = c3.selectbox("Colour by", ["phase", xk, yk, "test_acc", "train_loss", "seed"], key="weights_colour",
                      format_func=lambda c: c if c in ("phase", xk, yk, "seed") else declared(c).human)

analysis_epoch = epoch if epoch in spec.analysis_epochs else max(spec.analysis_epochs)
with st.spinner("Labelling the cells…"):
    cells = load_cells(zoo.root, analysis_epoch)
    labelled = labelable(cells)
    phases = label_by_default(cells).select(xk, yk, "phase")
models = cat.filter(pl.col("epoch") == epoch).select(*CATALOG_COLUMNS, xk, yk)
at_epoch = emb.filter(pl.col("epoch") == epoch).join(models, on="model_id").join(phases, on=[xk, yk], how="left")
points = at_epoch.filter(pl.col("method") == method)
if colour == "phase" and epoch not in spec.analysis_epochs:
    st.caption(f"Phases are those of analysis epoch {analysis_epoch}.")

# the phase separation of each map at this epoch: can a point's phase be told from its neighbours'?
scored = at_epoch.filter(pl.col("phase").is_not_null() & (pl.col("phase") != UNCLASSIFIED))
if scored.select(pl.col("phase").n_unique()).item() < 2:
    st.info("Phase separation needs at least two phases among the models (label the cells with "
            "`phasezoo run` for mode connectivity and CKA).")
else:
    for col, m in zip(st.columns(len(methods)), methods):
        g = scored.filter(pl.col("method") == m)
        if g.height < 2 or g["phase"].n_unique() < 2:  # nothing to separate (one model, or one phase)
            col.caption(f"{m.upper()}: {g.height} labelled model(s) in {g['phase'].n_unique()} phase(s): no "
                        "separation score.")
            continue
        s = knn_separation(g.select("x", "y").to_numpy(), g["phase"].to_list())
        majority = g["phase"].mode().sort()[0]
        col.metric(f"Phase separation, {m.upper()}", f"{s.accuracy:.1%} ± {s.stderr:.1%}",
                   help=helptext(f"Leave-one-out {s.k}-nearest-neighbour phase accuracy over {s.n} models "
                                 f"(± binomial standard error). Chance: {s.chance:.1%}, the share of the "
                                 f"commonest phase ({majority}). Seeds of a cell share its phase, so a map that "
                                 "only keeps seeds together already scores above chance.", "separation", "stderr"))
        col.caption(f"chance {s.chance:.1%} (always {majority}); k = {s.k}")

# the phase, knobs and seeds are categories; a metric is coloured on its declared scale
out = None if colour in ("phase", xk, yk, "seed") else declared(colour)
x_title, y_title = axis_titles(method, read_explained_variance(zoo.root), epoch)
fig = weight_space(points, spec, colour, title=f"{method.upper()} of the weights, epoch {epoch}",
                   scale=colour_scale(out) if out else None, colour_title=out.axis_title if out else "",
                   x_title=x_title, y_title=y_title, unit=out.unit if out else "",
                   hover_units={c: declared(c).unit for c in ("test_acc", "train_loss")})
event = st.plotly_chart(fig, key="weights_map", on_select="rerun", selection_mode=("points", "box", "lasso"),
                        config=image_config("weights_map"))
selection = (event or {}).get("selection") or {}  # PlotlyState is a dict: read as one
chosen = selection.get("points") or []
if chosen and (selection.get("box") or selection.get("lasso")):  # a group: every point in the box or lasso
    # the builder puts each point's model id in its trace's text
    ids = sorted({fig.data[p["curve_number"]].text[p["point_index"]] for p in chosen})
    if st.button(f"Compare this group ({len(ids)} models)", key="weights_compare", type="primary"):
        set_group(Group(str(zoo.root), models=tuple(ids), origin="weight space"))
        st.switch_page("views/groups.py")
elif chosen:  # a click: open the model's cell
    with st.spinner("Opening the cell…"):
        open_cell(spec, *chosen[0]["customdata"][:2])
st.caption("Click a point to open its cell; pick the lasso or box tool in the chart's toolbar and draw around models "
           "to compare them as a group.")
downloads(points, "weights_map")
knobs = [xk, yk]
python_source(Slice.of(
    zoo.root, "embeddings", {"epoch": epoch, "method": method}, sort=("model_id",),
    then=f"from phasezoo.api import label_cells\n\n"
         f"models = pl.read_parquet({str(zoo.root / CATALOG_FILE)!r}).filter(pl.col('epoch') == {epoch})"
         f".select({[*CATALOG_COLUMNS, *knobs]!r})\n"
         + (f"phases = label_cells({str(zoo.root)!r}, epoch={analysis_epoch}).select({[*knobs, 'phase']!r})\n"
            if labelled else f"phases = models.select({knobs!r}).unique().with_columns(phase=pl.lit({UNCLASSIFIED!r}))\n")
         + f"frame = frame.join(models, on='model_id').join(phases, on={knobs!r}, how='left')"), "weights_map")
