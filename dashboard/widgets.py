"""Widgets shared by pages: each draws itself and returns a value."""
from __future__ import annotations

import io

import polars as pl
import streamlit as st

from analysis.metrics.catalog import find_output
from analysis.metrics.outputs import Output
from analysis.taxonomy.cells import QUANTITIES
from dashboard.charts import axis_orders
from dashboard.glossary import cite, link
from dashboard.notebook import Slice
from data.zoo.spec import ZooSpec

LOAD_RIGHT_KEY = "load_right"  # the sidebar toggle: draw load increasing to the right (Yang et al.'s schematic)


def load_right() -> bool:
    """Whether the grid charts draw load increasing to the right (the sidebar's toggle; default: capacity
    grows to the right, the zoo papers' convention)."""
    return bool(st.session_state.get(LOAD_RIGHT_KEY, False))


def helptext(text: str, *terms: str) -> str:
    """A help icon's text ending in links to the glossary entries of `terms` (dashboard.glossary anchors)."""
    return cite(text) + ("  \nGlossary: " + ", ".join(link(t) for t in terms) if terms else "")


def declared(name: str) -> Output:
    """The declaration a view reads for a metric output, a published zoo's output or a taxonomy quantity (that
    of its first candidate output); a name nobody declares (an ad-hoc import) gets a plain one."""
    if name in QUANTITIES:
        name = QUANTITIES[name].candidates[0][0]
    return find_output(name) or Output(name, "")


def number_column(out: Output, label: str | None = None, prefix: str = ""):
    """A table column of an output's values: its human name (or `label`) with its unit, a fraction as a
    percentage."""
    percent = out.unit == "fraction"
    name = label or prefix + (out.human if percent else out.axis_title)
    return st.column_config.NumberColumn(name[:1].upper() + name[1:], format="percent" if percent else None)


def cell_of(spec: ZooSpec, load_value, temperature_value) -> tuple:
    """A grid cell from the values a chart gives (strings on categorical axes), in the grid's own types."""
    return (type(spec.grid[spec.load.knob][0])(load_value),
            type(spec.grid[spec.temperature.knob][0])(temperature_value))


def metric_name(option: tuple) -> str:
    """A (metric, split, coord) option of a metric select box by its declared human name, the split in brackets."""
    return declared(option[0]).human + (f" ({option[1]})" if option[1] else "")


def pick_cell(spec: ZooSpec, key: str) -> tuple:
    """Two select boxes (load knob, temperature knob) in the papers' order; returns (load value, temp value)."""
    xs, ys = axis_orders(spec)
    c1, c2 = st.columns(2)
    x = c1.selectbox(spec.load.knob, xs, index=len(xs) - 1, key=f"{key}_load")
    y = c2.selectbox(spec.temperature.knob, ys[::-1], index=len(ys) // 2, key=f"{key}_temperature")
    return x, y


def open_cell(spec: ZooSpec, load_value, temperature_value) -> None:
    """Switch to Cell detail on the given cell (values as the chart gives them: strings are converted)."""
    st.session_state["cell_load"], st.session_state["cell_temperature"] = cell_of(spec, load_value, temperature_value)
    st.switch_page("views/cell.py")


def pick_epoch(spec: ZooSpec, key: str) -> int:
    epochs = list(spec.analysis_epochs)
    return st.selectbox("Analysis epoch", epochs, index=len(epochs) - 1, key=key)


IMAGE_FORMAT_KEY = "image_format"


def pick_image_format() -> None:
    """Sidebar (in the router): the format of the charts' camera button, PNG or SVG."""
    st.sidebar.radio("Chart downloads", ["png", "svg"], horizontal=True, key=IMAGE_FORMAT_KEY,
                     help=helptext("The camera button of every chart saves it in this format."))


def image_config(key: str) -> dict:
    """Plotly config: the camera button saves the sidebar's format under the chart's name."""
    return {"toImageButtonOptions": {"format": st.session_state.get(IMAGE_FORMAT_KEY, "png"), "filename": key}}


def downloads(table: pl.DataFrame | None, key: str, container=st) -> None:
    """CSV and Parquet download buttons for a chart's underlying table.

    on_click="ignore": a click must not rerun the script. A rerun first drops this session's claim on its
    /media files (Streamlit re-registers them as the run redraws the page), and every other session's run
    that ends meanwhile sweeps unclaimed files: with a few busy sessions the file the browser is about to
    fetch is gone (HTTP 404, issue 14). Without the rerun the claim stands until the page is redrawn."""
    if table is None or table.is_empty():
        return
    a, b, _ = container.columns([1, 1.3, 3])
    a.download_button("CSV", table.write_csv().encode(), f"{key}.csv", "text/csv", key=f"{key}_csv",
                      on_click="ignore")
    buf = io.BytesIO()
    table.write_parquet(buf)
    b.download_button("Parquet", buf.getvalue(), f"{key}.parquet", "application/octet-stream",
                      key=f"{key}_parquet", on_click="ignore")


def python_source(source: Slice | None, key: str, container=st) -> None:
    """A "copy as Python" popover: the Polars lines that load the chart's rows from the zoo directory
    (st.code has the copy button)."""
    if source is not None:
        with container.popover("Copy as Python", icon=":material/code:"):
            st.code(source.code(), language="python")


def chart(fig, table: pl.DataFrame | None, key: str, container=st, source: Slice | None = None) -> None:
    """A Plotly chart whose camera button saves PNG or SVG, with its underlying table as CSV and Parquet and,
    given its `source`, the Python that loads its rows."""
    container.plotly_chart(fig, key=key, config=image_config(key))
    downloads(table, key, container)
    python_source(source, key, container)
