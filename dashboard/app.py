"""PhaseZoo dashboard: `phasezoo dashboard` (= `make run`), or `python -m streamlit run dashboard/app.py`.

`streamlit run` puts dashboard/ first on sys.path, not the repository root; `dashboard`, `analysis` and `data`
import because the project is installed (editable, by the Makefile's set-up step).
"""
from pathlib import Path

import pandas  # noqa: F401  (imported once here: sessions racing to a lazy first import saw it half-initialised)
import streamlit as st

from dashboard import state
from dashboard.admission import shared as serving
from dashboard.glossary import PAGE as GLOSSARY
from dashboard.layout import responsive
from dashboard.picker import CUSTOM_KEY, OTHER, ZOO_KEY, load_zoo, pick_zoo
from dashboard.widgets import LOAD_RIGHT_KEY, helptext, pick_image_format

VIEWS = Path(__file__).parent / "views"
PAGES = [  # (file, title, icon, url_path): the paths are the links' addresses, kept as they are
    ("overview.py", "Zoo overview", ":material/grid_on:", "overview"),
    ("phases.py", "Phase diagram", ":material/category:", "phases"),
    ("training.py", "Phases over training", ":material/animation:", "training"),
    ("cell.py", "Cell detail", ":material/zoom_in:", "cell"),
    ("spectra.py", "Hessian spectra", ":material/ssid_chart:", "spectra"),
    ("weights.py", "Weight space", ":material/scatter_plot:", "weights"),
    ("groups.py", "Group comparison", ":material/join:", "groups"),
    ("upload.py", "Classify a checkpoint", ":material/upload_file:", "upload"),
    ("compare.py", "Compare zoos", ":material/compare:", "compare"),
    ("downstream.py", "Ensembles & averaging", ":material/hub:", "downstream"),
    ("glossary.py", "Glossary", ":material/menu_book:", GLOSSARY),
]


def main() -> None:
    """One run of the app: the router, the sidebar, the page, the URL written back."""
    st.set_page_config(page_title="PhaseZoo", page_icon="🧭", layout="wide")
    pages = {u: st.Page(VIEWS / f, title=t, icon=i, url_path=u) for f, t, i, u in PAGES}

    def home() -> None:
        """/ opens /overview with the same query: Streamlit serves its default page only at /, ignoring its
        url_path, so the overview is not the default page — this hidden one is, and /overview stays its address."""
        st.switch_page(pages["overview"], query_params=st.query_params.to_dict())

    serving()  # the server-wide upload queue and its janitor (ended sessions released, heap trimmed), from the start
    page = st.navigation([st.Page(home, title="PhaseZoo", url_path="home", default=True, visibility="hidden"),
                          *pages.values()])
    if page.url_path == "":  # the default page (its url_path reads "")
        page.run()
    path = next(u for u, p in pages.items() if p is page)
    responsive()
    state.restore(ZOO_KEY, CUSTOM_KEY, OTHER, load_zoo)  # a pasted link's view, before the picker draws it
    zoo = pick_zoo()  # the sidebar's zoo picker, shared by every page
    if zoo is not None:
        state.seed(path, zoo)
    root = str(zoo.root) if zoo is not None else None
    with st.sidebar.popover("Copy link", icon=":material/link:", width="stretch"):
        st.caption("This view: zoo, epoch, metric, cell and changed thresholds.")
        link = st.empty()  # written before the page, and again after it with the values it settled on
    st.sidebar.toggle("Load increases to the right", key=LOAD_RIGHT_KEY,
                      help=helptext("Off: capacity grows to the right (the zoo papers' maps). On: load grows to the "
                                    "right, as in Yang et al.'s schematic.", "load"))
    pick_image_format()
    notices = st.container()  # above the page: what of a pasted link this zoo lacks
    link.code(state.link(state.sync(path, root)), language=None, wrap_lines=True)  # a page may stop early
    try:
        page.run()
    finally:  # st.stop() raises: the page's values still reach the URL where Streamlit lets them
        link.code(state.link(state.sync(path, root)), language=None, wrap_lines=True)
        with notices:
            state.report()


# A worker process of the upload pool (spawn) re-imports this script as __mp_main__: it must not run the app.
if __name__ != "__mp_main__":
    main()
