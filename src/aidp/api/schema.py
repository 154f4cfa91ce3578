"""The OpenAPI schema, made truthful in one place rather than route by route.

FastAPI documents what a route declares; the service answers more than that: every error is
``application/problem+json`` (not FastAPI's ``application/json`` validation body), every route
but liveness answers 401 without a token and 403 below its scope, and the Guard answers 400 to
a Host it does not serve and 413 to a body over the limit. :func:`install_schema` adds all of
that to every operation, states each operation's scope as a bearer security requirement, and
adds ``links`` so that a client (or schemathesis' stateful phase) can follow a created
resource to the operations on it.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts

from aidp.api import auth
from aidp.api.problems import PROBLEM_JSON

__all__ = ["NAMED_URL_PATTERN", "PROBLEM_SCHEMA", "URL_PATTERN", "event_items", "event_patterns",
           "install_schema", "route_scopes"]

_SCOPES: dict[Callable[..., Any], str] = {auth.read: "read", auth.operate: "operate",
                                          auth.admin: "admin"}
_ORDER = ("read", "operate", "admin")
_REF = "#/components/schemas/Problem"

#: RFC 9457 problem details with aidp's code (see :mod:`aidp.api.problems`).
PROBLEM_SCHEMA: dict[str, Any] = {
    "title": "Problem",
    "type": "object",
    "description": "RFC 9457 problem details; `code` is aidp's error code, `exit_code` the "
                   "CLI's exit code family (2 bad input, 3 not found, 4 wrong state, 5 git, "
                   "6 tool).",
    "required": ["type", "title", "status", "detail", "code"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"},
        "status": {"type": "integer"}, "detail": {"type": "string"},
        "code": {"type": "string"}, "instance": {"type": "string"},
        "exit_code": {"type": "integer"}, "hint": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object"},
                   "description": "invalid_request: each invalid part (loc, msg)"},
        "problems": {"type": "array", "items": {"type": "object"},
                     "description": "bad_input: each problem, located (file, line, id)"},
    },
    "additionalProperties": True,
}

#: Answers every operation may give, whatever it declares (the Guard's and auth's).
_EVERYWHERE: dict[str, str] = {
    "400": "a Host header this service does not serve (bad_host)",
    "413": "a request body over [serve] max_body_bytes (too_large)",
}
_AUTH: dict[str, str] = {
    "401": "no, an unknown or a revoked bearer token (unauthorized; WWW-Authenticate)",
    "403": "the token's scope is too small for this operation (forbidden)",
}

#: (operation, status) -> links: a created or listed resource to the operations on it.
#: Values are runtime expressions over the response (OpenAPI 3.1, "Link Object").
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/runs", "201"): {
        "GetRun": ("get", "/runs/{run_id}", {"run_id": "$response.body#/run_id"}),
        "ListWorkstreams": ("get", "/runs/{run_id}/workstreams",
                            {"run_id": "$response.body#/run_id"}),
        "RunFindings": ("get", "/runs/{run_id}/findings", {"run_id": "$response.body#/run_id"}),
        "RunEvents": ("get", "/runs/{run_id}/events", {"run_id": "$response.body#/run_id"}),
        "CancelRun": ("post", "/runs/{run_id}/cancel", {"run_id": "$response.body#/run_id"}),
        "ResumeRun": ("post", "/runs/{run_id}/resume", {"run_id": "$response.body#/run_id"}),
    },
    ("get", "/runs", "200"): {
        "GetRun": ("get", "/runs/{run_id}", {"run_id": "$response.body#/items/0/run_id"}),
    },
    ("post", "/webhooks", "201"): {
        "GetWebhook": ("get", "/webhooks/{webhook_id}", {"webhook_id": "$response.body#/id"}),
        "DeleteWebhook": ("delete", "/webhooks/{webhook_id}",
                          {"webhook_id": "$response.body#/id"}),
        "WebhookDeliveries": ("get", "/webhooks/deliveries",
                              {"webhook_id": "$response.body#/id"}),
    },
    ("get", "/webhooks/deliveries", "200"): {
        "Redeliver": ("post", "/webhooks/deliveries/{delivery_id}/redeliver",
                      {"delivery_id": "$response.body#/0/id"}),
    },
}


def route_scopes(app: FastAPI) -> dict[tuple[str, str], str | None]:
    """``(method, path) -> scope`` of every route: the highest scope its dependencies demand
    (None: a public route)."""
    scopes: dict[tuple[str, str], str | None] = {}
    for route in iter_route_contexts(app.routes):
        if not isinstance(route.original_route, APIRoute) or route.path is None:
            continue
        found: list[str] = []
        stack = list(route.dependant.dependencies)
        while stack:
            dep = stack.pop()
            if dep.call in _SCOPES:
                found.append(_SCOPES[dep.call])
            stack.extend(dep.dependencies)
        scope = max(found, key=_ORDER.index) if found else None
        path = route.path_format or route.path  # {key:path} is {key} in the schema
        for method in route.methods or ():
            scopes[(method.lower(), path)] = scope
    return scopes


def install_schema(app: FastAPI, prefix: str) -> None:
    """Make ``app.openapi()`` return the completed schema (built once, then cached)."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, summary=app.summary,
                                 routes=app.routes)
            app.openapi_schema = complete(schema, route_scopes(app), prefix)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def complete(schema: dict[str, Any], scopes: dict[tuple[str, str], str | None],
             prefix: str) -> dict[str, Any]:
    """``schema`` with problem+json errors, auth answers, security and links added."""
    components = schema.setdefault("components", {})
    components.setdefault("schemas", {})["Problem"] = PROBLEM_SCHEMA
    for unused in ("HTTPValidationError", "ValidationError"):
        components["schemas"].pop(unused, None)
    components["securitySchemes"] = {"bearer": {
        "type": "http", "scheme": "bearer",
        "description": "a token of `aidp tokens create NAME --scope read|operate|admin`; "
                       "each operation names the scope it needs"}}
    paths: dict[str, dict[str, Any]] = schema.get("paths", {})
    for path, operations in paths.items():
        for method, operation in operations.items():
            scope = scopes.get((method, path))
            _complete_operation(operation, scope)
    for (method, path, status), links in _LINKS.items():
        operation = paths.get(prefix + path, {}).get(method)
        if operation is None or status not in operation["responses"]:
            continue
        operation["responses"][status]["links"] = {
            name: {"operationRef": _pointer(prefix + target, target_method),
                   "parameters": parameters}
            for name, (target_method, target, parameters) in links.items()
            if target_method in paths.get(prefix + target, {})}
    return schema


