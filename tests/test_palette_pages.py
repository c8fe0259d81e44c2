"""One visual language across pages: every trace a page names after a phase is drawn in that phase's colour
of the one palette (dashboard.charts.style.PHASE_COLOURS), read from the figure JSON each page sends."""
import json

import pytest
from streamlit.testing.v1 import AppTest

from dashboard.charts import PHASE_COLOURS
from tests.test_dashboard import APP

PAGES = ["phases", "training", "spectra", "weights", "compare", "downstream"]


def phase_colours(fig: dict) -> dict[str, set[str]]:
    """phase → the colours of the traces named after it (markers, lines, bars, boxes)."""
    seen: dict[str, set[str]] = {}
    for t in fig["data"]:
        name = str(t.get("name"))
        if name.split(" (")[0] in PHASE_COLOURS:  # "IV-B", or a cell drawn for its phase: "IV-B (256, 64)"
            name = name.split(" (")[0]
        else:
            continue
        for part in ("marker", "line"):
            colour = (t.get(part) or {}).get("color")
            if isinstance(colour, str):
                seen.setdefault(name, set()).add(colour.lower())
    return seen


@pytest.mark.slow
def test_every_page_draws_each_phase_in_its_one_colour():
    at = AppTest.from_file(APP, default_timeout=180)
    at.run()
    found: dict[str, set[str]] = {}
    for page in PAGES:
        at.switch_page(f"views/{page}.py").run()
        assert not at.exception, (page, at.exception)
        if page == "spectra":  # the default mode draws one cell per phase
            assert at.radio(key="spectra_mode").value == "one per phase"
        for el in at.get("plotly_chart"):
            for phase, colours in phase_colours(json.loads(el.proto.spec)).items():
                found.setdefault(phase, set()).update(colours)
    assert set(found) >= {"I", "II", "III", "IV-A", "IV-B"}  # the default zoo's phases were drawn somewhere
    for phase, colours in found.items():
        assert colours == {PHASE_COLOURS[phase].lower()}, (phase, colours)
