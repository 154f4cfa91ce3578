"""The dashboard's static files: its own (``src/aidp/web/static``: CSS and scripts) at
``/static/...``, and a fixed allow-list of front-end package files from ``node_modules`` at
``/static/vendor/NAME``.

The packages come from npm (``package.json`` at the repository root, installed by
``scripts/setup_web.sh``); nothing is built or committed. ``node_modules`` is looked for in
``$AIDP_NODE_MODULES``, then beside the source tree (a checkout of aidp). When it is missing,
:func:`vendor_url` answers None and the pages show a note instead of the graph: they never fail.
"""

from __future__ import annotations

import os
from pathlib import Path

from fastapi import FastAPI
from fastapi.responses import FileResponse, Response
from starlette.staticfiles import StaticFiles

__all__ = ["STATIC", "VENDOR", "install_static", "node_modules", "vendor_path", "vendor_url"]

STATIC = Path(__file__).resolve().parent / "static"

#: Served name -> path under node_modules. Nothing else of node_modules is reachable.
VENDOR: dict[str, str] = {
    "htmx.min.js": "htmx.org/dist/htmx.min.js",
    "htmx-sse.js": "htmx-ext-sse/dist/sse.min.js",
    "cytoscape.min.js": "cytoscape/dist/cytoscape.min.js",
    "dagre.min.js": "dagre/dist/dagre.min.js",
    "cytoscape-dagre.js": "cytoscape-dagre/cytoscape-dagre.js",
}


def node_modules() -> Path:
    """Where the front-end packages are installed (may not exist)."""
    configured = os.environ.get("AIDP_NODE_MODULES")
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "node_modules"


def vendor_path(name: str) -> Path | None:
    """The file served as ``/static/vendor/NAME``, or None (not allowed, or not installed)."""
    relative = VENDOR.get(name)
    if relative is None:
        return None
    path = node_modules() / relative
    return path if path.is_file() else None


def vendor_url(name: str) -> str | None:
    """The URL of vendor file ``name``, or None when it is not installed."""
    return f"/static/vendor/{name}" if vendor_path(name) is not None else None


def install_static(app: FastAPI) -> None:
    """Add ``/static/vendor/{name}`` and ``/static`` to ``app``."""

    @app.get("/static/vendor/{name}", include_in_schema=False)
    def vendor(name: str) -> Response:
        path = vendor_path(name)
        if path is None:
            return Response(f"no vendor file {name!r} (allowed: {', '.join(sorted(VENDOR))}; "
                            "installed by scripts/setup_web.sh)", status_code=404,
                            media_type="text/plain")
        return FileResponse(path, media_type="text/javascript",
                            headers={"Cache-Control": "public, max-age=3600"})

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
