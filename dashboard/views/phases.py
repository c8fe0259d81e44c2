"""Phase diagram: any metric over the load × temperature grid with the phase labels over it, thresholds
that reclassify at once, and the categorical phase map with each cell's margins."""

import math

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.taxonomy.cells import QUANTITIES, has_annotated, metric_cells, quantity_sources, scalar_metrics
from analysis.taxonomy.phases import Thresholds, classify, default_thresholds, phase_counts
from dashboard.charts import grid_heatmap, phase_map
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, downloads, image_config, open_cell, pick_epoch

zoo = current_zoo()
spec = zoo.spec
st.title(f"Phase diagram: {zoo.name}")
c1, c2, c3 = st.columns(3)
with c1:
    epoch = pick_epoch(spec, "phases_epoch")
cells = load_cells(zoo.root, epoch)
if cells["train_loss"].is_null().all() or cells["mc"].is_null().all():
    st.warning(
        "This zoo has no metrics at this epoch yet: run `phasezoo run <zoo>` first. "
        "The Zoo overview page still shows its training results."
    )
    st.stop()
metrics = load_metrics(zoo.root)
options = [tuple(r) for r in scalar_metrics(metrics.filter(pl.col("epoch") == epoch)).iter_rows()]
# the headline: test accuracy, or for a regression zoo the relative L2 error against the exact solution
default = next((i for name in ("test_acc", "rel_l2_error") for i, o in enumerate(options) if o[0] == name), 0)
metric, split, coord = c2.selectbox(
    "Metric", options, index=default, key="phases_metric", format_func=lambda o: o[0] + (f" ({o[1]})" if o[1] else "")
)
how = c3.selectbox("Over seeds", ["mean", "min", "max", *[f"seed {s}" for s in spec.seeds]], key="phases_how")

base = default_thresholds(cells)
loss_unit, mc_unit = QUANTITIES["train_loss"].unit(spec.task), QUANTITIES["mc"].unit(spec.task)
with st.expander("Thresholds (reclassify at once)", expanded=False):
    t1, t2, t3 = st.columns(3)
    log_tau = t1.slider(
        f"log₁₀ τ_L (train loss{', ' + loss_unit if loss_unit else ''})",
        min(-3.0, math.floor(math.log10(base.train_loss)) - 1.0),  # a PINN's losses reach 1e-5
        1.0,
        round(math.log10(base.train_loss), 2),
        0.01,
        key="phases_tau_loss",
        help=base.provenance.get("train_loss"),
    )
    eps = t2.slider(f"ε (mc, {mc_unit})", 0.0, 10.0, base.mc, 0.1, key="phases_eps", help=base.provenance.get("mc"))
    tau_c = t3.slider(
        "τ_C (CKA)",
        0.0,
        1.0,
        round(base.cka, 3) if base.cka == base.cka else 0.7,
        0.005,
        key="phases_tau_cka",
        help=base.provenance.get("cka"),
    )
th = Thresholds(10**log_tau, eps, tau_c, provenance=base.provenance)
labelled = classify(cells, th)

out = declared(metric)
values = metric_cells(metrics, zoo.catalog, spec, epoch, metric, split, coord, how, out.aggregate)
aggregated = how not in ("min", "max")  # the declared aggregate applies (a seed's own value is aggregated too)
scale = colour_scale(out, cell_value=aggregated)
fixed = scale.bounds is not None and st.toggle(f"Fixed {scale.bounds[0]:g}–{scale.bounds[1]:g} scale",
                                               key="phases_fixed")
prefix = out.aggregate.prefix() if aggregated else ""
label = prefix + metric + (f" ({split})" if split else "")
left, right = st.columns(2)
chart(
    grid_heatmap(
        values,
        spec,
        "value",
        title=f"{label}, {how} over seeds, epoch {epoch}",
        scale=scale,
        fixed=fixed,
        hover_label=prefix + out.human,
        colour_title=prefix + out.axis_title,
        labels=labelled,
    ),
    values,
    "phases_metric_map",
    left,
)
event = right.plotly_chart(
    phase_map(labelled, spec, title="Phase labels (· = near a threshold; click a cell)"),
    key="phases_map",
    on_select="rerun",
    selection_mode="points",
    config=image_config("phases_map"),
)
downloads(labelled, "phases_map", right)
if event and event.selection and event.selection.points:  # drill down: open the clicked cell
    open_cell(spec, event.selection.points[0]["x"], event.selection.points[0]["y"])
st.dataframe(phase_counts(labelled), hide_index=True, key="phases_summary")
st.caption(
    "Decision order (science.md §1): train loss > τ_L → I/II; mc < −ε → I/III; in IV, CKA ≥ τ_C → IV-B. "
    "mc is the trained Bézier curve's, CKA the logit CKA on test inputs, both averaged over seed pairs."
)
if has_annotated(metrics):  # an imported zoo: say which quantities were measured here and which were published
    st.caption("Sources of the phase quantities (recomputed here where a model has the value, else the published "
               "zoo's own): " + "; ".join(s.words() for s in quantity_sources(metrics, zoo.catalog, spec, epoch)
                                          if s.quantity in ("train_loss", "mc", "cka", "hessian_trace")) + ".")
if out.sign:  # a name no metric declares (an ad-hoc import) has nothing to say
    st.caption(f"{metric}: {out.sign}" + (f" [{out.unit}]" if out.unit else ""))
