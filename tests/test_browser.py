"""The dashboard in a real browser: Playwright driving Debian's Chromium against a `streamlit run` server
that the test starts and stops. Fails on any browser console error. Screenshots go to runs/browser/.
`make test` installs Chromium (apt) when it is missing."""
import os
import re
from pathlib import Path

import pytest

from dashboard.server import CHROMIUM, CHROMIUM_ARGS, streamlit_server
from tests.conftest import ROOT, code_running_pickle

pytestmark = pytest.mark.browser
SHOTS = ROOT / "runs" / "browser"
PROBE = re.compile(r"/[^/]+/_stcore/(health|host-config)$")

if not Path(CHROMIUM).exists():
    if os.environ.get("CI"):  # CI must run them: `make test` installs chromium there (root, apt)
        raise RuntimeError(f"{CHROMIUM} is missing on CI: the browser tests cannot run")
    pytest.skip("Debian chromium missing (`make chromium` installs it)", allow_module_level=True)


@pytest.fixture(scope="module")
def server():
    with streamlit_server() as url:
        yield url


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


def watched(browser, **options):
    """A new page whose console errors fail the test (`watched_errors` checks them)."""
    page = browser.new_page(**{"viewport": {"width": 1400, "height": 1000}, "accept_downloads": True, **options})
    errors: list[str] = []
    # A failed resource shows up twice: as a console error without its URL, and as a response with one;
    # keep the response. Streamlit itself probes <page>/_stcore/{health,host-config} on a deep link to find
    # its base path (404, then it falls back to /): that probe is not an error of ours.
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and not PROBE.search(r.url) else None)
    return page, errors


@pytest.fixture()
def page(browser):
    page, errors = watched(browser)
    yield page
    page.close()
    assert not errors, f"browser console errors: {errors}"


def charts(page, n: int) -> None:
    page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {n}", timeout=60_000)


