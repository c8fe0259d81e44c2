"""Phase map: the automatic labels (analysis.phases) over the load × temperature grid, with margins."""
import streamlit as st

from analysis.phases import classify, default_thresholds, phase_counts
from dashboard.charts import phase_map
from dashboard.picker import current_zoo, load_cells

zoo = current_zoo()
if zoo is None:
    st.stop()
st.title(f"Phases: {zoo.name}")
epochs = list(zoo.spec.analysis_epochs)
epoch = st.selectbox("Analysis epoch", epochs, index=len(epochs) - 1, key="phases_epoch")
cells = load_cells(zoo.root, epoch)
if cells["train_loss"].is_null().all() or cells["mc"].is_null().all():
    st.warning("This zoo has no metrics at this epoch yet: run `python -m analysis.run <zoo>` first.")
    st.stop()

th = default_thresholds(cells)
labelled = classify(cells, th)
st.plotly_chart(phase_map(labelled, zoo.spec, title=f"Phase labels, epoch {epoch} (· = near a threshold)"),
                key="phases_map")
c1, c2, c3 = st.columns(3)
c1.metric("τ_L (train loss, nats)", f"{th.train_loss:.3g}", help=th.provenance.get("train_loss"))
c2.metric("ε (mc, % points)", f"{th.mc:.3g}", help=th.provenance.get("mc"))
c3.metric("τ_C (CKA)", f"{th.cka:.3g}", help=th.provenance.get("cka"))
st.dataframe(phase_counts(labelled), hide_index=True, key="phases_summary")
st.caption("Decision order (science.md §1): train loss > τ_L → I/II; mc < −ε → I/III; in IV, CKA ≥ τ_C → IV-B. "
           "mc is the trained Bézier curve's, CKA the logit CKA on test inputs, both averaged over seed pairs.")
