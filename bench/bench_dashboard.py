"""Dashboard speed: the first phase map in a real browser, and server-side reruns, on the default zoo and on a
synthetic zoo of 100,000 catalog rows and 1,000,000 metric rows.

    python bench/bench_dashboard.py [--quick]

- browser: a warm `streamlit run` server (one page load first), then the time from requesting the Phase
  diagram page until its phase map is drawn, in Debian's Chromium (Playwright); median of 3 loads.
- first paint against the floor: the time to the Phase diagram's first drawn heatmap against a minimal
  Streamlit page with one Plotly heatmap (the stack's floor), each on a warm server of its own, loads
  interleaved; the ratio is printed (goal ≤ 1.2× on the default zoo, ≤ 1.3× on the synthetic one).
- server side: Streamlit's AppTest runs the page script in-process; the time of one rerun after changing the
  metric, the epoch and a threshold (median of 3 each), after a first run that fills the caches.
Targets: first phase map ≤ 3 s; reruns ≤ 0.5 s on the default zoo, ≤ 1 s on the synthetic zoo.
`--quick` (tests/test_benches.py): a synthetic zoo of 18 models, one timed browser load and one rerun of each.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl

from dashboard.server import CHROMIUM, CHROMIUM_ARGS, streamlit_server
from data.zoo.schema import CATALOG, METRICS
from data.zoo.spec_builder import mnist1d_width_batch

ROOT = Path(__file__).resolve().parents[1]
APP = str(ROOT / "dashboard" / "app.py")


def synthetic_zoo(root: Path, widths=10, batches=10, seeds=10, epochs=99, esd_points=260) -> tuple[int, int]:
    """A zoo directory with the declared schemas and random values: catalog and metrics only."""
    w = [2 ** i for i in range(1, widths + 1)]
    b = [2 ** i for i in range(3, 3 + batches)]
    root.mkdir(parents=True)
    training = {"epochs": epochs, "lr": 0.05, "batch_size": 32, "analysis_epochs": [epochs // 2, epochs]}
    mnist1d_width_batch("synthetic", widths=w, batch_sizes=b, seeds=range(seeds), training=training).write(
        root / "spec.toml")
    rng = np.random.default_rng(0)
    ids = [(f"width{x:04d}-batch_size{y:04d}-s{s}", x, y, s) for x in w for y in b for s in range(seeds)]
    n = len(ids) * (epochs + 1)
    cat = pl.DataFrame({
        "model_id": np.repeat([i[0] for i in ids], epochs + 1), "arch": ["mlp"] * n,
        "seed": np.repeat([i[3] for i in ids], epochs + 1), "epoch": np.tile(np.arange(epochs + 1), len(ids)),
        "n_params": np.repeat(rng.integers(100, 100_000, len(ids)), epochs + 1),
        "train_loss": rng.random(n) * 2, "train_acc": rng.random(n), "test_loss": rng.random(n) * 2,
        "test_acc": rng.random(n), "checkpoint": [None] * n,
        "width": np.repeat([i[1] for i in ids], epochs + 1), "batch_size": np.repeat([i[2] for i in ids], epochs + 1),
    }, schema={**CATALOG.columns, "width": pl.Int64, "batch_size": pl.Int64})
    CATALOG.validate(cat, {"width": pl.Int64, "batch_size": pl.Int64}).write_parquet(root / "catalog.parquet")
    rows = []
    for epoch in (epochs // 2, epochs):
        for metric, split, coord, k in [("train_loss", "train", None, 1), ("test_acc", "test", None, 1),
                                        ("hessian_trace_exact", "train", None, 1),
                                        ("hessian_top_eigenvalue", "train", 1.0, 1),
                                        ("hessian_esd", "train", "grid", esd_points),
                                        ("hessian_esd", "test", "grid", esd_points)]:
            m = len(ids) * k
            rows.append(pl.DataFrame({
                "model_id": np.repeat([i[0] for i in ids], k), "other_id": [None] * m, "epoch": [epoch] * m,
                "metric": [metric] * m, "split": [split] * m, "layer": [None] * m,
                "coord": np.tile(np.linspace(-1, 10, k), len(ids)) if coord == "grid" else [coord] * m,
                "value": rng.random(m) + 0.01, "stderr": [None] * m, "params_hash": ["synthetic"] * m, "error": [None] * m,
            }, schema=METRICS.columns))
        pairs = [(a[0], c[0]) for a in ids for c in ids if a[1:3] == c[1:3] and a[3] < c[3]]
        for metric in ("mc_bezier", "cka_logits_test"):
            rows.append(pl.DataFrame({
                "model_id": [p[0] for p in pairs], "other_id": [p[1] for p in pairs], "epoch": [epoch] * len(pairs),
                "metric": [metric] * len(pairs), "split": ["train" if metric == "mc_bezier" else "test"] * len(pairs),
                "layer": [None] * len(pairs), "coord": [None] * len(pairs),
                "value": rng.normal(-5, 10, len(pairs)) if metric == "mc_bezier" else rng.random(len(pairs)),
                "stderr": [None] * len(pairs), "params_hash": ["synthetic"] * len(pairs), "error": [None] * len(pairs),
            }, schema=METRICS.columns))
    met = METRICS.validate(pl.concat(rows))
    met.write_parquet(root / "metrics.parquet")
    return cat.height, met.height


def median(xs):
    return sorted(xs)[len(xs) // 2]


def server_side(zoo: str | None, epochs: list[int], repeats: int = 3) -> dict[str, float]:
    from streamlit.testing.v1 import AppTest

    if zoo:
        os.environ["PHASEZOO_ZOO"] = zoo
    at = AppTest.from_file(APP, default_timeout=300)
    at.run()
    at.switch_page("views/phases.py").run()
    assert not at.exception, at.exception
    options = [("mc_bezier", "train", None), ("hessian_trace_exact", "train", None), ("test_acc", "test", None)]
    timings: dict[str, list[float]] = {"metric": [], "epoch": [], "threshold": []}
    for i in range(repeats):
        t = time.perf_counter()
        at.selectbox(key="phases_metric").set_value(options[i]).run()
        timings["metric"].append(time.perf_counter() - t)
        t = time.perf_counter()
        at.selectbox(key="phases_epoch").set_value(epochs[i % len(epochs)]).run()
        timings["epoch"].append(time.perf_counter() - t)
        t = time.perf_counter()
        at.slider(key="phases_tau_loss").set_value(-1.0 + 0.1 * i).run()
        timings["threshold"].append(time.perf_counter() - t)
        assert not at.exception, at.exception
    os.environ.pop("PHASEZOO_ZOO", None)
    return {k: median(v) for k, v in timings.items()}


# The stack's floor: the least a Streamlit page with one Plotly heatmap costs on this machine (the same wide
# layout, an 8 × 8 heatmap like the default zoo's grid), served by a server of its own.
FLOOR_APP = """import numpy as np
import plotly.graph_objects as go
import streamlit as st

