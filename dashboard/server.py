"""Start the dashboard as a real `streamlit run` server on a free loopback port (tests, benches, screenshots),
and drive it without a browser: `Session` speaks Streamlit's websocket protocol (protobuf BackMsg/ForwardMsg)
as the frontend does — page runs, download clicks, file uploads — so a load test can open many sessions on
two cores (a headless Chromium per session would measure the browsers, not the server)."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Debian's Chromium, headless, with the network chatter this machine would refuse switched off
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


# Two glibc malloc arenas instead of 8 per core: Streamlit runs every script run in a new thread, each thread
# gets an arena, and each arena keeps the memory its runs freed: ~100 MB more per round of sessions until
# 16 arenas are full (docs/serving.md). Deployments set the same variable (Procfile).
SERVER_ENV = {"MALLOC_ARENA_MAX": "2"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Server:
    url: str  # http://127.0.0.1:<port>
    pid: int  # the `streamlit run` process: its /proc/<pid>/status gives the server's memory

    def rss_mb(self) -> float:
        """Resident set size of the server process (MB, from /proc/<pid>/status VmRSS, in kB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
        raise RuntimeError(f"no VmRSS in /proc/{self.pid}/status")

    def held_mb(self) -> dict[str, float]:
        """What Streamlit itself holds (MB) by kind — st_cache_data, st_cache_resource, media files,
        uploaded files, session state — from its /_stcore/metrics endpoint."""
        import re
        text = urllib.request.urlopen(f"{self.url}/_stcore/metrics", timeout=30).read().decode()
        held: dict[str, float] = {}
        for m in re.finditer(r'^cache_memory_bytes\{([^}]*)\}\s+(\S+)$', text, re.MULTILINE):
            kind = re.search(r'cache_type="([^"]*)"', m.group(1))
            name = kind.group(1) if kind else "other"
            held[name] = held.get(name, 0.0) + float(m.group(2)) / 2**20
        return held


@contextmanager
def dashboard_server(env: Mapping[str, str] | None = None, timeout: float = 90.0,
                     options: Sequence[str] = (), app: Path | None = None) -> Iterator[Server]:
    """Yield the running server once `/_stcore/health` answers "ok"; stop it on exit. `options`: more
    `streamlit run` flags (e.g. "--server.disconnectedSessionTTL", "5"); `app`: another script to serve (a
    bench's baseline page), run from the repository root with its configuration."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "streamlit", "run", str(app or ROOT / "dashboard" / "app.py"),
                             "--server.headless", "true", "--server.port", str(port), "--server.address", "127.0.0.1",
                             *options],
                            cwd=ROOT, env={**os.environ, **SERVER_ENV, **(env or {})},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.time() + timeout
        while True:
            try:
                if urllib.request.urlopen(f"{url}/_stcore/health", timeout=2).read() == b"ok":
                    break
            except OSError:
                if time.time() > deadline or proc.poll() is not None:
                    raise RuntimeError(f"the dashboard server did not become healthy within {timeout:.0f} s") from None
                time.sleep(0.25)
        yield Server(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:  # a server busy with a run may not stop on SIGTERM
            proc.kill()
            proc.wait(timeout=30)


@contextmanager
def streamlit_server(env: Mapping[str, str] | None = None, timeout: float = 90.0,
                     app: Path | None = None) -> Iterator[str]:
    """Yield the base URL once `/_stcore/health` answers "ok"; stop the server on exit."""
    with dashboard_server(env, timeout, app=app) as server:
        yield server.url


# ----------------------------------------------------------------------------- a browserless session
@dataclass(frozen=True)
class Run:
    """What one script run sent: its elements (ForwardMsg Element protos, in order), how long it took (s)."""

    page: str
    elements: tuple
    seconds: float
    status: int  # ForwardMsg.ScriptFinishedStatus (0: finished successfully)

    def of(self, kind: str) -> list:
        return [getattr(e, kind) for e in self.elements if e.WhichOneof("type") == kind]

    def errors(self) -> list[str]:
        """Exceptions and st.error boxes: what a user would see as a failure."""
        from streamlit.proto.Alert_pb2 import Alert
        return ([f"{x.type}: {x.message}" for x in self.of("exception")]
                + [a.body for a in self.of("alert") if a.format == Alert.ERROR])

    def texts(self) -> str:
        """Every visible text of the run (markdown, alerts, metric labels, headings, progress), joined."""
        parts = []
        for e in self.elements:
            kind = e.WhichOneof("type")
            el = getattr(e, kind)
            for field in ("body", "label", "text", "message"):
                if hasattr(el, field) and isinstance(getattr(el, field), str):
                    parts.append(getattr(el, field))
        return "\n".join(parts)


class Session:
    """One browser tab's worth of the protocol, synchronous: `run(page)` asks for a script run and returns
    when the server says it finished. Loopback only; no retries (a failure is what a test wants to see)."""

    def __init__(self, url: str, timeout: float = 120.0):
        import requests
        from websockets.sync.client import connect

        self.url, self.timeout = url, timeout
        self.http = requests.Session()
        self.http.get(f"{url}/_stcore/health", timeout=10)  # sets the XSRF cookie uploads must echo
        self._connection = connect(url.replace("http://", "ws://") + "/_stcore/stream", subprotocols=["streamlit"],
                                   max_size=None, open_timeout=timeout,
                                   ping_interval=None)  # a busy server answers pings late; the frontend does not ping
        self.ws = self._connection.__enter__()  # the connection's context, left in close()
        self.session_id: str | None = None
        self.widgets: dict = {}  # widget id -> WidgetState proto to send with every run (as the frontend does)
        self.page = ""
        self.media: list[tuple[str, int]] = []  # (url, HTTP status) of every download fetched

    def close(self) -> None:
        self._connection.__exit__(None, None, None)
        self.http.close()

    def _send(self, **fields) -> None:
        from streamlit.proto.BackMsg_pb2 import BackMsg
        self.ws.send(BackMsg(**fields).SerializeToString())

    def _recv(self, deadline: float):
        from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
        msg = ForwardMsg()
        msg.ParseFromString(self.ws.recv(timeout=max(deadline - time.time(), 0.01)))
        if msg.WhichOneof("type") == "new_session":
            self.session_id = msg.new_session.initialize.session_id
        return msg

    def rerun(self, page: str | None = None, *, trigger: str | None = None):
        """Ask for a run of `page` (its url path; default the current one) with the widgets' states; `trigger`:
        a button's id, pressed for this run only. Returns at once: `wait()` collects the run."""
        from streamlit.proto.ClientState_pb2 import ClientState
        from streamlit.proto.WidgetStates_pb2 import WidgetState, WidgetStates
        self.page = self.page if page is None else page
        states = [s for k, s in self.widgets.items() if k != trigger]
        if trigger:
            states.append(WidgetState(id=trigger, trigger_value=True))
        self._send(rerun_script=ClientState(page_name=self.page, widget_states=WidgetStates(widgets=states)))
        self._started = time.perf_counter()

    def wait(self, on_element=None) -> Run:
        """Collect the run asked for last, until the server reports it finished (one that a newer request
        interrupted counts as finished early). `on_element(element)` sees each element as it arrives."""
        deadline, elements = time.time() + self.timeout, []
        while True:
            msg = self._recv(deadline)
            kind = msg.WhichOneof("type")
            if kind == "delta" and msg.delta.WhichOneof("type") == "new_element":
                elements.append(msg.delta.new_element)
                if on_element:
                    on_element(msg.delta.new_element)
            elif kind == "script_finished":
                return Run(self.page, tuple(elements), time.perf_counter() - self._started, msg.script_finished)

    def run(self, page: str | None = None, **kw) -> Run:
        self.rerun(page, **kw)
        return self.wait()

    def download(self, button) -> int:
        """Click a download button as the frontend does: unless the button says `on_click="ignore"`, ask for a
        rerun with the button triggered, and at once fetch its /media URL (then wait for that rerun).
        Returns the HTTP status of the fetch."""
        rerun = not button.ignore_rerun
        if rerun:
            self.rerun(trigger=button.id)
        status = self.http.get(self.url + button.url, timeout=self.timeout).status_code
        self.media.append((button.url, status))
        if rerun:
            self.wait()
        return status

    def upload(self, uploader_id: str, files: Sequence[tuple[str, bytes]]) -> None:
        """Put files into the file uploader `uploader_id` (HTTP PUT of each, as the frontend does) and ask for
        the run that sees them; `wait()` collects it."""
        from streamlit.proto.Common_pb2 import FileUploaderState, FileURLsRequest, UploadedFileInfo
        from streamlit.proto.WidgetStates_pb2 import WidgetState
        request = uuid.uuid4().hex
        self._send(file_urls_request=FileURLsRequest(request_id=request, file_names=[n for n, _ in files],
                                                     session_id=self.session_id))
        deadline = time.time() + self.timeout
        while (msg := self._recv(deadline)).WhichOneof("type") != "file_urls_response" \
                or msg.file_urls_response.response_id != request:
            pass
        token = self.http.cookies.get("_streamlit_xsrf", "")
        infos = []
        for (name, data), urls in zip(files, msg.file_urls_response.file_urls):
            r = self.http.put(self.url + urls.upload_url, files={"file": (name, data)},
                              headers={"X-Xsrftoken": token}, timeout=self.timeout)
            if r.status_code >= 400:
                raise RuntimeError(f"upload of {name} answered HTTP {r.status_code}: {r.text[:200]}")
            infos.append(UploadedFileInfo(name=name, size=len(data), file_id=urls.file_id, file_urls=urls))
        self.widgets[uploader_id] = WidgetState(
            id=uploader_id, file_uploader_state_value=FileUploaderState(uploaded_file_info=infos))
        self.rerun()
