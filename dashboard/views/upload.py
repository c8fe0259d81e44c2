"""Classify a checkpoint: upload one or more state dicts and get each one's phase — from the taxonomy's
rules and from the learned classifier — with the evidence next to the zoo's distributions, its cell on the
phase map, its place in weight space and its nearest zoo models (analysis.upload.verdict)."""

import logging
import os
from collections.abc import Mapping

import polars as pl
import streamlit as st

from analysis.studies.embed import axis_titles, read_embeddings, read_explained_variance
from analysis.studies.spectra import esd_curves
from analysis.taxonomy.calibration import reliability_frame
from analysis.taxonomy.cells import QUANTITIES, cell_models
from analysis.taxonomy.phases import classify, default_thresholds
from analysis.upload.report import ClassifierVerdict, KnobValue, RuleVerdict, WeightsOnlyVerdict
from analysis.upload.verdict import (
    Refused,
    Report,
    analyse,
    missing_data,
    process_pool,
    summary,
    task_data,
    upload_estimate,
)
from analysis.upload.verdicts import RULE_EVIDENCE
from dashboard.admission import QueueFull
from dashboard.admission import shared as upload_queue
from dashboard.charts import (
    density_chart,
    evidence_strip,
    mark,
    phase_map,
    phase_probabilities,
    reliability_diagram,
    weight_space,
)
from dashboard.picker import current_zoo, load_cells, load_metrics, load_zoo
from dashboard.text import literal
from dashboard.widgets import chart, downloads, helptext, image_config, load_right
from data.checkpoint.load import SUFFIXES, max_bytes
from data.models.archs import arch_def
from data.zoo.store import builtin_zoos

log = logging.getLogger("phasezoo.upload")

@st.cache_resource(show_spinner=False)
def backend():
    """The worker processes that compute uploads' metrics, shared by every session of this server
    (PHASEZOO_UPLOAD_WORKERS=0: in the server process)."""
    n = int(os.environ.get("PHASEZOO_UPLOAD_WORKERS", "2"))
    return process_pool(n) if n > 0 else None


zoo = current_zoo()
spec = zoo.spec
st.title("Classify a checkpoint")
st.caption(
    f"Upload state dicts ({', '.join(SUFFIXES)}; up to {max_bytes() / 2**20:.0f} MB each). PyTorch files are "
    "read with `weights_only=True`: a pickle that would run code is refused, nothing runs. A model of the zoo's "
    f"architecture family ({spec.arch} on {spec.task}) is measured on the zoo's task and classified; any other "
    "gets the data-free weight report. Several uploads of one configuration are paired with each other."
)
if (cost := upload_estimate(zoo)) is not None:
    st.caption(f"Estimated compute per upload: {cost[0]:.0f}–{cost[1]:.0f} s for this zoo's smallest to largest "
               f"model (per-metric costs measured by `analysis.runner.run` on {cost[2]}; two workers share it).")
if task_data(zoo) is None:  # a recognised zoo whose task is read from disk ($PHASEZOO_DATA) that is not there
    st.warning(literal(f"{missing_data(zoo)}. Until then an upload recognised as a model of this zoo gets the "
                       "data-free report (its weights) only."))
files = st.file_uploader("Checkpoints", accept_multiple_files=True, key="upload_files")
revealed = set(arch_def(spec.arch).params)  # architecture parameters are read off the tensor shapes
hidden = [k for k in spec.grid if k not in revealed]
given = {}
if hidden:
    cols = st.columns(len(hidden))
    for col, k in zip(cols, hidden):
        choice = col.selectbox(f"{k} (weights cannot tell)", ["estimate", *spec.grid[k]], key=f"upload_{k}")
        if choice != "estimate":
            given[k] = choice
if not files:
    st.info("Drop one or more checkpoints above. Try one of the zoo's own: "
            f"`{zoo.root.name}/checkpoints/<model>/epoch_NNNN.safetensors`.")
    st.stop()

zoos = [zoo] + [load_zoo(p) for p in builtin_zoos() if p.resolve() != zoo.root.resolve()]
bar = st.progress(0.0, text="Starting…")
try:  # one analysis at a time server-wide (dashboard.admission): the others wait in line, told their place
    with upload_queue().admitted(on_wait=lambda place: bar.progress(0.0, text=place.message())):
        results = analyse([(f.name, f.getvalue()) for f in files], zoos, given=given, executor=backend(),
                          progress=lambda what, frac: bar.progress(min(max(frac, 0.0), 1.0), text=what))
except QueueFull as e:  # refused before any work: nothing to clean up
    bar.empty()
    st.error(f"Not analysed: {e}.")
    st.stop()
except Exception as e:  # a bug must not show a traceback or stop the server; the log keeps it
    log.exception("upload analysis failed")
    backend.clear()  # a broken worker pool is rebuilt on the next run
    bar.empty()
    st.error(f"The analysis failed: {type(e).__name__}: {e}")
    st.stop()
