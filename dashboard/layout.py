"""The page layout below the wide layout's comfortable width: Streamlit stacks columns only under a 640 px
window, so at ~800 px with the sidebar open two maps side by side were ~250 px slivers and a table in a
narrow column drew no rows. Columns wrap instead when the main area (not the window: the sidebar may be
open or closed) is narrower than STACK_BELOW_PX (a CSS container query): a row holding a chart or a table puts each column on its
own line, any other row (select boxes, buttons) wraps columns narrower than MIN_COLUMN_REM."""
import streamlit as st

# main-area width (px) under which charts and tables take a whole line: two maps side by side need ~440 px
# each to keep their ticks, colour bar and title (a 1400 px window with the sidebar open has ~940 px)
STACK_BELOW_PX = 880
MIN_COLUMN_REM = 8  # a select box or a button column narrower than this wraps to the next line

ROW = '[data-testid="stHorizontalBlock"]'
COLUMN = f'{ROW} > [data-testid="stColumn"]'
CSS = f"""<style>
[data-testid="stMainBlockContainer"], .stMainBlockContainer {{ container-type: inline-size; }}
@container (max-width: {STACK_BELOW_PX}px) {{
  {ROW} {{ flex-wrap: wrap; }}
  {COLUMN} {{ min-width: min(100%, {MIN_COLUMN_REM}rem); }}
  {ROW}:has([data-testid="stPlotlyChart"], [data-testid="stDataFrame"]) > [data-testid="stColumn"] {{
    flex: 1 1 100%; min-width: 100%; }}
}}
</style>"""


def responsive() -> None:
    """The layout rules above, once per run (the router calls it)."""
    st.html(CSS)
