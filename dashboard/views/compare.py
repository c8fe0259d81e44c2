"""Compare zoos: the same taxonomy across zoos side by side — their phase maps in one row, the fraction of
each grid in each phase, and a metric's per-phase distribution in every zoo (one point per cell)."""

from pathlib import Path

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from analysis.taxonomy.cells import metric_cells, scalar_metrics
from analysis.taxonomy.phases import PHASES, UNCLASSIFIED, classify, default_thresholds, phase_counts
from dashboard.charts import PHASE_COLOURS, phase_map
from dashboard.picker import current_zoo, load_cells, load_metrics, load_zoo
from dashboard.widgets import chart, image_config
from data.zoo.store import ZooError, builtin_zoos

current = current_zoo()
st.title("Compare zoos")
known = {p.resolve(): p for p in builtin_zoos()}
known.setdefault(current.root.resolve(), current.root)
names = {str(p): load_zoo(p).name for p in known.values()}
chosen = st.multiselect("Zoos", list(names), default=list(names), format_func=names.get, key="compare_zoos")
extra = st.text_input("More zoo directories (comma-separated)", key="compare_extra", placeholder="/path/a, /path/b")
paths = chosen + [p.strip() for p in extra.split(",") if p.strip()]

zoos = []  # (zoo, epoch, labelled cells)
for path in paths:
    try:
        zoo = load_zoo(path)
    except (ZooError, ValueError, OSError) as e:
        st.error(f"{Path(path).name}: cannot open this zoo: {e}")
        continue
    epoch = max(zoo.spec.analysis_epochs)
    cells = load_cells(zoo.root, epoch)
    if cells["train_loss"].is_null().all() or cells["mc"].is_null().all():
        st.info(f"{zoo.name}: no phase labels at epoch {epoch} yet (`python -m analysis.runner.run {zoo.root}`).")
        continue
    zoos.append((zoo, epoch, classify(cells, default_thresholds(cells))))
if not zoos:
    st.warning("None of the chosen zoos has phase labels to compare.")
    st.stop()

cols = st.columns(len(zoos))
for col, (zoo, epoch, labelled) in zip(cols, zoos):
    fig = phase_map(labelled, zoo.spec, title=f"{zoo.name}, epoch {epoch}")
    fig.update_layout(height=380, showlegend=False)
    fig.update_traces(showscale=False, selector=dict(type="heatmap"))
    col.plotly_chart(fig, key=f"compare_map_{zoo.root}", config=image_config(f"compare_{zoo.name}"))
    col.caption(f"{zoo.spec.arch} on {zoo.spec.task}; load = {zoo.spec.load.knob}, "
                f"temperature = {zoo.spec.temperature.knob}")

counts = pl.concat([phase_counts(lab).select("phase", "cells", "fraction").with_columns(zoo=pl.lit(zoo.name))
                    for zoo, _, lab in zoos])
fig = go.Figure()
for p in (*PHASES, UNCLASSIFIED):
    g = counts.filter(pl.col("phase") == p)
    if not g.is_empty():
        fig.add_trace(go.Bar(y=g["zoo"].to_list(), x=g["fraction"].to_list(), name=p, orientation="h",
                             marker_color=PHASE_COLOURS[p], customdata=g["cells"].to_list(),
                             hovertemplate=f"{p}: %{{x:.0%}} of the grid (%{{customdata}} cells)<extra></extra>"))
fig.update_layout(barmode="stack", title="Fraction of each grid in each phase", height=140 + 60 * len(zoos),
                  margin=dict(l=10, r=10, t=70, b=10),
                  legend=dict(orientation="h", traceorder="normal", yanchor="bottom", y=1.0, xanchor="right", x=1))
fig.update_xaxes(tickformat=".0%", range=[0, 1])
chart(fig, counts, "compare_fractions")

# per-cell metrics of any compared zoo (a regression zoo has no accuracy; a zoo without the chosen one is named)
have = {}
for zoo, epoch, _ in zoos:
    m = load_metrics(zoo.root)
    have[zoo.name] = {tuple(r) for r in scalar_metrics(m.filter(pl.col("epoch") == epoch)).iter_rows()}
options = sorted(set().union(*have.values()))
if not options:
    st.info("The chosen zoos have no per-cell metric.")
    st.stop()
default = next((i for i, o in enumerate(options) if o[0] == "test_acc"), 0)
metric, split, coord = st.selectbox("Metric", options, index=default, key="compare_metric",
                                    format_func=lambda o: o[0] + (f" ({o[1]})" if o[1] else ""))
frames = []
for zoo, epoch, labelled in zoos:
    if (metric, split, coord) not in have[zoo.name]:
        continue
    axes = [zoo.spec.load.knob, zoo.spec.temperature.knob]
    v = metric_cells(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch, metric, split, coord)
    frames.append(v.join(labelled.select(*axes, "phase"), on=axes).select("phase", "value", zoo=pl.lit(zoo.name)))
dist = pl.concat(frames)
fig = go.Figure([go.Box(x=g["phase"].to_list(), y=g["value"].to_list(), name=name, boxpoints="all")
                 for (name,), g in dist.group_by("zoo", maintain_order=True)])
fig.update_layout(boxmode="group", title=f"{metric} by phase (one point per cell; seed mean)", height=420,
                  margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
fig.update_xaxes(categoryorder="array", categoryarray=[*PHASES, UNCLASSIFIED])
chart(fig, dist, "compare_by_phase")
if lacking := [name for name, h in have.items() if (metric, split, coord) not in h]:
    st.caption(f"Without {metric}: {', '.join(lacking)}.")
