"""Regenerate the manual's screenshots (docs/*.png; docs/regenerate.md): serve the dashboard, open each page in headless Chromium.

    make screenshots      (installs Debian's chromium if it is missing)

Playwright drives Debian's /usr/bin/chromium (it cannot download its own browser here).
"""
from __future__ import annotations

from pathlib import Path

from playwright.sync_api import sync_playwright

from dashboard.server import CHROMIUM, CHROMIUM_ARGS, streamlit_server

ROOT = Path(__file__).resolve().parents[1]

# (url path, output file, number of Plotly charts to wait for, viewport height: the page scrolls inside
# Streamlit's own container, so a full-page screenshot is the viewport)
PAGES = [("overview", "docs/overview.png", 2, 1100),
         ("phases", "docs/phases.png", 2, 1100), ("cell", "docs/cell.png", 4, 1400),
         ("training", "docs/training.png", 3, 1600), ("spectra", "docs/spectra.png", 3, 1100),
         ("weights", "docs/weights.png", 1, 1100),
         ("downstream", "docs/downstream.png", 5, 2400), ("compare", "docs/compare.png", 3, 1600),
         ("glossary", "docs/glossary.png", 0, 1100)]
# the Phase diagram in the dark theme, and in a narrow (820 px) window: (colour scheme, width, output)
VARIANTS = [("dark", 1500, "docs/phases-dark.png"), ("light", 820, "docs/phases-820.png")]
# pages of the other built-in zoos, each served with that zoo picked (PHASEZOO_ZOO)
OTHER_ZOOS = [("modadd-transformer", "", "docs/overview-modadd.png", 3, 1500),  # with the grokking delay
              ("modadd-transformer", "training", "docs/training-modadd.png", 3, 2600),  # seven analysis epochs
              ("convection-pinn", "phases", "docs/phases-pinn.png", 2, 1100),
              ("mnist1d-cnn", "phases", "docs/phases-cnn.png", 2, 1100)]


def main() -> None:
    with streamlit_server() as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for path, out, charts, height in PAGES:
                page.set_viewport_size({"width": 1500, "height": height})
                capture(page, url, path, out, charts)
            page.set_viewport_size({"width": 1500, "height": 2500})
            capture(page, url, "upload", "docs/upload.png", 8, sample_checkpoint())
            page.set_viewport_size({"width": 1500, "height": 1800})
            groups(page, url)
            for scheme, width, out in VARIANTS:
                variant = browser.new_page(viewport={"width": width, "height": 1400}, color_scheme=scheme)
                capture(variant, url, "phases", out, 2)
                variant.close()
            browser.close()
    for zoo, path, out, charts, height in OTHER_ZOOS:
        with streamlit_server({"PHASEZOO_ZOO": zoo}) as url, sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": height})
            capture(page, url, path, out, charts)
            browser.close()


def sample_checkpoint() -> Path:
    """A default-zoo model with 0.1 % noise on its weights: recognised, but not identical to a zoo model."""
    import tempfile

    import torch
    from safetensors.torch import load_file, save_file

    src = ROOT / "data/zoos/mnist1d-mlp/checkpoints/width064-batch_size0032-s2/epoch_0300.safetensors"
    g = torch.Generator().manual_seed(0)
    state = {k: v + 1e-3 * v.std() * torch.randn(v.shape, generator=g) for k, v in load_file(src).items()}
    out = Path(tempfile.mkdtemp()) / "my-width64-model.safetensors"
    save_file(state, str(out))
    return out


def groups(page, url: str) -> None:
    """Group comparison: two cells of the widest models against the rest of their phases."""
    page.goto(f"{url}/groups")
    page.locator("h1").first.wait_for(timeout=60_000)
    for cell in ("width=256 · batch_size=16", "width=256 · batch_size=32"):
        page.get_by_label("Group A: cells").first.click()
        page.keyboard.type(cell)
        page.get_by_role("option", name=cell, exact=True).click()
    page.keyboard.press("Escape")
    page.get_by_text("the rest of its phases").first.click()
    page.wait_for_function("document.querySelectorAll('.js-plotly-plot').length >= 3", timeout=90_000)
    page.wait_for_timeout(1500)
    page.screenshot(path=str(ROOT / "docs/groups.png"), full_page=True)
    print("wrote docs/groups.png")


def capture(page, url: str, path: str, out: str, charts: int, upload: Path | None = None) -> None:
    """Open a page (uploading a file if given), wait for its charts, save a full-page screenshot."""
    page.goto(f"{url}/{path}")
    page.locator("h1").first.wait_for(timeout=60_000)
    if upload is not None:
        page.locator("input[type=file]").set_input_files(str(upload))
    if charts:
        page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                               timeout=300_000 if upload else 90_000)  # an upload is measured first
    page.wait_for_timeout(1500)  # let the charts finish drawing
    page.screenshot(path=str(ROOT / out), full_page=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
