"""Regenerate the README's screenshots: serve the dashboard, open each page in headless Chromium.

    make screenshots      (installs Debian's chromium if it is missing)

Playwright drives Debian's /usr/bin/chromium (it cannot download its own browser here).
"""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from playwright.sync_api import sync_playwright

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# (url path, output file, number of Plotly charts to wait for)
PAGES = [("", "docs/overview.png", 2),  # the overview is the default page, served at /
         ("phases", "docs/phases.png", 2), ("cell", "docs/cell.png", 4), ("spectra", "docs/spectra.png", 3),
         ("weights", "docs/weights.png", 1), ("downstream", "docs/downstream.png", 0)]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def main() -> None:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "streamlit", "run", "dashboard/app.py", "--server.headless",
                               "true", "--server.port", str(port), "--server.address", "127.0.0.1"], cwd=ROOT,
                              env={**os.environ, "PYTHONPATH": str(ROOT)}, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(f"http://127.0.0.1:{port}/_stcore/health", timeout=1)
                break
            except OSError:
                time.sleep(0.25)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            page = browser.new_page(viewport={"width": 1500, "height": 1100})
            for path, out, charts in PAGES:
                page.goto(f"http://127.0.0.1:{port}/{path}")
                page.locator("h1").first.wait_for(timeout=60_000)
                page.wait_for_function(f"document.querySelectorAll('.js-plotly-plot').length >= {charts}",
                                       timeout=60_000)
                page.wait_for_timeout(1500)  # let the charts finish drawing
                page.screenshot(path=str(ROOT / out), full_page=True)
                print(f"wrote {out}")
            browser.close()
    finally:
        server.terminate()
        server.wait(timeout=30)


if __name__ == "__main__":
    main()
