"""Errors on dashboard paths as HTML pages; the REST API under ``/api/`` keeps its
problem+json answers.

The API's handlers (:func:`aidp.api.problems.install_problem_handlers`) are wrapped: a dashboard
path gets ``error.html`` with the same status and the error's message (escaped, as every
template), never a traceback. A page that needs a session answers 303 to the sign-in form
(:class:`~aidp.web.session.LoginRequired`); a refused action 403
(:class:`~aidp.web.session.Forbidden`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from anyio import to_thread
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import RedirectResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from aidp.exceptions import AidpError, InputError, NotFoundError, StateError
from aidp.web.session import Forbidden, LoginRequired

__all__ = ["act", "explain", "install_error_pages", "status_of"]

_log = logging.getLogger(__name__)
#: (error class, HTTP status, page title), as the API maps them (aidp.api.problems); first wins.
_STATUS: tuple[tuple[type[AidpError], int, str], ...] = (
    (NotFoundError, 404, "Not found"),
    (InputError, 400, "Bad input"),
    (StateError, 409, "Not now"),
)


def status_of(exc: AidpError, otherwise: int = 400) -> int:
    """The HTTP status of an action's ``exc`` (404, 400, 409 as the API answers them;
    ``otherwise`` for any other error): the form's page is shown again with it."""
    return next((s for kind, s, _ in _STATUS if isinstance(exc, kind)), otherwise)


def explain(exc: AidpError) -> str:
    """What a refused action shows on its page: the error's message and, when it has one,
    its hint in brackets."""
    return exc.message + (f" ({exc.hint})" if exc.hint else "")


async def act(action: Callable[[], object], done: str,
              refused: Callable[[str, int], Response]) -> Response:
    """A form's action: ``action`` in a thread, then 303 to ``done``; when it raises an
    :class:`AidpError` (nothing changed), ``refused(message, status)`` -- the form's page with
    :func:`explain` and :func:`status_of` of it -- rendered in a thread."""
    try:
        await to_thread.run_sync(action)
    except AidpError as exc:
        message, status = explain(exc), status_of(exc)
        return await to_thread.run_sync(lambda: refused(message, status))
    return RedirectResponse(done, 303)


def _page(request: Request, status: int, title: str, detail: str,
          hint: str | None = None) -> Response:
    from aidp.web.render import render

    try:
        return render(request, "error.html", status_code=status, title=title, detail=detail,
                      hint=hint)
    except Exception:  # noqa: BLE001 -- the error page itself failed (a broken template): plain text, no trace
        _log.exception("the error page failed")
        return Response(f"{status} {title}: {detail}", status_code=status,
                        media_type="text/plain")


def _html(request: Request, exc: Exception) -> Response:
    if isinstance(exc, LoginRequired):
        return RedirectResponse(f"/login?next={quote(exc.next_path, safe='/')}", 303)
    if isinstance(exc, Forbidden):
        return _page(request, 403, "Forbidden", exc.detail)
    if isinstance(exc, AidpError):
        status, title = next(((s, t) for kind, s, t in _STATUS if isinstance(exc, kind)),
                             (500, "Error"))
        return _page(request, status, title, exc.message, exc.hint)
    code = getattr(exc, "status", None)  # aidp.api.problems.Problem (not imported: layers)
    if isinstance(code, int) and isinstance(getattr(exc, "detail", None), str):
        return _page(request, code, "Refused" if code < 500 else "Error",
                     str(getattr(exc, "detail", "")))
    if isinstance(exc, StarletteHTTPException):
        titles = {404: "Not found", 405: "Method not allowed"}
        detail = "no such page" if exc.status_code == 404 else str(exc.detail)
        return _page(request, exc.status_code, titles.get(exc.status_code, "Error"), detail)
    if isinstance(exc, RequestValidationError):
        detail = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}"
                           for e in exc.errors()[:5])
        return _page(request, 422, "Invalid request", detail or "invalid request")
    return _page(request, 500, "Internal error", "internal error (see the service's log)")


def install_error_pages(app: FastAPI) -> None:
    """Route errors of dashboard paths to HTML pages (after the API's handlers exist)."""
    from aidp.web import is_dashboard_path

    handlers: dict[Any, Any] = app.exception_handlers
    kinds = {*handlers, AidpError, StarletteHTTPException, RequestValidationError, Exception}
    for kind in kinds:
        api_handler = handlers.get(kind)

        async def handler(request: Request, exc: Exception, api: Any = api_handler) -> Any:
            if api is not None and not is_dashboard_path(request.url.path):
                return await api(request, exc)
            return _html(request, exc)

        handlers[kind] = handler

    async def refused(request: Request, exc: Exception) -> Response:
        return _html(request, exc)

    handlers[LoginRequired] = refused
    handlers[Forbidden] = refused
