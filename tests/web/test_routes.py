"""The dashboard's route table, read from the app ``create_app`` builds (nothing served):
every page needs a session, every state-changing route an operator, and the dashboard can be
turned off."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from fastapi.routing import iter_route_contexts

from aidp.api.server import create_app
from aidp.app.context import AppContext
from aidp.web import PAGES, is_dashboard_path, session

#: Dashboard routes open without a session (sign-in itself, and the redirect to /runs).
OPEN = {("GET", "/"), ("GET", "/login"), ("POST", "/login"), ("POST", "/logout"),
        ("GET", "/static/vendor/{name}")}


def _guards(route: Any) -> set[str]:
    found: set[str] = set()
    stack = list(route.dependant.dependencies)
    while stack:
        dep = stack.pop()
        for name in ("viewer", "operator", "administrator"):
            if dep.call is getattr(session, name):
                found.add(name)
        stack.extend(dep.dependencies)
    return found


def _dashboard_routes(repo: Path, **serve: Any) -> list[tuple[str, str, set[str]]]:
    base = AppContext.open(repo)
    settings = base.settings.model_copy(
        update={"serve": base.settings.serve.model_copy(update=serve)})
    app = create_app(AppContext(repo, settings))
    return [(method, route.path, _guards(route))
            for route in iter_route_contexts(app.routes)
            if is_dashboard_path(route.path)
            for method in sorted(route.methods or ()) if method != "HEAD"]


def test_every_page_needs_a_viewer_and_every_action_an_operator(repo: Path) -> None:
    """Walks the live route table, so that a page added later cannot slip through: GET pages
    depend on session.viewer, POSTs on session.operator or session.administrator."""
    routes = _dashboard_routes(repo)
    assert {("GET", "/runs"), ("POST", "/runs"), ("GET", "/runs/{run_id}")} <= \
        {(m, p) for m, p, _ in routes}
    for method, path, guards in routes:
        if (method, path) in OPEN:
            continue
        if method == "GET":
            assert "viewer" in guards, (method, path)
        else:
            assert guards & {"operator", "administrator"}, (method, path)


def test_the_dashboard_can_be_turned_off(repo: Path) -> None:
    """[serve] dashboard = false leaves only the API."""
    assert _dashboard_routes(repo, dashboard=False) == []
    assert _dashboard_routes(repo)


@pytest.mark.parametrize("page", PAGES)
def test_page_modules_are_optional_but_export_a_router(page: str) -> None:
    """mount() includes the page modules that exist; each exports ``router``."""
    import importlib

    try:
        module = importlib.import_module(f"aidp.web.pages.{page}")
    except ModuleNotFoundError:
        pytest.skip(f"aidp.web.pages.{page} is not written yet")
    assert hasattr(module, "router")
