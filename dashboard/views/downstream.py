"""Ensembles & averaging: downstream results by phase — the published findings re-tested, phase-consistent
against phase-crossing ensembles, any downstream metric over the grid with the phases over it and its
per-phase distribution, and the pruning and aligned-path curves per phase. What is missing otherwise."""

import plotly.graph_objects as go
import polars as pl
import streamlit as st

from analysis.taxonomy.cells import metric_cells
from analysis.studies.findings import retest
from analysis.studies.phase_ensembles import compare, read_phase_ensembles
from analysis.taxonomy.phases import classify, default_thresholds
from dashboard.charts import PHASE_COLOURS, grid_heatmap
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.widgets import chart, pick_epoch
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
        "No downstream results in this zoo at this epoch. `make downstream` (or `python -m analysis.runner.run ZOO "
        "--metrics 'ensemble,average_*,transfer,prune'`, then `python -m analysis.studies.phase_ensembles ZOO`) computes "
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
    measure = st.radio("Measure", ["acc", "gain", "disagreement"], horizontal=True, key="downstream_ens_measure",
                       format_func={"acc": "test accuracy", "gain": "gain over its members",
                                    "disagreement": "disagreement"}.get)
    fig = go.Figure([go.Bar(x=cmp["phase"].to_list(), y=cmp[f"{kind}_{measure}"].to_list(), name=label,
                            marker_color=colour) for kind, label, colour in
                     (("consistent", "members of one phase", "#2166ac"),
                      ("across", "members of different phases (one of this phase)", "#bdbdbd"))])
    fig.update_layout(barmode="group", height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"),
                      title=f"Ensembles of 3, mean {measure} ({cmp['n_consistent'][0]} draws per phase)")
    chart(fig, cmp, "downstream_ensembles")

st.subheader("Any downstream result over the grid")
name = st.selectbox("Result", [n for n in present if not n.endswith(("_path_loss", "_path_error"))
                               and n not in ("prune_test_acc", "prune_retained", "prune_ft_test_acc",
                                             "prune_ft_retained")], key="downstream_metric")
split = m.filter(pl.col("metric") == name)["split"][0]
values = metric_cells(m, zoo.catalog, spec, epoch, name, split)
left, right = st.columns(2)
diverging = name.endswith(("_delta", "_gain", "_mc"))
chart(grid_heatmap(values, spec, "value", title=f"{name}, seed mean", labels=labelled,
                   **({"colorscale": "RdBu", "zmid": 0.0} if diverging else {})), values, "downstream_map", left)
by_phase = values.join(phases, on=[xk, yk])
fig = go.Figure([go.Box(y=g["value"].to_numpy(), name=p, boxpoints="all", marker_color=PHASE_COLOURS.get(p))
                 for (p,), g in by_phase.sort("phase").group_by("phase", maintain_order=True)])
fig.update_layout(title=f"{name} by phase (one point per cell)", height=420, margin=dict(l=10, r=10, t=40, b=10),
                  showlegend=False)
chart(fig, by_phase, "downstream_by_phase", right)


def phase_curves(metric: str, x_title: str, title: str):
    """Mean curve (coord → value) per phase over the phase's models or pairs."""
    rows = m.filter((pl.col("metric") == metric) & pl.col("coord").is_not_null())
    if rows.is_empty():
        return None, None
    knobs = zoo.catalog.select("model_id", xk, yk).unique()
    mean = (rows.join(knobs, on="model_id").join(phases, on=[xk, yk]).group_by("phase", "coord")
            .agg(pl.col("value").mean()).sort("phase", "coord"))
    fig = go.Figure([go.Scatter(x=g["coord"].to_numpy(), y=g["value"].to_numpy(), name=p, mode="lines+markers",
                                line=dict(color=PHASE_COLOURS.get(p)))
                     for (p,), g in mean.group_by("phase", maintain_order=True)])
    fig.update_layout(title=title, height=360, margin=dict(l=10, r=10, t=40, b=10), legend=dict(orientation="h"))
    fig.update_xaxes(title=x_title)
    return fig, mean


after_ft = st.toggle("after the short fine-tune", key="downstream_prune_ft")
curves = [("prune_ft_retained" if after_ft else "prune_retained", "sparsity",
           "Accuracy retained after global magnitude pruning, mean per phase"),
          ("average_aligned_path_loss", "t", "Training loss between aligned seeds (Git Re-Basin), mean per phase")]
for col, (metric, x_title, title) in zip(st.columns(2), curves):
    fig, mean = phase_curves(metric, x_title, title)
    if fig is not None:
        chart(fig, mean, f"downstream_curve_{metric}", col)
