"""Ensembles & averaging: downstream results by phase — the published findings re-tested, phase-consistent
against phase-crossing ensembles, any downstream metric over the grid with the phases over it and its
per-phase distribution, and the pruning and aligned-path curves per phase. What is missing otherwise."""

import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.studies.by_phase import phase_mean_curve, with_phase
from analysis.studies.findings import retest
from analysis.studies.phase_ensembles import compare, read_phase_ensembles
from analysis.taxonomy.cells import metric_cells
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import ensemble_bars, grid_heatmap, phase_boxes, phase_curves
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, declared, helptext, load_right, pick_epoch
from data.tasks.builtin import TASKS

# Outputs of downstream studies (science.md §4): prefixes of our own metrics, and the published zoos' keys.
DOWNSTREAM = ("ensemble_", "average_", "transfer_", "prune_", "wiseft_acc_test_delta", "gitrebasin_acc_test_delta")
# the "copy as Python" lines after loading the zoo's metrics rows into `frame`
OPEN = ("from analysis.metrics.outputs import Aggregate\nfrom data.zoo.store import Zoo\n"
        "zoo = Zoo.open({root!r})\n")
CELLS = ("from analysis.taxonomy.cells import metric_cells\n"
         "values = metric_cells(frame, zoo.catalog, zoo.spec, {epoch!r}, {metric!r}, {split!r}, "
         "aggregate=Aggregate({aggregate!r}))\n")
LABELLED = ("from analysis.studies.by_phase import labelled_cells\n"
            "labelled = labelled_cells(frame, zoo.catalog, zoo.spec, {epoch!r})\n")
MAP = OPEN + CELLS + "frame = values"
BY_PHASE = OPEN + CELLS + LABELLED + ("from analysis.studies.by_phase import with_phase\n"
                                      "frame = with_phase(values, labelled, zoo.spec)")
CURVE = OPEN + LABELLED + ("from analysis.studies.by_phase import phase_mean_curve\n"
                           "frame = phase_mean_curve(frame, zoo.catalog, zoo.spec, labelled, {epoch!r}, {metric!r}, "
                           "Aggregate({aggregate!r}))")
VERDICT = {"agrees": ":green[:material/check_circle: agrees]", "disagrees": ":red[:material/cancel: disagrees]",
           "cannot tell": ":gray[:material/help: cannot tell]"}

zoo = current_zoo()
spec = zoo.spec
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
    # measure -> its words and the output declaring its unit (the same quantity for an ensemble of a cell's seeds)
    names = {"acc": "test accuracy", "gain": "gain over its members", "disagreement": "disagreement"}
    declaring = {"acc": "ensemble_test_acc", "gain": "ensemble_acc_gain", "disagreement": "ensemble_disagreement"}
    measure = st.radio("Measure", list(names), horizontal=True, key="downstream_ens_measure", format_func=names.get,
                       help=helptext("Ensembles of three models drawn from one phase against three drawn across "
                                     "phases (one of them from this phase).", "phase", "ensemble"))
    ens_title = f"Ensembles of 3, mean {names[measure]} ({cmp['n_consistent'][0]} draws per phase)"
    chart(ensemble_bars(cmp, measure, title=ens_title, y_title=names[measure],
                        unit=declared(declaring[measure]).unit), cmp, "downstream_ensembles",
          source=Slice.of(zoo.root, "phase_ensembles", {"epoch": epoch},
                          then="from analysis.studies.phase_ensembles import compare\n\nframe = compare(frame)"))

st.subheader("Any downstream result over the grid")
# one value per model or pair: curve outputs (a path's loss along t, accuracy against sparsity) are drawn below
name = st.selectbox("Result", [n for n in present if not declared(n).coord], key="downstream_metric",
                    format_func=lambda n: declared(n).human,
                    help=helptext("Each cell's seed mean (or seed-pair mean) of a downstream study's result; "
                                  "the boxes group the cells by phase.", "phase", "ensemble",
                                  "averaging", "transfer", "pruning"))
split = m.filter(pl.col("metric") == name)["split"][0]
out = declared(name)
values = metric_cells(m, zoo.catalog, spec, epoch, name, split, aggregate=out.aggregate)
prefix = out.aggregate.prefix()
args = dict(root=str(zoo.root), epoch=epoch, metric=name, split=split, aggregate=out.aggregate.name)
left, right = st.columns(2)
chart(grid_heatmap(values, spec, "value", title=f"{prefix}{out.human}, seed mean", labels=labelled,
                   scale=colour_scale(out), hover_label=prefix + out.human, colour_title=prefix + out.axis_title,
                   unit=out.unit, load_right=load_right()),
      values, "downstream_map", left,
      source=Slice.of(zoo.root, "metrics", {"metric": name, "epoch": epoch, "split": split}, then=MAP.format(**args)))
by_phase = with_phase(values, labelled, spec)
chart(phase_boxes(by_phase, title=f"{prefix}{out.human} by phase (one point per cell)",
                  y_title=prefix + out.axis_title, unit=out.unit),
      by_phase, "downstream_by_phase", right,
      source=Slice.of(zoo.root, "metrics", {"epoch": epoch}, then=BY_PHASE.format(**args)))

after_ft = st.toggle("after the short fine-tune", key="downstream_prune_ft",
                     help=helptext("Accuracy retained after pruning, as pruned or after a short fine-tune (the "
                                   "zoo's prune settings).", "pruning"))
curves = [("prune_ft_retained" if after_ft else "prune_retained", "sparsity",
           "Accuracy retained after global magnitude pruning, mean per phase"),
          ("average_aligned_path_loss", "t", "Training loss between aligned seeds (Git Re-Basin), mean per phase")]
for col, (metric, x_title, title) in zip(st.columns(2), curves):
    aggregate = declared(metric).aggregate
    mean = phase_mean_curve(m, zoo.catalog, spec, labelled, epoch, metric, aggregate)
    if not mean.is_empty():
        chart(phase_curves(mean, x_title=x_title, y_title=declared(metric).axis_title, title=title,
                           unit=declared(metric).unit), mean,
              f"downstream_curve_{metric}", col,
              source=Slice.of(zoo.root, "metrics", {"epoch": epoch},
                              then=CURVE.format(root=str(zoo.root), epoch=epoch, metric=metric,
                                                aggregate=aggregate.name)))
