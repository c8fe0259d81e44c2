"""The zoo picker (sidebar widget) and the cached zoo loader."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from analysis.cells import cell_table
from data.store import CATALOG_FILE, METRICS_FILE, Zoo, ZooError, builtin_zoos, read_metrics

ZOO_KEY = "zoo_choice"
CUSTOM_KEY = "zoo_custom_path"
CURRENT_KEY = "zoo_current"  # the picked zoo's directory, for the pages
OTHER = "Other directory…"


@st.cache_resource(show_spinner="Loading zoo…", max_entries=8)
def _load(path: str, catalog_mtime: float) -> Zoo:  # mtime in the key: a regenerated zoo reloads
    return Zoo.open(path)


def load_zoo(path: str | Path) -> Zoo:
    path = Path(path).resolve()
    cat = path / CATALOG_FILE
    return _load(str(path), cat.stat().st_mtime if cat.exists() else 0.0)


@st.cache_data(show_spinner="Aggregating cells…", max_entries=16)
def _cells(path: str, epoch: int, mtimes: tuple[float, float]):  # mtimes in the key: new metrics reload
    zoo = load_zoo(path)
    return cell_table(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch)


@st.cache_data(show_spinner="Reading metrics…", max_entries=4)
def _metrics(path: str, mtime: float):
    return read_metrics(Path(path))


def load_metrics(root: Path):
    """The zoo's metrics table, cached until metrics.parquet changes."""
    f = Path(root) / METRICS_FILE
    return _metrics(str(Path(root).resolve()), f.stat().st_mtime if f.exists() else 0.0)


def load_cells(root: Path, epoch: int):
    """The zoo's cell table at `epoch` (analysis.cells.cell_table), cached until its files change."""
    files = [Path(root) / CATALOG_FILE, Path(root) / METRICS_FILE]
    return _cells(str(Path(root).resolve()), epoch, tuple(f.stat().st_mtime if f.exists() else 0.0 for f in files))


def current_zoo() -> Zoo:
    """The zoo picked in the sidebar (app.py runs `pick_zoo` before every page). Without a usable zoo the
    page stops here: the picker has already said why."""
    path = st.session_state.get(CURRENT_KEY)
    if not path:
        st.stop()
    return load_zoo(path)


def pick_zoo() -> Zoo | None:
    """Sidebar: choose a built-in zoo or type a zoo directory. Shows an error and returns None if unusable.

    Called by the router (app.py), not by pages: widgets of the entry script keep their state across pages.
    """
    st.session_state[CURRENT_KEY] = None
    builtin = {p.name: p for p in builtin_zoos()}
    options = [*builtin, OTHER]
    default = os.environ.get("PHASEZOO_ZOO")
    if default and Path(default).name in builtin:
        index = options.index(Path(default).name)
    elif default:
        st.session_state.setdefault(CUSTOM_KEY, default)
        index = options.index(OTHER)
    else:
        index = 0
    choice = st.sidebar.selectbox("Zoo", options, index=index, key=ZOO_KEY)
    if choice == OTHER:
        path = st.sidebar.text_input("Zoo directory", key=CUSTOM_KEY, placeholder="/path/to/zoo")
        if not path:
            st.info("Type the path of a zoo directory (one holding spec.toml and catalog.parquet).")
            return None
    else:
        path = builtin[choice]
    try:
        zoo = load_zoo(path)
    except (ZooError, ValueError, OSError) as e:
        st.error(f"Cannot open this zoo: {e}")
        return None
    st.session_state[CURRENT_KEY] = str(zoo.root)
    return zoo
