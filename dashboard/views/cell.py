"""Cell detail: one grid cell's phase and how sure the rules are (each taxonomy quantity against its threshold),
its seeds' training curves, a metric × seed table, mode-connectivity profiles, the CKA matrix of the seeds and
the per-layer data-free metrics, layers named by their module path."""

import numpy as np
import polars as pl
import streamlit as st

from analysis.metrics.outputs import colour_scale
from analysis.taxonomy.advice import advise, scored_labels
from analysis.taxonomy.cell_report import evidence
from analysis.taxonomy.cells import cell_label, cell_models
from analysis.taxonomy.phases import default_thresholds, labelable
from dashboard.charts import line_chart, similarity_matrix
from dashboard.glossary import cite
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells, load_metrics
from dashboard.text import literal
from dashboard.widgets import chart, declared, helptext, pick_cell, pick_epoch, python_source
from data.models.layers import model_layer_names
from data.tasks.builtin import TASKS

LAYER_METRICS = ("alpha", "alpha_ks", "stable_rank", "spectral_norm")

zoo = current_zoo()
spec, cat = zoo.spec, zoo.catalog
st.title(f"Cell detail: {zoo.name}")
x, y = pick_cell(spec, "cell")
ids = cell_models(cat, spec, x, y)
if not ids:
    st.info(f"No models in {cell_label(spec, x, y)} yet.")
    st.stop()
seeds = dict(cat.filter(pl.col("model_id").is_in(ids)).select("model_id", "seed").unique().iter_rows())
st.caption(f"{cell_label(spec, x, y)}: {len(ids)} models — " + ", ".join(ids))
epoch = pick_epoch(spec, "cell_epoch")
task = TASKS[spec.task]

# ----------------------------------------------------------------------------- its phase, and how sure
cells = load_cells(zoo.root, epoch)
if not labelable(cells):  # no thresholds can be derived yet
    st.info(f"No phase at epoch {epoch} yet: the zoo has no train loss or mode connectivity there "
            "(`phasezoo run <zoo>`).")
else:
    from analysis.taxonomy.sensitivity import THRESHOLDS, flip
    from dashboard.uncertainty import load_stability

    row = cells.filter((pl.col(spec.load.knob) == x) & (pl.col(spec.temperature.knob) == y))
    base = default_thresholds(cells)
    ev = evidence(row.row(0, named=True) if row.height else {}, base, spec.task)
    st.subheader(f"Phase {ev.phase}" + (" — near a threshold" if ev.near_boundary else ""),
                 help=helptext("By the taxonomy's rules with the zoo's default thresholds at this epoch; each "
                               "line: the cell's value, its threshold, the margin and the phase across it.",
                               "phase", "margin", "tau-l", "epsilon", "tau-c"))
    st.markdown("\n".join(f"- {'**near:** ' if c.near else ''}{c.sentence()}" for c in ev.checks))
    # how sure, besides the margins: the label over resampled seeds and seed pairs (the default map's bootstrap,
    # thresholds re-derived per resample), and the smallest move of each threshold alone that relabels the cell
    if row.height:
        r = row.row(0, named=True)
        stab = load_stability(zoo.root, epoch).at(x, y)
        flips = [flip(r["train_loss"], r["mc"], r["cka"], base, name) for name in THRESHOLDS]
        st.markdown(f"- {'**unstable:** ' if stab.unstable else ''}{stab.sentence()}\n- before it flips: "
                    + "; ".join(f.sentence(task.units["mc"] if f.threshold == "mc" else "") for f in flips))
    st.caption("Thresholds: " + cite(ev.provenance_text()))

# ----------------------------------------------------------------------------- what to change
if labelable(cells):  # the nearest IV-B cells of this map (analysis.taxonomy.advice); a button opens one
    advice = advise(scored_labels(cells, load_metrics(zoo.root), cat, spec, epoch), spec, x, y)
    st.subheader("What to change", help=helptext(
        "The nearest phase IV-B (generalising) cells of this map at this epoch, in grid steps (one notch of one "
        "knob each, summed; ties to the better test score), with the knob change, the phase change and the "
        "test score there ± its seed std. A button opens that cell.", "phase", "load", "temperature"))
    st.markdown(literal(advice.headline()))
    for i, move in enumerate(advice.moves):  # on_click: the cell's select boxes change before the rerun
        st.button(literal(move.words()), key=f"cell_advice_{i}", on_click=st.session_state.update,
                  kwargs={"cell_load": move.cell[0], "cell_temperature": move.cell[1]})

# ----------------------------------------------------------------------------- training curves
def curves(kind: str) -> Slice:
    """The catalog's train and test `kind` (loss or acc) of the cell's seeds, long: seed, split, epoch, value."""
    then = (f"frame = frame.unpivot(index=['model_id', 'seed', 'epoch'], on=['train_{kind}', 'test_{kind}'],\n"
            f"                      variable_name='split').with_columns(pl.col('split').str.replace('_{kind}', ''))")
    return Slice.of(zoo.root, "catalog", {"model_id": ids}, columns=["model_id", "seed", "epoch", f"train_{kind}",
                    f"test_{kind}"], sort=["model_id", "epoch"], then=then)


