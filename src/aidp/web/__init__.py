"""The web dashboard of ``aidp serve``: server-rendered pages beside the REST API.

:func:`mount` adds it to the API's FastAPI app (``[serve] dashboard = false`` leaves it out):
the pages of :data:`PAGES` (each a module ``aidp.web.pages.NAME`` exporting ``router``; a
module that does not exist yet is skipped), the static files (:mod:`aidp.web.static_files`),
error pages in HTML for dashboard paths (the API keeps problem+json), and on every dashboard
response a strict Content-Security-Policy (scripts only from ``/static``, no inline script or
style, no framing) with ``X-Content-Type-Options`` and ``Referrer-Policy``.

Like the REST API, the dashboard is an interface (layer 5): it reads and acts only through
:mod:`aidp.app`, never the store. Sign-in, sessions and CSRF are in :mod:`aidp.web.session`,
templates and filters in :mod:`aidp.web.render`.
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Awaitable, Callable, MutableMapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from aidp.app.context import AppContext

__all__ = ["CSP", "PAGES", "mount"]

#: Page modules under aidp.web.pages, included in this order when they exist.
PAGES = ("auth", "runs", "run", "step", "tools", "specs", "settings")

#: The Content-Security-Policy of every dashboard response.
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "font-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; "
       "form-action 'self'; frame-ancestors 'none'")

_log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

_HEADERS = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
]


def is_dashboard_path(path: str) -> bool:
    """Whether ``path`` is the dashboard's (everything but the REST API under /api/ and its
    Prometheus scrape path /metrics, which answer problem+json)."""
    return not (path == "/api" or path.startswith("/api/") or path == "/metrics")


class SecurityHeaders:
    """Adds :data:`CSP` and its companions to every response of a dashboard path."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not is_dashboard_path(scope.get("path", "")):
            await self.app(scope, receive, send)
            return

        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() not in {h for h, _ in _HEADERS}]
                message["headers"] = headers + _HEADERS
            await send(message)

        await self.app(scope, receive, with_headers)


def mount(app: FastAPI, ctx: AppContext) -> None:
    """Add the dashboard to ``app`` (the API of ``ctx``'s repository): pages, static files,
    HTML error pages for dashboard paths, security headers. Call it after the API's problem
    handlers are installed."""
    from aidp.web.errors import install_error_pages
    from aidp.web.session import load_secret
    from aidp.web.static_files import install_static

    app.state.web_secret = load_secret(ctx.repo / ".aidp")
    for name in PAGES:
        try:
            module = importlib.import_module(f"aidp.web.pages.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"aidp.web.pages.{name}":
                raise
            continue
        app.include_router(module.router, include_in_schema=False)
    install_static(app)
    install_error_pages(app)
    app.add_middleware(SecurityHeaders)
