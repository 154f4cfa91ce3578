"""Errors as RFC 9457 problem details (``application/problem+json``), carrying aidp's error
codes: the same families as the CLI's exit codes (2 bad input, 3 not found, 4 wrong state, 5
git, 6 tool), so a program handles an API error and a CLI failure alike."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from aidp.exceptions import (
    AidpError,
    GitError,
    InputError,
    NotFoundError,
    StateError,
    ToolError,
    ValidationError,
)

__all__ = ["PROBLEM_JSON", "Problem", "allowed_methods", "install_problem_handlers",
           "problem_response"]

PROBLEM_JSON = "application/problem+json"
_TYPE_BASE = "https://aidp.dev/problems/"

# (exception class, HTTP status, code); the first match wins
_MAP: tuple[tuple[type[AidpError], int, str], ...] = (
    (NotFoundError, 404, "not_found"),
    (InputError, 400, "bad_input"),
    (StateError, 409, "wrong_state"),
    (GitError, 500, "git_failed"),
    (ToolError, 503, "tool_failed"),
)


class Problem(Exception):
    """An HTTP error raised by the API itself (auth, limits, idempotency)."""

    def __init__(self, status: int, code: str, detail: str, *, exit_code: int | None = None,
                 headers: dict[str, str] | None = None, **extra: Any) -> None:
        super().__init__(detail)
        self.status, self.code, self.detail = status, code, detail
        self.exit_code, self.headers, self.extra = exit_code, headers or {}, extra


def problem_response(status: int, code: str, detail: str, *, instance: str | None = None,
                     exit_code: int | None = None, hint: str | None = None,
                     headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    body: dict[str, Any] = {"type": _TYPE_BASE + code, "title": code.replace("_", " "),
                            "status": status, "detail": detail, "code": code}
    if instance:
        body["instance"] = instance
    if exit_code is not None:
        body["exit_code"] = exit_code
    if hint:
        body["hint"] = hint
    body.update(extra)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


def aidp_error_response(exc: AidpError, instance: str | None = None) -> JSONResponse:
    status, code = next(((s, c) for cls, s, c in _MAP if isinstance(exc, cls)),
                        (500, "internal"))
    extra: dict[str, Any] = {}
    if isinstance(exc, ValidationError):  # every problem, located (file, line, id)
        extra["problems"] = [p.to_dict() for p in exc.problems]
    return problem_response(status, code, exc.message, instance=instance,
                            exit_code=exc.exit_code, hint=exc.hint, **extra)


def allowed_methods(request: Request) -> str:
    """``Allow`` of a 405: the methods of the resource the path names. Starlette names only
    the first route that matched the path; a path may match several routes (one per method)
    and, as ``/specs/validate`` matches ``/specs/{item}`` too, several templates: the most
    specific template (the fewest parameters) is the resource."""
    from fastapi.routing import iter_route_contexts

    path = request.url.path
    found: dict[str, set[str]] = {}
    for route in iter_route_contexts(request.app.router.routes):
        regex = getattr(route, "path_regex", None)
        if route.path and route.methods and regex is not None and regex.match(path):
            found.setdefault(route.path, set()).update(route.methods)
    if not found:
        return ""
    template = min(found, key=lambda t: (t.count("{"), -len(t)))
    methods = found[template] - {"HEAD"}
    return ", ".join(sorted(methods))


def install_problem_handlers(app: FastAPI) -> None:
    """Every error leaves the API as problem+json; a bug as a 500 without a traceback."""

    async def on_aidp(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, AidpError)
        return aidp_error_response(exc, request.url.path)

    async def on_problem(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, Problem)
        return problem_response(exc.status, exc.code, exc.detail, instance=request.url.path,
                                exit_code=exc.exit_code, headers=exc.headers, **exc.extra)

    async def on_http(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = {404: "not_found", 405: "method_not_allowed", 413: "too_large",
                401: "unauthorized", 403: "forbidden"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = allowed_methods(request)
        return problem_response(exc.status_code, code, str(exc.detail),
                                instance=request.url.path, headers=headers)

    async def on_validation(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", ""))}
                  for e in exc.errors()]
        detail = "; ".join(f"{'.'.join(e['loc'])}: {e['msg']}" for e in errors[:5])
        return problem_response(422, "invalid_request", detail or "invalid request",
                                instance=request.url.path, exit_code=2, errors=errors)

    async def on_bug(request: Request, exc: Exception) -> JSONResponse:
        return problem_response(500, "internal", "internal error (see the service's log)",
                                instance=request.url.path)

    app.add_exception_handler(AidpError, on_aidp)
    app.add_exception_handler(Problem, on_problem)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_validation)
    app.add_exception_handler(Exception, on_bug)
