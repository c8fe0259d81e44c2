"""Serve the dashboard, as `make run` does: `streamlit run dashboard/app.py`, headless, on one port.

Streamlit flags after `--` are passed on, e.g. `phasezoo dashboard -- --server.address 0.0.0.0`.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from dashboard.server import SERVER_ENV


def main(argv: Sequence[str] | None = None, prog: str = "python -m phasezoo.dashboard") -> int:
    ap = argparse.ArgumentParser(prog=prog, description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, default=8501, help="port to serve on (default 8501)")
    ap.add_argument("--zoo", help="the zoo the picker opens first: a directory or a built-in zoo's name")
    ap.add_argument("streamlit_args", nargs="*", metavar="STREAMLIT_FLAG",
                    help="more `streamlit run` flags, after `--`")
    args = ap.parse_args(argv)
    app = Path(__file__).resolve().parents[1] / "dashboard" / "app.py"  # a sibling package in any install
    env = dict(os.environ)
    for name, value in SERVER_ENV.items():  # MALLOC_ARENA_MAX=2 unless set (docs/serving.md); glibc reads it
        env[name] = env.get(name) or value  # at start-up, hence set before the server process starts
    if args.zoo:
        from dashboard.picker import ZOO_ENV  # imports Streamlit: only when needed

        env[ZOO_ENV] = args.zoo
    cmd = [sys.executable, "-m", "streamlit", "run", str(app), "--server.headless", "true",
           "--server.port", str(args.port), *args.streamlit_args]
    os.execve(sys.executable, cmd, env)  # the server replaces this process: signals reach it directly
