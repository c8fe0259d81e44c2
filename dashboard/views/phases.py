"""Phase diagram: any metric over the load × temperature grid with the phase labels over it, thresholds
that reclassify at once, and the categorical phase map with each cell's margins; a box or lasso on the map
selects cells for the group comparison page."""

import math

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.taxonomy.cells import QUANTITIES, has_annotated, metric_cells, quantity_sources, scalar_metrics
from analysis.taxonomy.phases import NEAR, Thresholds, classify, default_thresholds, labelable, phase_counts
from analysis.taxonomy.sensitivity import SCALE, SYMBOL, THRESHOLDS, relabelled, sensitivity, shift_grid
from analysis.taxonomy.stability import RESAMPLES, UNSTABLE, with_stability
from dashboard import state
from dashboard.charts import grid_heatmap, phase_map, relabelled_chart
from dashboard.glossary import science_link
from dashboard.group import Group, set_group
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.uncertainty import load_stability
from dashboard.widgets import (
    cell_of,
    chart,
    declared,
    downloads,
    helptext,
    image_config,
    load_right,
    metric_name,
    number_column,
    open_cell,
    pick_epoch,
    python_source,
)

zoo = current_zoo()
spec = zoo.spec
st.title(f"Phase diagram: {zoo.name}")
c1, c2, c3 = st.columns(3)
with c1:
    epoch = pick_epoch(spec, "phases_epoch")
cells = load_cells(zoo.root, epoch)
if not labelable(cells):
    st.warning(
        "This zoo has no metrics at this epoch yet: run `phasezoo run <zoo>` first. "
        "The Zoo overview page still shows its training results."
    )
    st.stop()
metrics = load_metrics(zoo.root)
options = [tuple(r) for r in scalar_metrics(metrics.filter(pl.col("epoch") == epoch)).iter_rows()]
# the headline: test accuracy, or for a regression zoo the relative L2 error against the exact solution
default = next((i for name in ("test_acc", "rel_l2_error") for i, o in enumerate(options) if o[0] == name), 0)
metric, split, coord = c2.selectbox("Metric", options, index=default, key="phases_metric", format_func=metric_name)
how = c3.selectbox("Over seeds", ["mean", "min", "max", *[f"seed {s}" for s in spec.seeds]], key="phases_how")

base = default_thresholds(cells)
loss_unit, mc_unit = QUANTITIES["train_loss"].unit(spec.task), QUANTITIES["mc"].unit(spec.task)
# the sliders' ranges and defaults (a linked value outside a range is refused, one equal to its default
# stays out of the URL: dashboard.state)
log_tau_range = (min(-3.0, math.floor(math.log10(base.train_loss)) - 1.0), 1.0)  # a PINN's losses reach 1e-5
defaults = {"phases_tau_loss": round(math.log10(base.train_loss), 2), "phases_eps": base.mc,
            "phases_tau_cka": round(base.cka, 3) if base.cka == base.cka else 0.7}
for key, lo, hi in (("phases_tau_loss", *log_tau_range), ("phases_eps", 0.0, 10.0), ("phases_tau_cka", 0.0, 1.0)):
    state.default(key, defaults[key])
    state.within(key, lo, hi)
with st.expander("Thresholds (reclassify at once)", expanded=False):
    t1, t2, t3 = st.columns(3)
    log_tau = t1.slider(f"log₁₀ τ_L (train loss{', ' + loss_unit if loss_unit else ''})", *log_tau_range,
                        defaults["phases_tau_loss"], 0.01, key="phases_tau_loss",
                        help=helptext(base.provenance.get("train_loss", ""), "tau-l"))
    eps = t2.slider(f"ε (mc, {mc_unit})", 0.0, 10.0, defaults["phases_eps"], 0.1, key="phases_eps",
                    help=helptext(base.provenance.get("mc", ""), "epsilon", "mc"))
    tau_c = t3.slider("τ_C (CKA)", 0.0, 1.0, defaults["phases_tau_cka"], 0.005, key="phases_tau_cka",
                      help=helptext(base.provenance.get("cka", ""), "tau-c", "cka"))
# at the defaults the map is the stored one (phasezoo phases): exact thresholds, re-derived in each resample
at_defaults = (log_tau, eps, tau_c) == tuple(defaults[k] for k in ("phases_tau_loss", "phases_eps", "phases_tau_cka"))
th = base if at_defaults else Thresholds(10**log_tau, eps, tau_c, provenance=base.provenance)
axes = [spec.load.knob, spec.temperature.knob]
stability = load_stability(zoo.root, epoch, None if at_defaults else th)
labelled = with_stability(classify(cells, th), stability, axes)