bar.empty()


def show_evidence(r: Report, labelled: pl.DataFrame, key: str) -> None:
    """Each taxonomy quantity's zoo distribution over cells (on the seeds' scale), each cell in its phase's
    colour, its threshold and the upload's value, named and scaled as the quantity declares."""
    ev = {e.quantity: e for e in r.evidence}
    cols = st.columns(2)
    for i, q in enumerate(RULE_EVIDENCE):
        quantity, e = QUANTITIES[q], ev.get(q)
        have = labelled.filter(pl.col(q).is_not_null() & pl.col(q).is_not_nan())
        vals = quantity.aggregate.to_seed_scale(have[q]).to_numpy()
        chart(evidence_strip(vals, e.value if e else None, e.threshold if e else None,
                             title=quantity.caption(spec.task), log_x=quantity.log_scale,
                             phases=have["phase"].to_list()), None, f"upload_evidence_{q}_{key}", cols[i % 2])


def show_maps(r: Report, labelled: pl.DataFrame, key: str) -> None:
    xk, yk = spec.load.knob, spec.temperature.knob
    x, y = r.cell[xk].grid, r.cell[yk].grid
    left, right = st.columns(2)
    fig = mark(phase_map(labelled, spec, title=f"Its cell on the phase map, epoch {r.epoch}", load_right=load_right()),
               str(x), str(y), "upload", hover=f"upload: {xk}={r.cell[xk].value}, {yk}={r.cell[yk].value}")
    left.plotly_chart(fig, key=f"upload_map_{key}", config=image_config("upload_phase_map"))
    left.caption(" · ".join(f"{k}: {v.source}" for k, v in r.cell.items()))
    emb = read_embeddings(zoo.root).filter(pl.col("epoch") == r.epoch)
    place = r.placement
    methods = [m for m in ("pca", "umap") if place.position(m) is not None and m in emb["method"].unique()]
    if not methods:
        right.info(place.note or "No weight-space embedding at this epoch (`phasezoo embed`).")
        return
    method = right.radio("Weight space", methods, horizontal=True, key=f"upload_method_{key}",
                         format_func=str.upper)
    pts = emb.filter(pl.col("method") == method).join(
        labelled.select(xk, yk, "phase").join(zoo.catalog.filter(pl.col("epoch") == r.epoch)
                                              .select("model_id", xk, yk), on=[xk, yk]), on="model_id", how="left")
    p = place.position(method)
    approx = " (approximate: its nearest zoo models' mean)" if p.approximate else " (exact projection)"
    x_title, y_title = axis_titles(method, read_explained_variance(zoo.root), r.epoch)
    fig = mark(weight_space(pts, spec, "phase", title=f"{method.upper()} of the zoo's weights, epoch {r.epoch}{approx}",
                            height=460, x_title=x_title, y_title=y_title), p.x, p.y, "upload", hover="upload" + approx)
    right.plotly_chart(fig, key=f"upload_space_{key}", config=image_config("upload_weight_space"))


def show_spectrum(r: Report, key: str) -> None:
    """Its Hessian spectral density (training probe set) against its cell's seeds in the zoo."""
    esd = [m for m in r.metrics if m.metric == "hessian_esd"]
    if not esd:
        return
    ids = cell_models(zoo.catalog, spec, r.cell[spec.load.knob].grid, r.cell[spec.temperature.knob].grid)
    curves = pl.concat([
        pl.DataFrame({"eigenvalue": [m.coord for m in esd], "density": [m.value for m in esd]},
                     schema={"eigenvalue": pl.Float64, "density": pl.Float64}).with_columns(label=pl.lit("upload")),
        *[g.select("eigenvalue", "density", label=pl.lit(m)) for (m,), g in
          esd_curves(load_metrics(zoo.root), ids, r.epoch).group_by("model_id", maintain_order=True)]])
    chart(density_chart(curves, title="Hessian spectral density (train): the upload and its cell's seeds"), curves,
          f"upload_esd_{key}")


