"""Sign-in and sign-out: ``GET /login`` (the form), ``POST /login`` (field ``token``: an API
token; sets the session cookie, 303 to ``next`` or ``/runs``), ``POST /logout`` (clears it), and
``/`` (303 to ``/runs``).

The sign-in form carries no CSRF token (there is no session yet); a foreign Origin is refused
all the same, so that no other site can sign a browser in with the attacker's token.
"""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import RedirectResponse, Response

from aidp.web.render import render
from aidp.web.session import (
    check_origin,
    clear_session,
    form,
    safe_next,
    set_session,
    sign_in,
)

router = APIRouter()


@router.get("/")
def home() -> Response:
    return RedirectResponse("/runs", 303)


@router.get("/login")
def login_form(request: Request, next: str = "/runs") -> Response:
    return render(request, "login.html", next=safe_next(next), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    check_origin(request)
    fields = await form(request)
    target = safe_next(fields.get("next"))
    token = fields.get("token", "").strip()
    if not token:
        return render(request, "login.html", status_code=400, next=target,
                      error="paste an API token (aidp tokens create NAME --scope read)")
    from anyio import to_thread

    found = await to_thread.run_sync(sign_in, request, token)
    if found is None:
        return render(request, "login.html", status_code=401, next=target,
                      error="unknown or revoked token")
    response = RedirectResponse(target, 303)
    set_session(request, response, token)
    return response


@router.post("/logout")
async def logout(request: Request) -> Response:
    check_origin(request)
    response = RedirectResponse("/login", 303)
    clear_session(request, response)
    return response
