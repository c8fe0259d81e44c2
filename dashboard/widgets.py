"""Widgets shared by pages: each draws itself and returns a value."""
from __future__ import annotations

import streamlit as st

from data.spec import ZooSpec
from dashboard.charts import axis_orders


def pick_cell(spec: ZooSpec, key: str) -> tuple:
    """Two select boxes (load knob, temperature knob) in the papers' order; returns (load value, temp value)."""
    xs, ys = axis_orders(spec)
    c1, c2 = st.columns(2)
    x = c1.selectbox(spec.load.knob, xs, index=len(xs) - 1, key=f"{key}_load")
    y = c2.selectbox(spec.temperature.knob, ys[::-1], index=len(ys) // 2, key=f"{key}_temperature")
    return x, y


def pick_epoch(spec: ZooSpec, key: str) -> int:
    epochs = list(spec.analysis_epochs)
    return st.selectbox("Analysis epoch", epochs, index=len(epochs) - 1, key=key)