def show_verdicts(rule: RuleVerdict, clf: ClassifierVerdict, cell: Mapping[str, KnobValue], key: str) -> None:
    """The two verdicts and the cell, side by side, with what qualifies them: the classifier's probability as a
    plain number with its runner-up and its held-out accuracy, the thresholds it is near and the phase across
    each, how an estimated knob was estimated and what the rules would say at each value it could take."""
    c1, c2, c3 = st.columns(3)
    c1.metric("Phase (taxonomy rules)", rule.phase, help=literal(
        rule.reason or f"{rule.n_pairs} pair(s) with {rule.pairs_with}; thresholds: τ_L {rule.tau_loss:.3g} nats, "
                       f"ε {rule.eps_mc:.3g} points, τ_C {rule.tau_cka:.3g}"))
    c1.caption(f"{rule.n_pairs} pair(s) with {rule.pairs_with or 'nothing'}; the zoo's default thresholds")
    c2.metric("Phase (classifier)", clf.phase or "none", help=helptext(
        literal(clf.withheld) if clf.withheld else f"Logistic regression on {len(clf.features)} single-model "
        f"features, trained on the zoo's {clf.n_train} labelled models (models × analysis epochs).", "phase"))
    if clf.phase is not None:
        c2.caption(literal(clf.words() + (" (extrapolating)" if clf.extrapolating else "")))
    if clf.validation is not None:
        c2.caption(literal(f"Validated on the zoo: {clf.validation.words()}"))
    if clf.calibration is not None:
        c2.caption(literal("Calibration (held-out): " + " · ".join(f"ECE {j.ece:.2f} {j.scheme}"
                                                                   for j in clf.calibration.judgements)))
    c3.metric("Cell (" + " · ".join(cell) + ")", " · ".join(str(v.value) for v in cell.values()),
              help=literal("; ".join(f"{k}: {v.source}" for k, v in cell.items())))
    for k, v in cell.items():
        if v.estimate is not None:
            e = v.estimate
            c3.caption(literal(f"{k} estimated: {e.candidates[0].votes} of {e.k} votes ({e.confidence:.0%})"))
    if clf.withheld:
        st.warning(literal(f"No classifier verdict: {clf.withheld}."))
    elif clf.extrapolating:
        outside = ", ".join(clf.outside)
        st.warning(literal("Unlike every zoo model in the classifier's features"
                           + (f" (outside the zoo's range: {outside})" if outside else "")
                           + ": its probabilities extrapolate and overstate their confidence."))
    for c in rule.near:
        st.warning(literal(f"Near {c.symbol}: {c.sentence()}."))
    show_calibration(clf, key)
    if clf.phase is not None and rule.phase != clf.phase and rule.phase != "unclassified":
        st.info("The two verdicts differ: the rules see mode connectivity and CKA against other seeds, the "
                "classifier only this model's own fit, sharpness and weights.")
    for k, v in cell.items():
        if v.estimate is not None:
            show_estimate(k, v, key)


def show_calibration(clf: ClassifierVerdict, key: str) -> None:
    """The classifier's reliability diagram beside its verdict: its held-out probabilities against how often
    they were right under each scheme, with each scheme's ECE, what the verdict's own bin says, and a warning
    where its probability is poorly calibrated (analysis.taxonomy.calibration)."""
    cals = [v.calibration for v in (clf.validation, clf.across) if v is not None and v.calibration is not None]
    if not cals:
        return
    if clf.poorly_calibrated:
        st.warning(literal(f"Poorly calibrated here: {clf.calibration.reason}."))
    left, right = st.columns([3, 2])
    mine = clf.probabilities.get(clf.phase) if clf.phase is not None else None
    table = reliability_frame(cals)
    chart(reliability_diagram(table, mine, title="Classifier calibration: held-out probability against accuracy",
                              ece={c.scheme: f"ECE {c.ece:.2f}" for c in cals}), table,
          f"upload_reliability_{key}", left)
    for c in cals:
        right.caption(literal(f"{c.scheme}: {c.words()}"))
    if clf.calibration is not None:
        for j in clf.calibration.judgements:
            right.caption(literal(f"This verdict ({j.p:.2f}) under {j.scheme}: {j.words()}."))
    right.caption("Each point: the held-out models whose top-class probability fell in that tenth, at their mean "
                  "probability and the fraction the classifier got right (95 % Wilson interval). On the diagonal, "
                  "a probability means what it says. Leave-one-zoo-out: a classifier trained on the other zoos.")


def show_estimate(knob: str, v: KnobValue, key: str) -> None:
    """How an unknown knob was estimated, and the verdict at every value it could have taken."""
    e = v.estimate
    with st.expander(literal(f"{knob} = {v.value} was estimated ({e.candidates[0].votes} of {e.k} votes): "
                             "the other candidate cells"), expanded=e.confidence < 0.8):
        st.caption(literal(f"Estimated as {e.method}. The rule verdict above pairs it with the seeds of "
                           f"{knob} = {v.value}; at another value it would be paired with that cell's seeds."))
        table = pl.DataFrame([{knob: str(c.value), "votes": f"{c.votes} of {e.k}", "nearest zoo model":
                               c.nearest, "that cell's phase": c.zoo_phase or "—",
                               "rules with its seeds' mc and CKA": c.phase or "—"}
                              for c in e.candidates if c.nearest is not None])
        st.dataframe(table, hide_index=True, key=f"upload_estimate_{knob}_{key}", column_config={
            "nearest zoo model": st.column_config.NumberColumn(
                format="%.3g", help="distance to that cell's nearest zoo model (standardised features)")})
        st.caption("The last column: the taxonomy's rules on its own train loss with the mode connectivity and "
                   "CKA that cell's seeds have among themselves, what its verdict would be were it as connected "
                   "and similar to them as they are to each other.")


