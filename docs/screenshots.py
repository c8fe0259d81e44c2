"""Regenerate the README's screenshots: serve the dashboard, open each page in headless Chromium.

    make screenshots      (installs Debian's chromium if it is missing)

Playwright drives Debian's /usr/bin/chromium (it cannot download its own browser here).
"""
from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dashboard.server import CHROMIUM, CHROMIUM_ARGS, streamlit_server  # noqa: E402

# (url path, output file, number of Plotly charts to wait for)
PAGES = [("", "docs/overview.png", 2),  # the overview is the default page, served at /
         ("phases", "docs/phases.png", 2), ("cell", "docs/cell.png", 4), ("spectra", "docs/spectra.png", 3),
         ("weights", "docs/weights.png", 1), ("downstream", "docs/downstream.png", 0)]


def main() -> None:
    with streamlit_server() as url:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for path, out, charts in PAGES:
                page.goto(f"{url}/{path}")
                page.locator("h1").first.wait_for(timeout=60_000)
                page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                                       timeout=60_000)
                page.wait_for_timeout(1500)  # let the charts finish drawing
                page.screenshot(path=str(ROOT / out), full_page=True)
                print(f"wrote {out}")
            browser.close()


if __name__ == "__main__":
    main()
