"""Hessian spectra: spectral densities of chosen cells or of one cell per phase; sharpness over the grid."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.cell_spectra import LAYER_METRICS, cell_densities, layer_sharpness, phase_representatives
from analysis.taxonomy.cells import CELL_QUANTITIES, QUANTITIES, cell_label
from analysis.taxonomy.phases import classify, default_thresholds, labelable
from dashboard.charts import PHASE_COLOURS, density_chart, grid_heatmap
from dashboard.glossary import link
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, helptext, load_right, pick_epoch, python_source
from data.models.layers import model_layer_names

# the "copy as Python" lines after loading a zoo's metrics rows into `frame` (a snippet needs its own imports)
OPEN = "from data.zoo.store import Zoo\nzoo = Zoo.open({root!r})\n"
DENSITIES = OPEN + ("from analysis.studies.cell_spectra import cell_densities\n"
                    "frame = cell_densities(frame, zoo.catalog, zoo.spec, {cells!r}, {epoch!r}, {split!r})")
CELL_MAP = OPEN + ("from analysis.taxonomy.cells import CELL_QUANTITIES, cell_table\n"
                   "frame = cell_table(frame, zoo.catalog, zoo.spec, {epoch!r}, "
                   "{{{q!r}: CELL_QUANTITIES[{q!r}]}}).select({columns!r})")
LAYERS = OPEN + ("from analysis.studies.cell_spectra import layer_sharpness\n"
                 "from data.models.layers import model_layer_names\n"
                 "frame = layer_sharpness(frame, zoo.catalog, zoo.spec, {cells!r}, {epoch!r}, "
                 "model_layer_names(zoo, {model!r}))")

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
split = c2.radio("Loss", ["train", "test"], horizontal=True, key="spectra_split",
                 help=helptext("The Hessian of the training or of the test loss.", "esd", "slq"))
mode = c3.radio("Cells", ["one per phase", "chosen"], horizontal=True, key="spectra_mode",
                help=helptext("One per phase: the cell of median test accuracy among each phase's cells "
                              "(default thresholds).", "phase"))
cells = load_cells(zoo.root, epoch)
xk, yk = spec.load.knob, spec.temperature.knob
if mode == "one per phase" and not labelable(cells):
    st.info(f"No phase labels at epoch {epoch} (no train loss or mode connectivity yet): choose cells instead.")
    st.stop()
if mode == "one per phase":
    labelled = classify(cells, default_thresholds(cells))
    named = {f"{phase} ({x}, {y})": (phase, x, y) for phase, x, y in phase_representatives(labelled, spec)}
    picks = [(name, x, y) for name, (_, x, y) in named.items()]
    colours = {name: PHASE_COLOURS[phase] for name, (phase, _, _) in named.items()}  # each phase in its colour
else:
    options = [(r[xk], r[yk]) for r in cells.iter_rows(named=True)]
    chosen = st.multiselect(
        "Cells",
        options,
        default=[options[-1], options[0]],
        key="spectra_cells",
        format_func=lambda c: cell_label(spec, *c),
    )
    picks, colours = [(cell_label(spec, x, y), x, y) for x, y in chosen], None
if not picks:
    st.info("Choose at least one cell.")
    st.stop()
curves = cell_densities(metrics, cat, spec, picks, epoch, split)
log_y = st.toggle("Log density", value=True, key="spectra_log")
chart(
    density_chart(curves, log_density=log_y, title=f"Spectral density (seed mean), {split} loss, epoch {epoch}",
                  colours=colours),
    curves,
    "spectra_density",
    st,
    source=Slice.of(zoo.root, "metrics", {"metric": "hessian_esd", "epoch": epoch, "split": split},
                    then=DENSITIES.format(root=str(zoo.root), cells=picks, epoch=epoch, split=split)),
)
st.caption(f"Each cell's density is the mean over its seeds ({link('esd')} by {link('slq')}).")
# the cells' sharpness quantities: ln of the seed mean, as declared (analysis.taxonomy.cells.QUANTITIES)
sharpness = (("hessian_trace", "spectra_trace", "trace"), ("hessian_top_eigenvalue", "spectra_top", "lambda-max"))
for col, (q, key, term) in zip(st.columns(2), sharpness):
    quantity, prefix = QUANTITIES[q], QUANTITIES[q].aggregate.prefix()
    columns = [xk, yk, q, f"{q}_n"]  # the map's value and its seed count per cell
    shown = cells.select(columns)
    chart(
        grid_heatmap(shown.rename({f"{q}_n": "n_seeds"}), spec, q, title=f"{prefix}{quantity.label} (seed mean)",
                     scale=colour_scale(declared(q)), hover_label=prefix + quantity.label,
                     colour_title=prefix + quantity.axis_title(spec.task), load_right=load_right()),
        shown,
        key,
        col,
        source=Slice.of(zoo.root, "metrics", {"metric": [m for m, _, _ in CELL_QUANTITIES[q]], "epoch": epoch},
                        then=CELL_MAP.format(root=str(zoo.root), epoch=epoch, q=q, columns=columns)),
    )
    col.caption(f"Per cell: ln of the seed mean of the {link(term)} ({quantity.rule}).")
cell_knobs = [(x, y) for _, x, y in picks]
# layers by their module path (fc1, conv2…): every model of a zoo shares its architecture's layer structure
named_by = cat["model_id"].min()
layers = layer_sharpness(metrics, cat, spec, cell_knobs, epoch, model_layer_names(zoo, named_by))
st.subheader("Per layer (seed means, training loss)")
st.dataframe(layers, hide_index=True, key="spectra_layers",
             column_config={m: st.column_config.NumberColumn(declared(m).axis_title, format="%.4g")
                            for m in LAYER_METRICS})
python_source(Slice.of(zoo.root, "metrics", {"metric": list(LAYER_METRICS), "epoch": epoch},
                       then=LAYERS.format(root=str(zoo.root), cells=cell_knobs, epoch=epoch, model=named_by)),
              "spectra_layers")
