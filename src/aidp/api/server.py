"""The FastAPI application of ``aidp serve``: routers under ``/api/v1`` (and ``/metrics`` for
Prometheus), problem+json errors, the Host allow-list, the request size limit and (closed by
default) CORS.

:func:`create_app` builds it on one :class:`~aidp.app.context.AppContext` (one store, shared by
the request threads). Route modules live in :mod:`aidp.api.routes`; each exports ``router``.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from starlette.middleware.cors import CORSMiddleware

from aidp import __version__
from aidp.api.problems import install_problem_handlers, problem_response
from aidp.api.schema import install_schema
from aidp.app.context import AppContext

__all__ = ["API_PREFIX", "ROUTERS", "create_app"]

API_PREFIX = "/api/v1"
#: Route modules under aidp.api.routes, in the order of the schema's tags.
ROUTERS = ("meta", "runs", "steps", "control", "plans", "catalog", "events", "webhooks",
           "metrics")

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class Guard:
    """Before any route: refuse a Host header not in ``hosts`` (400: a DNS-rebinding page
    cannot reach the API through a name it controls) and request bodies over ``limit`` bytes
    (413; by Content-Length, else while reading)."""

    def __init__(self, app: ASGIApp, limit: int, hosts: frozenset[str]) -> None:
        self.app, self.limit, self.hosts = app, limit, hosts

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers", ()))
        host = headers.get(b"host", b"").decode("latin-1")
        name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
        if name.lower() not in self.hosts:
            response = problem_response(400, "bad_host", f"host {host!r} is not served here "
                                        "([serve] allowed_hosts)", instance=scope.get("path"))
            await response(scope, receive, send)
            return
        length = headers.get(b"content-length", b"")
        if length.isdigit() and int(length) > self.limit:
            await self._refuse(scope, receive, send)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.limit:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await self._refuse(scope, receive, send)
        except BaseExceptionGroup as group:
            # A client left a server-sent event stream: FastAPI's keep-alive task may be
            # sending to the closed stream (anyio.BrokenResourceError). The response is over;
            # it is no error worth a traceback in the log.
            import anyio

            rest = group.split(anyio.BrokenResourceError)[1]
            if rest is not None:
                raise rest from None

    async def _refuse(self, scope: Scope, receive: Receive, send: Send) -> None:
        response = problem_response(413, "too_large",
                                    f"request body over {self.limit} bytes",
                                    instance=scope.get("path"))
        await response(scope, receive, send)


class _TooLarge(Exception):
    pass


def create_app(ctx: AppContext, *, listen_host: str | None = None,
               lifespan_hooks: list[Any] | None = None) -> FastAPI:
    """The API on ``ctx``'s repository and settings.

    ``listen_host``: the address the server listens on, accepted as a Host header besides the
    loopback names and ``[serve] allowed_hosts``. ``lifespan_hooks``: context-manager factories
    entered (with the app) at start-up and left at shut-down -- the run supervisor, the
    webhook sender.
    """
    settings = ctx.settings.serve
    hooks = list(lifespan_hooks or ())

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> Any:
        from contextlib import AsyncExitStack

        async with AsyncExitStack() as stack:
            for hook in hooks:
                await stack.enter_async_context(hook(app))
            yield
        ctx.close()

    app = FastAPI(
        title="aidp", version=__version__, lifespan=lifespan,
        summary="AI Development Pipeline: runs, workstreams, steps, events and webhooks",
        openapi_url=None, docs_url=None, redoc_url=None,  # served by routes.meta, behind auth
    )
    app.state.ctx = ctx
    app.state.started_at = time.time()
    install_problem_handlers(app)
    for name in ROUTERS:
        module = importlib.import_module(f"aidp.api.routes.{name}")
        app.include_router(module.router, prefix=API_PREFIX)
    # and at /metrics, where a Prometheus scrape config looks by default
    app.include_router(importlib.import_module("aidp.api.routes.metrics").router)
    install_schema(app, API_PREFIX)
    if settings.dashboard:
        from aidp.web import mount

        mount(app, ctx)
    hosts = {"127.0.0.1", "localhost", "::1", "[::1]", *settings.allowed_hosts}
    if listen_host and listen_host not in ("0.0.0.0", "::"):
        hosts.add(listen_host)
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=settings.cors_origins,
                           allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type", "Idempotency-Key",
                                          "Last-Event-ID"])
    app.add_middleware(Guard, limit=settings.max_body_bytes,
                       hosts=frozenset(h.lower() for h in hosts))
    return app
