"""The dashboard server under load: browsing sessions and uploads at once, on a real `streamlit run` server.

    python bench/bench_load.py            # 8 sessions × 8 pages, 2 uploads at once, 3 rounds
    python bench/bench_load.py --quick    # 6 sessions × 3 pages, 2 rounds (the load test's size)
    python bench/bench_load.py --quick --baseline   # the same without the fixes that are configuration

Sessions are dashboard.server.Session clients (Streamlit's websocket protocol, no browser: a Chromium per
session would load the 2 cores more than the server does). Each browsing session opens its pages and clicks
one download button per page; each upload session opens the upload page and uploads a zoo checkpoint (a
noisy copy: a new SHA-256 every run, so no cached report answers). Printed side by side:
- upload latency, file sent to verdict drawn (s): solo (alone on the server, after a warm-up upload) and
  under load (the two uploads sent together while the browsing sessions run), and their ratio;
- page runs (s): the median of one session alone against the median under load;
- the server's RSS (MB, /proc/<pid>/status) after each round and after the sessions closed.
The machine is shared: compare solo and loaded of one run, not numbers across runs.
"""
from __future__ import annotations

import argparse
import os
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from dashboard.server import Server, Session, dashboard_server

ROOT = Path(__file__).resolve().parents[1]
ZOO = ROOT / "data" / "zoos" / "mnist1d-mlp"
MODEL = "width008-batch_size0256-s1"  # a small model: the load test's uploads must fit its time budget
PAGES = ("overview", "phases", "cell", "spectra", "weights", "upload", "compare", "downstream")
# No file watcher: other work on the tree must not make the server re-import modules mid-run. A closed
# session is kept 2 s (not 120) for a reconnect and the janitor (dashboard.admission) sweeps every 2 s (not
# 30): "after the sessions closed" is then measurable within seconds.
OPTIONS = ("--server.fileWatcherType", "none", "--server.disconnectedSessionTTL", "2")
ENV = {"PHASEZOO_JANITOR_S": "2"}
VERDICT = "Phase (taxonomy rules)"  # the upload page's first result: the analysis is done
WAITING = "Waiting for"  # dashboard.admission.Place.message: the upload was queued


def checkpoint(seed: int) -> bytes:
    """The zoo checkpoint with 0.1 % weight noise (seeded by `seed` and this process): a new file every run."""
    import torch
    from safetensors.torch import load_file, save

    g = torch.Generator().manual_seed(seed * 1_000_003 + os.getpid())
    state = load_file(ZOO / "checkpoints" / MODEL / "epoch_0300.safetensors")
    return save({k: v + 1e-3 * v.std() * torch.randn(v.shape, generator=g) for k, v in state.items()})


@dataclass(frozen=True)
class Visit:
    page: str
    seconds: float  # the page's script run, request to finished
    errors: tuple[str, ...]  # exceptions and st.error boxes on the page
    media: tuple[tuple[str, int], ...]  # (URL, HTTP status) of the downloads clicked
    rerun_buttons: int  # download buttons that rerun the script on click (the 404 mechanism)


@dataclass(frozen=True)
class Upload:
    seconds: float  # file sent to the verdict drawn
    queued: bool  # it was told to wait for an upload ahead
    verdict: bool  # the phase verdict was drawn
    errors: tuple[str, ...]
    rerun_buttons: int  # download buttons of the result that rerun the script on click


def browse(url: str, pages, out: list) -> None:
    """One browsing session: each page, then a click on its first download button (if any)."""
    s = Session(url)
    try:
        for page in pages:
            run = s.run(page)
            buttons = run.of("download_button")
            media = ((buttons[0].url, s.download(buttons[0])),) if buttons else ()
            out.append(Visit(page, run.seconds, tuple(run.errors()), media,
                             sum(not b.ignore_rerun for b in buttons)))
    finally:
        s.close()


def upload(url: str, data: bytes, out: list, start: threading.Barrier | None = None) -> None:
    """One upload session: the upload page, then the checkpoint (at `start`, with the other uploads)."""
    s = Session(url, timeout=300)
    try:
        uploader = s.run("upload").of("file_uploader")[0].id
        if start is not None:
            start.wait()
        t = time.perf_counter()
        s.upload(uploader, [(f"load-{len(data)}-{time.time_ns()}.safetensors", data)])
        run = s.wait()
        texts = run.texts()
        out.append(Upload(time.perf_counter() - t, WAITING in texts, VERDICT in texts, tuple(run.errors()),
                          sum(not b.ignore_rerun for b in run.of("download_button"))))
    finally:
        s.close()


@dataclass(frozen=True)
class Round:
    visits: tuple[Visit, ...]
    uploads: tuple[Upload, ...]
    seconds: float
    rss_mb: float  # the server's RSS once the round's sessions are done


