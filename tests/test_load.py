"""The dashboard server under load (issue 14), and the upload queue that keeps it usable.

1. dashboard.admission.UploadQueue on its own: FIFO, bounded, a waiter that leaves gives its place up.
2. A real `streamlit run` server on loopback driven by browserless sessions (dashboard.server.Session:
   Streamlit's own websocket protocol, so 6 sessions fit on 2 cores; a Chromium each would not): a warm-up
   upload, a solo upload and one session's pages, then 6 browsing sessions × 3 pages (a download clicked on
   each) with 2 uploads sent at once, then a browse-only round, then every session closed.
   Asserts: no error on any page or upload; every /media download answers 200 and no download button
   reruns the script on click (the 404's mechanism, dashboard.widgets.downloads); the later of the two
   uploads was queued behind the other, and both drew their verdict; the closed sessions' uploaded bytes
   released (dashboard.admission.release_ended_sessions); the server's RSS within RSS_BUDGET_MB after the
   rounds and after the sessions closed, and the browse-only round adding at most RSS_GROWTH_MB (a budget
   against regressions: on this size the unfixed server also stays under it). Latencies (solo against loaded, the ratio) are printed, not asserted: the machine is
   shared (bench/bench_load.py measures them; docs/serving.md has the numbers). About 2 minutes on 2 cores.
"""
from __future__ import annotations

import threading

import pytest

from dashboard.admission import QueueFull, UploadQueue

# MB. The server alone is ~70 MB; the pages' imports (torch, polars, plotly, sklearn) and the zoos' tables
# bring one session to ~650 MB, the analysis ~100 MB more. 2.5 GB was issue 14's three rounds.
RSS_BUDGET_MB = 1300
RSS_GROWTH_MB = 150  # a second round of the same sessions and pages: allocator slack, no per-session data


# ----------------------------------------------------------------------------- the queue alone
def test_queue_is_fifo_and_admits_one_at_a_time():
    q = UploadQueue(slots=1, depth=4)
    order, inside, peak = [], [0], [0]
    lock = threading.Lock()
    places: dict[int, list] = {}
    hold = threading.Event()

    def job(i: int, joined: threading.Event) -> None:
        places[i] = []

        def seen(place):
            places[i].append(place)
            joined.set()
        with q.admitted(on_wait=seen, poll=0.01):
            joined.set()
            with lock:
                inside[0] += 1
                peak[0] = max(peak[0], inside[0])
                order.append(i)
            if i == 0:
                hold.wait(10)
            with lock:
                inside[0] -= 1

    threads = []
    for i in range(4):  # each joins after the previous one is in line: arrival order is 0, 1, 2, 3
        joined = threading.Event()
        threads.append(threading.Thread(target=job, args=(i, joined)))
        threads[-1].start()
        assert joined.wait(10)
    assert q.snapshot() == (1, 3)
    hold.set()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2, 3] and peak[0] == 1 and q.peak_running == 1
    assert places[1][0].running == 1 and places[1][0].ahead == 0
    assert places[3][0].ahead == 2 and places[3][0].message().startswith("Waiting for 3 uploads ahead")
    assert places[1][0].message().startswith("Waiting for 1 upload ahead")
    assert q.snapshot() == (0, 0)


def test_queue_refuses_past_its_depth_and_a_leaver_gives_up_its_place():
    q = UploadQueue(slots=1, depth=1)
    running, release = threading.Event(), threading.Event()

    def first() -> None:
        with q.admitted():
            running.set()
            release.wait(10)

    t = threading.Thread(target=first)
    t.start()
    assert running.wait(10)

    class Left(Exception):  # what Streamlit raises in a stopped session's next st call
        pass

    def leave(place):
        raise Left

    with pytest.raises(Left):  # the waiter's session stops: its place is freed
        with q.admitted(on_wait=leave):
            pass
    assert q.snapshot() == (1, 0)
    waiting = threading.Event()

    def second_in_line() -> None:
        with q.admitted(on_wait=lambda place: waiting.set(), poll=0.01):
            pass

    second = threading.Thread(target=second_in_line)
    second.start()
    assert waiting.wait(10)
    with pytest.raises(QueueFull, match="upload queue is full"):
        with q.admitted():
            pass
    release.set()
    t.join(10)
    second.join(10)
    with pytest.raises(ValueError, match="slots"):
        UploadQueue(slots=0)


# ----------------------------------------------------------------------------- a real server under load
@pytest.mark.slow
def test_server_under_load():
    from bench.bench_load import ENV, OPTIONS, PAGES, measure, report
    from dashboard.server import dashboard_server

    with dashboard_server(env=ENV, options=OPTIONS) as server:
        m = measure(server, sessions=6, pages_each=3, rounds=2, upload_rounds=1, solo_pages=False)
    print(report(m))
    visits = [*m.solo_pages, *(v for r in m.rounds for v in r.visits)]
    assert {v.page for v in visits} == set(PAGES)
    errors = [f"{v.page}: {e[:300]}" for v in visits for e in v.errors]
    errors += [e for r in m.rounds for u in r.uploads for e in u.errors]
    assert not errors, f"errors on the pages: {errors}"
    media = [(url, status) for v in visits for url, status in v.media]
    assert media and all(status == 200 for _, status in media), f"downloads that failed: {media}"
    ups = m.loaded_uploads()
    assert not [v.page for v in visits if v.rerun_buttons] and not any(u.rerun_buttons for u in ups), \
        "a download button reruns the script on click"
    assert len(ups) == 2 and all(u.verdict for u in ups), ups
    assert sum(u.queued for u in ups) == 1, f"the two uploads were not queued one behind the other: {ups}"
    rss = [r.rss_mb for r in m.rounds]
    assert max(rss) <= RSS_BUDGET_MB and m.rss_closed <= RSS_BUDGET_MB, report(m)
    assert rss[1] - rss[0] <= RSS_GROWTH_MB, report(m)
    # the closed sessions' uploads are released (Streamlit kept them for the server's lifetime)
    assert m.held_closed.get("UploadedFileManager", 0.0) == 0.0, m.held_closed
