"""A bounded, server-wide admission queue for the uploads' analysis: at most `slots` analyses run at once
(each keeps the worker pool and a core busy), the others wait their turn in arrival order and are told their
place; past `depth` waiting uploads a new one is refused at once instead of slowing everyone.

Why: on a 2-core server two concurrent analyses plus browsing sessions take 9–14× a solo upload each
(issue 14): they share the same cores and worker pool, so running them together only makes every one of
them late. In a FIFO with one slot the k-th upload in line waits for k−1 analyses and then runs at solo
speed, and the browsing sessions keep the other core.

Configuration (environment of the server process):
- PHASEZOO_UPLOAD_SLOTS: analyses at once (default 1);
- PHASEZOO_UPLOAD_QUEUE: uploads allowed to wait (default 8); one more is refused with `QueueFull`;
- PHASEZOO_JANITOR_S: how often ended sessions' uploads and downloads are released (default 30 s).
No Streamlit here: the page passes an `on_wait` callback that draws the place in line.
"""
from __future__ import annotations

import itertools
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass


class QueueFull(RuntimeError):
    """The queue already holds its `depth` waiting uploads."""


@dataclass(frozen=True)
class Place:
    """Where a waiting upload stands: `running` analyses in progress, `ahead` uploads waiting before it."""

    running: int
    ahead: int
    waited: float  # seconds since it joined the queue

    def message(self) -> str:
        """What the user reads while waiting, e.g. "Waiting for 1 upload ahead (12 s so far)…"."""
        n = self.running + self.ahead
        return (f"Waiting for {n} upload{'s' if n != 1 else ''} ahead ({self.running} being analysed, "
                f"{self.ahead} waiting before yours; {self.waited:.0f} s so far)…")


@dataclass(frozen=True)
class Admission:
    """The queue's counters after a wait: how long this upload waited (s) and its place when it joined."""

    waited: float
    ahead_at_start: int


class UploadQueue:
    """FIFO admission with `slots` concurrent holders and at most `depth` waiters (thread-safe).

    Streamlit runs each session's script in its own thread, so one instance shared by the server
    (st.cache_resource) orders all sessions' uploads. A waiter wakes at least every `poll` seconds and calls
    `on_wait`: a session whose user left is stopped there by Streamlit (its next st call raises), and the
    `finally` gives its place up, so an abandoned upload never holds the line.
    """

    def __init__(self, slots: int = 1, depth: int = 8):
        if slots < 1 or depth < 0:
            raise ValueError(f"upload queue needs slots ≥ 1 and depth ≥ 0, got slots={slots}, depth={depth}")
        self.slots, self.depth = slots, depth
        self._cond = threading.Condition()
        self._waiting: deque[int] = deque()  # tickets in arrival order
        self._running: set[int] = set()
        self._tickets = itertools.count()
        self.peak_running = 0  # the most analyses ever admitted at once (tests and benches read it)

    def snapshot(self) -> tuple[int, int]:
        """(running, waiting) now."""
        with self._cond:
            return len(self._running), len(self._waiting)

    @contextmanager
    def admitted(self, on_wait: Callable[[Place], None] = lambda place: None,
                 poll: float = 0.5) -> Iterator[Admission]:
        """Hold a slot for the body of the `with`; wait in line first if all are taken. Raises QueueFull
        (before waiting) when `depth` uploads already wait."""
        t0 = time.monotonic()
        with self._cond:
            ticket = next(self._tickets)
            if len(self._running) >= self.slots or self._waiting:
                if len(self._waiting) >= self.depth:
                    raise QueueFull(f"the upload queue is full ({len(self._waiting)} waiting, "
                                    f"{len(self._running)} running): try again in a few minutes")
            self._waiting.append(ticket)
            ahead0 = len(self._waiting) - 1
        try:
            while True:
                with self._cond:
                    if self._waiting[0] == ticket and len(self._running) < self.slots:
                        self._waiting.popleft()
                        self._running.add(ticket)
                        self.peak_running = max(self.peak_running, len(self._running))
                        self._cond.notify_all()  # the next in line may fit in another free slot
                        break
                    place = Place(len(self._running), self._waiting.index(ticket), time.monotonic() - t0)
                on_wait(place)  # outside the lock: it draws on the page and may raise (session stopped)
                with self._cond:
                    if not (self._waiting[0] == ticket and len(self._running) < self.slots):
                        self._cond.wait(poll)
        except BaseException:
            with self._cond:
                if ticket in self._waiting:
                    self._waiting.remove(ticket)
                self._cond.notify_all()
            raise
        try:
            yield Admission(time.monotonic() - t0, ahead0)
        finally:
            with self._cond:
                self._running.discard(ticket)
                idle = not self._running
                self._cond.notify_all()
            if idle:
                trim_heap()


