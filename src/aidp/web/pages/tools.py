"""The tools page (``/tools``): the tool profiles of ``aidp.toml`` with the last result of
their check (as ``aidp tools list``), a button that checks them again (the canary probe of
``POST /api/v1/tools/check``), and the circuit breakers (state, failures, opened at, when they
may close) with a reset button (``POST /api/v1/breakers/{key}/reset``). Both actions need
scope ``operate``, a CSRF token and a confirmation; the reset is journaled as ``api:TOKEN``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from aidp.app import commands, queries, tools
from aidp.app.context import AppContext
from aidp.exceptions import InputError
from aidp.web.errors import act
from aidp.web.render import render
from aidp.web.session import Viewer, form, operator, viewer

router = APIRouter()

#: Messages after an action (by code: no text from the query is shown).
FLASHES = {
    "checked": "Checked: the results are beside each profile.",
    "reset": "Breaker closed.",
}


def _page(request: Request, *, flash: str | None = None, error: str | None = None,
          code: int = 200) -> Response:
    ctx: AppContext = request.app.state.ctx
    profiles = tools.list_tools(ctx)
    for row in profiles:
        check = row.get("last_check")
        row["health"] = tools.check_state(check).lower() if check else "never checked"
    return render(request, "tools.html", status_code=code, profiles=profiles,
                  breakers=queries.list_breakers(ctx), flash=flash, error=error)




@router.get("/tools")
def tools_page(request: Request, who: Annotated[Viewer, Depends(viewer)],
               done: Annotated[str | None, Query(max_length=20)] = None) -> Response:
    return _page(request, flash=FLASHES.get(done or ""))


async def _act(request: Request, action: Callable[[], None], flash: str) -> Response:
    return await act(action, f"/tools?done={flash}",
                     lambda message, status: _page(request, error=message, code=status))


@router.post("/tools/check")
async def check(request: Request, who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    fields = await form(request)
    profile = fields.get("profile", "").strip() or None
    offline = fields.get("offline", "") in ("1", "on", "true", "yes")

    def action() -> None:
        if profile is not None and len(profile) > 200:
            raise InputError("a profile name is at most 200 characters")
        tools.check_tools(ctx, profile, offline=offline)

    return await _act(request, action, "checked")


@router.post("/tools/breakers/reset")
async def reset(request: Request, who: Annotated[Viewer, Depends(operator)]) -> Response:
    ctx: AppContext = request.app.state.ctx
    key = (await form(request)).get("key", "").strip()

    def action() -> None:
        if not key:
            raise InputError("name the breaker to reset (profile:NAME or endpoint:URL)")
        commands.reset_breaker(ctx, key, by=who.actor)

    return await _act(request, action, "reset")
