"""Health, version, the OpenAPI schema and its docs page."""

from __future__ import annotations

import html
from typing import Any, Literal

from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from aidp import __version__
from aidp.api.auth import read
from aidp.app.service import check_database, schema_revision
from aidp.app.service_runs import given_up_runs

router = APIRouter(tags=["meta"])


@router.get("/health/live", summary="Liveness: the process answers (no token needed)")
def live() -> dict[str, str]:
    return {"status": "ok"}


class Readiness(BaseModel):
    status: Literal["ok", "failed"]
    checks: dict[str, str] = Field(description="each part: ok, or why not")
    given_up: list[str] = Field(
        default_factory=list, description="runs whose workers kept dying: the service no "
        "longer drives them (they stay resumable); readiness is not failed by them")


@router.get("/health/ready", summary="Readiness: the database and the run workers",
            dependencies=[Depends(read)], response_model=Readiness,
            responses={503: {"description": "not ready (which part, in `checks`)",
                             "model": Readiness}})
def ready(request: Request) -> JSONResponse:
    checks: dict[str, Any] = {"database": check_database(request.app.state.ctx)}
    supervisor = getattr(request.app.state, "supervisor", None)
    checks["workers"] = "ok" if supervisor is None or supervisor.healthy() else "failed"
    ok = all(v == "ok" for v in checks.values())
    given_up = given_up_runs(request.app.state.ctx) if checks["database"] == "ok" else []
    return JSONResponse({"status": "ok" if ok else "failed", "checks": checks,
                         "given_up": given_up}, status_code=200 if ok else 503)


@router.get("/version", summary="The aidp version and API revision", dependencies=[Depends(read)])
def version() -> dict[str, str]:
    return {"version": __version__, "api": "v1", "schema_revision": schema_revision()}


@router.get("/openapi.json", summary="This API's OpenAPI 3.1 schema", include_in_schema=False,
            dependencies=[Depends(read)])
def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@router.get("/docs", summary="The API's operations, as a page", include_in_schema=False,
            dependencies=[Depends(read)], response_class=HTMLResponse)
def docs(request: Request) -> HTMLResponse:
    """A self-contained page (no CDN: the service may have no internet) listing every
    operation with its parameters; the schema itself is at ``openapi.json``."""
    schema = request.app.openapi()
    rows = []
    for path, ops in sorted(schema.get("paths", {}).items()):
        for method, op in ops.items():
            params = ", ".join(p["name"] for p in op.get("parameters", []))
            rows.append(
                f"<tr><td><code>{method.upper()}</code></td><td><code>{html.escape(path)}"
                f"</code></td><td>{html.escape(op.get('summary', ''))}</td>"
                f"<td>{html.escape(params)}</td></tr>")
    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>aidp API</title>"
        "<style>body{font:14px system-ui;margin:2em}td{padding:2px 8px;vertical-align:top}"
        "</style></head><body>"
        f"<h1>aidp API {html.escape(schema['info']['version'])}</h1>"
        "<p>Send <code>Authorization: Bearer aidp_...</code> (<code>aidp tokens create</code>). "
        "Errors are <code>application/problem+json</code>. The schema: "
        "<a href='openapi.json'>openapi.json</a>.</p>"
        "<table><tr><th>method</th><th>path</th><th>summary</th><th>parameters</th></tr>"
        + "".join(rows) + "</table></body></html>")
    return HTMLResponse(page)
