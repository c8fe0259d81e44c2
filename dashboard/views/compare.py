"""Compare zoos: the same taxonomy across zoos side by side — their phase maps in one row, the fraction of
each grid in each phase, and a metric's per-phase distribution in every zoo (one point per cell)."""

from pathlib import Path

import polars as pl
import streamlit as st

from analysis.taxonomy.cells import metric_cells, scalar_metrics
from analysis.taxonomy.phases import classify, default_thresholds, phase_counts
from dashboard.charts import phase_fractions, phase_map, zoo_boxes
from dashboard.picker import current_zoo, load_cells, load_metrics, load_zoo
from dashboard.widgets import chart, declared, image_config
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
        st.info(f"{zoo.name}: no phase labels at epoch {epoch} yet (`phasezoo run {zoo.root}`).")
        continue
    zoos.append((zoo, epoch, classify(cells, default_thresholds(cells))))
if not zoos:
    st.warning("None of the chosen zoos has phase labels to compare.")
    st.stop()

cols = st.columns(len(zoos))
for col, (zoo, epoch, labelled) in zip(cols, zoos):
    fig = phase_map(labelled, zoo.spec, title=f"{zoo.name}, epoch {epoch}", compact=True)
    col.plotly_chart(fig, key=f"compare_map_{zoo.root}", config=image_config(f"compare_{zoo.name}"))
    col.caption(f"{zoo.spec.arch} on {zoo.spec.task}; load = {zoo.spec.load.knob}, "
                f"temperature = {zoo.spec.temperature.knob}")

counts = pl.concat([phase_counts(lab).select("phase", "cells", "fraction").with_columns(zoo=pl.lit(zoo.name))
                    for zoo, _, lab in zoos])
chart(phase_fractions(counts, title="Fraction of each grid in each phase"), counts, "compare_fractions")

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
out = declared(metric)
frames = []
for zoo, epoch, labelled in zoos:
    if (metric, split, coord) not in have[zoo.name]:
        continue
    axes = [zoo.spec.load.knob, zoo.spec.temperature.knob]
    v = metric_cells(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch, metric, split, coord,
                     aggregate=out.aggregate)
    frames.append(v.join(labelled.select(*axes, "phase"), on=axes).select("phase", "value", zoo=pl.lit(zoo.name)))
dist = pl.concat(frames)
prefix = out.aggregate.prefix()
chart(zoo_boxes(dist, title=f"{prefix}{metric} by phase (one point per cell; {prefix}seed mean)",
                y_title=prefix + out.axis_title), dist, "compare_by_phase")
if lacking := [name for name, h in have.items() if (metric, split, coord) not in h]:
    st.caption(f"Without {metric}: {', '.join(lacking)}.")
