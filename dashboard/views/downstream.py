"""Ensembles & averaging: downstream results by phase — heatmaps with the phases over them and per-phase
distributions — for whatever downstream metrics the zoo's metrics table holds; what is missing otherwise."""

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from analysis.cells import metric_cells
from analysis.phases import classify, default_thresholds
from dashboard.charts import grid_heatmap
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, pick_epoch

# Outputs of downstream studies (science.md §4): prefixes of our own metrics, and the published zoos' keys.
DOWNSTREAM = ("ensemble_", "average_", "transfer_", "prune_", "wiseft_acc_test_delta", "gitrebasin_acc_test_delta")

zoo = current_zoo()
spec = zoo.spec
st.title(f"Ensembles & averaging: {zoo.name}")
epoch = pick_epoch(spec, "downstream_epoch")
m = load_metrics(zoo.root).filter((pl.col("epoch") == epoch) & pl.col("error").is_null())
present = sorted(n for n in m["metric"].unique() if n.startswith(DOWNSTREAM))
if not present:
    st.info(
        "No downstream results in this zoo at this epoch. Missing: ensembles of each cell's seeds "
        "(accuracy, NLL, gain over the single model, disagreement), averaging over epochs and over aligned "
        "seeds, transfer and pruning by phase — metrics named `ensemble_*`, `average_*`, `transfer_*`, "
        "`prune_*` (the downstream metrics are not part of the registry yet), or the published zoos' "
        "`wiseft_acc_test_delta` / `gitrebasin_acc_test_delta`, which `python -m data.import_ptmz` imports. "
        "The Phase diagram, Cell detail and Hessian spectra pages browse everything else."
    )
    st.stop()
cells = load_cells(zoo.root, epoch)
labelled = classify(cells, default_thresholds(cells))
name = st.selectbox("Result", present, key="downstream_metric")
split = m.filter(pl.col("metric") == name)["split"][0]
values = metric_cells(m, zoo.catalog, spec, epoch, name, split)
left, right = st.columns(2)
chart(
    grid_heatmap(values, spec, "value", title=f"{name}, seed mean", colorscale="RdBu", zmid=0.0, labels=labelled),
    values,
    "downstream_map",
    left,
)
by_phase = values.join(
    labelled.select(spec.load.knob, spec.temperature.knob, "phase"), on=[spec.load.knob, spec.temperature.knob]
)
fig = go.Figure(
    [
        go.Box(y=g["value"].to_numpy(), name=p, boxpoints="all")
        for (p,), g in by_phase.sort("phase").group_by("phase", maintain_order=True)
    ]
)
fig.update_layout(title=f"{name} by phase", height=420, margin=dict(l=10, r=10, t=40, b=10), showlegend=False)
chart(fig, by_phase, "downstream_by_phase", right)
