"""The service's shell: tokens and scopes on every route, problem+json errors, the Host
allow-list, the body limit, the schema."""

from __future__ import annotations

import json
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from aidp.api import auth
from aidp.api.server import create_app
from aidp.app.context import AppContext
from aidp.cli.common import actor
from tests.api.conftest import Served, start_served
from tests.conftest import Cli

_SCOPE_OF = {auth.read: "read", auth.operate: "operate", auth.admin: "admin"}
_LOWER = {"operate": "read", "admin": "operate"}


def _scope(route: Any) -> str | None:
    """The scope a route's dependencies demand (the highest, if several)."""
    found: list[str] = []
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        if dep.call in _SCOPE_OF:
            found.append(_SCOPE_OF[dep.call])  # type: ignore[index]
        stack.extend(dep.dependencies)
    return max(found, key=["read", "operate", "admin"].index) if found else None


def _routes(repo: Path) -> list[tuple[str, str, str | None]]:
    """The API's routes (the dashboard's pages beside them have their own rule: tests/web)."""
    app = create_app(AppContext.open(repo))
    return [(method, route.path, _scope(route))
            for route in iter_route_contexts(app.routes)
            if route.path.startswith("/api/")
            for method in sorted(route.methods or ())]


def test_every_route_but_liveness_demands_a_scope(repo: Path) -> None:
    routes = _routes(repo)
    assert len(routes) >= 5
    open_routes = [(m, p) for m, p, scope in routes if scope is None]
    assert open_routes == [("GET", "/api/v1/health/live")]
    assert {"/api/v1/health/live"} == auth.PUBLIC_PATHS


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_each_route_answers_401_without_and_403_below_its_scope(served: Served) -> None:
    """Walks the live route table: a route added later cannot slip through."""
    routes = _routes(served.cli.cwd)
    with served.client(None) as anon:
        assert anon.get("/health/live").json() == {"status": "ok"}
        for method, path, scope in routes:
            if scope is None:
                continue
            url = re.sub(r"\{[^}]+\}", "x", path.removeprefix("/api/v1"))
            answer = anon.request(method, url)
            assert answer.status_code == 401, (method, path, answer.text)
            assert answer.headers["content-type"] == "application/problem+json"
            assert answer.headers["www-authenticate"].startswith("Bearer")
            if scope in _LOWER:
                with served.client(_LOWER[scope]) as low:
                    denied = low.request(method, url)
                assert denied.status_code == 403, (method, path, denied.text)
                assert denied.json()["code"] == "forbidden"
    with served.client(None, headers={"Authorization": "Bearer aidp_000000000000_" + "x" * 43}) \
            as forged:
        assert forged.get("/runs").status_code == 401


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_errors_are_problem_details_with_aidp_codes(served: Served) -> None:
    with served.client("read") as client:
        missing = client.get("/runs/NOPE")
        assert missing.status_code == 404
        assert missing.headers["content-type"] == "application/problem+json"
        body = missing.json()
        assert body["code"] == "not_found" and body["exit_code"] == 3
        assert body["status"] == 404 and body["instance"] == "/api/v1/runs/NOPE"
        assert client.get("/no/such/route").json()["status"] == 404
        invalid = client.get("/runs", params={"limit": "many"})
        assert invalid.status_code == 422 and invalid.json()["code"] == "invalid_request"
        assert client.get("/runs").json() == {"items": [], "next_cursor": None}
        version = client.get("/version").json()
        assert version["api"] == "v1" and version["schema_revision"]
        ready = client.get("/health/ready")
        assert ready.status_code == 200 and ready.json()["checks"]["database"] == "ok"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_host_allow_list_and_body_limit(served: Served) -> None:
    with served.client("admin") as client:
        rebound = client.get("/version", headers={"Host": "evil.example:8765"})
        assert rebound.status_code == 400 and rebound.json()["code"] == "bad_host"
        huge = client.post("/runs", content=b"x" * (2 << 20),
                           headers={"Content-Type": "application/json"})
        assert huge.status_code == 413 and huge.json()["code"] == "too_large"


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_schema_is_openapi_31_behind_a_token(served: Served) -> None:
    with served.client(None) as anon:
        assert anon.get("/openapi.json").status_code == 401
    with served.client("read") as client:
        schema = client.get("/openapi.json").json()
        assert schema["openapi"].startswith("3.1")
        assert "/api/v1/runs/{run_id}" in schema["paths"]
        page = client.get("/docs")
        assert page.status_code == 200 and "/api/v1/runs/{run_id}" in page.text


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_tokens_are_shown_once_stored_hashed_and_revocable(served: Served) -> None:
    cli = served.cli
    listed = cli("tokens", "list", "--json", check=True).stdout
    # aidp_<12 hex>_<secret>: the secret itself may hold "_"
    secret = served.tokens["read"][len("aidp_") + 12 + 1:]
    assert len(secret) == 43
    assert secret not in listed and "t-read" in listed
    assert cli.db_url is not None
    db = Path(cli.db_url.split("///", 1)[1])
    assert secret.encode() not in db.read_bytes()
    with served.client("read") as client:
        assert client.get("/runs").status_code == 200
        assert cli("tokens", "revoke", "t-read").returncode == 0
        assert client.get("/runs").status_code == 401
    again = cli("tokens", "create", "t-read")
    assert again.returncode == 2 and "exists already" in again.stderr
    bad = cli("tokens", "create", "bad name!")
    assert bad.returncode == 2 and "invalid token name" in bad.stderr
    assert secret not in "".join(served.output)
    # who made and revoked tokens is journaled, never a secret
    with sqlite3.connect(db) as conn:
        journaled = conn.execute("SELECT kind, data FROM events WHERE kind LIKE 'token.%' "
                                 "ORDER BY id").fetchall()
    assert [(k, json.loads(d)["token"]) for k, d in journaled][-1] == ("token.revoked", "t-read")
    assert {json.loads(d)["by"] for _, d in journaled} == {actor()}  # user@host, as the CLI
    assert secret not in repr(journaled)


def test_serve_refuses_a_taken_port(api_cli: Cli) -> None:
    first = start_served(api_cli)
    try:
        port = first.url.split(":")[2].split("/")[0]
        second = api_cli("serve", "--port", port, timeout=30)
        assert second.returncode == 2 and "cannot listen" in second.stderr
        assert "Traceback" not in second.stderr
    finally:
        first.stop()
    assert json.loads(api_cli("tokens", "list", "--json").stdout)