def trim_heap() -> None:
    """Give the C heap's free pages back to the OS (glibc malloc_trim, all arenas) once no analysis runs:
    an analysis frees its tensors and tables in the server process, and glibc would keep those pages mapped
    (the RSS never came down after uploads, issue 14). A no-op off glibc."""
    try:
        import ctypes
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def from_env() -> UploadQueue:
    """The queue as the environment configures it (see the module docstring)."""
    def number(name: str, default: int) -> int:
        raw = os.environ.get(name, str(default))
        try:
            return int(raw)
        except ValueError:
            raise ValueError(f"{name} must be an integer, got {raw!r}") from None
    return UploadQueue(number("PHASEZOO_UPLOAD_SLOTS", 1), number("PHASEZOO_UPLOAD_QUEUE", 8))


_SHARED: UploadQueue | None = None
_SHARED_LOCK = threading.Lock()


def shared() -> UploadQueue:
    """The server's one queue (created on first use from the environment), and its janitor started. Not a
    st.cache_resource: the page clears its worker pool after a failure, and a new queue then would let a
    second analysis run beside one that still holds the old queue's slot."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = from_env()
            threading.Thread(target=_janitor, name="phasezoo-janitor", daemon=True).start()
        return _SHARED


def _janitor() -> None:
    """Every PHASEZOO_JANITOR_S seconds (default 30): release ended sessions, trim the heap when idle."""
    every = float(os.environ.get("PHASEZOO_JANITOR_S", "30"))
    while True:
        time.sleep(every)
        released = release_ended_sessions()
        if released or _SHARED is None or _SHARED.snapshot()[0] == 0:
            trim_heap()


def release_ended_sessions() -> int:
    """Free what Streamlit still holds for sessions that have ended: their uploaded files and their claim on
    /media files (download buttons). Returns how many sessions it released.

    Why: a closed tab's session is kept `server.disconnectedSessionTTL` seconds for a reconnect, then
    dropped from Streamlit's session storage without being shut down (1.67: the storage's TTL eviction calls
    nothing), so the uploaded bytes (up to maxUploadSize per file) and the session's download files stayed
    in memory for the server's lifetime (issue 14). Reads Runtime internals of the pinned Streamlit; on any
    other layout it releases nothing."""
    try:
        from streamlit.runtime import Runtime

        if not Runtime.exists():
            return 0
        rt = Runtime.instance()
        media, uploads = rt.media_file_mgr, rt.uploaded_file_mgr
        live = {info.session.id for info in rt._session_mgr.list_sessions()}  # active + kept for reconnect
        with media._lock:
            held = set(media._files_by_session_and_coord)
        with uploads._lock:
            held |= set(uploads.file_storage)
    except (ImportError, AttributeError, RuntimeError):  # another layout, or a dict resized mid-copy
        return 0
    ended = held - live - {"dontcare"}
    for session_id in ended:
        uploads.remove_session_files(session_id)
        media.clear_session_refs(session_id)
    if ended:
        media.remove_orphaned_files()
    return len(ended)
