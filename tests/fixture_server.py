"""A tiny NED look-alike on 127.0.0.1 that serves ``tests/data/ned`` and records every request.

Routes (the same paths as NED, so the code under test only needs ``ned_base_url``):

- ``/cgi-bin/OBJatt?...&page=N&M=..``: ``objatt/<M codes joined by '-'>_p<N>.html``; the fixed
  parameters NED needs are checked, a request without them gets 400.
- ``/cgi-bin/imgdata?objname=NAME``: ``imgdata/<NAME with non-alphanumerics as '_'>.html``.
- ``/img/...`` and any other ``....fits.gz``: ``img/<last path segment with ':' as '_'>`` (colons do not
  belong in a checkout).

Anything else is a 404, unless the test put a body there with ``server.serve(path, body)`` (a
generated file such as a decompression bomb; ``send_length=False`` leaves out Content-Length, so
the client must count). Faults are queued per path by the test: ``server.fail(path, "500")``
answers 500 once, ``"stall"`` waits ``stall_seconds`` before answering (the client should have
timed out by then). The server is threaded so a stalled handler never blocks the next request.

Import the ``ned_server`` fixture into a test module with ``from tests.fixture_server import ned_server``.
"""

from __future__ import annotations

import re
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

DATA = Path(__file__).parent / "data" / "ned"
OBJATT_FIXED = {"delimeter": "bar", "NO_LINKS": "1", "crosid": "objname", "position": "z", "gadata": "morphol"}


@dataclass
class Hit:
    """One request as the server saw it (times from ``time.monotonic``)."""

    path: str
    query: str
    start: float
    end: float
    status: int
    user_agent: str
    host: str
    stalled: bool


class FixtureServer:
    """Serve the NED fixtures on an ephemeral port of 127.0.0.1."""

    def __init__(self, root: Path = DATA, *, stall_seconds: float = 2.0) -> None:
        self.root = root
        self.stall_seconds = stall_seconds
        self.hits: list[Hit] = []
        self._faults: dict[str, list[str]] = defaultdict(list)
        self._served: dict[str, tuple[bytes, bool]] = {}
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}/"

    def start(self) -> FixtureServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def fail(self, path: str, *kinds: str) -> None:
        """Queue faults (``"500"`` or ``"stall"``) for the next requests to ``path``."""
        with self._lock:
            self._faults[path].extend(kinds)

    def serve(self, path: str, body: bytes, *, send_length: bool = True) -> None:
        """Answer ``path`` with ``body`` (as a binary file) from now on."""
        with self._lock:
            self._served[path] = (body, send_length)

    def reset(self) -> None:
        """Forget the request log and pending faults."""
        with self._lock:
            self.hits.clear()
            self._faults.clear()

    def paths(self, prefix: str = "") -> list[str]:
        """Path and query of every logged request starting with ``prefix``, in arrival order."""
        with self._lock:
            return [h.path + ("?" + h.query if h.query else "") for h in self.hits if h.path.startswith(prefix)]

    def _next_fault(self, path: str) -> str | None:
        with self._lock:
            queue = self._faults.get(path)
            return queue.pop(0) if queue else None

    def _record(self, hit: Hit) -> None:
        with self._lock:
            self.hits.append(hit)

    def _resolve(self, path: str, query: dict[str, list[str]]) -> Path | int:
        if path == "/cgi-bin/OBJatt":
            for key, value in OBJATT_FIXED.items():
                if query.get(key) != [value]:
                    return 400
            if len(query.get("page", [])) != 1 or not query.get("M"):
                return 400
            return self.root / "objatt" / f"{'-'.join(query['M'])}_p{query['page'][0]}.html"
        if path == "/cgi-bin/imgdata":
            names = query.get("objname", [])
            if len(names) != 1:
                return 400
            return self.root / "imgdata" / (re.sub(r"[^A-Za-z0-9]", "_", names[0]) + ".html")
        if path.startswith("/img/") or path.endswith(".fits.gz"):  # astroquery's real listing links /dss1B2/...
            return self.root / "img" / path.rsplit("/", 1)[-1].replace(":", "_")
        return 404

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - stdlib name
                return

            def do_GET(self) -> None:  # noqa: N802 - stdlib name
                start = time.monotonic()
                parts = urlsplit(self.path)
                fault = server._next_fault(parts.path)
                status, body, ctype = 200, b"", "text/html; charset=utf-8"
                send_length = True
                if fault == "stall":
                    time.sleep(server.stall_seconds)
                if fault == "500":
                    status, body = 500, b"<html><body>Internal Server Error</body></html>"
                elif parts.path in server._served:
                    (body, send_length), ctype = server._served[parts.path], "application/octet-stream"
                else:
                    target = server._resolve(parts.path, parse_qs(parts.query, keep_blank_values=True))
                    if isinstance(target, int):
                        status, body = target, f"<html><body>HTTP {target}</body></html>".encode()
                    elif not target.is_file():
                        status, body = 404, b"<html><body>Not Found</body></html>"
                    else:
                        body = target.read_bytes()
                        if target.name.endswith(".gz"):
                            ctype = "application/octet-stream"
                # Logged before the answer is written, so the client cannot see the answer (and
                # start its next request) before this request's end as recorded here.
                server._record(
                    Hit(
                        path=parts.path,
                        query=parts.query,
                        start=start,
                        end=time.monotonic(),
                        status=status,
                        user_agent=self.headers.get("User-Agent", ""),
                        host=self.headers.get("Host", ""),
                        stalled=fault == "stall",
                    )
                )
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", ctype)
                    if send_length:
                        self.send_header("Content-Length", str(len(body)))
                    else:  # the body ends when the connection does
                        self.send_header("Connection", "close")
                        self.close_connection = True
                    self.end_headers()
                    self.wfile.write(body)
                    self.wfile.flush()
                except (BrokenPipeError, ConnectionResetError):
                    pass

        return Handler


def assert_polite(hits: list[Hit], interval: float) -> None:
    """No two answered requests overlapped, and their starts are at least ``interval`` apart."""
    answered = sorted((h for h in hits if not h.stalled), key=lambda h: h.start)
    for before, after in zip(answered, answered[1:]):
        assert after.start >= before.end, f"{after.path} started before {before.path} ended"
        assert after.start - before.start >= interval, (
            f"{before.path} and {after.path} started {after.start - before.start:.3f} s apart; "
            f"the interval is {interval} s"
        )


@pytest.fixture
def ned_server() -> FixtureServer:
    """A fresh fixture server for one test."""
    server = FixtureServer().start()
    yield server
    server.stop()
