"""Pages from Jinja2 templates: one environment, autoescape on for every template.

:func:`render` gives every template ``request``, ``viewer`` (the :class:`~aidp.web.session.Viewer`
of the request, or None on the sign-in page), ``csrf`` (the form token of the session),
``static(path)`` (the URL of a file of ``static/``), ``vendor(name)`` (the URL of a front-end
package file, or None when ``node_modules`` is missing: the page then works without it),
``read_only``, and ``path`` and ``query`` (of the request's URL). Filters: ``ansi`` (terminal
output as inert HTML, see :mod:`aidp.web.ansi`), ``ago`` (epoch seconds as "3 min ago"),
``duration`` (seconds as "1 h 2 min"), ``money`` (US dollars), ``when`` (epoch seconds as an
ISO time, UTC).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse
from jinja2 import Environment, FileSystemLoader, StrictUndefined, select_autoescape

from aidp.web.ansi import ansi_to_html
from aidp.web.static_files import vendor_url

__all__ = ["TEMPLATES", "ago", "duration", "environment", "money", "render", "when"]

TEMPLATES = Path(__file__).resolve().parent / "templates"


def ago(ts: float | None, now: float | None = None) -> str:
    """``ts`` (epoch seconds) relative to ``now``: "just now", "5 s ago", "3 min ago",
    "2 h ago", "4 d ago"; "-" for None."""
    if ts is None:
        return "-"
    delta = (time.time() if now is None else now) - float(ts)
    if delta < 0:
        return "in " + duration(-delta)
    if delta < 2:
        return "just now"
    return duration(delta) + " ago"


def duration(seconds: float | None) -> str:
    """``seconds`` as "0.4 s", "12 s", "3 min 4 s", "2 h 5 min", "3 d 4 h"; "-" for None."""
    if seconds is None:
        return "-"
    s = float(seconds)
    if s < 10:
        return f"{s:.1f} s"
    if s < 60:
        return f"{int(s)} s"
    minutes, sec = divmod(int(s), 60)
    if minutes < 60:
        return f"{minutes} min {sec} s" if sec else f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h" if hours else f"{days} d"


def money(usd: float | None) -> str:
    """US dollars: "$0.0042" below a cent, else "$12.35"; "-" for None."""
    if usd is None:
        return "-"
    value = float(usd)
    if 0 < abs(value) < 0.01:
        return f"${value:.4f}"
    return f"${value:,.2f}"


def when(ts: float | None) -> str:
    """Epoch seconds as ``2026-01-31 12:00:05Z``; "-" for None."""
    if ts is None:
        return "-"
    return datetime.fromtimestamp(float(ts), UTC).strftime("%Y-%m-%d %H:%M:%SZ")


def _static(path: str) -> str:
    return f"/static/{path.lstrip('/')}"


def environment() -> Environment:
    """The dashboard's Jinja2 environment (autoescape on for every template, whatever its
    name; undefined names are errors)."""
    env = Environment(loader=FileSystemLoader(str(TEMPLATES)),
                      autoescape=select_autoescape(default=True, default_for_string=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    env.filters.update(ansi=ansi_to_html, ago=ago, duration=duration, money=money, when=when)
    env.globals.update(static=_static, vendor=vendor_url)
    return env


_ENV = environment()


def render(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    """The template ``name`` rendered for ``request`` with ``context`` (and the globals named
    in the module docstring)."""
    from aidp.web.session import csrf_token

    viewer = getattr(request.state, "viewer", None)
    settings = request.app.state.ctx.settings.serve
    base = {"request": request, "viewer": viewer, "csrf": csrf_token(request),
            "read_only": viewer is None or viewer.read_only,
            "anonymous_reading": settings.dashboard_read_only,
            "path": request.url.path, "query": request.url.query}
    html = _ENV.get_template(name).render({**base, **context})
    return HTMLResponse(html, status_code=status_code)
