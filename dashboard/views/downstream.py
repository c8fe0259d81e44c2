"""Ensembles & averaging: downstream results by phase — the published findings re-tested, phase-consistent
against phase-crossing ensembles, any downstream metric over the grid with the phases over it and its
per-phase distribution, and the pruning and aligned-path curves per phase. What is missing otherwise."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.findings import retest
from analysis.studies.phase_ensembles import compare, read_phase_ensembles
from analysis.taxonomy.cells import metric_cells
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import ensemble_bars, grid_heatmap, phase_boxes, phase_curves
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, pick_epoch
from data.tasks.builtin import TASKS

# Outputs of downstream studies (science.md §4): prefixes of our own metrics, and the published zoos' keys.
DOWNSTREAM = ("ensemble_", "average_", "transfer_", "prune_", "wiseft_acc_test_delta", "gitrebasin_acc_test_delta")
VERDICT = {"agrees": ":green[:material/check_circle: agrees]", "disagrees": ":red[:material/cancel: disagrees]",
           "cannot tell": ":gray[:material/help: cannot tell]"}

zoo = current_zoo()
spec = zoo.spec
xk, yk = spec.load.knob, spec.temperature.knob
st.title(f"Ensembles & averaging: {zoo.name}")
epoch = pick_epoch(spec, "downstream_epoch")
m = load_metrics(zoo.root).filter((pl.col("epoch") == epoch) & pl.col("error").is_null())
present = sorted(n for n in m["metric"].unique() if n.startswith(DOWNSTREAM))
if TASKS[spec.task].kind == "regression":
    st.info("The downstream studies (ensembles of class probabilities, accuracy after averaging, transfer, "
            f"pruning) need a classifier; {zoo.name} is a regression zoo ({spec.task}), so it has none.")
    st.stop()
if not present:
    st.info(
        "No downstream results in this zoo at this epoch. `make downstream` (or `phasezoo run ZOO "
        "--metrics 'ensemble,average_*,transfer,prune'`, then `phasezoo ensembles ZOO`) computes "
        "ensembles of each cell's seeds, averaging over epochs and over aligned seeds, transfer and pruning; an "
        "imported published zoo shows its `wiseft_acc_test_delta` / `gitrebasin_acc_test_delta`."
    )
    st.stop()
cells = load_cells(zoo.root, epoch)
labelled = classify(cells, default_thresholds(cells))
phases = labelled.select(xk, yk, "phase")


@st.cache_data(show_spinner="Re-testing the findings…", max_entries=8)
def findings(root: str, epoch: int, mtime: float):  # mtime in the key: new metrics re-test
    return retest(root, epoch)


if any(n.startswith(("average_", "transfer_", "prune_")) for n in present):
    st.subheader("The published findings, re-tested on this zoo")
    mtime = (zoo.root / "metrics.parquet").stat().st_mtime
    for f in findings(str(zoo.root), epoch, mtime):
        st.markdown(f"**{f.claim}** — {VERDICT[f.verdict]}  \n:small[{f.evidence}]")

ens = read_phase_ensembles(zoo.root).filter(pl.col("epoch") == epoch)
if not ens.is_empty():
    st.subheader("Phase-consistent against phase-crossing ensembles")
    cmp = compare(ens)
    names = {"acc": "test accuracy", "gain": "gain over its members", "disagreement": "disagreement"}
    measure = st.radio("Measure", list(names), horizontal=True, key="downstream_ens_measure", format_func=names.get)
    chart(ensemble_bars(cmp, measure, title=f"Ensembles of 3, mean {measure} ({cmp['n_consistent'][0]} draws per "
                                            "phase)", y_title=names[measure]), cmp, "downstream_ensembles")

st.subheader("Any downstream result over the grid")
# one value per model or pair: curve outputs (a path's loss along t, accuracy against sparsity) are drawn below
name = st.selectbox("Result", [n for n in present if not declared(n).coord], key="downstream_metric")
split = m.filter(pl.col("metric") == name)["split"][0]
out = declared(name)
values = metric_cells(m, zoo.catalog, spec, epoch, name, split, aggregate=out.aggregate)
prefix = out.aggregate.prefix()
left, right = st.columns(2)
chart(grid_heatmap(values, spec, "value", title=f"{prefix}{name}, seed mean", labels=labelled,
                   scale=colour_scale(out), hover_label=prefix + out.human, colour_title=prefix + out.axis_title),
      values, "downstream_map", left)
by_phase = values.join(phases, on=[xk, yk])
chart(phase_boxes(by_phase, title=f"{prefix}{name} by phase (one point per cell)", y_title=prefix + out.axis_title),
      by_phase, "downstream_by_phase", right)


def phase_mean(metric: str) -> pl.DataFrame:
    """Mean curve (phase, coord, value) per phase over the phase's models or pairs (the output's declared
    aggregate at each coord)."""
    rows = m.filter((pl.col("metric") == metric) & pl.col("coord").is_not_null())
    knobs = zoo.catalog.select("model_id", xk, yk).unique()
    return (rows.join(knobs, on="model_id").join(phases, on=[xk, yk]).group_by("phase", "coord")
            .agg(declared(metric).aggregate.expr(pl.col("value")).alias("value")).sort("phase", "coord"))


after_ft = st.toggle("after the short fine-tune", key="downstream_prune_ft")
curves = [("prune_ft_retained" if after_ft else "prune_retained", "sparsity",
           "Accuracy retained after global magnitude pruning, mean per phase"),
          ("average_aligned_path_loss", "t", "Training loss between aligned seeds (Git Re-Basin), mean per phase")]
for col, (metric, x_title, title) in zip(st.columns(2), curves):
    mean = phase_mean(metric)
    if not mean.is_empty():
        chart(phase_curves(mean, x_title=x_title, y_title=declared(metric).axis_title, title=title), mean,
              f"downstream_curve_{metric}", col)