left, right = st.columns(2)
loss_src, acc_src = curves("loss"), curves("acc")
loss, acc = loss_src.load(), acc_src.load()
loss_unit = task.units["loss"]
chart(line_chart(loss, "epoch", "value", "seed", dash="split", log_y=True, y_title="loss" + (f" [{loss_unit}]"
                 if loss_unit else ""), title="Loss per seed (solid: test, dotted: train)"),
      loss, "cell_loss", left, source=loss_src)
if acc["value"].is_null().all():  # a regression zoo: no accuracies
    right.info("A regression task has no accuracy: the test loss (left, solid) is the mean squared error "
               "against the exact solution; the relative L2 error is in the table below.")
else:
    chart(line_chart(acc, "epoch", "value", "seed", dash="split", unit=declared("test_acc").unit, y_title="accuracy",
                     title="Accuracy per seed (solid: test, dotted: train)"), acc, "cell_acc", right, source=acc_src)

m = load_metrics(zoo.root).filter(
    pl.col("model_id").is_in(ids) & (pl.col("epoch") == epoch) & pl.col("error").is_null()
)
if m.is_empty():
    st.warning("No metrics for this cell at this epoch: run `phasezoo run <zoo>`.")
    st.stop()

# ----------------------------------------------------------------------------- metric × seed
st.subheader("Metrics per seed", help=helptext("Each seed's value (± its estimator's standard error where it "
                                               "has one), then the mean over seeds ± its standard error.", "stderr"))
table_src = Slice.of(zoo.root, "metrics", {"model_id": ids, "epoch": epoch, "error": None}, then=(
    f"from analysis.taxonomy.seed_table import seed_table\nframe = seed_table(frame, {seeds!r}).frame()"))
st.dataframe(table_src.load(), hide_index=True, key="cell_metrics")
python_source(table_src, "cell_metrics_source")

# ----------------------------------------------------------------------------- mode connectivity, CKA
st.subheader("Mode connectivity along the path, per seed pair", help=helptext("", "mc"))
prof_src = Slice.of(zoo.root, "metrics", {"model_id": ids, "epoch": epoch, "error": None,
                                          "metric": ["mc_bezier_error", "mc_linear_error"]},
                    sort=["model_id", "other_id", "metric", "coord"], then=(
    f"seeds = {seeds!r}\n"
    "frame = frame.with_columns(seeds=pl.format('{}–{}', pl.col('model_id').replace_strict(seeds),\n"
    "                                           pl.col('other_id').replace_strict(seeds)),\n"
    "                           path=pl.col('metric').replace_strict({'mc_bezier_error': 'Bézier',\n"
    "                                                                'mc_linear_error': 'line'}))"))
prof = prof_src.load()
if not prof.is_empty():
    err = "log₁₀ train loss" if task.kind == "regression" else "training error [%]"
    chart(line_chart(prof, "coord", "value", "seeds", dash="path", y_title=err,
                     title="solid: Bézier curve, dotted: straight line (t: position on the path)"),
          prof, "cell_mc", st, source=prof_src)
cka_src = Slice.of(zoo.root, "metrics", {"model_id": ids, "epoch": epoch, "error": None,
                                         "metric": "cka_logits_test"}, sort=["model_id", "other_id"])
cka = cka_src.load()
if not cka.is_empty():
    idx = {mid: i for i, mid in enumerate(ids)}
    mat = np.eye(len(ids))
    for r in cka.iter_rows(named=True):
        mat[idx[r["model_id"]], idx[r["other_id"]]] = mat[idx[r["other_id"]], idx[r["model_id"]]] = r["value"]
    fig = similarity_matrix(mat, [f"seed {seeds[i]}" for i in ids], title="Logit CKA between seeds (test inputs)",
                            scale=colour_scale(declared("cka_logits_test")),
                            colour_title=declared("cka_logits_test").axis_title)
    chart(fig, cka, "cell_cka", st, source=cka_src)

# ----------------------------------------------------------------------------- per layer
st.subheader("Data-free metrics per layer", help=helptext("Layers by their module path; a numbered layer of a "
                                                          "Sequential by what it is (fc1, conv2…).", "alpha",
                                                          "stable-rank"))
layers_src = Slice.of(zoo.root, "metrics", {"model_id": ids, "epoch": epoch, "error": None,
                                            "metric": list(LAYER_METRICS)}, then=(
    "from analysis.taxonomy.seed_table import layer_table\n"
    f"frame = layer_table(frame, {seeds!r}, {model_layer_names(zoo, ids[0])!r}, {list(LAYER_METRICS)!r})"))
st.dataframe(layers_src.load(), hide_index=True, key="cell_layers")
python_source(layers_src, "cell_layers_source")
