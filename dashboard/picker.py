"""The zoo picker (sidebar widget) and the cached zoo loader.

A zoo is identified by its resolved directory, never by its name: the built-in choices are paths, and
PHASEZOO_ZOO picks a built-in zoo only if it resolves to one's directory or is a bare built-in name
("mnist1d-cnn", no path separator); /elsewhere/mnist1d-mlp opens /elsewhere/mnist1d-mlp. A directory typed
under "Other directory…" (or on the Compare page: every page opens zoos through `load_zoo`) must pass the
path policy of data.zoo.paths: inside $PHASEZOO_ZOO_ROOTS when that is set (the Procfile sets it).
"""
from __future__ import annotations

import os
from pathlib import Path

import streamlit as st

from analysis.taxonomy.cells import cell_table
from data.zoo.paths import PathError, allowed_zoo_dir, resolve
from data.zoo.store import CATALOG_FILE, METRICS_FILE, Zoo, ZooError, builtin_zoos, read_metrics

ZOO_KEY = "zoo_choice"
CUSTOM_KEY = "zoo_custom_path"
CURRENT_KEY = "zoo_current"  # the picked zoo's directory, for the pages
OTHER = "Other directory…"
ZOO_ENV = "PHASEZOO_ZOO"


@st.cache_resource(show_spinner="Loading zoo…", max_entries=8)
def _load(path: str, catalog_mtime: float) -> Zoo:  # mtime in the key: a regenerated zoo reloads
    return Zoo.open(path)


def load_zoo(path: str | Path) -> Zoo:
    """The zoo at `path`, if the path policy allows it (checked on every call, before the cache: the policy
    is read from the environment now). Raises ZooError or PathError (both ValueErrors) with one line."""
    real = allowed_zoo_dir(path, trusted=[*builtin_zoos(), *filter(None, [env_zoo()])])
    return _load(str(real), _mtime(real / CATALOG_FILE))


def _mtime(path: Path) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:  # missing, or a loop: Zoo.open says which
        return 0.0


def env_zoo() -> Path | None:
    """The zoo directory $PHASEZOO_ZOO names (resolved), or None if unset or unresolvable (a link loop)."""
    raw = os.environ.get(ZOO_ENV)
    if not raw:
        return None
    if os.sep not in raw and (named := [p for p in builtin_zoos() if p.name == raw]):
        return named[0]  # a bare built-in name; write ./<name> for a directory of that name here
    try:
        return resolve(raw)
    except PathError:
        return None


@st.cache_data(show_spinner="Aggregating cells…", max_entries=16)
def _cells(path: str, epoch: int, mtimes: tuple[float, float]):  # mtimes in the key: new metrics reload
    zoo = load_zoo(path)
    return cell_table(load_metrics(zoo.root), zoo.catalog, zoo.spec, epoch)


@st.cache_data(show_spinner="Reading metrics…", max_entries=4)
def _metrics(path: str, mtime: float):
    return read_metrics(Path(path))


def load_metrics(root: Path):
    """The zoo's metrics table, cached until metrics.parquet changes."""
    return _metrics(str(resolve(root)), _mtime(Path(root) / METRICS_FILE))


def load_cells(root: Path, epoch: int):
    """The zoo's cell table at `epoch` (analysis.taxonomy.cells.cell_table), cached until its files change."""
    return _cells(str(resolve(root)), epoch, (_mtime(Path(root) / CATALOG_FILE), _mtime(Path(root) / METRICS_FILE)))


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
    options = [*(str(p) for p in builtin_zoos()), OTHER]  # resolved directories: two zoos never share a choice
    default, raw = env_zoo(), os.environ.get(ZOO_ENV)
    if default is not None and str(default) in options:
        index = options.index(str(default))
    elif raw:  # any other directory, or one that does not resolve: load_zoo below says what is wrong
        st.session_state.setdefault(CUSTOM_KEY, raw)
        index = options.index(OTHER)
    else:
        index = 0
    st.session_state.setdefault(ZOO_KEY, options[index])  # a link's zoo (dashboard.state) is set already
    choice = st.sidebar.selectbox("Zoo", options, key=ZOO_KEY, format_func=lambda o: o if o == OTHER else Path(o).name)
    if choice == OTHER:
        path = st.sidebar.text_input("Zoo directory", key=CUSTOM_KEY, placeholder="/path/to/zoo")
        if not path:
            st.info("Type the path of a zoo directory (one holding spec.toml and catalog.parquet).")
            return None
    else:
        path = choice
    try:
        zoo = load_zoo(path)
    except (ZooError, ValueError, OSError) as e:
        st.error(f"Cannot open this zoo: {e}")
        return None
    st.session_state[CURRENT_KEY] = str(zoo.root)
    return zoo