def load_round(server: Server, sessions: int, pages_each: int, uploads: list[bytes], offset: int = 0) -> Round:
    """`sessions` browsing sessions (page lists rotated so all pages are covered) and the uploads, at once."""
    visits: list[Visit] = []
    ups: list[Upload] = []
    start = threading.Barrier(len(uploads)) if uploads else None
    threads = [threading.Thread(target=browse, args=(server.url, [PAGES[(offset + i * pages_each + k) % len(PAGES)]
                                                                  for k in range(pages_each)], visits))
               for i in range(sessions)]
    threads += [threading.Thread(target=upload, args=(server.url, d, ups, start)) for d in uploads]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return Round(tuple(visits), tuple(ups), time.perf_counter() - t, server.rss_mb())


@dataclass(frozen=True)
class Measurement:
    solo_upload: float  # s, one upload alone on a warm server
    solo_pages: tuple[Visit, ...]  # one session alone, every page
    rounds: tuple[Round, ...]
    rss_start: float  # MB: the server before any session
    rss_closed: float  # MB: after every session closed and `idle` seconds passed
    held_closed: dict  # MB Streamlit still holds then, by kind (Server.held_mb)

    def loaded_uploads(self) -> list[Upload]:
        return [u for r in self.rounds for u in r.uploads]

    def ratio(self) -> float:
        """The slowest loaded upload over the solo one."""
        return max(u.seconds for u in self.loaded_uploads()) / self.solo_upload


def measure(server: Server, sessions: int, pages_each: int, rounds: int, upload_rounds: int,
            idle: float = 8.0, solo_pages: bool = True) -> Measurement:
    """Warm-up upload, solo upload and (`solo_pages`) one session's pages alone, then the rounds (the first
    `upload_rounds` of them with two uploads at once), then the sessions closed and `idle` seconds waited."""
    rss0 = server.rss_mb()
    warm: list[Upload] = []
    upload(server.url, checkpoint(0), warm)  # starts the worker pool, reads the zoo: not part of any latency
    alone: list[Visit] = []
    if solo_pages:
        browse(server.url, PAGES, alone)
    solo: list[Upload] = []
    upload(server.url, checkpoint(1), solo)
    out = [load_round(server, sessions, pages_each, [checkpoint(10 * r + 2), checkpoint(10 * r + 3)]
                      if r < upload_rounds else [], offset=r) for r in range(rounds)]
    time.sleep(idle)
    return Measurement(solo[0].seconds, tuple(alone), tuple(out), rss0, server.rss_mb(), server.held_mb())


def report(m: Measurement) -> str:
    solo_page = statistics.median(v.seconds for v in m.solo_pages) if m.solo_pages else float("nan")
    lines = [f"server RSS at start {m.rss_start:.0f} MB; solo upload {m.solo_upload:.1f} s; "
             f"solo page median {solo_page:.2f} s",
             "round  seconds  RSS (MB)  uploads (s, ×solo, queued)              page median (s, ×solo)  "
             "errors  media≠200"]
    for i, r in enumerate(m.rounds):
        ups = ", ".join(f"{u.seconds:.1f} ({u.seconds / m.solo_upload:.1f}×{', q' if u.queued else ''})"
                        for u in r.uploads) or "—"
        med = statistics.median(v.seconds for v in r.visits)
        errs = sum(len(v.errors) for v in r.visits) + sum(len(u.errors) for u in r.uploads)
        bad = sum(s != 200 for v in r.visits for _, s in v.media)
        lines.append(f"{i:5d}  {r.seconds:7.0f}  {r.rss_mb:8.0f}  {ups:40s}  {med:6.2f} ({med / solo_page:4.1f}×)"
                     f"          {errs:6d}  {bad:9d}")
    held = ", ".join(f"{k} {v:.1f}" for k, v in sorted(m.held_closed.items()))
    lines.append(f"after the sessions closed: RSS {m.rss_closed:.0f} MB (Streamlit holds, MB: {held}); "
                 f"slowest loaded upload {m.ratio():.1f}× solo")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="6 sessions × 3 pages, 2 rounds (the load test's size)")
    ap.add_argument("--baseline", action="store_true",
                    help="as before issue 14 where it is configuration: no malloc arena cap, both uploads analysed "
                         "at once (PHASEZOO_UPLOAD_SLOTS=2), no janitor")
    args = ap.parse_args()
    import torch
    torch.set_num_threads(1)  # the checkpoints' noise only; the server is another process
    sessions, pages_each, rounds, upload_rounds = (6, 3, 2, 1) if args.quick else (8, len(PAGES), 3, 3)
    env = {**ENV, "MALLOC_ARENA_MAX": "0", "PHASEZOO_UPLOAD_SLOTS": "2", "PHASEZOO_JANITOR_S": "1e9"} \
        if args.baseline else ENV  # an arena_max of 0 is glibc's default: 8 arenas per core
    with dashboard_server(env=env, options=OPTIONS) as server:
        m = measure(server, sessions, pages_each, rounds, upload_rounds)
    print(f"{sessions} browsing sessions × {pages_each} pages, {rounds} rounds ({upload_rounds} with 2 uploads "
          f"at once), {os.cpu_count()} cores{', BASELINE' if args.baseline else ''}")
    print(report(m))
    for r in m.rounds:
        for v in r.visits:
            for e in v.errors:
                print(f"  error on {v.page}: {e[:200]}")


if __name__ == "__main__":
    main()