out = declared(metric)
values = metric_cells(metrics, zoo.catalog, spec, epoch, metric, split, coord, how, out.aggregate)
aggregated = how not in ("min", "max")  # the declared aggregate applies (a seed's own value is aggregated too)
scale = colour_scale(out, cell_value=aggregated)
bounds = scale.bounds and (f"{scale.bounds[0]:.0%}–{scale.bounds[1]:.0%}" if out.unit == "fraction"
                           else f"{scale.bounds[0]:g}–{scale.bounds[1]:g}")
fixed = scale.bounds is not None and st.toggle(f"Fixed {bounds} scale", key="phases_fixed")
prefix = out.aggregate.prefix() if aggregated else ""
label = prefix + metric_name((metric, split, coord))
# the rows of both maps, as a notebook loads them: this epoch's metrics, then the page's own aggregation
rows = {"epoch": epoch}
opened = f"from data.zoo.store import Zoo\nzoo = Zoo.open({str(zoo.root)!r})\n"
values_source = Slice.of(zoo.root, "metrics", rows, then=(
    "from analysis.metrics.outputs import Aggregate\nfrom analysis.taxonomy.cells import metric_cells\n" + opened
    + f"frame = metric_cells(frame, zoo.catalog, zoo.spec, {epoch}, {metric!r}, {split!r}, {coord!r}, {how!r},\n"
    f"                     Aggregate({out.aggregate.name!r}))"))
labels_source = Slice.of(zoo.root, "metrics", rows, then=(
    "from analysis.taxonomy.cells import cell_table\nfrom analysis.taxonomy.phases import Thresholds, classify\n"
    + opened + f"frame = classify(cell_table(frame, zoo.catalog, zoo.spec, {epoch}), "
    f"Thresholds({th.train_loss!r}, {th.mc!r}, {th.cka!r}))"))
left, right = st.columns(2)
chart(
    grid_heatmap(
        values,
        spec,
        "value",
        title=f"{label[:1].upper() + label[1:]}, {how} over seeds, epoch {epoch}",
        scale=scale,
        fixed=fixed,
        hover_label=prefix + out.human,
        colour_title=prefix + out.axis_title,
        labels=labelled,
        load_right=load_right(),
    ),
    values,
    "phases_metric_map",
    left,
    source=values_source,
)
# Streamlit turns clicks into selections only outside the select and lasso drag modes: the map opens in zoom
# mode so a click opens a cell, and its toolbar's box or lasso selects a group
event = right.plotly_chart(
    phase_map(labelled, spec, title=f"Phase labels, epoch {epoch}", load_right=load_right()),
    key="phases_map",
    on_select="rerun",
    selection_mode=("points", "box", "lasso"),
    config=image_config("phases_map"),
)
right.caption("Click a cell to open it; a box or lasso (the chart's toolbar) selects cells to compare.")
shaky = labelled.filter(pl.col("stability") < UNSTABLE).sort("stability")
right.caption(
    f"Label stability: the share of {RESAMPLES} resamples of each cell's seeds and seed pairs that keep its phase "
    + ("(thresholds re-derived on each resampled grid, as `phasezoo phases` stores it)" if at_defaults else
       "(thresholds fixed at the sliders' values)")
    + f"; {shaky.height} of {labelled.height} cells below {UNSTABLE:g} are framed"
    + (": " + ", ".join(f"{r[axes[0]]}/{r[axes[1]]} {r['phase']} {r['stability']:.3g}"
                        for r in shaky.head(8).iter_rows(named=True)) + ("…" if shaky.height > 8 else "")
       if shaky.height else "") + ".",
    help=helptext("Seeds resampled with replacement for the train loss, seed pairs for mc and CKA (a pair's "
                  "two together), each resample relabelled by the rules. A cell with fewer than two seeds or "
                  "pairs has no stability.", "phase"))
downloads(labelled, "phases_map", right)
python_source(labels_source, "phases_map", right)
selection = event.selection if event else None
if selection and (selection.box or selection.lasso):  # a group: its cells go to the comparison page
    chosen = tuple(dict.fromkeys(cell_of(spec, p["x"], p["y"]) for p in selection.points))
    if right.button(f"Compare selected cells ({len(chosen)})", key="phases_compare", disabled=not chosen,
                    icon=":material/join:"):
        set_group(Group(str(zoo.root), cells=chosen, origin="phase map"))
        st.switch_page("views/groups.py")
elif selection and selection.points:  # drill down: open the clicked cell
    open_cell(spec, selection.points[0]["x"], selection.points[0]["y"])