st.set_page_config(layout="wide")
st.title("Floor")
st.plotly_chart(go.Figure(go.Heatmap(z=np.arange(64.0).reshape(8, 8))))
"""
FIRST_HEATMAP = "document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 1"


def first_paint_against_floor(zoo: str | None, loads: int = 3) -> tuple[float, float]:
    """Median seconds from requesting the page to its first drawn heatmap: the Phase diagram (on `zoo`, or
    the default zoo) and the floor page, each on its own warm server, loads interleaved so that the machine's
    state weighs on both alike."""
    from playwright.sync_api import sync_playwright

    with tempfile.TemporaryDirectory() as tmp:
        floor = Path(tmp) / "floor.py"
        floor.write_text(FLOOR_APP)
        with (streamlit_server({"PHASEZOO_ZOO": zoo} if zoo else None, timeout=300) as ours,
              streamlit_server(timeout=300, app=floor) as base, sync_playwright() as p):
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            times: dict[str, list[float]] = {"ours": [], "floor": []}
            for i in range(loads + 1):  # the first round warms both servers (imports, caches)
                for name, url in (("ours", f"{ours}/phases"), ("floor", base)):
                    page = b.new_page(viewport={"width": 1400, "height": 1000})
                    t = time.perf_counter()
                    page.goto(url)
                    page.wait_for_function(FIRST_HEATMAP, timeout=300_000)
                    if i:
                        times[name].append(time.perf_counter() - t)
                    page.close()
            b.close()
    return median(times["ours"]), median(times["floor"])


def first_map_in_browser(zoo: str | None, loads: int = 3) -> float:
    from playwright.sync_api import sync_playwright

    with streamlit_server({"PHASEZOO_ZOO": zoo} if zoo else None, timeout=300) as url:
        with sync_playwright() as p:
            b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            times = []
            for i in range(loads + 1):  # the first load warms the server (imports, caches); the others are timed
                page = b.new_page(viewport={"width": 1400, "height": 1000})
                t = time.perf_counter()
                page.goto(f"{url}/phases")
                page.wait_for_function("document.querySelectorAll('.js-plotly-plot .heatmaplayer').length >= 2",
                                       timeout=300_000)
                if i:
                    times.append(time.perf_counter() - t)
                page.close()
            b.close()
        return median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="an 18-model synthetic zoo, one timed load and rerun each")
    args = ap.parse_args()
    size = {"widths": 3, "batches": 3, "seeds": 2, "epochs": 9, "esd_points": 20} if args.quick else {}
    repeats = 1 if args.quick else 3
    with tempfile.TemporaryDirectory() as tmp:
        zoo = Path(tmp) / "synthetic"
        t = time.perf_counter()
        n_cat, n_met = synthetic_zoo(zoo, **size)
        print(f"synthetic zoo: {n_cat:,} catalog rows, {n_met:,} metric rows (built in {time.perf_counter() - t:.1f} s)")
        for name, path, epochs, target in [("default zoo", None, [150, 300], 0.5),
                                          ("synthetic zoo", str(zoo), [size.get("epochs", 99) // 2,
                                                                       size.get("epochs", 99)], 1.0)]:
            first = first_map_in_browser(path, repeats)
            ours, floor = first_paint_against_floor(path, repeats)
            print(f"{name:>14}: first heatmap of the Phase diagram {ours:.2f} s, of a one-heatmap Streamlit page "
                  f"{floor:.2f} s: {ours / floor:.2f}x the floor (goal <= {1.2 if path is None else 1.3}x)")
            side = server_side(path, epochs, repeats)
            print(f"{name:>14}: first phase map in the browser {first:.2f} s (target <= 3 s); reruns after changing "
                  f"metric {side['metric']:.2f} s, epoch {side['epoch']:.2f} s, threshold {side['threshold']:.2f} s "
                  f"(target <= {target} s)")


if __name__ == "__main__":
    main()