def shot(page, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


@pytest.mark.parametrize("path, n_charts, title", [
    ("", 2, "Zoo: mnist1d-mlp"), ("phases", 2, "Phase diagram"), ("cell", 4, "Cell detail"),
    ("spectra", 3, "Hessian spectra"), ("weights", 1, "Weight space"), ("upload", 0, "Classify a checkpoint"),
    ("compare", 3, "Compare zoos"),
    ("downstream", 5, "Ensembles & averaging"), ("glossary", 0, "Glossary"),
])
def test_every_page_renders(server, page, path, n_charts, title):
    page.goto(f"{server}/{path}")
    page.get_by_text(title).first.wait_for(timeout=60_000)
    if n_charts:
        charts(page, n_charts)
    shot(page, path or "overview")


def select(page, label: str, option: str) -> None:
    """Pick `option` in the Streamlit select box labelled `label` (typed first: long lists are virtualised,
    so an option far down is not in the page until the list is filtered to it)."""
    page.get_by_label(label).first.click()
    page.keyboard.type(option)
    page.get_by_role("option", name=option, exact=True).click()


def test_change_metric_epoch_threshold_and_download(server, page):
    page.goto(f"{server}/phases")
    charts(page, 2)
    mc = "mode connectivity mc (trained Bézier curve) (train)"  # the declared name, not mc_bezier
    select(page, "Metric", mc)
    titled(page, "Mode connectivity mc (trained Bézier curve)", "(train), mean over seeds")
    select(page, "Analysis epoch", "150")
    page.get_by_text("epoch 150").first.wait_for(timeout=30_000)
    page.get_by_text("Thresholds (reclassify at once)").click()
    slider = page.get_by_role("slider").first
    slider.focus()
    for _ in range(20):
        page.keyboard.press("ArrowRight")  # raise τ_L
    page.wait_for_timeout(1500)
    charts(page, 2)
    with page.expect_download() as dl:
        page.get_by_role("button", name="CSV").first.click()
    csv = Path(dl.value.path()).read_text()
    assert csv.splitlines()[0].startswith("width,batch_size,value")
    shot(page, "phases-interacted")


def test_cell_page_choose_a_cell(server, page):
    page.goto(f"{server}/cell")
    charts(page, 4)
    select(page, "width", "8")
    page.get_by_text("width=8 · batch_size=").first.wait_for(timeout=30_000)
    charts(page, 4)
    shot(page, "cell-width8")


def test_clicking_a_phase_map_cell_opens_it(server, page):
    page.goto(f"{server}/phases")
    charts(page, 2)
    page.wait_for_timeout(1000)
    area = page.locator(".js-plotly-plot").nth(1).locator(".nsewdrag").first.bounding_box()
    # the last column (width 256), fifth row from the top (batch 128): cell centres sit at (i + ½) / n
    x, y = area["x"] + area["width"] * 7.5 / 8, area["y"] + area["height"] * 4.5 / 8
    page.mouse.move(x, y)
    page.wait_for_timeout(500)
    hover = page.evaluate("Array.from(document.querySelectorAll('.hovertext')).map(e => e.textContent).join()")
    assert "width=256, batch_size=128" in hover and "margin" in hover
    page.mouse.click(x, y)
    page.get_by_text("width=256 · batch_size=128").first.wait_for(timeout=30_000)
    assert "/cell?" in page.url and "cell=256%2C128" in page.url  # the cell is in its link
    shot(page, "drill-down")


def test_upload_a_checkpoint_and_a_malicious_pickle(server, page, browser, tmp_path):
    """A real upload round trip: a zoo checkpoint gets its verdict and maps; a pickle that would run code is
    refused with its reason and no traceback, runs nothing, and the server goes on serving other sessions."""
    marker = tmp_path / "pwned"
    evil = code_running_pickle(tmp_path / "evil.pt", marker)
    page.goto(f"{server}/upload")
    page.get_by_text("Drop one or more checkpoints").wait_for(timeout=60_000)
    ckpt = ROOT / "data/zoos/mnist1d-mlp/checkpoints/width016-batch_size0064-s0/epoch_0300.safetensors"
    page.locator("input[type=file]").set_input_files([str(ckpt), str(evil)])
    page.get_by_text("Phase (taxonomy rules)").first.wait_for(timeout=120_000)
    charts(page, 8)  # 4 evidence strips, probabilities, spectrum, phase map, weight space
    page.get_by_text("evil.pt: refused").first.wait_for(timeout=30_000)
    assert "Traceback" not in page.content()
    assert not marker.exists()
    shot(page, "upload")
    other = browser.new_page()  # another user, meanwhile
    other.goto(f"{server}/phases")
    other.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 2", timeout=60_000)
    other.close()


def titled(page, *parts: str) -> None:
    """Wait for a chart whose title holds every part (a long title wraps: its lines are joined here)."""
    page.wait_for_function("parts => Array.from(document.querySelectorAll('.gtitle')).some(e => "
                           "parts.every(p => e.textContent.includes(p)))", arg=list(parts), timeout=30_000)


def chart_titles(page) -> str:
    return page.evaluate("Array.from(document.querySelectorAll('.gtitle')).map(e => e.textContent).join(' | ')")


def test_a_copied_link_restores_zoo_epoch_metric_and_cell_after_a_reload(server, page):
    page.goto(f"{server}/phases?zoo=mnist1d-cnn&epoch=50&metric=mc_bezier:train&eps=2")
    page.get_by_text("Phase diagram: mnist1d-cnn").wait_for(timeout=60_000)
    charts(page, 2)
    titled(page, "Mode connectivity mc (trained Bézier curve)", "mean over seeds, epoch 50")
    select(page, "Analysis epoch", "100")  # a change goes into the URL…
    page.get_by_text("epoch 100").first.wait_for(timeout=30_000)
    page.wait_for_function("location.search.includes('epoch=100')", timeout=30_000)
    # …and the sidebar's "Copy link" shows the whole link
    page.get_by_role("button", name="Copy link").click()
    link = page.locator("[data-testid='stPopoverBody'] code, [data-testid='stPopover'] code").first.inner_text()
    assert link.startswith(f"{server}/phases?zoo=mnist1d-cnn") and "epoch=100" in link and "eps=2" in link
    page.goto(link)
    charts(page, 2)
    page.reload()  # the same view after a reload
    page.get_by_text("Phase diagram: mnist1d-cnn").wait_for(timeout=60_000)
    charts(page, 2)
    titled(page, "Mode connectivity mc", "(train), mean over seeds, epoch 100")
    page.goto(f"{server}/cell?zoo=mnist1d-mlp&cell=8,128")
    page.get_by_text("width=8 · batch_size=128").first.wait_for(timeout=60_000)
    page.reload()
    page.get_by_text("width=8 · batch_size=128").first.wait_for(timeout=60_000)
    assert "cell=8" in page.url and "zoo=mnist1d-mlp" in page.url


def test_each_zoo_opens_at_its_own_last_analysis_epoch(server, page):
    page.goto(f"{server}/phases")
    charts(page, 2)
    select(page, "Analysis epoch", "150")
    page.get_by_text("epoch 150").first.wait_for(timeout=30_000)
    for zoo, epoch in (("modadd-transformer", 3000), ("convection-pinn", 1500), ("mnist1d-mlp", 300)):
        select(page, "Zoo", zoo)
        page.get_by_text(f"Phase diagram: {zoo}").wait_for(timeout=60_000)
        page.wait_for_function(f"location.search.includes('epoch={epoch}')", timeout=60_000)
        charts(page, 2)
        assert f"epoch {epoch}" in chart_titles(page)


def luminance(css: str) -> float:
    r, g, b = (int(v) for v in re.findall(r"\d+", css)[:3])
    return (0.2126 * r + 0.7152 * g + 0.0722 * b) / 255


def test_dark_theme_follows_the_browser(server, browser):
    for scheme, dark in (("dark", True), ("light", False)):
        page, errors = watched(browser, color_scheme=scheme)
        page.goto(f"{server}/phases")
        charts(page, 2)
        background = page.evaluate("getComputedStyle(document.querySelector('.stApp')).backgroundColor")
        title = page.evaluate("getComputedStyle(document.querySelector('.gtitle')).fill")
        assert (luminance(background) < 0.2) == dark, (scheme, background)
        assert (luminance(title) > 0.6) == dark, (scheme, title)  # the charts follow (Streamlit's Plotly theme)
        shot(page, f"phases-{scheme}")
        page.close()
        assert not errors, errors


def test_820_px_every_plot_is_wide_and_every_table_has_rows(server, browser):
    page, errors = watched(browser, viewport={"width": 820, "height": 1000})
    for path, n in (("", 2), ("phases", 2)):  # the overview is the default page, at /
        page.goto(f"{server}/{path}")
        charts(page, n)
        if not path:
            page.get_by_text("Per-cell table").click()
        page.wait_for_selector("[data-testid='stDataFrame'] canvas", timeout=30_000)
        page.wait_for_timeout(1000)
        widths = page.evaluate("Array.from(document.querySelectorAll('.js-plotly-plot'))"
                               ".map(e => e.getBoundingClientRect().width)")
        assert len(widths) >= n and min(widths) >= 300, (path, widths)
        tables = page.evaluate("Array.from(document.querySelectorAll('[data-testid=\"stDataFrame\"]'))"
                               ".map(e => [e.getBoundingClientRect().width, e.getBoundingClientRect().height, "
                               "e.querySelectorAll('[role=row]').length])")
        assert tables and all(w >= 300 and h >= 100 and rows > 1 for w, h, rows in tables), (path, tables)
        sidebar = page.evaluate("document.querySelector('[data-testid=\"stSidebar\"]').getBoundingClientRect().width")
        assert sidebar > 100  # the sidebar is open: the main area is ~500 px wide
        shot(page, f"{path or 'overview'}-820px")
    page.close()
    assert not errors, errors


def test_a_box_on_the_phase_map_compares_the_selected_cells(server, page):
    page.goto(f"{server}/phases")
    charts(page, 2)
    page.wait_for_timeout(1000)
    phase_map = page.locator(".js-plotly-plot").nth(1)
    phase_map.hover()
    phase_map.locator("[data-title='Box Select']").click()
    area = phase_map.locator(".nsewdrag").first.bounding_box()
    # from the centre of the top-right cell (width 256, batch 8) to that of the cell two columns left, one row
    # down: a box over 3 × 2 cells (cell centres at (i + ½) / 8 of the area)
    x0, y0 = area["x"] + area["width"] * 7.6 / 8, area["y"] + area["height"] * 0.4 / 8
    x1, y1 = area["x"] + area["width"] * 5.4 / 8, area["y"] + area["height"] * 1.6 / 8
    page.mouse.move(x0, y0)
    page.mouse.down()
    page.mouse.move(x1, y1, steps=8)
    page.mouse.up()
    button = page.get_by_role("button", name=re.compile(r"Compare selected cells \(\d+\)"))
    button.wait_for(timeout=30_000)
    n = int(re.search(r"\((\d+)\)", button.inner_text()).group(1))
    assert 2 <= n <= 6, n  # the box's cells (their count depends on where the drag's ends fall)
    button.click()
    page.get_by_text("Group comparison: mnist1d-mlp").wait_for(timeout=60_000)
    assert "/groups" in page.url
    page.get_by_text(f"Group A: {n} cells and 0 models selected in phase map").wait_for(timeout=30_000)
    shot(page, "groups-from-phase-map")


def test_a_glossary_link_lands_on_its_entry(server, page):
    """/glossary#mc: the entry carries the anchor and the page keeps it in its address, so the browser scrolls
    there (Streamlit scrolls once the entry is drawn; how far depends on how much of the page is drawn by then,
    so the scroll itself is not asserted)."""
    for anchor in ("mc", "science-1"):
        page.goto(f"{server}/glossary#{anchor}")
        page.wait_for_function(f"document.getElementById('{anchor}') !== null", timeout=60_000)
        page.wait_for_timeout(1000)
        assert page.url.endswith(f"/glossary#{anchor}")  # no query string written over the anchor


# every Plotly trace drawn in the page, as the browser holds it: [name, marker colour, line colour]
TRACES_JS = """Array.from(document.querySelectorAll('.js-plotly-plot')).flatMap(p => (p.data || []).map(
    t => [String(t.name), (t.marker || {}).color, (t.line || {}).color]))"""


def test_each_phase_has_one_colour_on_every_page(server, page):
    """The figures as the browser drew them, page after page: a trace named after a phase (or after a cell
    drawn for its phase, "IV-B (256, 64)") is in that phase's colour of the one palette, everywhere."""
    from dashboard.charts import PHASE_COLOURS

    seen: dict[str, set] = {}
    for path, n in (("phases", 2), ("training", 2), ("spectra", 3), ("weights", 1), ("compare", 3)):
        page.goto(f"{server}/{path}")
        charts(page, n)
        page.wait_for_timeout(500)
        for name, marker, line in page.evaluate(TRACES_JS):
            phase = name.split(" (")[0]
            if phase in PHASE_COLOURS:
                seen.setdefault(phase, set()).update(c.lower() for c in (marker, line) if isinstance(c, str))
    assert set(seen) >= {"I", "II", "III", "IV-A", "IV-B"}
    assert {p: c for p, c in seen.items() if c != {PHASE_COLOURS[p].lower()}} == {}