acc = declared("test_acc")
st.dataframe(phase_counts(labelled), hide_index=True, key="phases_summary", column_config={
    "phase": st.column_config.TextColumn("Phase label", help=helptext("The taxonomy's phase.", "phase")),
    "cells": st.column_config.NumberColumn("Cells"),
    "median_test_acc": number_column(acc, prefix="median "),
    "fraction": st.column_config.NumberColumn("Share of the grid", format="percent"),
})
st.caption(
    f"Decision order ({science_link(1)}): train loss > τ_L → I/II; mc < −ε → I/III; in IV, CKA ≥ τ_C → IV-B. "
    "mc is the trained Bézier curve's, CKA the logit CKA on test inputs, both averaged over seed pairs."
)
if has_annotated(metrics):  # an imported zoo: say which quantities were measured here and which were published
    st.caption("Sources of the phase quantities (recomputed here where a model has the value, else the published "
               "zoo's own): " + "; ".join(s.words() for s in quantity_sources(metrics, zoo.catalog, spec, epoch)
                                          if s.quantity in ("train_loss", "mc", "cka", "hessian_trace")) + ".")
if out.sign:  # a name no metric declares (an ad-hoc import) has nothing to say
    st.caption(f"{out.axis_title}: {out.sign}")  # name [unit]: what a larger value means

# ----------------------------------------------------------------------------- threshold sensitivity
st.subheader("Threshold sensitivity", help=helptext(
    "Each threshold alone (the others held at their values): how far it can move before each cell's label "
    "changes — τ_L in decades of train loss, ε in the mc's unit, τ_C in CKA units. A threshold a cell's label "
    "does not depend on (τ_C outside phase IV) has no such move.", "tau-l", "epsilon", "tau-c"))
sens = sensitivity(labelled, th, axes)
moves = sens.frame()
scales = {"train_loss": "decades", "mc": mc_unit, "cka": "CKA units"}
lines = []
for name in THRESHOLDS:
    can = moves.filter((pl.col("threshold") == name) & pl.col("move").is_not_null()).sort("distance")
    if can.is_empty():
        lines.append(f"- **{SYMBOL[name]}**: no move of it alone relabels any cell.")
        continue
    first = can.row(0, named=True)
    flip = sens.at(first[axes[0]], first[axes[1]])[THRESHOLDS.index(name)]
    within = can.filter(pl.col("distance") < NEAR[name]).height
    lines.append(f"- **{SYMBOL[name]}**: the nearest flip is {flip.words(scales[name])} "
                 f"({axes[0]}={first[axes[0]]}, {axes[1]}={first[axes[1]]}: {first['phase']}); {within} of "
                 f"{labelled.height} cells flip within {NEAR[name]:g} {scales[name]}, {can.height} can flip at all.")
st.markdown("\n".join(lines))
st.caption("Thresholds: " + "; ".join(
    f"{SYMBOL[k]} = {getattr(th, k):.4g} ({'the slider' if not at_defaults else base.provenance.get(k, '')})"
    for k in THRESHOLDS) + ".")
if st.toggle("Show the sensitivity charts", key="phases_sensitivity"):
    titles = {n: f"{SYMBOL[n]} shift [{scales[n]}]" for n in THRESHOLDS}
    curves = {n: relabelled(sens, n, shift_grid(n, th)) for n in THRESHOLDS}
    table = pl.concat([c.with_columns(threshold=pl.lit(n)) for n, c in curves.items()])
    chart(relabelled_chart(curves, titles, total=labelled.height,
                          title=f"Cells relabelled as each threshold alone moves, epoch {epoch}"),
          table, "phases_sensitivity_curves")
    which = st.selectbox("Per cell", THRESHOLDS, format_func=lambda n: f"{SYMBOL[n]}: how far it can move",
                         key="phases_sensitivity_threshold")
    per_cell = moves.filter(pl.col("threshold") == which).with_columns(value=pl.col("distance"))
    chart(grid_heatmap(per_cell, spec, "value", title=f"How far {SYMBOL[which]} can move before each cell "
                       f"flips [{scales[which]}], epoch {epoch} (blank: no move of it alone)",
                       hover_label=f"{SYMBOL[which]} move", colour_title=scales[which], labels=labelled,
                       load_right=load_right()),
          per_cell, "phases_sensitivity_cells")
    st.caption(f"Per cell the smallest move of {SYMBOL[which]} that changes its label ({SCALE[which]} in the "
               "rules' own scale), the others held; cells no move of it alone relabels are blank.")
