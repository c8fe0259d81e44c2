"""Group comparison: a group of cells or models (selected on the phase map or in weight space, or picked here)
side by side — overlaid training curves, Hessian spectra and a metric's distribution — optionally against a
second group: the rest of its phases, or a second selection."""

import polars as pl
import streamlit as st

from analysis.studies.groups import (
    group_models,
    member_densities,
    members,
    metric_points,
    rest_of_phases,
    training_curves,
)
from analysis.taxonomy.cells import cell_label, scalar_metrics
from analysis.taxonomy.phases import label_by_default
from dashboard.charts import axis_orders, density_chart, line_chart, zoo_boxes
from dashboard.group import current_group
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, helptext, metric_name, pick_epoch

NONE, REST, SECOND = "nothing", "the rest of its phases", "a second selection of cells"

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
xk, yk = spec.load.knob, spec.temperature.knob
st.title(f"Group comparison: {zoo.name}")
xs, ys = axis_orders(spec)
grid = [(x, y) for y in ys[::-1] for x in xs]  # hottest row first, as on the phase map


def pick_cells(label: str, key: str) -> list[tuple]:
    return st.multiselect(label, grid, key=key, format_func=lambda c: cell_label(spec, *c))


group = current_group(str(zoo.root))
if group is not None:
    a_ids = group_models(cat, spec, group.cells, group.models)
    st.caption(f"Group A: {len(group.cells)} cells and {len(group.models)} models selected in "
               f"{group.origin or 'another page'} — {len(a_ids)} models.")
else:
    a_ids = group_models(cat, spec, pick_cells("Group A: cells", "groups_a"))
    st.caption("Select cells here, or a group on the phase map (box select) or in weight space (lasso).")
if not a_ids:
    st.info("Pick at least one cell (or select a group on the phase map or in weight space).")
    st.stop()

epoch = pick_epoch(spec, "groups_epoch")
with st.spinner("Labelling the cells…"):
    cells = load_cells(zoo.root, epoch)
    labelled = label_by_default(cells)
c1, c2 = st.columns(2)
versus = c1.radio("Compare with", [NONE, REST, SECOND], horizontal=True, key="groups_versus",
                  help=helptext("Group B: the other models of the cells whose phase (at this epoch) is one of "
                                "group A's, or cells you pick.", "phase"))
per = c2.radio("One colour per", ["model", "cell"], horizontal=True, key="groups_per",
               help="Per cell: each cell's models of the group drawn as their mean.")
groups = {"A": a_ids}
if versus == REST:
    groups["B"] = rest_of_phases(labelled, cat, spec, a_ids)
elif versus == SECOND:
    groups["B"] = group_models(cat, spec, pick_cells("Group B: cells", "groups_b"))
if "B" in groups and not groups["B"]:
    st.info("Group B holds no model: comparing group A alone.")
    del groups["B"]
named = {}
for g, ids in groups.items():
    named |= members(cat, spec, ids, per, prefix=f"{g} · " if len(groups) > 1 else "")
st.caption(" · ".join(f"group {g}: {len(ids)} models" for g, ids in groups.items()) + f" — {len(named)} curves.")

st.subheader("Training curves")
curves = training_curves(cat, named)
every = [m for ids in groups.values() for m in ids]  # the models of both groups: the rows each snippet loads
left, right = st.columns(2)
for kind, col, log_y, what in (("loss", left, True, "Loss"), ("acc", right, False, "Accuracy")):
    k = curves.filter((pl.col("kind") == kind) & pl.col("value").is_not_null())
    if k.is_empty():
        col.info("A regression task has no accuracy.")
        continue
    chart(line_chart(k, "epoch", "value", "member", dash="split", log_y=log_y,
                     title=f"{what} (solid: test, dotted: train)"), k, f"groups_{kind}", col,
          source=Slice.of(zoo.root, "catalog", {"model_id": every}, then=(
              "from analysis.studies.groups import training_curves\n\n"
              f"frame = training_curves(frame, {named!r}).filter((pl.col('kind') == {kind!r}) "
              "& pl.col('value').is_not_null())")))

st.subheader("Hessian spectra")
split = st.radio("Loss", ["train", "test"], horizontal=True, key="groups_split")
with st.spinner("Averaging the spectra…"):
    metrics = load_metrics(zoo.root)
    dens = member_densities(metrics, named, epoch, split)
if dens.is_empty():
    st.info(f"No Hessian spectra stored for these models at epoch {epoch} (metric hessian_esd).")
else:
    chart(density_chart(dens, "member", title=f"Spectral density of the {split} loss's Hessian, epoch {epoch}"),
          dens, "groups_spectra", source=Slice.of(
              zoo.root, "metrics", {"metric": "hessian_esd", "epoch": epoch, "split": split}, then=(
                  "from analysis.studies.groups import member_densities\n\n"
                  f"frame = member_densities(frame, {named!r}, {epoch}, {split!r})")))

st.subheader("Metric distributions")
at = metrics.filter((pl.col("epoch") == epoch) & pl.col("model_id").is_in([m for ids in groups.values() for m in ids]))
options = sorted(scalar_metrics(at).rows(), key=lambda o: not declared(o[0]).role)  # the taxonomy's first
if not options:
    st.info(f"No metrics for these models at epoch {epoch}: run `phasezoo run <zoo>`.")
    st.stop()
metric = st.selectbox("Metric", options, key="groups_metric",
                      format_func=metric_name)
out = declared(metric[0])
points = metric_points(at, cat, spec, epoch, metric, groups, labelled, per, out.aggregate)
chart(zoo_boxes(points.rename({"group": "zoo"}),
                title=f"{out.human} per phase, one point per {per if per == 'cell' else 'model (or seed pair)'}",
                y_title=out.aggregate.prefix() + out.axis_title), points, "groups_metric_boxes",
      source=Slice.of(zoo.root, "metrics", {"epoch": epoch, "model_id": every}, then=(
          "from analysis.metrics.outputs import Aggregate\n"
          "from analysis.studies.groups import metric_points\n"
          "from data.zoo.store import Zoo\n"
          "from phasezoo.api import label_cells\n\n"
          f"zoo = Zoo.open({str(zoo.root)!r})\n"
          f"frame = metric_points(frame, zoo.catalog, zoo.spec, {epoch}, {tuple(metric)!r}, {groups!r},\n"
          f"                      label_cells(zoo, epoch={epoch}), {per!r}, Aggregate({out.aggregate.name!r}))")))