def show_weights_only(w: WeightsOnlyVerdict, key: str) -> None:
    """The phase from the weights alone (no task data here), labelled as such, with its held-out accuracy."""
    c1, c2 = st.columns([1, 2])
    c1.metric("Phase (from the weights alone)", w.phase, help=literal(
        f"Gradient-boosted trees on {w.baseline} weight statistics, trained on the zoo's {w.n_train} labelled "
        f"models at epoch {w.epoch}; no task data here, so nothing was measured."))
    c1.caption(literal(w.words()))
    c2.caption(literal(f"From the weights alone (no task data here): {w.held_out()}."))
    c2.plotly_chart(phase_probabilities(dict(w.probabilities), title="From the weights alone: phase probabilities"),
                    key=f"upload_weights_only_{key}", config=image_config("upload_weights_only"))


def show(r: Report | Refused, key: str) -> None:
    # every text that can hold a file name or a key from the file is shown literally (no Markdown)
    if isinstance(r, Refused):
        st.error(literal(r.error))
        return
    for note in r.notes:
        st.caption(literal(note))
    if r.zoo is None:
        st.warning("This model matches no zoo, so it has no phase here; its data-free weight report follows.")
        for m in r.matches:
            st.caption(literal(f"{m.zoo}: " + "; ".join(m.problems)))
    elif r.rule is None or r.classifier is None:  # recognised, but its zoo's task has no data here (its notes say)
        st.info(literal(f"Recognised as a model of {r.zoo}, but not measured: no measured verdict."))
        if r.weights_only is not None:
            show_weights_only(r.weights_only, key)
    else:
        show_verdicts(r.rule, r.classifier, r.cell, key)
        for e in r.errors:
            st.error(literal(e))
        if r.advice:
            st.subheader("What to change", help=helptext("The nearest cells of the zoo's map in phase IV-B (the "
                                                          "generalising phase), in grid steps, with the knob change "
                                                          "that reaches each and the zoo's test score there.", "phase"))
            head, *moves = r.advice.splitlines()  # Advice.words(): the headline, then "  1. <move>" lines
            st.markdown(literal(head) + "\n\n" + "\n".join(f"{i}. " + literal(m.strip().split(". ", 1)[-1])
                                                            for i, m in enumerate(moves, 1)))
        cells = load_cells(zoo.root, r.epoch) if r.zoo == str(zoo.root) else None
        if cells is not None:
            labelled = classify(cells, default_thresholds(cells))  # the report's thresholds (zoo_side.cells)
            st.subheader("Evidence: each quantity, its threshold and the zoo's cells (in their phases' colours)")
            show_evidence(r, labelled, key)
            left, right = st.columns([1, 2])
            if r.classifier.probabilities:
                left.plotly_chart(phase_probabilities(dict(r.classifier.probabilities),
                                                      title="Classifier: phase probabilities"),
                                  key=f"upload_proba_{key}", config=image_config("upload_probabilities"))
            nb = pl.DataFrame([n.to_dict() for n in r.placement.neighbours])
            right.markdown("**Nearest zoo models in weight space**"
                           + (f" — identical to `{r.placement.identical_to}`" if r.placement.identical_to else ""))
            right.dataframe(nb, hide_index=True, key=f"upload_nb_{key}")
            show_spectrum(r, key)
            show_maps(r, labelled, key)
        else:
            st.info(f"Recognised as a model of another zoo ({r.zoo}): pick it in the sidebar to see its maps.")
    if r.data_free:
        with st.expander("Data-free weight report (per layer)", expanded=r.zoo is None):
            table = pl.DataFrame([d.to_dict() for d in r.data_free]).with_columns(
                pl.col("shape").cast(pl.List(pl.String)).list.join("×"))
            st.dataframe(table, hide_index=True, key=f"upload_df_{key}")
            downloads(table, f"upload_data_free_{key}")
    st.download_button("Report (JSON)", r.to_json(), f"{r.file}.report.json", "application/json",
                       key=f"upload_json_{key}", on_click="ignore")  # no rerun: see widgets.downloads
    with st.expander("Summary (as the CLI prints it)"):
        st.code(summary(r), language=None)


for i, r in enumerate(results):
    st.header(literal(r.file))
    try:
        show(r, str(i))  # widget keys by position: the same file may be uploaded twice
    except Exception:  # one report that cannot be drawn must not hide the others (Streamlit's stop/rerun pass)
        log.exception("showing the report of %s failed", r.file)
        st.error(literal(f"{r.file}: its report could not be displayed (an internal error, logged)."))
