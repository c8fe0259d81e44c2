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


@pytest.fixture()
def page(browser):
    page = browser.new_page(viewport={"width": 1400, "height": 1000}, accept_downloads=True)
    errors: list[str] = []
    # A failed resource shows up twice: as a console error without its URL, and as a response with one;
    # keep the response. Streamlit itself probes <page>/_stcore/{health,host-config} on a deep link to find
    # its base path (404, then it falls back to /): that probe is not an error of ours.
    page.on("console", lambda msg: errors.append(msg.text)
            if msg.type == "error" and not msg.text.startswith("Failed to load resource") else None)
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("response", lambda r: errors.append(f"HTTP {r.status} {r.url}")
            if r.status >= 400 and not PROBE.search(r.url) else None)
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
    ("downstream", 5, "Ensembles & averaging"),
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
    select(page, "Metric", "mc_bezier (train)")
    page.get_by_text("mc_bezier (train), mean over seeds").first.wait_for(timeout=30_000)
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
    assert page.url.endswith("/cell")
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
