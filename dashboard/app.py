"""PhaseZoo dashboard. Run from the repository root:  python -m streamlit run dashboard/app.py"""
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # `streamlit run` puts dashboard/ first on sys.path, not the repo root
    sys.path.insert(0, str(ROOT))

import pandas  # noqa: E402,F401  (imported once here: sessions racing to a lazy first import saw it half-initialised)
import streamlit as st  # noqa: E402

from dashboard.admission import shared as serving  # noqa: E402
from dashboard.picker import pick_zoo  # noqa: E402
from dashboard.widgets import pick_image_format  # noqa: E402

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
