"""Serve the dashboard with its libraries already imported: ``python -m ui.serve [streamlit options]``.

``streamlit run app.py`` imports a page's modules only when the first visitor arrives, so on a
fresh server the first page paid ~1.5 s (of ~3.9 s) importing pandas, polars, SciPy, Astropy,
Plotly and ``core``. Importing them here, before the server listens, moves that cost to start-up
(``make run`` spends longer rendering the sample anyway). Only libraries and ``core`` are warmed:
the ``ui`` modules define Streamlit caches, which must be created inside the running server.

Then the warmed objects are frozen out of the garbage collector (:func:`gc.freeze`): Streamlit runs
a full collection after every script run, and over the ~230,000 objects of these libraries and
Streamlit's own it took ~0.1 s, a third of a slider step on the Preprocessing page, holding the
interpreter while the step's last message waited to be sent. Frozen objects are never collected,
which costs nothing here: they are modules and their tables, alive for the whole server anyway.

The server is also wrapped in :class:`HostGuard`, which answers only to the host names it was
started for. Streamlit checks the Origin of its WebSocket, but a page on ``attacker.example`` whose
DNS name is re-pointed at 127.0.0.1 (DNS rebinding) is same-origin with itself: without a Host
check it could read the dashboard and drive its WebSocket (import any local folder, start or stop
jobs). Every answer also forbids framing (``X-Frame-Options: DENY``, CSP ``frame-ancestors
'none'``), so no other site can overlay Stop, Build or Import with its own buttons.
"""

from __future__ import annotations

import gc
import importlib
import sys
from collections.abc import Awaitable, Callable, MutableMapping
from pathlib import Path
from typing import Any

APP = Path(__file__).resolve().parent.parent / "app.py"

WARM_MODULES: tuple[str, ...] = (
    "numpy", "pandas", "polars", "plotly.graph_objects",
    "core.prepare.builder", "core.acquire.catalogue", "core.acquire.counts", "core.prepare.dataset", "core.learn.device", "core.images", "core.io",
    "core.jobs", "core.acquire.labels", "core.learn.metrics", "core.prepare.preprocessing", "core.progress", "core.prepare.provenance",
    "core.prepare.quality", "core.learn.report", "core.runs", "core.acquire.sample", "core.spec", "core.learn.protocol",
)
"""What the pages import beside Streamlit and ``ui`` (``tests/test_serve.py`` checks the list is complete)."""


LOOPBACK_HOSTS: frozenset[str] = frozenset({"127.0.0.1", "localhost", "::1"})
"""Host names always served: this machine's own."""

FRAME_HEADERS: tuple[tuple[bytes, bytes], ...] = (
    (b"x-frame-options", b"DENY"),
    (b"content-security-policy", b"frame-ancestors 'none'"),
)
"""Sent with every answer: no site may show the dashboard in a frame (clickjacking)."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


def host_name(host_header: str) -> str:
    """The host name of a ``Host`` header, lower-case, without port or IPv6 brackets."""
    host = host_header.strip().lower()
    if host.startswith("["):  # [::1]:8501
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def allowed_hosts() -> frozenset[str]:
    """:data:`LOOPBACK_HOSTS`, plus the configured ``server.address`` and ``browser.serverAddress``
    (the name users type when the dashboard is shared on a network), read from Streamlit's config."""
    from streamlit import config

    names = set(LOOPBACK_HOSTS)
    for option in ("server.address", "browser.serverAddress"):
        value = config.get_option(option)
        if value:
            names.add(host_name(str(value)))
    return frozenset(names)


class HostGuard:
    """ASGI middleware in front of Streamlit: refuse requests and WebSocket handshakes whose
    ``Host`` header names no host in ``allowed`` (403, before Streamlit sees them), and add
    :data:`FRAME_HEADERS` to every answer."""

    def __init__(self, app: ASGIApp, *, allowed: frozenset[str]) -> None:
        self.app = app
        self.allowed = allowed

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return

        async def framed_send(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.http.response.start"):
                present = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = [*message.get("headers", []),
                                      *(h for h in FRAME_HEADERS if h[0] not in present)]
            await send(message)

        hosts = [value.decode("latin-1") for name, value in scope.get("headers", []) if name.lower() == b"host"]
        if len(hosts) == 1 and host_name(hosts[0]) in self.allowed:
            await self.app(scope, receive, framed_send)
            return
        body = (b"This dashboard answers only to the host names it was started for "
                b"(127.0.0.1, localhost, its --server.address and --browser.serverAddress).\n")
        start = {"status": 403, "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                            (b"content-length", str(len(body)).encode())]}
        if scope["type"] == "http":
            await framed_send({"type": "http.response.start", **start})
            await send({"type": "http.response.body", "body": body})
        else:
            await framed_send({"type": "websocket.http.response.start", **start})
            await send({"type": "websocket.http.response.body", "body": body})


def guard_server() -> None:
    """Make Streamlit's server wrap its app in :class:`HostGuard` (allowed hosts read when it starts)."""
    from streamlit.web.server.starlette import starlette_server

    create = starlette_server.create_starlette_app
    if getattr(create, "host_guarded", False):
        return

    def create_guarded_app(runtime: Any) -> ASGIApp:
        return HostGuard(create(runtime), allowed=allowed_hosts())

    create_guarded_app.host_guarded = True  # type: ignore[attr-defined]
    starlette_server.create_starlette_app = create_guarded_app


def warm_imports() -> None:
    """Import :data:`WARM_MODULES` (the slow part of a first page visit) and load the charts' template."""
    for name in WARM_MODULES:
        importlib.import_module(name)
    import plotly.io as pio

    from ui.charts import TEMPLATE  # plain Plotly, no Streamlit cache

    pio.templates[TEMPLATE]  # loads the module of every trace type


def prepare() -> None:
    """Warm the imports (Streamlit's server too), guard it (:func:`guard_server`), then freeze every
    object so far out of the collector."""
    warm_imports()
    importlib.import_module("streamlit.web.cli")
    guard_server()
    gc.collect()
    gc.freeze()


def main(argv: list[str] | None = None) -> None:
    """:func:`prepare`, then ``streamlit run app.py`` with ``argv`` (default: this command's options)."""
    prepare()
    from streamlit.web import cli

    cli.main(["run", str(APP), *(sys.argv[1:] if argv is None else argv)], prog_name="streamlit")


if __name__ == "__main__":
    main()
