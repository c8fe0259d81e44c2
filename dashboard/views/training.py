"""Phases over training: the phase map at every analysis epoch (an epoch slider and a play button), how many
cells changed phase between consecutive epochs, a cell's phase-versus-epoch strip and every cell's
transitions. Each epoch is labelled by the default thresholds of its own cells."""

import polars as pl
import streamlit as st

from analysis.taxonomy.cells import cell_label
from analysis.taxonomy.evolution import changes, histories, label_epochs, transitions
from analysis.taxonomy.phases import labelable
from analysis.taxonomy.stability import UNSTABLE, with_stability
from dashboard.charts.evolution import changes_chart, phase_map_frames, phase_strip
from dashboard.notebook import Slice
from dashboard.picker import current_zoo, load_cells
from dashboard.uncertainty import load_stability
from dashboard.widgets import chart, helptext, load_right, pick_cell

zoo = current_zoo()
spec = zoo.spec
xk, yk = spec.load.knob, spec.temperature.knob
st.title(f"Phases over training: {zoo.name}")
epochs = sorted(spec.analysis_epochs)
with st.spinner(f"Labelling the cells of {len(epochs)} analysis epochs…"):
    labelled = label_epochs({e: load_cells(zoo.root, e) for e in epochs})
if labelled.is_empty():
    st.warning("No cells with metrics at any analysis epoch yet: run `phasezoo run <zoo>`.")
    st.stop()
# how sure each epoch's labels are (the bootstrap the Phase diagram shows), for the transitions below
labelled = pl.concat([with_stability(part, load_stability(zoo.root, e), [xk, yk]) if labelable(part) else part
                      for (e,), part in labelled.group_by("epoch", maintain_order=True)], how="diagonal_relaxed")
shown = sorted(labelled["epoch"].unique().to_list())
st.caption("Each epoch's cells are labelled by that epoch's own default thresholds (τ_L and τ_C are relative "
           "to the grid at that epoch).", help=helptext("How a cell's phase is decided.", "phase", "tau-l",
                                                        "epsilon", "tau-c"))
# the snippet relabels from the zoo's own files with the very functions this page calls
RELABEL = ("from analysis.taxonomy.cells import cell_table\n"
           "from analysis.taxonomy.evolution import changes, label_epochs\n"
           "from data.zoo.store import Zoo\n\n"
           f"zoo = Zoo.open({str(zoo.root)!r})\n"
           f"frame = label_epochs({{e: cell_table(frame, zoo.catalog, zoo.spec, e) for e in {shown!r}}})")


def relabelled(then: str = "") -> Slice:
    """The snippet of a chart of this page: every shown epoch relabelled, then `then` on the labels."""
    return Slice.of(zoo.root, "metrics", {"epoch": shown}, then=RELABEL + ("\n" + then if then else ""))


source = relabelled()
chart(phase_map_frames(labelled, spec, title="Phases", load_right=load_right()), labelled.select(xk, yk, "epoch", "phase", "near_boundary"),
      "training_map", source=source)
if len(shown) == 1:
    st.info(f"This zoo has a single analysis epoch ({shown[0]}): there is no training history of its phases. "
            "List more epochs under `analysis_epochs` in its spec and run `phasezoo run <zoo>`.")
    st.stop()

moved = transitions(labelled, xk, yk)
counts = changes(labelled, xk, yk)
chart(changes_chart(counts, title="Cells that changed phase between analysis epochs"), counts, "training_changes",
      source=relabelled(f"frame = changes(frame, {xk!r}, {yk!r})"))

st.subheader("One cell over training")
x, y = pick_cell(spec, "training")
history = labelled.filter((pl.col(xk) == x) & (pl.col(yk) == y)).select("epoch", "phase")
if history.is_empty():
    st.info(f"{cell_label(spec, x, y)} has no labels at any analysis epoch.")
else:
    chart(phase_strip(history, title=f"Phase of {cell_label(spec, x, y)} at each analysis epoch"), history,
          "training_strip", source=relabelled(f"frame = frame.filter((pl.col({xk!r}) == {x!r}) & "
                                              f"(pl.col({yk!r}) == {y!r})).select('epoch', 'phase')"))

st.subheader("Transitions")
if moved.is_empty():
    st.caption("No cell changed phase between analysis epochs.")
else:
    summary = histories(labelled, xk, yk).sort("changes", descending=True, maintain_order=True)
    firm = int(moved["firm"].sum()) if "firm" in moved.columns else None
    st.caption(f"{moved.height} changes in {moved.select(xk, yk).unique().height} of {summary.height} cells"
               + (f"; {firm} of them between two labels each kept by ≥ {UNSTABLE:g} of the seed resamples (the "
                  "others may be resampling noise)" if firm is not None else "")
               + ". Each cell's path: its phases in order, each with the first analysis epoch showing it (the "
               "change happened after the analysis epoch before).")
    st.dataframe(summary, hide_index=True, key="training_histories")
    with st.expander("Every change, one row each"):
        st.dataframe(moved, hide_index=True, key="training_transitions")
