"""A group of cells or models a user selected (a box or lasso on the phase map or in weight space), kept in
the session so the group comparison page can draw them side by side."""
from __future__ import annotations

from dataclasses import dataclass

import streamlit as st

GROUP_KEY = "selected_group"


@dataclass(frozen=True)
class Group:
    """Grid cells as (load value, temperature value) pairs, and/or model ids; `zoo` is the zoo's directory
    (a group never carries over to another zoo); `origin` says where it was selected, for the page's caption."""

    zoo: str
    cells: tuple[tuple, ...] = ()
    models: tuple[str, ...] = ()
    origin: str = ""

    @property
    def empty(self) -> bool:
        return not self.cells and not self.models


def set_group(group: Group) -> None:
    st.session_state[GROUP_KEY] = group


def current_group(zoo: str) -> Group | None:
    """The selected group of the zoo at directory `zoo`, or None."""
    g = st.session_state.get(GROUP_KEY)
    return g if isinstance(g, Group) and g.zoo == zoo and not g.empty else None