def _complete_operation(operation: dict[str, Any], scope: str | None) -> None:
    responses: dict[str, Any] = operation.setdefault("responses", {})
    extra = dict(_EVERYWHERE)
    if scope is not None:
        extra.update(_AUTH)
        extra["403"] = f"{_AUTH['403']}: this needs scope {scope!r}"
        operation["security"] = [{"bearer": [scope]}]
        operation["description"] = (operation.get("description", "") +
                                     f"\n\nScope: `{scope}`.").strip()
    else:
        operation["security"] = []
    for status, description in extra.items():
        if status in responses:
            if description not in responses[status].get("description", ""):
                responses[status]["description"] += f"; or {description}"
        else:
            responses[status] = {"description": description}
    for status, response in responses.items():
        if status[0] in "45" and not _has_own_schema(response):
            response["content"] = {PROBLEM_JSON: {"schema": {"$ref": _REF}}}


def _has_own_schema(response: dict[str, Any]) -> bool:
    """Whether a route declared an error body of its own (e.g. readiness' 503), which stays."""
    for media in response.get("content", {}).values():
        ref = media.get("schema", {}).get("$ref", "")
        if media.get("schema") and not ref.endswith(("/HTTPValidationError", "/Problem")):
            return True
    return False


def _pointer(path: str, method: str) -> str:
    return "#/paths/" + path.replace("~", "~0").replace("/", "~1") + "/" + method


def event_items() -> dict[str, Any]:
    """The JSON schema of one event selection (see :func:`event_patterns`)."""
    return {"type": "string", "enum": event_patterns()}


def event_patterns() -> list[str]:
    """The event selections a schema offers: ``*``, each category, ``CATEGORY.*``, each kind,
    and each of those as a CloudEvents type (``dev.aidp.``...). The service accepts any glob
    that selects some event; these are the ones a client (or a generator) can rely on."""
    from aidp.app.events import CATALOGUE, CATEGORIES, TYPE_PREFIX

    prefixes = sorted({kind.split(".", 1)[0] for kind in CATALOGUE})
    bare = ["*", *CATEGORIES, *(f"{p}.*" for p in prefixes), *CATALOGUE]
    unique = list(dict.fromkeys(bare))
    return unique + [TYPE_PREFIX + p for p in unique]


#: An http(s) URL whose host is a DNS name (the last label starts with a letter) or an IPv4
#: literal, with an optional port in range and a path of printable ASCII: what the service's
#: URL check accepts (an internal IP literal needs ``allow_private``; see WebhookIn).
_HOST_NAME = r"(?:[A-Za-z0-9-]{1,63}\.)*[A-Za-z][A-Za-z0-9-]{0,62}"
_IPV4 = (r"(?:(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])\.){3}"
         r"(?:25[0-5]|2[0-4][0-9]|1[0-9]{2}|[1-9]?[0-9])")
_PORT = (r"(?::(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}"
         r"|[1-9][0-9]{0,3}))?")
_PATH = r"(?:[/?#][!-~]*)?"
URL_PATTERN = f"^https?://(?:{_HOST_NAME}|{_IPV4}){_PORT}{_PATH}$"
#: The same with a DNS name only: what is accepted without ``allow_private`` for certain.
NAMED_URL_PATTERN = f"^https?://{_HOST_NAME}{_PORT}{_PATH}$"
