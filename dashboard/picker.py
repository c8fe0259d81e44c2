"""The zoo picker (sidebar widget) and the cached zoo loader."""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from data.store import CATALOG_FILE, Zoo, ZooError, builtin_zoos

ZOO_KEY = "zoo_choice"
CUSTOM_KEY = "zoo_custom_path"
OTHER = "Other directory…"


@st.cache_resource(show_spinner="Loading zoo…", max_entries=8)
def _load(path: str, catalog_mtime: float) -> Zoo:  # mtime in the key: a regenerated zoo reloads
    return Zoo.open(path)


def load_zoo(path: str | Path) -> Zoo:
    path = Path(path).resolve()
    cat = path / CATALOG_FILE
    return _load(str(path), cat.stat().st_mtime if cat.exists() else 0.0)


def pick_zoo() -> Zoo | None:
    """Sidebar: choose a built-in zoo or type a zoo directory. Shows an error and returns None if unusable."""
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
        return load_zoo(path)
    except (ZooError, ValueError, OSError) as e:
        st.error(f"Cannot open this zoo: {e}")
        return None
