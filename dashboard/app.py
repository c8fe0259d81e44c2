"""PhaseZoo dashboard: `phasezoo dashboard` (= `make run`), or `python -m streamlit run dashboard/app.py`.

`streamlit run` puts dashboard/ first on sys.path, not the repository root; `dashboard`, `analysis` and `data`
import because the project is installed (editable, by the Makefile's set-up step).
"""
from pathlib import Path

import pandas  # noqa: F401  (imported once here: sessions racing to a lazy first import saw it half-initialised)
import streamlit as st

from dashboard.admission import shared as serving
from dashboard.picker import pick_zoo
from dashboard.widgets import pick_image_format

st.set_page_config(page_title="PhaseZoo", page_icon="🧭", layout="wide")
VIEWS = Path(__file__).parent / "views"
pages = [
    st.Page(VIEWS / "overview.py", title="Zoo overview", icon=":material/grid_on:", url_path="overview", default=True),
    st.Page(VIEWS / "phases.py", title="Phase diagram", icon=":material/category:", url_path="phases"),
    st.Page(VIEWS / "cell.py", title="Cell detail", icon=":material/zoom_in:", url_path="cell"),
    st.Page(VIEWS / "spectra.py", title="Hessian spectra", icon=":material/ssid_chart:", url_path="spectra"),
    st.Page(VIEWS / "weights.py", title="Weight space", icon=":material/scatter_plot:", url_path="weights"),
    st.Page(VIEWS / "upload.py", title="Classify a checkpoint", icon=":material/upload_file:", url_path="upload"),
    st.Page(VIEWS / "compare.py", title="Compare zoos", icon=":material/compare:", url_path="compare"),
    st.Page(VIEWS / "downstream.py", title="Ensembles & averaging", icon=":material/hub:", url_path="downstream"),
]
serving()  # the server-wide upload queue and its janitor (ended sessions released, heap trimmed), from the start
page = st.navigation(pages)
pick_zoo()  # the sidebar's zoo picker, shared by every page
pick_image_format()
page.run()
